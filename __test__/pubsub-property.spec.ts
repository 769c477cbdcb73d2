// Randomised property test of CachingPubSub's delivery guarantees.
//
// Each case: a fresh topic, 1-4 concurrent publishers (0-15 events each, with
// random microtask / setImmediate yields between publishes), and 1-3 readers
// that subscribe before, during or after publishing, at random offsets, with
// the iterator and the callback forms, some of them disconnecting after a few
// events and reconnecting (from the last index seen + 1, or a new offset).
//
// Property:
// - the publishes got indices 0..N-1, each once, each publisher's in its own
//   publish order, and the stored history is exactly that;
// - every reader got, per "chain" of sessions (a subscription plus the
//   reconnections that resumed from its last index + 1), the published events
//   from the chain's starting offset, each exactly once, in index order, with
//   no gap, up to the end (the last chain) or up to where it disconnected;
// - the callback forms delivered the history stored when they were called
//   before their promise resolved, and nothing after `unsubscribe`;
// - once the readers are gone, `stats()` is back to zero everywhere.
//
// PROPERTY_SEED (a uint32, decimal or 0x-hex) and PROPERTY_CASES override the
// seed and the number of cases; PROPERTY_CASE=n runs case n of that seed only.
// A case's random choices depend only on (seed, case number), so a failure
// replays with the command it prints (the interleaving with the store's own
// timing can still differ from run to run).
import { randomInt } from 'node:crypto'

import { afterAll, describe, expect, it } from 'vitest'

import { CachingPubSub, InMemoryServerCache, RedisServerCache, type PubSubEvent } from '../dist/index.js'
import { eventually, REDIS_URL, redisClusterNodes, uniquePrefix } from './helpers.js'

const SEED = parseSeed(process.env.PROPERTY_SEED) ?? randomInt(2 ** 32 - 1) >>> 0
const CASES = parseCount(process.env.PROPERTY_CASES, 'PROPERTY_CASES') ?? 1_000
const ONLY_CASE = parseCount(process.env.PROPERTY_CASE, 'PROPERTY_CASE')
/** A case that has not finished after this long failed (an event never arrived). */
const CASE_DEADLINE_MS = 10_000

function parseSeed(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined
  const value = Number(text)
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new Error(`PROPERTY_SEED must be a uint32, got ${text}`)
  return value >>> 0
}

