/**
 * AI SDK chat requests: what `useChat`'s `DefaultChatTransport` POSTs
 * (`{ id, messages: UIMessage[], trigger, messageId, ...body }`), read as a
 * new run over the conversation, or, when the last assistant message
 * (whose id is its run's id) carries approval responses, as the decisions
 * that continue that run.
 */
import type { InputMessage } from '../agent/types.js'
import { coded, ErrorCodes } from '../errors.js'

/** The parts of a UI message this module reads. */
interface UIMessageLike {
  id?: unknown
  role?: unknown
  parts?: unknown
}

interface UIToolPartLike {
  type?: unknown
  toolCallId?: unknown
  state?: unknown
  approval?: { approved?: unknown; reason?: unknown }
}

export interface ApprovalDecision {
  /** Absent: every waiting call. */
  toolCallId?: string
  approved: boolean
  reason?: string
}

/** Whether `body` is an AI SDK chat request rather than our own start request. */
export function isChatRequest(body: Record<string, unknown>): boolean {
  if (typeof body.trigger === 'string') return true
  const messages = body.messages
  return Array.isArray(messages) && messages.length > 0 && Array.isArray((messages[0] as UIMessageLike)?.parts)
}

/** The approval decisions the conversation's last message sends back for its run, if it does. */
export function approvalsOf(messages: unknown[]): { runId: string; decisions: ApprovalDecision[] } | undefined {
  const last = messages[messages.length - 1] as UIMessageLike | undefined
  if (!last || last.role !== 'assistant' || typeof last.id !== 'string' || !Array.isArray(last.parts)) return undefined
  const decisions: ApprovalDecision[] = []
  for (const part of last.parts as UIToolPartLike[]) {
    if (part?.state !== 'approval-responded' || typeof part.toolCallId !== 'string') continue
    if (typeof part.approval?.approved !== 'boolean') throw invalid('an approval response without `approved`')
    const reason = part.approval.reason
    decisions.push({ toolCallId: part.toolCallId, approved: part.approval.approved, ...(typeof reason === 'string' ? { reason } : {}) })
  }
  return decisions.length > 0 ? { runId: last.id, decisions } : undefined
}

/**
 * The conversation as AI SDK model messages (the AI SDK's own
 * `convertToModelMessages`; the `ai` package is a peer dependency), without
 * the approval bookkeeping parts a run's prompt has no place for.
 */
export async function modelMessagesOf(messages: unknown[]): Promise<InputMessage[]> {
  let ai: { convertToModelMessages(messages: unknown[], options?: object): unknown }
  try {
    ai = (await import('ai')) as typeof ai
  } catch (error) {
    throw new Error(`the UI message stream format needs the \`ai\` package (npm install ai): ${(error as Error).message}`)
  }
  let converted: InputMessage[]
  try {
    converted = (await ai.convertToModelMessages(messages, { ignoreIncompleteToolCalls: true })) as InputMessage[]
  } catch (error) {
    throw invalid((error as Error).message)
  }
  return converted
    .map((message) =>
      Array.isArray(message.content)
        ? { ...message, content: message.content.filter((part) => !APPROVAL_PARTS.has((part as { type?: string }).type ?? '')) }
        : message,
    )
    .filter((message) => !Array.isArray(message.content) || message.content.length > 0)
}

const APPROVAL_PARTS = new Set(['tool-approval-request', 'tool-approval-response'])

function invalid(message: string): Error {
  return coded(new TypeError(`invalid UI messages: ${message}`), ErrorCodes.INVALID_MESSAGES)
}
