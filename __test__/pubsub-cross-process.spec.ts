import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { join } from 'node:path'

import { afterEach, beforeEach, describe, expect, it } from 'vitest'

import { CachingPubSub, RedisServerCache } from '../dist/index.js'
import { eventually, redisTargets, uniquePrefix } from './helpers.js'

const PUBLISHER = join(__dirname, 'fixtures', 'publisher.mjs')
const SUBSCRIBER = join(__dirname, 'fixtures', 'subscriber.mjs')

/** How long a child may take to get somewhere before the test gives up. */
const WAIT_MS = 20_000

interface Published {
  index: number
  n: number
  /** Just before `publish` was called, and once it resolved (ms, timeOrigin + now). */
  before: number
  after: number
}

interface Received {
  index: number
  n: number
  /** When the subscriber got it (ms, timeOrigin + now). */
  at: number
  id: string
  data: { n: number; source: string }
}

/** A fixture script in its own Node process, its stdout split into lines. */
class Child {
  readonly process: ChildProcessWithoutNullStreams
  readonly lines: string[] = []
  stderr = ''
  /** Resolves once the process ended and its stdout and stderr were read to the end. */
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  #partial = ''

  constructor(
    readonly name: string,
    script: string,
    args: string[],
    env: Record<string, string> = {},
  ) {
    this.process = spawn(process.execPath, [script, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    })
    this.process.stdout.setEncoding('utf8')
    this.process.stdout.on('data', (chunk: string) => {
      const parts = (this.#partial + chunk).split('\n')
      this.#partial = parts.pop()!
      this.lines.push(...parts)
    })
    this.process.stderr.setEncoding('utf8')
    this.process.stderr.on('data', (chunk: string) => (this.stderr += chunk))
    this.closed = new Promise((resolve) => this.process.once('close', (code, signal) => resolve({ code, signal })))
    children.add(this)
  }

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null
  }

  /** A line of stdout that did not end: a torn write. */
  get partial(): string {
    return this.#partial
  }

  get ready(): boolean {
    return this.stderr.split('\n').includes('ready')
  }

  /** Throws (with its stderr) if the process ended other than by the test's hand or with success. */
  checkAlive(): void {
    const { exitCode, signalCode } = this.process
    if (exitCode !== null && exitCode !== 0) throw new Error(`${this.name} exited with ${exitCode}: ${this.stderr}`)
    if (signalCode !== null) throw new Error(`${this.name} died of ${signalCode}: ${this.stderr}`)
  }

  async stop(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.process.kill(signal)
    return this.closed
  }
}

class Subscriber extends Child {
  /** `afterId`: the id of the event at `offset - 1`, to resume with `{ after }`. */
  constructor(name: string, redis: string, prefix: string, topic: string, offset: number, afterId?: string) {
    super(name, SUBSCRIBER, [redis, prefix, topic, String(offset), ...(afterId ? [afterId] : [])])
  }

  get events(): Received[] {
    return this.lines.map((line) => {
      const [index, n, at, ...json] = line.split(' ')
      const { id, data } = JSON.parse(json.join(' ')) as { id: string; data: Received['data'] }
      return { index: Number(index), n: Number(n), at: Number(at), id, data }
    })
  }

  get lastIndex(): number {
    const last = this.lines.at(-1)
    return last === undefined ? -1 : Number(last.split(' ')[0])
  }
}

class Publisher extends Child {
  constructor(name: string, redis: string, prefix: string, topic: string, count: number, intervalMs: number, source: string, gate = false) {
    super(name, PUBLISHER, [redis, prefix, topic, String(count), String(intervalMs), source], gate ? { PUBLISHER_GATE: '1' } : {})
  }

  get events(): Published[] {
    return this.lines.map((line) => {
      const [index, n, before, after] = line.split(' ').map(Number) as [number, number, number, number]
      return { index, n, before, after }
    })
  }

  go(): void {
    this.process.stdin.write('go\n')
  }
}

const children = new Set<Child>()

