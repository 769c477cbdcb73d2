/**
 * Recovery of durable agent runs whose process died. A process driving a run
 * holds a lease on it (`leaseMs`, renewed while it drives); once the process
 * is gone (SIGKILL here) the lease lapses and another process can `recover`
 * the run from its last checkpoint: tool calls whose results were
 * checkpointed never run again, a model step that was cut off runs again.
 * `listActiveRuns` tells driven runs from orphaned ones, `recoverActiveRuns`
 * recovers the orphans. Real child processes over Redis (fixtures/agent-crash.mjs),
 * plus in-process checks on Redis and in memory.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

import { MockLanguageModelV3 } from 'ai/test'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'

import {
  createDurableAgent,
  ErrorCodes,
  InMemoryServerCache,
  RedisServerCache,
  type DurableAgent,
  type DurableAgentStreamResult,
  type PromptMessage,
  type PubSubEvent,
  type StreamPart,
  type Tool,
  type ToolResultContent,
} from '../dist/index.js'
import { drain, eventually, redisTargets, uniquePrefix, within } from './helpers.js'

/** How long anything (a stream, a child's line, a lease lapsing) may take before the test calls it a hang. */
const DEADLINE_MS = 10_000
/** The lease of the crashing children: short, so that it lapses quickly once they are killed. */
const LEASE_MS = 300

// ---------------------------------------------------------------------------
// Child processes

interface ChildEvent {
  event: string
  agentId?: string
  runId?: string
  [key: string]: unknown
}

/** A running fixture whose stdout JSON lines are collected as they come. */
class Child {
  readonly events: ChildEvent[] = []
  stderr = ''
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly #process: ChildProcess

  constructor(script: string, args: string[]) {
    const child = spawn(process.execPath, [join(__dirname, 'fixtures', script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.#process = child
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line !== '') this.events.push(JSON.parse(line) as ChildEvent)
    })
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk))
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  }

  get pid(): number {
    return this.#process.pid!
  }

  get alive(): boolean {
    return this.#process.exitCode === null && this.#process.signalCode === null
  }

  of(event: string): ChildEvent[] {
    return this.events.filter((e) => e.event === event)
  }

  /** Waits (within the deadline) until `count` lines of `event` (matching `where`) came. */
  async waitFor(event: string, where: (e: ChildEvent) => boolean = () => true, count = 1): Promise<ChildEvent[]> {
    await eventually(
      () => {
        if (!this.alive && this.of(event).filter(where).length < count) {
          throw new Error(`the child exited before printing ${count} ${event} line(s); stderr: ${this.stderr}`)
        }
        return this.of(event).filter(where).length >= count
      },
      DEADLINE_MS,
      `${count} ${event} line(s) from the child (stderr so far: ${this.stderr})`,
    )
    return this.of(event).filter(where)
  }

  /** SIGKILL, and wait for the process to be gone. */
  async kill(): Promise<void> {
    if (this.alive) this.#process.kill('SIGKILL')
    const exit = await within(this.exited, DEADLINE_MS, 'the killed child to exit')
    expect(exit.signal ?? 'exited').toBe('SIGKILL')
  }
}

// ---------------------------------------------------------------------------
// Models and tools of the test process

const usage = {
  inputTokens: { total: 10, noCache: 10, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 4, text: 4, reasoning: undefined },
}

function readable(parts: unknown[]): ReadableStream<unknown> {
  return new ReadableStream({
    start(controller) {
      for (const part of parts) controller.enqueue(part)
      controller.close()
    },
  })
}

/** A stream that never closes on its own: it errors once `signal` aborts. */
function hanging(signal: AbortSignal | undefined, onStart: () => void): ReadableStream<unknown> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue({ type: 'stream-start', warnings: [] })
      signal?.addEventListener('abort', () => controller.error(Object.assign(new Error('aborted'), { name: 'AbortError' })), { once: true })
      onStart()
    },
  })
}

function textParts(text: string, id: string): unknown[] {
  const cut = Math.ceil(text.length / 2)
  return [
    { type: 'stream-start', warnings: [] },
    { type: 'text-start', id },
    { type: 'text-delta', id, delta: text.slice(0, cut) },
    { type: 'text-delta', id, delta: text.slice(cut) },
    { type: 'text-end', id },
    { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage },
  ]
}

