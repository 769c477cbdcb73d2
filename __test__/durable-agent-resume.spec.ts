/**
 * Suspension and resumption of durable agent runs (tool approval), on the
 * in-memory cache and on Redis: a run that needs approval stops streaming at
 * its `tool-approval-request`, keeps its checkpoint, and goes on after
 * `approveToolCall` / `declineToolCall`, in this process or a fresh one. What
 * completed before the suspension (model steps, tool calls) never runs again,
 * and `observe` replays the whole run without calling anything.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'

import { Agent } from '@mastra/core/agent'
import { createMockModel } from '@mastra/core/test-utils/llm-mock'
import { createTool } from '@mastra/core/tools'
import { MockLanguageModelV3 } from 'ai/test'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { z } from 'zod'

import {
  createDurableAgent,
  ErrorCodes,
  InMemoryServerCache,
  RedisServerCache,
  type AgentDefinition,
  type DurableAgent,
  type DurableOutput,
  type LanguageModel,
  type PromptMessage,
  type StreamPart,
  type Tool,
  type ToolExecutionOptions,
  type ToolResultContent,
} from '../dist/index.js'
import { drain, eventually, REDIS_URL, uniquePrefix, within } from './helpers.js'

/** How long a stream may take to end before the test calls it a hang. */
const DEADLINE_MS = 10_000

// ---------------------------------------------------------------------------
// Mock models

/**
 * The AI SDK's MockLanguageModelV2 (ai v5's `ai/test`, vendored by
 * @mastra/core; `ai` here is v6, whose `ai/test` only has V3): `createMockModel`
 * builds one, and its constructor is the class.
 */
type MockV2 = Extract<ReturnType<typeof createMockModel>, { specificationVersion: 'v2' }>
const MockLanguageModelV2 = createMockModel({ mockText: '', version: 'v2' }).constructor as new (options: {
  doStream: (options: { prompt: PromptMessage[] }) => Promise<{ stream: ReadableStream<unknown> }>
}) => MockV2

type Version = 'v2' | 'v3'

interface StepScript {
  text?: string
  calls?: { toolCallId: string; toolName: string; input: Record<string, unknown> }[]
}

/** A model's stream parts for one step, in the given specification's shapes. */
function modelParts(version: Version, step: StepScript, n: number): unknown[] {
  const calls = step.calls ?? []
  const finishReason = calls.length > 0 ? 'tool-calls' : 'stop'
  const parts: unknown[] = [{ type: 'stream-start', warnings: [] }]
  if (step.text) {
    const id = `text-${n}`
    // Two deltas: the text arrives in pieces.
    const cut = Math.ceil(step.text.length / 2)
    parts.push(
      { type: 'text-start', id },
      { type: 'text-delta', id, delta: step.text.slice(0, cut) },
      { type: 'text-delta', id, delta: step.text.slice(cut) },
      { type: 'text-end', id },
    )
  }
  for (const call of calls) parts.push({ type: 'tool-call', toolCallId: call.toolCallId, toolName: call.toolName, input: JSON.stringify(call.input) })
  parts.push(
    version === 'v3'
      ? {
          type: 'finish',
          finishReason: { unified: finishReason, raw: finishReason },
          usage: {
            inputTokens: { total: 10, noCache: 10, cacheRead: undefined, cacheWrite: undefined },
            outputTokens: { total: 4, text: 4, reasoning: undefined },
          },
        }
      : { type: 'finish', finishReason, usage: { inputTokens: 10, outputTokens: 4, totalTokens: 14 } },
  )
  return parts
}

function readable(parts: unknown[]): ReadableStream<unknown> {
  return new ReadableStream({
    start(controller) {
      for (const part of parts) controller.enqueue(part)
      controller.close()
    },
  })
}

interface Scripted {
  model: LanguageModel
  /** The prompt of every call, as the model got it. */
  prompts: PromptMessage[][]
  /** The tools the model was offered, per call. */
  offered: unknown[]
  readonly calls: number
}

/** A mock model (AI SDK MockLanguageModelV2 or V3) whose every step `respond` scripts. */
function scriptedModel(version: Version, respond: (prompt: PromptMessage[], call: number) => StepScript): Scripted {
  const prompts: PromptMessage[][] = []
  const offered: unknown[] = []
  const doStream = async (options: { prompt: PromptMessage[]; tools?: unknown }) => {
    prompts.push(JSON.parse(JSON.stringify(options.prompt)) as PromptMessage[])
    offered.push(options.tools)
    return { stream: readable(modelParts(version, respond(options.prompt, prompts.length), prompts.length)) }
  }
  const model = version === 'v3' ? new MockLanguageModelV3({ doStream: doStream as never }) : new MockLanguageModelV2({ doStream })
  return {
    model,
    prompts,
    offered,
    get calls() {
      return prompts.length
    },
  }
}

/** The tool results a prompt hands the model. */
function toolResults(prompt: PromptMessage[] | undefined): ToolResultContent[] {
  return (prompt ?? []).flatMap((m) => (m.role === 'tool' ? m.content : []))
}

/** First step: `first` (text, tool calls); once the prompt has tool results: `final` text. */
function toolsThenText(first: StepScript, final: string | ((results: ToolResultContent[]) => string)) {
  return (prompt: PromptMessage[]): StepScript => {
    const results = toolResults(prompt)
    if (results.length === 0) return first
    return { text: typeof final === 'string' ? final : final(results) }
  }
}

