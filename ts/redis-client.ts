import { listPushIndexedScript, NativeRedisCache, redisKey } from '../native.js'
import { coded, ErrorCodes, type ErrorCode } from './errors.js'

/**
 * Compatibility mode: drive an already-connected JS Redis client (ioredis by
 * default; node-redis and `@upstash/redis` through the presets), as
 * `@mastra/redis` does. Same key layout and scripts as the native mode, so both
 * modes can share one Redis. The native `{ url }` mode is faster: see README.
 */

/** The ioredis-style subset of a Redis client this mode calls. */
export interface RedisClient {
  get(key: string): Promise<unknown>
  set(key: string, value: unknown, ...args: unknown[]): Promise<unknown>
  llen(key: string): Promise<number>
  rpush(key: string, ...values: unknown[]): Promise<number>
  lrange(key: string, start: number, stop: number): Promise<unknown[]>
  del(...keys: string[]): Promise<number>
  expire(key: string, seconds: number): Promise<number | boolean>
  scan(cursor: string | number, ...args: unknown[]): Promise<[string | number, string[]]>
  incr(key: string): Promise<number>
  /** Lua scripting; without it `listPushIndexed` is rejected rather than made non-atomic. */
  eval?(...args: unknown[]): Promise<unknown>
}

/** How to call a client whose method names or argument shapes differ from ioredis (Mastra's option names). */
export interface RedisClientAdapter {
  evalScript?: (client: RedisClient, script: string, keys: string[], args: string[]) => Promise<unknown>
  setWithExpiry?: (client: RedisClient, key: string, value: unknown, seconds: number) => Promise<unknown>
  scanKeys?: (client: RedisClient, cursor: string | number, pattern: string, count: number) => Promise<[string | number, string[]]>
  getListLength?: (client: RedisClient, key: string) => Promise<number>
  pushToList?: (client: RedisClient, key: string, value: unknown) => Promise<number>
  getListRange?: (client: RedisClient, key: string, start: number, stop: number) => Promise<unknown[]>
  /** Deletes several keys in one call (node-redis takes an array, not varargs). */
  deleteKeys?: (client: RedisClient, keys: string[]) => Promise<unknown>
}

type Required_ = Required<RedisClientAdapter>

const ioredisAdapter: Required_ = {
  evalScript: (client, script, keys, args) => evalOf(client)(script, keys.length, ...keys, ...args),
  setWithExpiry: (client, key, value, seconds) => client.set(key, value, 'EX', seconds),
  scanKeys: (client, cursor, pattern, count) => client.scan(cursor, 'MATCH', pattern, 'COUNT', count),
  getListLength: (client, key) => client.llen(key),
  pushToList: (client, key, value) => client.rpush(key, value),
  getListRange: (client, key, start, stop) => client.lrange(key, start, stop),
  deleteKeys: (client, keys) => client.del(...keys),
}

/** For `@upstash/redis` clients. */
export const upstashPreset: Pick<RedisClientAdapter, 'setWithExpiry' | 'scanKeys' | 'evalScript'> = {
  setWithExpiry: (client, key, value, seconds) => client.set(key, value, { ex: seconds }),
  scanKeys: (client, cursor, pattern, count) => client.scan(cursor, { match: pattern, count }),
  evalScript: (client, script, keys, args) => evalOf(client)(script, keys, args),
}

/** For node-redis (`redis` on npm) v4+ clients. */
export const nodeRedisPreset: Required_ = {
  setWithExpiry: (client, key, value, seconds) => client.set(key, value, { EX: seconds }),
  scanKeys: async (client, cursor, pattern, count) => {
    const reply = (await client.scan(String(cursor), { MATCH: pattern, COUNT: count })) as unknown as
      { cursor: string | number; keys: string[] } | [string | number, string[]]
    return Array.isArray(reply) ? reply : [reply.cursor, reply.keys]
  },
  getListLength: (client, key) => (client as unknown as NodeRedisLists).lLen(key),
  pushToList: (client, key, value) => (client as unknown as NodeRedisLists).rPush(key, value),
  getListRange: (client, key, start, stop) => (client as unknown as NodeRedisLists).lRange(key, start, stop),
  deleteKeys: (client, keys) => (client as unknown as NodeRedisLists).del(keys),
  evalScript: (client, script, keys, args) => evalOf(client)(script, { keys, arguments: args }),
}

interface NodeRedisLists {
  lLen(key: string): Promise<number>
  rPush(key: string, value: unknown): Promise<number>
  lRange(key: string, start: number, stop: number): Promise<unknown[]>
  del(keys: string[]): Promise<number>
}