function parseCount(text: string | undefined, name: string): number | undefined {
  if (text === undefined || text === '') return undefined
  const value = Number(text)
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be an integer >= 0, got ${text}`)
  return value
}

// ---------------------------------------------------------------------------
// Seeded PRNG (mulberry32).

class Rng {
  #state: number
  constructor(seed: number) {
    this.#state = seed >>> 0
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0
    let t = this.#state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }

  chance(p: number): boolean {
    return this.next() < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!
  }

  /** An independent generator: each actor of a case draws from its own. */
  fork(): Rng {
    return new Rng(Math.floor(this.next() * 4294967296))
  }
}

/** The generator of case `n`: depends on the seed and `n` only. */
function caseRng(seed: number, n: number): Rng {
  let h = (seed ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0
  return new Rng((h ^ (h >>> 16)) >>> 0)
}

/** A random small pause that is never a timer: nothing, microtasks, or a macrotask turn. */
async function randomYield(rng: Rng): Promise<void> {
  switch (rng.int(0, 4)) {
    case 0:
      return
    case 1:
      await null
      return
    case 2:
      for (let i = rng.int(1, 4); i > 0; i--) await Promise.resolve()
      return
    case 3:
      await new Promise<void>((resolve) => setImmediate(resolve))
      return
    default:
      await null
      await new Promise<void>((resolve) => setImmediate(resolve))
  }
}

const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

/** Waits for `check`: a few event-loop turns first (the usual case), then `eventually`. */
async function settle(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 20; i++) {
    if (check()) return
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
  await eventually(check, 5_000, what)
}

/** What the cases of one backend exercised, printed at the end. */
class Tally {
  cases = 0
  published = 0
  delivered = 0
  /** Delivered by another client (connection) than the one that published. */
  crossClient = 0
  sessions = new Map<string, number>()
  resumed = 0
  restarted = 0

  count(key: string): void {
    this.sessions.set(key, (this.sessions.get(key) ?? 0) + 1)
  }

  toString(): string {
    const sessions = [...this.sessions].sort().map(([key, n]) => `${key} ${n}`)
    return (
      `${this.cases} cases, ${this.published} events published, ${this.delivered} delivered ` +
      `(${this.crossClient} across clients), reconnections: ${this.resumed} resumed + ${this.restarted} from a new offset; ` +
      `sessions: ${sessions.join(', ')}`
    )
  }
}

const isAbortError = (error: unknown) => (error as { name?: string } | null)?.name === 'AbortError'

// ---------------------------------------------------------------------------
// One case.

interface Target {
  name: string
  /** Readers and publishers use any of these; more than one only for Redis (one per connection). */
  clients: CachingPubSub[]
}

interface Chain {
  /** The first index this chain must get; undefined for a live `subscribe` (bounded by lo/hi). */
  start: number | undefined
  lo: number
  hi: number
  events: PubSubEvent[]
  /** Each session of the chain, for the failure report. */
  sessions: SessionLog[]
}

interface SessionLog {
  text: string
  /** Its events are `chain.events` from `from` to `to` (still open: to the end). */
  from: number
  to?: number
  reason?: string
}

function describeChain(chain: Chain): string {
  return chain.sessions
    .map((s) => {
      const indices = chain.events.slice(s.from, s.to).map((e) => e.index)
      return `${s.text} → [${indices.join(',')}] ${s.to === undefined ? '(still open)' : s.reason}`
    })
    .join(' | ')
}

interface ReaderState {
  id: number
  when: string
  chains: Chain[]
}

class Case {
  readonly topic: string
  readonly N: number
  readonly counts: number[]
  /** index → [publisher, its k-th event]. */
  readonly published = new Map<number, [number, number]>()
  readonly byPublisher: number[][]
  started = 0
  resolved = 0
  maxResolved = -1
  readonly readers: ReaderState[] = []
  readonly violations: string[] = []
  /** Closes every open session: used when the case misses its deadline. */
  readonly closers = new Set<() => void>()
  readonly #waiters: { count: number; resolve: () => void }[] = []
  allPublished!: Promise<void>

  readonly publisherClients: string[] = []
  /** index → the client that published it. */
  readonly publishedBy = new Map<number, CachingPubSub>()

  constructor(
    readonly target: Target,
    readonly n: number,
    readonly rng: Rng,
    readonly tally: Tally,
  ) {
    this.topic = `prop.${SEED.toString(16)}.${n}`
    const publishers = rng.int(1, 4)
    this.counts = Array.from({ length: publishers }, () => rng.int(0, 15))
    this.N = this.counts.reduce((a, b) => a + b, 0)
    this.byPublisher = this.counts.map(() => [])
  }

  client(rng: Rng): CachingPubSub {
    return rng.pick(this.target.clients)
  }

  clientName(client: CachingPubSub): string {
    return this.target.clients.length > 1 ? `@${this.target.clients.indexOf(client)}` : ''
  }

  /** Resolves once `count` publishes have resolved. */
  whenResolved(count: number): Promise<void> {
    if (this.resolved >= count) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push({ count, resolve }))
  }

  async run(): Promise<void> {
    const publisherRngs = this.counts.map(() => this.rng.fork())
    const readerCount = this.rng.int(1, 3)
    const readerRngs = Array.from({ length: readerCount }, () => this.rng.fork())
    // Publishing starts once every "before" reader has subscribed.
    const gates: Promise<void>[] = []
    const readers = readerRngs.map((rng, r) => {
      const when = rng.pick(['before', 'during', 'after'] as const)
      let subscribed = () => {}
      if (when === 'before') gates.push(new Promise<void>((resolve) => (subscribed = resolve)))
      return this.#reader(r, rng, when, subscribed)
    })
    this.allPublished = Promise.all(gates)
      .then(() => Promise.all(publisherRngs.map((rng, p) => this.#publisher(p, rng))))
      .then(() => undefined)
    await Promise.all([this.allPublished, ...readers])
  }

  async #publisher(p: number, rng: Rng): Promise<void> {
    const client = this.client(rng)
    this.publisherClients[p] = this.clientName(client)
    for (let k = 0; k < this.counts[p]!; k++) {
      await randomYield(rng)
      this.started++
      const index = await client.publish(this.topic, { type: 'chunk', runId: `p${p}`, data: { p, k } })
      if (typeof index !== 'number') throw new Error(`publish resolved ${String(index)}, not an index`)
      if (this.published.has(index)) this.violations.push(`index ${index} given to two publishes`)
      this.published.set(index, [p, k])
      this.publishedBy.set(index, client)
      this.tally.published++
      this.byPublisher[p]!.push(index)
      this.resolved++
      this.maxResolved = Math.max(this.maxResolved, index)
      for (let i = this.#waiters.length - 1; i >= 0; i--) {
        if (this.resolved >= this.#waiters[i]!.count) this.#waiters.splice(i, 1)[0]!.resolve()
      }
    }
  }

  async #reader(r: number, rng: Rng, when: 'before' | 'during' | 'after', subscribed: () => void): Promise<void> {
    const state: ReaderState = { id: r, chains: [], when }
    this.readers.push(state)
    await Promise.resolve() // let `allPublished` be set
    if (when === 'during') await this.whenResolved(rng.int(0, this.N))
    else if (when === 'after') await this.allPublished
    await randomYield(rng)

    let disconnects = rng.int(0, 2)
    let chain = this.#newChain(state)
    let resumeFrom: number | undefined
    for (;;) {
      const limit = disconnects > 0 ? rng.int(1, 6) : Infinity
      const ended = await this.#session(chain, rng, limit, resumeFrom, subscribed)
      if (ended === 'complete') return
      disconnects--
      await randomYield(rng)
      const last = chain.events.at(-1)!.index
      if (rng.chance(0.7)) {
        resumeFrom = last + 1
        this.tally.resumed++
      } else {
        this.tally.restarted++
        chain = this.#newChain(state)
        resumeFrom = undefined
      }
    }
  }

  #newChain(state: ReaderState): Chain {
    const chain: Chain = { start: undefined, lo: 0, hi: Infinity, events: [], sessions: [] }
    state.chains.push(chain)
    return chain
  }

  /**
   * One subscription, from `resumeFrom` when resuming a chain, else from a
   * random offset. Ends after `limit` events ('disconnected'), or once the
   * chain has everything it can get ('complete').
   */
  async #session(chain: Chain, rng: Rng, limit: number, resumeFrom: number | undefined, subscribed: () => void): Promise<'disconnected' | 'complete'> {
    const client = this.client(rng)
    let form = rng.pick(['iterator', 'callback'] as const)
    let kind: 'none' | 'zero' | 'middle' | 'past' | 'live' | 'resume' | 'resume after'
    let offset: number | undefined
    // An iterator may resume { after } the last event it got, which its
    // first read checks is still there: it always is here, so the check must
    // never fire.
    let resumeAfter: PubSubEvent | undefined
    if (resumeFrom !== undefined) {
      kind = form === 'iterator' && rng.chance(0.5) ? 'resume after' : 'resume'
      offset = resumeFrom
      if (kind === 'resume after') resumeAfter = chain.events.at(-1)!
    } else {
      kind = rng.pick(['none', 'zero', 'middle', 'past', 'live'] as const)
      if (kind === 'live') form = 'callback'
      if (kind === 'zero') offset = 0
      else if (kind === 'middle') offset = this.N > 0 ? rng.int(0, this.N - 1) : 0
      else if (kind === 'past') offset = this.maxResolved + 1 + rng.int(0, 2)
      chain.start = kind === 'live' ? undefined : (offset ?? 0)
    }
    const mode = form === 'iterator' ? rng.pick(['break', 'return', 'abort'] as const) : rng.pick(['unsubscribe inside', 'unsubscribe after'] as const)
    const label = `${form}${this.clientName(client)} ${kind}${offset === undefined ? '' : `=${offset}`} ${mode} limit=${limit}`
    const before = chain.events.length
    const sessionLog: SessionLog = { text: label, from: before }
    chain.sessions.push(sessionLog)
    this.tally.count(`${form}/${mode}`)
    this.tally.count(`from ${kind}`)
    const got = () => chain.events.length - before

    let reason: 'disconnected' | 'complete' | undefined
    let endSession!: () => void
    const ended = new Promise<void>((resolve) => (endSession = resolve))
    /** Records an event; true once the session should end. */
    const take = (event: PubSubEvent): boolean => {
      chain.events.push(event)
      this.tally.delivered++
      if (this.publishedBy.has(event.index) && this.publishedBy.get(event.index) !== client) this.tally.crossClient++
      if (reason) return true
      if (got() >= limit) reason = 'disconnected'
      else if (event.index === this.N - 1) reason = 'complete'
      return reason !== undefined
    }
    /** Whether more events must arrive: yes, no, or unknown (a live start with nothing yet). */
    const expectsMore = (): boolean | undefined => {
      const last = chain.events.at(-1)?.index
      if (last !== undefined) return last + 1 < this.N
      if (chain.start !== undefined) return chain.start < this.N
      return chain.hi < this.N ? true : undefined
    }
    /** A session with nothing (more) to get ends once publishing is over. */
    const watchIdle = () => {
      if (expectsMore() === true) return
      void this.allPublished
        .then(() => turns(3))
        .then(async () => {
          if (expectsMore() === undefined) {
            // A live start while the last publishes were in flight: its first
            // index is unknown (maybe N). Once it has some, it gets the rest.
            await settle(() => chain.events.length === 0 || chain.events.at(-1)!.index === this.N - 1, 'a live reader to catch up')
          }
          if (!reason) reason = 'complete'
          endSession()
        })
        // Publishing failed (the case fails with that error too) or a live
        // reader never caught up: either way a violation, never an
        // unhandled rejection that outlives the case.
        .catch((error: unknown) => {
          this.violations.push(`session ${label} ended by: ${error instanceof Error ? error.message : String(error)}`)
          endSession()
        })
    }

    try {
      if (form === 'iterator') {
        const controller = new AbortController()
        const close = () => {
          if (!reason) reason = 'complete'
          controller.abort()
        }
        this.closers.add(close)
        const options =
          resumeAfter !== undefined
            ? { after: resumeAfter, signal: controller.signal }
            : offset === undefined
              ? { signal: controller.signal }
              : { offset, signal: controller.signal }
        const iterator = client.subscribeWithReplay(this.topic, options)
        subscribed()
        void ended.then(() => controller.abort())
        watchIdle()
        try {
          if (mode === 'return') {
            for (;;) {
              const result = await iterator.next()
              if (result.done) {
                this.violations.push(`iterator ended by itself (${label})`)
                break
              }
              if (take(result.value)) {
                const returned = await iterator.return!()
                if (!returned.done) this.violations.push(`return() did not end the iterator (${label})`)
                break
              }
            }
          } else {
            for await (const event of iterator) {
              if (take(event)) {
                if (mode === 'break') break
                controller.abort() // then keeps iterating until the AbortError
              }
            }
            if (mode === 'abort' && controller.signal.aborted) this.violations.push(`aborted iterator ended without an AbortError (${label})`)
          }
        } catch (error) {
          if (!(controller.signal.aborted && isAbortError(error))) throw error
        } finally {
          this.closers.delete(close)
        }
        const after = await iterator.next()
        if (!after.done) this.violations.push(`iterator yielded index ${after.value.index} after it ended (${label})`)
      } else {
        let open = true
        const cb = (event: PubSubEvent) => {
          if (!open) {
            this.violations.push(`callback got index ${event.index} after unsubscribe (${label})`)
            return
          }
          if (take(event)) {
            if (mode === 'unsubscribe inside') {
              void client.unsubscribe(this.topic, cb)
              open = false
            }
            endSession()
          }
        }
        const close = () => {
          if (!reason) reason = 'complete'
          endSession()
        }
        this.closers.add(close)
        const storedBefore = this.maxResolved
        if (kind === 'live') {
          chain.lo = storedBefore + 1
          await client.subscribe(this.topic, cb)
          chain.hi = this.started
        } else if (offset === undefined) {
          await client.subscribeWithReplay(this.topic, cb)
        } else {
          await client.subscribeFromOffset(this.topic, offset, cb)
        }
        subscribed()
        const from = offset ?? 0
        if (kind !== 'live' && !reason && from <= storedBefore) {
          const last = chain.events.length > before ? chain.events.at(-1)!.index : from - 1
          if (last < storedBefore) {
            this.violations.push(`callback had up to index ${last} when its subscribe resolved, not the stored ${storedBefore} (${label})`)
          }
        }
        watchIdle()
        await ended
        if (open) {
          const unsubscribing = client.unsubscribe(this.topic, cb)
          open = false
          await unsubscribing
        }
        this.closers.delete(close)
      }
    } finally {
      subscribed()
      sessionLog.to = chain.events.length
      sessionLog.reason = reason ?? 'threw'
    }
    return reason ?? 'complete'
  }

  /** Problems with what was published and received; empty when the property holds. */
  async check(): Promise<string[]> {
    const problems = [...this.violations]
    const N = this.N
    const indices = [...this.published.keys()].sort((a, b) => a - b)
    if (indices.length !== N || indices.some((index, i) => index !== i)) problems.push(`published indices are [${indices}], not 0..${N - 1}`)
    this.byPublisher.forEach((list, p) => {
      if (list.some((index, k) => k > 0 && index <= list[k - 1]!)) problems.push(`publisher ${p} got indices [${list}], not increasing`)
    })
    const history = await this.target.clients[0]!.getHistory(this.topic)
    if (history.length !== N) problems.push(`history has ${history.length} events, not ${N}`)
    history.forEach((event, i) => {
      const origin = this.published.get(i)
      if (event.index !== i) problems.push(`history[${i}] has index ${event.index}`)
      else if (!origin || !sameData(event, origin)) problems.push(`history[${i}] is ${JSON.stringify(event.data)}, published ${JSON.stringify(origin)}`)
    })

    for (const reader of this.readers) {
      reader.chains.forEach((chain, c) => {
        const final = c === reader.chains.length - 1
        const got = chain.events.map((e) => e.index)
        const where = `reader ${reader.id} chain ${c} (${describeChain(chain)})`
        for (let i = 1; i < got.length; i++) {
          if (got[i] !== got[i - 1]! + 1) {
            problems.push(`${where}: got [${got}], not consecutive at position ${i}`)
            break
          }
        }
        if (chain.start !== undefined) {
          if (got.length > 0 && got[0] !== chain.start) problems.push(`${where}: starts at ${got[0]}, not at offset ${chain.start}`)
          if (final && chain.start < N && got.at(-1) !== N - 1) problems.push(`${where}: got [${got}], not up to ${N - 1}`)
        } else {
          if (got.length > 0 && (got[0]! < chain.lo || got[0]! > chain.hi)) {
            problems.push(`${where}: live start ${got[0]} outside [${chain.lo}, ${chain.hi}]`)
          }
          // Subscribed before the last publish started: it must get everything from its start on.
          // Otherwise its start may be N (nothing to get), and the session ended once publishing was over.
          if (final && chain.hi < N && got.at(-1) !== N - 1) problems.push(`${where}: got [${got}], not up to ${N - 1}`)
        }
        if (!final && got.length === 0) problems.push(`${where}: disconnected without events`)
        for (const event of chain.events) {
          const stored = history[event.index]
          if (!stored || !sameEvent(event, stored)) {
            problems.push(`${where}: index ${event.index} is ${JSON.stringify(event)}, stored ${JSON.stringify(stored)}`)
            break
          }
        }
      })
    }
    return problems
  }

  describe(): string {
    const publishers = this.counts.map((count, p) => `${count}${this.publisherClients[p] ?? ''}`)
    const lines = [`topic ${this.topic}, publishers [${publishers.join(', ')}] (N=${this.N})`]
    for (const reader of this.readers) {
      reader.chains.forEach((chain, c) => lines.push(`  reader ${reader.id} (${reader.when}) chain ${c}: ${describeChain(chain)}`))
    }
    return lines.join('\n')
  }
}

function sameData(event: PubSubEvent, [p, k]: [number, number]): boolean {
  const data = event.data as { p?: unknown; k?: unknown } | null
  return event.type === 'chunk' && event.runId === `p${p}` && data?.p === p && data?.k === k
}

function sameEvent(a: PubSubEvent, b: PubSubEvent): boolean {
  return (
    a.index === b.index &&
    a.id === b.id &&
    a.type === b.type &&
    a.runId === b.runId &&
    JSON.stringify(a.data) === JSON.stringify(b.data) &&
    a.createdAt instanceof Date &&
    a.createdAt.getTime() === b.createdAt.getTime()
  )
}

const zero = (client: CachingPubSub) => {
  const { callbackSubscriptions, topicsRead, callsInFlight } = client.stats()
  return callbackSubscriptions === 0 && topicsRead === 0 && callsInFlight === 0
}

async function runCase(target: Target, n: number, tally: Tally): Promise<void> {
  const test = new Case(target, n, caseRng(SEED, n), tally)
  const reproduce = `PROPERTY_SEED=${SEED} PROPERTY_CASE=${n} npx vitest run __test__/pubsub-property.spec.ts`
  const fail = (what: string) => new Error(`property failed (${target.name}, seed ${SEED}, case ${n}): ${what}\nreproduce: ${reproduce}\n${test.describe()}`)

  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`case not finished after ${CASE_DEADLINE_MS} ms`)), CASE_DEADLINE_MS)
  })
  try {
    await Promise.race([test.run(), deadline])
  } catch (error) {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
    const state =
      `published ${test.resolved} of ${test.N} (${test.started} started), ` +
      `stored ${await target.clients[0]!.getHistory(test.topic).then((h) => h.length, String)}, ` +
      `stats ${JSON.stringify(target.clients.map((client) => client.stats()))}`
    for (const close of test.closers) close()
    throw fail(`${message}\n${state}`)
  } finally {
    clearTimeout(timer)
  }

  const problems = await test.check()
  if (problems.length > 0) {
    const shown = problems.slice(0, 8)
    if (problems.length > shown.length) shown.push(`… and ${problems.length - shown.length} more`)
    throw fail(shown.join('\n'))
  }
  try {
    await settle(() => target.clients.every(zero), 'stats() back to zero')
  } catch {
    throw fail(`stats() not back to zero: ${JSON.stringify(target.clients.map((c) => c.stats()))}`)
  }
  await target.clients[0]!.clearTopic(test.topic)
  tally.cases++
}

// ---------------------------------------------------------------------------

const memoryTarget = (): Target => ({
  name: 'in memory',
  clients: [new CachingPubSub(null, new InMemoryServerCache({ maxSize: 100_000 }))],
})

/** Pairs of caches on one prefix each: the first of a pair clears it. */
const redisPairs: RedisServerCache[][] = []
const sharedTarget = (name: string, connection: ConstructorParameters<typeof RedisServerCache>[0]) => (): Target => {
  // Two caches on one prefix: two connections and two tailers, like two processes.
  const keyPrefix = uniquePrefix('property')
  const caches = [new RedisServerCache(connection, { keyPrefix }), new RedisServerCache(connection, { keyPrefix })]
  redisPairs.push(caches)
  return { name, clients: caches.map((cache) => new CachingPubSub(null, cache)) }
}

afterAll(async () => {
  for (const [first] of redisPairs) await first?.clear()
  await Promise.all(redisPairs.flat().map((cache) => cache.close()))
})

describe.each([
  { name: 'in memory', make: memoryTarget },
  { name: 'Redis', make: sharedTarget('Redis', { url: REDIS_URL }) },
  { name: 'Redis Cluster', make: sharedTarget('Redis Cluster', { cluster: { nodes: redisClusterNodes() } }) },
])('CachingPubSub delivery property ($name)', ({ make }) => {
  it(`holds for ${ONLY_CASE === undefined ? CASES : 1} random cases (seed ${SEED})`, { timeout: 120_000 }, async () => {
    const target = make()
    const cases = ONLY_CASE === undefined ? Array.from({ length: CASES }, (_, n) => n) : [ONLY_CASE]
    const tally = new Tally()
    for (const n of cases) await runCase(target, n, tally)
    console.log(`${target.name}, seed ${SEED}: ${tally}`)
    expect(tally.cases).toBe(cases.length)
    expect(target.clients.map((client) => client.stats())).toEqual(target.clients.map(() => ({ callbackSubscriptions: 0, topicsRead: 0, callsInFlight: 0 })))
  })
})
