/**
 * `createDurableAgent` (this package's own durable agent): the loop in Rust,
 * the model and the tools in JS. Every behaviour is checked on both stores
 * (in memory, Redis) and, where the model matters, with language models of
 * both AI SDK specifications (v3 from `ai/test`, and v2).
 *
 * Nothing here sleeps to synchronise: tests wait on what they observe (a part,
 * a tool starting), with deadlines so that a missing behaviour fails a test
 * instead of hanging it.
 */
import { lazySchema } from '@ai-sdk/provider-utils'
import { jsonSchema, zodSchema, type JSONSchema7 } from 'ai'
import { MockLanguageModelV3 } from 'ai/test'
import { Redis as IORedis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'

import {
  createDurableAgent,
  ErrorCodes,
  InMemoryServerCache,
  isDurableAgent,
  RedisServerCache,
  type FullOutput,
  type LanguageModel,
  type LanguageModelCallOptions,
  type StepResult,
  type StreamPart,
  type ToolExecutionOptions,
  type ToolSet,
} from '../dist/index.js'
import { clusterKeys, drain, eventually, REDIS_URL, redisClusterNodes, TOPIC_PREFIX, uniquePrefix, within } from './helpers.js'

/** A plain connection for looking at what runs leave in Redis. */
const raw = new IORedis(REDIS_URL)
afterAll(() => raw.quit())

// ---------------------------------------------------------------------------
// Small tools
// ---------------------------------------------------------------------------

interface Deferred<T> {
  promise: Promise<T>
  resolve(value: T): void
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}

const collect = <T>(stream: ReadableStream<T>, what = 'the stream to end', ms = 10_000): Promise<T[]> => drain(stream, what, ms)

/** The error `work` throws or rejects with (fails when it succeeds). */
async function failure(work: () => unknown): Promise<Error & { code?: string }> {
  try {
    await work()
  } catch (error) {
    return error as Error & { code?: string }
  }
  throw new Error('expected an error, but the call succeeded')
}

type PartOf<T extends StreamPart['type']> = Extract<StreamPart, { type: T }>

function ofType<T extends StreamPart['type']>(parts: StreamPart[], type: T): PartOf<T>[] {
  return parts.filter((p): p is PartOf<T> => p.type === type)
}

const types = (parts: StreamPart[]) => parts.map((p) => p.type)

// ---------------------------------------------------------------------------
// Mock models of both specifications
// ---------------------------------------------------------------------------

/**
 * AI SDK 5's `MockLanguageModelV2` (`ai@5/test`), as it is written there: the
 * AI SDK installed here (6) only ships the v3 mock.
 */
class MockLanguageModelV2 {
  readonly specificationVersion = 'v2' as const
  readonly provider = 'mock-provider'
  readonly modelId = 'mock-model-id'
  readonly supportedUrls = {}
  readonly doStreamCalls: LanguageModelCallOptions[] = []
  readonly doStream: (options: LanguageModelCallOptions) => Promise<{ stream: ReadableStream<unknown> }>
  constructor({ doStream }: { doStream: (options: LanguageModelCallOptions) => Promise<{ stream: ReadableStream<unknown> }> }) {
    this.doStream = async (options) => {
      this.doStreamCalls.push(options)
      return doStream(options)
    }
  }
}

type MockModel = LanguageModel & { doStreamCalls: LanguageModelCallOptions[] }
/** What the model streams for its `call`-th `doStream` call (0-based). */
type Script = (call: number, options: LanguageModelCallOptions) => ReadableStream<unknown> | Promise<ReadableStream<unknown>>

interface ModelKit {
  version: 'v2' | 'v3'
  model(script: Script): MockModel
  /** The model's `finish` part in this specification. */
  finish(reason: 'stop' | 'tool-calls' | 'length', inputTokens: number, outputTokens: number): unknown
}

const kits: ModelKit[] = [
  {
    version: 'v3',
    model(script) {
      const model: MockLanguageModelV3 = new MockLanguageModelV3({
        doStream: async (options) => ({ stream: (await script(model.doStreamCalls.length - 1, options as LanguageModelCallOptions)) as ReadableStream<any> }),
      })
      return model as unknown as MockModel
    },
    finish: (reason, input, output) => ({
      type: 'finish',
      finishReason: { unified: reason, raw: reason },
      usage: {
        inputTokens: { total: input, noCache: input, cacheRead: undefined, cacheWrite: undefined },
        outputTokens: { total: output, text: output, reasoning: undefined },
      },
    }),
  },
  {
    version: 'v2',
    model(script) {
      const model: MockLanguageModelV2 = new MockLanguageModelV2({
        doStream: async (options) => ({ stream: await script(model.doStreamCalls.length - 1, options) }),
      })
      return model
    },
    finish: (reason, input, output) => ({
      type: 'finish',
      finishReason: reason,
      usage: { inputTokens: input, outputTokens: output, totalTokens: input + output },
    }),
  },
]

/** A stream of `parts` after `stream-start`, then closed. */
function streamOf(parts: unknown[]): ReadableStream<unknown> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue({ type: 'stream-start', warnings: [] })
      for (const part of parts) controller.enqueue(part)
      controller.close()
    },
  })
}

/** A stream the test feeds by hand. */
function controlledStream() {
  let controller!: ReadableStreamDefaultController<unknown>
  const stream = new ReadableStream<unknown>({ start: (c) => void (controller = c) })
  let open = true
  return {
    stream,
    push: (...parts: unknown[]) => parts.forEach((p) => controller.enqueue(p)),
    close: () => {
      if (open) controller.close()
      open = false
    },
    error: (reason: unknown) => {
      if (open) controller.error(reason)
      open = false
    },
  }
}

const textParts = (id: string, deltas: string[]) => [
  { type: 'text-start', id },
  ...deltas.map((delta) => ({ type: 'text-delta', id, delta })),
  { type: 'text-end', id },
]
/** Tool-call inputs are JSON text in both specifications. */
const toolCall = (toolCallId: string, toolName: string, input: unknown) => ({ type: 'tool-call', toolCallId, toolName, input: JSON.stringify(input) })
const usage = (input: number, output: number) => ({ inputTokens: input, outputTokens: output, totalTokens: input + output })

const INSTRUCTIONS = 'Be brief.'
const SYSTEM = { role: 'system', content: INSTRUCTIONS }
const userMessage = (text: string) => ({ role: 'user', content: [{ type: 'text', text }] })

// ---------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------

interface Store {
  cache: InMemoryServerCache | RedisServerCache
  /** Whatever of run `runId` is left in the store (state, events); empty when nothing. */
  residue(runId: string): Promise<unknown[]>
  /** Every key of the store (Redis only: the in-memory cache cannot list its keys). */
  allKeys?: () => Promise<string[]>
  close(): Promise<void>
}

