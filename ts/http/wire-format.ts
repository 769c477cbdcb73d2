/**
 * The two wire formats a stream is served in (see `protocol.ts`): how a
 * stored event, the end of the stream and a late failure are written as SSE.
 */
import type { StreamPart } from '../agent/types.js'
import type { PubSubEvent } from '../topic-reader.js'
import { RUN_PART_EVENT } from '../wire.js'
import { END_EVENT, ERROR_EVENT, UI_MESSAGE_STREAM_HEADER, type ErrorBody, type StreamEnd, type WireFormat } from './protocol.js'
import { SSE_HEADERS, sseMessage } from './sse.js'
import { SUSPENDED_CHUNK, toUIMessageChunk } from './ui-message-stream.js'

export interface Frames {
  readonly headers: Readonly<Record<string, string>>
  /** An event to send ('' when the format has nothing for it). */
  event(event: PubSubEvent): string
  /** The event where a run waits for approval, which ends the stream. */
  suspension(event: PubSubEvent): string
  /** After the terminal event: the stream is over. */
  end(end: StreamEnd): string
  /** A failure after the headers went out (the client reads `code`). */
  error(body: ErrorBody): string
}

const DONE = 'data: [DONE]\n\n'

/** The frames of `format`. */
export function framesOf(format: WireFormat): Frames {
  if (format === 'parts') {
    return {
      headers: SSE_HEADERS,
      event: (event) => sseMessage(JSON.stringify(event.data), event.index),
      suspension: () => '',
      end: (end) => sseMessage(JSON.stringify(end), undefined, END_EVENT),
      error: (body) => sseMessage(JSON.stringify(body), undefined, ERROR_EVENT),
    }
  }
  return {
    headers: { ...SSE_HEADERS, [UI_MESSAGE_STREAM_HEADER]: 'v1' },
    event: (event) => {
      // A run's part becomes its UI chunk; a direct stream served in the UI format holds UI chunks already.
      const chunk = event.type === RUN_PART_EVENT ? toUIMessageChunk(event.data as StreamPart, event.runId) : event.data
      return chunk === undefined ? '' : sseMessage(JSON.stringify(chunk), event.index)
    },
    suspension: (event) => sseMessage(JSON.stringify(SUSPENDED_CHUNK), event.index),
    end: () => DONE,
    // `code` rides along: the AI SDK's chunk schema lets unknown keys through.
    error: (body) => sseMessage(JSON.stringify({ type: 'error', errorText: body.message, code: body.code }), undefined) + DONE,
  }
}
