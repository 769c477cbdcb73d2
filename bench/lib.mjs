// Shared helpers for the benchmark sections: the event every section stores,
// timing, statistics, number formatting and table printing. No dependencies.
import { randomUUID } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

export const now = () => performance.now()

// ---------------------------------------------------------------------------
// The event: shaped like what Mastra's CachingPubSub hands to
// `listPushIndexed` (`{ ...event, id: randomUUID(), createdAt: new Date() }`),
// about 180 bytes of JSON. The text is built with `join`, so every event owns a
// fresh flat string, as a decoded LLM chunk would (no shared substrings that
// would make retained objects look cheaper than they are).
// ---------------------------------------------------------------------------

const WORDS = (
  'the a of to and in is it that for on with as was at by an be this from or are not but have ' +
  'stream token agent model chunk reply text tool call step run data cache redis node rust fast'
).split(' ')

/** One Mastra-shaped `chunk` event of a run. */
export function makeEvent(runId = randomUUID()) {
  const words = []
  let length = -1
  while (length < 13) {
    const word = WORDS[(Math.random() * WORDS.length) | 0]
    words.push(word)
    length += word.length + 1
  }
  return {
    id: randomUUID(),
    type: 'chunk',
    runId,
    data: { text: words.join(' ') },
    createdAt: new Date(),
  }
}

/** `n` events of one run (one shared `runId`, like one agent stream). */
export function makeEvents(n, runId = randomUUID()) {
  const events = new Array(n)
  for (let i = 0; i < n; i++) events[i] = makeEvent(runId)
  return events
}

/** JSON length statistics of `events`. */
export function eventSize(events) {
  return stats(events.map((event) => JSON.stringify(event).length))
}

// ---------------------------------------------------------------------------
// Statistics and measurement.
// ---------------------------------------------------------------------------

/** `{ median, min, max, mean, n, samples }` of numeric samples. */
export function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b)
  const n = sorted.length
  const mid = n >> 1
  const median = n === 0 ? NaN : n % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  const mean = sorted.reduce((sum, x) => sum + x, 0) / n
  return { median, min: sorted[0], max: sorted[n - 1], mean, n, samples }
}

/** `stats` of `f(sample)` for each sample, e.g. to turn ms/call into calls/s. */
export function mapStats(s, f) {
  return stats(s.samples.map(f))
}

let gcFn
/** A full GC, when one can be had (`--expose-gc`, or enabled at runtime). */
export function gc() {
  if (gcFn === undefined) {
    try {
      setFlagsFromString('--expose-gc')
      gcFn = globalThis.gc ?? runInNewContext('gc')
    } catch {
      gcFn = null
    }
  }
  if (gcFn) gcFn()
}

/**
 * Runs each implementation's `rep(i)` once untimed (warm-up), then `reps`
 * times, rotating which implementation goes first so drift (CPU boost,
 * Redis state) does not favour one. `rep` returns one sample (a number).
 * Returns `{ [impl]: stats }`.
 */
export async function compare(impls, { reps, warmup = true, onRep } = {}) {
  const names = Object.keys(impls)
  if (warmup) {
    for (const name of names) await impls[name](-1)
  }
  const samples = Object.fromEntries(names.map((name) => [name, []]))
  for (let r = 0; r < reps; r++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(r + k) % names.length]
      gc()
      samples[name].push(await impls[name](r))
    }
    onRep?.(r)
  }
  return Object.fromEntries(names.map((name) => [name, stats(samples[name])]))
}

/** Awaits `op(i)` for i in 0..n, one after the other. Returns ops/s. */
export async function sequential(n, op) {
  const start = now()
  for (let i = 0; i < n; i++) await op(i)
  return n / ((now() - start) / 1000)
}

/** Runs `op(i)` for i in 0..n with `concurrency` calls outstanding at all times. Returns ops/s. */
export async function inFlight(n, concurrency, op) {
  let next = 0
  const worker = async () => {
    while (next < n) await op(next++)
  }
  const start = now()
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
  return n / ((now() - start) / 1000)
}

/** Calls `op()` until `budgetMs` has passed and at least `minCalls` were made. Returns ms per call. */
export async function msPerCall(op, { budgetMs, minCalls = 3 }) {
  let calls = 0
  const start = now()
  let elapsed = 0
  do {
    await op()
    calls++
    elapsed = now() - start
  } while (elapsed < budgetMs || calls < minCalls)
  return elapsed / calls
}

