/**
 * The package as a user's app gets it (`npm run test:pack`): the tarballs of
 * `npm run pack:all` (the main package and each platform package built here),
 * installed from those files and the registry into an app in a temporary
 * folder that sees nothing of this repository (not its node_modules) and has
 * no Rust toolchain on its PATH. There an ES-module and a CommonJS script use
 * every export (a resumable stream in memory, a durable run with approval over
 * Redis, the client mode), tsc checks a usage file under moduleResolution
 * bundler and node16, and a Mastra app runs our classes. The app's files are
 * in pack-app/.
 */
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { delimiter, join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'

import { parseTriple } from '@napi-rs/cli'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { REDIS_URL } from './helpers.js'

const root = join(__dirname, '..')
const repoRequire = createRequire(join(root, 'package.json'))
const manifest = repoRequire('./package.json') as { name: string; version: string; napi: { binaryName: string; targets: string[] } }

interface Packed {
  tarball: string
  manifest: { name: string; version: string; main?: string; optionalDependencies?: Record<string, string> }
  files: string[]
  publish: string
}

interface Run {
  status: number | null
  stdout: string
  stderr: string
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env, timeout = 300_000): Run {
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout })
  if (result.error) throw result.error
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** The JSON report a script printed as its last line of output, once it exited cleanly. */
function report<T>(result: Run): T {
  expect(result.status, result.stderr).toBe(0)
  return JSON.parse(result.stdout.trim().split('\n').at(-1)!) as T
}

/** Directories of PATH holding one of these programs. */
function holding(path: string, programs: string[]): boolean {
  return programs.some((program) => {
    try {
      return statSync(join(path, program)).isFile()
    } catch {
      return false
    }
  })
}

const RUST = ['cargo', 'rustc', 'rustup']

/**
 * The app's environment: ours without the Rust toolchain on PATH, without
 * this repository's node_modules/.bin that `npm run` puts there, and without
 * what npm and Node take from the environment (npm_config_* of the run that
 * started us, NODE_PATH, NODE_OPTIONS). The durable runs use REDIS_URL, and
 * the native loader checks that the platform package has the main package's
 * version.
 */
function appEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^(npm_|NODE_PATH$|NODE_OPTIONS$|INIT_CWD$)/i.test(name)) env[name] = value
  }
  env.PATH = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '' && !dir.split(/[\\/]/).includes('node_modules') && !holding(dir, RUST))
    .join(delimiter)
  env.REDIS_URL = REDIS_URL
  env.NAPI_RS_ENFORCE_VERSION_CHECK = '1'
  return env
}

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
}

/** What the main tarball must hold: the facade built from every source in ts/, its typings, the native loader, the docs. */
function expectedMainFiles(): string[] {
  const built = filesUnder(join(root, 'ts')).flatMap((source) => {
    const [, stem, ext] = /^(.*)\.(m?ts)$/.exec(source)!
    return ext === 'mts' ? [`dist/${stem}.mjs`, `dist/${stem}.d.mts`] : [`dist/${stem}.js`, `dist/${stem}.d.ts`]
  })
  // client/package.json: `durable-agent/client` for resolvers that read no `exports`.
  return [...built, 'native.js', 'native.d.ts', 'client/package.json', 'package.json', 'README.md', 'CHANGELOG.md'].sort()
}

/** The package's runtime exports, from the build that was packed. */
const runtimeExports = Object.keys(repoRequire('./dist/index.js') as object).sort()

let work: string
let app: string
let env: NodeJS.ProcessEnv
let main: Packed
let platforms: [string, Packed][]

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'durable-agent-pack-'))
  const packed = JSON.parse(run(process.execPath, [join(root, 'scripts', 'pack.mjs'), join(work, 'tarballs')], root).stdout) as {
    main: Packed
    platforms: Record<string, Packed>
  }
  main = packed.main
  platforms = Object.entries(packed.platforms)

  app = join(work, 'app')
  cpSync(join(__dirname, 'pack-app'), app, { recursive: true })
  // No "type": the app is CommonJS, as most are; its .mjs files are ES modules.
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'durable-agent-pack-app', private: true }))
  env = appEnv()
  // The app's other dependencies at the versions this repository uses, from
  // the registry (npm's cache answers what it holds).
  const registryDeps = ['@mastra/core', 'ai', 'redis', 'typescript', '@types/node'].map(
    (name) => `${name}@${(repoRequire(`${name}/package.json`) as { version: string }).version}`,
  )
  const tarballs = [main.tarball, ...platforms.map(([, packed]) => packed.tarball)]
  const install = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...tarballs, ...registryDeps], app, env)
  expect(install.status, install.stdout + install.stderr).toBe(0)
}, 600_000)

