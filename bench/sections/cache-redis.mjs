// Server cache over Redis: our RedisServerCache (native Rust client, and the
// `{ client }` compatibility mode on node-redis) against @mastra/redis's
// RedisServerCache on node-redis, plus redis-benchmark as a baseline for what
// one client connection can do.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { RedisServerCache as MastraRedisCache, nodeRedisPreset as mastraPreset } from '@mastra/redis'
import { RedisServerCache, nodeRedisPreset } from '../../dist/index.js'
import { bareStoreReps, connectBare } from '../bare-redis.mjs'
import {
  cleanUpRedisRun,
  compare,
  compareListFromTo,
  connectNodeRedis,
  inFlight,
  makeEvents,
  mapStats,
  redactUrl,
  sequential,
  target,
  withCeiling,
} from '../lib.mjs'

export const title = 'Server cache, Redis: ours RedisServerCache vs @mastra/redis RedisServerCache (node-redis)'
export const columns = {
  ours: 'ours ({url}: native)',
  compat: 'ours ({client}: node-redis)',
  mastra: 'mastra',
  baseline: 'redis-benchmark rpush -c1',
  bare: 'bare socket (no client library)',
  parse: 'JSON.parse alone',
}

const TTL_SECONDS = 300 // the default of both; every write refreshes it, so keys vanish even if cleanup fails

export async function run(ctx) {
  const { quick, reps, log, redisUrl } = ctx
  const seqN = quick ? 1_000 : 5_000
  const parN = quick ? 5_000 : 20_000
  const listSize = 10_000
  const prefix = `bench:${randomBytes(6).toString('hex')}:`

  const clients = []
  const natives = []
  let connected = false
  let bare = null
  const connect = () => connectNodeRedis(redisUrl, clients)
  const native = (keyPrefix) => {
    const cache = new RedisServerCache({ url: redisUrl }, { keyPrefix, ttlSeconds: TTL_SECONDS })
    natives.push(cache)
    return cache
  }

  try {
    const mastraClient = await connect()
    const compatClient = await connect()
    connected = true
    const info = await mastraClient.info('server')
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? '?'
    ctx.note(`Redis ${version} at ${redactUrl(redisUrl)}; keys under ${prefix}*, TTL ${TTL_SECONDS}s, deleted afterwards.`)

    const caches = {
      ours: native(`${prefix}ours:`),
      compat: new RedisServerCache({ client: compatClient }, { keyPrefix: `${prefix}compat:`, ttlSeconds: TTL_SECONDS, ...nodeRedisPreset }),
      mastra: new MastraRedisCache({ client: mastraClient }, { keyPrefix: `${prefix}mastra:`, ttlSeconds: TTL_SECONDS, ...mastraPreset }),
    }
    const events = makeEvents(Math.max(parN, listSize))
    let keySeq = 0
    const rows = []
    // The ceilings: a bare socket (see bare-redis.mjs) doing less than any
    // listPushIndexed can: one RPUSH of the value's JSON (serialised up
    // front; no index, no counter, no TTL), awaited one by one or 64 in
    // flight. And JSON.parse alone of what listFromTo returns.
    bare = await connectBare(redisUrl)
    const bareNote = (what) => (bare ? what : 'n/a (TLS URL)')
    const bareReps = bareStoreReps(bare, prefix, events.slice(0, parN), (key, text) => ['RPUSH', key, text])

    // --- baseline: redis-benchmark, one client, no pipelining -------------
    // Probed once here (also its warm-up), then sampled inside the sequential
    // comparison, interleaved with the caches, so all see the same machine state.
    log('probing redis-benchmark')
    const hasBaseline = (await redisBenchmark(redisUrl)) !== null

    const pushBench = (mode, n) =>
      Object.fromEntries(
        Object.entries(caches).map(([name, cache]) => [
          name,
          async (rep) => {
            const list = `stream:${keySeq++}`
            const counter = `${list}:counter`
            const count = rep < 0 ? Math.ceil(n / 4) : n
            const op = (i) => cache.listPushIndexed(list, counter, events[i])
            const opsPerSec = mode === 'seq' ? await sequential(count, op) : await inFlight(count, 64, op)
            const length = await cache.listLength(list)
            if (length !== count) throw new Error(`${name}: expected ${count} entries, found ${length}`)
            await cache.delete(list)
            await cache.delete(counter)
            return opsPerSec
          },
        ]),
      )

    // --- listPushIndexed, sequential -----------------------------------------
    log(`listPushIndexed sequential, ${seqN} events x ${reps} reps${hasBaseline ? ', with redis-benchmark interleaved' : ''}`)
    const seqImpls = { ...pushBench('seq', seqN), bare: bareReps('seq', seqN) }
    if (hasBaseline) {
      seqImpls.baseline = async (rep) => {
        if (rep < 0) return NaN // warmed up by the probe
        const rps = await redisBenchmark(redisUrl)
        if (rps === null) throw new Error('redis-benchmark failed')
        return rps
      }
    }
    const seq = await compare(seqImpls, { reps })
    const baseline = seq.baseline ?? null
    if (!baseline) seq.baseline = null // printed as n/a
    ctx.info.redisBenchmark = baseline
    ctx.note(
      baseline
        ? `Baseline: redis-benchmark -c 1 -n 20000 -P 1 -q -t rpush = ${fmtRps(baseline)} req/s, median of ${baseline.n} runs interleaved with the sequential reps.`
        : 'Baseline: redis-benchmark n/a (not on PATH or failed); the sequential target is not evaluated.',
    )
    const floor = baseline ? 0.8 * baseline.median : NaN
    rows.push({
      metric: 'listPushIndexed, sequential',
      unit: 'ops/s',
      better: 'higher',
      values: seq,
      target: baseline
        ? {
            ...withCeiling(
              target(seq.ours.median / baseline.median, '>=', 0.8, `ours >= 0.8x redis-bench (${fmtNum(floor)})`),
              seq.bare.median / baseline.median,
              bareNote('bare socket RPUSH / redis-bench'),
            ),
            versus: 'redis-benchmark',
          }
        : { text: 'ours >= 0.8x redis-bench', pass: null, value: NaN, versus: 'redis-benchmark' },
    })

    // --- listPushIndexed, 64 in flight ---------------------------------------
    log(`listPushIndexed 64 in flight, ${parN} events x ${reps} reps`)
    const par = await compare({ ...pushBench('par', parN), bare: bareReps('par', parN) }, { reps })
    rows.push({
      metric: 'listPushIndexed, 64 in flight',
      unit: 'ops/s',
      better: 'higher',
      values: par,
      target: withCeiling(
        target(par.ours.median / par.mastra.median, '>=', 3, 'ratio >= 3'),
        par.bare.median / par.mastra.median,
        bareNote('bare socket RPUSH / mastra'),
      ),
    })
    ctx.note(
      'listPushIndexed ceilings ("bare socket"): one connection on a net.Socket with RESP written by hand and replies ' +
        "counted, not decoded (bench/bare-redis.mjs), one RPUSH of the value's JSON text (serialised up front) per call: " +
        'no index allocated, no TTL, no client library. Sequential, it is the command redis-benchmark times, from Node.',
    )

    // --- listFromTo of 10k entries ---------------------------------------
    log(`listFromTo(0, -1) of ${listSize} entries x ${reps} reps`)
    const budgetMs = quick ? 100 : 300
    let listText
    const parse = async () => {
      listText ??= JSON.stringify(await caches.ours.listFromTo('stream:read', 0, -1))
      if (JSON.parse(listText).length !== listSize) throw new Error('JSON.parse ceiling: short list')
    }
    const read = await compareListFromTo(caches, events, listSize, { reps, budgetMs, extra: { parse } })
    rows.push({
      metric: 'listFromTo(0,-1), 10k entries',
      unit: 'ms/call',
      better: 'lower',
      values: read,
      target: withCeiling(
        target(read.ours.median / read.mastra.median, '<=', 1 / 3, 'ratio <= 0.33 (3x faster)'),
        read.parse.median / read.mastra.median,
        'JSON.parse alone / mastra',
      ),
    })
    ctx.note(
      "listFromTo ceiling: JSON.parse alone of the 10k entries' text as one array, no Redis: listFromTo returns fresh " +
        'objects, which Mastra too parses from JSON, one per entry.',
    )
    rows.push({
      metric: 'listFromTo(0,-1), 10k entries',
      unit: 'entries/s',
      better: 'higher',
      values: Object.fromEntries(Object.entries(read).map(([name, s]) => [name, mapStats(s, (ms) => listSize / (ms / 1000))])),
    })
    return rows
  } finally {
    bare?.close()
    await cleanUpRedisRun(ctx, { connected, prefix, cleaner: () => native(prefix), natives, clients })
  }
}

