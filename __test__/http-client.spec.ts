/**
 * `resumableStream` against the agent handler over real HTTP on loopback:
 * sockets destroyed at random points (in the request, or after a random
 * number of response bytes) in 200 runs, each of which must end with
 * exactly the run's parts, in order; typed errors; the signal; giving up.
 */
import { describe, expect, it } from 'vitest'

import {
  AgentHttpError,
  CachingPubSub,
  createAgentHandler,
  ErrorCodes,
  InMemoryServerCache,
  resumableStream,
  runTopic,
  type StreamPart,
} from '../dist/index.js'
import { createDemoAgent, expectedText } from '../examples/web/demo-agent.mjs'
import { eventually, freePort, within } from './helpers.js'
import { cuttingFetch, demoServerPerFile, serve } from './http-helpers.js'

const RUNS = Number(process.env.HTTP_RUNS ?? 200)
const CONCURRENCY = 16
const SEED = Number(process.env.HTTP_SEED ?? Math.floor(Math.random() * 2 ** 31))

/** mulberry32: a seeded generator, so a failing seed can be replayed (HTTP_SEED). */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const demo = demoServerPerFile()
const { gate } = demo

async function storedParts(runId: string): Promise<StreamPart[]> {
  const events = await demo.agent.pubsub.getHistory(runTopic(runId))
  return events.filter((e) => e.type === 'chunk').map((e) => e.data as StreamPart)
}

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = []
  for await (const item of stream) items.push(item)
  return items
}

