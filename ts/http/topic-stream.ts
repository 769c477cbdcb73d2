/**
 * Serving a topic from a position as an SSE response: history first, then
 * live events, each written with its index as `id`, until the stream's
 * terminal event; heartbeats while it waits. The position is checked before
 * any byte goes out, so a position that cannot be served is an error status
 * (410 expired, 409 past the end) rather than a stream that fails.
 *
 * A client that goes away (its request's signal, or the body cancelled)
 * only closes its reader: the run goes on.
 */
import { coded, ErrorCodes } from '../errors.js'
import type { PubSubInternals } from '../internal.js'
import type { PubSubEvent, TopicReader } from '../topic-reader.js'
import { isTransient } from '../wire.js'
import type { ErrorBody, StreamEnd } from './protocol.js'
import { SSE_HEARTBEAT, sseRetry } from './sse.js'
import type { Frames } from './wire-format.js'

/** How one event counts for the stream serving it. */
export interface Verdict {
  /** Written to the client. */
  send: boolean
  /** The stream ends after this event, with this end. */
  end?: StreamEnd
  /** The end is where a run waits for approval (the formats write it their way). */
  suspension?: boolean
}

export const SEND: Verdict = { send: true }
export const SKIP: Verdict = { send: false }

/** What a stream serves: a topic, and how its events end it. */
export interface StreamSource {
  readonly topic: string
  /** `last`: nothing after `event` has been read yet. */
  classify(event: PubSubEvent, last: boolean): Verdict | Promise<Verdict>
  /** Rejects (`ERR_RUN_NOT_FOUND`) when what is served is gone: asked now and then while the stream waits. */
  check(): Promise<void>
}

export interface ServeOptions {
  frames: Frames
  heartbeatMs: number
  retryMs: number
  /** The request's signal: the client went away. */
  signal: AbortSignal | undefined
  /** More response headers (the run's id). */
  headers?: Record<string, string>
}

const HEARTBEAT = Symbol('heartbeat')

/**
 * Events in a stream's first read: enough for a screenful, few enough that
 * the first write does not wait for a whole page (over Redis, reading 200
 * events takes about three times as long as reading 32). Later pages are full.
 */
const FIRST_PAGE = 32

/**
 * The response serving `source` from index `from` (the first event to send).
 * Rejects before any byte is written with a coded error for a position that
 * cannot be served: `ERR_OFFSET_EXPIRED` (retention dropped it; `earliestIndex`
 * says what is left), `ERR_TOPIC_REWRITTEN` (past the topic's end: the client
 * saw events this topic does not have; `nextIndex`).
 * `null`: the stream was over before `from` (the caller answers that its way).
 */
export async function serveTopic(
  internals: PubSubInternals,
  source: StreamSource,
  from: number,
  options: ServeOptions,
  /** The topic's next index, when the caller read it already. */
  knownNext?: number,
): Promise<{ response: Response } | { ended: StreamEnd }> {
  const reader = internals.reader(source.topic, from)
  let next: number
  let first: PubSubEvent[] | undefined
  try {
    // Asked together, so both go to the store in one round trip.
    ;[next, first] = await Promise.all([knownNext ?? nextIndexOf(internals, source.topic), reader.available(FIRST_PAGE)])
  } catch (error) {
    reader.close()
    throw withEarliest(error)
  }
  if (next === 0 || from > next) reader.close()
  if (next === 0) throw coded(new Error('no run or stream here: it never existed, was cleaned up, or expired'), ErrorCodes.RUN_NOT_FOUND)
  if (from > next) {
    throw coded(
      Object.assign(new Error(`position ${from - 1} is past the stream's last event (${next - 1}): this client saw events it does not have`), {
        nextIndex: next,
      }),
      ErrorCodes.TOPIC_REWRITTEN,
    )
  }
  if (from === next && (first ?? []).length === 0) {
    // Nothing new: ended already, or still going (then wait for the next event).
    const ended = await endedAt(internals, source, next - 1).catch((error: unknown) => {
      reader.close()
      throw error
    })
    if (ended) {
      reader.close()
      return { ended }
    }
  }
  const stream = new TopicStream(reader, source, options, first ?? [])
  const body = new ReadableStream<Uint8Array>(stream, { highWaterMark: 0 })
  return { response: new Response(body, { status: 200, headers: { ...options.frames.headers, ...options.headers } }) }
}

/** The index the topic's next event gets. */
export function nextIndexOf(internals: PubSubInternals, topic: string): Promise<number> {
  return internals.bridge.call<number>((id) => internals.native.nextIndex(id, topic))
}

/** Whether the event at `index` ended the stream (a stream asked for from just past it). */
async function endedAt(internals: PubSubInternals, source: StreamSource, index: number): Promise<StreamEnd | undefined> {
  const reader = internals.reader(source.topic, index)
  try {
    const page = await reader.available(2)
    if (!page || page.length !== 1) return undefined // more arrived meanwhile: serve it
    return (await source.classify(page[0]!, true)).end
  } catch (error) {
    throw withEarliest(error)
  } finally {
    reader.close()
  }
}