function evalOf(client: RedisClient): (...args: unknown[]) => Promise<unknown> {
  if (typeof client.eval !== 'function') {
    throw coded(new Error('this Redis client has no eval(): listPushIndexed needs Lua scripting to stay atomic'), ErrorCodes.REDIS)
  }
  return client.eval.bind(client)
}

/** What both Redis modes provide: JSON text in, parsed values out. */
export interface RedisBackend {
  get(key: string): Promise<unknown>
  set(key: string, json: string, ttlMs?: number): Promise<void>
  delete(key: string): Promise<void>
  clear(): Promise<void>
  listPush(key: string, json: string): Promise<void>
  listLength(key: string): Promise<number>
  listFromTo(key: string, from: number, to: number): Promise<unknown[]>
  increment(key: string): Promise<number>
  listPushIndexed(listKey: string, counterKey: string, json: string): Promise<number>
  close(): void
}

export class ClientBackend implements RedisBackend {
  readonly #client: RedisClient
  readonly #prefix: string
  readonly #ttlSeconds: number
  readonly #adapter: Required_
  readonly #script = listPushIndexedScript()
  readonly #cluster: boolean
  /**
   * Calls made while a `clear()` runs, in order: they start once it is done
   * (a clear is many commands; a call made after it must survive it). The
   * client keeps every other call in the order it was made.
   */
  #held: (() => void)[] | undefined

  constructor(client: RedisClient, prefix: string, ttlSeconds: number, adapter: RedisClientAdapter) {
    this.#client = client
    this.#prefix = prefix
    this.#ttlSeconds = ttlSeconds
    this.#adapter = { ...ioredisAdapter, ...adapter }
    this.#cluster = clusterPrimaries(client) !== undefined
  }

