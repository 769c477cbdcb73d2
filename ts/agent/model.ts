/**
 * One model step through an AI SDK language model's `doStream`: maps the
 * model's stream parts (specification v2 or v3) to full-stream parts, hands
 * each to the run as it arrives, and sums the step up for the Rust loop.
 */
import type { ContentPart, LanguageModel, LanguageModelCallOptions, ModelSettings, PromptMessage, StreamPart, ToolChoice, Usage } from './types.js'
import { checkToolInput, parseToolInput, type ResolvedTool } from './tools.js'
import { errorInfo } from './util.js'

/** What the Rust loop gets back from a model step (see `core::agent::driver`). */
export interface ModelReply {
  content: ContentPart[]
  /**
   * With `error`: an invalid call (its input is not JSON, or its tool's
   * schema rejects it, or there is no such tool). The loop records its
   * `tool-error` and never runs it or asks for its approval.
   */
  toolCalls: { toolCallId: string; toolName: string; input: unknown; needsApproval: boolean; error?: { name: string; message: string } }[]
  finishReason: string
  usage: Usage
  response: object
  providerMetadata?: object
}

type ModelPart = { type: string; [key: string]: any }

/** v3 reports `{ unified, raw }`, v2 a string. */
function finishReasonOf(reason: unknown): string {
  if (typeof reason === 'string') return reason
  if (reason && typeof reason === 'object' && typeof (reason as { unified?: unknown }).unified === 'string') {
    return (reason as { unified: string }).unified
  }
  return 'unknown'
}

const count = (n: unknown): number | undefined => (typeof n === 'number' && Number.isFinite(n) ? n : undefined)

/** v3 nests token counts (`inputTokens.total`), v2 has them flat. */
export function usageOf(usage: any): Usage {
  if (!usage || typeof usage !== 'object') return {}
  const nested = typeof usage.inputTokens === 'object' || typeof usage.outputTokens === 'object'
  const out: Usage = nested
    ? {
        inputTokens: count(usage.inputTokens?.total),
        outputTokens: count(usage.outputTokens?.total),
        reasoningTokens: count(usage.outputTokens?.reasoning),
        cachedInputTokens: count(usage.inputTokens?.cacheRead),
      }
    : {
        inputTokens: count(usage.inputTokens),
        outputTokens: count(usage.outputTokens),
        totalTokens: count(usage.totalTokens),
        reasoningTokens: count(usage.reasoningTokens),
        cachedInputTokens: count(usage.cachedInputTokens),
      }
  if (out.totalTokens === undefined && (out.inputTokens !== undefined || out.outputTokens !== undefined)) {
    out.totalTokens = (out.inputTokens ?? 0) + (out.outputTokens ?? 0)
  }
  for (const key of Object.keys(out) as (keyof Usage)[]) if (out[key] === undefined) delete out[key]
  return out
}

/** v2 models know no `execution-denied` tool output: tell them in text. */
function promptFor(model: LanguageModel, prompt: PromptMessage[]): PromptMessage[] {
  if (model.specificationVersion !== 'v2') return prompt
  return prompt.map((message) =>
    message.role !== 'tool'
      ? message
      : {
          role: 'tool',
          content: message.content.map((part) =>
            part.output.type === 'execution-denied'
              ? { ...part, output: { type: 'error-text', value: `Tool execution denied: ${part.output.reason ?? 'declined'}` } }
              : part,
          ),
        },
  )
}

export interface StepContext {
  runId: string
  prompt: PromptMessage[]
  tools: Map<string, ResolvedTool>
  requireToolApproval: boolean
  settings: ModelSettings
  toolChoice: ToolChoice
  /** Offer only these tools (all when absent). */
  activeTools: string[] | undefined
  signal: AbortSignal
  emit(part: StreamPart): void
}

/**
 * Streams one step. A model that fails (throws, rejects, or sends an `error`
 * part) rejects; the caller turns that into the run's `error` part.
 */
