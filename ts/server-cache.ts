/**
 * The contract of Mastra's `MastraServerCache` (`@mastra/core/cache`), which
 * both caches implement. Structural, so this package needs no Mastra import.
 */
export interface ServerCache {
  get(key: string): Promise<unknown>
  set(key: string, value: unknown, ttlMs?: number): Promise<void>
  delete(key: string): Promise<void>
  clear(): Promise<void>
  listPush(key: string, value: unknown): Promise<void>
  listLength(key: string): Promise<number>
  listFromTo(key: string, from: number, to?: number): Promise<unknown[]>
  increment(key: string): Promise<number>
  listPushIndexed(listKey: string, counterKey: string, value: Record<string, unknown>): Promise<number>
}
