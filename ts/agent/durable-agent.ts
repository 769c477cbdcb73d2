/**
 * `createDurableAgent`: an agent whose loop runs as durable steps in the Rust
 * core. The model and the tools stay in JS (AI SDK models and tools, or a
 * Mastra `Agent`); Rust calls them, checkpoints each completed step with the
 * events it produced, and publishes every part on the run's topic
 * (`agent.stream.<runId>`), where any reader can replay it.
 */
import { randomUUID } from 'node:crypto'

import { NativeAgent } from '../../native.js'
import { checkKey, checkOptions } from '../args.js'
import { coded, ErrorCodes, hasCode, native } from '../errors.js'
import { parseEventIndex } from '../event-index.js'
import { beforeClose, pubsubInternals, type PubSubInternals } from '../internal.js'
import { InMemoryServerCache } from '../memory-cache.js'
import { CachingPubSub, type InnerPubSub } from '../pubsub.js'
import type { RedisServerCache } from '../redis-cache.js'
import { instructionsText, toPrompt } from './messages.js'
import { runTopic, type RunOptions, type RunSummary } from '../wire.js'
import { loopCallbacks, type Resolved } from './callbacks.js'
import { toMastraChunk } from './mastra-chunks.js'
import { DurableOutput } from './output.js'
import { resolveTools } from './tools.js'
import type {
  AgentDefinition,
  ChunkOf,
  FullOutput,
  LanguageModel,
  MessageInput,
  ObserveOptions,
  ResumeData,
  ResumeOptions,
  RunOutcome,
  StreamCallbacks,
  StreamOptions,
  StreamFormat,
  StreamPart,
} from './types.js'

/** A Mastra `Agent`, read through its public getters. */
export interface MastraAgentLike {
  id: string
  name?: string
  getModel(options?: unknown): unknown
  getInstructions(options?: unknown): unknown
  listTools(options?: unknown): unknown
}

export interface CreateDurableAgentOptions<A extends AgentDefinition | MastraAgentLike = AgentDefinition | MastraAgentLike, F extends StreamFormat = 'aisdk'> {
  agent: A
  /** Default: the agent's id. Runs belong to this id: another id cannot resume them. */
  id?: string
  name?: string
  /**
   * Where run state and events live. Default: a new `InMemoryServerCache`
   * with `maxSize: 100_000`. A run takes two keys until it is cleaned up (a
   * few more while driven): size an in-memory cache you pass for the runs
   * you keep, since it evicts the least recently used keys, live runs
   * included, beyond `maxSize`.
   */
  cache?: InMemoryServerCache | RedisServerCache
  /** Our `CachingPubSub` (used as is), or a Mastra `PubSub` to wrap. Default: a native `CachingPubSub` over `cache`. */
  pubsub?: CachingPubSub | InnerPubSub
  maxSteps?: number
  /**
   * How long the lease of a run this process drives lasts; renewed every
   * third of it while the run is driven. When the process dies, the run can
   * be recovered elsewhere (`recover`, `recoverActiveRuns`) once its lease
   * has lapsed. Default 30 s.
   */
  leaseMs?: number
  /**
   * How long a process driving a run rides a store outage out (a Redis
   * restart, failover or stall), each result in hand, before it gives the
   * run up. Past the lease another process may take the run over (then this
   * one stops); if none did, the driver takes its lease back and goes on. A
   * run given up stays at its last checkpoint, for any process to `recover`.
   * Default: the lease, and at least 30 s (a Redis Cluster failover takes
   * about 15-20 s with its default `cluster-node-timeout`).
   */
  outageMs?: number
  /**
   * Keep a run's state and events this long after it ends (finished,
   * failed, aborted): the checkpoint that ends it gives its keys this TTL,
   * in whichever process drives it. Default 30 s; 0 turns auto-cleanup off
   * (as in Mastra: call `cleanup()`; the topic's retention still applies).
   */
  cleanupTimeoutMs?: number
  /**
   * What streams and `onChunk` hand out: `'aisdk'` (default), the AI SDK's
   * full-stream parts; `'mastra'`, `@mastra/core`'s chunks (`{ type, runId,
   * from, payload }`), for code, server routes or clients that read Mastra
   * agent streams. Runs are stored the same way in both.
   */
  format?: F
}

