/**
 * durable-agent: resumable streams and durable agent runs for Mastra-style
 * apps, on a Rust core. This module is the package entry (`require`; for
 * `import`, `index.mts` re-exports it); `../native.js` is the generated native
 * loader behind it.
 */
export { ErrorCodes, type CodedError, type ErrorCode } from './errors.js'
export { InMemoryServerCache, type InMemoryServerCacheOptions } from './memory-cache.js'
export {
  CachingPubSub,
  withCaching,
  type CachingPubSubOptions,
  type EventCallback,
  type InnerPubSub,
  type PublishedEvent,
  type PubSubEvent,
  type SubscribeOptions,
} from './pubsub.js'
export { RedisServerCache, type RedisConnection, type RedisServerCacheOptions, type RedisTlsOptions } from './redis-cache.js'
export { nodeRedisPreset, upstashPreset, type RedisClient, type RedisClientAdapter } from './redis-client.js'
export type { ServerCache } from './server-cache.js'
export {
  createDurableAgent,
  DurableAgent,
  isDurableAgent,
  type CreateDurableAgentOptions,
  type DurableAgentActiveRun,
  type DurableAgentRecoverActiveRunsResult,
  type DurableAgentRun,
  type DurableAgentStreamResult,
  type MastraAgentLike,
} from './agent/durable-agent.js'
export { DurableOutput } from './agent/output.js'
export type * from './agent/types.js'
export type { MastraChunk } from './agent/types.js'
export { createAgentHandler, type AgentHandler, type AgentHandlerOptions } from './http/handler.js'
export { toNodeHandler, type NodeHandler } from './http/node-adapter.js'
export { CachingTransformStream, type CachingTransformStreamOptions } from './http/caching-transform-stream.js'
export { runTopic } from './wire.js'
export { toUIMessageChunk, type UIMessageChunk } from './http/ui-message-stream.js'
// The Node-side clients; the chat transport (typed against the AI SDK, a peer
// dependency) and the protocol's names are in `durable-agent/client`, which
// needs neither the addon nor, for its other exports, the AI SDK.
export { AgentHttpError } from './http/client-error.js'
export { resumableStream, type ResumableStreamOptions, type RunStream } from './http/client.js'
export type { RetryOptions } from './http/sse-client.js'
