/**
 * The agent handler over real HTTP on loopback (Node's `http` through
 * `toNodeHandler`, and Hono): SSE framing, resuming from every kind of
 * position, the coded error answers, tenant scoping, stop, approvals, direct
 * streams (`CachingTransformStream`) and the agent's `resumeFromEventId`.
 */
import { Hono } from 'hono'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'

import {
  CachingPubSub,
  CachingTransformStream,
  createAgentHandler,
  ErrorCodes,
  InMemoryServerCache,
  RedisServerCache,
  runTopic,
  type AgentHandlerOptions,
  type DurableAgent,
  type StreamPart,
} from '../dist/index.js'
import { createDemoAgent, expectedText } from '../examples/web/demo-agent.mjs'
import { eventually, REDIS_URL, uniquePrefix } from './helpers.js'
import { Gate, readSse, readSseUntil, serve, type TestServer } from './http-helpers.js'

const gate = new Gate()
let agent: DurableAgent
let server: TestServer
let api: string

function setUp(options: AgentHandlerOptions = {}, made = createDemoAgent({ cache: new InMemoryServerCache({ maxSize: 100_000 }), pace: gate.pass })) {
  return async () => {
    agent = made
    server = await serve(createAgentHandler(agent, { basePath: '/api', ...options }))
    api = `${server.url}/api`
  }
}

afterEach(() => gate.open())

// eslint-style `any`: the answers' shapes are what the tests check.
const json = (response: Response): Promise<any> => response.json() as Promise<any>

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${api}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })

/** The stored parts of a run, by index (what every reader must get). */
async function storedParts(runId: string): Promise<Map<number, StreamPart>> {
  const events = await agent.pubsub.getHistory(runTopic(runId))
  return new Map(events.filter((e) => e.type === 'chunk').map((e) => [e.index, e.data as StreamPart]))
}

/** Starts a run over HTTP and reads it to its end. */
async function runToEnd(question: string, extra: Record<string, unknown> = {}) {
  const response = await post('/runs', { messages: question, ...extra })
  expect(response.status).toBe(200)
  const runId = response.headers.get('x-run-id')!
  const { messages } = await readSse(response)
  return { runId, messages, response }
}

const dataOf = (messages: { event?: string; data: string; id?: string }[]) => messages.filter((m) => m.event === undefined)
const textOf = (messages: { event?: string; data: string }[]) =>
  dataOf(messages)
    .map((m) => JSON.parse(m.data) as StreamPart)
    .map((p) => (p.type === 'text-delta' ? p.text : ''))
    .join('')