afterAll(() => {
  // The app's ~15,000 files can take longer to delete than the tests took on
  // a busy disk: a detached process deletes them after we are done.
  if (work) {
    const script = `require('node:fs').rmSync(${JSON.stringify(work)}, { recursive: true, force: true })`
    spawn(process.execPath, ['-e', script], { detached: true, stdio: 'ignore' }).unref()
  }
})

describe('the packages', () => {
  it('every target of napi.targets has its platform package in npm/, at the main version (napi version keeps them in step)', () => {
    for (const triple of manifest.napi.targets) {
      const abi = parseTriple(triple).platformArchABI
      expect(repoRequire(`./npm/${abi}/package.json`), triple).toMatchObject({
        name: `${manifest.name}-${abi}`,
        version: manifest.version,
        main: `${manifest.napi.binaryName}.${abi}.node`,
      })
    }
  })

  it('the main package holds the facade built from ts/, its typings, the native loader and the docs, and nothing else', () => {
    // No sources, tests, benches, scripts, source maps or addons.
    expect(main.files).toEqual(expectedMainFiles())
    expect(main.manifest.name).toBe(manifest.name)
    expect(main.manifest.version).toBe(manifest.version)
  })

  it('the main package names each platform package as an optional dependency at its own version', () => {
    expect(platforms.length).toBeGreaterThan(0)
    expect(main.manifest.optionalDependencies).toEqual(Object.fromEntries(platforms.map(([abi]) => [`${manifest.name}-${abi}`, manifest.version])))
  })

  it('each platform package holds its addon and nothing else', () => {
    for (const [abi, packed] of platforms) {
      const addon = `${manifest.napi.binaryName}.${abi}.node`
      expect(packed.files).toEqual(['README.md', addon, 'package.json'])
      expect(packed.manifest).toMatchObject({ name: `${manifest.name}-${abi}`, version: manifest.version, main: addon })
    }
  })

  it('npm publish --dry-run warns about nothing but the missing login', () => {
    for (const packed of [main, ...platforms.map(([, p]) => p)]) {
      expect(packed.publish).toContain(`name: ${packed.manifest.name}`)
      const warnings = packed.publish.split('\n').filter((line) => /^npm warn/i.test(line) && !/requires you to be logged in/.test(line))
      expect(warnings, packed.manifest.name).toEqual([])
    }
  })

  it('the typings resolve under node10, node16 (from CommonJS and from ES modules) and bundler (attw)', () => {
    const attw = run(join(root, 'node_modules', '.bin', 'attw'), [main.tarball, '--format', 'json'], root)
    const result = JSON.parse(attw.stdout) as {
      problems: unknown
      analysis: { entrypoints: Record<string, { resolutions: Record<string, { resolution?: { fileName: string } }> }> }
    }
    expect(result.problems).toEqual({})
    const typings = Object.fromEntries(
      Object.entries(result.analysis.entrypoints['.']!.resolutions).map(([kind, { resolution }]) => [kind, resolution?.fileName]),
    )
    expect(typings).toEqual({
      node10: '/node_modules/durable-agent/dist/index.d.ts',
      'node16-cjs': '/node_modules/durable-agent/dist/index.d.ts',
      'node16-esm': '/node_modules/durable-agent/dist/index.d.mts',
      bundler: '/node_modules/durable-agent/dist/index.d.mts',
    })
    expect(attw.status, attw.stderr).toBe(0)
  })
})

