// `npm test`: builds if needed, makes sure Redis answers (see redis.mjs), then
// runs the Rust tests and the vitest suite against the built addon.
import { spawnSync } from 'node:child_process'

import { ensureRedis } from './redis.mjs'

await import('./ensure-built.mjs')
const redis = await ensureRedis()
const env = { ...process.env, REDIS_URL: redis.url }
let status = 0
try {
  for (const [command, args] of [
    ['cargo', ['test', '--workspace']],
    ['npx', ['vitest', 'run']],
  ]) {
    console.log(`\n> ${command} ${args.join(' ')}   (REDIS_URL=${redis.url})`)
    status = spawnSync(command, args, { stdio: 'inherit', env }).status ?? 1
    if (status !== 0) break
  }
} finally {
  redis.stop()
}
process.exit(status)
