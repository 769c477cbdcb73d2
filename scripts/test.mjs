// `npm test`: builds if needed, makes sure Redis and a Redis Cluster answer
// (see redis.mjs), then runs the Rust tests and the vitest suite against the
// built addon.
import { spawnSync } from 'node:child_process'

import { ensureRedis, ensureRedisCluster } from './redis.mjs'

await import('./ensure-built.mjs')
const redis = await ensureRedis()
const cluster = await ensureRedisCluster()
const env = { ...process.env, REDIS_URL: redis.url, REDIS_CLUSTER_NODES: cluster.nodes.join(',') }
let status = 0
try {
  for (const [command, args] of [
    ['cargo', ['test', '--workspace']],
    ['npx', ['vitest', 'run']],
  ]) {
    console.log(`\n> ${command} ${args.join(' ')}   (REDIS_URL=${redis.url} REDIS_CLUSTER_NODES=${env.REDIS_CLUSTER_NODES})`)
    status = spawnSync(command, args, { stdio: 'inherit', env }).status ?? 1
    if (status !== 0) break
  }
} finally {
  redis.stop()
  cluster.stop()
}
process.exit(status)
