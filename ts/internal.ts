import type { NativeMemoryCache, NativeRedisCache } from '../index.js'

/**
 * The native handle behind each cache object, for other classes of this
 * package (CachingPubSub builds its topic logs in the same store). Not part of
 * the public API; a WeakMap keeps it off the public types.
 */
export const nativeCaches = new WeakMap<object, NativeMemoryCache | NativeRedisCache>()