/** The tool results a prompt hands the model. */
function toolResults(prompt: PromptMessage[] | undefined): ToolResultContent[] {
  return (prompt ?? []).flatMap((m) => (m.role === 'tool' ? m.content : []))
}

function userText(prompt: PromptMessage[]): string {
  return prompt
    .filter((m) => m.role === 'user')
    .flatMap((m) => m.content)
    .map((p) => (p.type === 'text' ? p.text : ''))
    .join(' ')
}

const receiptOf = (results: ToolResultContent[]): string | undefined => {
  const output = results.find((r) => r.toolName === 'charge')?.output
  return output?.type === 'json' ? (output.value as { receipt?: string }).receipt : undefined
}

/** The final text the recovering model writes for a step whose prompt has `receipt`. */
const recoveredText = (receipt: string | undefined) => `Recovered: charged, receipt ${receipt}.`

/**
 * The test process's model. With tool results in the prompt (the step that
 * was cut off in the crashed process): the final text. A user message
 * mentioning "hang": a stream that hangs until aborted. Anything else would
 * be step 1 again, which recovery must never run: it fails the run.
 */
function recoveringModel() {
  const prompts: PromptMessage[][] = []
  let hangs = 0
  const model = new MockLanguageModelV3({
    doStream: (async (options: { prompt: PromptMessage[]; abortSignal?: AbortSignal }) => {
      prompts.push(JSON.parse(JSON.stringify(options.prompt)) as PromptMessage[])
      const results = toolResults(options.prompt)
      if (results.length > 0) return { stream: readable(textParts(recoveredText(receiptOf(results)), 'text-recovered')) }
      if (userText(options.prompt).includes('hang')) return { stream: hanging(options.abortSignal, () => (hangs += 1)) }
      throw new Error('the recovering model was asked for step 1 again')
    }) as never,
  })
  return {
    model,
    prompts,
    get calls() {
      return prompts.length
    },
    get hangs() {
      return hangs
    },
  }
}

/** A `charge` tool that counts its executions (in the test process, recovery must not run it). */
function countingCharge(): { executions: unknown[]; tool: Tool } {
  const executions: unknown[] = []
  return {
    executions,
    tool: {
      description: 'Charges an order',
      inputSchema: { type: 'object', properties: { orderId: { type: 'number' }, amount: { type: 'number' } }, required: ['orderId'] },
      execute: async (input: Record<string, unknown>) => {
        executions.push(input)
        return { receipt: `R-${input.orderId}-test` }
      },
    },
  }
}

// ---------------------------------------------------------------------------
// Streams, errors

const types = (parts: StreamPart[]) => parts.map((p) => p.type)
const ofType = <T extends StreamPart['type']>(parts: StreamPart[], type: T) => parts.filter((p): p is Extract<StreamPart, { type: T }> => p.type === type)

/** The error `promise` rejects with (it must reject, within the deadline). */
async function rejection(promise: Promise<unknown>, what: string): Promise<Error & { code?: string }> {
  try {
    await within(promise, DEADLINE_MS, what)
  } catch (error) {
    return error as Error & { code?: string }
  }
  throw new Error(`${what} resolved; it should have rejected`)
}

/**
 * Recovers `runId` as soon as its lease lapses: polls `recover`, which
 * rejects with ERR_RUN_ACTIVE while the lease is held; any other error fails.
 */
async function recoverOnceLapsed(agent: DurableAgent, runId: string): Promise<{ result: DurableAgentStreamResult; refusals: number }> {
  let result: DurableAgentStreamResult | undefined
  let refusals = 0
  await eventually(
    async () => {
      try {
        result = await agent.recover(runId)
        return true
      } catch (error) {
        if ((error as { code?: string }).code !== ErrorCodes.RUN_ACTIVE) throw error
        refusals += 1
        return false
      }
    },
    DEADLINE_MS,
    `the lease of run ${runId} to lapse (recover to stop rejecting with ERR_RUN_ACTIVE)`,
  )
  return { result: result!, refusals }
}

/** The run's stored events, which must be numbered 0, 1, 2, ... without gaps. */
async function gapFreeHistory(agent: DurableAgent, runId: string): Promise<PubSubEvent[]> {
  const history = await agent.pubsub.getHistory(`agent.stream.${runId}`)
  expect(history.map((e) => e.index)).toEqual(history.map((_, i) => i))
  // Event ids never repeat, across the crashed driver and the recovering one.
  expect(new Set(history.map((e) => e.id)).size).toBe(history.length)
  return history
}

