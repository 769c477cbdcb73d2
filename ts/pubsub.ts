import { randomUUID } from 'node:crypto'

import { NativePubSub } from '../native.js'
import { checkInteger, checkKey, checkOptions } from './args.js'
import { Bridge } from './bridge.js'
import { coded, ErrorCodes, native } from './errors.js'
import { nativeCaches, pubsubInternals } from './internal.js'
import { checkMember, stringify } from './json.js'
import type { InMemoryServerCache } from './memory-cache.js'
import type { RedisServerCache } from './redis-cache.js'
import { TopicIterator } from './topic-iterator.js'
import { withCreatedAtDate, TopicReader, type PubSubEvent } from './topic-reader.js'
import { isTransient, retryPause } from './wire.js'

export type { PubSubEvent } from './topic-reader.js'

/** What a publisher passes: `id` and `createdAt` are filled in when absent. */
export interface PublishedEvent {
  type: string
  runId: string
  data?: unknown
  id?: string
  createdAt?: Date
}

export type EventCallback = (event: PubSubEvent) => void | Promise<void>

/** The methods of a Mastra `PubSub` (e.g. `EventEmitterPubSub`) that CachingPubSub calls on its inner bus. */
export interface InnerPubSub {
  publish(topic: string, event: PublishedEvent & { index?: number }, options?: { localOnly?: boolean }): Promise<void>
  flush(): Promise<void>
  clearTopic?(topic: string): Promise<void>
}

/**
 * Where topics live in the cache by default. Not Mastra's `'pubsub:'`: its
 * CachingPubSub keeps a topic as a list (and a counter) at `pubsub:<topic>`,
 * ours as a log at the same name would collide with it, each failing on the
 * other's topics, in an app that runs both (a migration, a rollout).
 * Releases up to 0.1.0 used `'pubsub:'`: pass it to read what they stored.
 */
const DEFAULT_TOPIC_PREFIX = 'durable-agent:'

/** The prefix of Mastra's CachingPubSub (`@mastra/core`), whose topics are lists. */
const MASTRA_TOPIC_PREFIX = 'pubsub:'

export interface CachingPubSubOptions {
  /**
   * Prepended to topic names to form their keys in the cache. Default
   * `'durable-agent:'` ({@link DEFAULT_TOPIC_PREFIX}); `'pubsub:'` reads
   * topics and runs stored by releases up to 0.1.0.
   */
  keyPrefix?: string
  /** How much of each topic to keep. */
  retention?: {
    /** TTL of a topic in ms, refreshed by every publish; 0 = never expires. Default: the cache's TTL. */
    ttlMs?: number
    /** Keep at most this many of a topic's newest events. Default: no limit. */
    maxEvents?: number
  }
  /** Topics for which this returns false are not stored: their events go to the inner bus only. */
  shouldCache?: (topic: string) => boolean
  /**
   * Errors of callback subscribers: a callback that throws, or a read that
   * failed (Redis down: retried; an expired offset: the subscription ends).
   * Default: rethrown as an uncaught exception, as a throwing listener would be.
   */
  onError?: (error: Error, topic: string) => void
}

export interface SubscribeOptions {
  /** First index to receive. Default 0: the whole retained history. */
  offset?: number
  /**
   * The last event you received (its `index` and `id`): resume right after
   * it, and check first that it is still in the topic. If the topic was
   * written again meanwhile (cleared and published to, or a Redis failover
   * that lost it and gave its index to another event), the iterator throws
   * `ERR_TOPIC_REWRITTEN` instead of going on past events you never got.
   * Sets the offset (`after.index + 1`); an `offset` given too must agree.
   */
  after?: Pick<PubSubEvent, 'index' | 'id'>
  /** Aborting ends the iteration (with an `AbortError`) and frees the subscription. */
  signal?: AbortSignal
}

/**
 * Events per page: one JSON.parse per page. In memory a page is a synchronous
 * call, and 256 is where bigger pages stop paying; over Redis every page is a
 * round trip, so pages are bigger.
 */
const PAGE_IN_MEMORY = 256
const PAGE_OVER_REDIS = 2048

