// Resource checks: subscribing and unsubscribing any number of times leaves
// nothing behind (no callback entry, no native reader, no call in flight), the
// process does not grow with it, and abandoned readers cost publishers nothing.
import { spawn } from 'node:child_process'
import { join } from 'node:path'

import { describe, expect, it } from 'vitest'

import type { CachingPubSub, PubSubEvent } from '../dist/index.js'
import { eventually, REDIS_URL, uniquePrefix } from './helpers.js'
import { backends, event } from './pubsub-backends.js'

const CYCLES_SCRIPT = join(__dirname, 'fixtures', 'pubsub-resource-cycles.mjs')

const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

const ZERO = { callbackSubscriptions: 0, topicsRead: 0, callsInFlight: 0 }
const idle = (pubsub: CachingPubSub) => {
  const stats = pubsub.stats()
  return stats.callbackSubscriptions === 0 && stats.topicsRead === 0 && stats.callsInFlight === 0
}

/**
 * Waits for `stats()` to be all zeros (a cancelled read reports back a moment
 * later), then asserts it, so a failure shows the numbers. A few event-loop
 * turns usually suffice; past them `eventually` polls, up to 3 s.
 */
async function expectIdle(pubsub: CachingPubSub, what: string): Promise<void> {
  for (let i = 0; i < 20 && !idle(pubsub); i++) await turn()
  await eventually(() => idle(pubsub), 3_000, what).catch(() => {})
  expect(pubsub.stats(), what).toEqual(ZERO)
}

const isAbortError = (error: unknown) => (error as { name?: string } | null)?.name === 'AbortError'

interface Measure {
  cycles: number
  heapUsed: number
  heapTotal: number
  rss: number
  stats: typeof ZERO
}

/** Runs the cycles fixture in `node --expose-gc` and returns its report. */
function runCyclesChild(args: string[]): Promise<{ points: Measure[]; failures: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', CYCLES_SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    child.once('error', reject)
    child.once('close', (code) => {
      if (code !== 0) return reject(new Error(`cycles child exited with ${code}: ${stderr}`))
      try {
        resolve(JSON.parse(stdout))
      } catch {
        reject(new Error(`cycles child printed no report: ${stdout} ${stderr}`))
      }
    })
  })
}