// ---------------------------------------------------------------------------
// Formatting.
// ---------------------------------------------------------------------------

/** 3 significant digits, with k/M suffixes for large values: 1.23M, 45.6k, 789, 0.0123. */
export function fmt(value) {
  if (value === undefined || value === null || Number.isNaN(value)) return 'n/a'
  const abs = Math.abs(value)
  if (abs >= 1e6) return `${sig(value / 1e6)}M`
  if (abs >= 1e4) return `${sig(value / 1e3)}k`
  if (abs >= 1000) return Math.round(value).toString()
  return sig(value)
}

function sig(value) {
  const abs = Math.abs(value)
  if (abs === 0) return '0'
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : Math.min(6, 2 - Math.floor(Math.log10(abs)))
  return value.toFixed(digits)
}

/** `median (min..max)`. */
export function fmtStats(s) {
  if (!s) return ''
  if (s.n === 1) return fmt(s.median)
  return `${fmt(s.median)} (${fmt(s.min)}..${fmt(s.max)})`
}

export function fmtRatio(ratio) {
  if (ratio === undefined || ratio === null || !Number.isFinite(ratio)) return ''
  return `${ratio >= 10 ? ratio.toFixed(1) : ratio >= 0.1 ? ratio.toFixed(2) : ratio.toPrecision(2)}x`
}

/**
 * Prints rows (arrays of cells) as an aligned table. `align` is one of 'l'/'r'
 * per column. The first row is the header.
 */
export function table(rows, align = []) {
  const widths = []
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, String(cell).length)))
  const line = (row) =>
    row
      .map((cell, i) => (align[i] === 'r' ? String(cell).padStart(widths[i]) : String(cell).padEnd(widths[i])))
      .join('  ')
      .trimEnd()
  const [header, ...body] = rows
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n')
}

// ---------------------------------------------------------------------------
// Targets.
// ---------------------------------------------------------------------------

/**
 * A target on a number: `{ text, pass, value, threshold, op }`. `op` is
 * '>=' or '<='. `text` says what is compared, e.g. 'ratio >= 1'.
 */
export function target(value, op, threshold, text) {
  const pass = Number.isFinite(value) && (op === '>=' ? value >= threshold : value <= threshold)
  return { text, op, value, threshold, pass }
}

/**
 * `t` with the best value (in the target's own terms) that any design of the
 * kind the target is about could reach, measured in the same run: for
 * example what a bare socket with no client library does, or what JSON.parse
 * alone costs. When the threshold lies beyond it, the target is out of reach
 * on this machine, whatever the implementation; the result says so. `NaN`
 * (not measured) says nothing.
 */
export function withCeiling(t, value, text, display) {
  const reachable = Number.isFinite(value) ? (t.op === '>=' ? value >= t.threshold : value <= t.threshold) : null
  return { ...t, ceiling: { value, text, reachable, display } }
}

/**
 * Ops/s of `JSON.stringify` over `values` (Dates already as stored, so V8's
 * fast path), each text then handed to `cross(text)`, one synchronous native
 * call that does nothing with it (`benchNativeCall`), called and awaited like
 * the implementations' ops: the ceiling for a store that keeps values as JSON
 * text in native memory, which must at least serialise each one and hand it
 * over.
 */
export function stringifyReps(values, count, warmCount, cross) {
  return async (rep) => {
    const n = rep < 0 ? warmCount : count
    let bytes = 0
    const rate = await sequential(n, (i) => {
      bytes += cross(JSON.stringify(values[i % values.length]))
    })
    if (bytes === 0) throw new Error('stringify ceiling wrote nothing')
    return rate
  }
}

/**
 * The target "ours/mastra >= `threshold`" on `values` (a `compare()` that
 * ran a `stringify` column of {@link stringifyReps}), with that column as its
 * ceiling.
 */
export function ratioOverStringify(values, threshold) {
  return withCeiling(
    target(values.ours.median / values.mastra.median, '>=', threshold, `ratio >= ${threshold}`),
    values.stringify.median / values.mastra.median,
    'JSON.stringify + native call / mastra',
  )
}

/** `event` as a JSON store holds it: `createdAt` as ISO text. */
export function withIsoDate(event) {
  return { ...event, createdAt: event.createdAt.toISOString() }
}

