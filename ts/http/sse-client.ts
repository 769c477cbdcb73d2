/**
 * The client side of a run's SSE stream, below the formats: connect, parse
 * (eventsource-parser), hand out each event index once, and reconnect with
 * backoff and `Last-Event-ID` after a network error or a connection that
 * ended early. Browser-safe (fetch, streams, no Node imports).
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser'

import { ErrorCodes } from '../errors.js'
import { AgentHttpError, responseError } from './client-error.js'
import { FORMAT_PARAM, RUN_ID_HEADER, type WireFormat } from './protocol.js'

export interface RetryOptions {
  /** The first wait before reconnecting. Default: the server's SSE `retry:` (the handler sends 1 s), else 1 s. */
  initialDelayMs?: number
  /** The longest wait between attempts (it doubles from the first). Default 10 s. */
  maxDelayMs?: number
  /** Give up (with `ERR_HTTP`) after this many failed attempts in a row. Default 10. */
  maxAttempts?: number
}

export interface ReconnectOptions {
  /** Default: the global `fetch`. */
  fetch?: typeof fetch
  /** Aborting ends the stream (the iteration rejects with the signal's reason); the run goes on. */
  signal?: AbortSignal
  headers?: Record<string, string>
  /** The index of the last event already applied: the stream starts after it. */
  lastEventId?: number
  /**
   * Start a run: the first request POSTs this body (to `{base}/runs`), and
   * reconnects read the stream its answer names. A body without `runId`
   * gets a random one, so a start whose answer is lost can still be found.
   */
  body?: Record<string, unknown>
  /** A connection broke (or ended early); the stream will reconnect. */
  onDisconnect?: (info: { lastEventId: number | undefined; error: unknown; attempt: number }) => void
  /** About to reconnect, after the wait. */
  onReconnect?: (info: { lastEventId: number | undefined; attempt: number }) => void
  retry?: RetryOptions
}

/** Statuses after which a reconnect may succeed (a proxy or a store briefly away). */
const RETRY_STATUS = new Set([502, 503, 504])

/** One SSE message as received: `id` is the event index (absent on end and error messages). */
export interface SseMessage {
  id: number | undefined
  event: string | undefined
  data: string
}

/**
 * A run's stream as it is read, resumable: its position (`lastEventId`, the
 * index of the last event handed out) and run id (once an answer named it).
 */
export class SseConnection implements AsyncIterable<SseMessage> {
  lastEventId: number | undefined
  runId: string | undefined
  readonly #url: URL
  readonly #options: ReconnectOptions
  readonly #format: WireFormat

