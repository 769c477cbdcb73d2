// Pub/sub over Redis: our CachingPubSub over a native RedisServerCache
// ({ url }: native delivery, in process and across processes) against
// Mastra's CachingPubSub over EventEmitterPubSub and @mastra/redis's
// RedisServerCache on node-redis. Publishing, replay of a stored topic to a
// late subscriber, and the publish-to-receive latency to a subscriber in
// another process (ours, with raw Redis pub/sub as the floor: Mastra's
// EventEmitterPubSub does not cross processes).
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { CachingPubSub as MastraCachingPubSub, EventEmitterPubSub } from '@mastra/core/events'
import { RedisServerCache as MastraRedisCache, nodeRedisPreset as mastraPreset } from '@mastra/redis'
import { CachingPubSub, RedisServerCache } from '../../dist/index.js'
import { bareStoreReps, connectBare } from '../bare-redis.mjs'
import {
  cleanUpRedisRun,
  compare,
  connectNodeRedis,
  consumeJsonBatches,
  fmt,
  inFlight,
  jsonBatches,
  makeEvents,
  now,
  percentile,
  publishOp,
  publishReps,
  redactUrl,
  replayCallback,
  replayIterator,
  stats,
  target,
  withCeiling,
} from '../lib.mjs'

export const title =
  'Pub/sub, Redis: ours CachingPubSub over RedisServerCache ({url}: native) vs @mastra/core CachingPubSub(EventEmitterPubSub, @mastra/redis on node-redis)'
export const columns = {
  ours: 'ours',
  mastra: 'mastra',
  bare: 'bare socket (no client library)',
  limit: 'JSON consumer limit',
  baseline: 'raw Redis pub/sub (node-redis)',
}

const TTL_SECONDS = 300 // every publish refreshes it, so keys vanish even if cleanup fails
const CHILD = fileURLToPath(new URL('../pubsub-latency-child.mjs', import.meta.url))