// ---------------------------------------------------------------------------
// Tools that count their executions

interface Execution {
  input: Record<string, unknown>
  options: ToolExecutionOptions
}

function countingTool(output: (input: Record<string, unknown>) => unknown, extra: Pick<Tool, 'needsApproval'> = {}): { executions: Execution[]; tool: Tool } {
  const executions: Execution[] = []
  return {
    executions,
    tool: {
      description: 'test tool',
      inputSchema: { type: 'object', properties: { city: { type: 'string' }, orderId: { type: 'number' }, amount: { type: 'number' } } },
      execute: async (input: Record<string, unknown>, options: ToolExecutionOptions) => {
        executions.push({ input, options })
        return output(input)
      },
      ...extra,
    },
  }
}

// ---------------------------------------------------------------------------
// Streams and errors

/**
 * Two approvals of one suspended run at once: exactly one streams the
 * continuation (to `finish`), the other is refused (not suspended any more, or
 * a lost write race), and the tool and the model ran once each more
 * (`counts()`, read once every accepted continuation has ended).
 */
async function oneApprovalWins(approvals: Promise<DurableOutput>[], counts: () => { toolExecutions: number; modelCalls: number }): Promise<StreamPart[]> {
  const settled = await Promise.allSettled(approvals)
  const won = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []))
  const refused = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as { code?: string }] : []))
  // Let every accepted continuation end before judging (nothing may be left running).
  const streams = await Promise.all(won.map((output) => drain(output.fullStream, 'an accepted continuation')))
  expect({ accepted: won.length, refused: refused.length, ...counts() }).toEqual({ accepted: 1, refused: 1, toolExecutions: 1, modelCalls: 2 })
  expect([ErrorCodes.RUN_NOT_SUSPENDED, ErrorCodes.RUN_CONFLICT]).toContain(refused[0]!.code)
  expect(streams[0]!.at(-1)?.type).toBe('finish')
  return streams[0]!
}

const types = (parts: StreamPart[]) => parts.map((p) => p.type)
const indexOf = (parts: StreamPart[], type: string, from = 0) => parts.findIndex((p, i) => i >= from && p.type === type)
const ofType = <T extends StreamPart['type']>(parts: StreamPart[], type: T) => parts.filter((p): p is Extract<StreamPart, { type: T }> => p.type === type)

/** The JSON form of a value: what a store gives back. */
const asJson = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code })
}

// ---------------------------------------------------------------------------
// Backends

interface Backend {
  cache: InMemoryServerCache | RedisServerCache
  /** Another handle on the same store (on Redis: its own connection, same prefix). */
  twin(): InMemoryServerCache | RedisServerCache
  done(): Promise<void>
}

const backends: [string, () => Backend][] = [
  [
    'in-memory cache',
    () => {
      const cache = new InMemoryServerCache()
      return { cache, twin: () => cache, done: () => cache.clear() }
    },
  ],
  [
    'Redis',
    () => {
      const prefix = uniquePrefix('agent-resume')
      const cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: prefix })
      const twins: RedisServerCache[] = []
      return {
        cache,
        twin: () => {
          const twin = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: prefix })
          twins.push(twin)
          return twin
        },
        done: async () => {
          try {
            await cache.clear()
          } finally {
            await Promise.all([cache, ...twins].map((c) => c.close()))
          }
        },
      }
    },
  ],
]

const SUNNY = { text: 'Let me check the weather. ', calls: [{ toolCallId: 'call-1', toolName: 'weather', input: { city: 'Paris' } }] }

