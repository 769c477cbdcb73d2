import { CachingPubSub, InMemoryServerCache, RedisServerCache, type CachingPubSubOptions } from '../dist/index.js'
import { REDIS_URL, redisClusterNodes, uniquePrefix } from './helpers.js'

/** A CachingPubSub factory per backend; `done` clears and closes what it made. */
export interface Backend {
  name: string
  make(options?: CachingPubSubOptions): { pubsub: CachingPubSub; cache: InMemoryServerCache | RedisServerCache; done: () => Promise<void> }
}

export const backends: Backend[] = [
  {
    name: 'in memory',
    make(options) {
      const cache = new InMemoryServerCache({ maxSize: 100_000 })
      return { pubsub: new CachingPubSub(null, cache, options), cache, done: async () => {} }
    },
  },
  {
    name: 'Redis',
    make(options) {
      const cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: uniquePrefix('pubsub') })
      return {
        pubsub: new CachingPubSub(null, cache, options),
        cache,
        done: async () => {
          await cache.clear()
          await cache.close()
        },
      }
    },
  },
  {
    name: 'Redis Cluster',
    make(options) {
      const cache = new RedisServerCache({ cluster: { nodes: redisClusterNodes() } }, { keyPrefix: uniquePrefix('pubsub') })
      return {
        pubsub: new CachingPubSub(null, cache, options),
        cache,
        done: async () => {
          await cache.clear()
          await cache.close()
        },
      }
    },
  },
]

export const event = (n: number, runId = 'run-1') => ({ type: 'chunk', runId, data: { n } })
