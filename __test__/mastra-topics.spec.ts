/**
 * Mastra's CachingPubSub (`@mastra/core`) and ours on one cache, as in an app
 * that migrates from one to the other or runs both during a rollout. Mastra
 * keeps a topic as a list at `pubsub:<topic>`; ours keeps a log under a
 * prefix of its own (`durable-agent:`), so topics of the same names never
 * meet. A CachingPubSub given Mastra's prefix on purpose fails on Mastra's
 * topics with an error that says why and what to do, and touches nothing;
 * what releases up to 0.1.0 stored under `pubsub:` reads back with
 * `keyPrefix: 'pubsub:'`.
 */
import type { MastraServerCache } from '@mastra/core/cache'
import { CachingPubSub as MastraCachingPubSub, EventEmitterPubSub } from '@mastra/core/events'
import { MockLanguageModelV3 } from 'ai/test'
import { describe, expect, it } from 'vitest'

import { CachingPubSub, createDurableAgent, ErrorCodes, type InMemoryServerCache, type RedisServerCache, type StreamPart } from '../dist/index.js'
import { drain, eventually, TOPIC_PREFIX } from './helpers.js'
import { backends, event } from './pubsub-backends.js'

const ns = (events: { data: unknown }[]) => events.map((e) => (e.data as { n: number }).n)
const TOPICS = ['agent.stream.run-1', 'workflow.events.v2.run-1']

/** Mastra's own CachingPubSub over our cache (the cast: see mastra-dropin.spec.ts). */
const mastraOn = (cache: InMemoryServerCache | RedisServerCache) => new MastraCachingPubSub(new EventEmitterPubSub(), cache as unknown as MastraServerCache)