describe.each(backends)('durable agent approval and resume (%s)', (_name, make) => {
  let backend: Backend

  beforeEach(() => {
    backend = make()
  })
  afterEach(async () => {
    await backend.done()
  })

  /** A durable agent on this backend; runs are not cleaned up during a test. */
  function durable(agent: AgentDefinition, cache = backend.cache): DurableAgent<AgentDefinition> {
    return createDurableAgent({ agent, cache, cleanupTimeoutMs: 600_000 })
  }

  /**
   * The weather agent. `weather` needs approval (`needsApproval: true`) unless
   * `options.needsApproval` says otherwise; `undefined` there: the tool has no
   * `needsApproval` at all.
   */
  function weatherAgent(options: { version?: Version; needsApproval?: Tool['needsApproval']; id?: string } = {}) {
    const { version = 'v3', id = 'weather-agent' } = options
    const scripted = scriptedModel(
      version,
      toolsThenText(SUNNY, (results) => {
        const output = results[0]!.output
        return output.type === 'json' ? `It is ${(output.value as { sky: string }).sky} in Paris.` : 'I may not look at the weather.'
      }),
    )
    const approval = 'needsApproval' in options ? options.needsApproval : true
    const weather = countingTool((input) => ({ city: input.city, sky: 'sunny', tempC: 21 }), approval === undefined ? {} : { needsApproval: approval })
    const agent = durable({ id, instructions: 'You report the weather.', model: scripted.model, tools: { weather: weather.tool } })
    return { scripted, weather, agent }
  }

  /** Starts a run that suspends at the approval of `weather`, and checks that it did. */
  async function suspendedRun(agent: DurableAgent<AgentDefinition>, options: { requireToolApproval?: boolean } = {}) {
    const run = await agent.stream('What is the weather in Paris?', options)
    const parts = await drain(run.fullStream, 'the stream to end at the suspension')
    const full = await run.output.getFullOutput()
    expect(full.outcome).toBe('suspended')
    expect(parts.at(-1)?.type).toBe('tool-approval-request')
    return { run, parts, full }
  }

  describe('approve', () => {
    it.each<Version>(['v3', 'v2'])(
      'the stream ends at the tool-approval-request; approveToolCall streams the tool result, the final text and finish (Mock model %s)',
      async (version) => {
        const { scripted, weather, agent } = weatherAgent({ version })
        const run = await agent.stream('What is the weather in Paris?')
        // The live stream ends (does not hang) right after the approval request.
        const parts = await drain(run.fullStream, 'the live stream to end at the suspension')
        expect(types(parts)).toEqual(['start', 'start-step', 'text-start', 'text-delta', 'text-delta', 'text-end', 'tool-call', 'tool-approval-request'])
        expect(parts.at(-1)).toEqual({
          type: 'tool-approval-request',
          approvalId: 'call-1',
          toolCall: { type: 'tool-call', toolCallId: 'call-1', toolName: 'weather', input: { city: 'Paris' } },
        })
        expect(await within(run.output.text, DEADLINE_MS, 'text')).toBe('Let me check the weather. ')
        const full = await run.output.getFullOutput()
        expect(full.outcome).toBe('suspended')
        expect(full.suspended).toEqual({
          type: 'approval',
          toolCallId: 'call-1',
          toolName: 'weather',
          args: { city: 'Paris' },
          toolCalls: [{ toolCallId: 'call-1', toolName: 'weather', args: { city: 'Paris' } }],
        })
        expect(weather.executions).toHaveLength(0)
        expect(scripted.calls).toBe(1)

        const continuation = await agent.approveToolCall({ runId: run.runId })
        const more = await drain(continuation.fullStream, 'the continuation to finish')
        const result = indexOf(more, 'tool-result')
        const finalText = indexOf(more, 'text-delta', result)
        expect(result).toBeGreaterThanOrEqual(0)
        expect(more[result]).toMatchObject({
          type: 'tool-result',
          toolCallId: 'call-1',
          toolName: 'weather',
          output: { city: 'Paris', sky: 'sunny', tempC: 21 },
        })
        expect(finalText).toBeGreaterThan(result)
        expect(more.at(-1)?.type).toBe('finish')
        expect(indexOf(more, 'tool-approval-request')).toBe(-1)
        expect(await continuation.text).toBe('It is sunny in Paris.')
        expect((await continuation.getFullOutput()).outcome).toBe('finished')

        // The tool ran exactly once, with the call's identity; the model twice, the second time with the result.
        expect(weather.executions).toHaveLength(1)
        expect(weather.executions[0]!.input).toEqual({ city: 'Paris' })
        expect(weather.executions[0]!.options).toMatchObject({ toolCallId: 'call-1', runId: run.runId, idempotencyKey: `${run.runId}:0:call-1` })
        expect(scripted.calls).toBe(2)
        expect(toolResults(scripted.prompts[1])).toEqual([
          { type: 'tool-result', toolCallId: 'call-1', toolName: 'weather', output: { type: 'json', value: { city: 'Paris', sky: 'sunny', tempC: 21 } } },
        ])
      },
    )
  })

  describe('decline', () => {
    it.each<Version>(['v3', 'v2'])(
      'declineToolCall publishes tool-output-denied, never runs the tool, and the model sees the refusal (Mock model %s)',
      async (version) => {
        const { scripted, weather, agent } = weatherAgent({ version })
        const { run } = await suspendedRun(agent)

        const continuation = await agent.declineToolCall({ runId: run.runId, reason: 'no' })
        const more = await drain(continuation.fullStream, 'the continuation to finish')
        expect(ofType(more, 'tool-output-denied')).toEqual([{ type: 'tool-output-denied', toolCallId: 'call-1', toolName: 'weather', reason: 'no' }])
        expect(indexOf(more, 'tool-result')).toBe(-1)
        expect(more.at(-1)?.type).toBe('finish')
        expect(await continuation.text).toBe('I may not look at the weather.')
        expect(weather.executions).toHaveLength(0)

        expect(scripted.calls).toBe(2)
        const [denied, ...others] = toolResults(scripted.prompts[1])
        expect(others).toEqual([])
        expect(denied).toMatchObject({ type: 'tool-result', toolCallId: 'call-1', toolName: 'weather' })
        if (version === 'v3') {
          expect(denied!.output).toEqual({ type: 'execution-denied', reason: 'no' })
        } else {
          // v2 knows no execution-denied output: the refusal comes as error text naming the reason.
          expect(denied!.output.type).toBe('error-text')
          expect((denied!.output as { value: string }).value).toMatch(/\bno\b/)
        }
      },
    )

    it('decisions per toolCallId: the run stays suspended until every waiting call is decided, then runs the approved ones only', async () => {
      const scripted = scriptedModel(
        'v3',
        toolsThenText(
          {
            calls: [
              { toolCallId: 'call-a', toolName: 'weather', input: { city: 'Paris' } },
              { toolCallId: 'call-b', toolName: 'weather', input: { city: 'Oslo' } },
            ],
          },
          (results) => results.map((r) => `${r.toolCallId}:${r.output.type}`).join(' '),
        ),
      )
      const weather = countingTool((input) => ({ city: input.city }), { needsApproval: true })
      const agent = durable({ id: 'two-calls', model: scripted.model, tools: { weather: weather.tool } })
      const run = await agent.stream('Weather in Paris and Oslo?')
      const parts = await drain(run.fullStream, 'the stream to end at the suspension')
      expect(ofType(parts, 'tool-approval-request').map((p) => p.approvalId)).toEqual(['call-a', 'call-b'])
      expect((await run.output.getFullOutput()).suspended?.toolCalls.map((c) => c.toolCallId)).toEqual(['call-a', 'call-b'])

      // One decision of two: nothing runs yet, the output is over at once.
      const first = await agent.approveToolCall({ runId: run.runId, toolCallId: 'call-a' })
      const firstFull = await within(first.getFullOutput(), DEADLINE_MS, 'a partial decision to resolve')
      expect(firstFull.outcome).toBe('suspended')
      expect(weather.executions).toHaveLength(0)
      expect(scripted.calls).toBe(1)
      // A decided call is no longer waiting.
      await expectCode(agent.approveToolCall({ runId: run.runId, toolCallId: 'call-a' }), ErrorCodes.UNKNOWN_TOOL_CALL)

      const second = await agent.declineToolCall({ runId: run.runId, toolCallId: 'call-b', reason: 'too cold' })
      const more = await drain(second.fullStream, 'the continuation to finish')
      expect(ofType(more, 'tool-output-denied').map((p) => p.toolCallId)).toEqual(['call-b'])
      expect(ofType(more, 'tool-result').map((p) => p.toolCallId)).toEqual(['call-a'])
      expect(more.at(-1)?.type).toBe('finish')
      expect(weather.executions.map((e) => e.input)).toEqual([{ city: 'Paris' }])
      expect(scripted.calls).toBe(2)
      expect(
        toolResults(scripted.prompts[1])
          .map((r) => `${r.toolCallId}:${r.output.type}`)
          .sort(),
      ).toEqual(['call-a:json', 'call-b:execution-denied'])
    })
  })

  describe('when approval is needed', () => {
    it('requireToolApproval: true suspends a tool that has no needsApproval; without it the same tool runs at once', async () => {
      // Without the option: no suspension.
      const plain = weatherAgent({ needsApproval: undefined, id: 'plain-weather' })
      const direct = await plain.agent.stream('What is the weather in Paris?')
      const directParts = await drain(direct.fullStream, 'a run without approvals to finish')
      expect(indexOf(directParts, 'tool-approval-request')).toBe(-1)
      expect(directParts.at(-1)?.type).toBe('finish')
      expect(plain.weather.executions).toHaveLength(1)

      // With it: the same tool waits.
      const { scripted, weather, agent } = weatherAgent({ needsApproval: undefined, id: 'strict-weather' })
      const { run, full } = await suspendedRun(agent, { requireToolApproval: true })
      expect(full.suspended?.toolCallId).toBe('call-1')
      expect(weather.executions).toHaveLength(0)
      const more = await drain((await agent.resume(run.runId, { approved: true })).fullStream, 'the continuation to finish')
      expect(more.at(-1)?.type).toBe('finish')
      expect(weather.executions).toHaveLength(1)
      expect(scripted.calls).toBe(2)
    })

    it('a needsApproval function decides per input: in one step the small transfer runs, the big one waits', async () => {
      const scripted = scriptedModel(
        'v3',
        toolsThenText(
          {
            calls: [
              { toolCallId: 'call-small', toolName: 'transfer', input: { amount: 50 } },
              { toolCallId: 'call-big', toolName: 'transfer', input: { amount: 5000 } },
            ],
          },
          'Both transfers are done.',
        ),
      )
      const asked: { input: unknown; toolCallId: string }[] = []
      const transfer = countingTool((input) => ({ sent: input.amount }), {
        needsApproval: (input: { amount: number }, options) => {
          asked.push({ input, toolCallId: options.toolCallId })
          return input.amount > 100
        },
      })
      const agent = durable({ id: 'bank', model: scripted.model, tools: { transfer: transfer.tool } })
      const run = await agent.stream('Send 50 and 5000.')
      const parts = await drain(run.fullStream, 'the stream to end at the suspension')
      const full = await run.output.getFullOutput()
      expect(full.outcome).toBe('suspended')
      expect(asked).toEqual(
        expect.arrayContaining([
          { input: { amount: 50 }, toolCallId: 'call-small' },
          { input: { amount: 5000 }, toolCallId: 'call-big' },
        ]),
      )
      // Only the big one waits; the small one ran before the suspension.
      expect(ofType(parts, 'tool-approval-request').map((p) => p.approvalId)).toEqual(['call-big'])
      expect(full.suspended?.toolCalls.map((c) => c.toolCallId)).toEqual(['call-big'])
      expect(ofType(parts, 'tool-result').map((p) => p.toolCallId)).toEqual(['call-small'])
      expect(indexOf(parts, 'tool-result')).toBeLessThan(indexOf(parts, 'tool-approval-request'))
      expect(transfer.executions.map((e) => e.input)).toEqual([{ amount: 50 }])

      const more = await drain((await agent.approveToolCall({ runId: run.runId, toolCallId: 'call-big' })).fullStream, 'the continuation')
      expect(ofType(more, 'tool-result').map((p) => p.toolCallId)).toEqual(['call-big'])
      expect(more.at(-1)?.type).toBe('finish')
      expect(transfer.executions.map((e) => e.input)).toEqual([{ amount: 50 }, { amount: 5000 }])
    })
  })

  describe('errors', () => {
    it('resuming a finished run: ERR_RUN_NOT_SUSPENDED', async () => {
      const scripted = scriptedModel('v3', () => ({ text: 'Hello.' }))
      const agent = durable({ id: 'greeter', model: scripted.model })
      const run = await agent.stream('Hi')
      const parts = await drain(run.fullStream, 'the run to finish')
      expect(parts.at(-1)?.type).toBe('finish')
      await expectCode(agent.approveToolCall({ runId: run.runId }), ErrorCodes.RUN_NOT_SUSPENDED)
      await expectCode(agent.declineToolCall({ runId: run.runId, reason: 'no' }), ErrorCodes.RUN_NOT_SUSPENDED)
      expect(scripted.calls).toBe(1)
    })

    it('a toolCallId that is not waiting: ERR_UNKNOWN_TOOL_CALL, and the run still waits for the right one', async () => {
      const { weather, agent } = weatherAgent()
      const { run } = await suspendedRun(agent)
      await expectCode(agent.approveToolCall({ runId: run.runId, toolCallId: 'call-nope' }), ErrorCodes.UNKNOWN_TOOL_CALL)
      await expectCode(agent.declineToolCall({ runId: run.runId, toolCallId: 'call-nope' }), ErrorCodes.UNKNOWN_TOOL_CALL)
      expect(weather.executions).toHaveLength(0)
      const more = await drain((await agent.approveToolCall({ runId: run.runId, toolCallId: 'call-1' })).fullStream, 'the continuation')
      expect(more.at(-1)?.type).toBe('finish')
      expect(weather.executions).toHaveLength(1)
    })

    it('another agent (another id, same cache) resuming the run: ERR_RUN_OWNED_ELSEWHERE; the owner still can', async () => {
      const { weather, agent } = weatherAgent()
      const { run } = await suspendedRun(agent)
      const intruderModel = scriptedModel('v3', () => ({ text: 'intruder' }))
      const intruderTool = countingTool(() => 'intruder')
      const intruder = durable({ id: 'intruder', model: intruderModel.model, tools: { weather: intruderTool.tool } })
      await expectCode(intruder.approveToolCall({ runId: run.runId }), ErrorCodes.RUN_OWNED_ELSEWHERE)
      await expectCode(intruder.resume(run.runId, { approved: false }), ErrorCodes.RUN_OWNED_ELSEWHERE)
      await expectCode(intruder.observe(run.runId), ErrorCodes.RUN_OWNED_ELSEWHERE)
      expect(intruderModel.calls + intruderTool.executions.length + weather.executions.length).toBe(0)

      const more = await drain((await agent.approveToolCall({ runId: run.runId })).fullStream, 'the continuation')
      expect(more.at(-1)?.type).toBe('finish')
      expect(weather.executions).toHaveLength(1)
    })

    it('resuming (or observing) a run that does not exist: ERR_RUN_NOT_FOUND', async () => {
      const { agent } = weatherAgent()
      await expectCode(agent.approveToolCall({ runId: 'no-such-run' }), ErrorCodes.RUN_NOT_FOUND)
      await expectCode(agent.resume('no-such-run', { approved: false, reason: 'no' }), ErrorCodes.RUN_NOT_FOUND)
      await expectCode(agent.observe('no-such-run'), ErrorCodes.RUN_NOT_FOUND)
    })

    it('two concurrent approveToolCall: exactly one streams the continuation, the other is refused, the tool runs once', async () => {
      const { scripted, weather, agent } = weatherAgent()
      const { run } = await suspendedRun(agent)
      const stream = await oneApprovalWins([agent.approveToolCall({ runId: run.runId }), agent.approveToolCall({ runId: run.runId })], () => ({
        toolExecutions: weather.executions.length,
        modelCalls: scripted.calls,
      }))
      expect(ofType(stream, 'tool-result')).toHaveLength(1)
    })
    it('two agent instances with the same id (two handles on the store) approve at once: one continuation, the tool runs once', async () => {
      const { scripted, weather, agent } = weatherAgent()
      const { run } = await suspendedRun(agent)
      // The same agent definition (model, tools) behind a second DurableAgent, as another server would have.
      const other = durable({ id: 'weather-agent', model: scripted.model, tools: { weather: weather.tool } }, backend.twin())
      await oneApprovalWins([agent.approveToolCall({ runId: run.runId }), other.approveToolCall({ runId: run.runId })], () => ({
        toolExecutions: weather.executions.length,
        modelCalls: scripted.calls,
      }))
    })

    it('resuming a run while its model step is in progress: ERR_RUN_NOT_SUSPENDED, and the run finishes undisturbed', async () => {
      let release!: () => void
      const gate = new Promise<void>((resolve) => (release = resolve))
      let calls = 0
      const model = new MockLanguageModelV3({
        doStream: (async () => {
          calls++
          await gate
          return { stream: readable(modelParts('v3', { text: 'Done waiting.' }, calls)) }
        }) as never,
      })
      const agent = durable({ id: 'slow', model })
      const run = await agent.stream('Take your time.')
      await eventually(() => calls === 1, DEADLINE_MS, 'the model step to start')
      await expectCode(agent.approveToolCall({ runId: run.runId }), ErrorCodes.RUN_NOT_SUSPENDED)
      release()
      const parts = await drain(run.fullStream, 'the run to finish')
      expect(parts.at(-1)?.type).toBe('finish')
      expect(await run.output.text).toBe('Done waiting.')
      expect(calls).toBe(1)
    })

    it('aborting a suspended run ends it: observe ends at abort, approving is refused, the tool never runs', async () => {
      const { scripted, weather, agent } = weatherAgent()
      const { run } = await suspendedRun(agent)
      await run.abort('changed my mind')
      const replayed = await drain((await agent.observe(run.runId, { offset: 0 })).fullStream, 'the replay of the aborted run')
      expect(replayed.at(-1)).toEqual({ type: 'abort', reason: 'changed my mind' })
      await expectCode(agent.approveToolCall({ runId: run.runId }), ErrorCodes.RUN_NOT_SUSPENDED)
      expect(weather.executions).toHaveLength(0)
      expect(scripted.calls).toBe(1)
    })
  })

  describe('observe across a suspension', () => {
    it('observing a suspended run ends at the suspension; after approval, observe from 0 replays both parts of the run up to finish', async () => {
      const { scripted, weather, agent } = weatherAgent()
      const { run, parts: live } = await suspendedRun(agent)

      const waiting = await agent.observe(run.runId, { offset: 0 })
      const seen = await drain(waiting.fullStream, 'observing a suspended run to end at the suspension')
      expect(asJson(seen)).toEqual(asJson(live))
      const waitingFull = await waiting.output.getFullOutput()
      expect(waitingFull.outcome).toBe('suspended')
      expect(waitingFull.suspended?.toolCallId).toBe('call-1')

      const continuation = await agent.approveToolCall({ runId: run.runId })
      const more = await drain(continuation.fullStream, 'the continuation to finish')
      expect(more.at(-1)?.type).toBe('finish')

      const replay = await agent.observe(run.runId, { offset: 0 })
      const replayed = await drain(replay.fullStream, 'the replay to end at finish')
      // Exactly the live stream before the suspension, then the continuation.
      expect(asJson(replayed)).toEqual(asJson([...live, ...more]))
      expect(indexOf(replayed, 'tool-approval-request')).toBeGreaterThan(0)
      expect(replayed.at(-1)?.type).toBe('finish')
      const replayFull = await replay.output.getFullOutput()
      expect(replayFull.outcome).toBe('finished')
      expect(replayFull.text).toBe('Let me check the weather. It is sunny in Paris.')
      expect(weather.executions).toHaveLength(1)
      expect(scripted.calls).toBe(2)
    })
  })

  describe('checkpoints', () => {
    it('observing a finished run (from 0, from the middle, again) calls neither the model nor a tool', async () => {
      const { scripted, weather, agent } = weatherAgent({ needsApproval: false })
      const run = await agent.stream('What is the weather in Paris?')
      const live = await drain(run.fullStream, 'the run to finish')
      expect(live.at(-1)?.type).toBe('finish')
      const counts = () => ({ model: scripted.calls, tool: weather.executions.length })
      expect(counts()).toEqual({ model: 2, tool: 1 })

      const history = await agent.pubsub.getHistory(`agent.stream.${run.runId}`)
      const middle = Math.floor(history.length / 2)
      expect(middle).toBeGreaterThan(0)

      const whole = await drain((await agent.observe(run.runId, { offset: 0 })).fullStream, 'a replay from 0')
      expect(asJson(whole)).toEqual(asJson(live))
      const tail = await drain((await agent.observe(run.runId, { offset: middle })).fullStream, 'a replay from the middle')
      expect(asJson(tail)).toEqual(
        asJson(
          history
            .slice(middle)
            .filter((e) => e.type === 'chunk')
            .map((e) => e.data),
        ),
      )
      expect(tail.at(-1)?.type).toBe('finish')
      const again = await drain((await agent.observe(run.runId, { offset: 0 })).fullStream, 'a second replay from 0')
      expect(asJson(again)).toEqual(asJson(live))
      expect(counts()).toEqual({ model: 2, tool: 1 })
    })

    it('a tool call completed before the suspension (same step) is not executed again on approve, nor by observing', async () => {
      const scripted = scriptedModel(
        'v3',
        toolsThenText(
          {
            text: 'Looking up order 42. ',
            calls: [
              { toolCallId: 'call-lookup', toolName: 'lookup', input: { orderId: 42 } },
              { toolCallId: 'call-charge', toolName: 'charge', input: { orderId: 42, amount: 42.5 } },
            ],
          },
          'Order 42 is charged.',
        ),
      )
      const lookup = countingTool((input) => ({ orderId: input.orderId, total: 42.5 }))
      const charge = countingTool((input) => ({ receipt: `R-${input.orderId}` }), { needsApproval: true })
      const agent = durable({ id: 'orders', model: scripted.model, tools: { lookup: lookup.tool, charge: charge.tool } })
      const counts = () => ({ model: scripted.calls, lookup: lookup.executions.length, charge: charge.executions.length })

      const run = await agent.stream('Charge order 42.')
      const live = await drain(run.fullStream, 'the stream to end at the suspension')
      expect(ofType(live, 'tool-result').map((p) => p.toolCallId)).toEqual(['call-lookup'])
      expect(ofType(live, 'tool-approval-request').map((p) => p.approvalId)).toEqual(['call-charge'])
      expect(counts()).toEqual({ model: 1, lookup: 1, charge: 0 })

      // Observing the suspended run runs nothing either.
      await drain((await agent.observe(run.runId, { offset: 0 })).fullStream, 'observing the suspended run')
      expect(counts()).toEqual({ model: 1, lookup: 1, charge: 0 })

      const more = await drain((await agent.approveToolCall({ runId: run.runId })).fullStream, 'the continuation to finish')
      expect(ofType(more, 'tool-result').map((p) => p.toolCallId)).toEqual(['call-charge'])
      expect(more.at(-1)?.type).toBe('finish')
      expect(counts()).toEqual({ model: 2, lookup: 1, charge: 1 })
      // The model's next step has both results: the lookup from the checkpoint, the charge just run.
      expect(
        toolResults(scripted.prompts[1])
          .map((r) => [r.toolCallId, r.output])
          .sort(),
      ).toEqual([
        ['call-charge', { type: 'json', value: { receipt: 'R-42' } }],
        ['call-lookup', { type: 'json', value: { orderId: 42, total: 42.5 } }],
      ])

      const history = await agent.pubsub.getHistory(`agent.stream.${run.runId}`)
      for (const offset of [0, Math.floor(history.length / 2), 0]) {
        const replayed = await drain((await agent.observe(run.runId, { offset })).fullStream, `a replay from ${offset}`)
        expect(replayed.at(-1)?.type).toBe('finish')
      }
      expect(counts()).toEqual({ model: 2, lookup: 1, charge: 1 })
    })
  })

  describe('a @mastra/core Agent wrapped by createDurableAgent', () => {
    function mastraWeather(requireApproval: boolean) {
      const scripted = scriptedModel(
        'v3',
        toolsThenText({ calls: [{ toolCallId: 'call-m', toolName: 'weather', input: { city: 'Lyon' } }] }, (results) => {
          const output = results[0]!.output
          return output.type === 'json' ? `Lyon: ${(output.value as { tempC: number }).tempC} C.` : 'No weather.'
        }),
      )
      const inputs: unknown[] = []
      const weather = createTool({
        id: 'weather',
        description: 'The weather in a city',
        inputSchema: z.object({ city: z.string(), unit: z.enum(['C', 'F']).default('C') }),
        requireApproval,
        execute: async (input) => {
          inputs.push(input)
          return { city: input.city, unit: input.unit, tempC: 18 }
        },
      })
      const agent = new Agent({
        id: 'mastra-weather',
        name: 'Mastra weather',
        instructions: 'You are a weather bot.',
        model: scripted.model as never,
        tools: { weather },
      })
      const durableAgent = createDurableAgent({ agent, cache: backend.cache, cleanupTimeoutMs: 600_000 })
      return { scripted, inputs, durableAgent }
    }

    it('runs the createTool tool (zod input) and finishes with the text; instructions reach the model as a system message', async () => {
      const { scripted, inputs, durableAgent } = mastraWeather(false)
      const run = await durableAgent.stream('Weather in Lyon?')
      const parts = await drain(run.fullStream, 'the run to finish')
      expect(ofType(parts, 'tool-result')).toEqual([
        expect.objectContaining({ toolCallId: 'call-m', toolName: 'weather', output: { city: 'Lyon', unit: 'C', tempC: 18 } }),
      ])
      expect(parts.at(-1)?.type).toBe('finish')
      expect(await run.output.text).toBe('Lyon: 18 C.')
      // The zod schema applied: the default unit was filled in.
      expect(inputs).toEqual([{ city: 'Lyon', unit: 'C' }])
      expect(scripted.calls).toBe(2)
      for (const prompt of scripted.prompts) expect(prompt[0]).toEqual({ role: 'system', content: 'You are a weather bot.' })
      // The model was offered the tool with the JSON Schema of its zod input.
      expect(scripted.offered[0]).toEqual([
        expect.objectContaining({
          type: 'function',
          name: 'weather',
          inputSchema: expect.objectContaining({ properties: expect.objectContaining({ city: expect.anything() }) }),
        }),
      ])
    })

    it('a createTool with requireApproval: true suspends the run, and approval continues it', async () => {
      const { scripted, inputs, durableAgent } = mastraWeather(true)
      const run = await durableAgent.stream('Weather in Lyon?')
      const parts = await drain(run.fullStream, 'the stream to end at the suspension')
      expect(parts.at(-1)).toMatchObject({ type: 'tool-approval-request', toolCall: { toolCallId: 'call-m', toolName: 'weather' } })
      expect((await run.output.getFullOutput()).outcome).toBe('suspended')
      expect(inputs).toEqual([])

      const continuation = await durableAgent.approveToolCall({ runId: run.runId })
      const more = await drain(continuation.fullStream, 'the continuation to finish')
      expect(more.at(-1)?.type).toBe('finish')
      expect(await continuation.text).toBe('Lyon: 18 C.')
      expect(inputs).toEqual([{ city: 'Lyon', unit: 'C' }])
      expect(scripted.calls).toBe(2)
    })
  })
})

