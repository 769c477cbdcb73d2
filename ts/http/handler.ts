/**
 * `createAgentHandler`: a durable agent served over HTTP, as a Web-standard
 * `(request: Request) => Promise<Response>` (a Hono handler, a Next.js route
 * handler, or Node's `http` through `toNodeHandler`).
 *
 * Routes, under `basePath`:
 *
 * | route | |
 * |---|---|
 * | `POST /runs` | start a run and stream it (our body, or an AI SDK chat request) |
 * | `GET /runs` | the agent's running runs (JSON) |
 * | `GET /runs/:id` | a run's status (JSON) |
 * | `GET /runs/:id/stream` | resume from `Last-Event-ID` / `?offset=` (default: the start) |
 * | `POST /runs/:id/stop` | abort the run wherever it is driven |
 * | `POST /runs/:id/approve`, `/decline` | decide a waiting tool call and stream the continuation |
 *
 * A client that closes its connection only stops reading: the run goes on.
 */
import type { DurableAgent, DurableAgentRun, MastraAgentLike } from '../agent/durable-agent.js'
import type { AgentDefinition, InputMessage, MessageInput, StreamCallbacks, StreamOptions } from '../agent/types.js'
import { coded, ErrorCodes } from '../errors.js'
import { parseEventIndex } from '../event-index.js'
import { pubsubInternals, type PubSubInternals } from '../internal.js'
import { ChatRuns } from './chat-runs.js'
import { errorResponse, httpError, jsonResponse } from './http-errors.js'
import { END_EVENT, FORMAT_PARAM, RUN_ID_HEADER, type StreamEnd, type WireFormat } from './protocol.js'
import { SSE_HEADERS, sseMessage, sseRetry } from './sse.js'
import { runTopic } from '../wire.js'
import { notFound, topicSource } from './stream-sources.js'
import { nextIndexOf, serveTopic, type StreamSource } from './topic-stream.js'
import { approvalsOf, isChatRequest, modelMessagesOf, type ApprovalDecision } from './ui-chat-request.js'
import { framesOf } from './wire-format.js'

// Any durable agent: the HTTP layer reads stored parts, whatever the agent's own stream format.
type AnyDurableAgent = DurableAgent<AgentDefinition | MastraAgentLike, any>

/** What a client may ask of a run it starts: the options without the callbacks (which are the server's). */
type RunRequest = Omit<StreamOptions, keyof StreamCallbacks>

export interface AgentHandlerOptions {
  /** Where the routes live, e.g. `'/api/agent'`. Default `''`. */
  basePath?: string
  /**
   * Decides every request before anything is read or changed: `runId` and the
   * run's `resourceId` (the tenant it was started for; for `POST /runs`, the
   * one asked for). `false` answers 403 `ERR_FORBIDDEN`. In `GET /runs`, runs
   * it refuses are left out.
   */
  authorize?: (request: Request, scope: { runId?: string; resourceId?: string }) => boolean | Promise<boolean>
  /** A comment on an idle stream this often, for proxies. Default 15 000 ms. */
  heartbeatMs?: number
  /** The SSE `retry:` a client waits before reconnecting. Default 1 000 ms. */
  retryMs?: number
  /** The wire format when the request does not pick one (`?format=`, or an AI SDK chat request). Default `'parts'`. */
  format?: WireFormat
  /** The largest request body accepted (413 beyond). Default 1 MiB. */
  maxBodyBytes?: number
  /** Errors that are not the client's doing (a 5xx). Default: `console.error` of their code and message. */
  onError?: (error: unknown) => void
}

export type AgentHandler = (request: Request) => Promise<Response>

/** Model settings a client may set (no `headers` or `providerOptions`: those are the server's). */
const CLIENT_MODEL_SETTINGS = new Set(['maxOutputTokens', 'temperature', 'topP', 'topK', 'presencePenalty', 'frequencyPenalty', 'stopSequences', 'seed'])

/** Chat and run ids become keys: the run id rule (1-200 printable characters, no spaces or braces). */
const ID = /^[^\s{}\p{Cc}]{1,200}$/u