describe('an app that installed the tarballs', () => {
  it('has no Rust toolchain on its PATH and lives outside this repository', () => {
    for (const program of RUST) {
      expect(run('sh', ['-c', `command -v ${program}`], app, env).status, `${program} on the app's PATH`).not.toBe(0)
    }
    expect(run('sh', ['-c', 'command -v node && command -v npm'], app, env).status).toBe(0)
    expect(relative(root, app).startsWith('..')).toBe(true)
  })

  interface ExerciseReport {
    entry: string
    exports: string[]
    imported: string[]
    used: string[]
    sameAsRequired: boolean
    addons: string[]
    stream: unknown
    durable: unknown
    errors: unknown
    client: unknown
    upstashAdapters: string[]
    http: { overHttp: string[]; missing: boolean; runTopic: boolean; recorded: number; uiChunk: string | undefined }
  }

  it.each([
    ['esm.mjs', 'dist/index.mjs'],
    ['cjs.cjs', 'dist/index.js'],
  ])(
    '%s loads the installed package (%s) and its addon from the platform package, and uses every export',
    (script, entry) => {
      const result = report<ExerciseReport>(run(process.execPath, [script], app, env, 120_000))
      const installed = join(app, 'node_modules', manifest.name)
      const resolved = script.endsWith('.mjs') ? pathToFileURL(join(installed, entry)).href : join(installed, entry)
      expect(result.entry).toBe(resolved)
      // `export *` of the CommonJS build also re-exports its `__esModule` marker.
      expect(result.exports.filter((name) => name !== '__esModule').sort()).toEqual(runtimeExports)
      expect([...result.imported].sort()).toEqual(runtimeExports)
      expect(result.used).toEqual(runtimeExports)
      expect(result.sameAsRequired).toBe(true)
      // The one addon Node loaded is a platform package's: the main package ships none.
      expect(result.addons).toHaveLength(1)
      expect(platforms.map(([abi]) => join(app, 'node_modules', `${manifest.name}-${abi}`, `${manifest.napi.binaryName}.${abi}.node`))).toContain(
        result.addons[0],
      )
      expect(result.stream).toEqual({
        indices: [0, 1, 2],
        replayed: [
          { index: 1, n: 1 },
          { index: 2, n: 2 },
        ],
      })
      expect(result.durable).toEqual({
        isDurableAgent: true,
        instanceOfDurableAgent: true,
        outputIsDurableOutput: true,
        firstParts: ['start', 'start-step', 'tool-call', 'tool-approval-request'],
        pausedOutcome: 'suspended',
        suspendedTool: 'refund',
        text: 'Refunded A-1.',
        replayText: 'Refunded A-1.',
      })
      expect(result.errors).toEqual({ notJson: true, runNotFound: true })
      expect(result.client).toEqual({
        indices: [0, 1],
        list: [
          { index: 0, a: 1 },
          { index: 1, a: 2 },
        ],
      })
      expect(result.upstashAdapters).toEqual(['setWithExpiry:function', 'scanKeys:function', 'evalScript:function'])
      expect(result.http).toEqual({
        overHttp: ['start', 'start-step', 'text-start', 'text-delta', 'text-end', 'finish-step', 'finish'],
        missing: true,
        runTopic: true,
        // The two chunks, and the end the stream recorded when it closed.
        recorded: 3,
        uiChunk: 'text-delta',
      })
    },
    120_000,
  )

  it.each(['bundler', 'node16'])(
    'type-checks its usage file with moduleResolution %s (tsc --noEmit)',
    (resolution) => {
      const tsc = run(process.execPath, [join(app, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', `tsconfig.${resolution}.json`], app, env, 120_000)
      expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0)
    },
    120_000,
  )

  it('runs a Mastra app on our classes', () => {
    const result = report(run(process.execPath, ['mastra.mjs'], app, env, 120_000))
    expect(result).toEqual({
      registeredIsOurs: true,
      text: 'Registered and durable.',
      replayed: 'Registered and durable.',
      history: [
        { index: 1, n: 1 },
        { index: 2, n: 2 },
      ],
    })
  }, 120_000)
})
