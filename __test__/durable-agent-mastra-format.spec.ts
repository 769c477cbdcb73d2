/**
 * `createDurableAgent({ format: 'mastra' })`: streams and `onChunk` hand out
 * `@mastra/core`'s chunks (`{ type, runId, from, payload }`) instead of AI SDK
 * parts. The proof of the shape is Mastra's own reader of its chunks,
 * `convertMastraChunkToAISDKv5`: fed our chunks, it must give back the AI SDK
 * parts the same run streams in the default format.
 */
import { convertMastraChunkToAISDKv5 } from '@mastra/core/stream'
import { MockLanguageModelV3 } from 'ai/test'
import { afterAll, describe, expect, it } from 'vitest'

import {
  createDurableAgent,
  ErrorCodes,
  InMemoryServerCache,
  RedisServerCache,
  type AgentDefinition,
  type MastraChunk,
  type StreamPart,
} from '../dist/index.js'
import { drain, REDIS_URL, uniquePrefix } from './helpers.js'

const streamOf = (parts: unknown[]) =>
  new ReadableStream<any>({
    start(controller) {
      controller.enqueue({ type: 'stream-start', warnings: [] })
      for (const part of parts) controller.enqueue(part)
      controller.close()
    },
  })

const finish = (reason: 'stop' | 'tool-calls', input: number, output: number) => ({
  type: 'finish',
  finishReason: { unified: reason, raw: reason },
  usage: {
    inputTokens: { total: input, noCache: input, cacheRead: undefined, cacheWrite: undefined },
    outputTokens: { total: output, text: output, reasoning: undefined },
  },
})

/** Step 1 calls `weather` (streaming its input), step 2 answers in text. */
function definition(): AgentDefinition {
  const steps = [
    [
      { type: 'response-metadata', id: 'resp-1', modelId: 'mock-1' },
      { type: 'tool-input-start', id: 'call-1', toolName: 'weather' },
      { type: 'tool-input-delta', id: 'call-1', delta: '{"city":"Oslo"}' },
      { type: 'tool-input-end', id: 'call-1' },
      { type: 'tool-call', toolCallId: 'call-1', toolName: 'weather', input: '{"city":"Oslo"}' },
      finish('tool-calls', 5, 3),
    ],
    [
      { type: 'text-start', id: 't1' },
      { type: 'text-delta', id: 't1', delta: 'Sunny ' },
      { type: 'text-delta', id: 't1', delta: 'in Oslo.' },
      { type: 'text-end', id: 't1' },
      finish('stop', 9, 4),
    ],
  ]
  const model: MockLanguageModelV3 = new MockLanguageModelV3({
    doStream: async () => ({ stream: streamOf(steps[Math.min(model.doStreamCalls.length - 1, 1)]!) }),
  })
  return {
    id: 'forecaster',
    model,
    tools: {
      weather: {
        inputSchema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        execute: async ({ city }: { city: string }) => ({ city, sky: 'sunny' }),
      },
    },
  }
}

const collect = <T>(stream: ReadableStream<T>) => drain(stream, 'the run to end')

/** `value` without its `undefined` members (Mastra's converter writes them out). */
function defined(value: object): object {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined))
}

const caches: { name: string; open(): InMemoryServerCache | RedisServerCache }[] = [
  { name: 'in memory', open: () => new InMemoryServerCache() },
  { name: 'Redis', open: () => new RedisServerCache({ url: REDIS_URL }, { keyPrefix: uniquePrefix('mastra-format') }) },
]

