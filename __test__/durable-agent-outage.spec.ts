/**
 * Durable runs across a store outage (issue 12): a Redis of the test's own,
 * which keeps its data across a restart, stopped and started again, or
 * frozen, in the middle of a tool call and in the middle of a model's stream.
 * A driver rides an outage out for up to its lease, keeping what it has in
 * hand, and goes on; one it cannot ride out leaves the run at its last
 * checkpoint, and every reader hears of it, here and elsewhere.
 *
 * The waits with a fixed length below are the outages themselves (how long
 * Redis is away), never a way to wait for something to happen.
 */
import type { LanguageModelV3StreamPart } from '@ai-sdk/provider'
import { MockLanguageModelV3 } from 'ai/test'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { createDurableAgent, RedisServerCache, type DurableAgent, type StreamPart } from '../dist/index.js'
import { eventually, freePort, persistentRedis, uniquePrefix, within, type OwnRedis } from './helpers.js'

const usage = {
  inputTokens: { total: 2, noCache: 2, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 1, text: 1, reasoning: undefined },
}
const finish = (unified: 'stop' | 'tool-calls'): LanguageModelV3StreamPart => ({
  type: 'finish',
  finishReason: { unified, raw: unified },
  usage,
})

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A promise and the function that resolves it. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

/** A stream of `parts`, each after `before(i)` (a model streaming at its own pace). */
function paced(parts: LanguageModelV3StreamPart[], before: (i: number) => Promise<void>): { stream: ReadableStream<LanguageModelV3StreamPart> } {
  let i = 0
  return {
    stream: new ReadableStream({
      async pull(controller) {
        if (i === parts.length) return controller.close()
        await before(i)
        controller.enqueue(parts[i++]!)
      },
    }),
  }
}

const TOKENS = Array.from({ length: 20 }, (_, i) => `tok${i} `)