const backends: { name: string; open(): Store }[] = [
  {
    name: 'in memory',
    open() {
      const cache = new InMemoryServerCache()
      return {
        cache,
        // The run's event log and, beside it, its state (see core::agent::run::RunStore).
        residue: async (runId) =>
          (await Promise.all([cache.get(`${TOPIC_PREFIX}agent.stream.${runId}`), cache.get(`{${TOPIC_PREFIX}agent.stream.${runId}}:run`)])).filter(
            (value) => value !== undefined,
          ),
        close: () => cache.clear(),
      }
    },
  },
  {
    name: 'Redis',
    open() {
      const prefix = uniquePrefix('durable-agent')
      const cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: prefix })
      return {
        cache,
        residue: (runId) => raw.keys(`${prefix}*agent.stream.${runId}*`),
        allKeys: () => raw.keys(`${prefix}*`),
        close: async () => {
          await cache.clear()
          await cache.close()
          expect(await raw.keys(`${prefix}*`)).toEqual([])
        },
      }
    },
  },
  {
    name: 'Redis Cluster',
    open() {
      const prefix = uniquePrefix('durable-agent')
      const nodes = redisClusterNodes()
      const cache = new RedisServerCache({ cluster: { nodes } }, { keyPrefix: prefix })
      // Keys spread over the primaries: look on each node.
      const keys = (pattern: string) => clusterKeys(nodes, pattern)
      return {
        cache,
        residue: (runId) => keys(`${prefix}*agent.stream.${runId}*`),
        allKeys: () => keys(`${prefix}*`),
        close: async () => {
          await cache.clear()
          await cache.close()
          expect(await keys(`${prefix}*`)).toEqual([])
        },
      }
    },
  },
]

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe.each(backends)('createDurableAgent, $name', (backend) => {
  let store: Store
  beforeAll(() => {
    store = backend.open()
  })
  afterAll(() => store.close())

  /** Model streams a test left open (a model that ignores its abort signal). */
  const openStreams: (() => void)[] = []
  afterEach(() => {
    for (const close of openStreams.splice(0)) close()
  })

  function agentOf(model: LanguageModel, options: { tools?: ToolSet; maxSteps?: number; cleanupTimeoutMs?: number } = {}) {
    const { tools, ...rest } = options
    return createDurableAgent({ agent: { id: 'test-agent', instructions: INSTRUCTIONS, model, ...(tools ? { tools } : {}) }, cache: store.cache, ...rest })
  }

  describe.each(kits)('with a $version model', (kit) => {
    // 1 ---------------------------------------------------------------------
    it('streams a plain text run: exact parts, text, usage, finish reason, text stream', async () => {
      const deltas = ['Hello', ', ', 'durable', ' world', '!']
      const model = kit.model(() =>
        streamOf([
          { type: 'response-metadata', id: 'resp-1', modelId: 'mock-model-id', timestamp: new Date(0) },
          ...textParts('text-1', deltas),
          kit.finish('stop', 10, 5),
        ]),
      )
      const agent = agentOf(model)
      expect(isDurableAgent(agent)).toBe(true)
      expect(isDurableAgent(agent.agent)).toBe(false)
      expect(isDurableAgent({ id: 'x', stream: () => undefined })).toBe(false)
      expect(isDurableAgent(null)).toBe(false)

      const result = await agent.stream('Say hello')
      expect(result.runId).toMatch(/^[0-9a-f-]{36}$/)
      const parts = await collect(result.fullStream)
      expect(parts).toStrictEqual([
        { type: 'start' },
        { type: 'start-step', request: {}, warnings: [] },
        { type: 'text-start', id: 'text-1' },
        ...deltas.map((text) => ({ type: 'text-delta', id: 'text-1', text })),
        { type: 'text-end', id: 'text-1' },
        {
          type: 'finish-step',
          response: { id: 'resp-1', modelId: 'mock-model-id', timestamp: '1970-01-01T00:00:00.000Z' },
          usage: usage(10, 5),
          finishReason: 'stop',
        },
        { type: 'finish', finishReason: 'stop', totalUsage: usage(10, 5) },
      ])
      expect(await result.output.text).toBe(deltas.join(''))
      expect(await result.output.usage).toEqual(usage(10, 5))
      expect(await result.output.finishReason).toBe('stop')
      expect(await collect(result.output.textStream)).toEqual(deltas)
      // Every access replays from the start.
      expect(await collect(result.output.fullStream)).toStrictEqual(parts)
      const full = await result.output.getFullOutput()
      expect(full).toMatchObject({ runId: result.runId, outcome: 'finished', text: deltas.join(''), toolCalls: [], toolResults: [] })
      expect(full.error).toBeUndefined()
      expect(full.steps).toHaveLength(1)
      expect(full.steps[0]).toMatchObject({ text: deltas.join(''), finishReason: 'stop', usage: usage(10, 5) })

      // What the model got: the instructions, the user message, no tools.
      expect(model.doStreamCalls).toHaveLength(1)
      expect(model.doStreamCalls[0]!.prompt).toEqual([SYSTEM, userMessage('Say hello')])
      expect(model.doStreamCalls[0]!.tools).toBeUndefined()

      // generate: the same, in one promise.
      const generated = await agent.generate([{ role: 'user', content: 'Again' }])
      expect(generated).toMatchObject({ outcome: 'finished', text: deltas.join(''), usage: usage(10, 5), finishReason: 'stop' })
      expect(model.doStreamCalls[1]!.prompt).toEqual([SYSTEM, userMessage('Again')])
    })

    // 2 ---------------------------------------------------------------------
    it('runs a multi-step run with two tools: results reach the model, execute gets its context', async () => {
      const calls: { tool: string; input: unknown; options: ToolExecutionOptions }[] = []
      const tools: ToolSet = {
        weather: {
          description: 'The weather in a city',
          inputSchema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
          execute: async (input: { city: string }, options) => {
            calls.push({ tool: 'weather', input, options })
            return { city: input.city, tempC: 21 }
          },
        },
        convert: {
          description: 'Celsius to Fahrenheit',
          inputSchema: { type: 'object', properties: { celsius: { type: 'number' } }, required: ['celsius'] },
          execute: async (input: { celsius: number }, options) => {
            calls.push({ tool: 'convert', input, options })
            return { fahrenheit: (input.celsius * 9) / 5 + 32 }
          },
        },
      }
      const answer = 'It is 69.8°F in Paris.'
      const model = kit.model((call) => {
        if (call === 0) return streamOf([toolCall('call-a', 'weather', { city: 'Paris' }), kit.finish('tool-calls', 10, 3)])
        if (call === 1) return streamOf([toolCall('call-b', 'convert', { celsius: 21 }), kit.finish('tool-calls', 20, 4)])
        return streamOf([...textParts('t', [answer]), kit.finish('stop', 30, 6)])
      })
      const agent = agentOf(model, { tools })
      const result = await agent.stream('Weather in Paris, in Fahrenheit?')
      const parts = await collect(result.fullStream)

      const callA = { type: 'tool-call', toolCallId: 'call-a', toolName: 'weather', input: { city: 'Paris' } }
      const callB = { type: 'tool-call', toolCallId: 'call-b', toolName: 'convert', input: { celsius: 21 } }
      const resultA = { type: 'tool-result', toolCallId: 'call-a', toolName: 'weather', input: { city: 'Paris' }, output: { city: 'Paris', tempC: 21 } }
      const resultB = { type: 'tool-result', toolCallId: 'call-b', toolName: 'convert', input: { celsius: 21 }, output: { fahrenheit: 69.8 } }
      expect(parts).toStrictEqual([
        { type: 'start' },
        { type: 'start-step', request: {}, warnings: [] },
        callA,
        resultA,
        { type: 'finish-step', response: {}, usage: usage(10, 3), finishReason: 'tool-calls' },
        { type: 'start-step', request: {}, warnings: [] },
        callB,
        resultB,
        { type: 'finish-step', response: {}, usage: usage(20, 4), finishReason: 'tool-calls' },
        { type: 'start-step', request: {}, warnings: [] },
        { type: 'text-start', id: 't' },
        { type: 'text-delta', id: 't', text: answer },
        { type: 'text-end', id: 't' },
        { type: 'finish-step', response: {}, usage: usage(30, 6), finishReason: 'stop' },
        { type: 'finish', finishReason: 'stop', totalUsage: usage(60, 13) },
      ])

      const full = await result.output.getFullOutput()
      expect(full.outcome).toBe('finished')
      expect(full.text).toBe(answer)
      expect(full.usage).toEqual(usage(60, 13))
      expect(full.steps).toHaveLength(3)
      expect(full.steps.map((s) => [s.toolCalls, s.toolResults, s.finishReason, s.usage])).toEqual([
        [[callA], [resultA], 'tool-calls', usage(10, 3)],
        [[callB], [resultB], 'tool-calls', usage(20, 4)],
        [[], [], 'stop', usage(30, 6)],
      ])
      // The last step's calls and results (it made none).
      expect(await result.output.toolCalls).toEqual([])
      expect(await result.output.toolResults).toEqual([])

      // The model saw both tools on every call, and each tool result in the next prompt.
      expect(model.doStreamCalls).toHaveLength(3)
      for (const options of model.doStreamCalls) {
        expect(options.tools).toEqual([
          { type: 'function', name: 'weather', description: 'The weather in a city', inputSchema: tools.weather!.inputSchema },
          { type: 'function', name: 'convert', description: 'Celsius to Fahrenheit', inputSchema: tools.convert!.inputSchema },
        ])
        expect(options.toolChoice).toEqual({ type: 'auto' })
      }
      const afterA = [
        SYSTEM,
        userMessage('Weather in Paris, in Fahrenheit?'),
        { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'call-a', toolName: 'weather', input: { city: 'Paris' } }] },
        {
          role: 'tool',
          content: [{ type: 'tool-result', toolCallId: 'call-a', toolName: 'weather', output: { type: 'json', value: { city: 'Paris', tempC: 21 } } }],
        },
      ]
      expect(model.doStreamCalls[0]!.prompt).toEqual(afterA.slice(0, 2))
      expect(model.doStreamCalls[1]!.prompt).toEqual(afterA)
      expect(model.doStreamCalls[2]!.prompt).toEqual([
        ...afterA,
        { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'call-b', toolName: 'convert', input: { celsius: 21 } }] },
        { role: 'tool', content: [{ type: 'tool-result', toolCallId: 'call-b', toolName: 'convert', output: { type: 'json', value: { fahrenheit: 69.8 } } }] },
      ])

      // Each tool ran once, with its input and its context.
      expect(calls.map((c) => [c.tool, c.input])).toEqual([
        ['weather', { city: 'Paris' }],
        ['convert', { celsius: 21 }],
      ])
      expect(calls[0]!.options).toMatchObject({ toolCallId: 'call-a', runId: result.runId, idempotencyKey: `${result.runId}:0:call-a` })
      expect(calls[1]!.options).toMatchObject({ toolCallId: 'call-b', runId: result.runId, idempotencyKey: `${result.runId}:1:call-b` })
      // Each call gets the conversation up to it (the AI SDK's `messages`).
      expect(calls[0]!.options.messages).toEqual(afterA.slice(0, 3))
      expect(calls[1]!.options.messages).toEqual([
        ...afterA,
        { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'call-b', toolName: 'convert', input: { celsius: 21 } }] },
      ])
      for (const { options } of calls) {
        expect(options.abortSignal).toBeInstanceOf(AbortSignal)
        expect(options.abortSignal.aborted).toBe(false)
      }
    })

    // 3 ---------------------------------------------------------------------
    it('runs the tool calls of one step concurrently', async () => {
      const started = { ping: deferred(), pong: deferred() }
      // Each tool waits for the other to have started: run one after the other,
      // the first one times out (a tool-error) instead of hanging the test.
      const tools: ToolSet = {
        ping: {
          inputSchema: { type: 'object', properties: {} },
          execute: async () => {
            started.ping.resolve()
            await within(started.pong.promise, 3_000, 'pong to start while ping runs')
            return 'ping done'
          },
        },
        pong: {
          inputSchema: { type: 'object', properties: {} },
          execute: async () => {
            started.pong.resolve()
            await within(started.ping.promise, 3_000, 'ping to start while pong runs')
            return 'pong done'
          },
        },
      }
      const model = kit.model((call) =>
        call === 0
          ? streamOf([toolCall('call-1', 'ping', {}), toolCall('call-2', 'pong', {}), kit.finish('tool-calls', 5, 2)])
          : streamOf([...textParts('t', ['both done']), kit.finish('stop', 9, 2)]),
      )
      const result = await agentOf(model, { tools }).stream('Ping and pong at once')
      const parts = await collect(result.fullStream)

      expect(ofType(parts, 'tool-error')).toEqual([])
      const byId = (a: { toolCallId: string }, b: { toolCallId: string }) => a.toolCallId.localeCompare(b.toolCallId)
      expect(ofType(parts, 'tool-result').sort(byId)).toEqual([
        { type: 'tool-result', toolCallId: 'call-1', toolName: 'ping', input: {}, output: 'ping done' },
        { type: 'tool-result', toolCallId: 'call-2', toolName: 'pong', input: {}, output: 'pong done' },
      ])
      // The step ends once both are done.
      expect(types(parts)).toEqual([
        'start',
        'start-step',
        'tool-call',
        'tool-call',
        'tool-result',
        'tool-result',
        'finish-step',
        'start-step',
        'text-start',
        'text-delta',
        'text-end',
        'finish-step',
        'finish',
      ])
      const toolMessage = model.doStreamCalls[1]!.prompt.at(-1) as { role: string; content: { toolCallId: string }[] }
      expect(toolMessage.role).toBe('tool')
      expect([...toolMessage.content].sort(byId)).toEqual([
        { type: 'tool-result', toolCallId: 'call-1', toolName: 'ping', output: { type: 'json', value: 'ping done' } },
        { type: 'tool-result', toolCallId: 'call-2', toolName: 'pong', output: { type: 'json', value: 'pong done' } },
      ])
      expect(await result.output.text).toBe('both done')
    })

    // 4 ---------------------------------------------------------------------
    /** One step calling `calls`, then a text answer. */
    async function runCalling(tools: ToolSet, calls: ReturnType<typeof toolCall>[]) {
      const model = kit.model((call) =>
        call === 0 ? streamOf([...calls, kit.finish('tool-calls', 4, 2)]) : streamOf([...textParts('t', ['recovered']), kit.finish('stop', 8, 1)]),
      )
      const result = await agentOf(model, { tools }).stream('Use the tool')
      const parts = await collect(result.fullStream)
      const full = await result.output.getFullOutput()
      // The run goes on after tool errors: the model answers and the run finishes.
      expect(full.outcome).toBe('finished')
      expect(full.text).toBe('recovered')
      expect(parts.at(-1)).toEqual({ type: 'finish', finishReason: 'stop', totalUsage: usage(12, 3) })
      expect(model.doStreamCalls).toHaveLength(2)
      const toolMessage = model.doStreamCalls[1]!.prompt.at(-1) as { role: string; content: { toolCallId: string }[] }
      expect(toolMessage.role).toBe('tool')
      return { parts, toolResults: [...toolMessage.content].sort((a, b) => a.toolCallId.localeCompare(b.toolCallId)) }
    }

    it('reports a tool that throws (or rejects) as a tool-error, and tells the model', async () => {
      const tools: ToolSet = {
        rejects: {
          inputSchema: { type: 'object', properties: { n: { type: 'number' } } },
          execute: async () => {
            throw new Error('kaboom')
          },
        },
        throws: {
          inputSchema: { type: 'object', properties: {} },
          execute: () => {
            throw new RangeError('sync kaboom')
          },
        },
      }
      const { parts, toolResults } = await runCalling(tools, [toolCall('call-1', 'rejects', { n: 1 }), toolCall('call-2', 'throws', {})])
      const errors = ofType(parts, 'tool-error').sort((a, b) => a.toolCallId.localeCompare(b.toolCallId))
      expect(errors).toHaveLength(2)
      expect(errors.map(({ error, ...rest }) => rest)).toEqual([
        { type: 'tool-error', toolCallId: 'call-1', toolName: 'rejects', input: { n: 1 } },
        { type: 'tool-error', toolCallId: 'call-2', toolName: 'throws', input: {} },
      ])
      expect(errors[0]!.error).toBeInstanceOf(Error)
      expect(errors[0]!.error.message).toBe('kaboom')
      expect(errors[1]!.error).toBeInstanceOf(Error)
      expect(errors[1]!.error.message).toBe('sync kaboom')
      expect(errors[1]!.error.name).toBe('RangeError')
      expect(ofType(parts, 'tool-result')).toEqual([])
      expect(toolResults).toEqual([
        { type: 'tool-result', toolCallId: 'call-1', toolName: 'rejects', output: { type: 'error-text', value: 'kaboom' } },
        { type: 'tool-result', toolCallId: 'call-2', toolName: 'throws', output: { type: 'error-text', value: 'sync kaboom' } },
      ])
    })

    it('reports a tool returning a BigInt (not JSON) as a tool-error', async () => {
      const tools: ToolSet = { big: { inputSchema: { type: 'object', properties: {} }, execute: async () => ({ n: 10n }) } }
      const { parts, toolResults } = await runCalling(tools, [toolCall('call-1', 'big', {})])
      const [error, ...more] = ofType(parts, 'tool-error')
      expect(more).toEqual([])
      expect(error).toMatchObject({ type: 'tool-error', toolCallId: 'call-1', toolName: 'big', input: {} })
      expect(error!.error).toBeInstanceOf(Error)
      expect(error!.error.message).toMatch(/^tool "big" returned a value that is not JSON: .*BigInt/)
      expect(ofType(parts, 'tool-result')).toEqual([])
      expect(toolResults).toEqual([{ type: 'tool-result', toolCallId: 'call-1', toolName: 'big', output: { type: 'error-text', value: error!.error.message } }])
    })

    it('reports a tool returning a function or a symbol (nothing JSON can hold) as a tool-error', async () => {
      const tools: ToolSet = {
        fn: { inputSchema: { type: 'object', properties: {} }, execute: async () => () => 1 },
        sym: { inputSchema: { type: 'object', properties: {} }, execute: async () => Symbol('s') },
      }
      const { parts } = await runCalling(tools, [toolCall('call-1', 'fn', {}), toolCall('call-2', 'sym', {})])
      const errors = ofType(parts, 'tool-error')
      // The two calls run concurrently: their results come in either order.
      expect(errors.map((e) => [e.toolName, e.error.message]).sort()).toEqual([
        ['fn', 'tool "fn" returned a value that is not JSON: got a function'],
        ['sym', 'tool "sym" returned a value that is not JSON: got a symbol'],
      ])
      expect(ofType(parts, 'tool-result')).toEqual([])
      expect(parts.at(-1)?.type).toBe('finish')
    })

    it("reports a call of an unknown tool as a tool-error (the AI SDK's NoSuchToolError)", async () => {
      const tools: ToolSet = { known: { inputSchema: { type: 'object', properties: {} }, execute: async () => 'ok' } }
      const { parts, toolResults } = await runCalling(tools, [toolCall('call-1', 'unknown', { q: 1 })])
      const [error, ...more] = ofType(parts, 'tool-error')
      expect(more).toEqual([])
      expect(error).toMatchObject({ type: 'tool-error', toolCallId: 'call-1', toolName: 'unknown', input: { q: 1 } })
      expect(error!.error).toBeInstanceOf(Error)
      expect(error!.error.name).toBe('AI_NoSuchToolError')
      expect(error!.error.message).toBe("Model tried to call unavailable tool 'unknown'. Available tools: known.")
      expect(toolResults).toEqual([
        { type: 'tool-result', toolCallId: 'call-1', toolName: 'unknown', output: { type: 'error-text', value: error!.error.message } },
      ])
    })

    // 5 ---------------------------------------------------------------------
    it('fails the run when the model stream errors mid-stream (stream, generate), and keeps working', async () => {
      const model = kit.model((call) =>
        call < 2
          ? streamOf([...textParts('t', ['partial']).slice(0, 2), { type: 'error', error: new Error('boom') }])
          : streamOf([...textParts('t', ['fine']), kit.finish('stop', 1, 1)]),
      )
      const agent = agentOf(model)
      const errors: Error[] = []
      const result = await agent.stream('Go', { onError: ({ error }) => void errors.push(error) })
      const parts = await collect(result.fullStream)
      expect(parts.slice(0, -1)).toStrictEqual([
        { type: 'start' },
        { type: 'start-step', request: {}, warnings: [] },
        { type: 'text-start', id: 't' },
        { type: 'text-delta', id: 't', text: 'partial' },
      ])
      const last = parts.at(-1) as PartOf<'error'>
      expect(last.type).toBe('error')
      expect(last.error).toBeInstanceOf(Error)
      expect(last.error.message).toBe('boom')
      const full = await result.output.getFullOutput()
      expect(full.outcome).toBe('failed')
      expect(full.error?.message).toBe('boom')
      expect(full.finishReason).toBe('error')
      expect(errors.map((e) => e.message)).toEqual(['boom'])

      // generate rejects with a coded error; the model's is its cause.
      const rejected = await failure(() => agent.generate('Go again'))
      expect(rejected.code).toBe(ErrorCodes.MODEL_FAILED)
      expect(rejected.message).toMatch(/^run `[0-9a-f-]{36}` failed: its model failed: Error: boom$/)
      expect(rejected.cause).toBeInstanceOf(Error)
      expect((rejected.cause as Error).message).toBe('boom')

      // The process and the agent live on: the next run works.
      const ok = await agent.generate('Once more')
      expect(ok).toMatchObject({ outcome: 'finished', text: 'fine' })
      expect(model.doStreamCalls).toHaveLength(3)
      await eventually(() => agent.activeRuns === 0, 5_000, 'no run to be driven any more')
    })

    it('fails the run when doStream rejects', async () => {
      let calls = 0
      const model = kit.model(() => {
        calls++
        throw new Error('model unreachable')
      })
      const agent = agentOf(model)
      const result = await agent.stream('Go')
      const parts = await collect(result.fullStream)
      expect(types(parts)).toEqual(['start', 'start-step', 'error'])
      const last = parts.at(-1) as PartOf<'error'>
      expect(last.error).toBeInstanceOf(Error)
      expect(last.error.message).toBe('model unreachable')
      const full = await result.output.getFullOutput()
      expect(full.outcome).toBe('failed')
      expect(full.error?.message).toBe('model unreachable')
      await expect(agent.generate('Go')).rejects.toMatchObject({ code: ErrorCodes.MODEL_FAILED, cause: { message: 'model unreachable' } })
      expect(calls).toBe(2)
    })

    it('fails the run when the model answers in a shape that is not a stream', async () => {
      for (const stream of [42, null, { getReader: 'no' }]) {
        const model = kit.model(() => stream as unknown as ReadableStream<unknown>)
        const result = await createDurableAgent({ agent: { id: 'bad-shape', model }, cache: store.cache }).stream('Go')
        const parts = await collect(result.fullStream)
        expect(types(parts), JSON.stringify(stream)).toEqual(['start', 'start-step', 'error'])
        // Rebuilt from the stored name and message.
        const { error } = parts.at(-1) as PartOf<'error'>
        expect(error).toBeInstanceOf(Error)
        expect(error.name).toBe('TypeError')
        expect(error.message).toMatch(/getReader/)
        expect((await result.output.getFullOutput()).outcome).toBe('failed')
      }
    })

    it('hands the model its settings, tool choice and active tools on every step', async () => {
      const tools: ToolSet = {
        a: { inputSchema: { type: 'object', properties: {} }, execute: async () => 'A' },
        b: { inputSchema: { type: 'object', properties: {} }, execute: async () => 'B' },
      }
      const model = kit.model((call) =>
        streamOf(
          call === 0
            ? [{ type: 'tool-call', toolCallId: 'c1', toolName: 'a', input: '{}' }, kit.finish('tool-calls', 1, 1)]
            : [...textParts('t', ['done']), kit.finish('stop', 1, 1)],
        ),
      )
      const agent = agentOf(model, { tools })
      const result = await agent.stream('Go', {
        modelSettings: { temperature: 0.2, maxOutputTokens: 50, stopSequences: ['END'], providerOptions: { mock: { flag: true } } },
        toolChoice: 'required',
        activeTools: ['a'],
      })
      expect((await result.output.getFullOutput()).text).toBe('done')
      expect(model.doStreamCalls).toHaveLength(2)
      for (const options of model.doStreamCalls) {
        expect(options).toMatchObject({ temperature: 0.2, maxOutputTokens: 50, stopSequences: ['END'], providerOptions: { mock: { flag: true } } })
        expect(options.toolChoice).toEqual({ type: 'required' })
        expect(options.tools?.map((t) => t.name)).toEqual(['a'])
      }
      const named = await agent.stream('Go', { toolChoice: { type: 'tool', toolName: 'b' } })
      await named.output.getFullOutput()
      expect(model.doStreamCalls[2]!.toolChoice).toEqual({ type: 'tool', toolName: 'b' })

      for (const bad of ['sometimes', { type: 'tool' }, 42]) {
        const error = await failure(() => agent.stream('Go', { toolChoice: bad as never }))
        expect(error.code, JSON.stringify(bad)).toBe(ErrorCodes.INVALID_OPTION)
      }
      expect((await failure(() => agent.stream('Go', { activeTools: 'a' as never }))).code).toBe(ErrorCodes.INVALID_OPTION)
      expect((await failure(() => agent.stream('Go', { toolCallConcurrency: 0 }))).code).toBe(ErrorCodes.INVALID_OPTION)
      expect((await failure(() => agent.stream('Go', { modelSettings: { seed: 1n as never } }))).code).toBe(ErrorCodes.INVALID_OPTION)
    })

    // 6 ---------------------------------------------------------------------
    it('stops at maxSteps when the model keeps calling tools', async () => {
      let executions = 0
      const tools: ToolSet = { tick: { inputSchema: { type: 'object', properties: {} }, execute: async () => ++executions } }
      const model = kit.model((call) => streamOf([toolCall(`call-${call}`, 'tick', {}), kit.finish('tool-calls', 2, 1)]))
      const agent = agentOf(model, { tools, maxSteps: 2 })
      const result = await agent.stream('Tick forever')
      const parts = await collect(result.fullStream)
      const full = await result.output.getFullOutput()
      expect(full.outcome).toBe('finished')
      expect(full.steps).toHaveLength(2)
      expect(ofType(parts, 'tool-result').map((p) => p.output)).toEqual([1, 2])
      expect(ofType(parts, 'start-step')).toHaveLength(2)
      expect(parts.at(-1)).toEqual({ type: 'finish', finishReason: 'tool-calls', totalUsage: usage(4, 2) })
      await eventually(() => agent.activeRuns === 0, 5_000, 'the run to be over')
      expect(model.doStreamCalls).toHaveLength(2)
      expect(executions).toBe(2)

      // The option of one stream overrides the agent's.
      const longer = await agent.stream('Tick forever', { maxSteps: 3 })
      expect((await longer.output.getFullOutput()).steps).toHaveLength(3)
      await eventually(() => agent.activeRuns === 0, 5_000, 'the run to be over')
      expect(model.doStreamCalls).toHaveLength(5)
    })

    // 7 ---------------------------------------------------------------------
    /** A model that streams one delta and then never closes; `respectSignal`: it errors once aborted. */
    function hangingModel(respectSignal: boolean) {
      const signals: AbortSignal[] = []
      const model = kit.model((_call, options) => {
        const s = controlledStream()
        openStreams.push(s.close)
        s.push({ type: 'stream-start', warnings: [] }, ...textParts('t', ['first']).slice(0, 2))
        if (options.abortSignal) signals.push(options.abortSignal)
        if (respectSignal) options.abortSignal?.addEventListener('abort', () => s.error(options.abortSignal!.reason))
        return s.stream
      })
      return { model, signals }
    }

    const ABORTED_PREFIX = [
      { type: 'start' },
      { type: 'start-step', request: {}, warnings: [] },
      { type: 'text-start', id: 't' },
      { type: 'text-delta', id: 't', text: 'first' },
    ]

    for (const respectSignal of [true, false]) {
      it(`abort() mid-stream ends the run with an abort part (model ${respectSignal ? 'respects' : 'ignores'} its signal)`, async () => {
        const { model, signals } = hangingModel(respectSignal)
        const agent = agentOf(model)
        const firstDelta = deferred()
        const result = await agent.stream('Talk forever', { onChunk: (part) => void (part.type === 'text-delta' && firstDelta.resolve()) })
        await within(firstDelta.promise, 5_000, 'the first delta')
        await result.abort('stop')
        const parts = await collect(result.fullStream, 'the aborted stream to end')
        expect(parts).toStrictEqual([...ABORTED_PREFIX, { type: 'abort', reason: 'stop' }])
        const full = await result.output.getFullOutput()
        expect(full.outcome).toBe('aborted')
        expect(full.text).toBe('first')
        expect(signals).toHaveLength(1)
        expect(signals[0]!.aborted).toBe(true)
        // The run is stored as aborted: a reader replays it to its abort.
        const replay = await agent.observe(result.runId)
        expect(await collect(replay.fullStream, 'the replay to end')).toStrictEqual(parts)
        expect((await replay.output.getFullOutput()).outcome).toBe('aborted')
        await eventually(() => agent.activeRuns === 0, 5_000, 'the run to be over')
        expect(model.doStreamCalls).toHaveLength(1)
      })
    }

    it('an abortSignal aborted mid-run ends the run with an abort part', async () => {
      const { model, signals } = hangingModel(true)
      const agent = agentOf(model)
      const controller = new AbortController()
      const firstDelta = deferred()
      const aborts: { reason?: string; steps: unknown[] }[] = []
      const result = await agent.stream('Talk forever', {
        abortSignal: controller.signal,
        onChunk: (part) => void (part.type === 'text-delta' && firstDelta.resolve()),
        onAbort: (event) => void aborts.push(event),
      })
      await within(firstDelta.promise, 5_000, 'the first delta')
      controller.abort('user-cancel')
      const parts = await collect(result.fullStream, 'the aborted stream to end')
      expect(parts).toStrictEqual([...ABORTED_PREFIX, { type: 'abort', reason: 'user-cancel' }])
      expect((await result.output.getFullOutput()).outcome).toBe('aborted')
      // onAbort once, with the reason (no step had finished).
      expect(aborts).toEqual([{ reason: 'user-cancel', steps: [] }])
      expect(signals[0]!.aborted).toBe(true)
    })

    it('an abort while a tool runs aborts the tool signal and ends the run', async () => {
      const toolStarted = deferred<AbortSignal>()
      const tools: ToolSet = {
        slow: {
          inputSchema: { type: 'object', properties: {} },
          execute: (_input, { abortSignal }) => {
            toolStarted.resolve(abortSignal)
            return new Promise((_, reject) => abortSignal.addEventListener('abort', () => reject(new Error('tool aborted'))))
          },
        },
      }
      const model = kit.model(() => streamOf([toolCall('call-1', 'slow', {}), kit.finish('tool-calls', 1, 1)]))
      const agent = agentOf(model, { tools })
      const result = await agent.stream('Be slow')
      const signal = await within(toolStarted.promise, 5_000, 'the tool to start')
      await result.abort('halt')
      const parts = await collect(result.fullStream, 'the aborted stream to end')
      expect(signal.aborted).toBe(true)
      expect(types(parts)).toEqual(['start', 'start-step', 'tool-call', 'abort'])
      expect(parts.at(-1)).toEqual({ type: 'abort', reason: 'halt' })
      expect((await result.output.getFullOutput()).outcome).toBe('aborted')
    })
  })

  // Abort races (the model does not matter: one that never finishes its stream).
  describe('aborting a run that has just started', () => {
    function neverEnding() {
      return kits[0]!.model((_call, options) => {
        const s = controlledStream()
        openStreams.push(s.close)
        s.push({ type: 'stream-start', warnings: [] })
        options.abortSignal?.addEventListener('abort', () => s.error(options.abortSignal!.reason))
        return s.stream
      })
    }

    it('abort() as soon as the run exists (before its driver picked it up) aborts the run', async () => {
      const agent = agentOf(neverEnding())
      // At the run's first part (in memory: before stream() even returns).
      const runId = `abort-at-start-${process.pid}-${Date.now()}`
      let aborting: Promise<void> | undefined
      const early = await agent.stream('Go', {
        runId,
        onChunk: (part) => {
          if (part.type === 'start') aborting = agent.abort(runId, 'at start')
        },
      })
      await within(
        eventually(() => aborting !== undefined),
        5_000,
        'the start part',
      )
      await aborting
      const earlyParts = await collect(early.fullStream, 'the aborted stream to end', 5_000)
      expect(earlyParts.at(-1)).toEqual({ type: 'abort', reason: 'at start' })
      expect((await early.output.getFullOutput()).outcome).toBe('aborted')

      // The driver may or may not have picked the run up by then: try it often
      // enough that both cases happen.
      for (let i = 0; i < 20; i++) {
        const result = await agent.stream('Go')
        await result.abort(`at once ${i}`)
        const parts = await collect(result.fullStream, 'the aborted stream to end', 5_000)
        expect(parts.at(-1)).toEqual({ type: 'abort', reason: `at once ${i}` })
        expect((await result.output.getFullOutput()).outcome).toBe('aborted')
      }
    })

    it('abort() by another agent instance (as from another process) stops a run driven elsewhere', async () => {
      let signal: AbortSignal | undefined
      const model = kits[0]!.model((_call, options) => {
        signal = options.abortSignal
        const s = controlledStream()
        openStreams.push(s.close)
        s.push({ type: 'stream-start', warnings: [] })
        s.push({ type: 'text-start', id: 't' })
        s.push({ type: 'text-delta', id: 't', delta: 'working' })
        return s.stream
      })
      const driver = agentOf(model)
      const other = agentOf(
        kits[0]!.model(() => {
          throw new Error('the other instance never calls its model')
        }),
      )
      const result = await driver.stream('Go')
      const seen: string[] = []
      const reading = collect(result.fullStream, 'the aborted stream to end', 5_000)
      const observer = await other.observe(result.runId, { onChunk: (part) => void seen.push(part.type) })
      await within(
        eventually(() => seen.includes('text-delta')),
        5_000,
        'the run to stream',
      )
      await other.abort(result.runId, 'from elsewhere')
      const parts = await reading
      expect(parts.at(-1)).toEqual({ type: 'abort', reason: 'from elsewhere' })
      expect((await result.output.getFullOutput()).outcome).toBe('aborted')
      expect((await within(observer.output.getFullOutput(), 5_000, 'the observer to end')).outcome).toBe('aborted')
      await within(
        eventually(() => signal?.aborted === true),
        5_000,
        "the driver's model signal to abort",
      )
      // Aborting a run that has ended changes nothing.
      await other.abort(result.runId, 'again')
      const replay = await collect((await other.observe(result.runId)).output.fullStream)
      expect(replay).toEqual(parts)
    })

    it('an abortSignal that is already aborted aborts the run', async () => {
      const agent = agentOf(neverEnding())
      const controller = new AbortController()
      controller.abort('before start')
      const result = await agent.stream('Go', { abortSignal: controller.signal })
      const parts = await collect(result.fullStream, 'the aborted stream to end', 5_000)
      expect(parts.at(-1)).toEqual({ type: 'abort', reason: 'before start' })
      expect((await result.output.getFullOutput()).outcome).toBe('aborted')
    })
  })

  describe.each(kits)('callbacks and observe, with a $version model', (kit) => {
    // 8 ---------------------------------------------------------------------
    it("gives onStepFinish the AI SDK StepResult's members: content in order, reasoning, static tool calls and results, warnings", async () => {
      const tools: ToolSet = { lookup: { inputSchema: { type: 'object', properties: {} }, execute: async () => 'found' } }
      const warning = { type: 'other', message: 'a test warning' }
      const model = kit.model((call) =>
        call === 0
          ? new ReadableStream({
              start(controller) {
                controller.enqueue({ type: 'stream-start', warnings: [warning] })
                for (const part of [
                  { type: 'reasoning-start', id: 'r' },
                  { type: 'reasoning-delta', id: 'r', delta: 'Think' },
                  { type: 'reasoning-delta', id: 'r', delta: 'ing' },
                  { type: 'reasoning-end', id: 'r' },
                  ...textParts('a', ['Look', 'ing']),
                  toolCall('call-1', 'lookup', {}),
                  kit.finish('tool-calls', 3, 2),
                ])
                  controller.enqueue(part)
                controller.close()
              },
            })
          : streamOf([...textParts('b', ['Done']), kit.finish('stop', 7, 4)]),
      )
      const steps: StepResult[] = []
      const result = await agentOf(model, { tools }).stream('Look it up', { onStepFinish: (step) => void steps.push(step) })
      await collect(result.fullStream)

      const call = { type: 'tool-call', toolCallId: 'call-1', toolName: 'lookup', input: {} }
      const toolResult = { type: 'tool-result', toolCallId: 'call-1', toolName: 'lookup', input: {}, output: 'found' }
      expect(steps).toHaveLength(2)
      expect(steps[0]).toMatchObject({
        content: [{ type: 'reasoning', text: 'Thinking' }, { type: 'text', text: 'Looking' }, call, toolResult],
        reasoning: [{ type: 'reasoning', text: 'Thinking' }],
        reasoningText: 'Thinking',
        text: 'Looking',
        staticToolCalls: [call],
        dynamicToolCalls: [],
        staticToolResults: [toolResult],
        dynamicToolResults: [],
        files: [],
        sources: [],
        warnings: [warning],
      })
      expect(steps[1]).toMatchObject({ content: [{ type: 'text', text: 'Done' }], reasoning: [], staticToolCalls: [], warnings: [] })
    })

    it('calls onChunk per part, onStepFinish once per step and onFinish once per run', async () => {
      const tools: ToolSet = { lookup: { inputSchema: { type: 'object', properties: {} }, execute: async () => 'found' } }
      const model = kit.model((call) =>
        call === 0
          ? streamOf([...textParts('a', ['Looking']), toolCall('call-1', 'lookup', {}), kit.finish('tool-calls', 3, 2)])
          : streamOf([...textParts('b', ['All ', 'done']), kit.finish('stop', 7, 4)]),
      )
      const log: string[] = []
      const chunks: StreamPart[] = []
      const steps: StepResult[] = []
      const finishes: FullOutput[] = []
      const result = await agentOf(model, { tools }).stream('Look it up', {
        onChunk: (part) => {
          chunks.push(part)
          log.push(`chunk:${part.type}`)
        },
        onStepFinish: (step) => {
          steps.push(step)
          log.push('step')
        },
        onFinish: (full) => {
          finishes.push(full)
          log.push('finish')
        },
      })
      const parts = await collect(result.fullStream)
      const full = await result.output.getFullOutput()

      expect(chunks).toStrictEqual(parts)
      expect(log).toEqual([
        ...['start', 'start-step', 'text-start', 'text-delta', 'text-end', 'tool-call', 'tool-result', 'finish-step'].map((t) => `chunk:${t}`),
        'step',
        ...['start-step', 'text-start', 'text-delta', 'text-delta', 'text-end', 'finish-step'].map((t) => `chunk:${t}`),
        'step',
        'chunk:finish',
        'finish',
      ])
      expect(steps).toHaveLength(2)
      expect(steps[0]).toMatchObject({
        text: 'Looking',
        finishReason: 'tool-calls',
        usage: usage(3, 2),
        toolCalls: [{ type: 'tool-call', toolCallId: 'call-1', toolName: 'lookup', input: {} }],
        toolResults: [{ type: 'tool-result', toolCallId: 'call-1', toolName: 'lookup', input: {}, output: 'found' }],
      })
      expect(steps[1]).toMatchObject({ text: 'All done', finishReason: 'stop', usage: usage(7, 4), toolCalls: [], toolResults: [] })
      expect(finishes).toHaveLength(1)
      expect(finishes[0]).toMatchObject({
        outcome: 'finished',
        text: 'LookingAll done',
        usage: usage(10, 6),
        totalUsage: usage(10, 6),
        finishReason: 'stop',
      })
      expect(finishes[0]!.steps).toEqual(steps)
      expect(full).toEqual(finishes[0])
      // The model saw the text of the first step with its tool call.
      expect(model.doStreamCalls[1]!.prompt[2]).toEqual({
        role: 'assistant',
        content: [
          { type: 'text', text: 'Looking' },
          { type: 'tool-call', toolCallId: 'call-1', toolName: 'lookup', input: {} },
        ],
      })
    })

    // 9 ---------------------------------------------------------------------
    async function finishedRun() {
      const deltas = ['one ', 'two ', 'three']
      const model = kit.model(() => streamOf([...textParts('t', deltas), kit.finish('stop', 2, 3)]))
      const agent = agentOf(model)
      const result = await agent.stream('Count')
      const live = await collect(result.fullStream)
      expect(live).toHaveLength(9)
      return { agent, result, live, deltas }
    }

    it('observe replays a finished run from offset 0, and its suffix from a middle offset', async () => {
      const { agent, result, live, deltas } = await finishedRun()
      const all = await agent.observe(result.runId, { offset: 0 })
      expect(all.runId).toBe(result.runId)
      expect(await collect(all.fullStream, 'the replay to end')).toStrictEqual(live)
      expect(await all.output.getFullOutput()).toEqual(await result.output.getFullOutput())

      const byDefault = await agent.observe(result.runId)
      expect(await collect(byDefault.fullStream, 'the replay to end')).toStrictEqual(live)

      // Index 4 is the second text delta.
      const suffix = await agent.observe(result.runId, { offset: 4 })
      expect(await collect(suffix.fullStream, 'the suffix to end')).toStrictEqual(live.slice(4))
      expect(await suffix.output.text).toBe(deltas.slice(1).join(''))
      expect((await suffix.output.getFullOutput()).outcome).toBe('finished')

      const last = await agent.observe(result.runId, { offset: live.length - 1 })
      expect(await collect(last.fullStream, 'the last part')).toStrictEqual(live.slice(-1))
    })

    it('observe at (or past) the end of a finished run ends at once, with nothing', async () => {
      const { agent, result, live } = await finishedRun()
      for (const offset of [live.length, live.length + 5]) {
        const atEnd = await agent.observe(result.runId, { offset })
        // Nothing follows the finish: the output must end, not wait for ever.
        const full = await within(atEnd.output.getFullOutput(), 3_000, `the observation from ${offset} to end`)
        expect(full).toMatchObject({ outcome: 'finished', steps: [], text: '', toolCalls: [] })
        expect(await collect(atEnd.fullStream, 'the empty stream', 1_000)).toEqual([])
      }
    })

    it('observe of a run in progress sees every part, the ones before it and the ones after', async () => {
      const feeds: ReturnType<typeof controlledStream>[] = []
      const model = kit.model(() => {
        const s = controlledStream()
        openStreams.push(s.close)
        feeds.push(s)
        s.push({ type: 'stream-start', warnings: [] }, ...textParts('t', ['early']).slice(0, 2))
        return s.stream
      })
      const agent = agentOf(model)
      const firstDelta = deferred()
      const result = await agent.stream('Go slowly', { onChunk: (part) => void (part.type === 'text-delta' && firstDelta.resolve()) })
      await within(firstDelta.promise, 5_000, 'the first delta')

      const observer = await agent.observe(result.runId, { offset: 0 })
      const fromTwo = await agent.observe(result.runId, { offset: 2 })
      const observed = collect(observer.fullStream, 'the observer to end')
      const observedFromTwo = collect(fromTwo.fullStream, 'the second observer to end')
      // The observers read what was there before the run goes on.
      const firstSeen = deferred()
      void (async () => {
        for await (const part of observer.output.fullStream as unknown as AsyncIterable<StreamPart>) if (part.type === 'text-delta') return firstSeen.resolve()
      })()
      await within(firstSeen.promise, 5_000, 'the observer to see the first delta')

      expect(feeds).toHaveLength(1)
      feeds[0]!.push({ type: 'text-delta', id: 't', delta: ' late' }, { type: 'text-end', id: 't' }, kit.finish('stop', 1, 2))
      feeds[0]!.close()

      const live = await collect(result.fullStream)
      expect(types(live)).toEqual(['start', 'start-step', 'text-start', 'text-delta', 'text-delta', 'text-end', 'finish-step', 'finish'])
      expect(await observed).toStrictEqual(live)
      expect(await observedFromTwo).toStrictEqual(live.slice(2))
      expect(await observer.output.text).toBe('early late')
    })
  })

  // 10 ----------------------------------------------------------------------
  describe('bad input', () => {
    const textModel = () => kits[0]!.model(() => streamOf([...textParts('t', ['ok']), kits[0]!.finish('stop', 1, 1)]))
    let n = 0
    const freshRunId = () => `bad-input-${process.pid}-${Date.now()}-${++n}`

    /** Runs `work` and checks it added no key to the store (Redis; keys of earlier runs may go meanwhile). */
    async function addsNoKey(work: () => Promise<void>): Promise<void> {
      const before = new Set((await store.allKeys?.()) ?? [])
      await work()
      expect(((await store.allKeys?.()) ?? []).filter((key) => !before.has(key))).toEqual([])
    }

    async function expectNoRun(agent: ReturnType<typeof agentOf>, runId: string) {
      expect((await failure(() => agent.observe(runId))).code).toBe(ErrorCodes.RUN_NOT_FOUND)
      expect(await store.residue(runId)).toEqual([])
    }

    it('rejects invalid messages with ERR_INVALID_MESSAGES and stores nothing', async () => {
      const model = textModel()
      const agent = agentOf(model)
      const invalid: unknown[] = [
        42,
        null,
        [{ role: 'bogus', content: 'x' }],
        [{ role: 'bogus' }],
        [],
        [{ role: 'user', content: 42 }],
        // An assistant's parts in a user message (no AI SDK model message holds them there).
        [{ role: 'user', content: [{ type: 'reasoning', text: 'hmm' }] }],
        [{ role: 'user', content: [{ type: 'tool-call', toolCallId: 'c', toolName: 't', input: {} }] }],
      ]
      for (const messages of invalid) {
        const runId = freshRunId()
        await addsNoKey(async () => {
          const error = await failure(() => agent.stream(messages as string, { runId }))
          expect(error, JSON.stringify(messages)).toBeInstanceOf(TypeError)
          expect(error.code, JSON.stringify(messages)).toBe(ErrorCodes.INVALID_MESSAGES)
          expect((await failure(() => agent.generate(messages as string, { runId }))).code).toBe(ErrorCodes.INVALID_MESSAGES)
        })
        await expectNoRun(agent, runId)
      }
      expect(model.doStreamCalls).toHaveLength(0)
    })

    it('rejects a tool with an invalid inputSchema with ERR_INVALID_TOOL_SCHEMA and stores nothing', async () => {
      // Not a schema; not a JSON Schema; a JSON Schema no validator can compile (a bad type, a $ref that cannot be resolved).
      const notSchemas = [42, { foo: 1 }, { type: 'strng' }, { type: 'object', properties: { to: { $ref: 'http://127.0.0.1:9/s.json' } } }]
      for (const inputSchema of notSchemas) {
        const model = textModel()
        const runId = freshRunId()
        // Whether createDurableAgent or stream reports it: an error with that code, and no run.
        const agent = (() => {
          try {
            return agentOf(model, { tools: { bad: { inputSchema, execute: async () => 'never' } } })
          } catch (error) {
            return error as Error & { code?: string }
          }
        })()
        if (agent instanceof Error) {
          expect(agent.code).toBe(ErrorCodes.INVALID_TOOL_SCHEMA)
          continue
        }
        await addsNoKey(async () => {
          const error = await failure(() => agent.stream('Use it', { runId }))
          expect(error.code, JSON.stringify(inputSchema)).toBe(ErrorCodes.INVALID_TOOL_SCHEMA)
          expect(error.message).toContain('tool "bad"')
          expect(error.message).toContain('invalid inputSchema')
        })
        await expectNoRun(agent, runId)
        expect(model.doStreamCalls).toHaveLength(0)
      }
    })

    it('rejects a model that is not an AI SDK language model with ERR_INVALID_MODEL', () => {
      const notModels: unknown[] = [
        undefined,
        {},
        { specificationVersion: 'v3', provider: 'p', modelId: 'm' },
        { specificationVersion: 'v1', provider: 'p', modelId: 'm', doStream: async () => ({ stream: streamOf([]) }) },
        { specificationVersion: 'v3', doStream: 'not a function' },
      ]
      for (const model of notModels) {
        let error: (Error & { code?: string }) | undefined
        try {
          createDurableAgent({ agent: { id: 'bad-model', model: model as LanguageModel }, cache: store.cache })
        } catch (e) {
          error = e as Error & { code?: string }
        }
        expect(error, JSON.stringify(model)).toBeInstanceOf(TypeError)
        expect(error?.code).toBe(ErrorCodes.INVALID_MODEL)
      }
    })

    it('rejects observe, resume, approve and decline of an unknown run with ERR_RUN_NOT_FOUND', async () => {
      const agent = agentOf(textModel())
      const runId = freshRunId()
      expect((await failure(() => agent.observe(runId))).code).toBe(ErrorCodes.RUN_NOT_FOUND)
      expect((await failure(() => agent.observe(runId, { offset: 3 }))).code).toBe(ErrorCodes.RUN_NOT_FOUND)
      expect((await failure(() => agent.resume(runId, { approved: true }))).code).toBe(ErrorCodes.RUN_NOT_FOUND)
      expect((await failure(() => agent.approveToolCall({ runId }))).code).toBe(ErrorCodes.RUN_NOT_FOUND)
      expect((await failure(() => agent.declineToolCall({ runId, reason: 'no' }))).code).toBe(ErrorCodes.RUN_NOT_FOUND)
      expect(await store.residue(runId)).toEqual([])
    })

    it('rejects a new run with the id of an existing one with ERR_RUN_EXISTS, leaving the existing run as it was', async () => {
      const model = textModel()
      const agent = agentOf(model)
      const runId = freshRunId()
      const first = await agent.stream('First', { runId })
      expect(first.runId).toBe(runId)
      const live = await collect(first.fullStream)
      expect(live.at(-1)?.type).toBe('finish')
      // The driver gives its lease up just after the last part: wait for it.
      await eventually(() => agent.activeRuns === 0)
      const residue = await store.residue(runId)

      const error = await failure(() => agent.stream('Second', { runId }))
      expect(error.code).toBe(ErrorCodes.RUN_EXISTS)
      expect((await failure(() => agent.generate('Second', { runId }))).code).toBe(ErrorCodes.RUN_EXISTS)
      // The model was not called again, and the first run's events are untouched.
      expect(model.doStreamCalls).toHaveLength(1)
      const replay = await agent.observe(runId)
      expect(await collect(replay.fullStream, 'the replay to end')).toStrictEqual(live)
      expect(await store.residue(runId)).toEqual(residue)
    })

    it('rejects a runId with a space, braces or nothing with ERR_INVALID_ARG and stores nothing', async () => {
      const model = textModel()
      const agent = agentOf(model)
      for (const runId of ['has space', 'a{b}', '{tag}', 'close}', 'tab\there', '']) {
        await addsNoKey(async () => {
          const error = await failure(() => agent.stream('Hi', { runId }))
          expect(error.code, JSON.stringify(runId)).toBe(ErrorCodes.INVALID_ARG)
          expect((await failure(() => agent.observe(runId))).code, JSON.stringify(runId)).toBe(ErrorCodes.INVALID_ARG)
        })
        if (runId !== '') expect(await store.residue(runId)).toEqual([])
      }
      // Not a string at all: the same code, from every method that takes a runId.
      for (const runId of [42, null, { id: 'x' }] as unknown as string[]) {
        await addsNoKey(async () => {
          for (const call of [
            () => agent.stream('Hi', { runId }),
            () => agent.generate('Hi', { runId }),
            () => agent.observe(runId),
            () => agent.resume(runId, { approved: true }),
            () => agent.approveToolCall({ runId }),
            () => agent.declineToolCall({ runId }),
            () => agent.recover(runId),
            () => agent.abort(runId),
            () => agent.cleanup(runId),
          ]) {
            const error = await failure(call)
            expect(error, `${call} with ${JSON.stringify(runId)}`).toBeInstanceOf(TypeError)
            expect(error.code, `${call} with ${JSON.stringify(runId)}`).toBe(ErrorCodes.INVALID_ARG)
            expect(error.message).toMatch(/^runId must be a string, got /)
          }
        })
      }
      expect(model.doStreamCalls).toHaveLength(0)
      expect(agent.activeRuns).toBe(0)
    })
  })

  // 11 ----------------------------------------------------------------------
  describe('cleanup', () => {
    const textModel = () => kits[0]!.model(() => streamOf([...textParts('t', ['ok']), kits[0]!.finish('stop', 1, 1)]))

    it('result.cleanup() deletes the run: observe gets ERR_RUN_NOT_FOUND, nothing is left, the id is free again', async () => {
      const agent = agentOf(textModel())
      const result = await agent.stream('Hi')
      const live = await collect(result.fullStream)
      expect(await store.residue(result.runId)).not.toEqual([])
      await result.cleanup()
      expect((await failure(() => agent.observe(result.runId))).code).toBe(ErrorCodes.RUN_NOT_FOUND)
      expect(await store.residue(result.runId)).toEqual([])

      const again = await agent.stream('Hi', { runId: result.runId })
      expect(await collect(again.fullStream)).toStrictEqual(live)
      await agent.cleanup(result.runId)
      expect(await store.residue(result.runId)).toEqual([])
    })

    it('cleanupTimeoutMs deletes finished, failed and aborted runs after it ends', async () => {
      const model = kits[0]!.model((call, options) => {
        if (call === 0) return streamOf([...textParts('t', ['ok']), kits[0]!.finish('stop', 1, 1)])
        if (call === 1) return streamOf([{ type: 'error', error: new Error('failed on purpose') }])
        const s = controlledStream()
        openStreams.push(s.close)
        s.push({ type: 'stream-start', warnings: [] }, ...textParts('t', ['x']).slice(0, 2))
        options.abortSignal?.addEventListener('abort', () => s.error(options.abortSignal!.reason))
        return s.stream
      })
      const agent = agentOf(model, { cleanupTimeoutMs: 50 })
      const finished = await agent.stream('Hi')
      const failed = await agent.stream('Hi')
      const firstDelta = deferred()
      const aborted = await agent.stream('Hi', { onChunk: (part) => void (part.type === 'text-delta' && firstDelta.resolve()) })
      await within(firstDelta.promise, 5_000, 'the first delta')
      await aborted.abort()
      const outcomes = await Promise.all([finished, failed, aborted].map(async (r) => (await r.output.getFullOutput()).outcome))
      expect(outcomes).toEqual(['finished', 'failed', 'aborted'])

      for (const { runId } of [finished, failed, aborted]) {
        const gone = () =>
          agent.observe(runId).then(
            () => false,
            (error: Error & { code?: string }) => {
              if (error.code !== ErrorCodes.RUN_NOT_FOUND) throw error
              return true
            },
          )
        await eventually(gone, 5_000, `run ${runId} to be cleaned up`)
        await eventually(async () => (await store.residue(runId)).length === 0, 5_000, `nothing of run ${runId} to be left`)
      }
    })
  })

  // 12 ----------------------------------------------------------------------
  describe.each(kits)('zod input schemas, with a $version model', (kit) => {
    it('validates tool input with a zod schema: valid input runs (parsed), invalid input is a tool-error', async () => {
      const inputs: unknown[] = []
      const tools: ToolSet = {
        forecast: {
          description: 'Forecast',
          inputSchema: z.object({ city: z.string(), days: z.number().int().min(1).default(1) }),
          execute: async (input: { city: string; days: number }) => {
            inputs.push(input)
            return `${input.days} day(s) of sun in ${input.city}`
          },
        },
      }
      const model = kit.model((call) =>
        call === 0
          ? streamOf([
              toolCall('call-ok', 'forecast', { city: 'Oslo' }),
              toolCall('call-bad', 'forecast', { city: 7, days: 0 }),
              kit.finish('tool-calls', 3, 3),
            ])
          : streamOf([...textParts('t', ['Sunny']), kit.finish('stop', 5, 1)]),
      )
      const result = await agentOf(model, { tools }).stream('Forecast for Oslo')
      const parts = await collect(result.fullStream)
      expect((await result.output.getFullOutput()).outcome).toBe('finished')

      // The model got the zod schema as JSON Schema.
      const [declared] = model.doStreamCalls[0]!.tools!
      expect(declared).toMatchObject({ type: 'function', name: 'forecast', description: 'Forecast' })
      expect(declared!.inputSchema).toMatchObject({ type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } } })

      // Valid input: execute got the parsed value (with the default).
      expect(inputs).toEqual([{ city: 'Oslo', days: 1 }])
      expect(ofType(parts, 'tool-result')).toEqual([
        { type: 'tool-result', toolCallId: 'call-ok', toolName: 'forecast', input: { city: 'Oslo' }, output: '1 day(s) of sun in Oslo' },
      ])
      // Invalid input: a tool-error, and execute never saw it.
      const [error, ...more] = ofType(parts, 'tool-error')
      expect(more).toEqual([])
      expect(error).toMatchObject({ type: 'tool-error', toolCallId: 'call-bad', toolName: 'forecast', input: { city: 7, days: 0 } })
      expect(error!.error).toBeInstanceOf(Error)
      expect(error!.error.name).toBe('AI_InvalidToolInputError')
      expect(error!.error.message).toMatch(/^Invalid input for tool forecast: Type validation failed: /)
      const toolMessage = model.doStreamCalls[1]!.prompt.at(-1) as { role: string; content: { toolCallId: string; output: { type: string } }[] }
      expect(toolMessage.content.find((c) => c.toolCallId === 'call-bad')?.output).toEqual({ type: 'error-text', value: error!.error.message })
    })
  })

  // 13 ----------------------------------------------------------------------
  /**
   * A model's tool call whose input is cut-off JSON, or JSON its schema
   * rejects, is invalid: never run (nor put to approval), marked so in the
   * stream, and the model gets a `tool-error` to retry on, as with the AI
   * SDK's `streamText`. For every kind of schema.
   */
  describe.each(kits)('invalid tool calls, with a $version model', (kit) => {
    const CUT_OFF = '{"amount": 10, "to": "acct'
    const chargeJsonSchema: JSONSchema7 = {
      type: 'object',
      properties: { amount: { type: 'number', minimum: 1 }, to: { type: 'string', minLength: 1 } },
      required: ['amount', 'to'],
      additionalProperties: false,
    }
    const schemas: { kind: string; inputSchema: unknown }[] = [
      { kind: 'a JSON Schema', inputSchema: chargeJsonSchema },
      { kind: 'an AI SDK jsonSchema() (no validate of its own)', inputSchema: jsonSchema(chargeJsonSchema) },
      { kind: 'a zod schema', inputSchema: z.object({ amount: z.number().min(1), to: z.string().min(1) }).strict() },
      { kind: 'a JSON Schema of draft 2020-12', inputSchema: { $schema: 'https://json-schema.org/draft/2020-12/schema', ...chargeJsonSchema } },
      { kind: 'an AI SDK lazySchema()', inputSchema: lazySchema(() => zodSchema(z.object({ amount: z.number().min(1), to: z.string().min(1) }).strict())) },
    ]

    /** Step 0: the calls; step 1: a valid retry; step 2: text. */
    function retryingModel(calls: unknown[]) {
      return kit.model((call) =>
        call === 0
          ? streamOf([...calls, kit.finish('tool-calls', 3, 3)])
          : call === 1
            ? streamOf([toolCall('retry', 'charge', { amount: 10, to: 'acct-1' }), kit.finish('tool-calls', 2, 2)])
            : streamOf([...textParts('t', ['charged']), kit.finish('stop', 1, 1)]),
      )
    }

    it.each(schemas)(
      'never runs a call with cut-off JSON or input its schema rejects ($kind): the model gets a tool-error and retries',
      async ({ inputSchema }) => {
        const executed: unknown[] = []
        const tools: ToolSet = {
          charge: {
            inputSchema,
            execute: async (input) => {
              executed.push(input)
              return 'charged'
            },
          },
        }
        const model = retryingModel([
          { type: 'tool-call', toolCallId: 'cut', toolName: 'charge', input: CUT_OFF },
          toolCall('rejected', 'charge', { amount: 'ten', to: 'acct-1' }),
        ])
        const result = await agentOf(model, { tools }).stream('Charge 10 to acct-1')
        const parts = await collect(result.fullStream)
        const full = await result.output.getFullOutput()
        expect(full.outcome).toBe('finished')
        expect(full.text).toBe('charged')

        // Only the valid retry ran.
        expect(executed).toEqual([{ amount: 10, to: 'acct-1' }])
        expect(ofType(parts, 'tool-result').map((p) => p.toolCallId)).toEqual(['retry'])

        // The invalid calls are marked in the stream (with the AI SDK's fields), then their tool-errors.
        const [cut, rejected] = ofType(parts, 'tool-call')
        expect(cut).toMatchObject({ toolCallId: 'cut', toolName: 'charge', input: CUT_OFF, invalid: true, dynamic: true })
        expect(rejected).toMatchObject({ toolCallId: 'rejected', input: { amount: 'ten', to: 'acct-1' }, invalid: true, dynamic: true })
        for (const call of [cut!, rejected!]) {
          expect(call.error).toBeInstanceOf(Error)
          expect(call.error!.name).toBe('AI_InvalidToolInputError')
        }
        const errors = ofType(parts, 'tool-error')
        expect(errors.map((e) => [e.toolCallId, e.input])).toEqual([
          ['cut', CUT_OFF],
          ['rejected', { amount: 'ten', to: 'acct-1' }],
        ])
        expect(errors[0]!.error.name).toBe('AI_InvalidToolInputError')
        expect(errors[0]!.error.message).toMatch(/^Invalid input for tool charge: JSON parsing failed: Text: \{"amount": 10, "to": "acct\./)
        expect(errors[1]!.error.name).toBe('AI_InvalidToolInputError')
        expect(errors[1]!.error.message).toMatch(
          /^Invalid input for tool charge: Type validation failed: Value: \{"amount":"ten","to":"acct-1"\}\.\nError message: /,
        )
        // The tool-errors come with the step's tool calls, before the step ends.
        expect(types(parts).slice(0, 7)).toEqual(['start', 'start-step', 'tool-call', 'tool-call', 'tool-error', 'tool-error', 'finish-step'])
        // The step result: invalid calls are dynamic, as in the AI SDK.
        expect(full.steps[0]!.toolCalls.map((c) => c.toolCallId)).toEqual(['cut', 'rejected'])
        expect(full.steps[0]!.dynamicToolCalls).toHaveLength(2)
        expect(full.steps[0]!.staticToolCalls).toEqual([])

        // What the model got back: its calls (the cut-off one with an object for input), and the errors.
        const [assistant, toolMessage] = model.doStreamCalls[1]!.prompt.slice(-2) as { role: string; content: any[] }[]
        expect(assistant!.content).toEqual([
          { type: 'tool-call', toolCallId: 'cut', toolName: 'charge', input: {} },
          { type: 'tool-call', toolCallId: 'rejected', toolName: 'charge', input: { amount: 'ten', to: 'acct-1' } },
        ])
        expect(toolMessage!.content).toEqual([
          { type: 'tool-result', toolCallId: 'cut', toolName: 'charge', output: { type: 'error-text', value: errors[0]!.error.message } },
          { type: 'tool-result', toolCallId: 'rejected', toolName: 'charge', output: { type: 'error-text', value: errors[1]!.error.message } },
        ])
      },
    )

    it('treats a schema whose own validate throws, or replies in no known shape, as rejecting the input', async () => {
      const executed: unknown[] = []
      const broken = [
        jsonSchema(chargeJsonSchema, {
          validate: () => {
            throw new Error('validator broke')
          },
        }),
        jsonSchema(chargeJsonSchema, { validate: () => undefined as never }),
      ]
      for (const [n, inputSchema] of broken.entries()) {
        const tools: ToolSet = { charge: { inputSchema, execute: async (input) => void executed.push(input) } }
        const model = kit.model((call) =>
          call === 0
            ? streamOf([toolCall('c', 'charge', { amount: 10, to: 'acct-1' }), kit.finish('tool-calls', 1, 1)])
            : streamOf([...textParts('t', ['ok']), kit.finish('stop', 1, 1)]),
        )
        const parts = await collect((await agentOf(model, { tools }).stream('Charge')).fullStream)
        const [error] = ofType(parts, 'tool-error')
        expect(error!.error.name).toBe('AI_InvalidToolInputError')
        expect(error!.error.message).toMatch(n === 0 ? /Error message: validator broke$/ : /^Invalid input for tool charge: Type validation failed: /)
      }
      expect(executed).toEqual([])
    })

    it('validates a JSON Schema that names draft-04, and one $id in two agents', async () => {
      const inputSchema = { $schema: 'http://json-schema.org/draft-04/schema#', $id: 'https://example.test/charge.json', ...chargeJsonSchema }
      for (let agentNumber = 0; agentNumber < 2; agentNumber++) {
        const executed: unknown[] = []
        const tools: ToolSet = { charge: { inputSchema, execute: async (input) => void executed.push(input) } }
        const model = retryingModel([toolCall('rejected', 'charge', { amount: 0, to: 'acct-1' })])
        const parts = await collect((await agentOf(model, { tools }).stream('Charge')).fullStream)
        expect(ofType(parts, 'tool-error').map((e) => e.toolCallId)).toEqual(['rejected'])
        expect(ofType(parts, 'tool-error')[0]!.error.message).toMatch(/amount must be >= 1/)
        expect(executed).toEqual([{ amount: 10, to: 'acct-1' }])
      }
    })

    it('never asks for approval of an invalid call (needsApproval true, a needsApproval function, requireToolApproval)', async () => {
      const decided: unknown[] = []
      const executed: unknown[] = []
      const execute = async (input: unknown) => {
        executed.push(input)
        return 'done'
      }
      const tools: ToolSet = {
        charge: { inputSchema: chargeJsonSchema, needsApproval: true, execute },
        refund: {
          inputSchema: z.object({ order: z.string() }),
          needsApproval: (input) => {
            decided.push(input)
            return true
          },
          execute,
        },
      }
      for (const requireToolApproval of [false, true]) {
        const model = kit.model((call) =>
          call === 0
            ? streamOf([
                { type: 'tool-call', toolCallId: 'cut', toolName: 'charge', input: CUT_OFF },
                toolCall('rejected', 'refund', { order: 42 }),
                kit.finish('tool-calls', 3, 3),
              ])
            : streamOf([...textParts('t', ['sorry']), kit.finish('stop', 1, 1)]),
        )
        const result = await agentOf(model, { tools }).stream('Charge and refund', { requireToolApproval })
        const parts = await collect(result.fullStream)
        // No approval asked: the run went on to the model, which got both errors.
        expect((await result.output.getFullOutput()).outcome).toBe('finished')
        expect(ofType(parts, 'tool-approval-request')).toEqual([])
        expect(ofType(parts, 'tool-error').map((e) => e.toolCallId)).toEqual(['cut', 'rejected'])
        expect(model.doStreamCalls).toHaveLength(2)
      }
      expect(decided).toEqual([])
      expect(executed).toEqual([])
    })

    it('hands needsApproval and execute the input as the schema outputs it (defaults filled in)', async () => {
      const decided: unknown[] = []
      const tools: ToolSet = {
        forecast: {
          inputSchema: z.object({ city: z.string(), days: z.number().default(3) }),
          needsApproval: (input) => {
            decided.push(input)
            return false
          },
          execute: async (input) => input,
        },
      }
      const model = kit.model((call) =>
        call === 0
          ? streamOf([toolCall('c', 'forecast', { city: 'Oslo' }), kit.finish('tool-calls', 1, 1)])
          : streamOf([...textParts('t', ['ok']), kit.finish('stop', 1, 1)]),
      )
      const parts = await collect((await agentOf(model, { tools }).stream('Forecast')).fullStream)
      expect(decided).toEqual([{ city: 'Oslo', days: 3 }])
      expect(ofType(parts, 'tool-result')[0]).toMatchObject({ input: { city: 'Oslo' }, output: { city: 'Oslo', days: 3 } })
    })
  })
})

