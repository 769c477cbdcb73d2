// Child process of the in-memory section: stores N events with
// listPushIndexed in one list of one implementation, and prints the heapUsed
// and RSS growth as JSON. Run as `node --expose-gc cache-bytes-child.mjs
// <ours|mastra> <N>`, one fresh process per sample so nothing else is in the
// heap.
import { randomUUID } from 'node:crypto'
import { makeEvent } from './lib.mjs'

const [impl, nArg] = process.argv.slice(2)
const N = Number(nArg)
if (typeof globalThis.gc !== 'function') throw new Error('run with --expose-gc')
if (!['ours', 'mastra'].includes(impl) || !(N > 0)) throw new Error('usage: cache-bytes-child.mjs <ours|mastra> <N>')

const { InMemoryServerCache } = impl === 'ours' ? await import('../dist/index.js') : await import('@mastra/core/cache')
const cache = new InMemoryServerCache({ ttlMs: 0, maxSize: 1e6 })

// Warm up the code paths and the cache's own structures, then drop the list.
for (let i = 0; i < 2_000; i++) await cache.listPushIndexed('warm', 'warm:counter', makeEvent())
await cache.delete('warm')
await cache.delete('warm:counter')

async function settle() {
  for (let i = 0; i < 6; i++) {
    globalThis.gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
}

await settle()
const before = process.memoryUsage()

// Events are made inside the loop, as a publisher would: whatever the cache
// keeps of them is what counts.
const runId = randomUUID()
for (let i = 0; i < N; i++) await cache.listPushIndexed('stream:bytes', 'stream:bytes:counter', makeEvent(runId))

await settle()
const after = process.memoryUsage()

const length = await cache.listLength('stream:bytes')
if (length !== N) throw new Error(`expected ${N} entries, found ${length}`)

process.stdout.write(
  JSON.stringify({
    impl,
    n: N,
    heapUsedDelta: after.heapUsed - before.heapUsed,
    rssDelta: after.rss - before.rss,
    externalDelta: after.external - before.external,
  }),
)
