/**
 * Mastra's stream format: the chunks `@mastra/core` agents hand out
 * (`ChunkType`: `{ type, runId, from, payload }`), for apps whose code, server
 * routes or client read those rather than AI SDK parts. Runs store AI SDK
 * parts either way; this is a view of them (`createDurableAgent({ format:
 * 'mastra' })`).
 */
import type { MastraChunk, StreamPart } from './types.js'

/** The JSON Schema of what approving a call takes (Mastra's `resumeSchema`, as text). */
const APPROVAL_SCHEMA = JSON.stringify({
  type: 'object',
  properties: { approved: { type: 'boolean' } },
  required: ['approved'],
})

/** The Mastra chunk for one part of run `runId`. */
export function toMastraChunk(part: StreamPart, runId: string): MastraChunk {
  const base = { runId, from: 'AGENT' as const }
  switch (part.type) {
    case 'start':
      return { ...base, type: 'start', payload: {} }
    case 'start-step':
      return { ...base, type: 'step-start', payload: { request: part.request, warnings: part.warnings } }
    case 'text-start':
    case 'text-end':
    case 'reasoning-start':
    case 'reasoning-end':
      return { ...base, type: part.type, payload: withMetadata({ id: part.id }, part.providerMetadata) }
    case 'text-delta':
    case 'reasoning-delta':
      return { ...base, type: part.type, payload: withMetadata({ id: part.id, text: part.text }, part.providerMetadata) }
    case 'tool-input-start':
      return { ...base, type: 'tool-call-input-streaming-start', payload: { toolCallId: part.id, toolName: part.toolName } }
    case 'tool-input-delta':
      return { ...base, type: 'tool-call-delta', payload: { toolCallId: part.id, argsTextDelta: part.delta } }
    case 'tool-input-end':
      return { ...base, type: 'tool-call-input-streaming-end', payload: { toolCallId: part.id } }
    case 'tool-call':
      return { ...base, type: 'tool-call', payload: { toolCallId: part.toolCallId, toolName: part.toolName, args: part.input } }
    case 'tool-result':
      return {
        ...base,
        type: 'tool-result',
        payload: { toolCallId: part.toolCallId, toolName: part.toolName, args: part.input, result: part.output },
      }
    case 'tool-error':
      return {
        ...base,
        type: 'tool-error',
        payload: { toolCallId: part.toolCallId, toolName: part.toolName, args: part.input, error: part.error },
      }
    case 'tool-approval-request': {
      const call = part.toolCall
      return {
        ...base,
        type: 'tool-call-approval',
        payload: { toolCallId: call.toolCallId, toolName: call.toolName, args: call.input, resumeSchema: APPROVAL_SCHEMA },
      }
    }
    case 'tool-output-denied':
      return {
        ...base,
        type: 'tool-output-denied',
        payload: {
          toolCallId: part.toolCallId,
          toolName: part.toolName,
          approval: { id: part.toolCallId, approved: false, ...(part.reason !== undefined ? { reason: part.reason } : {}) },
        },
      }
    case 'source': {
      const { type: _type, ...payload } = part
      return { ...base, type: 'source', payload }
    }
    case 'file':
      return { ...base, type: 'file', payload: { file: part.file } }
    case 'raw':
      return { ...base, type: 'raw', payload: part.rawValue }
    case 'finish-step':
      return {
        ...base,
        type: 'step-finish',
        payload: {
          stepResult: { reason: part.finishReason },
          output: { usage: part.usage },
          metadata: withMetadata({ ...part.response }, part.providerMetadata),
          response: part.response,
        },
      }
    case 'finish':
      return {
        ...base,
        type: 'finish',
        payload: { stepResult: { reason: part.finishReason }, output: { usage: part.totalUsage }, metadata: {} },
      }
    case 'error':
      return { ...base, type: 'error', payload: { error: part.error } }
    case 'abort':
      return { ...base, type: 'abort', payload: part.reason !== undefined ? { reason: part.reason } : {} }
  }
}

function withMetadata<T extends object>(payload: T, providerMetadata: object | undefined): T & { providerMetadata?: object } {
  return providerMetadata === undefined ? payload : { ...payload, providerMetadata }
}
