/**
 * The wire protocol between the agent handler (`createAgentHandler`) and its
 * clients (`resumableStream`, `createResumableChatTransport`): names and
 * shapes both sides share. Browser-safe: no Node imports.
 *
 * A run's stream is Server-Sent Events. Every message of an event carries
 * `id: <index>` (the event's index in the run's topic); a client resumes with
 * `Last-Event-ID: <index of the last event it applied>`. Two formats:
 *
 * - `parts` (default): `data:` is the stored part (the AI SDK full-stream
 *   part, errors as `{ name, message }`); the stream ends with an
 *   `event: end` message whose data is a {@link StreamEnd}; a failure after
 *   the headers went out is an `event: error` message with an
 *   {@link ErrorBody}.
 * - `ui`: the AI SDK UI message stream (`x-vercel-ai-ui-message-stream: v1`):
 *   `data:` is a UI message chunk, the stream ends with `data: [DONE]`.
 */

/** The response header naming the run a `POST {base}/runs` started. */
export const RUN_ID_HEADER = 'x-run-id'

/** The AI SDK's header of a UI message stream response. */
export const UI_MESSAGE_STREAM_HEADER = 'x-vercel-ai-ui-message-stream'

/** The query parameter that picks the wire format (`parts` or `ui`). */
export const FORMAT_PARAM = 'format'

/** The SSE event name of the end message (parts format). */
export const END_EVENT = 'end'

/** The SSE event name of a failure after the headers went out (parts format). */
export const ERROR_EVENT = 'error'

export type WireFormat = 'parts' | 'ui'

export type RunStatus = 'running' | 'suspended' | 'finished' | 'failed' | 'aborted'

/** Part types that end a run (and its stream); the UI message stream's chunks of the same names end it there. */
export const TERMINAL_TYPES: ReadonlySet<string> = new Set(['finish', 'error', 'abort'])

/** A tool call waiting for an approval decision. */
export interface PendingApproval {
  toolCallId: string
  toolName: string
  args: unknown
}

/** What the end message says (parts format): why the stream is over. */
export interface StreamEnd {
  status: Exclude<RunStatus, 'running'>
  /** The index the run's next event will get. */
  nextIndex: number
  /** A suspended run: the calls waiting for approval. */
  pendingApprovals?: PendingApproval[]
  /** A direct stream (`CachingTransformStream`) that failed: its error. */
  error?: { name: string; message: string }
}

/** Every error answer of the handler: a JSON body with a stable `code` (see the README's code table). */
export interface ErrorBody {
  code: string
  message: string
  /** `ERR_OFFSET_EXPIRED`: the oldest index retention still holds. */
  earliestIndex?: number
  /** `ERR_TOPIC_REWRITTEN` on a position past the end: the index the run's next event gets. */
  nextIndex?: number
  [key: string]: unknown
}
