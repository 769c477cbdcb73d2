// Durable agent runs over Redis: the framework overhead per run and per step
// with an instant mock model (see agent-memory.mjs), each implementation
// keeping its run state and events in Redis. Ours: createDurableAgent over a
// native RedisServerCache ({ url }); Mastra: its createDurableAgent with
// @mastra/redis's RedisServerCache on node-redis (the way pubsub-redis.mjs
// builds it) under its default CachingPubSub(EventEmitterPubSub).
import { randomBytes } from 'node:crypto'
import { RedisServerCache as MastraRedisCache, nodeRedisPreset as mastraPreset } from '@mastra/redis'
import { RedisServerCache } from '../../dist/index.js'
import { cleanUpRedisRun, connectNodeRedis, countKeys, fmt, mapStats, redactUrl, target } from '../lib.mjs'
import {
  budgets,
  checkRuns,
  durableAgents,
  interleave,
  MASTRA_CLEANUP_TIMEOUT_MS,
  OURS_CLEANUP_TIMEOUT_MS,
  partsNote,
  runOnce,
  runReps,
  WORKLOADS,
} from './agent-memory.mjs'

export const title =
  'Durable agent, Redis: ours createDurableAgent over RedisServerCache ({url}: native) vs @mastra/core createDurableAgent over @mastra/redis (node-redis), instant mock model'
export const columns = { ours: 'ours (Mastra Agent)', oursPlain: 'ours (plain definition)', mastra: 'mastra' }

const STEP_BOUND_MS = 2
/** Runs per implementation for the Redis command count (INFO stats, after the reps). */
const COUNT_RUNS = 20

export async function run(ctx) {
  const { quick, reps, log, redisUrl } = ctx
  const { budgetMs, warmSteps } = budgets(quick)
  const prefix = `bench:${randomBytes(6).toString('hex')}:`
  const clients = []
  const natives = []
  let connected = false
  const native = (keyPrefix) => {
    const cache = new RedisServerCache({ url: redisUrl }, { keyPrefix })
    natives.push(cache)
    return cache
  }

  try {
    const client = await connectNodeRedis(redisUrl, clients)
    connected = true
    const version = /redis_version:(\S+)/.exec(await client.info('server'))?.[1] ?? '?'
    const rows = []
    const parts = {}
    const leftover = {}
    const commands = {}

    for (const [key, workload] of Object.entries(WORKLOADS)) {
      const keyPrefix = (impl) => `${prefix}${key}:${impl}:`
      const durables = durableAgents(workload, (impl) =>
        impl === 'mastra' ? new MastraRedisCache({ client }, { keyPrefix: keyPrefix(impl), ...mastraPreset }) : native(keyPrefix(impl)),
      )
      parts[key] = await checkRuns(durables, workload)
      const warmRuns = Math.ceil(warmSteps / workload.steps)
      log(`${workload.label}: warm-up ${warmRuns} runs, then ${reps} reps of ${budgetMs} ms, per implementation`)
      const perRun = await interleave(runReps(durables, { budgetMs, warmRuns }), { reps })
      const perStep = Object.fromEntries(Object.entries(perRun).map(([impl, s]) => [impl, mapStats(s, (ms) => ms / workload.steps)]))
      if (key === 'oneStep') {
        rows.push({ metric: `${workload.label}, time per run`, unit: 'ms', better: 'lower', values: perRun })
      } else {
        rows.push({ metric: `${workload.label}, time per run`, unit: 'ms', better: 'lower', values: perRun })
        rows.push({
          metric: `${workload.label}, time per step`,
          unit: 'ms',
          better: 'lower',
          values: perStep,
          target: {
            ...target(perStep.ours.median, '<=', STEP_BOUND_MS, `< ${STEP_BOUND_MS} ms a step`),
            pass: Number.isFinite(perStep.ours.median) && perStep.ours.median < STEP_BOUND_MS,
            versus: 'ms bound',
            referenceValue: STEP_BOUND_MS,
            display: `${fmt(perStep.ours.median)} ms`,
          },
        })
      }
      ctx.info[key] = Object.fromEntries(Object.entries(perRun).map(([impl, s]) => [impl, { medianMs: s.median, perStepMs: perStep[impl].median }]))

      // Redis commands per run (whole server: other clients of this Redis would inflate it).
      for (const [impl, durable] of Object.entries(durables)) {
        const before = await totalCommands(client)
        for (let i = 0; i < COUNT_RUNS; i++) await runOnce(impl, durable)
        const after = await totalCommands(client)
        ;(commands[key] ??= {})[impl] = (after - before - 1) / COUNT_RUNS // the INFO call itself counts once
      }

      // What each implementation's cleanup left in Redis (Mastra deletes fire-and-forget: give it a moment).
      await new Promise((resolve) => setTimeout(resolve, 300))
      for (const impl of Object.keys(durables)) (leftover[key] ??= {})[impl] = await countKeys(client, `${keyPrefix(impl)}*`)
    }

    ctx.info.redisCommandsPerRun = commands
    ctx.info.keysLeftAfterCleanup = leftover
    ctx.note(`Redis ${version} at ${redactUrl(redisUrl)}; keys under ${prefix}*, default TTLs (300 s both), deleted afterwards.`)
    ctx.note(
      'Each run: stream("hi"), drain output.fullStream, result.cleanup() (ours awaited; Mastra\'s synchronous, deleting fire-and-forget); ' +
        `runs one after another for ${budgetMs} ms a rep after a warm-up of ${warmSteps} model steps of runs per implementation and ` +
        'workload; no forced GC between reps (see agent-memory). Per step = per run / 3. Model, tools and agents as in agent-memory; ' +
        'ours: one RedisServerCache ({ url }) per agent; mastra: @mastra/redis RedisServerCache({ client: node-redis }, nodeRedisPreset). ' +
        'Not the same work: ours checkpoints each step (a run hash) and stores the events (a stream) in Redis; Mastra, without a ' +
        'Mastra instance and storage, keeps its workflow state in process and stores only the events (a list and a counter).',
    )
    ctx.note(`Parts per run in fullStream: 1-step ${partsNote(parts.oneStep)}; 3-step ${partsNote(parts.threeStep)}.`)
    const perRunText = (key) =>
      Object.entries(commands[key])
        .map(([impl, n]) => `${impl} ${fmt(n)}`)
        .join(', ')
    ctx.note(
      `Redis commands per run (INFO total_commands_processed over ${COUNT_RUNS} runs each, whole server): ` +
        `1-step ${perRunText('oneStep')}; 3-step ${perRunText('threeStep')}.`,
    )
    const left = Object.entries(leftover)
      .flatMap(([key, byImpl]) => Object.entries(byImpl).map(([impl, n]) => `${key} ${impl} ${n}`))
      .join(', ')
    ctx.note(
      `Keys left under each implementation's prefix 300 ms after its last cleanup: ${left}. cleanupTimeoutMs: ours ` +
        `${OURS_CLEANUP_TIMEOUT_MS} (the TTL an ended run gets), Mastra ${MASTRA_CLEANUP_TIMEOUT_MS} (= no auto-cleanup timer).`,
    )
    return rows
  } finally {
    await cleanUpRedisRun(ctx, { connected, prefix, cleaner: () => native(prefix), natives, clients })
  }
}

async function totalCommands(client) {
  return Number(/total_commands_processed:(\d+)/.exec(await client.info('stats'))?.[1])
}
