/**
 * Drop-in proof: Mastra's own durable agent (`createDurableAgent` from
 * @mastra/core) streams a run through our caches, or through our CachingPubSub,
 * and `observe(runId, { offset: 0 })` then replays that run completely from
 * what we stored: the same chunks, in the same order, and the same text.
 */
import { Agent } from '@mastra/core/agent'
import { createDurableAgent } from '@mastra/core/agent/durable'
import type { MastraServerCache } from '@mastra/core/cache'
import type { PubSub } from '@mastra/core/events'
import { MockLanguageModelV3 } from 'ai/test'
import { Redis as IORedis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'

import { CachingPubSub, InMemoryServerCache, RedisServerCache } from '../dist/index.js'
import { clusterKeys, eventually, REDIS_URL, redisClusterNodes, uniquePrefix, within } from './helpers.js'

/** A plain connection for looking at what a run left in Redis. */
const raw = new IORedis(REDIS_URL)
afterAll(() => raw.quit())

const DELTAS = ['Hello', ', ', 'durable', ' world', '!']
const TEXT = DELTAS.join('')

/** A model that streams DELTAS as one text part (a fresh stream on every call). */
function mockModel(): MockLanguageModelV3 {
  return new MockLanguageModelV3({
    doStream: async () => ({
      stream: new ReadableStream({
        start(controller) {
          controller.enqueue({ type: 'stream-start', warnings: [] })
          // A Date in a chunk: what a replay from a JSON store gives back as ISO text.
          controller.enqueue({ type: 'response-metadata', id: 'response-1', modelId: 'mock-model-id', timestamp: new Date(0) })
          controller.enqueue({ type: 'text-start', id: 'text-1' })
          for (const delta of DELTAS) controller.enqueue({ type: 'text-delta', id: 'text-1', delta })
          controller.enqueue({ type: 'text-end', id: 'text-1' })
          controller.enqueue({
            type: 'finish',
            finishReason: { unified: 'stop', raw: 'stop' },
            usage: {
              inputTokens: { total: 10, noCache: 10, cacheRead: undefined, cacheWrite: undefined },
              outputTokens: { total: DELTAS.length, text: DELTAS.length, reasoning: undefined },
            },
          })
          controller.close()
        },
      }),
    }),
  })
}

interface Chunk {
  type: string
  payload?: { text?: string }
}

async function collect(stream: ReadableStream<Chunk>): Promise<Chunk[]> {
  const chunks: Chunk[] = []
  for await (const chunk of stream as unknown as AsyncIterable<Chunk>) chunks.push(chunk)
  return chunks
}

/** The JSON form of a value: what a JSON store (ours, in memory or Redis) gives back. */
const asJson = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T

const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length

type StoredEvent = { index?: number; type: string }

interface Setup {
  /** What `createDurableAgent` gets besides the agent. */
  options: { cache: MastraServerCache | false; pubsub?: PubSub }
  /** The stored history of a topic, read from our store. */
  history(topic: string): Promise<StoredEvent[]>
  /** What a cleaned-up run left behind in our store (keys, counters); empty when nothing. */
  residue(topic: string): Promise<unknown[]>
  /** Our CachingPubSub, when it is the agent's bus. */
  pubsub?: CachingPubSub
  done(): Promise<void>
}

/** Our Redis cache on one Redis or on the Redis Cluster, under a prefix of its own. */
function redisCache(on: 'Redis' | 'Redis Cluster' = 'Redis'): { cache: RedisServerCache; keys: () => Promise<string[]>; done: () => Promise<void> } {
  const prefix = uniquePrefix('mastra-agent')
  const nodes = on === 'Redis' ? [] : redisClusterNodes()
  const cache = new RedisServerCache(on === 'Redis' ? { url: REDIS_URL } : { cluster: { nodes } }, { keyPrefix: prefix })
  const keys = () => (on === 'Redis' ? raw.keys(`${prefix}*`) : clusterKeys(nodes, `${prefix}*`))
  return {
    cache,
    keys,
    done: async () => {
      await cache.clear()
      await cache.close()
      expect(await keys()).toEqual([])
    },
  }
}

const configurations: [string, () => Setup][] = [
  [
    'cache: our InMemoryServerCache',
    () => {
      const cache = new InMemoryServerCache()
      return {
        // Our caches implement MastraServerCache structurally; its private members
        // (inherited from MastraBase) make TypeScript ask for the cast.
        options: { cache: cache as unknown as MastraServerCache },
        // Mastra's CachingPubSub keeps a topic as the list `pubsub:<topic>` and the counter `pubsub:<topic>:counter`.
        history: async (topic) => (await cache.listFromTo(`pubsub:${topic}`, 0)) as StoredEvent[],
        residue: async (topic) => [await cache.get(`pubsub:${topic}`), await cache.get(`pubsub:${topic}:counter`)].filter((value) => value !== undefined),
        done: () => cache.clear(),
      }
    },
  ],
  [
    'cache: our RedisServerCache',
    () => {
      const { cache, keys, done } = redisCache()
      return {
        options: { cache: cache as unknown as MastraServerCache },
        history: async (topic) => (await cache.listFromTo(`pubsub:${topic}`, 0)) as StoredEvent[],
        residue: keys,
        done,
      }
    },
  ],
  [
    'cache: our RedisServerCache on a Redis Cluster',
    () => {
      const { cache, keys, done } = redisCache('Redis Cluster')
      return {
        options: { cache: cache as unknown as MastraServerCache },
        history: async (topic) => (await cache.listFromTo(`pubsub:${topic}`, 0)) as StoredEvent[],
        residue: keys,
        done,
      }
    },
  ],
  [
    'pubsub: our CachingPubSub (inner null) over InMemoryServerCache, cache: false',
    () => {
      const cache = new InMemoryServerCache()
      const pubsub = new CachingPubSub(null, cache)
      return {
        // Mastra's PubSub is an abstract class; ours implements its methods without extending it.
        options: { pubsub: pubsub as unknown as PubSub, cache: false },
        history: (topic) => pubsub.getHistory(topic),
        residue: (topic) => pubsub.getHistory(topic),
        pubsub,
        done: () => cache.clear(),
      }
    },
  ],
  ...(['Redis', 'Redis Cluster'] as const).map((on): [string, () => Setup] => [
    `pubsub: our CachingPubSub (inner null) over RedisServerCache${on === 'Redis' ? '' : ' on a Redis Cluster'}, cache: false`,
    () => {
      const { cache, keys, done } = redisCache(on)
      const pubsub = new CachingPubSub(null, cache)
      return {
        options: { pubsub: pubsub as unknown as PubSub, cache: false },
        history: (topic) => pubsub.getHistory(topic),
        residue: keys,
        pubsub,
        done,
      }
    },
  ]),
]

describe.each(configurations)("@mastra/core's createDurableAgent with %s", (_name, make) => {
  it('observe(runId, { offset: 0 }) replays the streamed run completely, in order', async () => {
    const timersBefore = timers()
    const setup = make()
    const cleanups: (() => void)[] = []
    try {
      const agent = new Agent({ id: 'durable-dropin', name: 'Durable drop-in', instructions: 'Say hello.', model: mockModel() })
      const durable = createDurableAgent({ agent, ...setup.options })
      if (setup.pubsub) expect(durable.pubsub).toBe(setup.pubsub)
      else expect(durable.cache).toBe(setup.options.cache)

      const run = await durable.stream('Say hello')
      cleanups.push(run.cleanup)
      const live = await within(collect(run.fullStream), 10_000, 'the live stream to finish')
      expect(await run.output.text).toBe(TEXT)
      expect(live.filter((c) => c.type === 'text-delta').map((c) => c.payload?.text)).toEqual(DELTAS)
      expect(live.at(-1)?.type).toBe('finish')

      // The run's events are in our store, indexed 0..n-1, the last one its finish.
      const topic = `agent.stream.${run.runId}`
      const stored = await setup.history(topic)
      expect(stored.length).toBeGreaterThanOrEqual(live.length)
      expect(stored.map((e) => e.index)).toEqual(stored.map((_, i) => i))
      expect(stored.at(-1)?.type).toBe('finish')

      const replay = await durable.observe(run.runId, { offset: 0 })
      cleanups.push(replay.cleanup)
      const replayed = await within(collect(replay.fullStream), 10_000, 'the replay to finish')
      // Exactly the live chunks, in order, as JSON: a replay from our store turns
      // the Date in response-metadata into its ISO text (with our CachingPubSub the
      // live stream gets the JSON form too).
      expect(replayed).toStrictEqual(asJson(live))
      expect(await replay.output.text).toBe(TEXT)

      // Both streams hold a subscription on our bus until Mastra's cleanup.
      if (setup.pubsub) expect(setup.pubsub.stats().callbackSubscriptions).toBeGreaterThan(0)

      // Mastra's cleanup (fire-and-forget clearTopic) leaves nothing of the run in
      // our store, releases every subscription on our bus, and stops its auto-cleanup timers.
      for (const cleanup of cleanups.splice(0)) cleanup()
      await eventually(async () => (await setup.residue(topic)).length === 0, 5_000, 'the run to be cleared from our store')
      const pubsub = setup.pubsub
      if (pubsub) {
        // A closed subscription's pending native read settles asynchronously.
        const idle = () => Object.values(pubsub.stats()).every((n) => n === 0)
        await eventually(idle, 5_000, 'our CachingPubSub to hold no subscription or call')
      }
      expect(timers()).toBeLessThanOrEqual(timersBefore)
    } finally {
      for (const cleanup of cleanups) cleanup()
      await setup.done()
    }
  })
})
