// A resumable stream: an agent run publishes its events; a client reads them
// with `for await`, drops off, and reconnects later from the last index it
// saw, receiving every missed event exactly once, in order.
//
//   npm run demo              # in memory (the default, nothing to set up)
//   npm run demo -- --redis   # over Redis (REDIS_URL or 127.0.0.1:6379): the
//                             # run and the client use separate connections,
//                             # as two processes would
import { randomUUID } from 'node:crypto'

import { CachingPubSub, InMemoryServerCache, RedisServerCache } from '../dist/index.js'

const useRedis = process.argv.includes('--redis')
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const caches = useRedis ? [0, 1].map(() => new RedisServerCache({ url }, { keyPrefix: 'demo:', ttlSeconds: 60 })) : [new InMemoryServerCache()]
const runSide = new CachingPubSub(null, caches[0])
const clientSide = new CachingPubSub(null, caches.at(-1))
console.log(`store: ${caches[0].name}`)

const runId = randomUUID()
const topic = `agent.stream.${runId}`
const words = 'Durable agents keep every event of a run, so a client can come back and catch up exactly.'.split(' ')

// The run: a start, one text delta per word (a few ms apart), a finish.
const run = (async () => {
  await runSide.publish(topic, { type: 'start', runId, data: {} })
  for (const word of words) {
    await runSide.publish(topic, { type: 'text-delta', runId, data: { text: `${word} ` } })
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  await runSide.publish(topic, { type: 'finish', runId, data: { finishReason: 'stop' } })
})()

const received = []
// The client reads five events, then its connection drops.
for await (const event of clientSide.subscribeWithReplay(topic)) {
  received.push(event)
  if (received.length === 5) break
}
const lastIndex = received.at(-1).index
console.log(`client read events 0..${lastIndex}, then disconnected`)

// It comes back (the run went on meanwhile) and resumes after the last event
// it got: the first read checks that event is still there, so a topic
// written again meanwhile (cleared, or a Redis failover that lost events)
// would be ERR_TOPIC_REWRITTEN, never a silent gap. ({ offset: lastIndex + 1 }
// resumes at the same place, without the check.)
for await (const event of clientSide.subscribeWithReplay(topic, { after: received.at(-1) })) {
  received.push(event)
  if (event.type === 'finish') break
}
await run
console.log(`client resumed at ${lastIndex + 1} and read to the finish: ${received.length} events in all`)

const exactlyOnceInOrder = received.every((event, i) => event.index === i)
const text = received
  .filter((event) => event.type === 'text-delta')
  .map((event) => event.data.text)
  .join('')
  .trim()
console.log(`indices 0..${received.length - 1}, each exactly once, in order: ${exactlyOnceInOrder}`)
console.log(`text: ${text}`)

await runSide.clearTopic(topic)
for (const cache of caches) await cache.close?.()
if (!exactlyOnceInOrder || text !== words.join(' ')) process.exit(1)

// Part two: a durable agent run, suspended for approval and resumed.
console.log('\n--- durable agent ---')
await import('./agent-demo.mjs')
