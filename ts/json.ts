import { coded, ErrorCodes } from './errors.js'

/**
 * JSON text of `value`, or a `TypeError` with code `ERR_NOT_JSON` for what
 * JSON cannot represent. The message describes the problem, never the value.
 */
export function toJson(value: unknown, what: string): string {
  return stringify(withDatesAsText(value), what)
}

/**
 * {@link toJson} without its pass over top-level `Date`s, for a value built
 * without one (CachingPubSub's event, whose `createdAt` is epoch milliseconds).
 */
export function stringify(value: unknown, what: string): string {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch (error) {
    // BigInt and circular structures throw; V8's message names no data.
    throw coded(new TypeError(`${what} is not JSON-serialisable: ${(error as Error).message}`), ErrorCodes.NOT_JSON)
  }
  if (text === undefined) throw nothingToWrite(what, value)
  return text
}

/**
 * Throws `ERR_NOT_JSON` for a value `JSON.stringify` writes nothing for (a
 * function, a symbol; `undefined` is let through: an absent value). As the
 * value itself, {@link stringify} refuses one; inside an object it would be
 * left out without a word, so a value given to be stored inside one of ours
 * (an event's `data`) is checked with this first, as if it stood alone.
 */
export function checkMember(value: unknown, what: string): void {
  if (typeof value === 'function' || typeof value === 'symbol') throw nothingToWrite(what, value)
}

function nothingToWrite(what: string, value: unknown): Error {
  return coded(new TypeError(`${what} is not JSON-serialisable (got ${describe(value)})`), ErrorCodes.NOT_JSON)
}

const dateToJSON = Date.prototype.toJSON
const dateToISOString = Date.prototype.toISOString

/**
 * `value` with its own top-level `Date` members replaced by the text
 * `JSON.stringify` would write for them, so the result serialises to the same
 * text. Why: V8's `JSON.stringify` leaves its fast path for the whole value at
 * the first object with a `toJSON` method, and every `Date` has one. An event
 * with a `createdAt` Date (Mastra's shape) took 5 µs to serialise; 2.5 µs this
 * way. Only plain cases are touched: a value with a `toJSON` of its own, or a
 * `Date` whose `toJSON`/`toISOString` is not the built-in, is left to
 * `JSON.stringify`. (A top-level getter runs once more than it would.)
 */
function withDatesAsText(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value
  const record = value as Record<string, unknown>
  if (typeof record.toJSON === 'function') return value
  let copy: Record<string, unknown> | undefined
  const keys = Object.keys(record)
  for (let i = 0; i < keys.length; i++) {
    const member = record[keys[i]!]
    if (member instanceof Date && member.toJSON === dateToJSON && member.toISOString === dateToISOString) {
      if (copy === undefined) {
        copy = {}
        for (let j = 0; j < i; j++) copy[keys[j]!] = record[keys[j]!]
      }
      copy[keys[i]!] = Number.isNaN(member.getTime()) ? null : isoString(member)
    } else if (copy !== undefined) {
      copy[keys[i]!] = member
    }
  }
  return copy ?? value
}

function describe(value: unknown): string {
  return value === undefined ? 'undefined' : typeof value
}

// The ISO text of the last second seen, up to and including the '.' before
// the milliseconds: events published within one second share it.
let isoSecond = Number.NaN
let isoPrefix = ''

/**
 * `date.toISOString()`, faster for dates in the same second as the previous
 * call (the common case: events stamped as they are published). V8's
 * `toISOString` costs about 1 µs; this is a comparison and a concatenation.
 * Throws `RangeError` for an invalid date, as `toISOString` does.
 */
export function isoString(date: Date): string {
  const ms = date.getTime()
  const second = Math.floor(ms / 1000)
  if (second !== isoSecond) {
    const iso = date.toISOString() // throws for NaN
    // Every ISO string ends with '.mmmZ', whatever the year's width.
    isoPrefix = iso.slice(0, -4)
    isoSecond = second
    return iso
  }
  const millis = ms - second * 1000
  return isoPrefix + (millis < 10 ? '00' : millis < 100 ? '0' : '') + millis + 'Z'
}
