import { coded, ErrorCodes } from './errors.js'

/** Argument and option checks at the JS boundary: types here, ranges in Rust. */

export function checkKey(key: unknown, name = 'key'): string {
  if (typeof key !== 'string') {
    throw coded(new TypeError(`${name} must be a string, got ${typeof key}`), ErrorCodes.INVALID_ARG)
  }
  return key
}

export function checkInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw coded(new TypeError(`${name} must be an integer, got ${String(value)}`), ErrorCodes.INVALID_ARG)
  }
  return value
}

type Kind = 'string' | 'number' | 'boolean' | 'object' | 'function'

/** Throws `ERR_INVALID_OPTION` naming the first option whose type is wrong. */
export function checkOptions(options: unknown, kinds: Record<string, Kind>, what: string): void {
  if (options === undefined) return
  if (options === null || typeof options !== 'object') {
    throw coded(new TypeError(`${what} must be an object`), ErrorCodes.INVALID_OPTION)
  }
  for (const [name, kind] of Object.entries(kinds)) {
    const value = (options as Record<string, unknown>)[name]
    if (value !== undefined && typeof value !== kind) {
      throw coded(new TypeError(`invalid option \`${name}\`: must be a ${kind}, got ${typeof value}`), ErrorCodes.INVALID_OPTION)
    }
  }
}
