import { NativeMemoryCache } from '../native.js'
import { checkInteger, checkKey, checkOptions } from './args.js'
import { native } from './errors.js'
import { toJson } from './json.js'
import { nativeCaches } from './internal.js'
import type { ServerCache } from './server-cache.js'

export interface InMemoryServerCacheOptions {
  /** Default time to live of a key in ms, refreshed by every write to it. `0` disables expiry. Default 300 000. */
  ttlMs?: number
  /** Maximum number of keys; past it the least recently used key is evicted (also when `ttlMs` is 0). Default 1000. */
  maxSize?: number
}

/**
 * The embedded cache: zero setup, one process. Values are stored as JSON text
 * in Rust (moka), so what you read back is a copy, equal to what you stored.
 *
 * Every method runs synchronously in native code (no thread hop) and returns a
 * settled promise, to match `MastraServerCache`.
 */
export class InMemoryServerCache implements ServerCache {
  readonly name = 'InMemoryServerCache'
  readonly #native: NativeMemoryCache

  constructor(options: InMemoryServerCacheOptions = {}) {
    checkOptions(options, { ttlMs: 'number', maxSize: 'number' }, 'InMemoryServerCache options')
    this.#native = native(() => new NativeMemoryCache(options.ttlMs, options.maxSize))
    nativeCaches.set(this, this.#native)
  }

  /** The value at `key`, or `undefined` when absent or expired. A list reads as an array, a counter as a number. */
  async get(key: string): Promise<unknown> {
    const text = native(() => this.#native.get(checkKey(key)))
    return text === null ? undefined : JSON.parse(text)
  }

  /** Stores `value` (any JSON value). `ttlMs` overrides the default TTL for this key; `0` never expires. */
  async set(key: string, value: unknown, ttlMs?: number): Promise<void> {
    const json = toJson(value, 'value')
    native(() => this.#native.set(checkKey(key), json, ttlMs))
  }

  async delete(key: string): Promise<void> {
    native(() => this.#native.delete(checkKey(key)))
  }

  async clear(): Promise<void> {
    native(() => this.#native.clear())
  }

  /** Appends `value` to the list at `key`, creating it, and refreshes the key's TTL. */
  async listPush(key: string, value: unknown): Promise<void> {
    const json = toJson(value, 'value')
    native(() => this.#native.listPush(checkKey(key), json))
  }

  async listLength(key: string): Promise<number> {
    return native(() => this.#native.listLength(checkKey(key)))
  }

  /** Items `from`..`to`, both inclusive; negative indices count from the end (Redis `LRANGE`). */
  async listFromTo(key: string, from: number, to = -1): Promise<unknown[]> {
    const text = native(() => this.#native.listFromTo(checkKey(key), checkInteger(from, 'from'), checkInteger(to, 'to')))
    return JSON.parse(text) as unknown[]
  }

  /** Adds one to the counter at `key` and returns it: 1 on the first call. */
  async increment(key: string): Promise<number> {
    return native(() => this.#native.increment(checkKey(key)))
  }

  /**
   * Atomically takes the next 0-based index from `counterKey`, appends `value`
   * with `index` set to it to `listKey`, and returns the index.
   */
  async listPushIndexed(listKey: string, counterKey: string, value: Record<string, unknown>): Promise<number> {
    const json = toJson(value, 'value')
    return native(() => this.#native.listPushIndexed(checkKey(listKey, 'listKey'), checkKey(counterKey, 'counterKey'), json))
  }
}