  constructor(url: string | URL, format: WireFormat, options: ReconnectOptions = {}) {
    // In a browser, a relative URL is the page's.
    this.#url = new URL(url, (globalThis as { location?: { href?: string } }).location?.href)
    this.#format = format
    this.#options = options
    this.lastEventId = options.lastEventId
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<SseMessage, void, undefined> {
    const { signal, retry = {} } = this.#options
    const fetchFn = this.#options.fetch ?? globalThis.fetch.bind(globalThis)
    const maxAttempts = retry.maxAttempts ?? 10
    let serverRetry: number | undefined
    let body = this.#options.body
    if (body && body.runId === undefined) body = { ...body, runId: randomId() }
    if (body) this.runId = body.runId as string
    // Until the start request is answered, the run may or may not exist: a
    // start whose answer was lost is sent again, and `ERR_RUN_EXISTS` then
    // means the first one landed.
    let startAnswered = body === undefined
    let startLost = false
    let target = withFormat(this.#url, this.#format)
    let attempt = 0
    for (;;) {
      throwIfAborted(signal)
      const posting = !startAnswered
      const url = target
      const connection = new AbortController()
      const onAbort = (): void => connection.abort(signal?.reason)
      signal?.addEventListener('abort', onAbort, { once: true })
      let progress = false
      let failure: unknown
      try {
        const response = await fetchFn(url, {
          method: posting ? 'POST' : 'GET',
          headers: this.#headers(posting),
          ...(posting ? { body: JSON.stringify(body) } : {}),
          signal: connection.signal,
        })
        const runId = response.headers.get(RUN_ID_HEADER)
        if (runId) this.runId = runId
        // The start's stream, from now on read (and resumed) where its answer says.
        const answered = (): void => {
          startAnswered = true
          const named = response.headers.get('content-location')
          target = withFormat(new URL(named ?? streamPath(this.#url, this.runId!), this.#url), this.#format)
        }
        if (response.status === 204) return // nothing (more) to read: the UI format's "ended"
        if (RETRY_STATUS.has(response.status)) {
          failure = await responseError(response) // a start answered so did not land: it is sent again
        } else if (!response.ok || !response.body || !(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
          const error = await responseError(response)
          // The start sent again found the first one: read that run, now.
          if (posting && startLost && error.code === ErrorCodes.RUN_EXISTS) {
            answered()
            continue
          }
          throw error
        } else {
          if (posting) answered()
          const messages = readMessages(response.body, (ms) => (serverRetry = ms))
          for await (const message of messages) {
            throwIfAborted(signal) // messages parsed together must not outlive the signal
            if (message.id !== undefined) {
              if (this.lastEventId !== undefined && message.id <= this.lastEventId) continue // applied already
              this.lastEventId = message.id
              progress = true
            }
            yield message
          }
          failure = new Error('the stream ended before its end')
        }
      } catch (error) {
        if (signal?.aborted) throw abortReason(signal)
        if (error instanceof AgentHttpError) throw error
        failure = error // a network error, or a body that broke off
        if (posting && !startAnswered) startLost = true
      } finally {
        signal?.removeEventListener('abort', onAbort)
        connection.abort()
      }
      if (progress) attempt = 0
      attempt += 1
      this.#options.onDisconnect?.({ lastEventId: this.lastEventId, error: failure, attempt })
      if (attempt > maxAttempts) {
        throw new AgentHttpError(0, { code: ErrorCodes.HTTP, message: `gave up after ${maxAttempts} failed attempts to reconnect` }, { cause: failure })
      }
      const first = retry.initialDelayMs ?? serverRetry ?? 1_000
      const delay = Math.min(first * 2 ** (attempt - 1), retry.maxDelayMs ?? 10_000)
      // Jitter: clients that lost the same server do not all come back at once.
      await sleep(delay * (0.8 + Math.random() * 0.4), signal)
      this.#options.onReconnect?.({ lastEventId: this.lastEventId, attempt })
    }
  }

  #headers(posting: boolean): Record<string, string> {
    return {
      accept: 'text/event-stream',
      ...(posting ? { 'content-type': 'application/json' } : {}),
      ...this.#options.headers,
      ...(!posting && this.lastEventId !== undefined ? { 'last-event-id': String(this.lastEventId) } : {}),
    }
  }
}

/** `{base}/runs/{runId}/stream` for a start request to `{base}/runs`. */
function streamPath(startUrl: URL, runId: string): string {
  return `${startUrl.pathname.replace(/\/+$/, '')}/${encodeURIComponent(runId)}/stream`
}

function withFormat(url: URL, format: WireFormat): URL {
  const copy = new URL(url)
  if (!copy.searchParams.has(FORMAT_PARAM)) copy.searchParams.set(FORMAT_PARAM, format)
  return copy
}

/** The SSE messages of a response body (eventsource-parser), as they arrive. */
async function* readMessages(body: ReadableStream<Uint8Array>, onRetry: (ms: number) => void): AsyncGenerator<SseMessage> {
  const queue: EventSourceMessage[] = []
  const parser = createParser({ onEvent: (message) => queue.push(message), onRetry })
  const reader = body.getReader()
  const decoder = new TextDecoder()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      parser.feed(decoder.decode(value, { stream: true }))
      while (queue.length > 0) {
        const message = queue.shift()!
        yield { id: message.id === undefined || message.id === '' ? undefined : Number(message.id), event: message.event, data: message.data }
      }
    }
  } finally {
    await reader.cancel().catch(() => {})
  }
}

function randomId(): string {
  return globalThis.crypto.randomUUID()
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal)
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The stream was aborted', 'AbortError')
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal))
    const done = (): void => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }
    const timer = setTimeout(done, ms)
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(abortReason(signal!))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
