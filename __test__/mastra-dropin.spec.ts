/**
 * Drop-in proof: Mastra's own CachingPubSub, over Mastra's EventEmitterPubSub,
 * storing its history in our caches.
 */
import type { MastraServerCache } from '@mastra/core/cache'
import { CachingPubSub, EventEmitterPubSub } from '@mastra/core/events'
import { describe, expect, it } from 'vitest'

import { InMemoryServerCache, RedisServerCache, type ServerCache } from '../dist/index.js'
import { eventually, REDIS_URL, redisClusterNodes, uniquePrefix } from './helpers.js'

interface Received {
  type: string
  index?: number
  data: unknown
}

const caches: [string, () => { cache: ServerCache; done: () => Promise<void> }][] = [
  ['InMemoryServerCache', () => ({ cache: new InMemoryServerCache(), done: async () => {} })],
  [
    'RedisServerCache',
    () => {
      const cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: uniquePrefix('mastra') })
      return { cache, done: async () => (await cache.clear(), await cache.close()) }
    },
  ],
  [
    'RedisServerCache on a Redis Cluster',
    () => {
      const cache = new RedisServerCache({ cluster: { nodes: redisClusterNodes() } }, { keyPrefix: uniquePrefix('mastra') })
      return { cache, done: async () => (await cache.clear(), await cache.close()) }
    },
  ],
]

describe.each(caches)("@mastra/core's CachingPubSub over our %s", (_name, make) => {
  async function withPubSub(body: (pubsub: CachingPubSub) => Promise<void>) {
    const { cache, done } = make()
    // Our caches implement MastraServerCache structurally; its private members
    // (inherited from MastraBase) make TypeScript ask for the cast.
    const pubsub = new CachingPubSub(new EventEmitterPubSub(), cache as unknown as MastraServerCache)
    try {
      await body(pubsub)
    } finally {
      await done()
    }
  }

  const topic = 'agent.stream.run-1'
  const publishN = async (pubsub: CachingPubSub, from: number, to: number) => {
    for (let i = from; i < to; i++) await pubsub.publish(topic, { type: 'chunk', runId: 'run-1', data: { n: i } })
  }

  it('replays the whole history to a late subscriber, then delivers live events', () =>
    withPubSub(async (pubsub) => {
      await publishN(pubsub, 0, 3)
      const seen: Received[] = []
      await pubsub.subscribeWithReplay(topic, (event) => void seen.push(event as Received))
      await eventually(() => seen.length === 3, 5_000, 'replay')
      await publishN(pubsub, 3, 5)
      await eventually(() => seen.length === 5, 5_000, 'live events')
      expect(seen.map((e) => e.index)).toEqual([0, 1, 2, 3, 4])
      expect(seen.map((e) => (e.data as { n: number }).n)).toEqual([0, 1, 2, 3, 4])
      const history = await pubsub.getHistory(topic)
      expect(history.map((e) => e.index)).toEqual([0, 1, 2, 3, 4])
      // Redis returns dates as strings; Mastra rehydrates or passes them on as given.
      expect(new Date(history[0]!.createdAt as unknown as string).getTime()).not.toBeNaN()
    }))

  it('replays from an offset', () =>
    withPubSub(async (pubsub) => {
      await publishN(pubsub, 0, 4)
      const seen: Received[] = []
      await pubsub.subscribeFromOffset(topic, 2, (event) => void seen.push(event as Received))
      await eventually(() => seen.length === 2, 5_000, 'replay from offset 2')
      expect(seen.map((e) => e.index)).toEqual([2, 3])
      expect((await pubsub.getHistory(topic, 3)).map((e) => e.index)).toEqual([3])
    }))

  it('stores concurrent publishes in publish order (10,000 unawaited)', () =>
    withPubSub(async (pubsub) => {
      const n = 10_000
      await Promise.all(Array.from({ length: n }, (_, i) => pubsub.publish(topic, { type: 'chunk', runId: 'run-1', data: { n: i } })))
      const history = await pubsub.getHistory(topic)
      expect(history.map((e) => e.index)).toEqual(Array.from({ length: n }, (_, i) => i))
      expect(history.map((e) => (e.data as { n: number }).n)).toEqual(Array.from({ length: n }, (_, i) => i))
    }))

  it('clearTopic removes the history and restarts indices at 0', () =>
    withPubSub(async (pubsub) => {
      await publishN(pubsub, 0, 2)
      await pubsub.clearTopic(topic)
      expect(await pubsub.getHistory(topic)).toEqual([])
      await publishN(pubsub, 0, 1)
      expect((await pubsub.getHistory(topic)).map((e) => e.index)).toEqual([0])
    }))
})

describe('our createDurableAgent inside a Mastra app', () => {
  it('registers in new Mastra({ agents }) and runs durably through mastra.getAgent(...)', async () => {
    const { Mastra } = await import('@mastra/core')
    const { Agent } = await import('@mastra/core/agent')
    const { MockLanguageModelV3 } = await import('ai/test')
    const { createDurableAgent, isDurableAgent, DurableAgent } = await import('../dist/index.js')
    const prompts: unknown[] = []
    const model = new MockLanguageModelV3({
      doStream: async ({ prompt }) => {
        prompts.push(prompt)
        return {
          stream: new ReadableStream({
            start(controller) {
              controller.enqueue({ type: 'text-start', id: 't' })
              controller.enqueue({ type: 'text-delta', id: 't', delta: 'Registered and durable.' })
              controller.enqueue({ type: 'text-end', id: 't' })
              controller.enqueue({
                type: 'finish',
                finishReason: { unified: 'stop', raw: 'stop' },
                usage: {
                  inputTokens: { total: 3, noCache: 3, cacheRead: undefined, cacheWrite: undefined },
                  outputTokens: { total: 3, text: 3, reasoning: undefined },
                },
              })
              controller.close()
            },
          }),
        }
      },
    })
    const agent = new Agent({ id: 'support', name: 'Support', instructions: 'Be brief.', model })
    const durable = createDurableAgent({ agent })
    // Ours, and it also answers for the Mastra agent it wraps.
    expect(isDurableAgent(durable)).toBe(true)
    expect(durable).toBeInstanceOf(DurableAgent)
    expect('getInstructions' in durable).toBe(true)

    const mastra = new Mastra({ agents: { support: durable as never }, logger: false })
    const registered = mastra.getAgent('support') as unknown as typeof durable
    expect(registered).toBe(durable)
    expect(await (registered as unknown as { getInstructions(): Promise<string> }).getInstructions()).toBe('Be brief.')

    const result = await registered.stream('Hello')
    expect(await result.output.text).toBe('Registered and durable.')
    expect(prompts[0]).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hello' }] },
    ])
    // The run is stored: any reader can replay it.
    const replay = await durable.observe(result.runId)
    expect((await replay.output.getFullOutput()).text).toBe('Registered and durable.')
    await durable.cleanup(result.runId)
  })
})