export function createAgentHandler(agent: AnyDurableAgent, options: AgentHandlerOptions = {}): AgentHandler {
  const internals = pubsubInternals.get(agent.pubsub)
  if (!internals) throw coded(new TypeError('createAgentHandler needs a durable agent of this package'), ErrorCodes.INVALID_OPTION)
  const base = (options.basePath ?? '').replace(/\/+$/, '')
  if (base !== '' && !base.startsWith('/')) {
    throw coded(new TypeError(`basePath must start with '/', got ${JSON.stringify(base)}`), ErrorCodes.INVALID_OPTION)
  }
  const heartbeatMs = positive(options.heartbeatMs ?? 15_000, 'heartbeatMs')
  const retryMs = positive(options.retryMs ?? 1_000, 'retryMs')
  const maxBodyBytes = positive(options.maxBodyBytes ?? 1024 * 1024, 'maxBodyBytes')
  const defaultFormat = options.format ?? 'parts'
  if (defaultFormat !== 'parts' && defaultFormat !== 'ui') {
    throw coded(new TypeError(`format must be 'parts' or 'ui', got ${JSON.stringify(defaultFormat)}`), ErrorCodes.INVALID_OPTION)
  }
  const report =
    options.onError ??
    ((error: unknown) => {
      const { code, message } = error as { code?: string; message?: string }
      console.error(`durable-agent handler: ${code ?? 'error'}: ${message ?? String(error)}`)
    })
  const chats = new ChatRuns(agent.cache, agent.id)
  const served = new Served(internals, { heartbeatMs, retryMs })

  const authorize = async (request: Request, scope: { runId?: string; resourceId?: string }): Promise<void> => {
    if (options.authorize && !(await options.authorize(request, scope))) {
      throw httpError('not authorized for this run', ErrorCodes.FORBIDDEN)
    }
  }

  /** The run `id` (or direct stream) and its topic's next index, authorized; `ERR_RUN_NOT_FOUND` when there is none. */
  const target = async (request: Request, id: string): Promise<{ run?: DurableAgentRun; source: StreamSource; next: number }> => {
    const run = await agent.getRun(id).catch((error: { code?: string }) => {
      if (error?.code !== ErrorCodes.RUN_NOT_FOUND) throw error
      return undefined
    })
    const next = run?.nextIndex ?? (await nextIndexOf(internals, runTopic(id)))
    // Nothing under this (unguessable) id: nothing to protect, so 404 before asking.
    if (!run && next === 0) throw notFound(id)
    await authorize(request, { runId: id, ...(run?.resourceId !== undefined ? { resourceId: run.resourceId } : {}) })
    return { ...(run ? { run } : {}), source: topicSource(agent, internals, id), next }
  }

  const startRun = async (request: Request, url: URL): Promise<Response> => {
    const body = await readJson(request, maxBodyBytes)
    const chat = isChatRequest(body)
    const format = formatOf(url) ?? (chat ? 'ui' : defaultFormat)
    let messages: MessageInput
    let runOptions: RunRequest
    if (chat) {
      const uiMessages = body.messages as unknown[]
      const approvals = approvalsOf(uiMessages)
      if (approvals) return decide(request, approvals.runId, approvals.decisions, format)
      const chatId = idOf(body.id, 'id (the chat id)')
      messages = await modelMessagesOf(uiMessages)
      runOptions = { ...runOptionsOf(body, agent.maxSteps), threadId: chatId }
    } else {
      messages = messagesOf(body.messages)
      runOptions = runOptionsOf(body, agent.maxSteps)
    }
    await authorize(request, {
      ...(runOptions.runId !== undefined ? { runId: runOptions.runId } : {}),
      ...(runOptions.resourceId !== undefined ? { resourceId: runOptions.resourceId } : {}),
    })
    const { runId } = await agent.stream(messages, runOptions)
    if (chat) await chats.record(runOptions.threadId!, runId)
    return served.respond(request, topicSource(agent, internals, runId), 0, format, runHeaders(base, runId))
  }

  /** Approval decisions for run `id`, then its continuation, streamed. */
  const decide = async (request: Request, id: string, decisions: ApprovalDecision[], format: WireFormat): Promise<Response> => {
    const { run } = await target(request, id)
    if (!run || run.status !== 'suspended') {
      throw httpError(`run \`${id}\` is not waiting for approval (it is ${run?.status ?? 'a direct stream'})`, ErrorCodes.RUN_NOT_SUSPENDED)
    }
    // Every decision must name a waiting call before any is recorded: nothing is applied in part.
    const waiting = new Set(run.pendingApprovals.map((call) => call.toolCallId))
    for (const decision of decisions) {
      if (decision.toolCallId !== undefined && !waiting.has(decision.toolCallId)) {
        throw httpError(`run \`${id}\` has no tool call \`${decision.toolCallId}\` waiting for approval`, ErrorCodes.UNKNOWN_TOOL_CALL)
      }
    }
    for (const { toolCallId, approved, reason } of decisions) {
      await agent.resume(id, { approved, ...(toolCallId !== undefined ? { toolCallId } : {}), ...(reason !== undefined ? { reason } : {}) })
    }
    // A suspended run appends nothing: its continuation starts at the index it stopped at.
    return served.respond(request, topicSource(agent, internals, id), run.nextIndex, format, runHeaders(base, id))
  }

  const routes = async (request: Request): Promise<Response> => {
    const url = new URL(request.url)
    const path = url.pathname
    if (base !== '' && path !== base && !path.startsWith(`${base}/`)) throw noRoute(path)
    const [runs, rawId, action, ...more] = path.slice(base.length + 1).split('/')
    if (runs !== 'runs' || more.length > 0) throw noRoute(path)
    const method = request.method.toUpperCase()
    if (rawId === undefined || rawId === '') {
      if (method === 'POST') return startRun(request, url)
      if (method === 'GET') return listRuns(request)
      return methodNotAllowed('GET, POST')
    }
    const id = idOf(decoded(rawId), 'run id')
    switch (action) {
      case undefined:
        if (method !== 'GET') return methodNotAllowed('GET')
        return status(request, id)
      case 'stream':
        if (method !== 'GET') return methodNotAllowed('GET')
        return resume(request, url, id)
      case 'stop':
        if (method !== 'POST') return methodNotAllowed('POST')
        return stop(request, id)
      case 'approve':
      case 'decline': {
        if (method !== 'POST') return methodNotAllowed('POST')
        const body = await readJson(request, maxBodyBytes)
        const toolCallId = optionalString(body.toolCallId, 'toolCallId')
        const reason = optionalString(body.reason, 'reason')
        const decision = { ...(toolCallId !== undefined ? { toolCallId } : {}), approved: action === 'approve', ...(reason !== undefined ? { reason } : {}) }
        return decide(request, id, [decision], formatOf(url) ?? defaultFormat)
      }
      default:
        throw noRoute(path)
    }
  }

  const listRuns = async (request: Request): Promise<Response> => {
    await authorize(request, {})
    const { runs } = await agent.listActiveRuns()
    const found = await Promise.all(runs.map((run) => agent.getRun(run.runId).catch(() => undefined)))
    const allowed: DurableAgentRun[] = []
    for (const run of found) {
      if (!run) continue // ended and cleaned up meanwhile
      if (
        options.authorize &&
        !(await options.authorize(request, { runId: run.runId, ...(run.resourceId !== undefined ? { resourceId: run.resourceId } : {}) }))
      )
        continue
      allowed.push(run)
    }
    return jsonResponse(200, { runs: allowed })
  }

  const status = async (request: Request, id: string): Promise<Response> => {
    const { run, source } = await target(request, id)
    if (run) return jsonResponse(200, run)
    return jsonResponse(200, { runId: id, ...(await directStatus(internals, source)) })
  }

  const resume = async (request: Request, url: URL, id: string): Promise<Response> => {
    const from = positionOf(request, url)
    const format = formatOf(url)
    // No `authorize`: nothing to learn of the run first, so the stream is read at once (one round trip).
    if (!options.authorize) {
      const response = await served
        .respond(request, topicSource(agent, internals, id), from, format ?? defaultFormat, runHeaders(base, id))
        .catch((error: { code?: string }) => {
          if (error?.code !== ErrorCodes.RUN_NOT_FOUND) throw error
          return undefined
        })
      if (response) return response
    }
    const found = await target(request, id).catch(async (error: { code?: string }) => {
      // A stock `useChat` reconnects naming its chat: serve the chat's latest run.
      if (error?.code !== ErrorCodes.RUN_NOT_FOUND) throw error
      const runId = await chats.latest(id)
      if (runId === undefined) throw error
      return { ...(await target(request, runId)), chat: true }
    })
    const runId = found.run?.runId ?? id
    // A stock `useChat` asks, with no position, whether its chat has an active stream: one that is over is 204, "nothing to resume".
    if ('chat' in found && !hasPosition(request, url) && found.run?.status !== 'running')
      return new Response(null, { status: 204, headers: runHeaders(base, runId) })
    return served.respond(request, found.source, from, format ?? ('chat' in found ? 'ui' : defaultFormat), runHeaders(base, runId), found.next)
  }

  const stop = async (request: Request, id: string): Promise<Response> => {
    const { run } = await target(request, id)
    if (!run) throw httpError(`\`${id}\` is a direct stream, not a run: it cannot be stopped here`, ErrorCodes.RUN_NOT_FOUND)
    const body = await readJson(request, maxBodyBytes)
    const reason = optionalString(body.reason, 'reason')
    await agent.abort(id, reason)
    const after = await agent.getRun(id)
    // Still running: driven elsewhere, whose driver sees the request within a quarter of a second.
    return jsonResponse(after.status === 'running' ? 202 : 200, after)
  }

  return async (request) => {
    try {
      return await routes(request)
    } catch (error) {
      const tooLarge = (error as { tooLarge?: boolean })?.tooLarge
      return errorResponse(error, report, tooLarge ? 413 : undefined)
    }
  }
}