// ---------------------------------------------------------------------------
// Pub/sub (the pubsub-* sections). `pubsub` is ours or Mastra's CachingPubSub:
// both take `publish(topic, { type, runId, data })` and the callback form of
// `subscribeWithReplay`; only ours has the async-iterator form.
// ---------------------------------------------------------------------------

/** An op for `sequential`/`inFlight`: publishes `events[i]` to `topic` (the publisher's fields only). */
export function publishOp(pubsub, topic, events) {
  return (i) => {
    const event = events[i % events.length]
    return pubsub.publish(topic, { type: event.type, runId: event.runId, data: event.data })
  }
}

const REPLAY_TIMEOUT_MS = 60_000

function replayError(what, topic, c, index) {
  return new Error(`${what} replay of ${topic}: event #${c} has index ${index}`)
}

/**
 * Events/s of a late subscriber taking the `n` events stored in `topic`
 * (indices 0..n-1) with our async iterator, from subscribing until the last
 * event is in hand. Checks the order.
 */
export async function replayIterator(pubsub, topic, n) {
  const signal = AbortSignal.timeout(REPLAY_TIMEOUT_MS)
  let c = 0
  const start = now()
  for await (const event of pubsub.subscribeWithReplay(topic, { signal })) {
    if (event.index !== c) throw replayError('iterator', topic, c, event.index)
    if (++c === n) break
  }
  const elapsed = now() - start
  if (c !== n) throw new Error(`iterator replay of ${topic}: ended after ${c} of ${n} events`)
  return n / (elapsed / 1000)
}

/**
 * Events/s of a late subscriber taking the `n` events stored in `topic` with
 * the callback form (`subscribeWithReplay(topic, cb)`, ours or Mastra's),
 * from subscribing until the callback has seen the last event; then
 * unsubscribes. Checks the order.
 */
export async function replayCallback(pubsub, topic, n) {
  let c = 0
  let done
  let fail
  const finished = new Promise((resolve, reject) => {
    done = resolve
    fail = reject
  })
  finished.catch(() => {}) // awaited below; a failure during subscribe is not unhandled
  const timer = setTimeout(() => fail(new Error(`callback replay of ${topic}: ${c} of ${n} events after ${REPLAY_TIMEOUT_MS} ms`)), REPLAY_TIMEOUT_MS)
  const cb = (event) => {
    if (c >= n) return
    if (event.index !== c) fail(replayError('callback', topic, c, event.index))
    else if (++c === n) done(now())
  }
  try {
    const start = now()
    await pubsub.subscribeWithReplay(topic, cb)
    const end = await finished
    return n / ((end - start) / 1000)
  } finally {
    clearTimeout(timer)
    await pubsub.unsubscribe(topic, cb)
  }
}

/** `events` (with `index`) as JSON array texts of `size` events each, as a copying transport would hand them over. */
export function jsonBatches(events, size = 256) {
  const batches = []
  for (let i = 0; i < events.length; i += size) batches.push(JSON.stringify(events.slice(i, i + size)))
  return batches
}

/**
 * The JSON consumer limit: events/s at which plain JS takes `n` events from
 * ready-made JSON batches (one `JSON.parse` per batch, one `Date` per event,
 * the same order check as the replays). The ceiling for any design that hands
 * out fresh copies parsed from JSON.
 */
export function consumeJsonBatches(batches, n) {
  let c = 0
  const start = now()
  for (const batch of batches) {
    const page = JSON.parse(batch)
    for (const event of page) {
      event.createdAt = new Date(event.createdAt)
      if (event.index !== c) throw new Error(`JSON batch: event #${c} has index ${event.index}`)
      c++
    }
  }
  const elapsed = now() - start
  if (c !== n) throw new Error(`JSON batches held ${c} events, expected ${n}`)
  return n / (elapsed / 1000)
}

async function* jsonBatchEvents(batches) {
  for (const batch of batches) {
    const page = JSON.parse(batch)
    for (const event of page) {
      event.createdAt = new Date(event.createdAt)
      yield event
    }
  }
}

/**
 * The JSON consumer limit through an async iterator: `consumeJsonBatches`'s
 * work handed out by an async generator and taken with `for await`, i.e. the
 * same plus the cost of the async-iterator protocol (a promise per event).
 */