  /** Runs `call` now, or once the `clear()` in progress is done. */
  #ordered<T>(call: () => Promise<T>): Promise<T> {
    const held = this.#held
    if (!held) return call()
    return new Promise<T>((resolve, reject) => held.push(() => void call().then(resolve, reject)))
  }

  #key(key: string): string {
    return redisKey(this.#prefix, key)
  }

  get(key: string): Promise<unknown> {
    return this.#ordered(async () => {
      try {
        return parse(await this.#client.get(this.#key(key)))
      } catch (error) {
        if (!isWrongType(error)) throw this.#classify(error)
        return this.#listFromTo(key, 0, -1)
      }
    })
  }

  set(key: string, json: string, ttlMs?: number): Promise<void> {
    // Mastra's adapters take whole seconds; round up so a key never expires early.
    const seconds = ttlMs == null ? this.#ttlSeconds : Math.ceil(ttlMs / 1000)
    return this.#ordered(async () => {
      await this.#guard(seconds > 0 ? this.#adapter.setWithExpiry(this.#client, this.#key(key), json, seconds) : this.#client.set(this.#key(key), json))
    })
  }

  delete(key: string): Promise<void> {
    return this.#ordered(async () => void (await this.#guard(this.#client.del(this.#key(key)))))
  }

  clear(): Promise<void> {
    return this.#ordered(() => {
      const held: (() => void)[] = []
      this.#held = held
      return this.#clearNow().finally(() => {
        this.#held = undefined
        // Start what waited, in order; a clear among them holds the rest again.
        for (const [i, start] of held.entries()) {
          start()
          const again = this.#held as (() => void)[] | undefined
          if (again) {
            again.unshift(...held.slice(i + 1))
            break
          }
        }
      })
    })
  }

  async #clearNow(): Promise<void> {
    const pattern = `${this.#prefix.replace(/[*?[\]\\]/g, '\\$&')}*`
    // A cluster client is scanned primary by primary (a SCAN cursor is per
    // node), and its keys deleted one by one (a DEL of several keys cannot
    // span slots).
    const primaries = await readyPrimaries(this.#client)
    for (const node of primaries ?? [this.#client]) {
      let cursor: string | number = '0'
      do {
        const [next, keys]: [string | number, string[]] = await this.#guard(this.#adapter.scanKeys(node, cursor, pattern, 1000))
        if (keys.length > 0) {
          await this.#guard(primaries ? Promise.all(keys.map((key) => this.#client.del(key))) : this.#adapter.deleteKeys(this.#client, keys))
        }
        cursor = next
      } while (String(cursor) !== '0')
    }
  }

  listPush(key: string, json: string): Promise<void> {
    const k = this.#key(key)
    return this.#ordered(async () => {
      await this.#guard(this.#adapter.pushToList(this.#client, k, json))
      if (this.#ttlSeconds > 0) await this.#guard(this.#client.expire(k, this.#ttlSeconds))
    })
  }

  listLength(key: string): Promise<number> {
    return this.#ordered(async () => Number(await this.#guard(this.#adapter.getListLength(this.#client, this.#key(key)))))
  }

  listFromTo(key: string, from: number, to: number): Promise<unknown[]> {
    return this.#ordered(() => this.#listFromTo(key, from, to))
  }

  async #listFromTo(key: string, from: number, to: number): Promise<unknown[]> {
    const items = await this.#guard(this.#adapter.getListRange(this.#client, this.#key(key), from, to))
    return items.map(parse)
  }

  increment(key: string): Promise<number> {
    const k = this.#key(key)
    return this.#ordered(async () => {
      const n = Number(await this.#guard(this.#client.incr(k)))
      if (this.#ttlSeconds > 0) await this.#guard(this.#client.expire(k, this.#ttlSeconds))
      return n
    })
  }

  listPushIndexed(listKey: string, counterKey: string, json: string): Promise<number> {
    if (listKey === counterKey) {
      // As the native caches say it: the counter would overwrite the list.
      return Promise.reject(coded(new Error('listPushIndexed needs two different keys for the list and its counter'), ErrorCodes.INVALID_VALUE))
    }
    let body: string
    try {
      body = withoutIndex(json)
    } catch (error) {
      return Promise.reject(error)
    }
    const args = [body, String(this.#ttlSeconds * 1000)]
    const keys = [this.#key(listKey), this.#key(counterKey)]
    return this.#ordered(async () => Number(await this.#guard(this.#adapter.evalScript(this.#client, this.#script, keys, args))))
  }

  async #guard<T>(call: Promise<T>): Promise<T> {
    try {
      return await call
    } catch (error) {
      throw this.#classify(error)
    }
  }

  /** Gives a JS client's error one of our codes, keeping it as `cause`. */
  #classify(error: unknown): Error {
    if (error instanceof Error && 'code' in error && typeof error.code === 'string' && error.code.startsWith('ERR_')) {
      return error
    }
    const message = error instanceof Error ? error.message : String(error)
    // Replies a caller's data causes: the codes the native caches give them.
    const code =
      (NativeRedisCache.replyErrorCode(message, this.#cluster) as ErrorCode | null) ??
      (/ECONNREFUSED|ECONNRESET|ENOTFOUND|EPIPE|closed|Connection is closed|not connected/i.test(message) ? ErrorCodes.REDIS_UNAVAILABLE : ErrorCodes.REDIS)
    return coded(new Error(`Redis client failed: ${message}`, { cause: error }), code)
  }

  /** The client belongs to the caller, who closes it. */
  close(): void {}
}

/** Object text without a top-level `index` (the script adds it). */
function withoutIndex(json: string): string {
  if (!json.startsWith('{')) {
    throw coded(new Error('listPushIndexed needs a JSON object value, to set `index` on it'), ErrorCodes.INVALID_VALUE)
  }
  if (!json.includes('"index"')) return json
  const { index: _index, ...rest } = JSON.parse(json) as Record<string, unknown>
  return JSON.stringify(rest)
}

/**
 * A stored value, parsed. Some clients (Upstash) parse replies themselves; a
 * string that is not JSON (written by something else) reads as that string,
 * as in the native mode and in Mastra.
 */
function parse(value: unknown): unknown {
  if (value === null || value === undefined) return undefined
  if (typeof value !== 'string') return value
  try {
    return JSON.parse(value)
  } catch {
    return value
  }
}

function isWrongType(error: unknown): boolean {
  return error instanceof Error && error.message.includes('WRONGTYPE')
}

/** The primaries of an ioredis `Cluster` client (`nodes('master')`); undefined for a single-node client. */
function clusterPrimaries(client: RedisClient): RedisClient[] | undefined {
  const nodes = (client as { nodes?: unknown }).nodes
  return typeof nodes === 'function' ? (nodes.call(client, 'master') as RedisClient[]) : undefined
}

/**
 * {@link clusterPrimaries} once the cluster client is ready: until then its
 * commands wait in its own queue while its node connections already answer,
 * so a scan made then would run before the writes made before it (and a
 * client made just now may list no node at all).
 */
async function readyPrimaries(client: RedisClient): Promise<RedisClient[] | undefined> {
  const primaries = clusterPrimaries(client)
  const cluster = client as { status?: string; once?: (event: string, listener: (...args: unknown[]) => void) => void }
  if (!primaries || cluster.status === 'ready' || typeof cluster.once !== 'function') return primaries
  await new Promise<void>((resolve, reject) => {
    cluster.once!('ready', () => resolve())
    cluster.once!('end', () => reject(coded(new Error('Redis client failed: the cluster client closed'), ErrorCodes.REDIS_UNAVAILABLE)))
  })
  return clusterPrimaries(client)
}