/**
 * Resumable topic streams: every event is stored with a gap-free index before
 * `publish` resolves, and any reader, in this process or (over Redis) another,
 * gets every event once, in order, from any offset.
 *
 * `inner` is optional. Without it, delivery is native: in process, and across
 * processes when `cache` is a `RedisServerCache`. With a Mastra `PubSub`
 * (e.g. `EventEmitterPubSub`), stored events are also published to it, for
 * the bus's own subscribers.
 */
export class CachingPubSub {
  readonly supportsOffsets = true
  readonly #inner: InnerPubSub | undefined
  readonly #native: NativePubSub
  readonly #bridge = new Bridge()
  readonly #shouldCache: ((topic: string) => boolean) | undefined
  readonly #onError: ((error: Error, topic: string) => void) | undefined
  readonly #callbacks = new Map<string, Map<EventCallback, CallbackSubscription>>()
  readonly #cache: InMemoryServerCache | RedisServerCache
  readonly #keyPrefix: string

  constructor(inner: InnerPubSub | null | undefined, cache: InMemoryServerCache | RedisServerCache, options: CachingPubSubOptions = {}) {
    checkOptions(options, { keyPrefix: 'string', retention: 'object', shouldCache: 'function', onError: 'function' }, 'CachingPubSub options')
    checkOptions(options.retention, { ttlMs: 'number', maxEvents: 'number' }, 'retention')
    if (inner != null && (typeof inner !== 'object' || typeof inner.publish !== 'function')) {
      throw coded(new TypeError('inner must be a PubSub (with publish and flush) or null'), ErrorCodes.INVALID_OPTION)
    }
    const store = nativeCaches.get(cache)
    if (!store) {
      throw coded(
        new TypeError('cache must be an InMemoryServerCache or a RedisServerCache in native mode ({ url }, { host }, { cluster })'),
        ErrorCodes.INVALID_OPTION,
      )
    }
    this.#cache = cache
    this.#keyPrefix = options.keyPrefix ?? DEFAULT_TOPIC_PREFIX
    const nativeOptions = {
      keyPrefix: this.#keyPrefix,
      ttlMs: options.retention?.ttlMs,
      maxEvents: options.retention?.maxEvents,
    }
    this.#native = native(() => new NativePubSub(store, nativeOptions, this.#bridge.onReady))
    this.#bridge.attach(this.#native.bridge)
    pubsubInternals.set(this, {
      native: this.#native,
      bridge: this.#bridge,
      cache,
      reader: (topic, offset) => this.#reader(topic, { offset }),
    })
    this.#inner = inner ?? undefined
    this.#shouldCache = options.shouldCache
    this.#onError = options.onError
  }

