// Benchmark runner: `node bench/run.mjs [--quick] [--only <section>[,<section>]] [--reps <n>]`.
//
// Each section is a module under bench/sections/ exporting `title`, `columns`
// ({ key: label } of the implementations it measures) and
// `async function run(ctx)` returning rows:
//   { metric, unit, better: 'higher' | 'lower', values: { [key]: stats }, target? }
// where stats come from lib.mjs `stats()` and target from lib.mjs `target()`.
// A target compared with something other than the mastra column sets
// `versus` (what, for the summary) and `referenceValue` (its value; default:
// ctx.info.redisBenchmark's median), and may set `display` (how its value
// prints, default as a ratio).
// The runner prints one table per section, then a summary of every target, and
// writes everything to bench/results/latest.json.
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { eventSize, fmt, fmtRatio, fmtStats, makeEvents, table } from './lib.mjs'

const SECTIONS = [
  { name: 'cache-memory', aliases: ['memory'], module: './sections/cache-memory.mjs' },
  { name: 'cache-redis', aliases: ['redis'], module: './sections/cache-redis.mjs' },
  { name: 'pubsub-memory', aliases: [], module: './sections/pubsub-memory.mjs' },
  { name: 'pubsub-redis', aliases: [], module: './sections/pubsub-redis.mjs' },
  { name: 'pubsub-cluster', aliases: ['cluster'], module: './sections/pubsub-cluster.mjs' },
  { name: 'agent-memory', aliases: [], module: './sections/agent-memory.mjs' },
  { name: 'agent-redis', aliases: [], module: './sections/agent-redis.mjs' },
  { name: 'http-resume', aliases: ['http'], module: './sections/http-resume.mjs' },
]

const root = fileURLToPath(new URL('..', import.meta.url))
const resultsDir = fileURLToPath(new URL('./results/', import.meta.url))

function parseArgs(argv) {
  const args = { quick: false, only: null, reps: null }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const [flag, inline] = arg.includes('=') ? arg.split(/=(.*)/s) : [arg, undefined]
    const value = () => inline ?? argv[++i]
    if (flag === '--quick') args.quick = true
    else if (flag === '--only')
      args.only = String(value() ?? '')
        .split(',')
        .filter(Boolean)
    else if (flag === '--reps') args.reps = Number(value())
    else if (flag === '--help' || flag === '-h') {
      console.log(
        `usage: node bench/run.mjs [--quick] [--only <section>[,...]] [--reps <n>]\n` +
          `sections: ${SECTIONS.map((s) => [s.name, ...s.aliases].join('|')).join(', ')}`,
      )
      process.exit(0)
    } else throw usage(`unknown argument ${arg} (try --help)`)
  }
  if (args.only?.length === 0) throw usage('--only needs a section name (try --help)')
  if (args.reps !== null && !(Number.isInteger(args.reps) && args.reps >= 1)) throw usage('--reps needs a positive integer')
  return args
}

function usage(message) {
  return Object.assign(new Error(message), { usage: true })
}

function selectSections(only) {
  if (!only) return SECTIONS
  return only.map((name) => {
    const section = SECTIONS.find((s) => s.name === name || s.aliases.includes(name))
    if (!section) throw usage(`unknown section ${name}; sections: ${SECTIONS.map((s) => s.name).join(', ')}`)
    return section
  })
}

function cpuModel() {
  try {
    const model = /^Model name:\s*(.+)$/m.exec(execFileSync('lscpu', { encoding: 'utf8' }))?.[1]
    if (model) return model.trim()
  } catch {}
  return os.cpus()[0]?.model ?? 'unknown'
}

function cpuCount() {
  try {
    return Number(execFileSync('nproc', { encoding: 'utf8' }).trim())
  } catch {
    return os.availableParallelism()
  }
}

function version(pkg) {
  try {
    return JSON.parse(readFileSync(`${root}/${pkg === '.' ? '' : `node_modules/${pkg}/`}package.json`, 'utf8')).version
  } catch {
    return '?'
  }
}

function redisBenchmarkVersion() {
  try {
    return execFileSync('redis-benchmark', ['--version'], { encoding: 'utf8' }).trim()
  } catch {
    return 'redis-benchmark n/a'
  }
}

const result = (target) => {
  if (!target) return ''
  if (target.pass === null || target.pass === undefined) return 'n/a'
  const outOfReach = !target.pass && target.ceiling?.reachable === false ? ', out of reach' : ''
  return `${target.pass ? 'PASS' : 'MISS'} ${target.display ?? fmtRatio(target.value)}${outOfReach}`
}

/** The target's ceiling as printed: its value and what measured it. */
const ceilingText = (target) => {
  const c = target?.ceiling
  if (!c) return ''
  return `${Number.isFinite(c.value) ? (c.display ?? fmtRatio(c.value)) : 'n/a'} ${c.text}`
}

function ratioOf(row) {
  const ours = row.values.ours?.median
  const mastra = row.values.mastra?.median
  return ours !== undefined && mastra !== undefined && mastra !== 0 ? ours / mastra : undefined
}