/** What `stream` and `resume` return (Mastra's `DurableAgentStreamResult`). `C`: what the stream hands out. */
export interface DurableAgentStreamResult<C = StreamPart> {
  runId: string
  threadId?: string
  resourceId?: string
  output: DurableOutput<C>
  /** `output.fullStream`. */
  readonly fullStream: ReadableStream<C>
  /** Deletes the run's state and events now (the run must not be needed again). */
  cleanup(): Promise<void>
  abort(reason?: string): Promise<void>
}

/** A running run in the store (Mastra's `DurableAgentActiveRun`, plus whether a process drives it). */
export interface DurableAgentActiveRun {
  runId: string
  status: 'running'
  threadId?: string
  resourceId?: string
  updatedAt: Date
  /** Whether a process holds the run's lease (drives it now); false: its driver is gone, recover it. */
  driven: boolean
  /** The lease id of the process that drives it (`<pid>:<...>`), when one does. */
  drivenBy?: string
}

/** What `recoverActiveRuns` did (Mastra's shape): a run `success` when recovered and driven to its end or a suspension. */
export interface DurableAgentRecoverActiveRunsResult {
  recovered: { runId: string; status: 'success' | 'failed'; error?: Error }[]
  succeeded: number
  failed: number
}

/** A stored run as `getRun` reports it. */
export interface DurableAgentRun {
  runId: string
  status: RunSummary['status']
  /** The current step, 0-based. */
  step: number
  /** The index the run's next event gets (its topic's next index). */
  nextIndex: number
  /** Tool calls waiting for an approval decision (a suspended run). */
  pendingApprovals: { toolCallId: string; toolName: string; args: unknown }[]
  threadId?: string
  resourceId?: string
  createdAt: Date
  updatedAt: Date
  /** Whether a process holds the run's lease (drives it now). */
  driven: boolean
  /** The lease id of the process that drives it (`<pid>:<...>`), when one does. */
  drivenBy?: string
  /** Whether this process drives it. */
  drivenHere: boolean
}

const BRAND = Symbol.for('durable-agent.DurableAgent')

/** `maxSize` of the in-memory cache a durable agent makes when given none. */
const DEFAULT_CACHE_KEYS = 100_000

function isMastraAgent(agent: object): agent is MastraAgentLike {
  return typeof (agent as MastraAgentLike).getModel === 'function' && typeof (agent as MastraAgentLike).listTools === 'function'
}

function checkModel(model: unknown): LanguageModel {
  const m = model as LanguageModel | undefined
  if (!m || typeof m !== 'object' || typeof m.doStream !== 'function' || (m.specificationVersion !== 'v2' && m.specificationVersion !== 'v3')) {
    throw coded(new TypeError('agent.model must be an AI SDK language model (specification v2 or v3, with doStream)'), ErrorCodes.INVALID_MODEL)
  }
  return m
}

export class DurableAgent<A extends AgentDefinition | MastraAgentLike = AgentDefinition | MastraAgentLike, F extends StreamFormat = 'aisdk'> {
  readonly id: string
  readonly name: string
  readonly agent: A
  readonly cache: InMemoryServerCache | RedisServerCache
  readonly pubsub: CachingPubSub
  readonly maxSteps: number
  readonly cleanupTimeoutMs: number
  readonly leaseMs: number
  readonly outageMs: number
  readonly format: F
  readonly [BRAND] = true
  readonly #native: NativeAgent
  readonly #pubsub: PubSubInternals
  /** Per run driven here: its abort controller (model and tools get its signal). */
  readonly #controllers = new Map<string, AbortController>()
  /** Per run driven here: its drive, settled when the run ends, suspends or is given up. */
  readonly #drives = new Map<string, Promise<unknown>>()
  /** Outputs of this process per run, ended by hand if the run cannot be driven. */
  readonly #outputs = new Map<string, Set<DurableOutput<ChunkOf<F>>>>()
  /** A stored part as this agent's format hands it out. */
  readonly #toChunk: (part: StreamPart, runId: string) => ChunkOf<F>
  #resolved: Promise<Resolved> | undefined