export async function run(ctx) {
  const { quick, reps, log, redisUrl } = ctx
  const seqN = quick ? 1_000 : 5_000
  const parN = quick ? 5_000 : 20_000
  const replayN = quick ? 5_000 : 20_000
  const latency = { warm: 100, n: quick ? 500 : 2_000, intervalMs: 1, reps: quick ? 1 : Math.min(reps, 3) }
  const prefix = `bench:${randomBytes(6).toString('hex')}:`

  const clients = []
  const natives = []
  let connected = false
  let bare = null
  const native = (keyPrefix) => {
    const cache = new RedisServerCache({ url: redisUrl }, { keyPrefix, ttlSeconds: TTL_SECONDS })
    natives.push(cache)
    return cache
  }

  try {
    const client = await connectNodeRedis(redisUrl, clients)
    connected = true
    const version = /redis_version:(\S+)/.exec(await client.info('server'))?.[1] ?? '?'
    ctx.note(`Redis ${version} at ${redactUrl(redisUrl)}; keys under ${prefix}*, TTL ${TTL_SECONDS}s, deleted afterwards.`)

    const pubsubs = {
      ours: new CachingPubSub(null, native(`${prefix}ours:`)),
      mastra: new MastraCachingPubSub(
        new EventEmitterPubSub(),
        new MastraRedisCache({ client }, { keyPrefix: `${prefix}mastra:`, ttlSeconds: TTL_SECONDS, ...mastraPreset }),
      ),
    }
    const events = makeEvents(Math.max(parN, replayN))
    const rows = []
    // The ceilings of the publish targets: a bare socket (see bare-redis.mjs)
    // doing the least an acknowledged publish does: one XADD of the event's
    // JSON text (serialised up front), awaited one by one or 64 in flight.
    bare = await connectBare(redisUrl)
    const bareReps = bareStoreReps(bare, prefix, events.slice(0, parN), (key, text) => ['XADD', key, '*', 'e', text])
    const bareNote = bare ? 'bare socket / mastra' : 'n/a (TLS URL)'

    // --- publish ---------------------------------------------------------
    log(`publish sequential, ${seqN} events x ${reps} reps`)
    const seq = await compare(
      { ...publishReps(pubsubs, events, { mode: 'seq', count: seqN, warmCount: Math.ceil(seqN / 4) }), bare: bareReps('seq', seqN) },
      { reps },
    )
    rows.push({
      metric: 'publish, sequential awaited',
      unit: 'events/s',
      better: 'higher',
      values: seq,
      target: withCeiling(target(seq.ours.median / seq.mastra.median, '>=', 2, 'ratio >= 2'), seq.bare.median / seq.mastra.median, bareNote),
    })

    log(`publish 64 in flight, ${parN} events x ${reps} reps`)
    const par = await compare(
      { ...publishReps(pubsubs, events, { mode: 'par', count: parN, warmCount: Math.ceil(parN / 4) }), bare: bareReps('par', parN) },
      { reps },
    )
    rows.push({
      metric: 'publish, 64 in flight',
      unit: 'events/s',
      better: 'higher',
      values: par,
      target: withCeiling(target(par.ours.median / par.mastra.median, '>=', 3, 'ratio >= 3'), par.bare.median / par.mastra.median, bareNote),
    })
    ctx.note(
      'publish ceilings ("bare socket"): one connection on a net.Socket with RESP written by hand and replies counted, not ' +
        "decoded (bench/bare-redis.mjs), one XADD of the event's JSON text (serialised up front) per event: the one " +
        'round trip that stores it, with no TTL, no index check and no client library.',
    )

    // --- replay of a stored topic to a late subscriber --------------------
    log(`replay: storing ${replayN} events per implementation`)
    const topic = 'replay'
    for (const [name, pubsub] of Object.entries(pubsubs)) {
      await inFlight(replayN, 64, publishOp(pubsub, topic, events))
      const stored = (await pubsub.getHistory(topic)).length
      if (stored !== replayN) throw new Error(`${name}: stored ${stored} of ${replayN} replay events`)
    }
    log(`replay of ${replayN} stored events x ${reps} reps (ours iterator, ours callback, mastra callback)`)
    // The ceiling: the JSON consumer limit over the same events (as in
    // pubsub-memory): parsing and hydrating them, with no store at all.
    const batches = jsonBatches(await pubsubs.ours.getHistory(topic))
    const replay = await compare(
      {
        oursIterator: () => replayIterator(pubsubs.ours, topic, replayN),
        oursCallback: () => replayCallback(pubsubs.ours, topic, replayN),
        mastra: () => replayCallback(pubsubs.mastra, topic, replayN),
        limit: () => consumeJsonBatches(batches, replayN),
      },
      { reps },
    )
    for (const [form, ours] of [
      ['for-await', replay.oursIterator],
      ['callback', replay.oursCallback],
    ]) {
      rows.push({
        metric: `replay ${fmtK(replayN)} stored, ours ${form}`,
        unit: 'events/s',
        better: 'higher',
        values: { ours, mastra: replay.mastra, limit: replay.limit },
        target: withCeiling(
          target(ours.median / replay.mastra.median, '>=', 2, 'ratio >= 2'),
          replay.limit.median / replay.mastra.median,
          'JSON consumer limit / mastra',
        ),
      })
    }
    ctx.note(
      'replay ceiling: the JSON consumer limit (see pubsub-memory) over the same events, with no Redis at all. ' +
        "Mastra's replay also parses every event from JSON.",
    )
    ctx.note(
      `replay: ${fmtK(replayN)} events stored before the reps; timed from subscribing until the last event is in the consumer ` +
        '(order checked); mastra is its callback form (the only one it has).',
    )

    // --- Redis commands per live event ------------------------------------
    // Whole-server INFO counts while events are published one at a time to
    // readers that have caught up. Ours: a reader in this process and one on
    // another client with its own connections and tailer (what another
    // process costs); Mastra: its reader in this process (its bus does not
    // cross processes, so it has no second one).
    const liveN = quick ? 200 : 500
    const liveReps = quick ? 1 : 3
    log(`Redis commands per live event: ${liveReps} x ${liveN} events, sequential, to caught-up readers`)
    const elsewhere = new CachingPubSub(null, native(`${prefix}ours:`))
    const liveReaders = { ours: [pubsubs.ours, elsewhere], mastra: [pubsubs.mastra] }
    const perEvent = { ours: [], mastra: [] }
    for (let r = 0; r < liveReps; r++) {
      for (const [name, readers] of Object.entries(liveReaders)) {
        perEvent[name].push(await commandsPerLiveEvent(client, pubsubs[name], readers, `live-${name}-${r}`, events, liveN))
      }
    }
    rows.push({
      metric: 'Redis commands per live event (readers: ours 2, one on another client; mastra 1)',
      unit: 'commands',
      better: 'lower',
      values: { ours: stats(perEvent.ours), mastra: stats(perEvent.mastra) },
    })
    ctx.note(
      'commands per live event: INFO total_commands_processed (whole server) over sequential publishes to readers that ' +
        'have caught up. Ours is XADD and PEXPIRE, then one XREAD per process reading the topic (its tailer); a caught-up ' +
        "reader takes the event from its wake-up instead of reading it again. Mastra's readers cost no command: its " +
        'EventEmitterPubSub is in-process only.',
    )

    // --- cross-process publish-to-receive latency ---------------------------
    // Ours (Mastra's EventEmitterPubSub does not cross processes), against the
    // raw Redis pub/sub hop (node-redis PUBLISH to a SUBSCRIBEd child, nothing
    // stored) as the floor this machine gives one message between processes.
    log(
      `latency: ${latency.reps} x (${latency.warm} warm-up + ${latency.n}) events, one per ${latency.intervalMs} ms, ` +
        'to a subscriber in a child process (ours for-await, then raw Redis pub/sub, alternating)',
    )
    const latPrefix = `${prefix}latency:`
    const publisher = new CachingPubSub(null, native(latPrefix))
    const modes = {
      ours: (topic) => publishOp(publisher, topic, events),
      // The child subscribes to the channel `${keyPrefix}${topic}`, so concurrent runs do not mix.
      baseline: (topic) => (i) => {
        const event = events[i % events.length]
        return client.publish(`${latPrefix}${topic}`, JSON.stringify({ ...event, index: i })).then(() => i)
      },
    }
    const perRep = { ours: [], baseline: [] }
    for (let r = 0; r < latency.reps; r++) {
      for (const mode of r % 2 ? ['baseline', 'ours'] : ['ours', 'baseline']) {
        const topic = `latency-${mode}-${r}`
        const result = await latencyRep(ctx, mode === 'ours' ? 'ours' : 'raw', modes[mode](topic), {
          ...latency,
          redisUrl,
          keyPrefix: latPrefix,
          topic,
        })
        if (mode === 'ours') await publisher.clearTopic(topic)
        perRep[mode].push(result)
      }
    }
    const q = (p) => ({
      ours: stats(perRep.ours.map((res) => percentile(res.latencies, p))),
      baseline: stats(perRep.baseline.map((res) => percentile(res.latencies, p))),
    })
    const p99 = q(0.99)
    for (const [label, values] of [
      ['p50', q(0.5)],
      ['p90', q(0.9)],
    ]) {
      rows.push({ metric: `publish-to-receive latency ${label}, cross-process`, unit: 'ms', better: 'lower', values })
    }
    rows.push({
      metric: 'publish-to-receive latency p99, cross-process',
      unit: 'ms',
      better: 'lower',
      values: p99,
      target: {
        ...withCeiling(target(p99.ours.median, '<=', 1, 'p99 < 1 ms'), p99.baseline.median, 'raw Redis pub/sub p99', `${fmt(p99.baseline.median)} ms`),
        pass: Number.isFinite(p99.ours.median) && p99.ours.median < 1,
        versus: 'ms bound',
        referenceValue: 1,
        display: `${fmt(p99.ours.median)} ms`,
      },
    })
    rows.push({
      metric: 'publish call to resolve (publisher), p50',
      unit: 'ms',
      better: 'lower',
      values: {
        ours: stats(perRep.ours.map((res) => percentile(res.publishMs, 0.5))),
        baseline: stats(perRep.baseline.map((res) => percentile(res.publishMs, 0.5))),
      },
    })
    const pool = (mode, field) => perRep[mode].flatMap((res) => res[field]).sort((a, b) => a - b)
    const summarize = (sorted) => ({
      n: sorted.length,
      min: sorted[0],
      p50: percentile(sorted, 0.5),
      p90: percentile(sorted, 0.9),
      p99: percentile(sorted, 0.99),
      p999: percentile(sorted, 0.999),
      max: sorted.at(-1),
    })
    ctx.info.latency = {
      ...latency,
      pooled: { ours: summarize(pool('ours', 'latencies')), baseline: summarize(pool('baseline', 'latencies')) },
      publishMs: { ours: summarize(pool('ours', 'publishMs')), baseline: summarize(pool('baseline', 'publishMs')) },
      meanGapMs: stats(
        Object.values(perRep)
          .flat()
          .map((res) => res.meanGapMs),
      ).median,
    }
    const info = ctx.info.latency
    ctx.note(
      `latency: a child process (${CHILD.split('/').slice(-2).join('/')}) subscribes and stamps performance.timeOrigin + ` +
        'performance.now() per event received; this process stamps the same clock just before each publish call, awaits it, ' +
        `then waits ${latency.intervalMs} ms (setTimeout; mean gap ${fmt(info.meanGapMs)} ms). ours: the child iterates ` +
        'subscribeWithReplay over RedisServerCache ({url}); baseline: node-redis PUBLISH of the event JSON to a node-redis ' +
        `SUBSCRIBE in the child (one hop, nothing stored). ${latency.warm} warm-up events per child dropped; cells are the ` +
        `median over ${latency.reps} rep${latency.reps === 1 ? '' : 's'} (one child each) of each rep's quantile.`,
    )
    const line = (s) => `p50 ${fmt(s.p50)}, p90 ${fmt(s.p90)}, p99 ${fmt(s.p99)}, p99.9 ${fmt(s.p999)}, max ${fmt(s.max)} ms`
    ctx.note(`latency pooled over ${info.pooled.ours.n} events each: ours ${line(info.pooled.ours)}; baseline ${line(info.pooled.baseline)}.`)
    ctx.note(`publish call to resolve, pooled: ours ${line(info.publishMs.ours)}; baseline ${line(info.publishMs.baseline)}.`)
    return rows
  } finally {
    bare?.close()
    await cleanUpRedisRun(ctx, { connected, prefix, cleaner: () => native(prefix), natives, clients })
  }
}

