// Durable agent runs, in memory: the framework overhead per run with an
// instant mock model (AI SDK MockLanguageModelV3 whose doStream hands back an
// already-filled ReadableStream; tools are trivial async functions). Ours
// (createDurableAgent: the loop in Rust, model and tools called back in JS)
// against @mastra/core's createDurableAgent (a workflow per run), each over
// its default in-memory store, wrapping the same Mastra Agent definition.
// The helpers here are shared with agent-redis.mjs.
import { Agent } from '@mastra/core/agent'
import { createDurableAgent as createMastraDurableAgent } from '@mastra/core/agent/durable'
import { createTool } from '@mastra/core/tools'
import { MockLanguageModelV3 } from 'ai/test'
import { z } from 'zod'
import { createDurableAgent } from '../../dist/index.js'
import { fmt, mapStats, msPerCall, stats, target } from '../lib.mjs'

export const title = 'Durable agent, in memory: ours createDurableAgent vs @mastra/core createDurableAgent, instant mock model (framework overhead per run)'
export const columns = { ours: 'ours (Mastra Agent)', oursPlain: 'ours (plain definition)', mastra: 'mastra' }

// ---------------------------------------------------------------------------
// The workloads (shared with agent-redis.mjs).
// ---------------------------------------------------------------------------

export const DELTAS = ['Hello', ', ', 'durable', ' world', '!']
export const TEXT = DELTAS.join('')
/** The tools the 3-step run calls, in order (step 1, step 2); step 3 answers. */
const TOOL_STEPS = ['add', 'mul']
/** Ours: the backstop auto-cleanup (each run is cleaned up by hand right after it is read). See the note on 0. */
export const OURS_CLEANUP_TIMEOUT_MS = 30_000
/** Mastra: 0 disables its auto-cleanup timer (each run is cleaned up by hand). */
export const MASTRA_CLEANUP_TIMEOUT_MS = 0

const usage = (output) => ({
  inputTokens: { total: 10, noCache: 10, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: output, text: output, reasoning: undefined },
})

/**
 * The parts of one model step, fresh objects each call. The step is read off
 * the prompt (how many tool results it holds), so the model is stateless and
 * one instance serves any number of runs: `toolSteps` 0 answers at once, 2
 * calls `add`, then `mul`, then answers.
 */
function stepParts(prompt, toolSteps) {
  const done = prompt.filter((message) => message.role === 'tool').length
  const parts = [
    { type: 'stream-start', warnings: [] },
    { type: 'response-metadata', id: `response-${done}`, modelId: 'mock-model-id', timestamp: new Date(0) },
  ]
  if (done < toolSteps) {
    parts.push(
      { type: 'tool-call', toolCallId: `call-${done}`, toolName: TOOL_STEPS[done], input: JSON.stringify({ a: 2, b: 3 }) },
      { type: 'finish', finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage: usage(1) },
    )
  } else {
    parts.push({ type: 'text-start', id: 'text-1' })
    for (const delta of DELTAS) parts.push({ type: 'text-delta', id: 'text-1', delta })
    parts.push({ type: 'text-end', id: 'text-1' }, { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage: usage(DELTAS.length) })
  }
  return parts
}

/** An instant model: doStream resolves with a ReadableStream already holding the whole step. */
export function mockModel(toolSteps) {
  const model = new MockLanguageModelV3({
    doStream: async ({ prompt }) => {
      // The mock records every call's options; drop them, or they pile up over thousands of runs.
      model.doStreamCalls.length = 0
      const parts = stepParts(prompt, toolSteps)
      return {
        stream: new ReadableStream({
          start(controller) {
            for (const part of parts) controller.enqueue(part)
            controller.close()
          },
        }),
      }
    },
  })
  return model
}

const add = async ({ a, b }) => ({ sum: a + b })
const mul = async ({ a, b }) => ({ product: a * b })
const numbers = () => z.object({ a: z.number(), b: z.number() })

/** Mastra tools (createTool, zod input schemas). */
export function mastraTools() {
  return {
    add: createTool({ id: 'add', description: 'Adds a and b.', inputSchema: numbers(), execute: add }),
    mul: createTool({ id: 'mul', description: 'Multiplies a and b.', inputSchema: numbers(), execute: mul }),
  }
}

