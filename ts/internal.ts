import type { NativeMemoryCache, NativePubSub, NativeRedisCache } from '../native.js'
import type { Bridge } from './bridge.js'
import type { TopicReader } from './topic-reader.js'

/**
 * The native handle behind each cache object, for other classes of this
 * package (CachingPubSub builds its topic logs in the same store). Not part of
 * the public API; a WeakMap keeps it off the public types.
 */
export const nativeCaches = new WeakMap<object, NativeMemoryCache | NativeRedisCache>()

/** What durable agents need of a CachingPubSub: its native topic logs, its bridge, and readers. */
export interface PubSubInternals {
  native: NativePubSub
  bridge: Bridge
  /** The cache it stores in (the agent's default cache when none was given). */
  cache: object
  reader(topic: string, offset: number | undefined): TopicReader
}

/** The internals behind each CachingPubSub, for durable agents; off the public types. */
export const pubsubInternals = new WeakMap<object, PubSubInternals>()
