import { checkInteger, checkKey, checkOptions } from './args.js'
import { coded, ErrorCodes } from './errors.js'
import { toJson } from './json.js'
import { ClientBackend, type RedisBackend, type RedisClient, type RedisClientAdapter } from './redis-client.js'
import { NativeBackend } from './redis-native.js'
import { closing, nativeCaches } from './internal.js'
import type { ServerCache } from './server-cache.js'

/** Where Redis is, for the native client. */
export type RedisConnection =
  | {
      /** `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. */
      url: string
      /** Extra TLS settings for a `rediss://` URL. */
      tls?: RedisTlsOptions
    }
  | {
      /**
       * A Redis Cluster (Redis 7 or later): URLs of some of its nodes, all
       * `redis://` or all `rediss://`, with the same credentials. The other
       * nodes are discovered; slot moves and failovers are followed.
       */
      cluster: { nodes: string[] }
      /** Extra TLS settings for `rediss://` nodes. */
      tls?: RedisTlsOptions
    }
  | {
      host?: string
      port?: number
      username?: string
      password?: string
      db?: number
      /** `true`, or TLS settings, to connect with TLS. */
      tls?: boolean | RedisTlsOptions
    }

export interface RedisTlsOptions {
  /** PEM certificate(s) to trust instead of the public web roots (private CA, self-signed server). */
  ca?: string
}

export interface RedisServerCacheOptions extends RedisClientAdapter {
  /** Prepended to every key; scope tenants and apps with it. Default `'mastra:cache:'`. */
  keyPrefix?: string
  /** TTL set by every write, in seconds; `0` keeps keys until deleted. Default 300. */
  ttlSeconds?: number
  /** How long one attempt to (re)connect may take, in ms. Default 5000. Native mode only. */
  connectTimeoutMs?: number
  /** How long a command may wait for its reply, in ms. Default 5000. Native mode only. */
  commandTimeoutMs?: number
}

/**
 * The shared cache: many Node processes, one Redis or a Redis Cluster.
 *
 * - `new RedisServerCache({ url })` (or `{ host, port, ... }`): the native Rust
 *   client, one multiplexed, auto-reconnecting connection. Recommended.
 * - `new RedisServerCache({ cluster: { nodes: [url, ...] } })`: the native
 *   client on a Redis Cluster. A list and its counter, and a run's keys, share
 *   a hash tag, so every atomic step stays in one slot.
 * - `new RedisServerCache({ client })`: drives a connected ioredis client (or
 *   node-redis / Upstash with `nodeRedisPreset` / `upstashPreset`), for apps
 *   that already hold one. Same keys and scripts; slower.
 */
export class RedisServerCache implements ServerCache {
  readonly name = 'RedisServerCache'
  readonly #backend: RedisBackend

