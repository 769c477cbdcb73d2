/**
 * Public types of durable agents: AI SDK vocabulary (language models of
 * specification v2 and v3, full-stream parts, tools), described structurally
 * so this package needs no AI SDK types at build time.
 */

/** JSON as stored: what tool inputs, outputs and options are. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** An AI SDK language model (`LanguageModelV2` or `LanguageModelV3`), driven through `doStream`. */
export interface LanguageModel {
  readonly specificationVersion: 'v2' | 'v3'
  readonly provider?: string
  readonly modelId?: string
  /**
   * The model's `doStream`, which we call with `LanguageModelCallOptions`.
   * Typed `never` here so that every AI SDK model fits as it is: v2 and v3
   * (and their providers) declare their call options differently.
   */
  doStream(options: never): PromiseLike<{ stream: ReadableStream<unknown> }>
}

/** What `doStream` gets (the AI SDK's call options, as far as we set them). */
export interface LanguageModelCallOptions extends ModelSettings {
  prompt: PromptMessage[]
  tools?: { type: 'function'; name: string; description?: string; inputSchema: object }[]
  toolChoice?: { type: 'auto' | 'none' | 'required' } | { type: 'tool'; toolName: string }
  abortSignal?: AbortSignal
  includeRawChunks?: boolean
}

/** The AI SDK's call settings a run hands its model on every step (JSON, stored with the run). */
export interface ModelSettings {
  maxOutputTokens?: number
  temperature?: number
  topP?: number
  topK?: number
  presencePenalty?: number
  frequencyPenalty?: number
  stopSequences?: string[]
  seed?: number
  headers?: Record<string, string>
  providerOptions?: Record<string, Record<string, JsonValue>>
}

/** Which tools the model may (or must) call (the AI SDK's `toolChoice`). */
export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'tool'; toolName: string }

/**
 * A language-model prompt message (AI SDK `LanguageModelV2Prompt` / `V3Prompt`
 * item). Each is also an AI SDK `ModelMessage`, so tools typed for the AI SDK
 * (which get `messages: ModelMessage[]`) take ours.
 */
export type PromptMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: UserContentPart[] }
  | { role: 'assistant'; content: ContentPart[] }
  | { role: 'tool'; content: ToolResultContent[] }

/** What a user message holds. */
export type UserContentPart = Extract<ContentPart, { type: 'text' | 'file' }>

export type ContentPart =
  | { type: 'text'; text: string }
  | { type: 'reasoning'; text: string }
  | { type: 'tool-call'; toolCallId: string; toolName: string; input: unknown }
  | { type: 'file'; data: string; mediaType: string; filename?: string }

export interface ToolResultContent {
  type: 'tool-result'
  toolCallId: string
  toolName: string
  output: { type: 'json'; value: JsonValue } | { type: 'text' | 'error-text'; value: string } | { type: 'execution-denied'; reason?: string }
}

/**
 * Messages a run starts from: a string (one user message) or AI SDK model
 * messages (`{ role, content }`, content a string or parts).
 */
export type MessageInput = string | InputMessage | InputMessage[]
export interface InputMessage {
  role: 'system' | 'user' | 'assistant' | 'tool'
  content: string | unknown[]
}

/** What a tool's `execute` gets besides its input. */
export interface ToolExecutionOptions {
  toolCallId: string
  runId: string
  abortSignal: AbortSignal
  /** `<runId>:<step>:<toolCallId>`: stable across retries and recovery of the same call. */
  idempotencyKey: string
  /** The conversation up to this call. */
  messages: PromptMessage[]
}

/** An AI SDK-style tool. `inputSchema`: a JSON Schema, an AI SDK `jsonSchema()`, or a schema the AI SDK accepts (zod, Standard Schema). */
export interface Tool<Input = any, Output = unknown> {
  description?: string
  inputSchema: unknown
  execute?: (input: Input, options: ToolExecutionOptions) => Output | PromiseLike<Output>
  /** Ask the user before running it; a function decides per call. */
  needsApproval?: boolean | ((input: Input, options: { toolCallId: string; messages: PromptMessage[] }) => boolean | PromiseLike<boolean>)
}

