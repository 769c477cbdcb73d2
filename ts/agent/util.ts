/** `{ name, message }` of anything thrown, for the Rust loop and the stream. */
export function errorInfo(error: unknown): { name: string; message: string } {
  if (error instanceof Error) return { name: error.name, message: error.message }
  if (error && typeof error === 'object' && 'message' in error) {
    const e = error as { name?: unknown; message?: unknown }
    return { name: typeof e.name === 'string' ? e.name : 'Error', message: String(e.message) }
  }
  return { name: 'Error', message: typeof error === 'string' ? error : (JSON.stringify(error) ?? String(error)) }
}

/** An `Error` rebuilt from its stored `{ name, message }`. */
export function errorFrom(info: unknown): Error {
  const { name, message } = errorInfo(info)
  const error = new Error(message)
  error.name = name
  return error
}

/**
 * A stored stream part as readers get it: its errors, stored as `{ name,
 * message }`, rebuilt as `Error`s (an `error` or `tool-error` part, an
 * invalid `tool-call`).
 */
export function withErrorObjects<P extends { type?: unknown; error?: unknown }>(part: P): P {
  if (part?.error !== undefined && (part.type === 'error' || part.type === 'tool-error' || part.type === 'tool-call')) part.error = errorFrom(part.error)
  return part
}