describe('the default cache', () => {
  it('keeps far more runs than an InMemoryServerCache of the default 1,000 keys would', async () => {
    const model = kits[0]!.model(() => streamOf([...textParts('t', ['kept']), kits[0]!.finish('stop', 1, 1)]))
    // No cache given: the agent makes its own. No auto-cleanup: every run stays.
    const agent = createDurableAgent({ agent: { id: 'default-cache', model }, cleanupTimeoutMs: 0 })
    const runIds: string[] = []
    for (let i = 0; i < 800; i++) {
      const result = await agent.stream('Hi')
      await result.output.getFullOutput()
      runIds.push(result.runId)
    }
    // 1,600 keys of finished runs: the first run is still there, whole.
    for (const runId of [runIds[0]!, runIds[400]!, runIds.at(-1)!]) {
      const replay = await agent.observe(runId)
      expect((await replay.output.getFullOutput()).text).toBe('kept')
    }
  })
})

describe('resources', () => {
  it('leaves no runs, readers or calls in flight behind after 2,000 runs', async () => {
    const model = kits[0]!.model(() => streamOf([...textParts('t', ['ok']), kits[0]!.finish('stop', 1, 1)]))
    const agent = createDurableAgent({ agent: { id: 'resources', model }, cleanupTimeoutMs: 0 })
    const runIds: string[] = []
    for (let i = 0; i < 2_000; i++) {
      const result = await agent.stream('Hi')
      // Half of the outputs are read to the end, half are left unread.
      if (i % 2 === 0) for await (const _ of result.fullStream);
      await result.output.getFullOutput()
      await result.cleanup()
      runIds.push(result.runId)
    }
    await eventually(() => agent.activeRuns === 0, 5_000, 'no run driven')
    expect(agent.pubsub.stats()).toEqual({ callbackSubscriptions: 0, topicsRead: 0, callsInFlight: 0 })
    expect(await agent.listActiveRuns()).toEqual({ runs: [], total: 0 })
    // Every run's state and events are gone.
    for (const runId of runIds) {
      expect((await failure(() => agent.observe(runId))).code).toBe(ErrorCodes.RUN_NOT_FOUND)
    }
  })
})