export async function consumeJsonBatchesIterator(batches, n) {
  let c = 0
  const start = now()
  for await (const event of jsonBatchEvents(batches)) {
    if (event.index !== c) throw new Error(`JSON batch: event #${c} has index ${event.index}`)
    if (++c === n) break
  }
  const elapsed = now() - start
  if (c !== n) throw new Error(`JSON batches held ${c} events, expected ${n}`)
  return n / (elapsed / 1000)
}

/** The `p`-quantile (0..1) of ascending `sorted`, interpolated linearly. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN
  const pos = (sorted.length - 1) * p
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo)
}

/** How many keys match `pattern` (SCAN, so it never blocks Redis). */
export async function countKeys(client, pattern) {
  let cursor = '0'
  let count = 0
  do {
    const reply = await client.scan(cursor, { MATCH: pattern, COUNT: 1000 })
    cursor = String(reply.cursor)
    count += reply.keys.length
  } while (cursor !== '0')
  return count
}

/** The URL without its password, for printing. */
export function redactUrl(redisUrl) {
  const url = new URL(redisUrl)
  if (url.password) url.password = '***'
  return url.toString()
}

/**
 * Fills a 10k-style list in each cache with `listPushIndexed`, then times
 * `listFromTo(key, 0, -1)` of it per implementation (ms per call). `extra`:
 * more ops (name to function) timed the same way, interleaved.
 */
export async function compareListFromTo(caches, events, listSize, { reps, budgetMs, extra = {} }) {
  for (const [name, cache] of Object.entries(caches)) {
    await inFlight(listSize, 64, (i) => cache.listPushIndexed('stream:read', 'stream:read:counter', events[i % events.length]))
    const all = await cache.listFromTo('stream:read', 0, -1)
    if (all.length !== listSize) throw new Error(`${name}: listFromTo returned ${all.length} entries`)
  }
  const reads = Object.entries(caches).map(([name, cache]) => [
    name,
    async () => {
      const list = await cache.listFromTo('stream:read', 0, -1)
      if (list.length !== listSize) throw new Error(`${name}: short read`)
    },
  ])
  const ops = [...reads, ...Object.entries(extra)]
  return compare(Object.fromEntries(ops.map(([name, op]) => [name, () => msPerCall(op, { budgetMs })])), { reps })
}

/**
 * The end of a Redis section: everything the run wrote is under `prefix`, so
 * one `clear()` on a native cache for it removes it; then every connection
 * closes, so the process can exit.
 */
export async function cleanUpRedisRun(ctx, { connected, prefix, cleaner, natives, clients }) {
  try {
    if (connected) {
      await cleaner().clear()
      const left = await countKeys(clients[0], `${prefix}*`)
      if (left) ctx.note(`WARNING: ${left} keys left under ${prefix}*`)
    }
  } finally {
    for (const cache of natives) await cache.close()
    for (const client of clients) if (client.isOpen) await client.quit()
  }
}

/** A connected node-redis client, added to `clients` (closed by cleanUpRedisRun). */
export async function connectNodeRedis(redisUrl, clients) {
  const { createClient } = await import('redis')
  const client = createClient({ url: redisUrl, socket: { connectTimeout: 3_000, reconnectStrategy: false } })
  client.on('error', () => {}) // surfaced by the failing command instead
  clients.push(client)
  try {
    await client.connect()
  } catch (error) {
    throw new Error(`cannot connect to Redis at ${redactUrl(redisUrl)} (set REDIS_URL): ${error.message}`)
  }
  return client
}

/**
 * Per pubsub, a rep that publishes `count` events to a fresh topic
 * (sequentially, or 64 in flight), checks they were all stored, clears the
 * topic and returns events/s. Warm-up reps (rep < 0) publish `warmCount`.
 */
export function publishReps(pubsubs, events, { mode, count, warmCount }) {
  let topicSeq = 0
  return Object.fromEntries(
    Object.entries(pubsubs).map(([name, pubsub]) => [
      name,
      async (rep) => {
        const topic = `publish-${topicSeq++}`
        const n = rep < 0 ? warmCount : count
        const op = publishOp(pubsub, topic, events)
        const eventsPerSec = mode === 'seq' ? await sequential(n, op) : await inFlight(n, 64, op)
        const stored = (await pubsub.getHistory(topic)).length
        if (stored !== n) throw new Error(`${name}: expected ${n} stored events, found ${stored}`)
        await pubsub.clearTopic(topic)
        return eventsPerSec
      },
    ]),
  )
}