describe('resumableStream', () => {
  it(`${RUNS} runs, their client's socket destroyed 1 to 5 times each at random points: each ends with exactly its parts, in order (seed ${SEED})`, async () => {
    const rand = random(SEED)
    const plans = Array.from({ length: RUNS }, () => {
      const cuts = 1 + Math.floor(rand() * 5)
      // The first cut always lands (a run's first answer is longer than 1,500 bytes); later ones land where the answer is long enough.
      return Array.from({ length: cuts }, (_, i): number | 'request' => (rand() < 0.1 ? 'request' : Math.floor(rand() * (i === 0 ? 1_500 : 4_000))))
    })
    const failures: string[] = []
    let next = 0
    const worker = async () => {
      for (let i = next++; i < RUNS; i = next++) {
        const plan = [...plans[i]!]
        const fetch = cuttingFetch(() => plan.shift())
        let disconnects = 0
        const question = `run ${i}`
        const stream = resumableStream(`${demo.api}/runs`, {
          fetch,
          body: { messages: question },
          retry: { initialDelayMs: 1, maxDelayMs: 20 },
          onDisconnect: () => void (disconnects += 1),
        })
        const parts = await collect(stream)
        const stored = await storedParts(stream.runId!)
        const text = parts.map((p) => (p.type === 'text-delta' ? p.text : '')).join('')
        const problems = [
          JSON.stringify(parts) !== JSON.stringify(stored) && `parts differ from the stored run (${parts.length} against ${stored.length})`,
          text !== expectedText(question) && 'text differs',
          stream.end?.status !== 'finished' && `ended ${JSON.stringify(stream.end)}`,
          (disconnects < 1 || disconnects > 5 || disconnects !== fetch.cuts) && `${disconnects} disconnects for ${fetch.cuts} cuts`,
        ].filter(Boolean)
        if (problems.length > 0) failures.push(`run ${i} (${stream.runId}, plan ${JSON.stringify(plans[i])}): ${problems.join('; ')}`)
      }
    }
    await within(Promise.all(Array.from({ length: CONCURRENCY }, worker)), 240_000, `${RUNS} runs`)
    expect(failures, `seed ${SEED}`).toEqual([])
  }, 300_000)

  it('resumes from lastEventId, and a suspended run ends with its end; the approved continuation reads on from where it stopped', async () => {
    const stream = resumableStream(`${demo.api}/runs`, { body: { messages: 'refund please' } })
    const parts = await collect(stream)
    expect(parts.at(-1)).toMatchObject({ type: 'tool-approval-request' })
    expect(stream.end).toMatchObject({ status: 'suspended', pendingApprovals: [{ toolCallId: 'refund-1' }] })
    const approved = await fetch(`${demo.api}/runs/${stream.runId}/approve`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ toolCallId: 'refund-1' }),
    })
    await approved.body!.cancel() // read elsewhere: below
    const rest = resumableStream(`${demo.api}/runs/${stream.runId}/stream`, { lastEventId: stream.lastEventId! })
    const after = await collect(rest)
    expect(rest.end?.status).toBe('finished')
    expect([...parts, ...after]).toEqual(await storedParts(stream.runId!))
  })

  it('ends with a typed error carrying the server code: 404, 409 (a position past the end), 410 (expired)', async () => {
    const missing = resumableStream(`${demo.api}/runs/no-such-run/stream`)
    const notFound = await collect(missing).catch((error: unknown) => error)
    expect(notFound).toBeInstanceOf(AgentHttpError)
    expect(notFound).toMatchObject({ code: ErrorCodes.RUN_NOT_FOUND, status: 404 })

    const done = resumableStream(`${demo.api}/runs`, { body: { messages: 'short' } })
    await collect(done)
    const ahead = await collect(resumableStream(`${demo.api}/runs/${done.runId}/stream`, { lastEventId: done.lastEventId! + 5 })).catch((e: unknown) => e)
    expect(ahead).toMatchObject({ code: ErrorCodes.TOPIC_REWRITTEN, status: 409, body: { nextIndex: done.lastEventId! + 1 } })

    const trimmedAgent = createDemoAgent({
      pubsub: new CachingPubSub(null, new InMemoryServerCache({ maxSize: 1_000 }), { retention: { maxEvents: 5 } }),
      pace: gate.pass,
    })
    const trimmed = await serve(createAgentHandler(trimmedAgent))
    try {
      const run = resumableStream(`${trimmed.url}/runs`, { body: { messages: 'trim' } })
      await collect(run).catch(() => undefined) // the start's own stream may outrun retention or not
      await eventually(async () => (await trimmedAgent.getRun(run.runId!)).status === 'finished', 10_000, 'the run to finish')
      const expired = await collect(resumableStream(`${trimmed.url}/runs/${run.runId}/stream`)).catch((e: unknown) => e)
      const { nextIndex } = await trimmedAgent.getRun(run.runId!)
      expect(expired).toMatchObject({ code: ErrorCodes.OFFSET_EXPIRED, status: 410, body: { earliestIndex: nextIndex - 5 } })
    } finally {
      await trimmed.close()
    }
  })

  it('the signal ends the stream with its reason; the run goes on', async () => {
    gate.close()
    const controller = new AbortController()
    const stream = resumableStream(`${demo.api}/runs`, { body: { messages: 'abandoned' }, signal: controller.signal })
    const iterator = stream[Symbol.asyncIterator]()
    expect((await iterator.next()).value).toEqual({ type: 'start' })
    const reason = new Error('the page was closed')
    const reading = iterator.next()
    controller.abort(reason)
    await expect(reading).rejects.toBe(reason)
    gate.open()
    await eventually(async () => (await demo.agent.getRun(stream.runId!)).status === 'finished', 10_000, 'the run to finish')
  })

  it('a 503 (the store briefly away) is retried; a server that stays unreachable ends it with ERR_HTTP after retry.maxAttempts', async () => {
    let refusals = 2
    const handler = createAgentHandler(demo.agent, { basePath: '/api' })
    const flaky = await serve(async (request) => {
      if (request.method === 'GET' && refusals-- > 0)
        return new Response(JSON.stringify({ code: ErrorCodes.REDIS_UNAVAILABLE, message: 'away' }), { status: 503 })
      return handler(request)
    })
    try {
      const done = resumableStream(`${demo.api}/runs`, { body: { messages: 'flaky' } })
      await collect(done)
      let disconnects = 0
      const again = resumableStream(`${flaky.url}/api/runs/${done.runId}/stream`, { retry: { initialDelayMs: 1 }, onDisconnect: () => void disconnects++ })
      expect(await collect(again)).toEqual(await storedParts(done.runId!))
      expect(disconnects).toBe(2)
    } finally {
      await flaky.close()
    }
    const port = await freePort() // nothing listens there
    let attempts = 0
    const gone = resumableStream(`http://127.0.0.1:${port}/runs/x/stream`, {
      retry: { initialDelayMs: 1, maxAttempts: 3 },
      onReconnect: () => void attempts++,
    })
    const error = await collect(gone).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: ErrorCodes.HTTP, status: 0 })
    expect((error as Error).cause).toBeInstanceOf(Error)
    expect(attempts).toBe(3)
  })
})
