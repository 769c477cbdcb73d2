import { coded, ErrorCodes } from './errors.js'

/**
 * An event index as a client sends it: a number, or its decimal text (SSE
 * `Last-Event-ID`, `?offset=`). Anything else, including `-1`, `1.5`, `01`
 * and numbers past 2^53, is `ERR_INVALID_ARG` naming `what`.
 */
export function parseEventIndex(value: unknown, what: string): number {
  const index = typeof value === 'string' && /^(0|[1-9][0-9]{0,15})$/.test(value) ? Number(value) : value
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0) {
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : String(value)
    throw coded(new TypeError(`${what} must be an event index (an integer >= 0), got ${shown}`), ErrorCodes.INVALID_ARG)
  }
  return index
}