describe.each(caches)('the Mastra stream format, $name', ({ open }) => {
  const cache = open()
  afterAll(async () => {
    await cache.clear()
    if (cache instanceof RedisServerCache) await cache.close()
  })

  it("hands out chunks that Mastra's own converter reads back as the run's AI SDK parts", async () => {
    const agent = definition()
    const mastra = createDurableAgent({ agent, cache, format: 'mastra', cleanupTimeoutMs: 0 })
    const seen: MastraChunk[] = []
    const run = await mastra.stream('Weather in Oslo?', { onChunk: (chunk) => void seen.push(chunk) })
    const chunks = await collect(run.fullStream)
    expect(await run.output.text).toBe('Sunny in Oslo.')
    expect(seen).toEqual(chunks)

    // The same run, read by an agent of the default format.
    const aisdk = createDurableAgent({ agent, cache, cleanupTimeoutMs: 0 })
    const parts: StreamPart[] = await collect((await aisdk.observe(run.runId)).fullStream)

    expect(chunks.map((c) => c.type)).toEqual([
      'start',
      'step-start',
      'tool-call-input-streaming-start',
      'tool-call-delta',
      'tool-call-input-streaming-end',
      'tool-call',
      'tool-result',
      'step-finish',
      'step-start',
      'text-start',
      'text-delta',
      'text-delta',
      'text-end',
      'step-finish',
      'finish',
    ])
    for (const chunk of chunks) expect(chunk).toMatchObject({ runId: run.runId, from: 'AGENT' })
    expect(chunks.length).toBe(parts.length)
    chunks.forEach((chunk, i) => {
      const back = defined(convertMastraChunkToAISDKv5({ chunk: chunk as never }) as object) as Record<string, unknown>
      for (const [key, value] of Object.entries(defined(parts[i]!))) {
        // The converter stamps a response without a timestamp with the time of conversion.
        if (key === 'response') expect(back.response).toMatchObject(value as object)
        else expect(back[key], `chunk ${i} (${chunk.type}), ${key}`).toEqual(value)
      }
    })
    // Fields Mastra code reads directly.
    const byType = <T extends MastraChunk['type']>(type: T) => chunks.filter((c): c is MastraChunk & { type: T } => c.type === type)
    expect(byType('tool-call')[0]!.payload).toEqual({ toolCallId: 'call-1', toolName: 'weather', args: { city: 'Oslo' } })
    expect(byType('tool-result')[0]!.payload.result).toEqual({ city: 'Oslo', sky: 'sunny' })
    expect(
      byType('text-delta')
        .map((c) => c.payload.text)
        .join(''),
    ).toBe('Sunny in Oslo.')
    const [first] = byType('step-finish')
    expect(first!.payload.stepResult.reason).toBe('tool-calls')
    expect(first!.payload.metadata).toMatchObject({ id: 'resp-1', modelId: 'mock-1' })
    expect(byType('finish')[0]!.payload).toMatchObject({ stepResult: { reason: 'stop' }, output: { usage: { inputTokens: 14, outputTokens: 7 } } })
    await mastra.cleanup(run.runId)
  })

  it('asks for approval with a tool-call-approval chunk, and a declined call ends in tool-output-denied', async () => {
    const agent = createDurableAgent({ agent: definition(), cache, format: 'mastra', cleanupTimeoutMs: 0 })
    const run = await agent.stream('Weather in Oslo?', { requireToolApproval: true })
    const chunks = await collect(run.fullStream)
    const approval = chunks.at(-1)!
    expect(approval.type).toBe('tool-call-approval')
    if (approval.type !== 'tool-call-approval') throw new Error('unreachable')
    expect(approval.payload).toMatchObject({ toolCallId: 'call-1', toolName: 'weather', args: { city: 'Oslo' } })
    expect(JSON.parse(approval.payload.resumeSchema)).toMatchObject({ properties: { approved: { type: 'boolean' } } })

    const declined = await agent.declineToolCall({ runId: run.runId, toolCallId: 'call-1', reason: 'not now' })
    const after = await collect(declined.fullStream)
    expect(after.find((c) => c.type === 'tool-output-denied')?.payload).toEqual({
      toolCallId: 'call-1',
      toolName: 'weather',
      approval: { id: 'call-1', approved: false, reason: 'not now' },
    })
    expect(after.at(-1)?.type).toBe('finish')
    await agent.cleanup(run.runId)
  })
})

describe('the stream format option', () => {
  it("is 'aisdk' or 'mastra'", async () => {
    const cache = new InMemoryServerCache()
    expect(createDurableAgent({ agent: definition(), cache }).format).toBe('aisdk')
    let error: (Error & { code?: string }) | undefined
    try {
      createDurableAgent({ agent: definition(), cache, format: 'ai-sdk' as 'aisdk' })
    } catch (e) {
      error = e as Error & { code?: string }
    }
    expect(error?.code).toBe(ErrorCodes.INVALID_OPTION)
    expect(error?.message).toContain('format')
  })
})
