// Runs served over HTTP (SSE on loopback), on the same Redis: ours,
// createAgentHandler serving a durable agent's run (a RedisServerCache
// { url }), against Vercel's resumable-stream (its node-redis context; the
// route a Next.js app would write: resumeExistingStream piped to the
// response). Both streams carry the same SSE messages (`id:` and one `data:`
// line of a ~50-byte text delta). The clients are fetch (undici) in a child
// process (http-clients-child.mjs), counting `data:` lines; both servers and
// the streams' producers share this one.
//
// - Reconnect to first event: a live stream that has 200 (then 2,000) events
//   and waits for more; a client reconnects (ours: with Last-Event-ID, theirs:
//   resume, which replays from the start: it has no cursor) and the clock
//   stops at its first event. Median of 40 reconnects per rep.
// - Fan-out: 100 SSE clients on one fresh stream, all connected before its
//   producer starts; the producer then emits EVENTS events as fast as it
//   can; events delivered per second = 100 x EVENTS / (time until every
//   client has read the end).
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { fileURLToPath } from 'node:url'

import { createResumableStreamContext } from 'resumable-stream/redis'

import { createAgentHandler, createDurableAgent, RedisServerCache, toNodeHandler } from '../../dist/index.js'
import { compare, connectNodeRedis, fmt, now, stats, target } from '../lib.mjs'

export const title = 'HTTP (SSE on loopback, same Redis): ours createAgentHandler over RedisServerCache vs Vercel resumable-stream (node-redis)'
export const columns = { ours: 'ours', theirs: 'resumable-stream' }

/** Live streams a client reconnects to: their length so far, and the last event the client had (ours resumes after it). */
const RECONNECTS = [
  { history: 200, after: 100 },
  { history: 200, after: 190 },
  { history: 2_000, after: 1_000 },
  { history: 2_000, after: 1_990 },
]
const CLIENTS = 100
const usage = { inputTokens: { total: 1, noCache: 1 }, outputTokens: { total: 1, text: 1 } }
const delta = (i) => ({ type: 'text-delta', id: 't', delta: `word-${i} ` })

/** A model that streams `before` deltas, waits for `release`, then streams `after` more as fast as it is read. */
function heldModel(plans) {
  return {
    specificationVersion: 'v3',
    provider: 'bench',
    modelId: 'held',
    supportedUrls: {},
    async doGenerate() {
      throw new Error('stream only')
    },
    async doStream({ prompt }) {
      const plan = plans.get(prompt.at(-1).content[0].text)
      return {
        stream: new ReadableStream({
          async start(controller) {
            controller.enqueue({ type: 'stream-start', warnings: [] })
            controller.enqueue({ type: 'text-start', id: 't' })
            for (let i = 0; i < plan.before; i++) controller.enqueue(delta(i))
            await plan.release
            for (let i = 0; i < plan.after; i++) controller.enqueue(delta(plan.before + i))
            controller.enqueue({ type: 'text-end', id: 't' })
            controller.enqueue({ type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage })
            controller.close()
          },
        }),
      }
    },
  }
}

function deferred() {
  let resolve
  const promise = new Promise((r) => (resolve = r))
  return { promise, resolve }
}

/** The SSE message theirs carries for event `i` (the same bytes ours writes for a text delta). */
const theirMessage = (i) => `id: ${i}\ndata: ${JSON.stringify({ type: 'text-delta', id: 't', text: `word-${i} ` })}\n\n`

