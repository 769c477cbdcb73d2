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
  /** A reader asked for events from an offset that retention dropped; the message names the oldest retained index. */
  OFFSET_EXPIRED: 'ERR_OFFSET_EXPIRED',
  /**
   * An event a reader received is no longer in the topic as it received it:
   * the topic was cleared or expired and written again, or a Redis failover
   * lost acknowledged events and gave their indices to new ones. The reader
   * ends instead of skipping them; read again from an offset you trust.
   */
  TOPIC_REWRITTEN: 'ERR_TOPIC_REWRITTEN',
  /** No such run: it never existed, was cleaned up, or expired. */
  RUN_NOT_FOUND: 'ERR_RUN_NOT_FOUND',
  /** Resuming, approving or declining a run that is not waiting for approval. */
  RUN_NOT_SUSPENDED: 'ERR_RUN_NOT_SUSPENDED',
  /** The run belongs to another agent (another id). */
  RUN_OWNED_ELSEWHERE: 'ERR_RUN_OWNED_ELSEWHERE',
  /** Another process drives the run (it holds the run's lease): `recover` refuses it. */
  RUN_ACTIVE: 'ERR_RUN_ACTIVE',
  /** A new run was given the id of an existing one. */
  RUN_EXISTS: 'ERR_RUN_EXISTS',
  /** Another writer changed the run meanwhile (a concurrent resume, or another process driving it). */
  RUN_CONFLICT: 'ERR_RUN_CONFLICT',
  /**
   * A reader (`observe`) of a run that no process drives: its driver stopped
   * (its lease lapsed) and nobody recovered it for longer than a driver rides
   * a store outage out (`outageMs`) and a lease more. The run is at its last
   * checkpoint: `recover(runId)` goes on with it.
   */
  RUN_ABANDONED: 'ERR_RUN_ABANDONED',
  /** An approval decision names a tool call the run is not waiting on. */
  UNKNOWN_TOOL_CALL: 'ERR_UNKNOWN_TOOL_CALL',
  /** A stored run state this version cannot read. */
  CORRUPT_STATE: 'ERR_CORRUPT_STATE',
  /** `stream`/`generate` got messages that are not a string or AI SDK model messages. A `TypeError`. */
  INVALID_MESSAGES: 'ERR_INVALID_MESSAGES',
  /** A tool's `inputSchema` is not a JSON Schema or a schema the AI SDK accepts, or `execute` is not a function. A `TypeError`. */
  INVALID_TOOL_SCHEMA: 'ERR_INVALID_TOOL_SCHEMA',
  /** The agent's model is not an AI SDK language model (specification v2 or v3 with `doStream`). A `TypeError`. */
  INVALID_MODEL: 'ERR_INVALID_MODEL',
  /** `generate` of a run whose model failed (threw, rejected, sent an error part, replied in a shape we cannot read); `cause` is the model's error. */
  MODEL_FAILED: 'ERR_MODEL_FAILED',
  /** HTTP: the handler's `authorize` refused the request (403); nothing was read or changed. */
  FORBIDDEN: 'ERR_FORBIDDEN',
  /** HTTP: no route of the handler has this path (404) or this method (405). */
  NO_ROUTE: 'ERR_NO_ROUTE',
  /**
   * HTTP client: a response the client cannot use (a status or content type
   * the protocol does not have, an error body without a code), or a stream
   * that kept failing to reconnect (`retry.maxAttempts` in a row); `cause`
   * holds the last failure.
   */
  HTTP: 'ERR_HTTP',
  /** A bug: a Rust panic or an unexpected native failure. Please report it. */
  INTERNAL: 'ERR_INTERNAL',
} as const

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

/** An `Error` (or subclass) with a stable `code`. */
export type CodedError<E extends Error = Error> = E & { code: ErrorCode }

export function coded<E extends Error>(error: E, code: ErrorCode): CodedError<E> {
  return Object.assign(error, { code })
}

/**
 * A native call's error as this package hands it out. A synchronous call's
 * error has our code as `err.code` already (napi-rs sets it); anything else
 * from native code (a caught Rust panic, a value napi could not convert) is
 * `ERR_INTERNAL`.
 */
export function fromNative(error: unknown): unknown {
  if (!(error instanceof Error)) return error
  if (hasCode(error)) return error
  return coded(error, ErrorCodes.INTERNAL)
}

const BATCHED = /^\[(ERR_[A-Z_]+)\] /

/**
 * The error of an async native call, from its bridge batch entry: the text
 * `[ERR_X] message` (see `src/error.rs`, `Coded::batched`).
 */
export function fromBatchError(text: string): CodedError {
  const match = BATCHED.exec(text)
  if (!match) return coded(new Error(text), ErrorCodes.INTERNAL)
  return coded(new Error(text.slice(match[0].length)), match[1] as ErrorCode)
}

/** Whether `error` carries one of our codes. */
export function hasCode(error: Error): error is CodedError {
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