describe('createAgentHandler over Node http', () => {
  beforeAll(setUp({ heartbeatMs: 40 }))
  afterAll(() => server.close())

  it('POST /runs streams the run: each part as stored with id: <index>, retry:, proxy-friendly headers, then the end', async () => {
    const { runId, messages, response } = await runToEnd('hello')
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)
    expect(response.headers.get('cache-control')).toContain('no-cache')
    expect(response.headers.get('x-accel-buffering')).toBe('no')
    expect(response.headers.get('content-location')).toBe(`/api/runs/${runId}/stream`)
    const stored = await storedParts(runId)
    const data = dataOf(messages)
    expect(data.map((m) => Number(m.id))).toEqual([...stored.keys()])
    expect(data.map((m) => JSON.parse(m.data))).toEqual([...stored.values()])
    expect(textOf(messages)).toBe(expectedText('hello'))
    const end = messages.at(-1)!
    expect(end.event).toBe('end')
    expect(JSON.parse(end.data)).toEqual({ status: 'finished', nextIndex: data.length })
  })

  it('heartbeats while a run is idle; a client that goes away does not stop it', async () => {
    gate.close()
    const response = await post('/runs', { messages: 'slow' })
    const runId = response.headers.get('x-run-id')!
    const { comments } = await readSseUntil(response, (_, comments) => comments.length >= 2)
    expect(comments.every((c) => c.trim() === 'ping')).toBe(true)
    // The reader above cancelled its body: the client is gone. The run goes on.
    gate.open()
    await eventually(async () => (await agent.getRun(runId)).status === 'finished', 10_000, 'the run to finish')
    const replay = await readSse(await fetch(`${api}/runs/${runId}/stream`))
    expect(textOf(replay.messages)).toBe(expectedText('slow'))
  })

  it('a run deleted under a waiting stream ends it with an error message (ERR_RUN_NOT_FOUND) at its next heartbeat, not a wait for ever', async () => {
    gate.close()
    const response = await post('/runs', { messages: 'deleted' })
    const runId = response.headers.get('x-run-id')!
    const reading = readSse(response)
    await eventually(async () => (await agent.getRun(runId)).nextIndex >= 3, 5_000, 'the run to start')
    // Deleted while its model waits: no terminal part will ever come.
    await agent.cleanup(runId)
    const { messages } = await reading
    expect(messages.at(-1)!.event).toBe('error')
    expect(JSON.parse(messages.at(-1)!.data)).toMatchObject({ code: ErrorCodes.RUN_NOT_FOUND })
    expect((await fetch(`${api}/runs/${runId}/stream`)).status).toBe(404)
  })

  it('resumes after Last-Event-ID (the last event applied), or from ?offset= (the first to send); no position: from the start', async () => {
    const { runId, messages } = await runToEnd('resume me')
    const stored = await storedParts(runId)
    const last = stored.size - 1
    for (const lastEventId of [0, 7, Math.floor(last / 2), last - 1]) {
      const { messages: resumed } = await readSse(await fetch(`${api}/runs/${runId}/stream`, { headers: { 'Last-Event-ID': String(lastEventId) } }))
      expect(dataOf(resumed).map((m) => Number(m.id))).toEqual([...stored.keys()].filter((i) => i > lastEventId))
      expect(dataOf(resumed).map((m) => JSON.parse(m.data))).toEqual([...stored.entries()].filter(([i]) => i > lastEventId).map(([, p]) => p))
    }
    const fromOffset = await readSse(await fetch(`${api}/runs/${runId}/stream?offset=5`))
    expect(Number(dataOf(fromOffset.messages)[0]!.id)).toBe(5)
    // A reconnecting EventSource keeps its URL and sends Last-Event-ID: the header wins.
    const both = await readSse(await fetch(`${api}/runs/${runId}/stream?offset=5`, { headers: { 'last-event-id': '20' } }))
    expect(Number(dataOf(both.messages)[0]!.id)).toBe(21)
    const whole = await readSse(await fetch(`${api}/runs/${runId}/stream`))
    expect(dataOf(whole.messages)).toEqual(dataOf(messages))
  })

  it('a position at the end of an ended run gets the end message at once (never an empty 200 or a wait); the UI format says 204', async () => {
    const { runId } = await runToEnd('ended')
    const { nextIndex } = await agent.getRun(runId)
    const response = await fetch(`${api}/runs/${runId}/stream`, { headers: { 'last-event-id': String(nextIndex - 1) } })
    expect(response.status).toBe(200)
    const { messages } = await readSse(response, 2_000)
    expect(messages).toEqual([{ event: 'end', data: JSON.stringify({ status: 'finished', nextIndex }), id: undefined }])
    const ui = await fetch(`${api}/runs/${runId}/stream?format=ui`, { headers: { 'last-event-id': String(nextIndex - 1) } })
    expect(ui.status).toBe(204)
  })

  it('a position past the end is 409 ERR_TOPIC_REWRITTEN with the next index, on an ended and on a running run', async () => {
    const { runId } = await runToEnd('future')
    const { nextIndex } = await agent.getRun(runId)
    for (const lastEventId of [nextIndex, nextIndex + 100]) {
      const response = await fetch(`${api}/runs/${runId}/stream`, { headers: { 'last-event-id': String(lastEventId) } })
      expect(response.status).toBe(409)
      expect(await json(response)).toMatchObject({ code: ErrorCodes.TOPIC_REWRITTEN, nextIndex })
    }
    gate.close()
    const running = await post('/runs', { messages: 'running' })
    const id = running.headers.get('x-run-id')!
    await running.body!.cancel()
    const next = (await agent.getRun(id)).nextIndex
    const ahead = await fetch(`${api}/runs/${id}/stream`, { headers: { 'last-event-id': String(next + 3) } })
    expect(ahead.status).toBe(409)
    expect((await json(ahead)).code).toBe(ErrorCodes.TOPIC_REWRITTEN)
    // Right at the end of a running run: a live stream that waits for the next event.
    const atEnd = await fetch(`${api}/runs/${id}/stream`, { headers: { 'last-event-id': String(next - 1) } })
    expect(atEnd.status).toBe(200)
    gate.open()
    const { messages } = await readSse(atEnd)
    expect(Number(dataOf(messages)[0]!.id)).toBe(next)
    expect(messages.at(-1)!.event).toBe('end')
  })

  it('malformed positions are 400 ERR_INVALID_ARG, before anything is read', async () => {
    const { runId } = await runToEnd('malformed')
    for (const value of ['abc', '-1', '1.5', '01', '1e3', '0x10', '99999999999999999999']) {
      const response = await fetch(`${api}/runs/${runId}/stream`, { headers: { 'last-event-id': value } })
      expect(response.status, value).toBe(400)
      expect((await json(response)).code).toBe(ErrorCodes.INVALID_ARG)
      const offset = await fetch(`${api}/runs/${runId}/stream?offset=${encodeURIComponent(value)}`)
      expect(offset.status, `offset ${value}`).toBe(400)
      await offset.body?.cancel()
    }
  })

  it('answers with coded JSON: unknown run 404, unknown route 404, wrong method 405, bad bodies 400, a body too large 413', async () => {
    const expectAnswer = async (response: Response, status: number, code: string) => {
      expect(response.status).toBe(status)
      expect(response.headers.get('content-type')).toMatch(/^application\/json/)
      const body = await json(response)
      expect(body.code).toBe(code)
      expect(typeof body.message).toBe('string')
    }
    await expectAnswer(await fetch(`${api}/runs/no-such-run/stream`), 404, ErrorCodes.RUN_NOT_FOUND)
    await expectAnswer(await fetch(`${api}/runs/no-such-run`), 404, ErrorCodes.RUN_NOT_FOUND)
    await expectAnswer(await post('/runs/no-such-run/stop', {}), 404, ErrorCodes.RUN_NOT_FOUND)
    await expectAnswer(await fetch(`${api}/nothing-here`), 404, ErrorCodes.NO_ROUTE)
    await expectAnswer(await fetch(`${server.url}/elsewhere/runs`), 404, ErrorCodes.NO_ROUTE)
    await expectAnswer(await fetch(`${api}/runs/x/stream`, { method: 'DELETE' }), 405, ErrorCodes.NO_ROUTE)
    await expectAnswer(await fetch(`${api}/runs`, { method: 'POST', body: '{not json' }), 400, ErrorCodes.INVALID_ARG)
    await expectAnswer(await fetch(`${api}/runs`, { method: 'POST', body: '[1,2]' }), 400, ErrorCodes.INVALID_ARG)
    await expectAnswer(await post('/runs', { messages: 42 }), 400, ErrorCodes.INVALID_MESSAGES)
    await expectAnswer(await post('/runs', { messages: [{ role: 'robot', content: 'x' }] }), 400, ErrorCodes.INVALID_MESSAGES)
    await expectAnswer(await post('/runs', { messages: 'x', runId: 'has spaces' }), 400, ErrorCodes.INVALID_ARG)
    await expectAnswer(await post('/runs', { messages: 'x', maxSteps: 1000 }), 400, ErrorCodes.INVALID_ARG)
    await expectAnswer(await post('/runs', { messages: 'x', modelSettings: { headers: { authorization: 'x' } } }), 400, ErrorCodes.INVALID_ARG)
    await expectAnswer(await post('/runs', { messages: 'x'.repeat(1024 * 1024 + 10) }), 413, ErrorCodes.INVALID_ARG)
    const { runId } = await runToEnd('twice')
    await expectAnswer(await post('/runs', { messages: 'again', runId }), 409, ErrorCodes.RUN_EXISTS)
  })

  it('stop aborts the run where it is driven: the stream ends with abort; the stopped run answers its status', async () => {
    gate.close()
    const response = await post('/runs', { messages: 'stop me' })
    const runId = response.headers.get('x-run-id')!
    const reading = readSse(response)
    await eventually(() => gate.reached > 0, 5_000, 'the model to start')
    const stopped = await post(`/runs/${runId}/stop`, { reason: 'user pressed stop' })
    expect([200, 202]).toContain(stopped.status)
    const { messages } = await reading
    const parts = dataOf(messages).map((m) => JSON.parse(m.data) as StreamPart)
    expect(parts.at(-1)).toEqual({ type: 'abort', reason: 'user pressed stop' })
    expect(JSON.parse(messages.at(-1)!.data)).toMatchObject({ status: 'aborted' })
    const status = await json(await fetch(`${api}/runs/${runId}`))
    expect(status).toMatchObject({ runId, status: 'aborted', pendingApprovals: [] })
  })

  it('a run waiting for approval ends its stream at the approval request; approve and decline continue it', async () => {
    const { runId, messages } = await runToEnd('please refund my order')
    const parts = dataOf(messages).map((m) => JSON.parse(m.data) as StreamPart)
    expect(parts.at(-1)).toMatchObject({ type: 'tool-approval-request', toolCall: { toolCallId: 'refund-1' } })
    const end = JSON.parse(messages.at(-1)!.data)
    expect(end).toMatchObject({ status: 'suspended', pendingApprovals: [{ toolCallId: 'refund-1', toolName: 'issueRefund' }] })
    const status = await json(await fetch(`${api}/runs/${runId}`))
    expect(status).toMatchObject({ status: 'suspended', nextIndex: end.nextIndex, pendingApprovals: [{ toolCallId: 'refund-1' }] })
    // Watching a suspended run: its stream, ended at the suspension.
    const watched = await readSse(await fetch(`${api}/runs/${runId}/stream`), 5_000)
    expect(JSON.parse(watched.messages.at(-1)!.data)).toMatchObject({ status: 'suspended' })

    const wrongCall = await post(`/runs/${runId}/approve`, { toolCallId: 'no-such-call' })
    expect(wrongCall.status).toBe(400)
    expect((await json(wrongCall)).code).toBe(ErrorCodes.UNKNOWN_TOOL_CALL)
    const approved = await post(`/runs/${runId}/approve`, { toolCallId: 'refund-1' })
    expect(approved.status).toBe(200)
    const continuation = await readSse(approved)
    const first = dataOf(continuation.messages)[0]!
    expect(Number(first.id)).toBe(end.nextIndex)
    const after = dataOf(continuation.messages).map((m) => JSON.parse(m.data) as StreamPart)
    expect(after[0]).toMatchObject({ type: 'tool-result', toolCallId: 'refund-1' })
    expect(textOf(continuation.messages)).toMatch(/^Refund R-[0-9a-f]{8} issued: 42 EUR for order A-1001\.$/)
    expect(JSON.parse(continuation.messages.at(-1)!.data)).toMatchObject({ status: 'finished' })
    const again = await post(`/runs/${runId}/approve`, { toolCallId: 'refund-1' })
    expect(again.status).toBe(409)
    expect((await json(again)).code).toBe(ErrorCodes.RUN_NOT_SUSPENDED)

    const declinedRun = await runToEnd('refund it, or not')
    const declined = await readSse(await post(`/runs/${declinedRun.runId}/decline`, { toolCallId: 'refund-1', reason: 'not eligible' }))
    const declinedParts = dataOf(declined.messages).map((m) => JSON.parse(m.data) as StreamPart)
    expect(declinedParts[0]).toMatchObject({ type: 'tool-output-denied', toolCallId: 'refund-1' })
    expect(textOf(declined.messages)).toBe('Understood: no refund was issued (not eligible).')
  })

  it('GET /runs lists the running runs with their step, next index and whether this process drives them', async () => {
    gate.close()
    const started = await Promise.all([post('/runs', { messages: 'one' }), post('/runs', { messages: 'two' })])
    const ids = started.map((r) => r.headers.get('x-run-id')!)
    await Promise.all(started.map((r) => r.body!.cancel()))
    const { runs } = await json(await fetch(`${api}/runs`))
    const listed = runs.filter((r: { runId: string }) => ids.includes(r.runId))
    expect(listed).toHaveLength(2)
    for (const run of listed) {
      expect(run).toMatchObject({ status: 'running', step: 0, driven: true, drivenHere: true, nextIndex: expect.any(Number) })
      // Its lease is this process's.
      expect(run.drivenBy).toMatch(new RegExp(`^${process.pid}:`))
    }
    gate.open()
    for (const id of ids) await eventually(async () => (await agent.getRun(id)).status === 'finished', 10_000, 'the runs to finish')
  })

  it('CachingTransformStream: a direct stream becomes resumable by the same GET route, and says how it ended', async () => {
    const chunks = Array.from({ length: 6 }, (_, i) => ({ type: 'data-step', data: { step: i } }))
    const source = new ReadableStream({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(chunk)
        controller.close()
      },
    })
    const passed: unknown[] = []
    for await (const chunk of source.pipeThrough(new CachingTransformStream(agent.pubsub, runTopic('workflow-1'))) as unknown as AsyncIterable<unknown>) {
      passed.push(chunk)
    }
    expect(passed).toEqual(chunks)
    const { messages } = await readSse(await fetch(`${api}/runs/workflow-1/stream`, { headers: { 'last-event-id': '1' } }))
    expect(dataOf(messages).map((m) => [Number(m.id), JSON.parse(m.data)])).toEqual(chunks.slice(2).map((c, i) => [i + 2, c]))
    expect(JSON.parse(messages.at(-1)!.data)).toEqual({ status: 'finished', nextIndex: 7 })
    expect(await json(await fetch(`${api}/runs/workflow-1`))).toEqual({ runId: 'workflow-1', status: 'finished', nextIndex: 7 })

    const failing = new ReadableStream({
      pull(controller) {
        controller.error(new Error('the workflow step failed'))
      },
    })
    await expect(
      failing
        .pipeThrough(new CachingTransformStream(agent.pubsub, runTopic('workflow-2')))
        .getReader()
        .read(),
    ).rejects.toThrow('the workflow step failed')
    await eventually(async () => (await agent.pubsub.getHistory(runTopic('workflow-2'))).length === 1, 5_000, 'the error event')
    const failed = await readSse(await fetch(`${api}/runs/workflow-2/stream`))
    expect(JSON.parse(failed.messages.at(-1)!.data)).toEqual({
      status: 'failed',
      nextIndex: 1,
      error: { name: 'Error', message: 'the workflow step failed' },
    })
  })

  it("stream(messages, { runId, resumeFromEventId }) continues a client's view of a run after that event", async () => {
    const { runId } = await runToEnd('checkpoint')
    const stored = await storedParts(runId)
    const continued = await agent.stream([], { runId, resumeFromEventId: '9' })
    const parts: StreamPart[] = []
    for await (const part of continued.fullStream as unknown as AsyncIterable<StreamPart>) parts.push(part)
    expect(parts).toEqual([...stored.entries()].filter(([i]) => i > 9).map(([, p]) => p))
    const next = (await agent.getRun(runId)).nextIndex
    await expect(agent.stream([], { runId, resumeFromEventId: next })).rejects.toMatchObject({ code: ErrorCodes.TOPIC_REWRITTEN })
    await expect(agent.stream([], { runId, resumeFromEventId: 'x' })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARG })
    await expect(agent.stream([], { resumeFromEventId: 3 })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARG })
  })
})

