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

/** The reason a request's signal aborts: made once (a `DOMException` per request costs its stack trace, at every disconnect). */
const CLIENT_GONE = Object.assign(new Error('the client went away'), { name: 'AbortError' })

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
  res.once('close', () => controller.abort(CLIENT_GONE))
  const response = await handler(toRequest(req, controller.signal))
  const headers: Record<string, string | string[]> = {}
  response.headers.forEach((value, name) => {
    headers[name] = name === 'set-cookie' ? response.headers.getSetCookie() : value
  })
  // Answered before the request body was read (say 413): the rest of it is still on the socket, which cannot be reused.
  if (hasBody(req) && !req.complete) headers.connection = 'close'
  res.writeHead(response.status, headers)
  if (!response.body) {
    res.end()
    return
  }
  // The headers go out with the first chunk, in one write (the agent's streams write theirs at once).
  const reader = response.body.getReader()
  const onClose = (): void => void reader.cancel().catch(() => {})
  res.once('close', onClose)
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      const flowing = res.write(value)
      // Node corks the socket at a write and uncorks it on the next tick; the
      // next chunk often comes within this one (more stored events), so the
      // client would wait for all of them: send each chunk as it is written.
      if (res.socket && res.socket.writableCorked > 0) res.socket.uncork()
      if (!flowing) await drained(res)
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

function hasBody(req: IncomingMessage): boolean {
  return req.method !== 'GET' && req.method !== 'HEAD'
}

function toRequest(req: IncomingMessage, signal: AbortSignal): Request {
  const host = req.headers.host ?? 'localhost'
  const url = new URL(req.url ?? '/', `http://${host}`)
  const headers = new Headers()
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!)
  return new Request(url, {
    method: req.method ?? 'GET',
    headers,
    signal,
    ...(hasBody(req) ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: 'half' } : {}),
  } as RequestInit)
}
