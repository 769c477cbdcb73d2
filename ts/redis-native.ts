import { NativeRedisCache, type NativeRedisOptions, type NativeRedisTarget } from '../native.js'
import { Bridge } from './bridge.js'
import { native } from './errors.js'
import type { RedisBackend } from './redis-client.js'

/** The native mode: the Rust client, results through the completion bridge. */
export class NativeBackend implements RedisBackend {
  readonly #native: NativeRedisCache
  readonly #bridge = new Bridge()

  constructor(target: NativeRedisTarget, options: NativeRedisOptions) {
    this.#native = native(() => new NativeRedisCache(target, options, this.#bridge.onReady))
    this.#bridge.attach(this.#native.bridge)
  }

  /** The native cache, for `nativeCaches`. */
  get native(): NativeRedisCache {
    return this.#native
  }

  get(key: string): Promise<unknown> {
    return this.#bridge.call((id) => this.#native.get(id, key))
  }

  set(key: string, json: string, ttlMs?: number): Promise<void> {
    return this.#bridge.call((id) => this.#native.set(id, key, json, ttlMs))
  }

  delete(key: string): Promise<void> {
    return this.#bridge.call((id) => this.#native.delete(id, key))
  }

  clear(): Promise<void> {
    return this.#bridge.call((id) => this.#native.clear(id))
  }

  listPush(key: string, json: string): Promise<void> {
    return this.#bridge.call((id) => this.#native.listPush(id, key, json))
  }

  listLength(key: string): Promise<number> {
    return this.#bridge.call((id) => this.#native.listLength(id, key))
  }

  listFromTo(key: string, from: number, to: number): Promise<unknown[]> {
    return this.#bridge.call((id) => this.#native.listFromTo(id, key, from, to))
  }

  increment(key: string): Promise<number> {
    return this.#bridge.call((id) => this.#native.increment(id, key))
  }

  listPushIndexed(listKey: string, counterKey: string, json: string): Promise<number> {
    return this.#bridge.call((id) => this.#native.listPushIndexed(id, listKey, counterKey, json))
  }

  close(): void {
    this.#native.close()
  }
}
