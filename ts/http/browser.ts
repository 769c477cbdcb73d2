/**
 * `durable-agent/client`: the HTTP clients alone, without the native addon,
 * for browsers (and any runtime with `fetch`).
 */
export { ErrorCodes, type ErrorCode } from '../errors.js'
export { AgentHttpError } from './client-error.js'
export { resumableStream, type ResumableStreamOptions, type RunStream } from './client.js'
export { createResumableChatTransport, type ChatStorage, type ResumableChatTransport, type ResumableChatTransportOptions } from './chat-transport.js'
export type { RetryOptions } from './sse-client.js'
export * from './protocol.js'