  constructor(options: CreateDurableAgentOptions<A, F>) {
    checkOptions(
      options,
      {
        agent: 'object',
        id: 'string',
        name: 'string',
        cache: 'object',
        pubsub: 'object',
        maxSteps: 'number',
        cleanupTimeoutMs: 'number',
        leaseMs: 'number',
        outageMs: 'number',
        format: 'string',
      },
      'createDurableAgent options',
    )
    const format = options.format ?? 'aisdk'
    if (format !== 'aisdk' && format !== 'mastra') {
      throw coded(new TypeError(`invalid option \`format\`: must be 'aisdk' or 'mastra', got '${String(format)}'`), ErrorCodes.INVALID_OPTION)
    }
    this.format = format as F
    // The one place the format's type is taken on trust: ChunkOf<F> follows F.
    this.#toChunk = (format === 'mastra' ? toMastraChunk : (part: StreamPart) => part) as (part: StreamPart, runId: string) => ChunkOf<F>
    const agent = options.agent
    if (!agent || typeof agent !== 'object' || typeof agent.id !== 'string' || agent.id === '') {
      throw coded(new TypeError('agent must be an object with a non-empty string id (a definition or a Mastra Agent)'), ErrorCodes.INVALID_OPTION)
    }
    if (!isMastraAgent(agent)) checkModel((agent as AgentDefinition).model)
    const maxSteps = options.maxSteps ?? 5
    if (!Number.isInteger(maxSteps) || maxSteps < 1 || maxSteps > 10_000) {
      throw coded(new RangeError(`maxSteps must be an integer from 1 to 10000, got ${maxSteps}`), ErrorCodes.INVALID_OPTION)
    }
    const cleanupTimeoutMs = options.cleanupTimeoutMs ?? 30_000
    if (!Number.isFinite(cleanupTimeoutMs) || cleanupTimeoutMs < 0) {
      throw coded(new RangeError(`cleanupTimeoutMs must be a finite number >= 0, got ${cleanupTimeoutMs}`), ErrorCodes.INVALID_OPTION)
    }
    const leaseMs = options.leaseMs ?? 30_000
    if (!Number.isInteger(leaseMs) || leaseMs < 10 || leaseMs > 2 ** 31 - 1) {
      throw coded(new RangeError(`leaseMs must be an integer from 10 to 2147483647, got ${leaseMs}`), ErrorCodes.INVALID_OPTION)
    }
    this.leaseMs = leaseMs
    const outageMs = options.outageMs ?? Math.max(leaseMs, 30_000)
    if (!Number.isInteger(outageMs) || outageMs < 1 || outageMs > 2 ** 31 - 1) {
      throw coded(new RangeError(`outageMs must be an integer from 1 to 2147483647, got ${outageMs}`), ErrorCodes.INVALID_OPTION)
    }
    this.outageMs = outageMs
    this.agent = agent
    this.id = options.id ?? agent.id
    this.name = options.name ?? agent.name ?? this.id
    this.maxSteps = maxSteps
    this.cleanupTimeoutMs = cleanupTimeoutMs
    const given = options.pubsub
    if (given instanceof CachingPubSub) {
      this.pubsub = given
      const internals = pubsubInternals.get(given)!
      if (options.cache && options.cache !== internals.cache) {
        throw coded(new TypeError('cache and pubsub disagree: pass the cache the CachingPubSub stores in, or only one of them'), ErrorCodes.INVALID_OPTION)
      }
      this.cache = internals.cache as InMemoryServerCache | RedisServerCache
    } else {
      // A run takes two keys (state and events) until it is cleaned up: the
      // cache's default of 1,000 keys would start evicting live runs at a
      // few hundred kept runs.
      this.cache = options.cache ?? new InMemoryServerCache({ maxSize: DEFAULT_CACHE_KEYS })
      this.pubsub = new CachingPubSub(given ?? null, this.cache)
    }
    this.#pubsub = pubsubInternals.get(this.pubsub)!
    const { callModel, callTool } = loopCallbacks({
      resolve: () => this.#resolve(),
      // A run not driven here has no controller: its calls get a signal that never aborts.
      signalOf: (runId) => this.#controllers.get(runId)?.signal ?? new AbortController().signal,
      emit: (runId, parts) => this.#native.emit(runId, parts),
    })
    this.#native = native(() => new NativeAgent(this.#pubsub.native, this.id, leaseMs, outageMs, keepEndedMs(cleanupTimeoutMs), callModel, callTool))
    let hooks = beforeClose.get(this.cache)
    if (!hooks) beforeClose.set(this.cache, (hooks = new Set()))
    hooks.add(() => this.#releaseAll())
  }

  /** Starts a run and streams it. Resolves once the run is stored (its events are readable from index 0). */
  async stream(messages: MessageInput, options: StreamOptions<ChunkOf<F>> = {}): Promise<DurableAgentStreamResult<ChunkOf<F>>> {
    if (options?.resumeFromEventId !== undefined) return this.#continueView(options)
    checkOptions(
      options,
      {
        threadId: 'string',
        resourceId: 'string',
        maxSteps: 'number',
        requireToolApproval: 'boolean',
        abortSignal: 'object',
        modelSettings: 'object',
        activeTools: 'object',
        toolCallConcurrency: 'number',
        onChunk: 'function',
        onStepFinish: 'function',
        onFinish: 'function',
        onError: 'function',
        onSuspended: 'function',
        onAbort: 'function',
      },
      'stream options',
    )
    if (options.runId !== undefined) checkKey(options.runId, 'runId')
    const maxSteps = options.maxSteps ?? this.maxSteps
    if (!Number.isInteger(maxSteps) || maxSteps < 1) {
      throw coded(new RangeError(`maxSteps must be a positive integer, got ${maxSteps}`), ErrorCodes.INVALID_ARG)
    }
    const resolved = await this.#resolve()
    const prompt = toPrompt(messages, resolved.instructions)
    const runId = options.runId ?? randomUUID()
    const runOptions = runOptionsOf(options)
    await this.#pubsub.bridge.callNowOrLater<RunSummary>((id) => this.#native.create(id, runId, JSON.stringify(prompt), maxSteps, JSON.stringify(runOptions)))
    // Driven (so abortable) before the output reads: in memory the output
    // hands out the first parts, and calls onChunk, synchronously.
    this.#drive(runId, options.abortSignal)
    const output = this.#output(runId, 0, options, () => true)
    return this.#result(runId, output, runOptions)
  }

  /** Runs to the end (or to a suspension) and resolves with everything. A failed run rejects with its error. */
  async generate(messages: MessageInput, options: StreamOptions<ChunkOf<F>> = {}): Promise<FullOutput> {
    const { output } = await this.stream(messages, options)
    const full = await output.getFullOutput()
    if (full.outcome === 'failed' && full.error) throw failedRun(full.runId, full.error)
    return full
  }

  /**
   * Continues a suspended run with an approval decision, in this process or
   * any other sharing the cache. The result streams the continuation.
   */
  async resume(runId: string, resumeData: ResumeData, options: ResumeOptions<ChunkOf<F>> = {}): Promise<DurableAgentStreamResult<ChunkOf<F>>> {
    checkKey(runId, 'runId')
    if (!resumeData || typeof resumeData !== 'object' || typeof resumeData.approved !== 'boolean') {
      throw coded(new TypeError('resumeData must be { approved: boolean, toolCallId?, reason? }'), ErrorCodes.INVALID_ARG)
    }
    await this.#resolve()
    const summary = await this.#pubsub.bridge.callNowOrLater<RunSummary>((id) =>
      this.#native.resume(id, runId, resumeData.toolCallId, resumeData.approved, resumeData.reason),
    )
    if (summary.status !== 'running') {
      // Other calls still wait for a decision: nothing runs yet.
      const output = new DurableOutput(undefined, { ...options, runId, toChunk: this.#toChunk, endAtSuspension: () => true }, 'suspended')
      return this.#result(runId, output, summary.options)
    }
    this.#drive(runId, undefined)
    const output = this.#output(runId, summary.nextEvent, options, () => true)
    return this.#result(runId, output, summary.options)
  }

  /** Approves a waiting tool call (all of them without `toolCallId`); the output streams the continuation. */
  async approveToolCall(options: { runId: string; toolCallId?: string } & ResumeOptions<ChunkOf<F>>): Promise<DurableOutput<ChunkOf<F>>> {
    const { runId, toolCallId, ...callbacks } = options
    return (await this.resume(runId, { approved: true, toolCallId }, callbacks)).output
  }

  /** Declines a waiting tool call; the model sees the refusal (and `reason`). */
  async declineToolCall(options: { runId: string; toolCallId?: string; reason?: string } & ResumeOptions<ChunkOf<F>>): Promise<DurableOutput<ChunkOf<F>>> {
    const { runId, toolCallId, reason, ...callbacks } = options
    return (await this.resume(runId, { approved: false, toolCallId, reason }, callbacks)).output
  }

  /**
   * Reads a run from `offset` (default 0: all of it), as it was and as it goes
   * on, in this process or any other sharing the cache. Ends where the run
   * ends, or where it waits for approval.
   */
  async observe(runId: string, options: ObserveOptions<ChunkOf<F>> = {}): Promise<DurableAgentStreamResult<ChunkOf<F>>> {
    checkKey(runId, 'runId')
    const offset = options.offset ?? 0
    if (!Number.isInteger(offset) || offset < 0) {
      throw coded(new RangeError(`offset must be an integer >= 0, got ${offset}`), ErrorCodes.INVALID_ARG)
    }
    const summary = await this.#inspect(runId)
    if (summary.status !== 'running' && offset >= summary.nextEvent) {
      // Past the last event of a run that has stopped: nothing will come.
      const output = new DurableOutput(undefined, { ...pickCallbacks(options), runId, toChunk: this.#toChunk, endAtSuspension: () => true }, summary.status)
      return this.#result(runId, output, summary.options)
    }
    const output = this.#output(runId, offset, options, async () => (await this.#inspect(runId)).status === 'suspended')
    return this.#result(runId, output, summary.options)
  }

  /**
   * Stops a run: in flight model and tool calls get an aborted signal; the
   * stream ends with `abort`. Works from any process sharing the cache (the
   * driving process sees the request within a quarter of a second); a run that
   * already ended is left as it is.
   */
  async abort(runId: string, reason?: string): Promise<void> {
    checkKey(runId, 'runId')
    const aborted = this.#pubsub.bridge.callNowOrLater<RunSummary | null>((id) => this.#native.abort(id, runId, reason))
    // Model and tool calls in flight here see the abort through their signal.
    this.#controllers.get(runId)?.abort(reason)
    await aborted
  }

  /** Deletes a run's state and events now; this process's outputs still reading it end with `ERR_RUN_NOT_FOUND`. */
  async cleanup(runId: string): Promise<void> {
    checkKey(runId, 'runId')
    await this.#pubsub.bridge.callNowOrLater((id) => this.#native.cleanup(id, runId))
    for (const output of this.#outputs.get(runId) ?? []) {
      output.fail(coded(new Error(`run \`${runId}\` was cleaned up while this output read it`), ErrorCodes.RUN_NOT_FOUND))
    }
  }

  /**
   * Finishes a run whose process died, from its last checkpoint: steps
   * whose results were checkpointed are not run again; a model step that was
   * cut off runs again (its partial parts stay in the log, the retry starts
   * with a new `start-step`). The result streams from the checkpoint on. A
   * run that is not running (finished, suspended, ...) is only observed from
   * there. Rejects with `ERR_RUN_ACTIVE` while a process holds the run's lease.
   */
  async recover(runId: string, options: ResumeOptions<ChunkOf<F>> = {}): Promise<DurableAgentStreamResult<ChunkOf<F>>> {
    checkKey(runId, 'runId')
    await this.#resolve()
    // The core decides: a run that is not running is only observed; one a
    // process drives is ERR_RUN_ACTIVE; otherwise its lease is ours now.
    const summary = await this.#pubsub.bridge.callNowOrLater<RunSummary>((id) => this.#native.recover(id, runId))
    if (summary.status !== 'running') return this.observe(runId, { ...pickCallbacks(options), offset: summary.nextEvent })
    this.#drive(runId, undefined)
    const output = this.#output(runId, summary.nextEvent, options, () => true)
    return this.#result(runId, output, summary.options)
  }

  /** This agent's running runs in the store, and whether a process drives each (`driven: false`: recover it). */
  async listActiveRuns(): Promise<{ runs: DurableAgentActiveRun[]; total: number }> {
    const summaries = await this.#pubsub.bridge.callNowOrLater<RunSummary[]>((id) => this.#native.runningRuns(id))
    const runs = summaries.map((s) => ({
      runId: s.runId,
      status: 'running' as const,
      ...(s.options.threadId !== undefined ? { threadId: s.options.threadId } : {}),
      ...(s.options.resourceId !== undefined ? { resourceId: s.options.resourceId } : {}),
      updatedAt: new Date(s.updatedAt),
      driven: s.leased === true,
      ...(s.leaseOwner !== undefined ? { drivenBy: s.leaseOwner } : {}),
    }))
    return { runs, total: runs.length }
  }

  /** Recovers every running run of this agent that no process drives, and waits for each to end or suspend. */
  async recoverActiveRuns(): Promise<DurableAgentRecoverActiveRunsResult> {
    const { runs } = await this.listActiveRuns()
    const recovered = await Promise.all(
      runs
        .filter((run) => !run.driven)
        .map(async ({ runId }) => {
          try {
            const full = await (await this.recover(runId)).output.getFullOutput()
            if (full.outcome === 'failed') return { runId, status: 'failed' as const, error: full.error ?? new Error('the run failed') }
            return { runId, status: 'success' as const }
          } catch (error) {
            return { runId, status: 'failed' as const, error: error as Error }
          }
        }),
    )
    const succeeded = recovered.filter((r) => r.status === 'success').length
    return { recovered, succeeded, failed: recovered.length - succeeded }
  }

  /** Runs this process is driving now. */
  get activeRuns(): number {
    return this.#native.activeRuns
  }

  /**
   * A stored run as it stands: status, step, the index its next event gets,
   * the calls waiting for approval, who drives it. `ERR_RUN_NOT_FOUND` if
   * there is none.
   */
  async getRun(runId: string): Promise<DurableAgentRun> {
    const topic = runTopic(runId)
    const [summary, next] = await Promise.all([this.#inspect(runId), this.#pubsub.bridge.call<number>((id) => this.#pubsub.native.nextIndex(id, topic))])
    return {
      runId,
      status: summary.status,
      step: summary.step,
      // Read side by side: the checkpoint's count may be ahead of a topic read just before it.
      nextIndex: Math.max(next, summary.nextEvent),
      pendingApprovals: summary.pending
        .filter((call) => call.needsApproval && call.decision == null)
        .map(({ toolCallId, toolName, args }) => ({ toolCallId, toolName, args })),
      ...(summary.options.threadId !== undefined ? { threadId: summary.options.threadId } : {}),
      ...(summary.options.resourceId !== undefined ? { resourceId: summary.options.resourceId } : {}),
      createdAt: new Date(summary.createdAt),
      updatedAt: new Date(summary.updatedAt),
      driven: summary.leased === true,
      ...(summary.leaseOwner !== undefined ? { drivenBy: summary.leaseOwner } : {}),
      drivenHere: this.#controllers.has(runId),
    }
  }

  /** `stream(…, { runId, resumeFromEventId })`: the run from the event after the client's last one. */
  async #continueView(options: StreamOptions<ChunkOf<F>>): Promise<DurableAgentStreamResult<ChunkOf<F>>> {
    const index = parseEventIndex(options.resumeFromEventId, 'resumeFromEventId')
    if (typeof options.runId !== 'string') {
      throw coded(new TypeError('resumeFromEventId needs the runId of the run to continue'), ErrorCodes.INVALID_ARG)
    }
    const run = await this.getRun(options.runId)
    if (index >= run.nextIndex) {
      throw coded(
        new Error(`run \`${options.runId}\`: event ${index} is past its last event (${run.nextIndex - 1}); read it again from an offset you trust`),
        ErrorCodes.TOPIC_REWRITTEN,
      )
    }
    return this.observe(options.runId, { ...pickCallbacks(options), offset: index + 1 })
  }

  #inspect(runId: string): Promise<RunSummary> {
    return this.#pubsub.bridge.callNowOrLater<RunSummary>((id) => this.#native.inspect(id, runId))
  }

  /**
   * What an idle output checks now and then (the core decides, see
   * `Agent::check_driven`): that the run still exists, and that some process
   * drives it; a run nobody drives for longer than a driver rides an outage
   * out (`outageMs`) and a lease more fails its readers with
   * `ERR_RUN_ABANDONED` rather than keep them waiting for ever.
   */
  #watch(runId: string): () => Promise<void> {
    let undrivenSince: number | null = null
    return async () => {
      undrivenSince = await this.#pubsub.bridge.callNowOrLater<number | null>((id) => this.#native.checkDriven(id, runId, undrivenSince))
    }
  }

  #resolve(): Promise<Resolved> {
    this.#resolved ??= (async () => {
      const agent = this.agent
      if (isMastraAgent(agent)) {
        const [model, tools, instructions] = await Promise.all([agent.getModel(), agent.listTools(), agent.getInstructions()])
        return {
          model: checkModel(model),
          tools: await resolveTools(tools as Record<string, unknown>),
          instructions: instructionsText(instructions),
        }
      }
      const definition = agent as AgentDefinition
      return {
        model: checkModel(definition.model),
        tools: await resolveTools(definition.tools as Record<string, unknown> | undefined),
        instructions: instructionsText(definition.instructions),
      }
    })()
    // A failed resolution (a bad schema) is retried by the next call, not cached.
    this.#resolved.catch(() => (this.#resolved = undefined))
    return this.#resolved
  }

