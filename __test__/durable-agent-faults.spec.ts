/**
 * A durable run when Redis stalls: a checkpoint that times out is retried,
 * and one that timed out but landed counts once (the run goes on with each
 * event once, never twice and never lost). On a Redis of its own, so pausing
 * it disturbs no other test.
 */
import type { LanguageModelV3StreamPart } from '@ai-sdk/provider'
import { MockLanguageModelV3 } from 'ai/test'
import { Redis as IORedis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { createDurableAgent, RedisServerCache, type StreamPart } from '../dist/index.js'
import { freePort, OwnRedis, within } from './helpers.js'

const usage = {
  inputTokens: { total: 2, noCache: 2, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 1, text: 1, reasoning: undefined },
}

function streamOf(parts: LanguageModelV3StreamPart[]): { stream: ReadableStream<LanguageModelV3StreamPart> } {
  return {
    stream: new ReadableStream({
      start(controller) {
        for (const part of parts) controller.enqueue(part)
        controller.close()
      },
    }),
  }
}

describe('a durable run over a Redis that stalls', () => {
  let redis: OwnRedis
  let admin: IORedis
  beforeAll(async () => {
    redis = new OwnRedis(await freePort())
    await redis.start()
    admin = new IORedis(redis.url)
  })
  afterAll(async () => {
    admin.disconnect()
    await redis.stop()
  })

  it('retries a checkpoint that timed out, and counts one that landed once', async () => {
    const cache = new RedisServerCache({ url: redis.url }, { keyPrefix: 'faults:', connectTimeoutMs: 150, commandTimeoutMs: 150 })
    let toolRuns = 0
    const model = new MockLanguageModelV3({
      doStream: async ({ prompt }) =>
        prompt.some((m) => m.role === 'tool')
          ? streamOf([
              { type: 'text-start', id: 't' },
              { type: 'text-delta', id: 't', delta: 'Paid.' },
              { type: 'text-end', id: 't' },
              { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage },
            ])
          : streamOf([
              { type: 'tool-call', toolCallId: 'pay-1', toolName: 'pay', input: '{}' },
              { type: 'finish', finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage },
            ]),
    })
    const agent = createDurableAgent({
      agent: {
        id: 'stalling',
        model,
        tools: {
          pay: {
            inputSchema: { type: 'object' },
            // The tool's checkpoint is written while Redis holds every write
            // for 500 ms: longer than the cache's 300 ms deadline.
            execute: async () => {
              toolRuns++
              await admin.call('CLIENT', 'PAUSE', '500', 'WRITE')
              return { paid: true }
            },
          },
        },
      },
      cache,
    })
    try {
      const result = await agent.stream('Pay')
      const parts: StreamPart[] = []
      for await (const part of result.fullStream) parts.push(part)
      const full = await within(result.output.getFullOutput(), 10_000, 'the run to end')
      expect(full.outcome).toBe('finished')
      expect(full.text).toBe('Paid.')
      expect(toolRuns).toBe(1)
      expect(parts.filter((p) => p.type === 'tool-result')).toHaveLength(1)
      expect(parts.map((p) => p.type)).toEqual([
        'start',
        'start-step',
        'tool-call',
        'tool-result',
        'finish-step',
        'start-step',
        'text-start',
        'text-delta',
        'text-end',
        'finish-step',
        'finish',
      ])
      // The stored run is the same: every event once, in order.
      const replay = await agent.observe(result.runId)
      const replayed: StreamPart[] = []
      for await (const part of replay.fullStream) replayed.push(part)
      expect(replayed).toEqual(parts)
    } finally {
      await cache.clear()
      await cache.close()
    }
  })

  it('waits out a stall in the middle of a model stream: every part once, in order', async () => {
    const cache = new RedisServerCache({ url: redis.url }, { keyPrefix: 'faults-stream:', connectTimeoutMs: 150, commandTimeoutMs: 150 })
    const deltas = ['Once', ' upon', ' a', ' time.']
    const model = new MockLanguageModelV3({
      doStream: async () => ({
        stream: new ReadableStream<LanguageModelV3StreamPart>({
          async start(controller) {
            controller.enqueue({ type: 'text-start', id: 't' })
            controller.enqueue({ type: 'text-delta', id: 't', delta: deltas[0]! })
            // The rest of the step reaches the run while Redis holds writes.
            await admin.call('CLIENT', 'PAUSE', '500', 'WRITE')
            for (const delta of deltas.slice(1)) controller.enqueue({ type: 'text-delta', id: 't', delta })
            controller.enqueue({ type: 'text-end', id: 't' })
            controller.enqueue({ type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage })
            controller.close()
          },
        }),
      }),
    })
    const agent = createDurableAgent({ agent: { id: 'stalling-stream', model }, cache })
    try {
      const result = await agent.stream('Tell me')
      const full = await within(result.output.getFullOutput(), 10_000, 'the run to end')
      expect(full.outcome).toBe('finished')
      expect(full.text).toBe(deltas.join(''))
      const replay = await agent.observe(result.runId)
      const replayed: StreamPart[] = []
      for await (const part of replay.fullStream) replayed.push(part)
      expect(replayed.filter((p) => p.type === 'text-delta').map((p) => (p as { text: string }).text)).toEqual(deltas)
      expect(replayed.map((p) => p.type)).toEqual(['start', 'start-step', 'text-start', ...deltas.map(() => 'text-delta'), 'text-end', 'finish-step', 'finish'])
    } finally {
      await cache.clear()
      await cache.close()
    }
  })
})
