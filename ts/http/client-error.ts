/** The error the HTTP clients end with: the server's answer, with its stable `code`. Browser-safe. */
import { ErrorCodes, type ErrorCode } from '../errors.js'
import type { ErrorBody } from './protocol.js'

export class AgentHttpError extends Error {
  override readonly name = 'AgentHttpError'
  /** The server's code (`ERR_RUN_NOT_FOUND`, `ERR_OFFSET_EXPIRED`, ...), or `ERR_HTTP` for an answer outside the protocol. */
  readonly code: ErrorCode
  /** The HTTP status (0: no answer, e.g. reconnecting gave up on network errors). */
  readonly status: number
  /** The server's error body: `earliestIndex` with `ERR_OFFSET_EXPIRED`, `nextIndex` with `ERR_TOPIC_REWRITTEN`. */
  readonly body: ErrorBody

  constructor(status: number, body: ErrorBody, options?: { cause?: unknown }) {
    super(body.message, options)
    this.status = status
    this.body = body
    this.code = (Object.values(ErrorCodes) as string[]).includes(body.code) ? (body.code as ErrorCode) : ErrorCodes.HTTP
  }
}

/**
 * The error of a response that is not a stream: its JSON error body if it
 * has one. A body that breaks off while it is read rejects with that network
 * error (the answer was not heard: try again), not with an error of its own.
 */
export async function responseError(response: Response): Promise<AgentHttpError> {
  const text = await response.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = undefined
  }
  const b = body as Partial<ErrorBody> | undefined
  if (b && typeof b.code === 'string' && typeof b.message === 'string') return new AgentHttpError(response.status, b as ErrorBody)
  return new AgentHttpError(response.status, { code: ErrorCodes.HTTP, message: `unexpected answer: HTTP ${response.status}` })
}
