// The scratch app's Mastra app: a @mastra/core Agent made durable by our
// createDurableAgent over our RedisServerCache, registered in `new Mastra`
// and run through `mastra.getAgent`; and Mastra's own CachingPubSub storing
// its topics in our cache. Prints a JSON report.
import { Mastra } from '@mastra/core'
import { Agent } from '@mastra/core/agent'
import { CachingPubSub, EventEmitterPubSub } from '@mastra/core/events'
import { MockLanguageModelV3 } from 'ai/test'
import { createDurableAgent, RedisServerCache } from 'durable-agent'

const redisUrl = process.env.REDIS_URL
if (!redisUrl) throw new Error('REDIS_URL names the Redis for the Mastra app')
const cache = new RedisServerCache({ url: redisUrl }, { keyPrefix: `pack-app-mastra:${process.pid}:${Date.now()}:` })

const model = new MockLanguageModelV3({
  doStream: async () => ({
    stream: new ReadableStream({
      start(controller) {
        controller.enqueue({ type: 'text-start', id: 't' })
        controller.enqueue({ type: 'text-delta', id: 't', delta: 'Registered and durable.' })
        controller.enqueue({ type: 'text-end', id: 't' })
        controller.enqueue({
          type: 'finish',
          finishReason: { unified: 'stop', raw: 'stop' },
          usage: { inputTokens: { total: 3, noCache: 3 }, outputTokens: { total: 3, text: 3 } },
        })
        controller.close()
      },
    }),
  }),
})
const durable = createDurableAgent({ agent: new Agent({ id: 'support', name: 'Support', instructions: 'Be brief.', model }), cache })
const mastra = new Mastra({ agents: { support: durable }, logger: false })
const registered = mastra.getAgent('support')
const result = await registered.stream('Hello')
const text = await result.output.text
const replayed = (await (await durable.observe(result.runId, { offset: 0 })).output.getFullOutput()).text
await durable.cleanup(result.runId)

// Mastra's CachingPubSub, its history in our Redis cache.
const pubsub = new CachingPubSub(new EventEmitterPubSub(), cache)
const topic = `agent.stream.${result.runId}`
for (const n of [0, 1, 2]) await pubsub.publish(topic, { type: 'chunk', runId: result.runId, data: { n } })
const history = (await pubsub.getHistory(topic, 1)).map((event) => ({ index: event.index, n: event.data.n }))
await pubsub.clearTopic(topic)

await cache.clear()
await cache.close()
console.log(JSON.stringify({ registeredIsOurs: registered === durable, text, replayed, history }))