describe('tenant scoping with authorize', () => {
  // A tenant is the x-tenant header; a run belongs to the resourceId it was started with.
  beforeAll(
    setUp({
      authorize: (request, { resourceId }) => {
        const tenant = request.headers.get('x-tenant')
        return tenant !== null && (resourceId === undefined || resourceId === tenant)
      },
    }),
  )
  afterAll(() => server.close())

  it('a refused request reads nothing and changes nothing; runs listed are the tenant’s own', async () => {
    gate.close()
    const started = await post('/runs', { messages: 'tenant a', resourceId: 'tenant-a' }, { 'x-tenant': 'tenant-a' })
    expect(started.status).toBe(200)
    const runId = started.headers.get('x-run-id')!
    const reading = readSse(started)
    const asB = { 'x-tenant': 'tenant-b' }
    const refused = [
      await fetch(`${api}/runs/${runId}/stream`, { headers: asB }),
      await fetch(`${api}/runs/${runId}`, { headers: asB }),
      await post(`/runs/${runId}/stop`, {}, asB),
      await post('/runs', { messages: 'as a', resourceId: 'tenant-a' }, asB),
      await fetch(`${api}/runs/${runId}/stream`),
    ]
    for (const response of refused) {
      expect(response.status).toBe(403)
      expect(response.headers.get('content-type')).toMatch(/^application\/json/)
      expect(await json(response)).toEqual({ code: ErrorCodes.FORBIDDEN, message: 'not authorized for this run' })
    }
    const listedForB = await json(await fetch(`${api}/runs`, { headers: asB }))
    expect(listedForB.runs.map((r: { runId: string }) => r.runId)).not.toContain(runId)
    const listedForA = await json(await fetch(`${api}/runs`, { headers: { 'x-tenant': 'tenant-a' } }))
    expect(listedForA.runs.map((r: { runId: string }) => r.runId)).toContain(runId)
    gate.open()
    const { messages } = await reading
    // B's stop changed nothing: the run finished.
    expect(JSON.parse(messages.at(-1)!.data)).toMatchObject({ status: 'finished' })
  })
})