/**
 * A tool made by a builder that types it: the AI SDK's `tool()` (ai 5 or 6)
 * or Mastra's `createTool`. Taken as it is; its input and `execute` are typed
 * by its builder. Its `inputSchema` is a schema object (zod, Standard Schema,
 * AI SDK `jsonSchema()`), an AI SDK `lazySchema()`, or absent (a Mastra tool
 * without one).
 */
export interface BuiltTool {
  description?: string
  inputSchema?: { '~standard': object } | { jsonSchema: unknown } | (() => unknown)
  /**
   * `Function`: the builders declare contexts of their own (ai 5 knows no
   * `execution-denied` output in `messages`, Mastra's `createTool` expects
   * its own context), and a type with no call signature leaves the typing
   * of a plain tool's `execute` to `Tool`.
   */
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  execute?: Function
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  needsApproval?: boolean | Function
  /** Mastra's name for `needsApproval`. */
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  requireApproval?: boolean | Function
}

/** An agent's tools: plain `Tool` objects, and tools made with the AI SDK's `tool()` or Mastra's `createTool`. */
export type ToolSet = Record<string, Tool | BuiltTool>

/** A plain agent definition. */
export interface AgentDefinition {
  id: string
  name?: string
  instructions?: string
  model: LanguageModel
  tools?: ToolSet
}

/** Token usage (AI SDK `LanguageModelUsage`). */
export interface Usage {
  inputTokens?: number
  outputTokens?: number
  totalTokens?: number
  reasoningTokens?: number
  cachedInputTokens?: number
}

export type FinishReason = 'stop' | 'length' | 'content-filter' | 'tool-calls' | 'error' | 'other' | 'unknown' | (string & {})

export interface ToolCallPart {
  type: 'tool-call'
  toolCallId: string
  toolName: string
  /** As parsed from the model's JSON text; the text itself when it is not JSON (an invalid call). */
  input: unknown
  /**
   * The AI SDK's invalid tool call: the input is not JSON, its tool's schema
   * rejects it, or there is no such tool. It was not run; its `tool-error`
   * follows and the model gets the error. Such a call is dynamic.
   */
  invalid?: true
  dynamic?: true
  error?: Error
}

export interface ToolResultPart {
  type: 'tool-result'
  toolCallId: string
  toolName: string
  input: unknown
  output: unknown
}

/** A part of a run's full stream: the AI SDK's `TextStreamPart` shapes. */
export type StreamPart =
  | { type: 'start' }
  | { type: 'start-step'; request: object; warnings: unknown[] }
  | { type: 'text-start' | 'text-end' | 'reasoning-start' | 'reasoning-end'; id: string; providerMetadata?: object }
  | { type: 'text-delta' | 'reasoning-delta'; id: string; text: string; providerMetadata?: object }
  | { type: 'tool-input-start'; id: string; toolName: string }
  | { type: 'tool-input-delta'; id: string; delta: string }
  | { type: 'tool-input-end'; id: string }
  | ToolCallPart
  | ToolResultPart
  | { type: 'tool-error'; toolCallId: string; toolName: string; input: unknown; error: Error }
  | { type: 'tool-output-denied'; toolCallId: string; toolName: string; reason?: string }
  | { type: 'tool-approval-request'; approvalId: string; toolCall: ToolCallPart }
  | { type: 'source'; [key: string]: unknown }
  | { type: 'file'; file: unknown }
  | { type: 'raw'; rawValue: unknown }
  | { type: 'finish-step'; response: object; usage: Usage; finishReason: FinishReason; providerMetadata?: object }
  | { type: 'finish'; finishReason: FinishReason; totalUsage: Usage }
  | { type: 'error'; error: Error }
  | { type: 'abort'; reason?: string }