/**
 * Redis commands (INFO total_commands_processed, whole server) per event
 * when `liveN` events are published one at a time to `topic`, whose
 * `readers` (callback subscribers) have all received a first event.
 */
async function commandsPerLiveEvent(client, publisher, readers, topic, events, liveN) {
  const counts = readers.map(() => 0)
  let waiting
  const arrived = () => waiting && counts.every((c) => c >= waiting.n) && waiting.resolve()
  const until = (n) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`live readers of ${topic}: ${counts} of ${n} events after 30 s`)), 30_000)
      waiting = { n, resolve: () => (clearTimeout(timer), resolve()) }
      arrived()
    })
  const callbacks = readers.map((_, i) => () => {
    counts[i]++
    arrived()
  })
  await Promise.all(readers.map((reader, i) => reader.subscribe(topic, callbacks[i])))
  try {
    const publish = publishOp(publisher, topic, events)
    await publish(0)
    await until(1)
    const before = await totalCommands(client)
    for (let i = 1; i <= liveN; i++) await publish(i)
    await until(liveN + 1)
    const after = await totalCommands(client)
    return (after - before - 1) / liveN // the first INFO counts once
  } finally {
    await Promise.all(readers.map((reader, i) => reader.unsubscribe(topic, callbacks[i])))
    await publisher.clearTopic(topic)
  }
}