/** The same JSON Schema, which ours checks every call against (with Ajv), as Mastra checks its zod schema. */
const numbersJsonSchema = () => ({
  type: 'object',
  properties: { a: { type: 'number' }, b: { type: 'number' } },
  required: ['a', 'b'],
})

/** The same tools as plain definitions for ours. */
export function plainTools() {
  return {
    add: { description: 'Adds a and b.', inputSchema: numbersJsonSchema(), execute: add },
    mul: { description: 'Multiplies a and b.', inputSchema: numbersJsonSchema(), execute: mul },
  }
}

export const WORKLOADS = {
  oneStep: { toolSteps: 0, steps: 1, label: '1-step text run (5 text deltas)' },
  threeStep: { toolSteps: 2, steps: 3, label: '3-step run, tool calls in steps 1-2' },
}

/** A fresh Mastra Agent of the workload (one per implementation: same definition, no shared state). */
export function mastraAgent(workload) {
  return new Agent({
    id: `bench-${workload.steps}-step`,
    name: `Bench ${workload.steps}-step`,
    instructions: 'You are a benchmark.',
    model: mockModel(workload.toolSteps),
    ...(workload.toolSteps ? { tools: mastraTools() } : {}),
  })
}

/** A plain definition of the same agent, for ours. */
export function plainAgent(workload) {
  return {
    id: `bench-${workload.steps}-step-plain`,
    name: `Bench ${workload.steps}-step (plain)`,
    instructions: 'You are a benchmark.',
    model: mockModel(workload.toolSteps),
    ...(workload.toolSteps ? { tools: plainTools() } : {}),
  }
}

/**
 * The durable agents of a workload: `ours` and `mastra` wrap the same Mastra
 * Agent definition, `oursPlain` the plain one. `cache(impl)` gives each its
 * store (undefined: its default in-memory one).
 */
export function durableAgents(workload, cache = () => undefined) {
  const withCache = (impl) => {
    const c = cache(impl)
    return c === undefined ? {} : { cache: c }
  }
  return {
    ours: createDurableAgent({ agent: mastraAgent(workload), cleanupTimeoutMs: OURS_CLEANUP_TIMEOUT_MS, ...withCache('ours') }),
    oursPlain: createDurableAgent({ agent: plainAgent(workload), cleanupTimeoutMs: OURS_CLEANUP_TIMEOUT_MS, ...withCache('oursPlain') }),
    mastra: createMastraDurableAgent({ agent: mastraAgent(workload), cleanupTimeoutMs: MASTRA_CLEANUP_TIMEOUT_MS, ...withCache('mastra') }),
  }
}

// ---------------------------------------------------------------------------
// One run, and the reps.
// ---------------------------------------------------------------------------

/** What the run in progress is doing, for the hang report. */
const progress = { impl: '', runs: 0, stage: 'idle', parts: [], runId: undefined, runStartedAt: 0 }

/**
 * One run as a client sees it: start it, drain `output.fullStream` (the same
 * call on ours and Mastra's result), then clean it up (ours: awaited; Mastra's
 * cleanup is synchronous, its store deletion fire-and-forget).
 */
export async function runOnce(impl, durable) {
  progress.impl = impl
  progress.stage = 'stream()'
  progress.parts.length = 0
  progress.runId = undefined
  progress.runStartedAt = performance.now()
  const result = await durable.stream('hi')
  progress.runId = result.runId
  progress.stage = 'draining fullStream'
  let last
  for await (const part of result.output.fullStream) {
    progress.parts.push(part.type)
    last = part
  }
  progress.stage = 'cleanup()'
  await result.cleanup()
  progress.stage = 'idle'
  progress.runs++
  if (last?.type !== 'finish') throw new Error(`${impl}: run ${result.runId} ended with ${last?.type ?? 'nothing'}, not finish`)
  return result
}

/**
 * Checks, untimed, that every implementation runs the workload right: the
 * text, the tool results, the last part. Returns parts per run per implementation.
 */