/** A block of a step's text or reasoning, as the AI SDK's `StepResult.content` holds it. */
export interface TextBlock {
  type: 'text' | 'reasoning'
  text: string
  providerMetadata?: object
}

/** What a step produced, in order (the AI SDK's `StepResult.content`). */
export type StepContentPart = TextBlock | ToolCallPart | ToolResultPart | Extract<StreamPart, { type: 'tool-error' | 'source' | 'file' }>

/**
 * One model step and the tool calls it made, with the members of the AI
 * SDK's `StepResult` (which Mastra's `LLMStepResult` extends). The tools of a
 * durable agent are declared up front, so its calls are static, but for
 * invalid ones (dynamic, as in the AI SDK).
 */
export interface StepResult {
  /** Everything the step produced, in order. */
  content: StepContentPart[]
  text: string
  /** The step's reasoning blocks. */
  reasoning: TextBlock[]
  reasoningText: string
  files: unknown[]
  sources: Extract<StreamPart, { type: 'source' }>[]
  toolCalls: ToolCallPart[]
  staticToolCalls: ToolCallPart[]
  dynamicToolCalls: ToolCallPart[]
  toolResults: ToolResultPart[]
  staticToolResults: ToolResultPart[]
  dynamicToolResults: ToolResultPart[]
  finishReason: FinishReason
  usage: Usage
  /** The model call's warnings (its `stream-start`), as the step's `start-step` part carries them. */
  warnings: unknown[]
  /**
   * `{}`: unlike the AI SDK, a durable run does not store the request body
   * (the whole prompt, every step) in its event log.
   */
  request: object
  response: object
  providerMetadata?: object
}

/** What the run waits for when it suspends (Mastra's `AgentSuspendedEventData`). */
export interface SuspendedData {
  type: 'approval'
  toolCallId: string
  toolName: string
  args: unknown
  /** Every call waiting, when the model asked for several. */
  toolCalls: { toolCallId: string; toolName: string; args: unknown }[]
}

/** How a run (or the part of it an output read) ended. */
export type RunOutcome = 'finished' | 'failed' | 'aborted' | 'suspended'

export interface FullOutput {
  runId: string
  text: string
  /** Tokens of every step the output read. */
  usage: Usage
  /** `usage`, under the name Mastra's and the AI SDK's `onFinish` give it. */
  totalUsage: Usage
  finishReason: FinishReason
  steps: StepResult[]
  toolCalls: ToolCallPart[]
  toolResults: ToolResultPart[]
  /** `suspended`: the run waits for tool approval (see `suspended`). */
  outcome: RunOutcome
  suspended?: SuspendedData
  error?: Error
}

/**
 * How a run's stream is handed out: `'aisdk'` (default), the AI SDK's
 * full-stream parts; `'mastra'`, `@mastra/core`'s chunks (`{ type, runId,
 * from, payload }`), for code that reads Mastra agent streams.
 */
export type StreamFormat = 'aisdk' | 'mastra'

// Mastra's stream format (`format: 'mastra'`, see `mastra-chunks.ts`).

/** Fields every Mastra chunk has. */
interface MastraChunkBase {
  runId: string
  from: 'AGENT'
}

/** Tool call fields as Mastra names them (`args` for the AI SDK's `input`). */
interface MastraToolCall {
  toolCallId: string
  toolName: string
  args: unknown
}

