// `npm run pack:all -- <folder>`: the tarballs a release would publish, made
// from this checkout: the main package and one per platform whose addon is
// built here (`npm run build` makes linux-x64-gnu's; the other targets are
// built by the release pipeline, docs/release.md). Prints, as JSON, each
// tarball's path, manifest and file list, and what `npm publish --dry-run`
// said about it.
//
// It runs the napi CLI's own release steps on a staged copy, so the checkout
// is never changed: `napi artifacts` moves each addon into its `npm/<platform>/`
// package, `napi prepublish` names those packages in the main package's
// `optionalDependencies` at its version. Both get a config that lists only the
// targets built here (the CLI refuses to stage with targets missing). The
// main package's files are the ones its `files` list selects.
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

import { parseTriple } from '@napi-rs/cli'

const root = new URL('..', import.meta.url).pathname
const napi = join(root, 'node_modules', '.bin', 'napi')

/** Runs a command in `cwd`; throws with its output unless it succeeds. Returns `{ stdout, stderr }`. */
function run(command, args, cwd) {
  const { status, stdout, stderr, error } = spawnSync(command, args, { cwd, encoding: 'utf8' })
  if (error || status !== 0) throw new Error(`${command} ${args.join(' ')} (in ${cwd}) failed: ${error?.message ?? `exit ${status}`}\n${stdout}${stderr}`)
  return { stdout, stderr }
}

/**
 * `npm pack --json` in `dir`: the tarball's name and files. Without scripts:
 * in the stage, the napi steps have done what `prepublishOnly` does, and
 * listing the checkout's files must not trip `prepack`.
 */
function npmPack(dir, args) {
  return JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', ...args], dir).stdout)[0]
}

/**
 * Packs the main package and each built platform package into `destination`.
 * Returns `{ main, platforms }`: for each, `tarball` (its path), `manifest`
 * (the packed package.json), `files` (paths in the tarball) and `publish`
 * (what `npm publish --dry-run` wrote to stderr).
 */
function packAll(destination) {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const { binaryName, targets } = manifest.napi
  const addon = (target) => `${binaryName}.${target.platformArchABI}.node`
  const built = targets.map(parseTriple).filter((target) => existsSync(join(root, addon(target))))
  if (built.length === 0) throw new Error(`no addon of ${targets.join(', ')} is built here: run npm run build first`)

  mkdirSync(destination, { recursive: true })
  const stage = mkdtempSync(join(tmpdir(), 'durable-agent-stage-'))
  try {
    for (const { path } of npmPack(root, ['--dry-run']).files) cpSync(join(root, path), join(stage, path))
    cpSync(join(root, 'npm'), join(stage, 'npm'), { recursive: true })
    mkdirSync(join(stage, 'artifacts'))
    for (const target of built) cpSync(join(root, addon(target)), join(stage, 'artifacts', addon(target)))
    writeFileSync(join(stage, 'napi.built.json'), JSON.stringify({ targets: built.map((target) => target.triple) }))
    const config = ['--config-path', 'napi.built.json']
    run(napi, ['artifacts', ...config, '--output-dir', 'artifacts'], stage)
    run(napi, ['prepublish', ...config, '--skip-optional-publish', '--no-gh-release'], stage)

    const pack = (dir) => {
      const info = npmPack(dir, ['--pack-destination', destination])
      return {
        tarball: join(destination, info.filename),
        manifest: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')),
        files: info.files.map((file) => file.path).sort(),
        // What npm says when publishing it (nothing is published, no login needed): its warnings are on stderr.
        publish: run('npm', ['publish', '--dry-run', '--ignore-scripts'], dir).stderr,
      }
    }
    return {
      main: pack(stage),
      platforms: Object.fromEntries(built.map((target) => [target.platformArchABI, pack(join(stage, 'npm', target.platformArchABI))])),
    }
  } finally {
    rmSync(stage, { recursive: true, force: true })
  }
}

process.stdout.write(`${JSON.stringify(packAll(resolve(process.argv[2] ?? '.')), null, 2)}\n`)
