/**
 * The contracts shared with the Rust core, read from it once
 * (`crates/core/src/wire.rs`, through `wireConstants()`): the run topic's
 * name, which errors mean "the store is briefly away" and how long to wait
 * before trying again, and the types of what the core hands JS (run
 * summaries, callback requests). `__test__/wire.spec.ts` checks these types
 * against the core's field lists, so the two sides cannot drift apart.
 */
import { wireConstants } from '../native.js'
import type { ModelSettings, PromptMessage, ToolChoice } from './agent/types.js'

export const WIRE = wireConstants()

/** The topic a run's events go to: `agent.stream.<runId>` (Mastra's `AGENT_STREAM_TOPIC`). */
export function runTopic(runId: string): string {
  return WIRE.runTopicPrefix + runId
}

/** The event types of a run's topic: a stream part (`data`), and where the run waits for approval. */
export const RUN_PART_EVENT = WIRE.runPartEvent
export const SUSPENDED_EVENT = WIRE.suspendedEvent

const TRANSIENT = new Set(WIRE.transientCodes)

/** Whether `error` means the store is briefly away (a stall, restart, failover or reconnect): try again. */
export function isTransient(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && TRANSIENT.has(code)
}

/** The wait before retry `attempt` (0-based): the core's policy, doubling up to its ceiling. */
export function retryDelay(attempt: number): number {
  return Math.min(WIRE.retryFirstDelayMs * 2 ** Math.min(attempt, 16), WIRE.retryMaxDelayMs)
}

/** Waits out retry `attempt`'s delay. */
export function retryPause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, retryDelay(attempt)))
}

/** A run's options as stored with it (JSON), handed back with every callback. */
export interface RunOptions {
  threadId?: string
  resourceId?: string
  requireToolApproval?: boolean
  modelSettings?: ModelSettings
  toolChoice?: ToolChoice
  activeTools?: string[]
  toolCallConcurrency?: number
}

/** A run as the core reports it: everything but the prompt (`wire::RunSummary`). */
export interface RunSummary {
  runId: string
  agentId: string
  status: 'running' | 'suspended' | 'finished' | 'failed' | 'aborted'
  step: number
  /** The index the run's next event gets. */
  nextEvent: number
  /** Tool calls of the current step without a result. */
  pending: { toolCallId: string; toolName: string; args: unknown; needsApproval: boolean; decision?: unknown }[]
  usage: { inputTokens?: number; outputTokens?: number; totalTokens?: number; reasoningTokens?: number; cachedInputTokens?: number }
  finishReason: string | null
  options: RunOptions
  createdAt: string
  updatedAt: string
  /** Whether a process holds the run's lease (drives it now), when looked up (`inspect`, `runningRuns`, `recover`). */
  leased?: boolean
  /** Who holds it then: the driver's lease id (`<pid>:<...>`, opaque beyond the pid of its process). */
  leaseOwner?: string
}

/** What a model step's callback gets (`wire::ModelRequest`). */
export interface ModelRequest {
  runId: string
  step: number
  messages: PromptMessage[]
  options: RunOptions
}

/** What a tool call's callback gets (`wire::ToolRequest`). */
export interface ToolRequest {
  runId: string
  step: number
  toolCallId: string
  toolName: string
  input: unknown
  /** The same for every attempt of the same call: `<runId>:<step>:<toolCallId>`. */
  idempotencyKey: string
  /** The conversation up to the call. */
  messages: PromptMessage[]
  options: RunOptions
}