/** `ERR_OFFSET_EXPIRED` with the oldest retained index as `earliestIndex` (the store's message names it). */
function withEarliest(error: unknown): unknown {
  const e = error as { code?: string; message?: string }
  if (e?.code !== ErrorCodes.OFFSET_EXPIRED) return error
  const earliest = /oldest retained event is (\d+)/.exec(e.message ?? '')?.[1]
  return earliest === undefined ? error : Object.assign(error as Error, { earliestIndex: Number(earliest) })
}

const encoder = new TextEncoder()

/** The response body's source: pulled by the client's reads, so a slow client holds nothing but its position. */
class TopicStream {
  #pending: Promise<PubSubEvent[] | undefined> | undefined
  #first: PubSubEvent[] | undefined
  #timer: ReturnType<typeof setTimeout> | undefined
  #closed = false
  readonly #onAbort = (): void => this.#close()

  constructor(
    readonly reader: TopicReader,
    readonly source: StreamSource,
    readonly options: ServeOptions,
    first: PubSubEvent[],
  ) {
    this.#first = first
    this.#prelude = sseRetry(options.retryMs)
  }

  /** `retry:`, written with the first events: the headers, the retry and what is stored go out in one write. */
  #prelude: string

  start(): void {
    if (this.options.signal?.aborted) return this.#close()
    this.options.signal?.addEventListener('abort', this.#onAbort, { once: true })
  }

  async pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    try {
      for (;;) {
        if (this.#closed) return controller.close()
        const page = this.#first ?? this.reader.ready() ?? (await this.#wait(controller))
        this.#first = undefined
        if (page === HEARTBEAT) return
        if (page === undefined) return this.#end(controller) // closed: the client went away
        const { text, end } = await this.#frames(page)
        const prelude = this.#prelude
        this.#prelude = ''
        if (end !== undefined) {
          controller.enqueue(encoder.encode(prelude + text + this.options.frames.end(end)))
          return this.#end(controller)
        }
        // The first pull always writes (at least the retry), so the client has the headers at once.
        if (prelude + text !== '') return controller.enqueue(encoder.encode(prelude + text))
      }
    } catch (error) {
      this.#fail(controller, error)
    }
  }

  cancel(): void {
    this.#close()
  }

  /** The next page, or a heartbeat written while it takes longer than `heartbeatMs`. */
  async #wait(controller: ReadableStreamDefaultController<Uint8Array>): Promise<PubSubEvent[] | undefined | typeof HEARTBEAT> {
    this.#pending ??= Promise.resolve(this.reader.next(true))
    const beat = new Promise<typeof HEARTBEAT>((resolve) => (this.#timer = setTimeout(resolve, this.options.heartbeatMs, HEARTBEAT)))
    const page = await Promise.race([this.#pending, beat])
    clearTimeout(this.#timer)
    if (page !== HEARTBEAT) {
      this.#pending = undefined
      return page
    }
    // A long wait: is the run still there? (A deleted run would otherwise keep the client for ever.)
    await this.source.check()
    controller.enqueue(encoder.encode(SSE_HEARTBEAT))
    return HEARTBEAT
  }

  /** The frames of a page, up to and with its terminal event. */
  async #frames(page: PubSubEvent[]): Promise<{ text: string; end?: StreamEnd }> {
    const { frames } = this.options
    let text = ''
    for (let i = 0; i < page.length; i++) {
      // Served as stored: `createdAt` stays the stored number (nothing here reads it).
      const event = page[i]!
      const verdict = await this.source.classify(event, i === page.length - 1)
      if (verdict.suspension) text += frames.suspension(event)
      else if (verdict.send) text += frames.event(event)
      if (verdict.end) return { text, end: verdict.end }
    }
    return { text }
  }

  #fail(controller: ReadableStreamDefaultController<Uint8Array>, error: unknown): void {
    const { code, message } = error as { code?: string; message?: string }
    // The store is briefly away: end without an end message, and the client reconnects from where it is.
    // The store is briefly away: the client should simply reconnect.
    if (!isTransient(error)) {
      const body: ErrorBody = { code: code ?? ErrorCodes.INTERNAL, message: message ?? String(error) }
      const extra = withEarliest(error) as { earliestIndex?: number }
      if (extra.earliestIndex !== undefined) body.earliestIndex = extra.earliestIndex
      controller.enqueue(encoder.encode(this.options.frames.error(body)))
    }
    this.#end(controller)
  }

  #end(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.#close()
    controller.close()
  }

  #close(): void {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#timer)
    this.options.signal?.removeEventListener('abort', this.#onAbort)
    this.reader.close()
  }
}
