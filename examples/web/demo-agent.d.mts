// Types of demo-agent.mjs, for the specs that drive the demo agent.
import type { CachingPubSub, DurableAgent, InMemoryServerCache, LanguageModel, RedisServerCache } from '../../dist/index.js'

export function answerWords(question: string): string[]
export function afterToolWords(result: { type: string; value?: unknown; reason?: string }): string[]
export function expectedText(question: string): string
export function scriptedModel(options?: { pace?: (signal?: AbortSignal) => Promise<void> }): LanguageModel
export function createDemoAgent(options?: {
  cache?: InMemoryServerCache | RedisServerCache
  pubsub?: CachingPubSub
  pace?: (signal?: AbortSignal) => Promise<void>
  id?: string
  cleanupTimeoutMs?: number
}): DurableAgent