// ---------------------------------------------------------------------------
// Cold resume: another Node process

interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  events: { event: string; [key: string]: unknown }[]
  stderr: string
}

/** Runs a fixture to its end (within the deadline) and parses its JSON lines. */
function runFixture(script: string, args: string[]): Promise<ChildResult> {
  const child = spawn(process.execPath, [join(__dirname, 'fixtures', script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const closed = new Promise<ChildResult>((resolve) =>
    child.once('close', (code, signal) => {
      const events = stdout
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as ChildResult['events'][number])
      resolve({ code, signal, events, stderr })
    }),
  )
  return within(closed, 20_000, `${script} to end on its own`).catch((error: Error) => {
    child.kill('SIGKILL')
    throw new Error(`${error.message}; stderr: ${stderr}`)
  })
}

const eventsOf = (result: ChildResult, event: string) => result.events.filter((e) => e.event === event)
const partsOf = (result: ChildResult, event: string) => eventsOf(result, event).map((e) => e.part as StreamPart)

describe('cold resume from another Node process (Redis)', () => {
  let prefix: string
  let cache: RedisServerCache

  beforeEach(() => {
    prefix = uniquePrefix('agent-cold')
    cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: prefix })
  })
  afterEach(async () => {
    try {
      await cache.clear()
    } finally {
      await cache.close()
    }
  })

  it('process A suspends and exits; process B (fresh agent, same id) approves: the run finishes, nothing runs twice, observe shows all of it', async () => {
    const agentId = 'orders-agent'
    const a = await runFixture('agent-suspend.mjs', [REDIS_URL, prefix, agentId])
    expect({ code: a.code, signal: a.signal, stderr: a.stderr }).toEqual({ code: 0, signal: null, stderr: '' })
    const [suspended] = eventsOf(a, 'suspended') as unknown as { runId: string; outcome: string; text: string; suspended: { toolCallId: string } }[]
    expect(suspended).toMatchObject({ outcome: 'suspended', text: 'Looking up order 42. ', suspended: { toolCallId: 'call-charge' } })
    const runId = suspended!.runId
    const liveA = partsOf(a, 'part')
    expect(liveA.at(-1)).toMatchObject({ type: 'tool-approval-request', approvalId: 'call-charge' })
    // In A: one model step, the plain tool ran, the one needing approval did not.
    expect(eventsOf(a, 'model-call')).toHaveLength(1)
    expect(eventsOf(a, 'tool').map((e) => e.name)).toEqual(['lookup'])

    // With A gone, the run waits in Redis: a reader here (whose model and tools must not be called) sees it suspended.
    const idleModel = scriptedModel('v3', () => {
      throw new Error('the model must not be called by an observer')
    })
    const observer = createDurableAgent({ agent: { id: agentId, model: idleModel.model }, cache, cleanupTimeoutMs: 600_000 })
    const waiting = await observer.observe(runId, { offset: 0 })
    expect(asJson(await drain(waiting.fullStream, 'observing the suspended run'))).toEqual(asJson(liveA))
    expect((await waiting.output.getFullOutput()).outcome).toBe('suspended')
    expect(idleModel.calls).toBe(0)

    const b = await runFixture('agent-resume.mjs', [REDIS_URL, prefix, agentId, runId])
    expect({ code: b.code, signal: b.signal, stderr: b.stderr }).toEqual({ code: 0, signal: null, stderr: '' })
    // In B: exactly the approved tool, once, and one model step, whose prompt is A's checkpoint plus both results.
    const toolsB = eventsOf(b, 'tool')
    expect(toolsB.map((e) => e.name)).toEqual(['charge'])
    expect(toolsB[0]).toMatchObject({ toolCallId: 'call-charge', idempotencyKey: `${runId}:0:call-charge`, input: { orderId: 42, amount: 42.5 } })
    const callsB = eventsOf(b, 'model-call')
    expect(eventsOf(a, 'model-call').length + callsB.length).toBe(2)
    const promptB = callsB[0]!.prompt as PromptMessage[]
    expect(promptB.slice(0, 3)).toEqual([
      { role: 'system', content: 'You handle orders.' },
      { role: 'user', content: [{ type: 'text', text: 'Please charge order 42.' }] },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'Looking up order 42. ' },
          { type: 'tool-call', toolCallId: 'call-lookup', toolName: 'lookup', input: { orderId: 42 } },
          { type: 'tool-call', toolCallId: 'call-charge', toolName: 'charge', input: { orderId: 42, amount: 42.5 } },
        ],
      },
    ])
    const lookupResult = eventsOf(a, 'part')
      .map((e) => e.part as StreamPart)
      .find((p) => p.type === 'tool-result') as { output: unknown }
    const chargeResult = partsOf(b, 'part').find((p) => p.type === 'tool-result') as { output: { receipt: string } }
    expect(chargeResult.output.receipt).toMatch(/^R-42-\d+$/)
    expect(
      toolResults(promptB)
        .map((r) => [r.toolCallId, r.output])
        .sort(),
    ).toEqual([
      ['call-charge', { type: 'json', value: chargeResult.output }],
      ['call-lookup', { type: 'json', value: lookupResult.output }],
    ])

    const continuation = partsOf(b, 'part')
    expect(continuation.at(-1)?.type).toBe('finish')
    expect(eventsOf(b, 'finished')).toEqual([{ event: 'finished', outcome: 'finished', text: `Charged, receipt ${chargeResult.output.receipt}.` }])
    // Observe from 0 in B: A's part of the run, then B's, ending at finish.
    const observed = partsOf(b, 'observed')
    expect(observed).toEqual(asJson([...liveA, ...continuation]))
    expect(eventsOf(b, 'observed-end')).toEqual([{ event: 'observed-end', outcome: 'finished' }])
  })
})