export async function checkRuns(durables, workload) {
  const partsPerRun = {}
  for (const [impl, durable] of Object.entries(durables)) {
    const result = await withTimeout(durable.stream('hi'), `${impl}: stream()`)
    const parts = []
    await withTimeout(
      (async () => {
        for await (const part of result.output.fullStream) parts.push(part)
      })(),
      `${impl}: draining a ${workload.label}`,
    )
    const text = await withTimeout(result.output.text, `${impl}: output.text`)
    await result.cleanup()
    const types = parts.map((part) => part.type)
    const toolResults = types.filter((type) => type === 'tool-result').length
    const deltas = types.filter((type) => type === 'text-delta').length
    if (text !== TEXT || toolResults !== workload.toolSteps || deltas !== DELTAS.length || types.at(-1) !== 'finish') {
      throw new Error(
        `${impl}: ${workload.label} gave text ${JSON.stringify(text)}, ${toolResults} tool results, ${deltas} text deltas, parts ${types.join(',')}`,
      )
    }
    partsPerRun[impl] = parts.length
  }
  return partsPerRun
}

const HANG_MS = 15_000

function withTimeout(promise, what, ms = HANG_MS) {
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no progress after ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/** Rejects once a single run has taken over HANG_MS, saying what it was doing. */
function watchdog(impl, durable) {
  let timer
  const promise = new Promise((_, reject) => {
    timer = setInterval(() => {
      if (progress.stage === 'idle' || performance.now() - progress.runStartedAt < HANG_MS) return
      const state = typeof durable.activeRuns === 'number' ? `, activeRuns ${durable.activeRuns}` : ''
      const bus = typeof durable.pubsub?.stats === 'function' ? `, pubsub stats ${JSON.stringify(durable.pubsub.stats())}` : ''
      reject(
        new Error(
          `${impl} hung: run ${progress.runId ?? '(no run id yet)'} stuck in ${progress.stage} for over ${HANG_MS} ms ` +
            `after parts [${progress.parts.join(',')}]${state}${bus}`,
        ),
      )
    }, 1_000)
  })
  return { promise, stop: () => clearInterval(timer) }
}

/**
 * Per implementation, a rep that runs the workload sequentially for
 * `budgetMs` and returns ms per run. The warm-up rep (rep < 0) runs
 * `warmRuns` runs instead: a count, since V8 optimises by call counts (Mastra
 * needs several hundred runs to reach its steady speed). A run that hangs
 * fails the section with what it was doing.
 */
export function runReps(durables, { budgetMs, warmRuns }) {
  return Object.fromEntries(
    Object.entries(durables).map(([impl, durable]) => [
      impl,
      async (rep) => {
        const dog = watchdog(impl, durable)
        try {
          const work =
            rep < 0
              ? (async () => {
                  for (let i = 0; i < warmRuns; i++) await runOnce(impl, durable)
                  return NaN
                })()
              : msPerCall(() => runOnce(impl, durable), { budgetMs, minCalls: 3 })
          return await Promise.race([work, dog.promise])
        } finally {
          dog.stop()
        }
      },
    ]),
  )
}

/**
 * lib.mjs `compare` without its forced full GC before each rep: runs each
 * implementation's warm-up rep, then `reps` rounds rotating which goes first.
 * A forced GC costs V8 type feedback both sides spent hundreds of runs
 * gathering: Mastra's next few hundred ms run at 2-4x its steady time, ours
 * at ~2x, so a GC per rep would time mostly the recovery. Garbage left by one
 * implementation is collected by whichever runs next; the rotation spreads it.
 */
export async function interleave(impls, { reps }) {
  const names = Object.keys(impls)
  for (const name of names) await impls[name](-1)
  const samples = Object.fromEntries(names.map((name) => [name, []]))
  for (let r = 0; r < reps; r++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(r + k) % names.length]
      await new Promise((resolve) => setImmediate(resolve))
      samples[name].push(await impls[name](r))
    }
  }
  return Object.fromEntries(names.map((name) => [name, stats(samples[name])]))
}

/**
 * Time per rep, and model steps of warm-up per implementation and workload
 * (--quick: a token warm-up, far from steady state).
 */
