// Runs served over HTTP (SSE on loopback), on the same Redis: ours,
// createAgentHandler serving a durable agent's run (a RedisServerCache
// { url }), against Vercel's resumable-stream (its node-redis context; the
// route a Next.js app would write: resumeExistingStream piped to the
// response). Both streams carry the same SSE messages (`id:` and one `data:`
// line of a ~50-byte text delta), and the clients are fetch (undici) in this
// process, counting `data:` lines.
//
// - Reconnect to first event: a live stream that has 200 events and waits
//   for more; a client reconnects (ours: Last-Event-ID 100, theirs: resume,
//   which replays from the start: it has no cursor) and the clock stops at
//   its first event. Median of SAMPLES reconnects per rep.
// - Fan-out: 100 SSE clients on one fresh stream, all connected before its
//   producer starts; the producer then emits EVENTS events as fast as it
//   can; events delivered per second = 100 x EVENTS / (time until every
//   client has read the end).
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'

import { createResumableStreamContext } from 'resumable-stream/redis'

import { createAgentHandler, createDurableAgent, RedisServerCache, toNodeHandler } from '../../dist/index.js'
import { compare, connectNodeRedis, fmt, now, stats, target } from '../lib.mjs'

export const title = 'HTTP (SSE on loopback, same Redis): ours createAgentHandler over RedisServerCache vs Vercel resumable-stream (node-redis)'
export const columns = { ours: 'ours', theirs: 'resumable-stream' }

const HISTORY = 200
const RESUME_AFTER = 100
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

/** Reads an SSE response, counting `data:` lines; `onData(count)` after each chunk. Resolves with the count at the end. */
async function countData(response, onData) {
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let carry = ''
  let count = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return count
    const text = carry + decoder.decode(value, { stream: true })
    let at = -1
    while ((at = text.indexOf('\ndata: ', at + 1)) !== -1) count++
    carry = text.slice(-6)
    if (onData?.(count, reader) === false) {
      await reader.cancel()
      return count
    }
  }
}

/** Time from sending the request to the first `data:` line of its answer, in ms. */
async function firstEvent(url, headers) {
  const start = now()
  const response = await fetch(url, { headers })
  if (response.status !== 200) throw new Error(`reconnect answered ${response.status}`)
  await countData(response, (count) => count === 0)
  return now() - start
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

    // Reconnect to first event.
    const oursLive = await startRun(HISTORY, 0)
    const theirsLive = await startStream(HISTORY, 0)
    const settle = async () => {
      for (const deadline = now() + 10_000; now() < deadline; await new Promise((r) => setTimeout(r, 10))) {
        if ((await agent.getRun(oursLive.runId)).nextIndex >= HISTORY + 3) return
      }
      throw new Error('the run did not reach its history')
    }
    await settle()
    log(`reconnect: ${samples} reconnects per rep, ${reps} reps`)
    const reconnect = await compare(
      {
        ours: async () => {
          const ms = []
          for (let i = 0; i < samples; i++) {
            ms.push(await firstEvent(`${ours.url}/api/runs/${oursLive.runId}/stream`, { 'last-event-id': String(RESUME_AFTER) }))
          }
          return stats(ms).median
        },
        theirs: async () => {
          const ms = []
          for (let i = 0; i < samples; i++) ms.push(await firstEvent(`${theirs.url}/rs/${theirsLive.id}`, {}))
          return stats(ms).median
        },
      },
      { reps },
    )
    oursLive.release()
    theirsLive.release()
    await theirsLive.drained

    // Fan-out to 100 SSE clients.
    const fanOut = async (url, expected, release) => {
      const connected = []
      const ended = []
      for (let c = 0; c < CLIENTS; c++) {
        const ready = deferred()
        connected.push(ready.promise)
        ended.push(
          fetch(url).then((response) => {
            if (response.status !== 200) throw new Error(`a fan-out client got ${response.status}`)
            ready.resolve()
            return countData(response)
          }),
        )
      }
      await Promise.all(connected)
      const start = now()
      release()
      const counts = await Promise.all(ended)
      const seconds = (now() - start) / 1000
      if (counts.some((count) => count < expected)) throw new Error(`a fan-out client got ${Math.min(...counts)} of ${expected} events`)
      return (CLIENTS * events) / seconds
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
      `reconnect: ours resumes after Last-Event-ID ${RESUME_AFTER} of ${HISTORY}; resumable-stream has no cursor, so its resume replays all ${HISTORY} (its producer sends them in one pub/sub message). ` +
        `Fan-out: ${CLIENTS} fetch clients in this process, ${events} events each; the servers run in this process too.`,
    )
    const reconnectRatio = reconnect.ours.median / reconnect.theirs.median
    const fanoutRatio = fanout.ours.median / fanout.theirs.median
    return [
      {
        metric: 'reconnect to first event',
        unit: 'ms',
        better: 'lower',
        values: reconnect,
        target: { ...target(reconnectRatio, '<=', 1, 'ours/theirs <= 1'), versus: 'resumable-stream', referenceValue: reconnect.theirs.median, display: `${fmt(reconnectRatio)}x` },
      },
      {
        metric: `events delivered per second, ${CLIENTS} SSE clients of one stream`,
        unit: 'events/s',
        better: 'higher',
        values: fanout,
        target: { ...target(fanoutRatio, '>=', 1, 'ours/theirs >= 1'), versus: 'resumable-stream', referenceValue: fanout.theirs.median, display: `${fmt(fanoutRatio)}x` },
      },
    ]
  } finally {
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