describe.each(backends)('CachingPubSub resources ($name)', (backend) => {
  async function withPubSub(body: (pubsub: CachingPubSub) => Promise<void>): Promise<void> {
    const { pubsub, done } = backend.make()
    try {
      await body(pubsub)
    } finally {
      await done()
    }
  }

  it('10,000 subscribe/unsubscribe cycles leave no callback subscription, reader or call in flight', { timeout: 60_000 }, () =>
    withPubSub(async (pubsub) => {
      const TOPICS = 8
      const topic = (i: number) => `resources.${i % TOPICS}`
      for (let t = 0; t < TOPICS; t++) {
        await pubsub.publish(topic(t), event(0))
        await pubsub.publish(topic(t), event(1))
      }
      // Finished iterators stay referenced until the end: ending one must
      // release its reader at once, not whenever the object is collected.
      const kept: AsyncIterableIterator<PubSubEvent>[] = []
      const failures: string[] = []
      const fail = (what: string) => void (failures.length < 10 && failures.push(what))
      const kinds = [0, 0, 0, 0]

      for (let i = 0; i < 10_000; i++) {
        const t = topic(i)
        const kind = i % 4
        kinds[kind]!++
        if (kind === 0) {
          // Callback form: the history before the promise resolves, then unsubscribe.
          const got: number[] = []
          const cb = (e: PubSubEvent) => void got.push(e.index)
          await pubsub.subscribeWithReplay(t, cb)
          if (got.join() !== '0,1') fail(`cycle ${i}: callback replay got [${got}]`)
          await pubsub.unsubscribe(t, cb)
        } else if (kind === 1) {
          // Iterator created, then return() before any next().
          const iterator = pubsub.subscribeWithReplay(t)
          kept.push(iterator)
          if (!(await iterator.return!()).done) fail(`cycle ${i}: return() did not end the iterator`)
        } else if (kind === 2) {
          // Iterator that read one stored event, then return().
          const iterator = pubsub.subscribeWithReplay(t, { offset: 1 })
          kept.push(iterator)
          const first = await iterator.next()
          if (first.value?.index !== 1) fail(`cycle ${i}: next() gave ${JSON.stringify(first.value)}`)
          if (!(await iterator.return!()).done) fail(`cycle ${i}: return() did not end the iterator`)
        } else {
          // Iterator waiting past the end, aborted (at once, or after a turn).
          const controller = new AbortController()
          const iterator = pubsub.subscribeWithReplay(t, { offset: 2, signal: controller.signal })
          kept.push(iterator)
          const waiting = iterator.next()
          if (i % 8 === 7) await turn()
          controller.abort()
          const outcome = await waiting.then(
            (result) => `resolved ${JSON.stringify(result)}`,
            (error: unknown) => (isAbortError(error) ? 'AbortError' : `rejected ${String(error)}`),
          )
          if (outcome !== 'AbortError') fail(`cycle ${i}: aborted next() ${outcome}`)
        }
      }

      expect(failures).toEqual([])
      expect(kinds).toEqual([2_500, 2_500, 2_500, 2_500])
      await expectIdle(pubsub, 'stats() after 10,000 subscribe/unsubscribe cycles')
      expect(kept).toHaveLength(7_500)
    }),
  )

  it('an iterator ended before its first next() (return() or abort) releases its reader at once', () =>
    withPubSub(async (pubsub) => {
      await pubsub.publish('early', event(0))
      const returned = pubsub.subscribeWithReplay('early')
      expect(await returned.return!()).toEqual({ done: true, value: undefined })
      const controller = new AbortController()
      const aborted = pubsub.subscribeWithReplay('early', { signal: controller.signal })
      controller.abort()
      // Both objects are still referenced: only closing can have freed their readers.
      await expectIdle(pubsub, 'stats() after return() / abort before the first next()')
      expect((await returned.next()).done).toBe(true)
      await expect(aborted.next()).rejects.toMatchObject({ name: 'AbortError' })
    }))

  it('unsubscribing while a read is in flight releases the reader (300 rounds)', { timeout: 60_000 }, () =>
    withPubSub(async (pubsub) => {
      for (let round = 0; round < 300; round++) {
        const topic = `in-flight.${round}`
        const got: number[] = []
        const cb = (e: PubSubEvent) => void got.push(e.index)
        await pubsub.subscribeWithReplay(topic, cb)
        // The reader waits; the publish wakes it, and we unsubscribe 0-3
        // turns later: sometimes before its read, sometimes during, sometimes after.
        for (let i = round % 3; i > 0; i--) await turn()
        await pubsub.publish(topic, event(0))
        for (let i = round % 4; i > 0; i--) await turn()
        await pubsub.unsubscribe(topic, cb)
        await expectIdle(pubsub, `stats() after unsubscribing in round ${round} (it had received [${got}])`)
        expect(got.length).toBeLessThanOrEqual(1)
      }
    }),
  )

  it('memory does not grow with subscribe/unsubscribe cycles (heap < 50 B/cycle, RSS bounded)', { timeout: 60_000 }, async () => {
    // In a `node --expose-gc` child: the test process has no `gc`, and the
    // numbers are not blurred by vitest's own allocations. Measured after a
    // warm-up of 1,000 cycles, then after 10,000 and 20,000 more.
    const keyPrefix = uniquePrefix('resources')
    const args = ['1000', '10000', '2', ...(backend.name === 'Redis' ? [REDIS_URL, keyPrefix] : [])]
    const report = await runCyclesChild([backend.name === 'Redis' ? 'redis' : 'memory', ...args])
    const [warm, first, second] = report.points as [Measure, Measure, Measure]
    const MB = 1e6
    const summary = JSON.stringify(report.points)
    expect(report.failures).toEqual([])
    expect(report.points.map((p) => p.cycles)).toEqual([1_000, 11_000, 21_000])
    // After a collection nothing of the cycles may remain.
    for (const point of report.points) expect(point.stats, summary).toEqual(ZERO)
    // JS heap after a full GC: anything a cycle left reachable (a listener,
    // a map entry, a pending promise, an iterator: 50 B to 1 KB each) shows
    // as >= 50 B/cycle; keeping one small object and string per cycle
    // measured 85-95 B/cycle. Without a leak: -20..+10 B/cycle.
    expect((first.heapUsed - warm.heapUsed) / 10_000, summary).toBeLessThan(50)
    expect((second.heapUsed - first.heapUsed) / 10_000, summary).toBeLessThan(50)
    // RSS moves in steps as V8 grows its young generation (heapTotal +4..8 MB
    // at a time), whatever the cycles do: measured +3..5.5 MB over the 20,000.
    expect((second.rss - warm.rss) / MB, summary).toBeLessThan(16)
    // RSS outside the V8 heap is native memory (readers, tasks, pages): a
    // leak there of >= 300 B/cycle adds >= 6 MB over 20,000 cycles.
    // Measured: -1.6..+1.0 MB.
    const outsideHeap = (m: Measure) => m.rss - m.heapTotal
    expect((outsideHeap(second) - outsideHeap(warm)) / MB, summary).toBeLessThan(6)
  })

  it('a topic with 1,000 abandoned iterators (aborted, never returned) keeps taking publishes', { timeout: 60_000 }, () =>
    withPubSub(async (pubsub) => {
      const topic = 'abandoned'
      const iterators: AsyncIterableIterator<PubSubEvent>[] = []
      const waiting: Promise<unknown>[] = []
      const controllers: AbortController[] = []
      for (let i = 0; i < 1_000; i++) {
        const controller = new AbortController()
        const iterator = pubsub.subscribeWithReplay(topic, { signal: controller.signal })
        // Half wait for a first event that never comes; half are never pulled.
        if (i % 2 === 0) waiting.push(iterator.next())
        iterators.push(iterator)
        controllers.push(controller)
      }
      for (const controller of controllers) controller.abort()
      const outcomes = await Promise.allSettled(waiting)
      expect(outcomes.filter((o) => o.status === 'rejected' && isAbortError(o.reason))).toHaveLength(500)

      // 10,000 publishes, 100 at a time: each gets its own index, gap-free.
      const indexOf = new Map<number, number>()
      for (let batch = 0; batch < 100; batch++) {
        const ns = Array.from({ length: 100 }, (_, j) => batch * 100 + j)
        const indices = await Promise.all(ns.map((n) => pubsub.publish(topic, event(n))))
        ns.forEach((n, j) => indexOf.set(n, indices[j]!))
      }
      const all = [...indexOf.values()].sort((a, b) => a - b)
      expect(all).toEqual(Array.from({ length: 10_000 }, (_, i) => i))

      const history = await pubsub.getHistory(topic)
      expect(history.map((e) => e.index)).toEqual(all)
      expect(history.every((e) => indexOf.get((e.data as { n: number }).n) === e.index)).toBe(true)

      // Nothing was delivered to, or is held for, the abandoned iterators.
      await expectIdle(pubsub, 'stats() after 1,000 aborted iterators and 10,000 publishes')
      for (const iterator of iterators) {
        const next = await iterator.next().then(
          (result) => (result.done ? 'done' : `event ${result.value.index}`),
          (error: unknown) => (isAbortError(error) ? 'AbortError' : String(error)),
        )
        expect(['done', 'AbortError']).toContain(next)
      }

      // A new reader gets the tail, and the topic is idle again once it leaves.
      const tail: number[] = []
      for await (const e of pubsub.subscribeWithReplay(topic, { offset: 9_990 })) {
        tail.push(e.index)
        if (tail.length === 10) break
      }
      expect(tail).toEqual(Array.from({ length: 10 }, (_, i) => 9_990 + i))
      await expectIdle(pubsub, 'stats() after the new reader left')
    }),
  )
})