export async function streamStep(model: LanguageModel, ctx: StepContext): Promise<ModelReply> {
  const offered = new Map([...ctx.tools].filter(([name]) => !ctx.activeTools || ctx.activeTools.includes(name)))
  const tools = [...offered.values()].map((t) => ({
    type: 'function' as const,
    name: t.name,
    description: t.description,
    inputSchema: t.jsonSchema,
  }))
  const doStream = model.doStream as (options: LanguageModelCallOptions) => PromiseLike<{ stream: ReadableStream<unknown> }>
  const { stream } = await doStream.call(model, {
    ...ctx.settings,
    prompt: promptFor(model, ctx.prompt),
    ...(tools.length > 0 ? { tools, toolChoice: typeof ctx.toolChoice === 'string' ? { type: ctx.toolChoice } : ctx.toolChoice } : {}),
    abortSignal: ctx.signal,
  })
  const reply: ModelReply = { content: [], toolCalls: [], finishReason: 'unknown', usage: {}, response: {} }
  // What `needsApproval` and `execute` get: each valid call's input as its schema outputs it.
  const checkedInputs = new Map<string, unknown>()
  // Text and reasoning accumulate per block id, in the order blocks start.
  const blocks = new Map<string, { type: 'text' | 'reasoning'; text: string }>()
  const reader = stream.getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      const part = value as ModelPart
      switch (part.type) {
        case 'stream-start':
          // The driver puts the call's warnings on the step's start-step
          // part; this part itself is not part of the run's stream.
          if (Array.isArray(part.warnings) && part.warnings.length > 0) {
            ctx.emit({ type: 'stream-start', warnings: part.warnings } as unknown as StreamPart)
          }
          break
        case 'text-start':
        case 'reasoning-start': {
          const kind = part.type === 'text-start' ? 'text' : 'reasoning'
          const block = { type: kind, text: '' } as const
          blocks.set(`${kind}:${part.id}`, { ...block })
          ctx.emit(withMeta({ type: part.type, id: part.id }, part))
          break
        }
        case 'text-delta':
        case 'reasoning-delta': {
          const kind = part.type === 'text-delta' ? 'text' : 'reasoning'
          const text = String(part.delta ?? part.text ?? '')
          const key = `${kind}:${part.id}`
          const block = blocks.get(key) ?? { type: kind, text: '' }
          block.text += text
          blocks.set(key, block)
          ctx.emit(withMeta({ type: part.type, id: part.id, text }, part))
          break
        }
        case 'text-end':
        case 'reasoning-end':
          ctx.emit(withMeta({ type: part.type, id: part.id }, part))
          break
        case 'tool-input-start':
          ctx.emit({ type: 'tool-input-start', id: part.id, toolName: part.toolName })
          break
        case 'tool-input-delta':
          ctx.emit({ type: 'tool-input-delta', id: part.id, delta: part.delta })
          break
        case 'tool-input-end':
          ctx.emit({ type: 'tool-input-end', id: part.id })
          break
        case 'tool-call': {
          const toolCallId = String(part.toolCallId)
          const toolName = String(part.toolName)
          const raw = part.input ?? part.args
          const parsed = parseToolInput(toolName, raw)
          const checked = parsed.success ? await checkToolInput(offered.get(toolName), toolName, parsed.value, offered.keys()) : parsed
          // As the AI SDK has it: the parsed input, or the text when it is not JSON.
          const input = parsed.success ? parsed.value : raw
          if (checked.success) {
            const call = { type: 'tool-call' as const, toolCallId, toolName, input }
            checkedInputs.set(toolCallId, checked.value)
            ctx.emit(call)
            reply.content.push(call)
            reply.toolCalls.push({ ...call, needsApproval: false })
          } else {
            // The AI SDK's invalid tool call: marked (and dynamic) in the
            // stream; in the prompt with an object for input, which every
            // provider can send back.
            const error = errorInfo(checked.error)
            ctx.emit({ type: 'tool-call', toolCallId, toolName, input, dynamic: true, invalid: true, error } as unknown as StreamPart)
            reply.content.push({ type: 'tool-call', toolCallId, toolName, input: isPlainObject(input) ? input : {} })
            reply.toolCalls.push({ toolCallId, toolName, input, needsApproval: false, error })
          }
          break
        }
        case 'source':
          ctx.emit(part as StreamPart)
          break
        case 'response-metadata':
          reply.response = {
            ...(part.id !== undefined ? { id: part.id } : {}),
            ...(part.modelId !== undefined ? { modelId: part.modelId } : {}),
            ...(part.timestamp instanceof Date ? { timestamp: part.timestamp.toISOString() } : {}),
          }
          break
        case 'finish':
          reply.finishReason = finishReasonOf(part.finishReason)
          reply.usage = usageOf(part.usage)
          if (part.providerMetadata) reply.providerMetadata = part.providerMetadata
          break
        case 'error':
          throw part.error instanceof Error ? part.error : Object.assign(new Error(errorInfo(part.error).message), { name: 'ModelStreamError' })
        default:
          // raw, file and parts of later specifications: not part of the run's stream.
          break
      }
    }
  } finally {
    reader.releaseLock()
  }
  // Assistant content: text and reasoning blocks first (in order), then tool calls.
  const texts: ContentPart[] = [...blocks.values()].filter((b) => b.text !== '').map((b) => ({ type: b.type, text: b.text }))
  reply.content = [...texts, ...reply.content]
  for (const call of reply.toolCalls) {
    if (call.error) continue
    const checked = { toolCallId: call.toolCallId, input: checkedInputs.get(call.toolCallId) }
    call.needsApproval = ctx.requireToolApproval || (await needsApproval(offered.get(call.toolName), checked, ctx.prompt))
  }
  return reply
}

async function needsApproval(tool: ResolvedTool | undefined, call: { toolCallId: string; input: unknown }, messages: PromptMessage[]): Promise<boolean> {
  const rule = tool?.needsApproval
  if (typeof rule === 'function') return Boolean(await rule(call.input, { toolCallId: call.toolCallId, messages }))
  return rule === true
}

const isPlainObject = (value: unknown): value is object => typeof value === 'object' && value !== null && !Array.isArray(value)

function withMeta<T extends object>(part: T, from: ModelPart): T {
  return from.providerMetadata ? { ...part, providerMetadata: from.providerMetadata } : part
}
