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

/**
 * What must happen before a cache closes, per cache: each durable agent on it
 * stops driving its runs (they stay at their last checkpoint, their leases
 * given up) while the connection can still say so. Off the public types.
 */
export const beforeClose = new WeakMap<object, Set<() => Promise<void>>>()

/** Runs and forgets what must happen before `cache` closes. */
export async function closing(cache: object): Promise<void> {
  const hooks = [...(beforeClose.get(cache) ?? [])]
  beforeClose.delete(cache)
  await Promise.allSettled(hooks.map((hook) => hook()))
}
