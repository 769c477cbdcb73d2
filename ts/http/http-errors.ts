/**
 * Errors as HTTP answers: each code has its status, and every error answer
 * is a JSON {@link ErrorBody} `{ code, message, ... }`. Server side.
 */
import { coded, ErrorCodes, type ErrorCode } from '../errors.js'
import type { ErrorBody } from './protocol.js'

const STATUS: Partial<Record<ErrorCode, number>> = {
  [ErrorCodes.INVALID_ARG]: 400,
  [ErrorCodes.INVALID_OPTION]: 400,
  [ErrorCodes.INVALID_MESSAGES]: 400,
  [ErrorCodes.NOT_JSON]: 400,
  [ErrorCodes.UNKNOWN_TOOL_CALL]: 400,
  [ErrorCodes.FORBIDDEN]: 403,
  [ErrorCodes.RUN_NOT_FOUND]: 404,
  [ErrorCodes.NO_ROUTE]: 404,
  [ErrorCodes.RUN_EXISTS]: 409,
  [ErrorCodes.RUN_NOT_SUSPENDED]: 409,
  [ErrorCodes.RUN_CONFLICT]: 409,
  [ErrorCodes.RUN_ACTIVE]: 409,
  [ErrorCodes.RUN_OWNED_ELSEWHERE]: 409,
  [ErrorCodes.TOPIC_REWRITTEN]: 409,
  [ErrorCodes.OFFSET_EXPIRED]: 410,
  [ErrorCodes.REDIS_UNAVAILABLE]: 503,
  [ErrorCodes.REDIS_TIMEOUT]: 503,
  [ErrorCodes.CACHE_CLOSED]: 503,
}

const OURS = new Set<unknown>(Object.values(ErrorCodes))

/** Fields of a coded error that go into its answer besides code and message. */
const EXTRA = ['earliestIndex', 'nextIndex'] as const

export function jsonResponse(status: number, body: unknown, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers },
  })
}

/**
 * The answer to `error`. A 5xx says only its code (its message may name
 * internals: a Redis address); `report` gets every error that is not the
 * client's doing, so none is swallowed.
 */
export function errorResponse(error: unknown, report: (error: unknown) => void, status?: number, headers?: Record<string, string>): Response {
  const given = (error as { code?: unknown })?.code
  // Only our codes go out (an app's or Node's own codes are internals).
  const code = OURS.has(given) ? (given as ErrorCode) : ErrorCodes.INTERNAL
  const answer = status ?? STATUS[code] ?? 500
  if (answer >= 500) report(error)
  const body: ErrorBody = {
    code,
    message: answer >= 500 ? serverMessage(answer) : String((error as Error)?.message ?? error),
  }
  for (const key of EXTRA) {
    const value = (error as Record<string, unknown>)[key]
    if (typeof value === 'number') body[key] = value
  }
  return jsonResponse(answer, body, headers)
}

function serverMessage(status: number): string {
  return status === 503 ? 'the store is unavailable; try again' : 'internal error'
}

export function httpError(message: string, code: ErrorCode): Error {
  return coded(new Error(message), code)
}