async function listen(listener) {
  const server = createServer(listener)
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${server.address().port}` }
}

const CHILD = fileURLToPath(new URL('../http-clients-child.mjs', import.meta.url))

/** The clients' process: `ask(command)` resolves with its reply (see http-clients-child.mjs). */
function clientsProcess() {
  const child = fork(CHILD, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let waiting
  child.on('message', (message) => {
    const pending = waiting
    waiting = undefined
    if (message.error) pending?.reject(new Error(`http clients: ${message.error}`))
    else pending?.resolve(message)
  })
  child.on('exit', (code) => waiting?.reject(new Error(`the http clients process exited (${code})`)))
  return {
    ask(command) {
      return new Promise((resolve, reject) => {
        waiting = { resolve, reject }
        if (command) child.send(command)
      })
    },
    /** The next reply, to a command already sent. */
    next() {
      return this.ask(undefined)
    },
    stop: () => child.kill(),
  }
}

export async function run(ctx) {
  const { quick, reps, log, redisUrl, note } = ctx
  const samples = quick ? 10 : 40
  const events = quick ? 300 : 1_000
  const prefix = `bench:http:${randomBytes(6).toString('hex')}:`
  const clients = []
  const servers = []
  const plans = new Map()
  const cache = new RedisServerCache({ url: redisUrl }, { keyPrefix: prefix })
  const clientsChild = clientsProcess()
  const reconnectMs = async (url, headers) => stats((await clientsChild.ask({ cmd: 'reconnect', url, headers, samples })).ms).median
  try {
    // Ours: the agent handler on its own server.
    const agent = createDurableAgent({ agent: { id: 'bench-http', model: heldModel(plans) }, cache, cleanupTimeoutMs: 0 })
    const ours = await listen(toNodeHandler(createAgentHandler(agent, { basePath: '/api' })))
    servers.push(ours.server)
    const startRun = async (before, after) => {
      const release = deferred()
      const question = `q-${randomBytes(6).toString('hex')}`
      plans.set(question, { before, after, release: release.promise })
      const { runId } = await agent.stream(question)
      return { runId, release: release.resolve }
    }

    // Theirs: resumable-stream's context on two node-redis connections, and the resume route.
    const publisher = await connectNodeRedis(redisUrl, clients)
    const subscriber = await connectNodeRedis(redisUrl, clients)
    const rs = createResumableStreamContext({ waitUntil: null, publisher, subscriber, keyPrefix: `${prefix}rs` })
    const theirs = await listen(async (req, res) => {
      const id = req.url.split('/').pop()
      const stream = await rs.resumeExistingStream(id)
      if (!stream) {
        res.writeHead(stream === null ? 204 : 404).end()
        return
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' })
      res.flushHeaders()
      const reader = stream.getReader()
      res.once('close', () => void reader.cancel().catch(() => {}))
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        if (!res.write(value)) await new Promise((resolve) => res.once('drain', resolve))
      }
      res.end()
    })
    servers.push(theirs.server)
    const startStream = async (before, after) => {
      const release = deferred()
      const id = `s-${randomBytes(6).toString('hex')}`
      const source = new ReadableStream({
        async start(controller) {
          for (let i = 0; i < before; i++) controller.enqueue(theirMessage(i))
          await release.promise
          for (let i = 0; i < after; i++) controller.enqueue(theirMessage(before + i))
          controller.close()
        },
      })
      const original = await rs.createNewResumableStream(id, () => source)
      // The first client, which reads the stream as it is made.
      const drained = (async () => {
        const reader = original.getReader()
        while (!(await reader.read()).done);
      })()
      return { id, release: release.resolve, drained }
    }

    // Reconnect to first event, on a short and on a long live stream.
    const reconnects = []
    for (const { history, after } of RECONNECTS) {
      const oursLive = await startRun(history, 0)
      const theirsLive = await startStream(history, 0)
      for (const deadline = now() + 10_000; (await agent.getRun(oursLive.runId)).nextIndex < history + 3; await new Promise((r) => setTimeout(r, 10))) {
        if (now() > deadline) throw new Error('the run did not reach its history')
      }
      log(`reconnect (${history} events, after ${after}): ${samples} reconnects per rep, ${reps} reps`)
      const values = await compare(
        {
          // Events 0-2 are start, start-step and text-start: delta k is event k + 2.
          ours: () => reconnectMs(`${ours.url}/api/runs/${oursLive.runId}/stream`, { 'last-event-id': String(after + 2) }),
          theirs: () => reconnectMs(`${theirs.url}/rs/${theirsLive.id}`, {}),
        },
        { reps },
      )
      reconnects.push({ history, after, values })
      oursLive.release()
      theirsLive.release()
      await theirsLive.drained
    }

    // Fan-out to 100 SSE clients.
    const fanOut = async (url, expected, release) => {
      await clientsChild.ask({ cmd: 'connect', url, clients: CLIENTS, expected })
      const start = performance.timeOrigin + now()
      release()
      const { doneAt } = await clientsChild.next()
      return (CLIENTS * events) / ((doneAt - start) / 1000)
    }
    log(`fan-out: ${CLIENTS} clients, ${events} events, ${reps} reps`)
    const fanout = await compare(
      {
        ours: async () => {
          const live = await startRun(0, events)
          return fanOut(`${ours.url}/api/runs/${live.runId}/stream`, events, live.release)
        },
        theirs: async () => {
          const live = await startStream(0, events)
          const rate = await fanOut(`${theirs.url}/rs/${live.id}`, events, live.release)
          await live.drained
          return rate
        },
      },
      { reps },
    )
    note(
      `reconnect: ours resumes after the client's last event (Last-Event-ID); resumable-stream has no cursor, so its resume replays the whole stream ` +
        `(its producer sends what it has in one pub/sub message). The 200-event stream is resumed halfway; the 2,000-event one (a long answer) near its end, after a brief drop. ` +
        `Fan-out: ${CLIENTS} fetch clients (in the clients' process), ${events} events each.`,
    )
    const fanoutRatio = fanout.ours.median / fanout.theirs.median
    return [
      ...reconnects.map(({ history, after, values }) => {
        const ratio = values.ours.median / values.theirs.median
        return {
          metric: `reconnect to first event, ${history}-event stream, after event ${after}`,
          unit: 'ms',
          better: 'lower',
          values,
          target: {
            ...target(ratio, '<=', 1, 'ours/theirs <= 1'),
            versus: 'resumable-stream',
            referenceValue: values.theirs.median,
            display: `${fmt(ratio)}x`,
          },
        }
      }),
      {
        metric: `events delivered per second, ${CLIENTS} SSE clients of one stream`,
        unit: 'events/s',
        better: 'higher',
        values: fanout,
        target: {
          ...target(fanoutRatio, '>=', 1, 'ours/theirs >= 1'),
          versus: 'resumable-stream',
          referenceValue: fanout.theirs.median,
          display: `${fmt(fanoutRatio)}x`,
        },
      },
    ]
  } finally {
    clientsChild.stop()
    for (const server of servers) {
      server.closeAllConnections()
      server.close()
    }
    await Promise.all(clients.map((client) => client.quit().catch(() => {})))
    // Both sides' keys live under the prefix (resumable-stream's under `<prefix>rs`).
    await cache.clear().catch(() => {})
    await cache.close()
  }
}
