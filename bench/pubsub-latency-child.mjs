// Child process of the pubsub-redis section: the cross-process subscriber.
// Run as `node pubsub-latency-child.mjs <ours|raw> <redisUrl> <keyPrefix> <topic> <N>`.
//   ours: subscribes to `topic` with our CachingPubSub over a native
//         RedisServerCache with `keyPrefix` (for-await, from offset 0);
//   raw:  the baseline, a plain node-redis SUBSCRIBE to the channel
//         `${keyPrefix}${topic}` (messages are the event's JSON with its
//         index; nothing stored).
// Prints `ready` once subscribed, takes N events, recording for each
// `performance.timeOrigin + performance.now()` when it is received (indexed
// by the event's index), then prints one JSON line `{ recv: [...] }` and
// exits. The parent publishes, and compares its publish-call timestamps with
// these.
import { CachingPubSub, RedisServerCache } from '../dist/index.js'

const [mode, redisUrl, keyPrefix, topic, nArg] = process.argv.slice(2)
const N = Number(nArg)
if (!['ours', 'raw'].includes(mode) || !redisUrl || !keyPrefix || !topic || !(N > 0)) {
  throw new Error('usage: pubsub-latency-child.mjs <ours|raw> <redisUrl> <keyPrefix> <topic> <N>')
}

// The parent kills us on timeout; this is a backstop should it die first.
const backstop = setTimeout(() => {
  process.stderr.write(`pubsub-latency-child: timed out waiting for ${N} events\n`)
  process.exit(2)
}, 120_000)
backstop.unref()

const recv = new Array(N).fill(null)
const origin = performance.timeOrigin

if (mode === 'ours') {
  const cache = new RedisServerCache({ url: redisUrl }, { keyPrefix, ttlSeconds: 300 })
  const pubsub = new CachingPubSub(null, cache)
  let received = 0
  const events = pubsub.subscribeWithReplay(topic)
  process.stdout.write('ready\n')
  try {
    for await (const event of events) {
      const t = origin + performance.now()
      if (event.index < N) recv[event.index] = t
      if (++received >= N) break
    }
  } finally {
    await cache.close()
  }
} else {
  const { createClient } = await import('redis')
  const client = createClient({ url: redisUrl, socket: { connectTimeout: 3_000, reconnectStrategy: false } })
  await client.connect()
  let received = 0
  let done
  const finished = new Promise((resolve) => (done = resolve))
  await client.subscribe(`${keyPrefix}${topic}`, (message) => {
    const t = origin + performance.now()
    const { index } = JSON.parse(message)
    if (index < N) recv[index] = t
    if (++received === N) done()
  })
  process.stdout.write('ready\n')
  await finished
  await client.quit()
}
process.stdout.write(`${JSON.stringify({ recv })}\n`)