describe('retention', () => {
  beforeAll(async () => {
    const cache = new InMemoryServerCache({ maxSize: 10_000 })
    const pubsub = new CachingPubSub(null, cache, { retention: { maxEvents: 10 } })
    await setUp({}, createDemoAgent({ pubsub, pace: gate.pass }))()
  })
  afterAll(() => server.close())

  it('an offset retention no longer holds is 410 ERR_OFFSET_EXPIRED with the earliest retained index; from there it streams', async () => {
    const { runId } = await runToEnd('a long answer to trim')
    const { nextIndex } = await agent.getRun(runId)
    const earliest = nextIndex - 10
    for (const init of [{}, { headers: { 'last-event-id': String(earliest - 2) } }]) {
      const response = await fetch(`${api}/runs/${runId}/stream`, init)
      expect(response.status).toBe(410)
      expect(await json(response)).toMatchObject({ code: ErrorCodes.OFFSET_EXPIRED, earliestIndex: earliest })
    }
    const { messages } = await readSse(await fetch(`${api}/runs/${runId}/stream`, { headers: { 'last-event-id': String(earliest - 1) } }))
    expect(dataOf(messages).map((m) => Number(m.id))).toEqual(Array.from({ length: 10 }, (_, i) => earliest + i))
  })
})

describe('as a Hono handler, over Redis', () => {
  let cache: RedisServerCache
  beforeAll(async () => {
    cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: uniquePrefix('http-hono') })
    agent = createDemoAgent({ cache, pace: gate.pass })
    const handler = createAgentHandler(agent, { basePath: '/agent' })
    const app = new Hono()
    app.get('/health', (c) => c.text('ok'))
    app.all('/agent/*', (c) => handler(c.req.raw))
    server = await serve((request) => app.fetch(request))
    api = `${server.url}/agent`
  })
  afterAll(async () => {
    await server.close()
    await cache.close()
  })

  it('starts, streams and resumes a run', async () => {
    expect(await (await fetch(`${server.url}/health`)).text()).toBe('ok')
    const { runId, messages } = await runToEnd('over hono')
    expect(textOf(messages)).toBe(expectedText('over hono'))
    const resumed = await readSse(await fetch(`${api}/runs/${runId}/stream`, { headers: { 'last-event-id': '3' } }))
    expect(dataOf(resumed.messages).map((m) => m.data)).toEqual(
      dataOf(messages)
        .slice(4)
        .map((m) => m.data),
    )
  })
})
