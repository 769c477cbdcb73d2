// A resumable stream in a few lines: an agent run writes its events to the
// cache with gap-free indices; a client reads some, drops off, and later
// resumes from its last index, receiving every missed event exactly once.
//
//   npm run demo              # in memory (the default, nothing to set up)
//   npm run demo -- --redis   # the same over Redis (REDIS_URL or 127.0.0.1:6379)
import { randomUUID } from 'node:crypto'

import { InMemoryServerCache, RedisServerCache } from '../dist/index.js'

const useRedis = process.argv.includes('--redis')
const cache = useRedis
  ? new RedisServerCache({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }, { keyPrefix: 'demo:' })
  : new InMemoryServerCache()
console.log(`cache: ${cache.name}`)

const runId = randomUUID()
const topic = `pubsub:agent.stream.${runId}`
const words = 'Durable agents keep every event of a run, so a client can come back and catch up exactly.'.split(' ')

async function emit(type, data) {
  const index = await cache.listPushIndexed(topic, `${topic}:counter`, {
    id: randomUUID(),
    type,
    runId,
    data,
    createdAt: new Date(),
  })
  return index
}

// The run starts streaming.
await emit('start', {})
for (const word of words.slice(0, 6)) await emit('text-delta', { text: `${word} ` })

// A client reads what is there, then its connection drops.
const firstRead = await cache.listFromTo(topic, 0)
let lastIndex = firstRead.at(-1).index
console.log(`client read ${firstRead.length} events (0..${lastIndex}), then disconnected`)

// The run goes on without it.
for (const word of words.slice(6)) await emit('text-delta', { text: `${word} ` })
await emit('finish', { finishReason: 'stop' })

// The client comes back and resumes right after the last index it saw.
const missed = await cache.listFromTo(topic, lastIndex + 1)
console.log(`client resumed from index ${lastIndex + 1}: ${missed.length} missed events`)
const all = [...firstRead, ...missed]
const indices = all.map((event) => event.index)
const gapFree = indices.every((index, i) => index === i)
const text = all
  .filter((event) => event.type === 'text-delta')
  .map((event) => event.data.text)
  .join('')
  .trim()
console.log(`indices 0..${indices.length - 1}, gap-free and without duplicates: ${gapFree}`)
console.log(`text: ${text}`)
console.log(`events stored for the run: ${await cache.listLength(topic)}`)

await cache.delete(topic)
await cache.delete(`${topic}:counter`)
if (useRedis) await cache.close()
if (!gapFree || text !== words.join(' ')) process.exit(1)
