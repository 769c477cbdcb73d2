import { coded, ErrorCodes } from './errors.js'

/**
 * JSON text of `value`, or a `TypeError` with code `ERR_NOT_JSON` for what
 * JSON cannot represent. The message describes the problem, never the value.
 */
export function toJson(value: unknown, what: string): string {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch (error) {
    // BigInt and circular structures throw; V8's message names no data.
    throw coded(new TypeError(`${what} is not JSON-serialisable: ${(error as Error).message}`), ErrorCodes.NOT_JSON)
  }
  if (text === undefined) {
    throw coded(new TypeError(`${what} is not JSON-serialisable (got ${describe(value)})`), ErrorCodes.NOT_JSON)
  }
  return text
}

function describe(value: unknown): string {
  return value === undefined ? 'undefined' : typeof value
}