const chunks = (history: PubSubEvent[]) => history.filter((e) => e.type === 'chunk').map((e) => e.data as StreamPart)

// ---------------------------------------------------------------------------

describe.each(redisTargets())('recovering runs whose process died ($name, child processes)', (target) => {
  let prefix: string
  let cache: RedisServerCache
  let children: Child[]
  /** Runs driven by the test process that may still hang: aborted after the test. */
  let live: DurableAgentStreamResult[]

  beforeEach(() => {
    prefix = uniquePrefix('agent-recovery')
    cache = new RedisServerCache(target.connection, { keyPrefix: prefix })
    children = []
    live = []
  })
  afterEach(async () => {
    try {
      for (const child of children) await child.kill()
      for (const run of live) {
        await run.abort().catch(() => undefined)
        await within(run.output.getFullOutput(), DEADLINE_MS, 'a live run to end after its abort')
      }
    } finally {
      try {
        await cache.clear()
      } finally {
        await cache.close()
      }
    }
  })

  function crashingChild(mode: 'quiet' | 'partial' | 'streaming', runs: [agentId: string, runId: string][], leaseMs = LEASE_MS): Child {
    const child = new Child('agent-crash.mjs', [target.arg, prefix, String(leaseMs), mode, ...runs.map(([a, r]) => `${a}:${r}`)])
    children.push(child)
    return child
  }

  /** The agent `agentId` of the test process, over the same Redis prefix. */
  function recoveringAgent(agentId: string) {
    const scripted = recoveringModel()
    const charge = countingCharge()
    const agent = createDurableAgent({
      agent: { id: agentId, instructions: 'You charge orders.', model: scripted.model, tools: { charge: charge.tool } },
      cache,
      leaseMs: LEASE_MS,
      cleanupTimeoutMs: 600_000,
    })
    return { agent, scripted, charge }
  }

  it('a run killed after its tool call was checkpointed is recovered elsewhere: the tool does not run again, the cut-off model step does', async () => {
    const agentId = 'orders-agent'
    const runId = `run-crash-${Date.now()}`
    const child = crashingChild('quiet', [[agentId, runId]])
    await child.waitFor('hanging', (e) => e.runId === runId)
    const { agent, scripted, charge } = recoveringAgent(agentId)

    // A is alive and drives the run (in step 2): it holds the lease.
    expect(child.alive).toBe(true)
    const refused = await rejection(agent.recover(runId), 'recover while A drives the run')
    expect(refused.code).toBe(ErrorCodes.RUN_ACTIVE)
    expect((await agent.listActiveRuns()).runs).toEqual([expect.objectContaining({ runId, driven: true })])
    // Refusing ran nothing here.
    expect(scripted.calls).toBe(0)

    await child.kill()
    const { result } = await recoverOnceLapsed(agent, runId)
    expect(result.runId).toBe(runId)
    const continuation = await drain(result.fullStream, 'the recovered run to finish')
    const full = await result.output.getFullOutput()

    // A ran step 1 and the tool, then hung in step 2.
    const toolsA = child.of('tool')
    expect(toolsA).toHaveLength(1)
    expect(toolsA[0]).toMatchObject({
      runId,
      name: 'charge',
      toolCallId: 'call-charge-42',
      idempotencyKey: `${runId}:0:call-charge-42`,
      input: { orderId: 42, amount: 42.5 },
    })
    const receipt = (toolsA[0]!.output as { receipt: string }).receipt
    expect(receipt).toBe(`R-42-${child.pid}`)
    expect(child.of('model-call')).toHaveLength(2)

    // Here: no tool, one model call (step 2), whose prompt carries A's tool result.
    expect(charge.executions).toHaveLength(0)
    expect(scripted.calls).toBe(1)
    const prompt = scripted.prompts[0]!
    expect(prompt.slice(0, 3)).toEqual([
      { role: 'system', content: 'You charge orders.' },
      { role: 'user', content: [{ type: 'text', text: `Please charge order 42 (run ${runId}).` }] },
      { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'call-charge-42', toolName: 'charge', input: { orderId: 42, amount: 42.5 } }] },
    ])
    expect(toolResults(prompt)).toEqual([
      { type: 'tool-result', toolCallId: 'call-charge-42', toolName: 'charge', output: { type: 'json', value: { receipt } } },
    ])

    // The continuation: step 2, run again here, to the end.
    expect(types(continuation)).toEqual(['start-step', 'text-start', 'text-delta', 'text-delta', 'text-end', 'finish-step', 'finish'])
    expect(full.outcome).toBe('finished')
    expect(full.text).toBe(recoveredText(receipt))
    expect(await result.output.text).toBe(recoveredText(receipt))

    // The whole run, replayed: A's part, then the recovery's; one tool result, one finish.
    const replay = await agent.observe(runId, { offset: 0 })
    const replayed = await drain(replay.fullStream, 'the replay from 0')
    expect(types(replayed)).toEqual([
      'start',
      'start-step',
      'tool-call',
      'tool-result',
      'finish-step',
      'start-step',
      'text-start',
      'text-delta',
      'text-delta',
      'text-end',
      'finish-step',
      'finish',
    ])
    expect(ofType(replayed, 'finish')).toHaveLength(1)
    expect(ofType(replayed, 'tool-result')).toEqual([expect.objectContaining({ toolCallId: 'call-charge-42', output: { receipt } })])
    expect((await replay.output.getFullOutput()).outcome).toBe('finished')
    const history = await gapFreeHistory(agent, runId)
    expect(JSON.parse(JSON.stringify(chunks(history)))).toEqual(JSON.parse(JSON.stringify(replayed)))

    // Finished: no longer active, and nothing ran again.
    expect(await agent.listActiveRuns()).toEqual({ runs: [], total: 0 })
    expect(scripted.calls).toBe(1)
    expect(charge.executions).toHaveLength(0)
  })

  it('a model step cut off after publishing parts runs again: its parts stay in the log, the retry starts with a new start-step', async () => {
    const agentId = 'orders-agent'
    const runId = `run-partial-${Date.now()}`
    const child = crashingChild('partial', [[agentId, runId]])
    await child.waitFor('hanging', (e) => e.runId === runId)
    const { agent, scripted, charge } = recoveringAgent(agentId)
    // A's partial parts of step 2 are in the log before it dies.
    await eventually(
      async () => chunks(await agent.pubsub.getHistory(`agent.stream.${runId}`)).some((p) => p.type === 'text-delta'),
      DEADLINE_MS,
      'the partial text of the cut-off step in the log',
    )
    await child.kill()

    const { result } = await recoverOnceLapsed(agent, runId)
    const continuation = await drain(result.fullStream, 'the recovered run to finish')
    const full = await result.output.getFullOutput()
    const receipt = (child.of('tool')[0]!.output as { receipt: string }).receipt
    expect(child.of('tool')).toHaveLength(1)
    expect(charge.executions).toHaveLength(0)
    expect(scripted.calls).toBe(1)

    // From the checkpoint: A's cut-off attempt, then the retry.
    expect(types(continuation)).toEqual([
      'start-step',
      'text-start',
      'text-delta',
      'start-step',
      'text-start',
      'text-delta',
      'text-delta',
      'text-end',
      'finish-step',
      'finish',
    ])
    expect(ofType(continuation, 'text-delta')[0]).toMatchObject({ text: 'Half a thou' })
    expect(full.outcome).toBe('finished')
    // The step that completed is the retry's.
    expect(full.steps.map((s) => s.text)).toEqual([recoveredText(receipt)])
    expect(full.steps.at(-1)!.finishReason).toBe('stop')
    // The cut-off attempt's text is in the stream but not in `text`.
    expect(full.text).toBe(recoveredText(receipt))

    const replayed = await drain((await agent.observe(runId, { offset: 0 })).fullStream, 'the replay from 0')
    expect(ofType(replayed, 'finish')).toHaveLength(1)
    expect(ofType(replayed, 'tool-result')).toHaveLength(1)
    expect(ofType(replayed, 'start-step')).toHaveLength(3)
    const history = await gapFreeHistory(agent, runId)
    expect(JSON.parse(JSON.stringify(chunks(history)))).toEqual(JSON.parse(JSON.stringify(replayed)))
  })

  it('listActiveRuns tells driven runs from orphaned ones (only this agent’s); recoverActiveRuns recovers the orphans', async () => {
    const agentId = 'orders-agent'
    const otherId = 'other-agent'
    const stamp = Date.now()
    const [runA, runB, runOther] = [`run-a-${stamp}`, `run-b-${stamp}`, `run-other-${stamp}`]
    const child = crashingChild('quiet', [
      [agentId, runA],
      [otherId, runOther],
      [agentId, runB],
    ])
    await child.waitFor('hanging', () => true, 3)
    const { agent, scripted, charge } = recoveringAgent(agentId)
    const other = recoveringAgent(otherId)
    const startedAt = Date.now()

    // A run driven here, whose model hangs until it is aborted.
    const liveRun = await agent.stream('Please hang for a while.', { threadId: 'thread-live' })
    live.push(liveRun)
    await eventually(() => scripted.hangs === 1, DEADLINE_MS, 'the live run to reach its model')

    // Everything is driven: the child's two runs and the live one.
    const sorted = <R extends { runId: string }>(runs: R[]): R[] => [...runs].sort((x, y) => x.runId.localeCompare(y.runId))
    const whileAlive = await agent.listActiveRuns()
    expect(whileAlive.total).toBe(3)
    expect(sorted(whileAlive.runs).map((r) => [r.runId, r.driven])).toEqual(
      sorted([
        { runId: runA, driven: true },
        { runId: runB, driven: true },
        { runId: liveRun.runId, driven: true },
      ]).map((r) => [r.runId, r.driven]),
    )
    // Nothing to recover while every run has a driver.
    expect(await agent.recoverActiveRuns()).toEqual({ recovered: [], succeeded: 0, failed: 0 })
    expect(scripted.calls).toBe(1)

    await child.kill()
    await eventually(
      async () => (await agent.listActiveRuns()).runs.filter((r) => !r.driven).length === 2,
      DEADLINE_MS,
      'the leases of the killed child to lapse',
    )
    const lapsed = await agent.listActiveRuns()
    expect(lapsed.total).toBe(3)
    expect(lapsed.runs.find((r) => r.runId === liveRun.runId)).toMatchObject({ driven: true, threadId: 'thread-live' })
    // The other agent's run is only the other agent's.
    expect(await other.agent.listActiveRuns()).toEqual({
      runs: [{ runId: runOther, status: 'running', threadId: `thread-${runOther}`, resourceId: 'user-43', updatedAt: expect.any(Date), driven: false }],
      total: 1,
    })

    await liveRun.abort('enough')
    const liveParts = await drain(liveRun.fullStream, 'the live run to end with abort')
    expect(liveParts.at(-1)?.type).toBe('abort')

    const orphans = await agent.listActiveRuns()
    expect(orphans.total).toBe(2)
    expect(sorted(orphans.runs)).toEqual([
      { runId: runA, status: 'running', threadId: `thread-${runA}`, resourceId: 'user-42', updatedAt: expect.any(Date), driven: false },
      { runId: runB, status: 'running', threadId: `thread-${runB}`, resourceId: 'user-44', updatedAt: expect.any(Date), driven: false },
    ])
    for (const run of orphans.runs) {
      // Last checkpointed by the child, after its tool call and before the test process started its agent.
      expect(run.updatedAt.getTime()).toBeLessThanOrEqual(startedAt)
      expect(run.updatedAt.getTime()).toBeGreaterThan(startedAt - 60_000)
    }

    const outcome = await within(agent.recoverActiveRuns(), DEADLINE_MS, 'recoverActiveRuns')
    expect(outcome.succeeded).toBe(2)
    expect(outcome.failed).toBe(0)
    expect(sorted(outcome.recovered)).toEqual([
      { runId: runA, status: 'success' },
      { runId: runB, status: 'success' },
    ])

    // Each recovered run ran its step 2 here, once, and finished with its own receipt; no tool ran here.
    expect(charge.executions).toHaveLength(0)
    expect(
      child
        .of('tool')
        .map((e) => e.runId)
        .sort(),
    ).toEqual([runA, runB, runOther].sort())
    expect(scripted.calls).toBe(3)
    for (const [runId, order] of [
      [runA, 42],
      [runB, 44],
    ] as const) {
      const replay = await agent.observe(runId, { offset: 0 })
      const replayed = await drain(replay.fullStream, `the replay of ${runId}`)
      const full = await replay.output.getFullOutput()
      expect(replayed.at(-1)?.type).toBe('finish')
      expect(ofType(replayed, 'finish')).toHaveLength(1)
      expect(ofType(replayed, 'tool-result')).toHaveLength(1)
      expect(full.outcome).toBe('finished')
      expect(full.text).toBe(recoveredText(`R-${order}-${child.pid}`))
      await gapFreeHistory(agent, runId)
    }

    // Nothing of this agent runs any more; the other agent's orphan was left alone.
    expect(await agent.listActiveRuns()).toEqual({ runs: [], total: 0 })
    expect((await other.agent.listActiveRuns()).runs.map((r) => [r.runId, r.driven])).toEqual([[runOther, false]])
    expect(other.scripted.calls).toBe(0)
    // The other agent cannot recover this agent's runs, and this agent not the other's.
    expect((await rejection(other.agent.recover(runA), 'another agent recovering runA')).code).toBe(ErrorCodes.RUN_OWNED_ELSEWHERE)
    expect((await rejection(agent.recover(runOther), 'this agent recovering the other agent’s run')).code).toBe(ErrorCodes.RUN_OWNED_ELSEWHERE)
    expect(other.scripted.calls).toBe(0)
  })

  it('a suspended run is not active; recover of a suspended or finished run only observes it from its end and never calls the model', async () => {
    const agentId = 'approval-agent'
    const prompts: PromptMessage[][] = []
    const model = new MockLanguageModelV3({
      doStream: (async (options: { prompt: PromptMessage[] }) => {
        prompts.push(options.prompt)
        const results = toolResults(options.prompt)
        return {
          stream: readable(
            results.length > 0
              ? textParts('Done.', 'text-2')
              : [
                  { type: 'stream-start', warnings: [] },
                  { type: 'tool-call', toolCallId: 'call-1', toolName: 'charge', input: JSON.stringify({ orderId: 7 }) },
                  { type: 'finish', finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage },
                ],
          ),
        }
      }) as never,
    })
    const charge = countingCharge()
    const agent = createDurableAgent({
      agent: { id: agentId, model, tools: { charge: { ...charge.tool, needsApproval: true } } },
      cache,
      leaseMs: LEASE_MS,
      cleanupTimeoutMs: 600_000,
    })

    const run = await agent.stream('Charge order 7.')
    const parts = await drain(run.fullStream, 'the run to suspend')
    expect(parts.at(-1)?.type).toBe('tool-approval-request')
    expect((await run.output.getFullOutput()).outcome).toBe('suspended')
    expect(prompts).toHaveLength(1)

    // Suspended: not active (nobody needs to recover it), and recover only observes it.
    expect(await agent.listActiveRuns()).toEqual({ runs: [], total: 0 })
    expect(await agent.recoverActiveRuns()).toEqual({ recovered: [], succeeded: 0, failed: 0 })
    const atSuspension = await agent.recover(run.runId)
    expect(await drain(atSuspension.fullStream, 'recovering the suspended run')).toEqual([])
    expect((await atSuspension.output.getFullOutput()).outcome).toBe('suspended')
    expect(prompts).toHaveLength(1)
    expect(charge.executions).toHaveLength(0)

    const continuation = await agent.approveToolCall({ runId: run.runId })
    expect((await drain(continuation.fullStream, 'the continuation to finish')).at(-1)?.type).toBe('finish')
    expect(prompts).toHaveLength(2)
    expect(charge.executions).toHaveLength(1)
    const before = await gapFreeHistory(agent, run.runId)

    // Finished: recover ends at once with nothing new, and runs nothing.
    const recovered = await agent.recover(run.runId)
    expect(await drain(recovered.fullStream, 'recovering the finished run')).toEqual([])
    const full = await recovered.output.getFullOutput()
    expect(full.outcome).toBe('finished')
    expect(full.text).toBe('')
    expect(prompts).toHaveLength(2)
    expect(charge.executions).toHaveLength(1)
    expect(await agent.pubsub.getHistory(`agent.stream.${run.runId}`)).toHaveLength(before.length)
    expect(await agent.listActiveRuns()).toEqual({ runs: [], total: 0 })
  })

  // The lease is renewed every third of leaseMs while the run is driven, so a
  // live driver never loses it: however short it is (leaseMs >= 10 is
  // allowed), and while its model streams parts without a pause.
  it.each([
    ['quiet', LEASE_MS],
    ['quiet', 100],
    ['streaming', LEASE_MS],
  ] as const)('a live driver keeps its lease (model step %s, leaseMs %i) for many lease periods: recover keeps rejecting', async (mode, leaseMs) => {
    const agentId = 'orders-agent'
    const runId = `run-kept-${mode}-${leaseMs}-${Date.now()}`
    const child = crashingChild(mode, [[agentId, runId]], leaseMs)
    await child.waitFor('hanging', (e) => e.runId === runId)
    const { agent, scripted } = recoveringAgent(agentId)

    // Five lease periods (at least a second) while the child waits for its model.
    const started = Date.now()
    const until = started + Math.max(5 * leaseMs, 1_000)
    let attempts = 0
    while (Date.now() < until) {
      attempts += 1
      const attempt = await within(
        agent.recover(runId).then(
          (recovered) => {
            // Taken over from a live driver: let it end before the test cleans up.
            live.push(recovered)
            return 'recovered while the child still drives the run'
          },
          (error: { code?: string }) => error.code,
        ),
        DEADLINE_MS,
        `recover attempt ${attempts}`,
      )
      const after = `${Date.now() - started} ms into the check (the child was in its model step before it began)`
      expect(attempt, `recover attempt ${attempts}, ${after}`).toBe(ErrorCodes.RUN_ACTIVE)
      const [listed] = (await agent.listActiveRuns()).runs
      expect(listed, `listActiveRuns, ${after}`).toMatchObject({ runId, driven: true })
    }
    expect(attempts).toBeGreaterThan(5)
    expect(child.alive).toBe(true)
    expect(scripted.calls).toBe(0)
    expect(child.of('model-call')).toHaveLength(2)
  })
})