async function totalCommands(client) {
  return Number(/total_commands_processed:(\d+)/.exec(await client.info('stats'))?.[1])
}

/**
 * One latency rep: starts the child subscriber (`mode` ours or raw), waits
 * for it to be ready, publishes `warm + n` paced events to `topic` with
 * `publish(i)` (resolving to the event's index), and pairs the child's
 * receive timestamps with the publish-call timestamps. Latencies and publish
 * call durations in ms, ascending, warm-up dropped.
 */
async function latencyRep(ctx, mode, publish, { redisUrl, keyPrefix, topic, warm, n, intervalMs }) {
  const total = warm + n
  const child = spawn(process.execPath, [CHILD, mode, redisUrl, keyPrefix, topic, String(total)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const withTimeout = (promise, ms, what) => {
    let timer
    return Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`latency child (${mode}): ${what} after ${ms} ms; stderr: ${stderr.trim()}`)), ms)
      }),
    ]).finally(() => clearTimeout(timer))
  }
  const line = async (what) => {
    const next = await withTimeout(lines.next(), 30_000, `no ${what}`)
    if (next.done) {
      const { code, signal } = await exited
      throw new Error(`latency child (${mode}) exited (${code ?? signal}) before ${what}; stderr: ${stderr.trim()}`)
    }
    return next.value
  }

  try {
    const ready = await line('ready')
    if (ready !== 'ready') throw new Error(`latency child (${mode}) said ${JSON.stringify(ready)} instead of ready`)
    const origin = performance.timeOrigin
    const sent = new Array(total)
    const publishMs = []
    const first = now()
    for (let i = 0; i < total; i++) {
      const t = now()
      sent[i] = origin + t
      const index = await publish(i)
      if (index !== i) throw new Error(`latency publish #${i} (${mode}) got index ${index}`)
      if (i >= warm) publishMs.push(now() - t)
      await new Promise((resolve) => setTimeout(resolve, intervalMs))
    }
    const meanGapMs = (now() - first) / total
    const { recv } = JSON.parse(await line('result'))
    const { code, signal } = await withTimeout(exited, 10_000, 'no exit')
    if (code !== 0) throw new Error(`latency child (${mode}) exited with ${code ?? signal}; stderr: ${stderr.trim()}`)
    const latencies = []
    for (let i = warm; i < total; i++) {
      if (recv[i] === null) throw new Error(`latency child (${mode}) did not receive event ${i}`)
      latencies.push(recv[i] - sent[i])
    }
    latencies.sort((a, b) => a - b)
    publishMs.sort((a, b) => a - b)
    if (latencies[0] < 0) ctx.note(`WARNING: negative latency ${fmt(latencies[0])} ms (${mode}; clock offset between processes?)`)
    return { latencies, publishMs, meanGapMs }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill()
  }
}

function fmtK(n) {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n)
}
