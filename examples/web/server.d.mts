// Types of server.mjs, for the browser spec.
import type { DurableAgent } from '../../dist/index.js'

export function startDemoServer(options?: {
  port?: number
  host?: string
  redisUrl?: string
  pace?: (signal?: AbortSignal) => Promise<void>
  keyPrefix?: string
}): Promise<{ url: string; agent: DurableAgent; close(): Promise<void> }>