describe('recover in the process that drives the run (in memory)', () => {
  let cache: InMemoryServerCache

  beforeEach(() => {
    cache = new InMemoryServerCache()
  })
  afterEach(async () => {
    await cache.clear()
  })

  it('recover of a run driven right now in this process rejects with ERR_RUN_ACTIVE and leaves the run alone', async () => {
    const prompts: PromptMessage[][] = []
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const model = new MockLanguageModelV3({
      doStream: (async (options: { prompt: PromptMessage[] }) => {
        prompts.push(options.prompt)
        const results = toolResults(options.prompt)
        if (results.length === 0) {
          // Step 1 waits until the test lets it go.
          await gate
          return {
            stream: readable([
              { type: 'stream-start', warnings: [] },
              { type: 'tool-call', toolCallId: 'call-1', toolName: 'charge', input: JSON.stringify({ orderId: 9 }) },
              { type: 'finish', finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage },
            ]),
          }
        }
        return { stream: readable(textParts(`Charged ${receiptOf(results)}.`, 'text-2')) }
      }) as never,
    })
    const charge = countingCharge()
    const agent = createDurableAgent({ agent: { id: 'local-agent', model, tools: { charge: charge.tool } }, cache, cleanupTimeoutMs: 600_000 })

    const run = await agent.stream('Charge order 9.')
    // Right after stream(): the run is being driven here.
    expect((await rejection(agent.recover(run.runId), 'recover right after stream()')).code).toBe(ErrorCodes.RUN_ACTIVE)
    await eventually(() => prompts.length === 1, DEADLINE_MS, 'the model to be called')
    // While the model step is in flight.
    expect((await rejection(agent.recover(run.runId), 'recover during the model step')).code).toBe(ErrorCodes.RUN_ACTIVE)
    expect(await agent.listActiveRuns()).toEqual({ runs: [expect.objectContaining({ runId: run.runId, status: 'running', driven: true })], total: 1 })
    expect(await agent.recoverActiveRuns()).toEqual({ recovered: [], succeeded: 0, failed: 0 })
    expect(agent.activeRuns).toBe(1)

    // The run goes on undisturbed: each step once, the tool once.
    release()
    const parts = await drain(run.fullStream, 'the run to finish')
    expect(parts.at(-1)?.type).toBe('finish')
    expect(ofType(parts, 'start-step')).toHaveLength(2)
    expect(await run.output.text).toBe('Charged R-9-test.')
    expect(prompts).toHaveLength(2)
    expect(charge.executions).toHaveLength(1)
    expect(await agent.listActiveRuns()).toEqual({ runs: [], total: 0 })
  })
})
