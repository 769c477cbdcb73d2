/**
 * The JS half of the Rust loop's callbacks (`core::agent::driver::Callbacks`):
 * Rust calls them with a JSON request and awaits a JSON reply; they never
 * reject, a failure is the reply `{ error: { name, message } }`.
 *
 * - model: a `ModelRequest` (`../wire.ts`) → the step streamed through the
 *   AI SDK model (its parts handed to the run as they come, see `emit`),
 *   then `{ content, toolCalls, finishReason, usage, response }`.
 * - tool: a `ToolRequest` → `{ output }`.
 */
import type { ModelRequest, ToolRequest } from '../wire.js'
import type { LanguageModel } from './types.js'
import { streamStep } from './model.js'
import { executeTool, type ResolvedTool } from './tools.js'
import { errorInfo } from './util.js'

/** What the agent is made of, resolved once (Mastra's getters may be async). */
export interface Resolved {
  model: LanguageModel
  tools: Map<string, ResolvedTool>
  instructions: string | undefined
}

export interface LoopDependencies {
  resolve(): Promise<Resolved>
  /** The signal a run's model and tool calls get (aborted with the run). */
  signalOf(runId: string): AbortSignal
  /** Hands stream parts (a JSON array) to the run being driven. */
  emit(runId: string, parts: string): void
}

type JsonCallback = (request: string) => Promise<string>

export function loopCallbacks(deps: LoopDependencies): { callModel: JsonCallback; callTool: JsonCallback } {
  const callModel = async (requestText: string): Promise<string> => {
    try {
      const request = JSON.parse(requestText) as ModelRequest
      const { model, tools } = await deps.resolve()
      // Parts go to the run in batches, one per event-loop turn (a model's
      // network chunk, or all of an instant model's parts): one native call
      // and one wake-up of the run's readers per batch, not per part.
      const batch: string[] = []
      let scheduled: NodeJS.Immediate | undefined
      const flush = () => {
        scheduled = undefined
        if (batch.length === 0) return
        const parts = `[${batch.join(',')}]`
        batch.length = 0
        deps.emit(request.runId, parts)
      }
      try {
        const reply = await streamStep(model, {
          runId: request.runId,
          prompt: request.messages,
          tools,
          requireToolApproval: request.options.requireToolApproval === true,
          settings: request.options.modelSettings ?? {},
          toolChoice: request.options.toolChoice ?? 'auto',
          activeTools: request.options.activeTools,
          signal: deps.signalOf(request.runId),
          emit: (part) => {
            batch.push(JSON.stringify(part))
            scheduled ??= setImmediate(flush)
          },
        })
        return JSON.stringify(reply)
      } finally {
        // Every part before the reply.
        if (scheduled) clearImmediate(scheduled)
        flush()
      }
    } catch (error) {
      return JSON.stringify({ error: errorInfo(error) })
    }
  }

  const callTool = async (requestText: string): Promise<string> => {
    try {
      const request = JSON.parse(requestText) as ToolRequest
      const { tools } = await deps.resolve()
      const output = await executeTool(tools, request.toolName, request.input, {
        toolCallId: request.toolCallId,
        runId: request.runId,
        abortSignal: deps.signalOf(request.runId),
        idempotencyKey: request.idempotencyKey,
        messages: request.messages,
      })
      return `{"output":${outputJson(request.toolName, output)}}`
    } catch (error) {
      return JSON.stringify({ error: errorInfo(error) })
    }
  }

  return { callModel, callTool }
}

/** A tool's output as JSON (`undefined` is `null`); one JSON cannot hold is the call's error. */
function outputJson(toolName: string, output: unknown): string {
  let text: string | undefined
  try {
    text = JSON.stringify(output === undefined ? null : output)
  } catch (error) {
    throw notJson(toolName, (error as Error).message)
  }
  // A function or a symbol stringifies to nothing.
  if (text === undefined) throw notJson(toolName, `got a ${typeof output}`)
  return text
}

function notJson(toolName: string, why: string): Error {
  return Object.assign(new Error(`tool "${toolName}" returned a value that is not JSON: ${why}`), { name: 'ToolOutputError' })
}