/** Requests per second of redis-benchmark's RPUSH with one client, or null when unavailable. */
function redisBenchmark(redisUrl) {
  const url = new URL(redisUrl)
  const args = ['-h', url.hostname || '127.0.0.1', '-p', url.port || '6379', '-c', '1', '-n', '20000', '-P', '1', '-q', '-t', 'rpush']
  if (url.username) args.push('--user', decodeURIComponent(url.username))
  if (url.password) args.push('-a', decodeURIComponent(url.password))
  const db = url.pathname.replace(/^\//, '')
  if (db) args.push('--dbnum', db)
  if (url.protocol === 'rediss:') args.push('--tls')
  return new Promise((resolve) => {
    execFile('redis-benchmark', args, { timeout: 60_000 }, (error, stdout) => {
      if (error) return resolve(null)
      // -q still prints \r progress lines; the last "RPUSH: <n> requests per second" is the result.
      const matches = [...String(stdout).matchAll(/RPUSH:\s*([\d.]+)\s+requests per second/g)]
      resolve(matches.length ? Number(matches.at(-1)[1]) : null)
    })
  })
}

function fmtNum(n) {
  return Math.round(n).toLocaleString('en-US')
}

function fmtRps(s) {
  return s.n > 1 ? `${fmtNum(s.median)} (${fmtNum(s.min)}..${fmtNum(s.max)})` : fmtNum(s.median)
}
