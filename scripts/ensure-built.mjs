// Builds the release addon and the TS facade when they are missing or older
// than their sources, so `npm test`, `npm run bench` and `npm run demo` work on
// a fresh clone with one command and cost nothing when already built.
import { execSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname

function newest(paths) {
  let latest = 0
  for (const path of paths) {
    const full = join(root, path)
    if (!existsSync(full)) continue
    const stat = statSync(full)
    if (stat.isDirectory()) {
      latest = Math.max(latest, newest(readdirSync(full).map((entry) => join(path, entry))))
    } else {
      latest = Math.max(latest, stat.mtimeMs)
    }
  }
  return latest
}

function age(path) {
  const full = join(root, path)
  return existsSync(full) ? statSync(full).mtimeMs : -1
}

const addon = 'durable-agent.linux-x64-gnu.node'
const rustSources = ['src', 'crates/core/src', 'Cargo.toml', 'crates/core/Cargo.toml', 'Cargo.lock', 'build.rs']
if (age(addon) < newest(rustSources)) {
  console.log('[ensure-built] building the native addon (release)...')
  execSync('npm run build:native -- --release', { cwd: root, stdio: 'inherit' })
}
if (age('dist/index.js') < Math.max(newest(['ts', 'tsconfig.json', 'tsconfig.build.json']), age('native.d.ts'))) {
  console.log('[ensure-built] compiling the TypeScript facade...')
  execSync('npx tsc -p tsconfig.build.json', { cwd: root, stdio: 'inherit' })
}