  constructor(connection: RedisConnection | { client: RedisClient }, options: RedisServerCacheOptions = {}) {
    checkOptions(options, { keyPrefix: 'string', ttlSeconds: 'number', connectTimeoutMs: 'number', commandTimeoutMs: 'number' }, 'RedisServerCache options')
    if (connection === null || typeof connection !== 'object') {
      throw coded(new TypeError('RedisServerCache needs { url }, { host, port, ... }, { cluster: { nodes } } or { client }'), ErrorCodes.INVALID_OPTION)
    }
    if ('client' in connection) {
      if (connection.client === null || typeof connection.client !== 'object') {
        throw coded(new TypeError('invalid option `client`: must be a connected Redis client'), ErrorCodes.INVALID_OPTION)
      }
      const ttlSeconds = options.ttlSeconds ?? 300
      if (!Number.isFinite(ttlSeconds) || ttlSeconds < 0) {
        throw coded(new RangeError(`invalid option \`ttlSeconds\`: must be a finite number >= 0, got ${ttlSeconds}`), ErrorCodes.INVALID_OPTION)
      }
      this.#backend = new ClientBackend(connection.client, options.keyPrefix ?? 'mastra:cache:', ttlSeconds, options)
      return
    }
    checkOptions(
      connection,
      { url: 'string', host: 'string', port: 'number', username: 'string', password: 'string', db: 'number' },
      'RedisServerCache connection',
    )
    const tls = (connection as { tls?: boolean | RedisTlsOptions }).tls
    if (tls !== undefined && typeof tls !== 'boolean' && (tls === null || typeof tls !== 'object')) {
      throw coded(new TypeError('invalid option `tls`: must be a boolean or { ca }'), ErrorCodes.INVALID_OPTION)
    }
    const ca = typeof tls === 'object' ? tls.ca : undefined
    if (ca !== undefined && typeof ca !== 'string') {
      throw coded(new TypeError('invalid option `tls.ca`: must be a string of PEM certificates'), ErrorCodes.INVALID_OPTION)
    }
    let backend: NativeBackend
    if ('cluster' in connection) {
      const nodes = (connection.cluster as { nodes?: unknown } | null)?.nodes
      if (!Array.isArray(nodes) || nodes.length === 0 || !nodes.every((node) => typeof node === 'string')) {
        throw coded(new TypeError('invalid option `cluster.nodes`: must be a non-empty array of Redis URLs'), ErrorCodes.INVALID_OPTION)
      }
      backend = new NativeBackend({ clusterNodes: nodes, ca }, options)
    } else if ('url' in connection) {
      backend = new NativeBackend({ url: connection.url, ca }, options)
    } else {
      for (const name of ['port', 'db'] as const) {
        const value = connection[name]
        if (value !== undefined && !(Number.isInteger(value) && value >= 0)) {
          throw coded(new RangeError(`invalid option \`${name}\`: must be a non-negative integer, got ${value}`), ErrorCodes.INVALID_OPTION)
        }
      }
      backend = new NativeBackend({ ...connection, tls: tls !== undefined && tls !== false, ca }, options)
    }
    this.#backend = backend
    nativeCaches.set(this, backend.native)
  }

  /** The value at `key`, or `undefined` when absent or expired. A list reads as an array, a counter as a number. */
  async get(key: string): Promise<unknown> {
    return this.#backend.get(checkKey(key))
  }

  /** Stores `value` (any JSON value). `ttlMs` overrides the default TTL; `0` never expires. */
  async set(key: string, value: unknown, ttlMs?: number): Promise<void> {
    const json = toJson(value, 'value')
    await this.#backend.set(checkKey(key), json, ttlMs)
  }

  async delete(key: string): Promise<void> {
    await this.#backend.delete(checkKey(key))
  }

  /** Deletes every key under this cache's `keyPrefix`, and nothing else. */
  async clear(): Promise<void> {
    await this.#backend.clear()
  }

  async listPush(key: string, value: unknown): Promise<void> {
    const json = toJson(value, 'value')
    await this.#backend.listPush(checkKey(key), json)
  }

  async listLength(key: string): Promise<number> {
    return this.#backend.listLength(checkKey(key))
  }

  /** Items `from`..`to`, both inclusive; negative indices count from the end (`LRANGE`). */
  async listFromTo(key: string, from: number, to = -1): Promise<unknown[]> {
    return this.#backend.listFromTo(checkKey(key), checkInteger(from, 'from'), checkInteger(to, 'to'))
  }

  async increment(key: string): Promise<number> {
    return this.#backend.increment(checkKey(key))
  }

  /** One atomic round trip: next index, append with `index` set, refresh both TTLs. */
  async listPushIndexed(listKey: string, counterKey: string, value: Record<string, unknown>): Promise<number> {
    const json = toJson(value, 'value')
    return this.#backend.listPushIndexed(checkKey(listKey, 'listKey'), checkKey(counterKey, 'counterKey'), json)
  }

  /**
   * Releases the native connection so Node can exit; later calls reject with
   * `ERR_CACHE_CLOSED`. Durable agents on this cache first stop driving their
   * runs here (model and tool calls in flight see their abort signal), which
   * stay at their last checkpoint with their leases given up, so another
   * process can recover them at once. A `{ client }` is left to its owner.
   */
  async close(): Promise<void> {
    await closing(this)
    this.#backend.close()
  }
}
