/**
 * The AI SDK UI message stream (what `useChat` reads): a run's stored parts
 * as UI message chunks, chunk for part, the way the AI SDK's own
 * `toUIMessageStream` maps a `streamText` full stream (ai 6). One part gives
 * at most one chunk, so every chunk keeps its event's index as its SSE `id`.
 *
 * The assistant message's id is the run's id (the `start` chunk's
 * `messageId`): a reloaded page, a second tab and an approval sent back with
 * the messages all name the run by it.
 */
import type { StreamPart } from '../agent/types.js'

/** A UI message chunk (the AI SDK's `UIMessageChunk`), as far as a run produces them. */
export type UIMessageChunk = { type: string; [key: string]: unknown }

/** The UI stream's finish reasons (the AI SDK's `FinishReason` without `unknown`). */
const FINISH_REASONS = new Set(['stop', 'length', 'content-filter', 'tool-calls', 'error', 'other'])

/** As stored: errors are `{ name, message }`. */
type StoredPart = StreamPart & { error?: { message?: string } }

function withMetadata(chunk: UIMessageChunk, part: { providerMetadata?: object }): UIMessageChunk {
  return part.providerMetadata ? { ...chunk, providerMetadata: part.providerMetadata } : chunk
}

/** The UI chunk of a stored part of run `runId`, or `undefined` for a part the UI stream has no chunk for. */
export function toUIMessageChunk(stored: StreamPart, runId: string): UIMessageChunk | undefined {
  const part = stored as StoredPart
  switch (part.type) {
    case 'start':
      return { type: 'start', messageId: runId }
    case 'start-step':
      return { type: 'start-step' }
    case 'finish-step':
      return { type: 'finish-step' }
    case 'text-start':
    case 'text-end':
    case 'reasoning-start':
    case 'reasoning-end':
      return withMetadata({ type: part.type, id: part.id }, part)
    case 'text-delta':
    case 'reasoning-delta':
      return withMetadata({ type: part.type, id: part.id, delta: part.text }, part)
    case 'tool-input-start':
      return { type: 'tool-input-start', toolCallId: part.id, toolName: part.toolName }
    case 'tool-input-delta':
      return { type: 'tool-input-delta', toolCallId: part.id, inputTextDelta: part.delta }
    case 'tool-call':
      return { type: 'tool-input-available', toolCallId: part.toolCallId, toolName: part.toolName, input: part.input }
    case 'tool-approval-request':
      return { type: 'tool-approval-request', approvalId: part.approvalId, toolCallId: part.toolCall.toolCallId }
    case 'tool-result':
      // JSON drops undefined: null keeps the output field (as the AI SDK does).
      return { type: 'tool-output-available', toolCallId: part.toolCallId, output: part.output ?? null }
    case 'tool-error':
      return { type: 'tool-output-error', toolCallId: part.toolCallId, errorText: errorText(part.error) }
    case 'tool-output-denied':
      return { type: 'tool-output-denied', toolCallId: part.toolCallId }
    case 'source':
      return sourceChunk(part)
    case 'finish':
      return { type: 'finish', finishReason: FINISH_REASONS.has(part.finishReason) ? part.finishReason : 'other' }
    case 'error':
      return { type: 'error', errorText: errorText(part.error) }
    case 'abort':
      return part.reason === undefined ? { type: 'abort' } : { type: 'abort', reason: part.reason }
    default:
      // tool-input-end, raw, file: the UI stream has no chunk for them.
      return undefined
  }
}

/** The chunk that ends a UI stream where the run waits for approval: the step stopped for tool calls. */
export const SUSPENDED_CHUNK: UIMessageChunk = { type: 'finish', finishReason: 'tool-calls' }

function errorText(error: unknown): string {
  const message = (error as { message?: unknown } | undefined)?.message
  return typeof message === 'string' ? message : 'An error occurred.'
}

function sourceChunk(part: { [key: string]: unknown }): UIMessageChunk | undefined {
  const meta = part.providerMetadata ? { providerMetadata: part.providerMetadata } : {}
  if (part.sourceType === 'url') return { type: 'source-url', sourceId: part.id, url: part.url, title: part.title, ...meta }
  if (part.sourceType === 'document') {
    return { type: 'source-document', sourceId: part.id, mediaType: part.mediaType, title: part.title, filename: part.filename, ...meta }
  }
  return undefined
}