  /**
   * Stores the event and resolves with its index once it is stored (a store
   * failure rejects). With `localOnly`, or a topic `shouldCache` refuses, the
   * event is not stored and goes to the inner bus only; it resolves `undefined`.
   */
  async publish(topic: string, event: PublishedEvent, options?: { localOnly?: boolean }): Promise<number | undefined> {
    checkKey(topic, 'topic')
    if (event === null || typeof event !== 'object') {
      throw coded(new TypeError('event must be an object'), ErrorCodes.INVALID_ARG)
    }
    checkKey(event.type, 'event.type')
    checkKey(event.runId, 'event.runId')
    if (options?.localOnly || (this.#shouldCache !== undefined && !this.#shouldCache(topic))) {
      await this.#inner?.publish(topic, event, options)
      return undefined
    }
    if (event.createdAt !== undefined && !(event.createdAt instanceof Date && !Number.isNaN(event.createdAt.getTime()))) {
      throw coded(new TypeError('event.createdAt must be a valid Date'), ErrorCodes.INVALID_ARG)
    }
    if (event.id !== undefined) checkKey(event.id, 'event.id')
    checkMember(event.data, 'event.data')
    const createdAt = event.createdAt ?? new Date()
    const id = event.id ?? randomUUID()
    // Stored as epoch ms, not the Date: a Date's toJSON takes JSON.stringify
    // off V8's fast path (~1 µs of a ~4.6 µs publish), and every reader
    // builds the Date again from what is stored, which from a number takes a
    // quarter of the time it takes from ISO text (0.05 against 0.23 µs).
    const json = stringify({ id, type: event.type, runId: event.runId, data: event.data, createdAt: createdAt.getTime() }, 'event')
    const nativePubSub = this.#native
    let index: number
    try {
      index = nativePubSub.synchronous
        ? native(() => nativePubSub.publishNow(topic, json))
        : await this.#bridge.call<number>((request) => nativePubSub.publish(request, topic, json))
    } catch (error) {
      throw await this.#explain(error, topic)
    }
    // Only when there is an inner bus: awaiting nothing still costs a turn.
    if (this.#inner) {
      await this.#inner.publish(topic, { id, type: event.type, runId: event.runId, data: event.data, createdAt, index }, options)
    }
    return index
  }

  /**
   * The stored events of `topic` from `offset`; without one, from the oldest
   * retained event. An offset retention dropped rejects with
   * `ERR_OFFSET_EXPIRED`, never with a silently shorter history.
   */
  async getHistory(topic: string, offset?: number): Promise<PubSubEvent[]> {
    checkKey(topic, 'topic')
    if (offset !== undefined) checkOffset(offset)
    const events = await this.#bridge
      .call<PubSubEvent[]>((id) => this.#native.history(id, topic, offset))
      .catch(async (error: unknown) => {
        throw await this.#explain(error, topic)
      })
    return events.map(withCreatedAtDate)
  }

  /**
   * The events of `topic` from `offset` (default: the oldest retained), then
   * live ones, as an async iterator:
   * `for await (const event of pubsub.subscribeWithReplay(topic))`.
   * `break`, `return()` or aborting `signal` ends it and frees the subscription.
   */
  subscribeWithReplay(topic: string, options?: SubscribeOptions): AsyncIterableIterator<PubSubEvent>
  /** Mastra's callback form: replays the history to `cb`, then live events. */
  subscribeWithReplay(topic: string, cb: EventCallback): Promise<void>
  subscribeWithReplay(topic: string, cbOrOptions?: EventCallback | SubscribeOptions): AsyncIterableIterator<PubSubEvent> | Promise<void> {
    if (typeof cbOrOptions === 'function') return this.#subscribeCallback(topic, {}, cbOrOptions)
    checkKey(topic, 'topic')
    checkOptions(cbOrOptions, { offset: 'number', signal: 'object', after: 'object' }, 'subscribe options')
    const start = startOf(cbOrOptions?.offset, cbOrOptions?.after)
    return new TopicIterator(this.#reader(topic, start), cbOrOptions?.signal)
  }

  /**
   * Mastra's callback form: events from `offset` (history, then live) to
   * `cb`. In place of the offset, `{ after: lastEvent }` resumes after the
   * last event you got, checking first that it is still there (see
   * {@link SubscribeOptions.after}): the promise rejects with
   * `ERR_TOPIC_REWRITTEN` if not.
   */
  async subscribeFromOffset(topic: string, from: number | Pick<SubscribeOptions, 'after'>, cb: EventCallback): Promise<void> {
    const start = typeof from === 'number' ? startOf(from, undefined) : startOf(undefined, from?.after ?? invalidFrom(from))
    return this.#subscribeCallback(topic, start, cb)
  }

  /** `start.offset` undefined: from the oldest retained event. */
  async #subscribeCallback(topic: string, start: Start, cb: EventCallback): Promise<void> {
    checkKey(topic, 'topic')
    if (typeof cb !== 'function') throw coded(new TypeError('cb must be a function'), ErrorCodes.INVALID_ARG)
    const entry = new CallbackSubscription(topic, cb, this.#reader(topic, start), this.#reportError)
    this.#register(topic, cb, entry)
    try {
      // Deliver what is stored now before resolving, as Mastra does; then follow.
      await entry.replay()
    } catch (error) {
      this.#unregister(topic, cb, entry)
      throw error
    }
    entry.start()
  }

  /** Live events only, from the next one published. */
  async subscribe(topic: string, cb: EventCallback): Promise<void> {
    checkKey(topic, 'topic')
    if (typeof cb !== 'function') throw coded(new TypeError('cb must be a function'), ErrorCodes.INVALID_ARG)
    const next = await this.#bridge
      .call<number>((id) => this.#native.nextIndex(id, topic))
      .catch(async (error: unknown) => {
        throw await this.#explain(error, topic)
      })
    const entry = new CallbackSubscription(topic, cb, this.#reader(topic, { offset: next }), this.#reportError)
    this.#register(topic, cb, entry)
    entry.start()
  }

  async unsubscribe(topic: string, cb: EventCallback): Promise<void> {
    const entry = this.#callbacks.get(topic)?.get(cb)
    if (entry) this.#unregister(topic, cb, entry)
  }

  /** Deletes the topic's history and index (the next publish gets index 0), here and in the inner bus. */
  async clearTopic(topic: string): Promise<void> {
    checkKey(topic, 'topic')
    await this.#bridge.call<void>((id) => this.#native.clearTopic(id, topic))
    await this.#inner?.clearTopic?.(topic)
  }

  async flush(): Promise<void> {
    await this.#inner?.flush()
  }

  getInner(): InnerPubSub | undefined {
    return this.#inner
  }

  /**
   * What this instance holds right now, for monitoring and leak checks:
   * callback subscriptions, topics with readers in this process (callbacks
   * and iterators, of every CachingPubSub on the same cache), and native
   * calls in flight.
   */
  stats(): { callbackSubscriptions: number; topicsRead: number; callsInFlight: number } {
    let callbackSubscriptions = 0
    for (const byCallback of this.#callbacks.values()) callbackSubscriptions += byCallback.size
    return { callbackSubscriptions, topicsRead: this.#native.topicsRead, callsInFlight: this.#bridge.pending }
  }

  /** A native reader of `topic` from `start` (see {@link Start}). */
  #reader(topic: string, start: Start): TopicReader {
    const subscription = native(() => this.#native.subscribe(topic, start.offset, start.afterId))
    return new TopicReader(subscription, this.#bridge, this.#native.synchronous ? PAGE_IN_MEMORY : PAGE_OVER_REDIS, (error) => this.#explain(error, topic))
  }

  /**
   * The store's ERR_WRONG_TYPE for a topic whose key holds a list says only
   * that; a list there is what Mastra's CachingPubSub stores a topic as, so
   * say that, and the fix. Anything else is passed on as it is.
   */
  async #explain(error: unknown, topic: string): Promise<unknown> {
    if ((error as { code?: unknown } | null)?.code !== ErrorCodes.WRONG_TYPE) return error
    const key = this.#keyPrefix + topic
    const isList = await this.#cache.listLength(key).then(
      (length) => length > 0,
      () => false,
    )
    if (!isList) return error
    const ours = this.#keyPrefix === MASTRA_TOPIC_PREFIX ? `'${MASTRA_TOPIC_PREFIX}', Mastra's too` : `'${this.#keyPrefix}'`
    return coded(
      new Error(
        `topic \`${topic}\`: key \`${key}\` holds a list, as Mastra's CachingPubSub (@mastra/core) stores its topics, ` +
          `not a topic of this CachingPubSub (keyPrefix ${ours}): give this CachingPubSub a keyPrefix Mastra's does not use ` +
          `(the default, '${DEFAULT_TOPIC_PREFIX}'), or read this topic with Mastra's CachingPubSub`,
        { cause: error },
      ),
      ErrorCodes.WRONG_TYPE,
    )
  }

  #unregister(topic: string, cb: EventCallback, entry: CallbackSubscription): void {
    entry.stop()
    const byCallback = this.#callbacks.get(topic)
    if (byCallback?.get(cb) !== entry) return
    byCallback.delete(cb)
    if (byCallback.size === 0) this.#callbacks.delete(topic)
  }

  #register(topic: string, cb: EventCallback, entry: CallbackSubscription): void {
    let byCallback = this.#callbacks.get(topic)
    if (!byCallback) this.#callbacks.set(topic, (byCallback = new Map()))
    byCallback.get(cb)?.stop() // subscribing the same callback again replaces it
    byCallback.set(cb, entry)
  }

  readonly #reportError = (error: Error, topic: string): void => {
    if (this.#onError) {
      this.#onError(error, topic)
      return
    }
    queueMicrotask(() => {
      throw error
    })
  }
}

/** `new CachingPubSub(inner, cache, options)`, as Mastra names it. */
export function withCaching(
  inner: InnerPubSub | null | undefined,
  cache: InMemoryServerCache | RedisServerCache,
  options?: CachingPubSubOptions,
): CachingPubSub {
  return new CachingPubSub(inner, cache, options)
}

/**
 * Where a reader starts: `offset` (undefined: the oldest retained event) and,
 * resuming after an event, that event's id, which its first read checks.
 */
interface Start {
  offset?: number
  afterId?: string
}

/** The start of a reader given an offset, `after` an event, or both (which must agree). */
function startOf(offset: number | undefined, after: SubscribeOptions['after']): Start {
  if (offset !== undefined) checkOffset(offset)
  if (after === undefined) return { offset }
  if (typeof after !== 'object' || after === null) {
    throw coded(new TypeError(`after must be an event ({ index, id }), got ${after === null ? 'null' : typeof after}`), ErrorCodes.INVALID_ARG)
  }
  checkOffset(after.index, 'after.index')
  if (typeof after.id !== 'string') {
    throw coded(new TypeError(`after.id must be a string, got ${typeof after.id}`), ErrorCodes.INVALID_ARG)
  }
  if (offset !== undefined && offset !== after.index + 1) {
    throw coded(new RangeError(`offset ${offset} is not the index after after.index ${after.index}`), ErrorCodes.INVALID_ARG)
  }
  return { offset: after.index + 1, afterId: after.id }
}

function invalidFrom(from: unknown): never {
  throw coded(new TypeError(`from must be an offset or { after: event }, got ${JSON.stringify(from) ?? typeof from}`), ErrorCodes.INVALID_ARG)
}

function checkOffset(offset: number, name = 'offset'): void {
  if (checkInteger(offset, name) < 0) {
    throw coded(new RangeError(`${name} must be >= 0, got ${offset}`), ErrorCodes.INVALID_ARG)
  }
}

/** A callback subscriber: pulls pages and calls `cb` for each event, in order. */
class CallbackSubscription {
  #stopped = false

  constructor(
    readonly topic: string,
    readonly cb: EventCallback,
    readonly reader: TopicReader,
    readonly report: (error: Error, topic: string) => void,
  ) {}

  /** Delivers what is stored now, page by page, and returns once caught up. */
  async replay(): Promise<void> {
    while (!this.#stopped) {
      const page = await this.reader.available()
      if (page === undefined) return
      this.#deliverPage(page)
    }
  }

  /** Then follows live events until stopped. */
  start(): void {
    void this.#follow()
  }

  stop(): void {
    this.#stopped = true
    this.reader.close()
  }

  #deliverPage(page: PubSubEvent[]): void {
    for (const event of page) {
      if (this.#stopped) return
      try {
        const result = this.cb(withCreatedAtDate(event))
        if (result instanceof Promise) result.catch((error: unknown) => this.report(asError(error), this.topic))
      } catch (error) {
        this.report(asError(error), this.topic)
      }
    }
  }

  async #follow(): Promise<void> {
    let attempt = 0
    while (!this.#stopped) {
      let page: PubSubEvent[] | undefined
      try {
        // A callback subscription, like an event listener, does not hold Node open.
        page = await this.reader.next(false)
      } catch (error) {
        const failure = asError(error)
        const code = (failure as { code?: string }).code ?? ''
        // The cache was closed: an orderly shutdown ends the subscription, quietly.
        if (code === ErrorCodes.CACHE_CLOSED) return this.stop()
        if (!isTransient(failure)) {
          this.report(failure, this.topic)
          return this.stop()
        }
        // The store is briefly away: keep reading, after a pause (the core's
        // retry policy), and say so once per outage, not at every retry.
        if (attempt === 0) this.report(failure, this.topic)
        await retryPause(attempt++)
        continue
      }
      attempt = 0
      if (page === undefined) return
      this.#deliverPage(page)
    }
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error))
}