/** Responses of streams: a live SSE stream, or the answer for a stream already over. */
class Served {
  constructor(
    readonly internals: PubSubInternals,
    readonly timing: { heartbeatMs: number; retryMs: number },
  ) {}

  async respond(request: Request, source: StreamSource, from: number, format: WireFormat, headers: Record<string, string>, next?: number): Promise<Response> {
    const frames = framesOf(format)
    const served = await serveTopic(this.internals, source, from, { frames, ...this.timing, signal: request.signal, headers }, next)
    if ('response' in served) return served.response
    return ended(served.ended, format, headers, this.timing.retryMs)
  }
}

/**
 * A stream asked for from past its end: in our format, the end message at
 * once (never an empty 200 or a wait); in the UI format, 204, which the AI
 * SDK reads as "nothing to resume".
 */
function ended(end: StreamEnd, format: WireFormat, headers: Record<string, string>, retryMs: number): Response {
  if (format === 'ui') return new Response(null, { status: 204, headers })
  return new Response(sseRetry(retryMs) + sseMessage(JSON.stringify(end), undefined, END_EVENT), { status: 200, headers: { ...SSE_HEADERS, ...headers } })
}

function runHeaders(base: string, runId: string): Record<string, string> {
  return { [RUN_ID_HEADER]: runId, 'content-location': `${base}/runs/${encodeURIComponent(runId)}/stream` }
}

