import { EventEmitterPubSub } from '@mastra/core/events'
import { createClient } from 'redis'
import { describe, expect, it } from 'vitest'

import { CachingPubSub, InMemoryServerCache, RedisServerCache, type PubSubEvent, type ServerCache } from '../dist/index.js'
import { redisKey } from '../native.js'
import { eventually, REDIS_URL, TOPIC_PREFIX, uniquePrefix } from './helpers.js'
import { backends, event } from './pubsub-backends.js'

describe.each(backends)('CachingPubSub ($name)', (backend) => {
  async function withPubSub(body: (pubsub: CachingPubSub, cache: ServerCache) => Promise<void>, options?: Parameters<typeof backend.make>[0]) {
    const { pubsub, cache, done } = backend.make(options)
    try {
      await body(pubsub, cache)
    } finally {
      await done()
    }
  }
  const topic = 'agent.stream.run-1'
  const ns = (events: PubSubEvent[]) => events.map((e) => (e.data as { n: number }).n)

  it('gives a late subscriber the whole history in order', () =>
    withPubSub(async (pubsub) => {
      for (let n = 0; n < 3; n++) expect(await pubsub.publish(topic, event(n))).toBe(n)
      const seen: PubSubEvent[] = []
      await pubsub.subscribeWithReplay(topic, (e) => void seen.push(e))
      // Mastra's contract: the history is delivered before the promise resolves.
      expect(ns(seen)).toEqual([0, 1, 2])
      expect(seen.map((e) => e.index)).toEqual([0, 1, 2])
      const first = seen[0]!
      expect(first).toMatchObject({ type: 'chunk', runId: 'run-1', index: 0 })
      expect(typeof first.id).toBe('string')
      expect(first.createdAt).toBeInstanceOf(Date)
    }))

  it('delivers cached events, then live ones, exactly once across the boundary', () =>
    withPubSub(async (pubsub) => {
      for (let n = 0; n < 2; n++) await pubsub.publish(topic, event(n))
      const seen: PubSubEvent[] = []
      await pubsub.subscribeWithReplay(topic, (e) => void seen.push(e))
      for (let n = 2; n < 5; n++) await pubsub.publish(topic, event(n))
      await eventually(() => seen.length >= 5)
      expect(ns(seen)).toEqual([0, 1, 2, 3, 4])
    }))

  it('gives concurrent subscribers each the full history', () =>
    withPubSub(async (pubsub) => {
      for (let n = 0; n < 3; n++) await pubsub.publish(topic, event(n))
      const a: PubSubEvent[] = []
      const b: PubSubEvent[] = []
      await Promise.all([pubsub.subscribeWithReplay(topic, (e) => void a.push(e)), pubsub.subscribeWithReplay(topic, (e) => void b.push(e))])
      await pubsub.publish(topic, event(3))
      await eventually(() => a.length === 4 && b.length === 4)
      expect(ns(a)).toEqual([0, 1, 2, 3])
      expect(ns(b)).toEqual([0, 1, 2, 3])
    }))

  it('resumes after a disconnect from the last index seen, missing nothing', () =>
    withPubSub(async (pubsub) => {
      const seen: PubSubEvent[] = []
      const cb = (e: PubSubEvent) => void seen.push(e)
      await pubsub.subscribeWithReplay(topic, cb)
      await pubsub.publish(topic, event(0))
      await eventually(() => seen.length === 1)
      await pubsub.unsubscribe(topic, cb)
      await pubsub.publish(topic, event(1))
      await pubsub.publish(topic, event(2))
      expect(seen).toHaveLength(1)
      const resumed: PubSubEvent[] = []
      await pubsub.subscribeFromOffset(topic, seen.at(-1)!.index + 1, (e) => void resumed.push(e))
      expect(ns(resumed)).toEqual([1, 2])
      const full: PubSubEvent[] = []
      await pubsub.subscribeWithReplay(topic, (e) => void full.push(e))
      expect(ns(full)).toEqual([0, 1, 2])
    }))

  it('keeps topics isolated', () =>
    withPubSub(async (pubsub) => {
      await pubsub.publish('agent.stream.a', event(1, 'a'))
      await pubsub.publish('agent.stream.b', event(2, 'b'))
      await pubsub.publish('agent.stream.a', event(3, 'a'))
      expect(ns(await pubsub.getHistory('agent.stream.a'))).toEqual([1, 3])
      expect((await pubsub.getHistory('agent.stream.b')).map((e) => [e.runId, e.index])).toEqual([['b', 0]])
    }))

  it('clearTopic removes history and counter', () =>
    withPubSub(async (pubsub) => {
      await pubsub.publish(topic, event(0))
      expect(await pubsub.getHistory(topic)).toHaveLength(1)
      await pubsub.clearTopic(topic)
      expect(await pubsub.getHistory(topic)).toEqual([])
      expect(await pubsub.publish(topic, event(1))).toBe(0)
    }))

  it('for await: replays from an offset, follows live events, and break frees the subscription', () =>
    withPubSub(async (pubsub) => {
      for (let n = 0; n < 3; n++) await pubsub.publish(topic, event(n))
      const got: number[] = []
      const reading = (async () => {
        for await (const e of pubsub.subscribeWithReplay(topic, { offset: 1 })) {
          got.push(e.index)
          if (got.length === 4) break
        }
      })()
      for (let n = 3; n < 6; n++) await pubsub.publish(topic, event(n))
      await reading
      expect(got).toEqual([1, 2, 3, 4])
    }))

  it('for await: aborting the signal while waiting ends the loop with an AbortError', () =>
    withPubSub(async (pubsub) => {
      const controller = new AbortController()
      const got: number[] = []
      const reading = (async () => {
        for await (const e of pubsub.subscribeWithReplay(topic, { signal: controller.signal })) got.push(e.index)
      })()
      await pubsub.publish(topic, event(0))
      await eventually(() => got.length === 1)
      controller.abort()
      await expect(reading).rejects.toMatchObject({ name: 'AbortError' })
      expect(got).toEqual([0])
    }))

  it('return() on a waiting iterator ends it', () =>
    withPubSub(async (pubsub) => {
      const iterator = pubsub.subscribeWithReplay(topic)
      const pending = iterator.next()
      // Nothing published: `next` waits. Closing through the signal path is
      // covered above; here the consumer gives up after one event.
      await pubsub.publish(topic, event(0))
      expect((await pending).value?.index).toBe(0)
      expect(await iterator.return!()).toEqual({ done: true, value: undefined })
      expect((await iterator.next()).done).toBe(true)
    }))

  it('an offset past the end waits for that event', () =>
    withPubSub(async (pubsub) => {
      const got: number[] = []
      await pubsub.subscribeFromOffset(topic, 2, (e) => void got.push(e.index))
      await pubsub.publish(topic, event(0))
      await pubsub.publish(topic, event(1))
      await pubsub.publish(topic, event(2))
      await eventually(() => got.length === 1)
      expect(got).toEqual([2])
    }))

  it('retention.maxEvents bounds a topic; an older offset is ERR_OFFSET_EXPIRED, not a shorter history', () =>
    withPubSub(
      async (pubsub) => {
        for (let n = 0; n < 10; n++) await pubsub.publish(topic, event(n))
        expect((await pubsub.getHistory(topic)).length).toBeLessThanOrEqual(3)
        expect(ns(await pubsub.getHistory(topic, 7))).toEqual([7, 8, 9])
        await expect(pubsub.getHistory(topic, 5)).rejects.toMatchObject({ code: 'ERR_OFFSET_EXPIRED' })
        const iterator = pubsub.subscribeWithReplay(topic, { offset: 0 })
        await expect(iterator.next()).rejects.toMatchObject({ code: 'ERR_OFFSET_EXPIRED' })
        await expect(pubsub.subscribeFromOffset(topic, 0, () => {})).rejects.toMatchObject({ code: 'ERR_OFFSET_EXPIRED' })
        // Without an offset, replay starts at the oldest retained event.
        const replayed: number[] = []
        await pubsub.subscribeWithReplay(topic, (e) => void replayed.push(e.index))
        expect(replayed).toEqual([7, 8, 9])
      },
      { retention: { maxEvents: 3 } },
    ))

  it('publishes made together get indices in call order, and one that cannot be stored fails alone', () =>
    withPubSub(async (pubsub, cache) => {
      // Over Redis, calls made in one tick share pipelines of up to 16.
      await cache.set(`${TOPIC_PREFIX}agent.taken`, 'not a topic')
      const published = Array.from({ length: 40 }, (_, n) => pubsub.publish(n % 2 ? 'agent.odd' : 'agent.even', event(n)))
      const failure = (published: Promise<unknown>) =>
        published.then(
          () => 'stored',
          (error: unknown) => error,
        )
      const refused = failure(pubsub.publish('agent.taken', event(-1)))
      const notJson = failure(pubsub.publish('agent.odd', { type: 'chunk', runId: 'run-1', data: { n: 10n } }))
      const more = pubsub.publish('agent.odd', event(41))
      expect(await Promise.all(published)).toEqual(Array.from({ length: 40 }, (_, n) => Math.floor(n / 2)))
      expect(await refused).toMatchObject({ code: 'ERR_WRONG_TYPE' })
      expect(await notJson).toMatchObject({ code: 'ERR_NOT_JSON' })
      expect(await more).toBe(20)
      const odd = Array.from({ length: 20 }, (_, n) => 2 * n + 1)
      expect(ns(await pubsub.getHistory('agent.odd'))).toEqual([...odd, 41])
      expect(ns(await pubsub.getHistory('agent.even'))).toEqual(odd.map((n) => n - 1))
      expect(await cache.get(`${TOPIC_PREFIX}agent.taken`)).toBe('not a topic')
    }))

  it('10,000 publishes made without awaiting each get indices in call order, and replay in it', () =>
    withPubSub(async (pubsub) => {
      const n = 10_000
      const indices = await Promise.all(Array.from({ length: n }, (_, i) => pubsub.publish(topic, event(i))))
      expect(indices).toEqual(Array.from({ length: n }, (_, i) => i))
      expect(ns(await pubsub.getHistory(topic))).toEqual(Array.from({ length: n }, (_, i) => i))
    }))

  it('replays any Unicode text exactly, in pages of ASCII and non-ASCII text alike', () =>
    withPubSub(async (pubsub) => {
      const texts = ['plain', 'üñï €', '🦀 日本語', 'lone \ud800 surrogate', 'quote " and \\ backslash', '\u0000\u001f']
      for (const text of texts) await pubsub.publish(topic, { type: 'chunk', runId: 'run-1', data: { text } })
      const seen: unknown[] = []
      for await (const e of pubsub.subscribeWithReplay(topic, { offset: 0 })) {
        seen.push(e.data)
        if (e.index === texts.length - 1) break
      }
      expect(seen).toEqual(texts.map((text) => ({ text })))
      expect((await pubsub.getHistory(topic)).map((e) => e.data)).toEqual(texts.map((text) => ({ text })))
    }))

  it('subscribe() delivers only events published after it', () =>
    withPubSub(async (pubsub) => {
      await pubsub.publish(topic, event(0))
      const got: number[] = []
      await pubsub.subscribe(topic, (e) => void got.push(e.index))
      await pubsub.publish(topic, event(1))
      await eventually(() => got.length === 1)
      expect(got).toEqual([1])
    }))

  it('a subscriber that never reads does not slow or block publishers', () =>
    withPubSub(async (pubsub) => {
      const idle = pubsub.subscribeWithReplay(topic) // created, never pulled
      for (let n = 0; n < 2_000; n++) await pubsub.publish(topic, event(n))
      // Nothing buffered for it: it reads the stored log when it resumes.
      const first = await idle.next()
      expect(first.value?.index).toBe(0)
      await idle.return!()
    }))

  it('rejects bad input with codes and stores nothing', () =>
    withPubSub(async (pubsub) => {
      await expect(pubsub.publish(topic, { type: 'x', runId: 'r', data: 10n })).rejects.toMatchObject({ code: 'ERR_NOT_JSON' })
      // data that JSON writes nothing for is refused, as the cache refuses such a value (set(fn)), not left out.
      for (const data of [() => 1, Symbol('s')]) {
        const error = await pubsub.publish(topic, { type: 'x', runId: 'r', data }).then(
          () => undefined,
          (e: unknown) => e as Error & { code?: string },
        )
        expect(error).toBeInstanceOf(TypeError)
        expect(error).toMatchObject({ code: 'ERR_NOT_JSON', message: `event.data is not JSON-serialisable (got ${typeof data})` })
      }
      await expect(pubsub.publish(topic, { type: 5 as never, runId: 'r' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
      await expect(pubsub.publish(42 as never, event(0))).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
      await expect(pubsub.publish(topic, { ...event(0), createdAt: new Date(Number.NaN) })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
      expect(() => pubsub.subscribeWithReplay(topic, { offset: -1 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
      await expect(pubsub.getHistory(topic, 1.5)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
      expect(await pubsub.getHistory(topic)).toEqual([])
    }))

  it('stores data as JSON.stringify writes it, as the cache stores a value: members JSON cannot hold are left out', () =>
    withPubSub(async (pubsub, cache) => {
      const data = { kept: 1, fn: () => 1, sym: Symbol('s'), absent: undefined, list: [() => 1, Symbol('s'), undefined, 2] }
      await pubsub.publish(topic, { type: 'x', runId: 'r', data })
      await cache.set('value', data)
      const written = { kept: 1, list: [null, null, null, 2] }
      expect((await pubsub.getHistory(topic)).map((e) => e.data)).toEqual([written])
      expect(await cache.get('value')).toEqual(written)
      // No data at all is no data.
      await pubsub.publish(topic, { type: 'x', runId: 'r' })
      expect((await pubsub.getHistory(topic, 1))[0]!.data).toBeUndefined()
      await cache.delete('value')
    }))

  it('a topic cleared and written again under a reader ends it with ERR_TOPIC_REWRITTEN, not a silent gap', async () => {
    const errors: Error[] = []
    await withPubSub(
      async (pubsub) => {
        for (let n = 0; n < 3; n++) await pubsub.publish(topic, event(n))
        const iterated: number[] = []
        // Settled into a value at once, so its rejection is never unhandled.
        const iterating = (async () => {
          for await (const e of pubsub.subscribeWithReplay(topic, {})) iterated.push(e.index)
        })().then(
          () => 'ended without an error',
          (error: unknown) => error,
        )
        const called: number[] = []
        await pubsub.subscribeWithReplay(topic, (e) => void called.push(e.index))
        await eventually(() => iterated.length === 3 && called.length === 3)
        await pubsub.clearTopic(topic)
        // Indices 0..4 again, past where both readers stand: without the
        // check they would go on at 3 with the new events 3 and 4 only.
        for (let n = 10; n < 15; n++) await pubsub.publish(topic, event(n))
        expect(await iterating).toMatchObject({ code: 'ERR_TOPIC_REWRITTEN' })
        await eventually(() => errors.length === 1)
        expect(errors[0]).toMatchObject({ code: 'ERR_TOPIC_REWRITTEN' })
        expect(iterated).toEqual([0, 1, 2])
        expect(called).toEqual([0, 1, 2])
        // A reader that starts now reads the topic as it is.
        expect(ns(await pubsub.getHistory(topic))).toEqual([10, 11, 12, 13, 14])
      },
      { onError: (error) => void errors.push(error) },
    )
  })

  it('resuming { after } the last event received checks it first: rewritten, the iterator throws; intact, it goes on', () =>
    withPubSub(async (pubsub) => {
      for (let n = 0; n < 4; n++) await pubsub.publish(topic, event(n))
      const firstTwo: PubSubEvent[] = []
      for await (const e of pubsub.subscribeWithReplay(topic, {})) {
        firstTwo.push(e)
        if (firstTwo.length === 2) break
      }
      const last = firstTwo[1]!
      const resumed: number[] = []
      for await (const e of pubsub.subscribeWithReplay(topic, { after: last })) {
        resumed.push(e.index)
        if (resumed.length === 2) break
      }
      expect(resumed).toEqual([2, 3])
      // Mastra's callback form takes { after } in place of the offset.
      const called: number[] = []
      const cb = (e: PubSubEvent) => void called.push(e.index)
      await pubsub.subscribeFromOffset(topic, { after: last }, cb)
      expect(called).toEqual([2, 3])
      await pubsub.unsubscribe(topic, cb)
      // The same index with another event: the topic was written again.
      await pubsub.clearTopic(topic)
      for (let n = 10; n < 14; n++) await pubsub.publish(topic, event(n))
      const iterator = pubsub.subscribeWithReplay(topic, { after: last })
      await expect(iterator.next()).rejects.toMatchObject({ code: 'ERR_TOPIC_REWRITTEN' })
      await expect(pubsub.subscribeFromOffset(topic, { after: last }, () => {})).rejects.toMatchObject({ code: 'ERR_TOPIC_REWRITTEN' })
      await expect(pubsub.subscribeFromOffset(topic, {} as never, () => {})).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
      // An offset alone is not checked: it reads what is there now.
      const fromOffset = pubsub.subscribeWithReplay(topic, { offset: 2 })
      expect(((await fromOffset.next()).value?.data as { n: number }).n).toBe(12)
      await fromOffset.return!()
      expect(() => pubsub.subscribeWithReplay(topic, { after: { index: 1 } as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
      expect(() => pubsub.subscribeWithReplay(topic, { after: last, offset: 5 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
    }))

  it('callback errors go to onError, and delivery goes on', async () => {
    const errors: string[] = []
    await withPubSub(
      async (pubsub) => {
        const got: number[] = []
        await pubsub.subscribeWithReplay(topic, (e) => {
          got.push(e.index)
          if (e.index === 0) throw new Error('boom')
        })
        await pubsub.publish(topic, event(0))
        await pubsub.publish(topic, event(1))
        await eventually(() => got.length === 2)
        expect(errors).toEqual(['boom'])
      },
      { onError: (error) => void errors.push(error.message) },
    )
  })
})

describe('CachingPubSub stored format', () => {
  it('reads createdAt stored as ISO text (as earlier builds wrote it) as well as epoch ms', async () => {
    const keyPrefix = uniquePrefix('pubsub-format')
    const cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix })
    const client = createClient({ url: REDIS_URL })
    await client.connect()
    try {
      // Where earlier builds stored topics.
      const pubsub = new CachingPubSub(null, cache, { keyPrefix: 'pubsub:' })
      const key = redisKey(keyPrefix, 'pubsub:t')
      const iso = '2026-11-28T08:28:42.462Z'
      const body = JSON.stringify({ id: 'old', type: 'chunk', runId: 'run-1', data: { n: 0 }, createdAt: iso })
      await client.xAdd(key, '0-1', { e: body })
      const now = new Date()
      await pubsub.publish('t', { ...event(1), createdAt: now })
      const history = await pubsub.getHistory('t')
      expect(history.map((e) => e.createdAt)).toEqual([new Date(iso), now])
      const seen: Date[] = []
      for await (const e of pubsub.subscribeWithReplay('t', { offset: 0 })) {
        seen.push(e.createdAt)
        if (e.index === 1) break
      }
      expect(seen).toEqual([new Date(iso), now])
      // What is stored now: epoch ms.
      const [, stored] = (await client.xRange(key, '-', '+')).map((entry) => JSON.parse(entry.message.e!))
      expect(stored.createdAt).toBe(now.getTime())
    } finally {
      await client.del(redisKey(keyPrefix, 'pubsub:t'))
      await client.quit()
      await cache.close()
    }
  })
})

describe('CachingPubSub with an inner bus', () => {
  it('also publishes stored events, with their index, to the inner bus', async () => {
    const inner = new EventEmitterPubSub()
    const pubsub = new CachingPubSub(inner, new InMemoryServerCache())
    const live: { index?: number; type: string }[] = []
    await inner.subscribe('t', (e) => void live.push(e as never))
    await pubsub.publish('t', event(0))
    await pubsub.publish('t', event(1), { localOnly: true })
    await eventually(() => live.length === 2)
    expect(live.map((e) => e.index)).toEqual([0, undefined])
    // The local-only event was not stored.
    expect((await pubsub.getHistory('t')).map((e) => e.index)).toEqual([0])
    expect(pubsub.getInner()).toBe(inner)
  })

  it('rejects a cache it cannot build topic logs in', () => {
    expect(() => new CachingPubSub(null, {} as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
    const clientMode = new RedisServerCache({ client: {} as never })
    expect(() => new CachingPubSub(null, clientMode)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
  })
})

describe('CachingPubSub over a cache that gets closed', () => {
  it('ends callback subscriptions quietly, without reporting an error', async () => {
    const { RedisServerCache: Cache } = await import('../dist/index.js')
    const { REDIS_URL, uniquePrefix } = await import('./helpers.js')
    const cache = new Cache({ url: REDIS_URL }, { keyPrefix: uniquePrefix('closing') })
    const errors: Error[] = []
    const pubsub = new CachingPubSub(null, cache, { onError: (error) => void errors.push(error) })
    const got: number[] = []
    await pubsub.subscribe('t', (e) => void got.push(e.index))
    await pubsub.publish('t', event(0))
    await eventually(() => got.length === 1)
    await cache.clear()
    await cache.close()
    // The waiting reader wakes, meets the closed cache, and ends.
    await eventually(() => pubsub.stats().topicsRead === 0 && pubsub.stats().callsInFlight === 0, 5_000, 'the reader to end')
    expect(errors).toEqual([])
  })
})
