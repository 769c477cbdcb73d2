/** Input messages (a string, or AI SDK model messages) to a language-model prompt. */
import { coded, ErrorCodes } from '../errors.js'
import type { ContentPart, MessageInput, PromptMessage, ToolResultContent, UserContentPart } from './types.js'

function invalid(message: string): Error {
  return coded(new TypeError(`invalid messages: ${message}`), ErrorCodes.INVALID_MESSAGES)
}

/** A user message's parts (text), or an assistant's (text, reasoning, tool calls), as the AI SDK's model messages hold them. */
function contentParts(content: unknown, at: string, role: 'user'): UserContentPart[]
function contentParts(content: unknown, at: string, role: 'assistant'): ContentPart[]
function contentParts(content: unknown, at: string, role: 'user' | 'assistant'): ContentPart[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }]
  if (!Array.isArray(content)) throw invalid(`${at}.content must be a string or an array of parts`)
  return content.map((part, i) => {
    const p = part as { type?: unknown; text?: unknown; toolCallId?: unknown; toolName?: unknown; input?: unknown; args?: unknown }
    if (p && p.type === 'text' && typeof p.text === 'string') return { type: 'text', text: p.text }
    if (role === 'user') throw invalid(`${at}.content[${i}] is not a text part (what a user message holds)`)
    if (p && p.type === 'reasoning' && typeof p.text === 'string') return { type: 'reasoning', text: p.text }
    if (p && p.type === 'tool-call' && typeof p.toolCallId === 'string' && typeof p.toolName === 'string') {
      return { type: 'tool-call', toolCallId: p.toolCallId, toolName: p.toolName, input: p.input ?? p.args ?? {} }
    }
    throw invalid(`${at}.content[${i}] is not a text, reasoning or tool-call part`)
  })
}

function toolParts(content: unknown, at: string): ToolResultContent[] {
  if (!Array.isArray(content)) throw invalid(`${at}.content must be an array of tool-result parts`)
  return content.map((part, i) => {
    const p = part as { type?: unknown; toolCallId?: unknown; toolName?: unknown; output?: unknown; result?: unknown }
    if (!p || p.type !== 'tool-result' || typeof p.toolCallId !== 'string' || typeof p.toolName !== 'string') {
      throw invalid(`${at}.content[${i}] is not a tool-result part`)
    }
    const output = (p.output ?? { type: 'json', value: p.result ?? null }) as ToolResultContent['output']
    return { type: 'tool-result', toolCallId: p.toolCallId, toolName: p.toolName, output }
  })
}

/** The prompt for `messages`, after the agent's `instructions` as a system message. */
export function toPrompt(messages: MessageInput, instructions: string | undefined): PromptMessage[] {
  const prompt: PromptMessage[] = instructions ? [{ role: 'system', content: instructions }] : []
  const list = typeof messages === 'string' ? [{ role: 'user' as const, content: messages }] : Array.isArray(messages) ? messages : [messages]
  if (list.length === 0) throw invalid('no messages')
  list.forEach((message, i) => {
    const at = `messages[${i}]`
    if (!message || typeof message !== 'object') throw invalid(`${at} is not a message object`)
    switch (message.role) {
      case 'system':
        if (typeof message.content !== 'string') throw invalid(`${at}: a system message's content must be a string`)
        prompt.push({ role: 'system', content: message.content })
        break
      case 'user':
        prompt.push({ role: 'user', content: contentParts(message.content, at, 'user') })
        break
      case 'assistant':
        prompt.push({ role: 'assistant', content: contentParts(message.content, at, 'assistant') })
        break
      case 'tool':
        prompt.push({ role: 'tool', content: toolParts(message.content, at) })
        break
      default:
        throw invalid(`${at}.role must be system, user, assistant or tool, got ${JSON.stringify((message as { role?: unknown }).role)}`)
    }
  })
  try {
    JSON.stringify(prompt)
  } catch (error) {
    throw invalid(`not serialisable: ${(error as Error).message}`)
  }
  return prompt
}

/** Mastra's `getInstructions()` may give a string, strings, or system messages. */
export function instructionsText(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value === 'string') return value
  if (Array.isArray(value)) return value.map(instructionsText).filter(Boolean).join('\n')
  if (typeof value === 'object' && 'content' in value) return instructionsText((value as { content: unknown }).content)
  return undefined
}
