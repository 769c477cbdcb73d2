/**
 * `toNodeHandler`: a Web-standard handler (`createAgentHandler`'s) as a
 * listener for Node's `http` server. Responses stream as they are produced,
 * with backpressure (a slow client is written to as fast as it reads), and a
 * client that goes away aborts the request's `signal` and cancels the
 * response body: its stream stops reading, and nothing else happens (a run
 * goes on).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void

export function toNodeHandler(handler: (request: Request) => Promise<Response>): NodeHandler {
  return (req, res) => {
    void serve(handler, req, res).catch((error: unknown) => {
      // The handler answers its own errors; this is a failure to write the answer.
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ code: 'ERR_INTERNAL', message: 'internal error' }))
      } else res.destroy(error as Error)
    })
  }
}

async function serve(handler: (request: Request) => Promise<Response>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const controller = new AbortController()
  // `close` on the response: the client went away (or the answer was sent).
  res.once('close', () => controller.abort())
  const response = await handler(toRequest(req, controller.signal))
  const headers: Record<string, string | string[]> = {}
  response.headers.forEach((value, name) => {
    headers[name] = name === 'set-cookie' ? response.headers.getSetCookie() : value
  })
  // Answered before the request body was read (say 413): the rest of it is still on the socket, which cannot be reused.
  if (!req.complete) headers.connection = 'close'
  res.writeHead(response.status, headers)
  if (!response.body) {
    res.end()
    return
  }
  // Headers now, not with the first chunk: an SSE client knows at once the stream is open.
  res.flushHeaders()
  const reader = response.body.getReader()
  const onClose = (): void => void reader.cancel().catch(() => {})
  res.once('close', onClose)
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      if (!res.write(value)) await drained(res)
      if (res.destroyed) break
    }
  } catch (error) {
    if (!res.destroyed) throw error
  } finally {
    res.off('close', onClose)
  }
  if (!res.destroyed) res.end()
  else await reader.cancel().catch(() => {})
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.once('drain', done)
    res.once('close', done)
  })
}

function toRequest(req: IncomingMessage, signal: AbortSignal): Request {
  const host = req.headers.host ?? 'localhost'
  const url = new URL(req.url ?? '/', `http://${host}`)
  const headers = new Headers()
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!)
  const method = req.method ?? 'GET'
  const hasBody = method !== 'GET' && method !== 'HEAD'
  return new Request(url, {
    method,
    headers,
    signal,
    ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: 'half' } : {}),
  } as RequestInit)
}
