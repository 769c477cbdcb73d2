/**
 * `resumableStream`: a run's parts over HTTP, in browsers and in Node, as an
 * `AsyncIterable` that survives the network: it reconnects with backoff and
 * `Last-Event-ID`, hands out every event index once, and ends with the
 * run's terminal part (`stream.end` says how it ended), a typed error
 * (`AgentHttpError` with the server's `code`), or the signal.
 */
import type { StreamPart } from '../agent/types.js'
import { withErrorObjects } from '../agent/util.js'
import { AgentHttpError } from './client-error.js'
import { END_EVENT, ERROR_EVENT, type ErrorBody, type StreamEnd } from './protocol.js'
import { SseConnection, type ReconnectOptions } from './sse-client.js'

export type ResumableStreamOptions = ReconnectOptions

/** A run's stream as read over HTTP. Iterate it once. */
export interface RunStream<T = StreamPart> extends AsyncIterable<T> {
  /** The run's id, once known (given in the body, or named by the server's answer). */
  readonly runId: string | undefined
  /** The index of the last event handed out: keep it to resume later (`lastEventId` option). */
  readonly lastEventId: number | undefined
  /** How the stream ended, once it has: the run's status and next index (a suspended run: the calls waiting). */
  readonly end: StreamEnd | undefined
}

/**
 * The stream of the run at `url` (`{base}/runs/:runId/stream`), or, with
 * `body`, of the run that POSTing it to `url` (`{base}/runs`) starts.
 * `T`: the parts (a direct stream's chunks for a `CachingTransformStream`).
 */
export function resumableStream<T = StreamPart>(url: string | URL, options: ResumableStreamOptions = {}): RunStream<T> {
  return new PartsStream<T>(new SseConnection(url, 'parts', options))
}

class PartsStream<T> implements RunStream<T> {
  end: StreamEnd | undefined
  readonly #connection: SseConnection

  constructor(connection: SseConnection) {
    this.#connection = connection
  }

  get runId(): string | undefined {
    return this.#connection.runId
  }

  get lastEventId(): number | undefined {
    return this.#connection.lastEventId
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for await (const message of this.#connection) {
      if (message.event === END_EVENT) {
        this.end = JSON.parse(message.data) as StreamEnd
        return
      }
      if (message.event === ERROR_EVENT) throw new AgentHttpError(200, JSON.parse(message.data) as ErrorBody)
      if (message.event === undefined || message.event === 'message') yield withErrorObjects(JSON.parse(message.data) as { type?: unknown }) as T
    }
  }
}