describe('a durable run over a Redis that goes away', () => {
  let redis: OwnRedis
  beforeAll(async () => {
    redis = persistentRedis(await freePort())
    await redis.start()
  })
  afterAll(() => redis.stop())

  /** A cache on the test's Redis, with short timeouts so that failed attempts answer at once. */
  function cache(prefix: string): RedisServerCache {
    return new RedisServerCache({ url: redis.url }, { keyPrefix: prefix, connectTimeoutMs: 300, commandTimeoutMs: 1_000 })
  }

  /** The driving agent and an observer elsewhere (another cache: another connection), on one run store. */
  function agents(model: MockLanguageModelV3, tools: Record<string, unknown>, leaseMs: number, outageMs?: number) {
    const prefix = uniquePrefix('outage')
    const caches = [cache(prefix), cache(prefix)] as const
    const make = (cache: RedisServerCache) =>
      createDurableAgent({
        agent: { id: 'outage', model, tools: tools as never },
        cache,
        leaseMs,
        ...(outageMs !== undefined ? { outageMs } : {}),
        cleanupTimeoutMs: 0,
      })
    const driver = make(caches[0])
    const elsewhere = make(caches[1])
    const done = async () => {
      await caches[0].clear()
      for (const cache of caches) await cache.close()
    }
    return { driver, elsewhere, done }
  }

  /**
   * A reader of the run in `agent`, attached before the fault (which waits
   * for `attached`): everything it hands out, and the error it ended with
   * (an output hands a failure out as its last part, an `error`).
   */
  async function read(agent: DurableAgent, runId: string, attached: () => void): Promise<{ parts: StreamPart[]; error?: { code?: string; message: string } }> {
    const parts: StreamPart[] = []
    const { output } = await agent.observe(runId)
    attached()
    for await (const part of output.fullStream as ReadableStream<StreamPart>) parts.push(part)
    const last = parts.at(-1)
    return last?.type === 'error' ? { parts, error: (last as { error: { code?: string; message: string } }).error } : { parts }
  }

  /** Every part of a stream. */
  async function collect(stream: ReadableStream<StreamPart>): Promise<StreamPart[]> {
    const parts: StreamPart[] = []
    for await (const part of stream) parts.push(part)
    return parts
  }

  const texts = (parts: StreamPart[]) => parts.flatMap((p) => (p.type === 'text-delta' ? [(p as { text: string }).text] : [])).join('')

  it('the first call after Redis came back succeeds, whether the cache was idle or failing meanwhile', async () => {
    const idle = cache(uniquePrefix('idle'))
    const failing = cache(uniquePrefix('failing'))
    try {
      await idle.set('k', 1)
      await failing.set('k', 1)
      await redis.stop()
      await expect(failing.get('k')).rejects.toMatchObject({ code: 'ERR_REDIS_UNAVAILABLE' })
      await expect(failing.get('k')).rejects.toMatchObject({ code: 'ERR_REDIS_UNAVAILABLE' })
      await redis.start()
      // The one's socket closed while nobody used it; the other's last attempt to connect failed.
      expect(await idle.get('k')).toBe(1)
      expect(await failing.get('k')).toBe(1)
    } finally {
      await redis.start()
      await idle.clear()
      await idle.close()
      await failing.close()
    }
  })

  it('Redis restarted in the middle of a tool call (down 1 s, lease 1.5 s): the run goes on, the tool runs once', async () => {
    let toolRuns = 0
    const attached = signal()
    const model = new MockLanguageModelV3({
      doStream: async ({ prompt }) =>
        prompt.some((m) => m.role === 'tool')
          ? paced(
              [{ type: 'text-start', id: 't' }, { type: 'text-delta', id: 't', delta: 'Charged.' }, { type: 'text-end', id: 't' }, finish('stop')],
              async () => {},
            )
          : paced([{ type: 'tool-call', toolCallId: 'c1', toolName: 'charge', input: '{"amount":10}' }, finish('tool-calls')], async () => {}),
    })
    const { driver, elsewhere, done } = agents(
      model,
      {
        charge: {
          inputSchema: { type: 'object', properties: { amount: { type: 'number' } } },
          // Redis goes away while the tool runs: its result must be checkpointed once Redis is back.
          execute: async () => {
            toolRuns++
            await attached.promise
            await redis.stop()
            return { charged: true }
          },
        },
      },
      1_500,
    )
    try {
      const run = await driver.stream('charge 10')
      const own = collect(run.fullStream as ReadableStream<StreamPart>)
      const observed = read(elsewhere, run.runId, attached.resolve)
      await eventually(() => toolRuns === 1, 10_000, 'the tool call')
      await pause(1_000)
      await redis.start()
      expect(await within(run.output.text, 20_000, 'the run to finish')).toBe('Charged.')
      const { parts, error } = await within(observed, 20_000, 'the observer to end')
      expect(error).toBeUndefined()
      expect(parts.at(-1)?.type).toBe('finish')
      expect(parts.filter((p) => p.type === 'tool-result')).toHaveLength(1)
      expect(toolRuns).toBe(1)
      expect(await own).toEqual(parts)
    } finally {
      await redis.start()
      await done()
    }
  }, 60_000)

  it('Redis restarted in the middle of a model stream (down 1 s): every token once, in order', async () => {
    const parts: LanguageModelV3StreamPart[] = [
      { type: 'text-start', id: 't' },
      ...TOKENS.map((delta): LanguageModelV3StreamPart => ({ type: 'text-delta', id: 't', delta })),
      { type: 'text-end', id: 't' },
      finish('stop'),
    ]
    let stopped = false
    const attached = signal()
    const model = new MockLanguageModelV3({
      doStream: async () =>
        paced(parts, async (i) => {
          // The model streams at its pace; Redis goes away after token 5.
          await pause(20)
          if (i === 7 && !stopped) {
            await attached.promise
            stopped = true
            await redis.stop()
          }
        }),
    })
    const { driver, elsewhere, done } = agents(model, {}, 1_500)
    try {
      const run = await driver.stream('count')
      const observed = read(elsewhere, run.runId, attached.resolve)
      await eventually(() => stopped, 10_000, 'the stream to reach token 5')
      await pause(1_000)
      await redis.start()
      expect(await within(run.output.text, 20_000, 'the run to finish')).toBe(TOKENS.join(''))
      const seen = await within(observed, 20_000, 'the observer to end')
      expect(seen.error).toBeUndefined()
      expect(texts(seen.parts)).toBe(TOKENS.join(''))
      expect(seen.parts.at(-1)?.type).toBe('finish')
    } finally {
      await redis.start()
      await done()
    }
  }, 60_000)

  it('Redis frozen for 3 s in the middle of a tool call (lease 1.5 s): the run goes on, taking its lapsed lease back', async () => {
    let toolRuns = 0
    const attached = signal()
    const model = new MockLanguageModelV3({
      doStream: async ({ prompt }) =>
        prompt.some((m) => m.role === 'tool')
          ? paced(
              [{ type: 'text-start', id: 't' }, { type: 'text-delta', id: 't', delta: 'Frozen and back.' }, { type: 'text-end', id: 't' }, finish('stop')],
              async () => {},
            )
          : paced([{ type: 'tool-call', toolCallId: 'c1', toolName: 'wait', input: '{}' }, finish('tool-calls')], async () => {}),
    })
    const { driver, elsewhere, done } = agents(
      model,
      {
        wait: {
          inputSchema: { type: 'object' },
          execute: async () => {
            toolRuns++
            await attached.promise
            redis.freeze()
            return { ok: true }
          },
        },
      },
      1_500,
    )
    try {
      const run = await driver.stream('freeze')
      const observed = read(elsewhere, run.runId, attached.resolve)
      await eventually(() => toolRuns === 1, 10_000, 'the tool call')
      await pause(3_000)
      redis.thaw()
      const full = await within(run.output.getFullOutput(), 20_000, 'the run to finish')
      expect(full.error).toBeUndefined()
      expect(full.text).toBe('Frozen and back.')
      const { parts, error } = await within(observed, 20_000, 'the observer to end')
      expect(error).toBeUndefined()
      expect(parts.at(-1)?.type).toBe('finish')
      expect(toolRuns).toBe(1)
    } finally {
      redis.thaw()
      await done()
    }
  }, 60_000)

  it('an outage longer than outageMs: the driver gives up with the cause, readers elsewhere hear of it, recover finishes the run', async () => {
    const keys: string[] = []
    let outage = true
    const attached = signal()
    const model = new MockLanguageModelV3({
      doStream: async ({ prompt }) =>
        prompt.some((m) => m.role === 'tool')
          ? paced(
              [{ type: 'text-start', id: 't' }, { type: 'text-delta', id: 't', delta: 'Recovered.' }, { type: 'text-end', id: 't' }, finish('stop')],
              async () => {},
            )
          : paced([{ type: 'tool-call', toolCallId: 'c1', toolName: 'charge', input: '{}' }, finish('tool-calls')], async () => {}),
    })
    const { driver, elsewhere, done } = agents(
      model,
      {
        charge: {
          inputSchema: { type: 'object' },
          execute: async (_input: unknown, { idempotencyKey }: { idempotencyKey: string }) => {
            keys.push(idempotencyKey)
            if (outage) {
              await attached.promise
              await redis.stop()
            }
            return { charged: true }
          },
        },
      },
      500,
      1_500,
    )
    try {
      const run = await driver.stream('charge')
      const observed = read(elsewhere, run.runId, attached.resolve)
      // The driver's own output ends with the store's error, naming the cause and what to do.
      const failed = await within(run.output.getFullOutput(), 20_000, 'the driver to give up')
      expect(failed.outcome).toBe('failed')
      expect(failed.error).toMatchObject({ code: 'ERR_REDIS_UNAVAILABLE' })
      expect(failed.error?.message).toMatch(/gave up driving it after the store was unreachable for \d+ ms/)
      expect(failed.error?.message).toMatch(/recover/)
      outage = false
      await redis.start()
      // The run is where its last checkpoint left it, and nobody drives it.
      const active = (await elsewhere.listActiveRuns()).runs
      expect(active).toEqual([expect.objectContaining({ runId: run.runId, driven: false })])
      // A reader elsewhere is told, not left waiting.
      const seen = await within(observed, 20_000, 'the observer to hear of it')
      expect(seen.parts.map((p) => p.type)).not.toContain('finish')
      expect(seen.error).toMatchObject({ code: 'ERR_RUN_ABANDONED' })
      // Any process can finish it: the tool's result was never checkpointed, so it runs again, with the same key.
      const recovered = await elsewhere.recover(run.runId)
      expect(await within(recovered.output.text, 20_000, 'the recovered run')).toBe('Recovered.')
      expect(keys).toHaveLength(2)
      expect(keys[1]).toBe(keys[0])
    } finally {
      await redis.start()
      await done()
    }
  }, 60_000)
})
