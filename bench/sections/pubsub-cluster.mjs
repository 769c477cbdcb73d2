// Pub/sub on a Redis Cluster: our CachingPubSub over RedisServerCache({ cluster })
// against the same over one Redis ({ url }), in the same run. What the Cluster
// costs: routing, scripts on the slot's primary, and live wake-ups over
// sharded pub/sub instead of the XREAD tailer. Mastra is not in this section:
// @mastra/redis gives a list and its counter no shared hash tag, so on a
// Cluster its listPushIndexed script is refused (CROSSSLOT) and it falls back
// to a non-atomic INCR then RPUSH: not the same guarantee to time.
import { randomBytes } from 'node:crypto'
import { CachingPubSub, RedisServerCache } from '../../dist/index.js'
import { ensureRedisCluster } from '../../scripts/redis.mjs'
import { compare, inFlight, makeEvents, publishOp, publishReps, replayIterator } from '../lib.mjs'

export const title = 'Pub/sub on a Redis Cluster: ours RedisServerCache({ cluster }) vs ours on one Redis ({ url })'
export const columns = { cluster: 'ours, Redis Cluster', single: 'ours, one Redis' }

const TTL_SECONDS = 300

export async function run(ctx) {
  const { quick, reps, log, redisUrl } = ctx
  const seqN = quick ? 1_000 : 5_000
  const parN = quick ? 5_000 : 20_000
  const replayN = quick ? 5_000 : 20_000
  const prefix = `bench:${randomBytes(6).toString('hex')}:`
  const cluster = await ensureRedisCluster()
  const caches = {
    cluster: new RedisServerCache({ cluster: { nodes: cluster.nodes } }, { keyPrefix: prefix, ttlSeconds: TTL_SECONDS }),
    single: new RedisServerCache({ url: redisUrl }, { keyPrefix: prefix, ttlSeconds: TTL_SECONDS }),
  }
  try {
    ctx.note(
      `Cluster: ${cluster.nodes.length} primaries on this machine (${process.env.REDIS_CLUSTER_NODES ? 'REDIS_CLUSTER_NODES' : 'started for this run'}).`,
    )
    const pubsubs = Object.fromEntries(Object.entries(caches).map(([name, cache]) => [name, new CachingPubSub(null, cache)]))
    const events = makeEvents(Math.max(parN, replayN))
    const rows = []

    log(`publish sequential, ${seqN} events x ${reps} reps`)
    const seq = await compare(publishReps(pubsubs, events, { mode: 'seq', count: seqN, warmCount: Math.ceil(seqN / 4) }), { reps })
    rows.push({ metric: 'publish, sequential awaited', unit: 'events/s', better: 'higher', values: seq })

    log(`publish 64 in flight, ${parN} events x ${reps} reps`)
    const par = await compare(publishReps(pubsubs, events, { mode: 'par', count: parN, warmCount: Math.ceil(parN / 4) }), { reps })
    rows.push({ metric: 'publish, 64 in flight', unit: 'events/s', better: 'higher', values: par })

    log(`replay: storing ${replayN} events per deployment`)
    for (const pubsub of Object.values(pubsubs)) await inFlight(replayN, 64, publishOp(pubsub, 'replay', events))
    log(`replay of ${replayN} stored events (for await) x ${reps} reps`)
    const replay = await compare(Object.fromEntries(Object.entries(pubsubs).map(([name, pubsub]) => [name, () => replayIterator(pubsub, 'replay', replayN)])), {
      reps,
    })
    rows.push({ metric: `replay ${replayN / 1000}k stored, for-await`, unit: 'events/s', better: 'higher', values: replay })
    return rows
  } finally {
    for (const cache of Object.values(caches)) {
      await cache.clear().catch(() => undefined)
      await cache.close()
    }
    cluster.stop()
  }
}