describe.each(backends)("@mastra/core's CachingPubSub and ours on one cache, $name", (backend) => {
  /** A cache of this backend, and our CachingPubSub over it with default options. */
  async function withCache(body: (cache: InMemoryServerCache | RedisServerCache, ours: CachingPubSub) => Promise<void>) {
    const { cache, pubsub, done } = backend.make()
    try {
      await body(cache, pubsub)
    } finally {
      await done()
    }
  }

  it('with default options, each publishes and reads its own topics of the same names', () =>
    withCache(async (cache, ours) => {
      const mastra = mastraOn(cache)
      for (const topic of TOPICS) {
        for (let n = 0; n < 3; n++) {
          await mastra.publish(topic, event(100 + n))
          expect(await ours.publish(topic, event(n))).toBe(n)
        }
      }
      for (const topic of TOPICS) {
        expect(ns(await ours.getHistory(topic))).toEqual([0, 1, 2])
        expect(ns(await mastra.getHistory(topic))).toEqual([100, 101, 102])
        // Readers of both kinds, history then live events.
        const oursSeen: number[] = []
        const mastraSeen: number[] = []
        await ours.subscribeWithReplay(topic, (e) => void oursSeen.push(ns([e])[0]!))
        await mastra.subscribeWithReplay(topic, (e) => void mastraSeen.push(ns([e as { data: unknown }])[0]!))
        await ours.publish(topic, event(3))
        await mastra.publish(topic, event(103))
        await eventually(() => oursSeen.length === 4 && mastraSeen.length === 4, 5_000, 'both readers to see four events')
        expect(oursSeen).toEqual([0, 1, 2, 3])
        expect(mastraSeen).toEqual([100, 101, 102, 103])
        const iterated: number[] = []
        for await (const e of ours.subscribeWithReplay(topic, { offset: 0 })) {
          iterated.push(ns([e])[0]!)
          if (e.index === 3) break
        }
        expect(iterated).toEqual([0, 1, 2, 3])
      }
      // Each where it says: Mastra's lists under `pubsub:`, ours not.
      expect(ns((await cache.listFromTo(`pubsub:${TOPICS[0]}`, 0)) as { data: unknown }[])).toEqual([100, 101, 102, 103])
      await expect(cache.listLength(`${TOPIC_PREFIX}${TOPICS[0]}`)).rejects.toMatchObject({ code: ErrorCodes.WRONG_TYPE })
      for (const topic of TOPICS) await ours.clearTopic(topic)
      for (const topic of TOPICS) await mastra.clearTopic(topic)
    }))

  it("given Mastra's prefix on purpose, ours fails on Mastra's topics with ERR_WRONG_TYPE naming the cause and the fix, and changes nothing", () =>
    withCache(async (cache) => {
      const mastra = mastraOn(cache)
      const ours = new CachingPubSub(null, cache, { keyPrefix: 'pubsub:', onError: () => {} })
      const topic = TOPICS[0]!
      for (let n = 0; n < 2; n++) await mastra.publish(topic, event(n))
      const expected = {
        code: ErrorCodes.WRONG_TYPE,
        message: expect.stringMatching(
          /^topic `agent\.stream\.run-1`: key `pubsub:agent\.stream\.run-1` holds a list, as Mastra's CachingPubSub \(@mastra\/core\) stores its topics, .*give this CachingPubSub a keyPrefix Mastra's does not use \(the default, 'durable-agent:'\)/,
        ),
      }
      const calls: (() => Promise<unknown>)[] = [
        () => ours.getHistory(topic),
        () => ours.publish(topic, event(9)),
        () => ours.subscribeWithReplay(topic, { offset: 0 }).next(),
        () => ours.subscribeWithReplay(topic, () => {}),
        () => ours.subscribeFromOffset(topic, 1, () => {}),
        () => ours.subscribe(topic, () => {}),
      ]
      for (const call of calls) {
        const error = await call().then(
          () => undefined,
          (e: unknown) => e as Error,
        )
        expect(error).toMatchObject(expected)
        expect((error!.cause as { code?: string }).code).toBe(ErrorCodes.WRONG_TYPE)
      }
      // Mastra's topic is as it was.
      expect(ns(await mastra.getHistory(topic))).toEqual([0, 1])
      expect(ours.stats().callbackSubscriptions).toBe(0)
      await mastra.clearTopic(topic)
    }))

  it("reads what releases up to 0.1.0 stored under 'pubsub:' (topics and a suspended run) with keyPrefix: 'pubsub:'", () =>
    withCache(async (cache) => {
      // Stored as those releases did by default.
      const before = new CachingPubSub(null, cache, { keyPrefix: 'pubsub:' })
      for (let n = 0; n < 3; n++) await before.publish('agent.stream.old', event(n))
      const model = new MockLanguageModelV3({
        doStream: async () => ({
          stream: new ReadableStream({
            start(controller) {
              const steps = model.doStreamCalls.length
              if (steps === 1) controller.enqueue({ type: 'tool-call', toolCallId: 'c1', toolName: 'refund', input: '{"order":"A-1"}' })
              else controller.enqueue({ type: 'text-delta', id: 't', delta: 'Refunded.' })
              controller.enqueue({
                type: 'finish',
                finishReason: { unified: steps === 1 ? 'tool-calls' : 'stop', raw: 'x' },
                usage: {
                  inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined },
                  outputTokens: { total: 1, text: 1, reasoning: undefined },
                },
              })
              controller.close()
            },
          }),
        }),
      })
      const refunded: unknown[] = []
      const definition = {
        id: 'support',
        model,
        tools: {
          refund: {
            inputSchema: { type: 'object', properties: { order: { type: 'string' } }, required: ['order'] },
            needsApproval: true,
            execute: async (input: unknown) => void refunded.push(input),
          },
        },
      }
      const suspended = await createDurableAgent({ agent: definition, pubsub: before, cleanupTimeoutMs: 0 }).stream('Refund A-1')
      expect((await suspended.output.getFullOutput()).outcome).toBe('suspended')

      // After the upgrade, the default prefix does not see them ...
      const upgraded = new CachingPubSub(null, cache)
      expect(await upgraded.getHistory('agent.stream.old')).toEqual([])
      const defaultAgent = createDurableAgent({ agent: definition, pubsub: upgraded, cleanupTimeoutMs: 0 })
      await expect(defaultAgent.approveToolCall({ runId: suspended.runId })).rejects.toMatchObject({ code: ErrorCodes.RUN_NOT_FOUND })
      // ... and keyPrefix: 'pubsub:' reads them, and resumes the run.
      const configured = new CachingPubSub(null, cache, { keyPrefix: 'pubsub:' })
      expect(ns(await configured.getHistory('agent.stream.old'))).toEqual([0, 1, 2])
      const agent = createDurableAgent({ agent: definition, pubsub: configured, cleanupTimeoutMs: 0 })
      const rest = await agent.approveToolCall({ runId: suspended.runId })
      const parts = (await drain(rest.fullStream, 'the resumed run')) as StreamPart[]
      expect(parts.at(-1)).toMatchObject({ type: 'finish', finishReason: 'stop' })
      expect(await rest.text).toBe('Refunded.')
      expect(refunded).toEqual([{ order: 'A-1' }])
      await agent.cleanup(suspended.runId)
      await configured.clearTopic('agent.stream.old')
    }))
})
