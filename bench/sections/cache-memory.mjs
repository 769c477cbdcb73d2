// Server cache, in memory: our InMemoryServerCache (JSON text in Rust) against
// Mastra's (@mastra/core/cache, objects in a JS TTLCache).
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { InMemoryServerCache as MastraMemoryCache } from '@mastra/core/cache'
import { InMemoryServerCache as OursMemoryCache } from '../../dist/index.js'
import { benchNativeCall } from '../../native.js'
import {
  compare,
  compareListFromTo,
  inFlight,
  makeEvents,
  mapStats,
  ratioOverStringify,
  sequential,
  stats,
  stringifyReps,
  target,
  withIsoDate,
} from '../lib.mjs'

export const title = 'Server cache, in memory: ours InMemoryServerCache vs @mastra/core InMemoryServerCache'
export const columns = { ours: 'ours', mastra: 'mastra', stringify: 'JSON.stringify + native call' }

const run_ = promisify(execFile)
const CHILD = fileURLToPath(new URL('../cache-bytes-child.mjs', import.meta.url))
// Far above what any rep stores: Mastra's cache with ttlMs 0 hangs past maxSize.
const OPTIONS = { ttlMs: 0, maxSize: 1e6 }

export async function run(ctx) {
  const { quick, reps, log } = ctx
  const n = quick ? 20_000 : 100_000
  const listSize = 10_000
  const bytesN = 100_000
  const bytesReps = quick ? 2 : 5

  const caches = { ours: new OursMemoryCache(OPTIONS), mastra: new MastraMemoryCache(OPTIONS) }
  const events = makeEvents(n)
  let keySeq = 0
  const rows = []

  // A fresh list (and counter) per rep, deleted afterwards.
  const pushBench = (mode) =>
    Object.fromEntries(
      Object.entries(caches).map(([name, cache]) => [
        name,
        async (rep) => {
          const list = `stream:${keySeq++}`
          const counter = `${list}:counter`
          const count = rep < 0 ? Math.min(n, 20_000) : n
          const op = (i) => cache.listPushIndexed(list, counter, events[i])
          const opsPerSec = mode === 'seq' ? await sequential(count, op) : await inFlight(count, 64, op)
          const length = await cache.listLength(list)
          if (length !== count) throw new Error(`${name}: expected ${count} entries, found ${length}`)
          await cache.delete(list)
          await cache.delete(counter)
          return opsPerSec
        },
      ]),
    )

  log(`listPushIndexed sequential, ${n} events x ${reps} reps`)
  // The ceiling: the same events serialised (Dates as ISO text up front, V8's
  // fast path, so generous) and handed to a native call that does nothing.
  const isoEvents = events.map(withIsoDate)
  const cross = (json) => benchNativeCall('stream:ceiling', 'stream:ceiling:counter', json)
  const seq = await compare({ ...pushBench('seq'), stringify: stringifyReps(isoEvents, n, Math.min(n, 20_000), cross) }, { reps })
  rows.push({
    metric: 'listPushIndexed, sequential',
    unit: 'ops/s',
    better: 'higher',
    values: seq,
    target: ratioOverStringify(seq, 1),
  })
  ctx.note(
    'listPushIndexed ceiling: JSON.stringify of each value, handed with both keys to a native call that does nothing ' +
      "(benchNativeCall: napi's argument conversion), awaited like a push, with nothing stored. Our store keeps JSON " +
      'text in native memory (a third of the bytes per event is a target too); Mastra keeps the object by reference.',
  )

  log(`listPushIndexed 64 in flight, ${n} events x ${reps} reps`)
  const par = await compare(pushBench('par'), { reps })
  rows.push({ metric: 'listPushIndexed, 64 in flight', unit: 'ops/s', better: 'higher', values: par })

  log(`listFromTo(0, -1) of ${listSize} entries x ${reps} reps`)
  const budgetMs = quick ? 60 : 150
  const read = await compareListFromTo(caches, events.slice(0, n), listSize, { reps, budgetMs })
  rows.push({ metric: `listFromTo(0,-1), ${fmtK(listSize)} entries`, unit: 'ms/call', better: 'lower', values: read })
  rows.push({
    metric: `listFromTo(0,-1), ${fmtK(listSize)} entries`,
    unit: 'entries/s',
    better: 'higher',
    values: {
      ours: mapStats(read.ours, (ms) => listSize / (ms / 1000)),
      mastra: mapStats(read.mastra, (ms) => listSize / (ms / 1000)),
    },
  })
  ctx.note('listFromTo: Mastra returns a slice of the stored objects (shallow, shared); ours parses a fresh copy from JSON.')
  for (const cache of Object.values(caches)) await cache.clear()

  log(`bytes per stored event: ${bytesN} events, ${bytesReps} child processes per implementation`)
  const samples = { ours: [], mastra: [] }
  for (let r = 0; r < bytesReps; r++) {
    for (const impl of r % 2 ? ['mastra', 'ours'] : ['ours', 'mastra']) {
      const { stdout } = await run_(process.execPath, ['--expose-gc', CHILD, impl, String(bytesN)], {
        maxBuffer: 1 << 20,
      })
      samples[impl].push(JSON.parse(stdout))
    }
  }
  const per = (impl, field) => stats(samples[impl].map((s) => s[field] / s.n))
  const oursRss = per('ours', 'rssDelta')
  const mastraHeap = per('mastra', 'heapUsedDelta')
  rows.push({
    metric: 'bytes/event: ours RSS vs mastra heap',
    unit: 'B/event',
    better: 'lower',
    values: { ours: oursRss, mastra: mastraHeap },
    target: target(oursRss.median / mastraHeap.median, '<=', 1 / 3, 'ratio <= 0.33'),
  })
  rows.push({
    metric: 'bytes/event: heapUsed delta',
    unit: 'B/event',
    better: 'lower',
    values: { ours: per('ours', 'heapUsedDelta'), mastra: mastraHeap },
  })
  rows.push({
    metric: 'bytes/event: RSS delta',
    unit: 'B/event',
    better: 'lower',
    values: { ours: oursRss, mastra: per('mastra', 'rssDelta') },
  })
  ctx.note(
    `bytes/event: ${fmtK(bytesN)} events into one list, one fresh \`node --expose-gc\` per sample; ` +
      'ours keeps JSON text in Rust (RSS), Mastra keeps the objects in the V8 heap.',
  )
  return rows
}

function fmtK(n) {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n)
}