export function budgets(quick) {
  return quick ? { budgetMs: 80, warmSteps: 30 } : { budgetMs: 400, warmSteps: 1_500 }
}

export function partsNote(partsPerRun) {
  return Object.entries(partsPerRun)
    .map(([impl, n]) => `${impl} ${n}`)
    .join(', ')
}

// ---------------------------------------------------------------------------
// The section.
// ---------------------------------------------------------------------------

export async function run(ctx) {
  const { quick, reps, log } = ctx
  const { budgetMs, warmSteps } = budgets(quick)
  const rows = []
  const parts = {}

  for (const [key, workload] of Object.entries(WORKLOADS)) {
    const durables = durableAgents(workload)
    parts[key] = await checkRuns(durables, workload)
    const warmRuns = Math.ceil(warmSteps / workload.steps)
    log(`${workload.label}: warm-up ${warmRuns} runs, then ${reps} reps of ${budgetMs} ms, per implementation`)
    const perRun = await interleave(runReps(durables, { budgetMs, warmRuns }), { reps })
    rows.push({
      metric: `${workload.label}, time per run`,
      unit: 'ms',
      better: 'lower',
      values: perRun,
      ...(key === 'oneStep' ? { target: target(perRun.ours.median / perRun.mastra.median, '<=', 0.1, 'ratio <= 0.1') } : {}),
    })
    if (key === 'threeStep') {
      rows.push({
        metric: `${workload.label}, time per step`,
        unit: 'ms',
        better: 'lower',
        values: Object.fromEntries(Object.entries(perRun).map(([impl, s]) => [impl, mapStats(s, (ms) => ms / workload.steps)])),
      })
    }
    ctx.info[key] = Object.fromEntries(Object.entries(perRun).map(([impl, s]) => [impl, { medianMs: s.median, runsPerSec: 1000 / s.median }]))
  }

  ctx.note(
    'Each run: stream("hi"), drain output.fullStream with for-await, then result.cleanup() (ours awaited; Mastra\'s is synchronous ' +
      "and deletes fire-and-forget); runs one after another for the rep's time budget (" +
      `${budgetMs} ms); cells are ms per run. ` +
      `Warm-up: ${warmSteps} model steps of runs per implementation and workload before the reps; no forced GC between reps ` +
      '(unlike the other sections: a full GC throws away type feedback, and Mastra then runs 2-4x slower for hundreds of ms, ours ~2x)' +
      (quick ? ' (--quick: far from steady state; Mastra needs several hundred runs to reach its steady speed). ' : '. ') +
      'The model is an ' +
      'AI SDK MockLanguageModelV3 whose doStream resolves with a ReadableStream already holding the step, so the time is framework ' +
      'overhead (both sides drive the same mock). Text, tool results and the final part are checked once per implementation before timing.',
  )
  ctx.note(
    `Parts per run in fullStream: 1-step ${partsNote(parts.oneStep)}; 3-step ${partsNote(parts.threeStep)} ` +
      '(Mastra adds response-metadata per step and names steps step-start/step-finish).',
  )
  ctx.note(
    '"ours (Mastra Agent)" and "mastra" wrap the same Agent definition (new Agent({ id, name, instructions, model, tools }), tools from ' +
      'createTool with zod schemas: ours validates each input with the zod schema through the AI SDK\'s asSchema). "ours (plain definition)": ' +
      `{ id, instructions, model, tools } with the same schema as JSON Schema, each input checked with Ajv. Stores: ours a new InMemoryServerCache ` +
      `per agent, Mastra its default (InMemoryServerCache under CachingPubSub(EventEmitterPubSub)). cleanupTimeoutMs: ours ` +
      `${OURS_CLEANUP_TIMEOUT_MS} (the TTL an ended run gets), Mastra ${MASTRA_CLEANUP_TIMEOUT_MS} (= no auto-cleanup timer).`,
  )
  const ratio = (key) => fmt(ctx.info[key].mastra.medianMs / ctx.info[key].ours.medianMs)
  ctx.note(`Runs per second, sequential: ours is ${ratio('oneStep')}x Mastra on the 1-step run, ${ratio('threeStep')}x on the 3-step run.`)
  return rows
}
