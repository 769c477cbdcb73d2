/**
 * The contracts between the core and the facade are written once, in
 * `crates/core/src/wire.rs`; the facade's types of them (`ts/wire.ts`) are
 * checked here against the core's field lists (handed to JS by
 * `wireConstants()`), and the core's own test checks those lists against
 * what serde writes. A member added on one side only fails here.
 */
import { describe, expect, it } from 'vitest'

import { CachingPubSub, createDurableAgent, InMemoryServerCache, runTopic } from '../dist/index.js'
import { wireConstants } from '../native.js'
import type { ModelRequest, RunSummary, ToolRequest } from '../ts/wire.js'
import { answeringModel } from './helpers.js'

const WIRE = wireConstants()

/** Each member of `T`, exactly: `satisfies` refuses a missing or an extra one. */
const summaryMembers = {
  runId: true,
  agentId: true,
  status: true,
  step: true,
  nextEvent: true,
  pending: true,
  usage: true,
  finishReason: true,
  options: true,
  createdAt: true,
  updatedAt: true,
  leased: true,
  leaseOwner: true,
} satisfies Record<keyof RunSummary, true>

const modelRequestMembers = { runId: true, step: true, messages: true, options: true } satisfies Record<keyof ModelRequest, true>

const toolRequestMembers = {
  runId: true,
  step: true,
  toolCallId: true,
  toolName: true,
  input: true,
  idempotencyKey: true,
  messages: true,
  options: true,
} satisfies Record<keyof ToolRequest, true>

const sorted = (names: string[]) => [...names].sort()

describe('the wire between the core and the facade', () => {
  it("the facade's RunSummary, ModelRequest and ToolRequest have exactly the core's members", () => {
    expect(sorted(Object.keys(summaryMembers))).toEqual(sorted(WIRE.runSummaryFields))
    expect(sorted(Object.keys(modelRequestMembers))).toEqual(sorted(WIRE.modelRequestFields))
    expect(sorted(Object.keys(toolRequestMembers))).toEqual(sorted(WIRE.toolRequestFields))
  })

  it("a run's topic is named by the core", () => {
    expect(WIRE.runTopicPrefix).toBe('agent.stream.')
    expect(runTopic('r-1')).toBe(`${WIRE.runTopicPrefix}r-1`)
  })

  it('an event published from JS and one a run wrote in Rust have the same members, in the same order', async () => {
    const cache = new InMemoryServerCache({ maxSize: 1_000 })
    const pubsub = new CachingPubSub(null, cache)
    await pubsub.publish('wire-topic', { type: 'note', runId: 'r', data: { n: 1 } })
    const [published] = await pubsub.getHistory('wire-topic')

    const model = answeringModel()
    const agent = createDurableAgent({ agent: { id: 'wire', model }, pubsub, cleanupTimeoutMs: 0 })
    const { runId, output } = await agent.stream('Hi')
    await output.getFullOutput()
    const [written] = await pubsub.getHistory(runTopic(runId))

    const members = (event: object) => Object.keys(event).filter((key) => key !== 'index')
    expect(members(published!)).toEqual(WIRE.eventFields)
    expect(members(written!)).toEqual(WIRE.eventFields)
    expect(published!.createdAt).toBeInstanceOf(Date)
    expect(written!.createdAt).toBeInstanceOf(Date)
  })

  it('the store-away codes and the retry policy come from the core', () => {
    expect(sorted(WIRE.transientCodes)).toEqual(['ERR_REDIS_TIMEOUT', 'ERR_REDIS_UNAVAILABLE'])
    expect(WIRE.retryFirstDelayMs).toBeGreaterThan(0)
    expect(WIRE.retryMaxDelayMs).toBeGreaterThanOrEqual(WIRE.retryFirstDelayMs)
  })
})