/** `eventually`, failing at once (with its stderr) when one of `watched` dies. */
function until(check: () => boolean, what: string, watched: Child[]): Promise<void> {
  return eventually(
    () => {
      for (const child of watched) child.checkAlive()
      return check()
    },
    WAIT_MS,
    what,
  )
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/** What the test compares of an event: the parts every reader must agree on. */
const identity = (e: { index: number; id: string; data: unknown }) => ({ index: e.index, id: e.id, data: e.data })

describe.each(redisTargets())('CachingPubSub across processes ($name)', (target) => {
  let prefix: string
  let cache: RedisServerCache
  let pubsub: CachingPubSub

  beforeEach(() => {
    prefix = uniquePrefix('xproc')
    cache = new RedisServerCache(target.connection, { keyPrefix: prefix })
    pubsub = new CachingPubSub(null, cache)
  })

  afterEach(async () => {
    try {
      // No child outlives its test, whatever happened in it.
      await Promise.all([...children].map((child) => child.stop('SIGKILL')))
      children.clear()
    } finally {
      await cache.clear()
      await cache.close()
    }
  })

  it('a subscriber killed mid-stream resumes in a new process from lastIndex + 1: no gap, no duplicate', async () => {
    const topic = 'agent.stream.kill-resume'
    const N = 300

    const first = new Subscriber('subscriber 1', target.arg, prefix, topic, 0)
    await until(() => first.ready, 'subscriber 1 to subscribe', [first])
    const publisher = new Publisher('publisher', target.arg, prefix, topic, N, 5, 'p')

    await until(() => first.lines.length >= 60, 'subscriber 1 to receive 60 events', [first, publisher])
    // Mid-stream: the publisher is still at it when the subscriber dies.
    expect(publisher.running).toBe(true)
    const publishedAtKill = publisher.lines.length
    expect(publishedAtKill).toBeLessThan(N)
    expect(await first.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' })
    expect(first.partial).toBe('')

    const before = first.events
    const lastIndex = first.lastIndex
    expect(before.length).toBeGreaterThanOrEqual(60)
    expect(lastIndex).toBeLessThan(N - 1)

    // Resumes after the last event it saw, which the new reader checks first.
    const second = new Subscriber('subscriber 2', target.arg, prefix, topic, lastIndex + 1, before.at(-1)!.id)
    await until(() => !publisher.running && second.lastIndex === N - 1, `the publisher to finish and subscriber 2 to reach index ${N - 1}`, [second, publisher])
    expect(await publisher.closed).toEqual({ code: 0, signal: null })
    // The subscriber ends cleanly on SIGTERM.
    expect(await second.stop('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(second.partial).toBe('')

    // Published events were still being stored after the kill, so the second
    // subscriber read history and then followed live ones.
    expect(publishedAtKill).toBeLessThan(N)
    const published = publisher.events
    expect(published.map((e) => e.index)).toEqual(range(0, N))
    expect(published.map((e) => e.n)).toEqual(range(0, N))

    const after = second.events
    expect(before.map((e) => e.index)).toEqual(range(0, lastIndex + 1))
    expect(after[0]!.index).toBe(lastIndex + 1)
    expect(after.map((e) => e.index)).toEqual(range(lastIndex + 1, N))

    const union = [...before, ...after]
    expect(union.map((e) => e.index)).toEqual(range(0, N))
    // data.n follows the publisher's order: what it got index i for is what readers got at i.
    const nByIndex = new Map(published.map((e) => [e.index, e.n]))
    expect(union.map((e) => e.n)).toEqual(union.map((e) => nByIndex.get(e.index)))
    expect(union.map((e) => e.data.n)).toEqual(range(0, N))
    expect(new Set(union.map((e) => e.id)).size).toBe(N)
    // And exactly what Redis holds.
    expect(union.map(identity)).toEqual((await pubsub.getHistory(topic)).map(identity))
  })

  it('two subscribers at different offsets see the one global order of two concurrent publishers', async () => {
    const topic = 'agent.stream.two-publishers'
    const PRE = 40
    const EACH = 150
    const TOTAL = PRE + 2 * EACH
    const [offsetA, offsetB] = [25, 150] // B starts beyond the end of the log when it subscribes

    for (let n = 0; n < PRE; n++) {
      expect(await pubsub.publish(topic, { type: 'chunk', runId: 'run-pre', data: { n, source: 'pre' } })).toBe(n)
    }
    const subA = new Subscriber('subscriber A', target.arg, prefix, topic, offsetA)
    const subB = new Subscriber('subscriber B', target.arg, prefix, topic, offsetB)
    const pubA = new Publisher('publisher a', target.arg, prefix, topic, EACH, 2, 'a', true)
    const pubB = new Publisher('publisher b', target.arg, prefix, topic, EACH, 2, 'b', true)
    const all = [subA, subB, pubA, pubB]
    await until(() => all.every((child) => child.ready), 'every child to connect', all)
    // A has replayed what was there; B, ahead of the log, has nothing yet.
    await until(() => subA.lastIndex === PRE - 1, `subscriber A to replay up to ${PRE - 1}`, all)
    expect(subB.lines).toEqual([])
    pubA.go()
    pubB.go()

    await until(
      () => !pubA.running && !pubB.running && subA.lastIndex === TOTAL - 1 && subB.lastIndex === TOTAL - 1,
      'both publishers to finish and both subscribers to reach the last index',
      all,
    )
    expect(await pubA.closed).toEqual({ code: 0, signal: null })
    expect(await pubB.closed).toEqual({ code: 0, signal: null })
    expect(await subA.stop('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await subB.stop('SIGTERM')).toEqual({ code: 0, signal: null })

    const history = await pubsub.getHistory(topic)
    expect(history.map((e) => e.index)).toEqual(range(0, TOTAL))

    // Each publisher's events are stored in its order, at the indices it was told.
    for (const publisher of [pubA, pubB]) {
      const source = publisher === pubA ? 'a' : 'b'
      const published = publisher.events
      expect(published.map((e) => e.n)).toEqual(range(0, EACH))
      const stored = history.filter((e) => (e.data as Received['data']).source === source)
      expect(stored.map((e) => (e.data as Received['data']).n)).toEqual(range(0, EACH))
      expect(stored.map((e) => e.index)).toEqual(published.map((e) => e.index))
    }
    // They really ran at the same time: their indices interleave.
    const [a, b] = [pubA.events.map((e) => e.index), pubB.events.map((e) => e.index)]
    expect(Math.min(...a)).toBeLessThan(Math.max(...b))
    expect(Math.min(...b)).toBeLessThan(Math.max(...a))

    // Every subscriber saw exactly the global sequence, from its offset.
    expect(subA.events.map(identity)).toEqual(history.slice(offsetA).map(identity))
    expect(subB.events.map(identity)).toEqual(history.slice(offsetB).map(identity))
    expect(subA.partial + subB.partial).toBe('')
  })

  it('publish-to-receive latency across processes on loopback (informational; asserts order and a loose bound)', async () => {
    const topic = 'agent.stream.latency'
    const N = 500

    const subscriber = new Subscriber('subscriber', target.arg, prefix, topic, 0)
    await until(() => subscriber.ready, 'the subscriber to subscribe', [subscriber])
    const publisher = new Publisher('publisher', target.arg, prefix, topic, N, 2, 'p')
    await until(() => !publisher.running && subscriber.lastIndex === N - 1, `the publisher to finish and the subscriber to reach index ${N - 1}`, [
      subscriber,
      publisher,
    ])
    expect(await publisher.closed).toEqual({ code: 0, signal: null })
    expect(await subscriber.stop('SIGTERM')).toEqual({ code: 0, signal: null })

    const published = publisher.events
    const received = subscriber.events
    expect(published.map((e) => e.index)).toEqual(range(0, N))
    expect(received.map((e) => e.index)).toEqual(range(0, N))
    expect(received.map((e) => e.n)).toEqual(published.map((e) => e.n))

    const sorted = (values: number[]) => values.sort((x, y) => x - y)
    // From the call to publish in one process to the event in the other's loop.
    const latency = sorted(received.map((e, i) => e.at - published[i]!.before))
    // From publish resolving (stored) to the event in the other process.
    const afterAck = sorted(received.map((e, i) => e.at - published[i]!.after))
    const ack = sorted(published.map((e) => e.after - e.before))
    const span = published.at(-1)!.before - published[0]!.before
    const fmt = (v: number[]) =>
      `p50 ${percentile(v, 50).toFixed(3)} ms, p99 ${percentile(v, 99).toFixed(3)} ms, min ${v[0]!.toFixed(3)} ms, max ${v.at(-1)!.toFixed(3)} ms`
    console.log(
      [
        `cross-process pub/sub over ${target.name} (${target.arg}), ${N} events over ${span.toFixed(0)} ms:`,
        `  publish call -> received:   ${fmt(latency)}`,
        `  publish resolved -> received: ${fmt(afterAck)}`,
        `  publish call -> resolved:   ${fmt(ack)}`,
      ].join('\n'),
    )
    // Loose sanity only: the 1 ms target is the benchmark's business.
    expect(percentile(latency, 99)).toBeLessThan(200)
  })
})