function sectionTable(section, rows) {
  // Declared columns first (those some row has), then any others; a null value prints n/a.
  const present = new Set(rows.flatMap((row) => Object.keys(row.values)))
  const keys = Object.keys(section.columns ?? {}).filter((key) => present.has(key))
  for (const key of present) if (!keys.includes(key)) keys.push(key)
  const header = ['metric', 'unit', ...keys.map((key) => section.columns?.[key] ?? key), 'ours/mastra', 'target', 'ceiling (this run)', 'result']
  const body = rows.map((row) => [
    row.metric,
    row.unit,
    ...keys.map((key) => (row.values[key] === null ? 'n/a' : fmtStats(row.values[key]))),
    `${fmtRatio(row.ratio)}${row.ratio !== undefined ? (row.better === 'higher' ? ' ^' : ' v') : ''}`,
    row.target?.text ?? '',
    ceilingText(row.target),
    result(row.target),
  ])
  return table([header, ...body], ['l', 'l', ...keys.map(() => 'r'), 'r', 'l', 'l', 'l'])
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  const sections = selectSections(args.only)
  const quick = args.quick
  const reps = args.reps ?? (quick ? 3 : 7)
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
  const started = performance.now()

  const sample = makeEvents(1000)
  const size = eventSize(sample)
  const meta = {
    date: new Date().toISOString(),
    quick,
    only: args.only,
    reps,
    cpu: cpuModel(),
    nproc: cpuCount(),
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    versions: {
      'durable-agent': version('.'),
      '@mastra/core': version('@mastra/core'),
      '@mastra/redis': version('@mastra/redis'),
      redis: version('redis'),
      'resumable-stream': version('resumable-stream'),
    },
    redisBenchmark: redisBenchmarkVersion(),
    event: { jsonBytes: { median: size.median, mean: size.mean, min: size.min, max: size.max }, example: sample[0] },
  }

  console.log(`durable-agent benchmark${quick ? ' (--quick)' : ''}  ${meta.date}`)
  console.log(`CPU      ${meta.cpu}, ${meta.nproc} vCPU, ${meta.memGiB} GiB RAM, ${meta.os}`)
  console.log(
    `Node     ${meta.node}; ${Object.entries(meta.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  )
  console.log(`Tools    ${meta.redisBenchmark}`)
  console.log(
    `Event    Mastra-shaped 'chunk' with a Date, JSON ${size.mean.toFixed(1)} B mean (${size.min}..${size.max}, 1000 samples), e.g.\n` +
      `         ${JSON.stringify(sample[0])}`,
  )
  console.log(`Method   ${reps} reps per measurement after a warm-up rep, implementations interleaved; cells are median (min..max);`)
  console.log(`         ratio is ours/mastra (^ higher is better, v lower is better); result shows the value the target checks.`)

  const report = { meta, sections: [], summary: [] }
  for (const spec of sections) {
    const t0 = performance.now()
    const notes = []
    const info = {}
    const log = (message) => process.stderr.write(`[${spec.name} +${((performance.now() - t0) / 1000).toFixed(1)}s] ${message}\n`)
    const ctx = { quick, reps, redisUrl, log, note: (text) => notes.push(text), info }
    let mod
    let rows = []
    let error
    try {
      mod = await import(spec.module)
      rows = await mod.run(ctx)
      for (const row of rows) row.ratio = ratioOf(row)
    } catch (err) {
      error = err
      process.exitCode = 1
    }
    const seconds = (performance.now() - t0) / 1000
    console.log(`\n== ${spec.name}: ${mod?.title ?? ''} (${seconds.toFixed(1)}s)`)
    if (rows.length) console.log(sectionTable(mod, rows))
    for (const note of notes) console.log(`  * ${note}`)
    if (error) console.log(`  ERROR: ${error.stack ?? error}`)
    report.sections.push({
      name: spec.name,
      title: mod?.title,
      columns: mod?.columns,
      seconds,
      notes,
      info,
      error: error ? String(error.stack ?? error) : undefined,
      rows,
    })
    for (const row of rows.filter((r) => r.target)) {
      report.summary.push({
        section: spec.name,
        metric: row.metric,
        unit: row.unit,
        ours: row.values.ours?.median,
        reference: row.target.versus ?? 'mastra',
        referenceValue: row.target.referenceValue ?? (row.target.versus ? info.redisBenchmark?.median : row.values.mastra?.median),
        value: row.target.value,
        display: row.target.display,
        target: row.target.text,
        ceiling: row.target.ceiling,
        ceilingText: ceilingText(row.target),
        pass: row.target.pass ?? null,
      })
    }
    if (error) report.summary.push({ section: spec.name, metric: '(section failed)', target: '', pass: false, error: String(error) })
  }

  console.log('\n== summary')
  const summaryRows = report.summary.map((s) => [
    s.section,
    s.metric,
    s.unit ?? '',
    s.error ? '' : fmt(s.ours),
    s.reference ? `${fmt(s.referenceValue)} ${s.reference}` : '',
    s.target,
    s.ceilingText ?? '',
    s.error ? 'ERROR' : s.pass === null ? 'n/a' : result(s),
  ])
  console.log(
    table(
      [['section', 'metric', 'unit', 'ours', 'reference', 'target', 'ceiling (this run)', 'result'], ...summaryRows],
      ['l', 'l', 'l', 'r', 'r', 'l', 'l', 'l'],
    ),
  )
  const passed = report.summary.filter((s) => s.pass === true).length
  const missed = report.summary.filter((s) => s.pass === false)
  const outOfReach = missed.filter((s) => s.ceiling?.reachable === false).length
  const total = report.summary.length
  meta.seconds = (performance.now() - started) / 1000
  console.log(`\n${passed}/${total} targets PASS; total ${meta.seconds.toFixed(1)}s`)
  if (missed.length) {
    console.log(
      `${outOfReach} of the ${missed.length} MISSes are out of reach on this machine: the target lies beyond a ceiling ` +
        'measured in this run (what any design of that kind can do at best; each section says how it is measured).',
    )
  }

  mkdirSync(resultsDir, { recursive: true })
  const file = `${resultsDir}latest.json`
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
  console.log(`results written to ${file.slice(root.length)}`)
}

main().catch((error) => {
  console.error(error.usage ? `error: ${error.message}` : (error.stack ?? error))
  process.exitCode = 1
})
