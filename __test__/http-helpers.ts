/**
 * Shared by the HTTP specs: real servers on loopback, a fetch over
 * `node:http` that destroys sockets where a test says, SSE read with
 * eventsource-parser, and a gate a scripted model waits at.
 */
import { request as httpRequest, createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { afterAll, afterEach, beforeAll } from 'vitest'

import { createAgentHandler, InMemoryServerCache, toNodeHandler, type DurableAgent } from '../dist/index.js'
import { createDemoAgent } from '../examples/web/demo-agent.mjs'

export interface TestServer {
  url: string
  server: Server
  close(): Promise<void>
}

/** A Web-standard `handler` served by Node's `http` on 127.0.0.1, through `toNodeHandler`. */
export async function serve(handler: (request: Request) => Response | Promise<Response>): Promise<TestServer> {
  const server = createServer(toNodeHandler(async (request) => handler(request)))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** The web demo's agent in memory, its model paced by `gate`, served under `/api`. */
async function serveDemoAgent(gate: Gate): Promise<{ agent: DurableAgent; server: TestServer; api: string }> {
  const agent = createDemoAgent({ cache: new InMemoryServerCache({ maxSize: 100_000 }), pace: gate.pass })
  const server = await serve(createAgentHandler(agent, { basePath: '/api' }))
  return { agent, server, api: `${server.url}/api` }
}

/**
 * `serveDemoAgent` for a whole spec file: the returned object's `agent`,
 * `server` and `api` are set before its tests run; the server closes after
 * them, and the gate opens after each.
 */
export function demoServerPerFile(): { gate: Gate; agent: DurableAgent; server: TestServer; api: string } {
  const demo = { gate: new Gate() } as { gate: Gate; agent: DurableAgent; server: TestServer; api: string }
  beforeAll(async () => void Object.assign(demo, await serveDemoAgent(demo.gate)))
  afterAll(() => demo.server.close())
  afterEach(() => demo.gate.open())
  return demo
}

/** Every SSE message of a response body, and the comments, read to its end (which must come within `ms`). */
export async function readSse(response: Response, ms = 10_000): Promise<{ messages: EventSourceMessage[]; comments: string[]; retry?: number }> {
  const messages: EventSourceMessage[] = []
  const comments: string[] = []
  let retry: number | undefined
  const parser = createParser({ onEvent: (m) => messages.push(m), onComment: (c) => comments.push(c), onRetry: (r) => (retry = r) })
  const decoder = new TextDecoder()
  const reader = response.body!.getReader()
  const timer = setTimeout(() => void reader.cancel(new Error(`the SSE stream did not end within ${ms} ms`)), ms)
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      parser.feed(decoder.decode(value, { stream: true }))
    }
  } finally {
    clearTimeout(timer)
  }
  return { messages, comments, ...(retry !== undefined ? { retry } : {}) }
}

/** Reads SSE messages until `until` says stop (then cancels the body): for streams that do not end by themselves. */
export async function readSseUntil(
  response: Response,
  until: (messages: EventSourceMessage[], comments: string[]) => boolean,
  ms = 10_000,
): Promise<{ messages: EventSourceMessage[]; comments: string[] }> {
  const messages: EventSourceMessage[] = []
  const comments: string[] = []
  const parser = createParser({ onEvent: (m) => messages.push(m), onComment: (c) => comments.push(c) })
  const decoder = new TextDecoder()
  const reader = response.body!.getReader()
  const deadline = Date.now() + ms
  try {
    while (!until(messages, comments)) {
      if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms (${messages.length} messages)`)
      const { done, value } = await reader.read()
      if (done) throw new Error(`the stream ended before the condition (${messages.length} messages)`)
      parser.feed(decoder.decode(value, { stream: true }))
    }
  } finally {
    await reader.cancel().catch(() => {})
  }
  return { messages, comments }
}

/**
 * A `fetch` over `node:http` (a socket of its own per request) that
 * destroys the socket where `cutAt()` says: after that many body bytes of
 * the response, or (`'request'`) right after sending the request, before
 * any answer. `cutAt` is asked once per request; `undefined`: no cut.
 * `cuts` counts the cuts that happened.
 */
export function cuttingFetch(cutAt: () => number | 'request' | undefined, redirect?: (url: URL) => URL): typeof fetch & { cuts: number } {
  const fetchFn = (async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = redirect ? redirect(new URL(String(input))) : new URL(String(input))
    const cut = cutAt()
    return new Promise<Response>((resolve, reject) => {
      const headers = Object.fromEntries(new Headers(init.headers).entries())
      const req = httpRequest(url, { method: init.method ?? 'GET', headers, agent: false }, (res) => {
        const status = res.statusCode ?? 0
        let seen = 0
        const body =
          status === 204 || status === 304
            ? null
            : new ReadableStream<Uint8Array>({
                start(controller) {
                  let over = false
                  const finish = (error?: Error) => {
                    if (over) return
                    over = true
                    if (error) controller.error(error)
                    else controller.close()
                  }
                  res.on('data', (chunk: Buffer) => {
                    if (over) return
                    if (typeof cut === 'number' && seen + chunk.length > cut) {
                      fetchFn.cuts += 1
                      res.socket?.destroy()
                      return finish(new Error('socket destroyed by the test'))
                    }
                    seen += chunk.length
                    controller.enqueue(new Uint8Array(chunk))
                  })
                  res.on('end', () => finish())
                  res.on('error', (error) => finish(error))
                  res.on('aborted', () => finish(new Error('aborted')))
                  res.on('close', () => finish(new Error('the connection closed')))
                },
                cancel() {
                  res.destroy()
                },
              })
        resolve(new Response(body, { status, headers: toHeaders(res.headers) }))
      })
      req.on('error', reject)
      init.signal?.addEventListener('abort', () => req.destroy(init.signal!.reason as Error), { once: true })
      req.end(init.body as string | undefined, () => {
        if (cut === 'request') {
          fetchFn.cuts += 1
          req.destroy(new Error('socket destroyed by the test'))
        }
      })
    })
  }) as typeof fetch & { cuts: number }
  fetchFn.cuts = 0
  return fetchFn
}

function toHeaders(headers: IncomingHttpHeaders): Headers {
  const out = new Headers()
  for (const [name, value] of Object.entries(headers)) {
    if (Array.isArray(value)) for (const v of value) out.append(name, v)
    else if (value !== undefined) out.set(name, value)
  }
  return out
}

/** A gate a scripted model waits at: closed, every `pass` waits until `open`. */
export class Gate {
  #open = true
  #waiters: (() => void)[] = []
  /** How many waits have started (the model reached the gate this often). */
  reached = 0

  #allowance = Infinity

  close(): void {
    this.#open = false
  }

  /** Lets `n` more passes through, then closes. */
  allow(n: number): void {
    this.#allowance = n
    this.open()
  }

  open(): void {
    this.#open = true
    if (this.#allowance <= 0) this.#allowance = Infinity
    for (const wake of this.#waiters.splice(0)) wake()
  }

  /** For a model's `pace`: waits while closed; rejects when `signal` aborts. */
  pass = (signal?: AbortSignal): Promise<void> => {
    this.reached += 1
    if (this.#open && this.#allowance-- <= 0) this.#open = false
    if (this.#open) return new Promise((resolve) => setImmediate(resolve))
    return new Promise((resolve, reject) => {
      this.#waiters.push(resolve)
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true })
    })
  }
}
