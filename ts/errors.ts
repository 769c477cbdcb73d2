/**
 * Stable error codes. Every error this package throws or rejects with carries
 * one of them as `err.code`; they are documented in the README and never
 * renamed.
 */
export const ErrorCodes = {
  /** A value is not JSON-serialisable (BigInt, circular, function, symbol, top-level undefined). A `TypeError`. */
  NOT_JSON: 'ERR_NOT_JSON',
  /** An argument has the wrong type (a non-string key, a non-integer index). A `TypeError`. */
  INVALID_ARG: 'ERR_INVALID_ARG',
  /** A constructor option is malformed or out of range; the message names it. */
  INVALID_OPTION: 'ERR_INVALID_OPTION',
  /** A value the operation cannot store, e.g. a non-object for `listPushIndexed`. */
  INVALID_VALUE: 'ERR_INVALID_VALUE',
  /** The key holds another kind of data (a list where a value is expected, or the reverse). */
  WRONG_TYPE: 'ERR_WRONG_TYPE',
  /** Redis cannot be reached; the message names the address. */
  REDIS_UNAVAILABLE: 'ERR_REDIS_UNAVAILABLE',
  /** Redis refused the credentials, or the ACL user lacks a permission. */
  REDIS_AUTH: 'ERR_REDIS_AUTH',
  /** Redis did not answer in time. */
  REDIS_TIMEOUT: 'ERR_REDIS_TIMEOUT',
  /** Any other error reported by Redis. */
  REDIS: 'ERR_REDIS',
  /** The cache was closed with `close()`. */
  CACHE_CLOSED: 'ERR_CACHE_CLOSED',
  /** A bug: a Rust panic or an unexpected native failure. Please report it. */
  INTERNAL: 'ERR_INTERNAL',
} as const

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

/** An `Error` (or subclass) with a stable `code`. */
export type CodedError<E extends Error = Error> = E & { code: ErrorCode }

export function coded<E extends Error>(error: E, code: ErrorCode): CodedError<E> {
  return Object.assign(error, { code })
}

const CODE_PREFIX = /^\[(ERR_[A-Z_]+)\] /

/**
 * The native layer sends its code as a `[ERR_X] ` message prefix (napi-rs can
 * only put a napi `Status` in `err.code`); move it to `err.code`. A native
 * error without one (a caught Rust panic) becomes `ERR_INTERNAL`.
 */
export function fromNative(error: unknown): unknown {
  if (!(error instanceof Error)) return error
  if (hasCode(error)) return error // ours already (argument checks, client mode)
  const match = CODE_PREFIX.exec(error.message)
  if (match) {
    error.message = error.message.slice(match[0].length)
    return coded(error, match[1] as ErrorCode)
  }
  return coded(error, ErrorCodes.INTERNAL)
}

function hasCode(error: Error): error is CodedError {
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' && code.startsWith('ERR_')
}

/** Runs a native call, translating its error. */
export function native<T>(call: () => T): T {
  try {
    return call()
  } catch (error) {
    throw fromNative(error)
  }
}
