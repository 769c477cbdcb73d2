// Pub/sub, in memory: our CachingPubSub (native delivery over our
// InMemoryServerCache) against Mastra's CachingPubSub over EventEmitterPubSub
// and @mastra/core's InMemoryServerCache. Publishing, and the replay of a
// stored topic to a late subscriber, measured against the JSON consumer limit.
import { InMemoryServerCache as MastraMemoryCache } from '@mastra/core/cache'
import { CachingPubSub as MastraCachingPubSub, EventEmitterPubSub } from '@mastra/core/events'
import { CachingPubSub, InMemoryServerCache } from '../../dist/index.js'
import { benchNativeCall } from '../../native.js'
import {
  compare,
  consumeJsonBatches,
  consumeJsonBatchesIterator,
  fmt,
  inFlight,
  jsonBatches,
  makeEvents,
  publishOp,
  publishReps,
  ratioOverStringify,
  replayCallback,
  replayIterator,
  stringifyReps,
  target,
} from '../lib.mjs'

export const title = 'Pub/sub, in memory: ours CachingPubSub (native) vs @mastra/core CachingPubSub(EventEmitterPubSub, InMemoryServerCache)'
export const columns = {
  ours: 'ours',
  mastra: 'mastra',
  stringify: 'JSON.stringify + native call',
  limit: 'JSON consumer limit',
  limitIterator: 'JSON limit via for-await',
}

// Far above what any rep stores: Mastra's cache with ttlMs 0 hangs past maxSize.
const OPTIONS = { ttlMs: 0, maxSize: 1e6 }
const BATCH = 256 // events per native page of ours, and per batch of the JSON limit
const TOPIC_FOR_CEILING = 'publish-0' // as long as the topics publishReps uses

export async function run(ctx) {
  const { quick, reps, log } = ctx
  const n = quick ? 20_000 : 100_000
  const replayN = quick ? 20_000 : 50_000

  const pubsubs = {
    ours: new CachingPubSub(null, new InMemoryServerCache(OPTIONS)),
    mastra: new MastraCachingPubSub(new EventEmitterPubSub(), new MastraMemoryCache(OPTIONS)),
  }
  const events = makeEvents(Math.max(n, replayN))
  const rows = []

  log(`publish sequential, ${n} events x ${reps} reps`)
  // The ceiling: each event as our store keeps it (id, type, runId, data,
  // createdAt in epoch ms; built up front, so generous), serialised and
  // handed with its topic to a native call that does nothing.
  const stored = events.map((event) => ({ id: event.id, type: event.type, runId: event.runId, data: event.data, createdAt: event.createdAt.getTime() }))
  const cross = (json) => benchNativeCall(TOPIC_FOR_CEILING, '', json)
  const seq = await compare(
    {
      ...publishReps(pubsubs, events, { mode: 'seq', count: n, warmCount: Math.min(n, 20_000) }),
      stringify: stringifyReps(stored, n, Math.min(n, 20_000), cross),
    },
    { reps },
  )
  rows.push({
    metric: 'publish, sequential awaited',
    unit: 'events/s',
    better: 'higher',
    values: seq,
    target: ratioOverStringify(seq, 10),
  })
  ctx.note(
    'publish ceiling: JSON.stringify of each event as stored, handed with its topic to a native call that does ' +
      'nothing (benchNativeCall), awaited like a publish, with nothing stored: a store of serialised JSON in native ' +
      'memory (what the issue asks for) cannot publish faster than it serialises and hands the text over.',
  )

  log(`publish 64 in flight, ${n} events x ${reps} reps`)
  const par = await compare(publishReps(pubsubs, events, { mode: 'par', count: n, warmCount: Math.min(n, 20_000) }), { reps })
  rows.push({ metric: 'publish, 64 in flight', unit: 'events/s', better: 'higher', values: par })

  // --- replay of a stored topic to a late subscriber ------------------------
  log(`replay: storing ${replayN} events per implementation`)
  const topic = 'replay'
  for (const [name, pubsub] of Object.entries(pubsubs)) {
    await inFlight(replayN, 64, publishOp(pubsub, topic, events))
    const stored = (await pubsub.getHistory(topic)).length
    if (stored !== replayN) throw new Error(`${name}: stored ${stored} of ${replayN} replay events`)
  }
  // The JSON limit's input: the same events as ours stores them (with index
  // and ISO createdAt), as ready-made JSON texts of BATCH events.
  const batches = jsonBatches(await pubsubs.ours.getHistory(topic), BATCH)
  const jsonBytes = batches.reduce((sum, b) => sum + b.length, 0) - 2 * batches.length

  log(`replay of ${replayN} stored events x ${reps} reps (ours iterator, ours callback, mastra callback, JSON limit)`)
  const replay = await compare(
    {
      oursIterator: () => replayIterator(pubsubs.ours, topic, replayN),
      oursCallback: () => replayCallback(pubsubs.ours, topic, replayN),
      mastra: () => replayCallback(pubsubs.mastra, topic, replayN),
      limit: () => consumeJsonBatches(batches, replayN),
      limitIterator: () => consumeJsonBatchesIterator(batches, replayN),
    },
    { reps },
  )
  const replayRow = (form, ours, extra = {}) => ({
    metric: `replay ${fmtK(replayN)} stored, ours ${form}`,
    unit: 'events/s',
    better: 'higher',
    values: { ours, mastra: replay.mastra, limit: replay.limit, ...extra },
    target: {
      ...target(ours.median / replay.limit.median, '>=', 0.8, 'ours >= 0.8x JSON limit'),
      versus: 'JSON limit',
      referenceValue: replay.limit.median,
    },
  })
  rows.push(replayRow('for-await', replay.oursIterator, { limitIterator: replay.limitIterator }))
  rows.push(replayRow('callback', replay.oursCallback))
  ctx.info.replay = { events: replayN, jsonBytes, batch: BATCH }
  ctx.note(
    `replay: ${fmtK(replayN)} events (${fmt(jsonBytes / replayN)} B JSON each) stored before the reps; timed from subscribing ` +
      'until the last event is in the consumer (order checked); mastra is its callback form (the only one it has).',
  )
  ctx.note(
    `JSON consumer limit: plain JS over the same events as pre-built JSON arrays of ${BATCH}: one JSON.parse per batch, ` +
      'one new Date(createdAt) per event, same order check; the ceiling for a design that hands out fresh copies. ' +
      '"via for-await": the same work yielded by an async generator (report only): what the async-iterator protocol alone costs.',
  )
  ctx.note('ours/mastra on replay is report only: Mastra hands its stored objects out by reference (nothing parsed or copied).')

  for (const pubsub of Object.values(pubsubs)) await pubsub.clearTopic(topic)
  return rows
}

function fmtK(n) {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n)
}