/** A direct stream's status: from its last event. */
async function directStatus(internals: PubSubInternals, source: StreamSource): Promise<Record<string, unknown>> {
  const next = await nextIndexOf(internals, source.topic)
  const reader = internals.reader(source.topic, next - 1)
  try {
    const last = (await reader.available())?.at(-1)
    const end = last ? (await source.classify(last, true)).end : undefined
    return { status: end?.status ?? 'running', nextIndex: end?.nextIndex ?? next, ...(end?.error ? { error: end.error } : {}) }
  } finally {
    reader.close()
  }
}

/** Where a resume starts: after `Last-Event-ID` (the last event the client applied), else `?offset=`, else 0. */
function positionOf(request: Request, url: URL): number {
  const last = request.headers.get('last-event-id')?.trim()
  if (last) return parseEventIndex(last, 'Last-Event-ID') + 1
  const offset = url.searchParams.get('offset')
  return offset === null ? 0 : parseEventIndex(offset, 'offset')
}

function hasPosition(request: Request, url: URL): boolean {
  return Boolean(request.headers.get('last-event-id')?.trim()) || url.searchParams.has('offset')
}

function formatOf(url: URL): WireFormat | undefined {
  const format = url.searchParams.get(FORMAT_PARAM)
  if (format === null) return undefined
  if (format === 'parts' || format === 'ui') return format
  throw httpError(`${FORMAT_PARAM} must be 'parts' or 'ui', got ${JSON.stringify(format.slice(0, 40))}`, ErrorCodes.INVALID_ARG)
}