/** A chunk of `@mastra/core`'s `ChunkType`, as far as a durable run produces them. */
export type MastraChunk = MastraChunkBase &
  (
    | { type: 'start'; payload: Record<string, never> }
    | { type: 'step-start'; payload: { request: object; warnings: unknown[] } }
    | { type: 'text-start' | 'text-end' | 'reasoning-start' | 'reasoning-end'; payload: { id: string; providerMetadata?: object } }
    | { type: 'text-delta' | 'reasoning-delta'; payload: { id: string; text: string; providerMetadata?: object } }
    | { type: 'tool-call-input-streaming-start'; payload: { toolCallId: string; toolName: string } }
    | { type: 'tool-call-delta'; payload: { toolCallId: string; argsTextDelta: string } }
    | { type: 'tool-call-input-streaming-end'; payload: { toolCallId: string } }
    | { type: 'tool-call'; payload: MastraToolCall }
    | { type: 'tool-result'; payload: MastraToolCall & { result: unknown } }
    | { type: 'tool-error'; payload: MastraToolCall & { error: Error } }
    | { type: 'tool-call-approval'; payload: MastraToolCall & { resumeSchema: string } }
    | { type: 'tool-output-denied'; payload: { toolCallId: string; toolName: string; approval: { id: string; approved: false; reason?: string } } }
    | { type: 'source'; payload: Record<string, unknown> }
    | { type: 'file'; payload: { file: unknown } }
    | { type: 'raw'; payload: unknown }
    | {
        type: 'step-finish'
        payload: {
          stepResult: { reason: FinishReason }
          output: { usage: Usage }
          /** The response's fields (`id`, `modelId`, `timestamp`) and the provider's metadata, where Mastra reads them. */
          metadata: { providerMetadata?: object; [key: string]: unknown }
          response: object
        }
      }
    | { type: 'finish'; payload: { stepResult: { reason: FinishReason }; output: { usage: Usage }; metadata: Record<string, never> } }
    | { type: 'error'; payload: { error: Error } }
    | { type: 'abort'; payload: { reason?: string } }
  )

/** What a run's stream hands out in format `F`. */
export type ChunkOf<F extends StreamFormat> = F extends 'mastra' ? MastraChunk : StreamPart

/** `C`: what the stream hands out (`StreamPart`, or `MastraChunk` in the `'mastra'` format). */
export interface StreamCallbacks<C = StreamPart> {
  onChunk?: (chunk: C) => void | PromiseLike<void>
  onStepFinish?: (step: StepResult) => void | PromiseLike<void>
  onFinish?: (result: FullOutput) => void | PromiseLike<void>
  onError?: (event: { error: Error }) => void | PromiseLike<void>
  onSuspended?: (data: SuspendedData) => void | PromiseLike<void>
  /** The run was aborted (its `abort` part); `steps` are those this output read. */
  onAbort?: (event: { reason?: string; steps: StepResult[] }) => void | PromiseLike<void>
}

export interface StreamOptions<C = StreamPart> extends StreamCallbacks<C> {
  /** Default: a random UUID. 1-200 printable characters, no spaces or braces. */
  runId?: string
  threadId?: string
  resourceId?: string
  maxSteps?: number
  /** Every tool call waits for approval. */
  requireToolApproval?: boolean
  abortSignal?: AbortSignal
  /** Temperature, token limit, provider options, ...: passed to the model on every step. */
  modelSettings?: ModelSettings
  /** Default `'auto'`. */
  toolChoice?: ToolChoice
  /** Offer the model only these tools (default: all of the agent's). */
  activeTools?: string[]
  /** At most this many tool calls of one step run at once (default 10, as in Mastra). */
  toolCallConcurrency?: number
  /**
   * Continue a client's view of the existing run `runId` instead of starting
   * one: the id of the last event the client applied (its index, as SSE
   * `id:` and `Last-Event-ID` carry it, a number or its decimal text). The
   * result streams from the next event on; `messages` are not used.
   */
  resumeFromEventId?: number | string
}

export type ResumeOptions<C = StreamPart> = StreamCallbacks<C>

export interface ObserveOptions<C = StreamPart> extends StreamCallbacks<C> {
  /** The index of the first event to replay; 0 (default) replays the whole run. */
  offset?: number
}

/** What `resume` takes: an approval decision (Mastra's shape). */
export interface ResumeData {
  approved: boolean
  /** Which waiting call; absent: all of them. */
  toolCallId?: string
  /** Why a call was declined (the model sees it). */
  reason?: string
}
