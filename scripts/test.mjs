// `npm test`: builds if needed, makes sure Redis and a Redis Cluster answer
// (see redis.mjs), then runs the Rust tests and the vitest suite against the
// built addon (which includes pack.spec.ts: the packed package installed in a
// scratch app).
//
// With vitest files as arguments, runs only those, without the Rust tests:
// `npm run test:pack` is `node scripts/test.mjs __test__/pack.spec.ts`.
import { spawnSync } from 'node:child_process'

import { ensureRedis, ensureRedisCluster } from './redis.mjs'

const only = process.argv.slice(2)
await import('./ensure-built.mjs')
const redis = await ensureRedis()
const cluster = await ensureRedisCluster()
const env = { ...process.env, REDIS_URL: redis.url, REDIS_CLUSTER_NODES: cluster.nodes.join(',') }
const steps =
  only.length === 0
    ? [
        ['cargo', ['test', '--workspace']],
        ['npx', ['vitest', 'run']],
      ]
    : [['npx', ['vitest', 'run', ...only]]]
let status = 0
try {
  for (const [command, args] of steps) {
    console.log(`\n> ${command} ${args.join(' ')}   (REDIS_URL=${redis.url} REDIS_CLUSTER_NODES=${env.REDIS_CLUSTER_NODES})`)
    status = spawnSync(command, args, { stdio: 'inherit', env }).status ?? 1
    if (status !== 0) break
  }
} finally {
  redis.stop()
  cluster.stop()
}
process.exit(status)