  #output(runId: string, offset: number, callbacks: StreamCallbacks<ChunkOf<F>>, endAtSuspension: () => boolean | Promise<boolean>): DurableOutput<ChunkOf<F>> {
    const reader = this.#pubsub.reader(runTopic(runId), offset)
    const output = new DurableOutput(reader, {
      ...pickCallbacks(callbacks),
      runId,
      toChunk: this.#toChunk,
      endAtSuspension,
      // Deleted (cleaned up elsewhere, expired) or abandoned: end instead of waiting for ever.
      checkRun: this.#watch(runId),
    })
    let set = this.#outputs.get(runId)
    if (!set) this.#outputs.set(runId, (set = new Set()))
    set.add(output)
    void output.getFullOutput().then(() => {
      set.delete(output)
      if (set.size === 0 && this.#outputs.get(runId) === set) this.#outputs.delete(runId)
    })
    return output
  }

  #result(runId: string, output: DurableOutput<ChunkOf<F>>, options: RunSummary['options']): DurableAgentStreamResult<ChunkOf<F>> {
    return {
      runId,
      ...(options.threadId !== undefined ? { threadId: options.threadId } : {}),
      ...(options.resourceId !== undefined ? { resourceId: options.resourceId } : {}),
      output,
      get fullStream() {
        return output.fullStream
      },
      cleanup: () => this.cleanup(runId),
      abort: (reason?: string) => this.abort(runId, reason),
    }
  }

  /** Drives the run here until it ends or suspends; the pending call keeps Node alive meanwhile. */
  #drive(runId: string, signal: AbortSignal | undefined): void {
    const controller = new AbortController()
    this.#controllers.set(runId, controller)
    const onAbort = () =>
      this.abort(runId, signal?.reason === undefined ? undefined : String(signal.reason)).catch((error: Error) =>
        // The run ended meanwhile (nothing left to abort) or the store failed; either way the caller's stream tells.
        process.emitWarning(`durable-agent: aborting run ${runId} failed: ${error.message}`, 'DurableAgentAbortWarning'),
      )
    signal?.addEventListener('abort', onAbort, { once: true })
    const drive = this.#pubsub.bridge
      .call<RunSummary>((id) => this.#native.drive(id, runId))
      .then(
        (summary) => {
          // Aborted from elsewhere: calls still in flight here learn it now.
          if (summary.status === 'aborted' && !controller.signal.aborted) controller.abort(abortedElsewhere())
        },
        (error: Error) => {
          // The run could not be checkpointed (store down, or taken over): it
          // stays at its last checkpoint; readers here must not wait for ever.
          for (const output of this.#outputs.get(runId) ?? []) output.fail(error)
        },
      )
      .finally(() => {
        signal?.removeEventListener('abort', onAbort)
        if (this.#controllers.get(runId) === controller) this.#controllers.delete(runId)
        if (this.#drives.get(runId) === drive) this.#drives.delete(runId)
      })
    this.#drives.set(runId, drive)
    if (signal?.aborted) onAbort()
  }

  /**
   * Before the cache closes: stops driving every run driven here, without
   * ending it. Model and tool calls in flight see their signal abort; each
   * drive gives its lease up and ends with `ERR_CACHE_CLOSED`, which this
   * process's outputs of the run end with too.
   */
  async #releaseAll(): Promise<void> {
    for (const controller of this.#controllers.values()) controller.abort(cacheClosing())
    this.#native.releaseAll()
    await Promise.allSettled(this.#drives.values())
  }
}

/** What of the stream options is stored with the run (JSON) and handed back with every callback. */
function runOptionsOf<C>(options: StreamOptions<C>): RunOptions {
  const { threadId, resourceId, requireToolApproval, modelSettings, toolChoice, activeTools, toolCallConcurrency } = options
  if (toolChoice !== undefined && !['auto', 'none', 'required'].includes(toolChoice as string)) {
    const named = toolChoice as { type?: unknown; toolName?: unknown }
    if (typeof toolChoice !== 'object' || named.type !== 'tool' || typeof named.toolName !== 'string') {
      throw coded(new TypeError("toolChoice must be 'auto', 'none', 'required' or { type: 'tool', toolName }"), ErrorCodes.INVALID_OPTION)
    }
  }
  if (activeTools !== undefined && (!Array.isArray(activeTools) || activeTools.some((t) => typeof t !== 'string'))) {
    throw coded(new TypeError('activeTools must be an array of tool names'), ErrorCodes.INVALID_OPTION)
  }
  if (toolCallConcurrency !== undefined && (!Number.isInteger(toolCallConcurrency) || toolCallConcurrency < 1)) {
    throw coded(new RangeError(`toolCallConcurrency must be a positive integer, got ${toolCallConcurrency}`), ErrorCodes.INVALID_OPTION)
  }
  const stored: RunOptions = {
    ...(threadId !== undefined ? { threadId } : {}),
    ...(resourceId !== undefined ? { resourceId } : {}),
    ...(requireToolApproval ? { requireToolApproval: true } : {}),
    ...(modelSettings !== undefined ? { modelSettings } : {}),
    ...(toolChoice !== undefined ? { toolChoice } : {}),
    ...(activeTools !== undefined ? { activeTools } : {}),
    ...(toolCallConcurrency !== undefined ? { toolCallConcurrency } : {}),
  }
  try {
    JSON.stringify(stored)
  } catch (error) {
    throw coded(new TypeError(`stream options must be JSON (they are stored with the run): ${(error as Error).message}`), ErrorCodes.INVALID_OPTION)
  }
  return stored
}

/** `cleanupTimeoutMs` as the native agent takes it (whole ms; 0: keep). */
function keepEndedMs(cleanupTimeoutMs: number): number {
  return Math.min(Math.ceil(cleanupTimeoutMs), 2 ** 32 - 1)
}

function cacheClosing(): Error {
  const error = new Error("the run's cache is closing: this process stops driving it")
  error.name = 'AbortError'
  return error
}

function abortedElsewhere(): Error {
  const error = new Error('the run was aborted')
  error.name = 'AbortError'
  return error
}

function pickCallbacks<C>(options: StreamCallbacks<C>): StreamCallbacks<C> {
  const { onChunk, onStepFinish, onFinish, onError, onSuspended, onAbort } = options
  return { onChunk, onStepFinish, onFinish, onError, onSuspended, onAbort }
}

/**
 * The error `generate` rejects with for a failed run: the store's own (it has
 * a code), or the model's, which has none of ours: `ERR_MODEL_FAILED`, with
 * the model's error (its name and message, as stored) as `cause`.
 */
function failedRun(runId: string, error: Error): Error {
  if (hasCode(error)) return error
  return coded(new Error(`run \`${runId}\` failed: its model failed: ${error.name}: ${error.message}`, { cause: error }), ErrorCodes.MODEL_FAILED)
}

export function createDurableAgent<A extends AgentDefinition | MastraAgentLike, F extends StreamFormat = 'aisdk'>(
  options: CreateDurableAgentOptions<A, F>,
): DurableAgent<A, F> {
  const durable = new DurableAgent(options)
  return isMastraAgent(options.agent) ? withAgentFallback(durable, options.agent) : durable
}

/**
 * Over a Mastra `Agent`, the durable agent also answers for the agent (as
 * Mastra's own proxy-based durable agent does): what it does not have itself
 * (`getInstructions`, `listTools`, `__registerMastra`, ...) goes to the
 * wrapped agent, so `new Mastra({ agents: { support: durable } })` can
 * register it and `mastra.getAgent('support').stream(...)` runs durably.
 */
function withAgentFallback<A extends AgentDefinition | MastraAgentLike, F extends StreamFormat>(
  durable: DurableAgent<A, F>,
  agent: object,
): DurableAgent<A, F> {
  const from = (owner: object, prop: string | symbol): unknown => {
    const value: unknown = Reflect.get(owner, prop, owner)
    // Bound: methods reach their private fields through `this`.
    return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(owner) : value
  }
  return new Proxy(durable, {
    get: (target, prop) => from(prop in target ? target : agent, prop),
    has: (target, prop) => prop in target || prop in agent,
  })
}

/** Whether `value` is a durable agent of this package. */
export function isDurableAgent(value: unknown): value is DurableAgent<AgentDefinition | MastraAgentLike, StreamFormat> {
  return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true
}

export type { RunOutcome }