/** The run options a client may set, checked (the agent checks their values again). */
function runOptionsOf(body: Record<string, unknown>, agentMaxSteps: number): RunRequest {
  const runId = body.runId === undefined ? undefined : idOf(body.runId, 'runId')
  const threadId = optionalString(body.threadId, 'threadId')
  const resourceId = optionalString(body.resourceId, 'resourceId')
  const { maxSteps, requireToolApproval, toolChoice, activeTools, modelSettings } = body
  if (maxSteps !== undefined && (!Number.isInteger(maxSteps) || (maxSteps as number) < 1 || (maxSteps as number) > agentMaxSteps)) {
    throw httpError(`maxSteps must be an integer from 1 to ${agentMaxSteps} (the agent's maxSteps)`, ErrorCodes.INVALID_ARG)
  }
  if (requireToolApproval !== undefined && typeof requireToolApproval !== 'boolean') {
    throw httpError('requireToolApproval must be a boolean', ErrorCodes.INVALID_ARG)
  }
  if (modelSettings !== undefined) {
    if (modelSettings === null || typeof modelSettings !== 'object' || Array.isArray(modelSettings)) {
      throw httpError('modelSettings must be an object', ErrorCodes.INVALID_ARG)
    }
    const refused = Object.keys(modelSettings).find((key) => !CLIENT_MODEL_SETTINGS.has(key))
    if (refused !== undefined) throw httpError(`modelSettings.${refused} cannot be set by a client`, ErrorCodes.INVALID_ARG)
  }
  return {
    ...(runId !== undefined ? { runId } : {}),
    ...(threadId !== undefined ? { threadId } : {}),
    ...(resourceId !== undefined ? { resourceId } : {}),
    ...(maxSteps !== undefined ? { maxSteps: maxSteps as number } : {}),
    ...(requireToolApproval !== undefined ? { requireToolApproval } : {}),
    ...(toolChoice !== undefined ? { toolChoice: toolChoice as StreamOptions['toolChoice'] } : {}),
    ...(activeTools !== undefined ? { activeTools: activeTools as string[] } : {}),
    ...(modelSettings !== undefined ? { modelSettings: modelSettings as StreamOptions['modelSettings'] } : {}),
  }
}

function messagesOf(messages: unknown): MessageInput {
  if (typeof messages === 'string' || Array.isArray(messages)) return messages as string | InputMessage[]
  throw httpError('messages must be a string or an array of AI SDK model messages', ErrorCodes.INVALID_MESSAGES)
}

function idOf(value: unknown, what: string): string {
  if (typeof value === 'string' && ID.test(value)) return value
  throw httpError(`${what} must be 1-200 printable characters without spaces or braces`, ErrorCodes.INVALID_ARG)
}

function decoded(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw httpError('the run id in the path is not valid percent-encoding', ErrorCodes.INVALID_ARG)
  }
}

function optionalString(value: unknown, what: string): string | undefined {
  if (value === undefined || typeof value === 'string') return value
  throw httpError(`${what} must be a string`, ErrorCodes.INVALID_ARG)
}

function positive(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw coded(new RangeError(`${what} must be a positive integer, got ${value}`), ErrorCodes.INVALID_OPTION)
  }
  return value
}

function noRoute(path: string): Error {
  return httpError(`no route ${JSON.stringify(path.slice(0, 200))}`, ErrorCodes.NO_ROUTE)
}

function methodNotAllowed(allow: string): Response {
  return jsonResponse(405, { code: ErrorCodes.NO_ROUTE, message: `method not allowed here (allowed: ${allow})` }, { allow })
}

/** The body as a JSON object (empty: `{}`), read up to `max` bytes. */
async function readJson(request: Request, max: number): Promise<Record<string, unknown>> {
  const declared = Number(request.headers.get('content-length') ?? 0)
  if (declared > max) throw tooLarge(max)
  let text = ''
  if (request.body) {
    const reader = request.body.getReader()
    const decoder = new TextDecoder()
    let size = 0
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      size += value.byteLength
      if (size > max) {
        await reader.cancel()
        throw tooLarge(max)
      }
      text += decoder.decode(value, { stream: true })
    }
    text += decoder.decode()
  }
  if (text.trim() === '') return {}
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (error) {
    throw httpError(`the body is not JSON: ${(error as Error).message}`, ErrorCodes.INVALID_ARG)
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw httpError('the body must be a JSON object', ErrorCodes.INVALID_ARG)
  return body as Record<string, unknown>
}

function tooLarge(max: number): Error {
  return Object.assign(httpError(`the body is larger than ${max} bytes`, ErrorCodes.INVALID_ARG), { tooLarge: true })
}
