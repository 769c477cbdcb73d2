/**
 * `createResumableChatTransport`: a `ChatTransport` for the AI SDK's
 * `useChat`, against the agent handler's UI message stream.
 *
 * Stock `useChat` reconnects with `GET {api}/{chatId}/stream` and no
 * position, so a reloaded page either replays the answer into the message
 * it kept (duplicated text) or resumes mid-part (which the AI SDK rejects).
 * This transport instead:
 *
 * - rides out network errors inside one response: it reconnects with
 *   `Last-Event-ID` and hands `useChat` every chunk once, so `useChat`
 *   never sees the break;
 * - keeps the run's id, its position and the chunks applied so far in
 *   `storage` (default `sessionStorage`), per chat, as each chunk goes to
 *   `useChat`. After a reload, `messagesForResume` drops the answer in
 *   progress from the messages the page kept, and `reconnectToStream`
 *   rebuilds it: the stored chunks, then the server's from the stored
 *   position on. The page ends with exactly the run's text.
 *
 * `useChat`'s `stop()` only disconnects (the run goes on, as a closed tab
 * would); `transport.stop(chatId)` stops the run itself.
 */
// Types only (erased at run time): the AI SDK, a peer dependency, is what this transport is for.
import type { ChatTransport, UIMessage, UIMessageChunk } from 'ai'

import type { ReconnectOptions, RetryOptions } from './sse-client.js'
import { SseConnection } from './sse-client.js'
import { responseError } from './client-error.js'
import { TERMINAL_TYPES } from './protocol.js'

/** A UI message chunk, as this transport reads and keeps it. */
type UIChunk = { type: string; [key: string]: unknown }

/** Where the transport keeps each chat's answer in progress: `sessionStorage`'s methods. */
export interface ChatStorage {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
  removeItem(key: string): void
}

export interface ResumableChatTransportOptions {
  /** The handler's runs route, e.g. `'/api/agent/runs'`. */
  api: string
  fetch?: typeof fetch
  /** Sent with every request. */
  headers?: Record<string, string>
  /** Merged into every start request's body (e.g. `{ resourceId }`). */
  body?: Record<string, unknown>
  /** Default: `sessionStorage` where there is one, else memory (which a reload does not keep). */
  storage?: ChatStorage
  retry?: RetryOptions
  onDisconnect?: ReconnectOptions['onDisconnect']
  onReconnect?: ReconnectOptions['onReconnect']
}

/** What the transport keeps per chat: its latest run, how far it was applied, and its chunks so far. */
interface ChatRecord {
  runId: string
  lastEventId: number | undefined
  chunks: UIChunk[]
  /** The answer is complete: nothing is left to read. */
  done: boolean
}

/** The AI SDK's `ChatTransport`, and what a page needs around a reload. */
export interface ResumableChatTransport<M extends UIMessage = UIMessage> extends ChatTransport<M> {
  /**
   * The messages a reloaded page should give `useChat`: `messages` (what it
   * kept) without the answer this transport will rebuild on reconnect.
   */
  messagesForResume<T extends { id: string }>(chatId: string, messages: T[]): T[]
  /** The run the chat's latest answer is, if this transport started or resumed it. */
  runIdOf(chatId: string): string | undefined
  /** Stops the chat's run, wherever it is driven (`POST {api}/{runId}/stop`). */
  stop(chatId: string, reason?: string): Promise<void>
}

const KEY_PREFIX = 'durable-agent:chat:'

export function createResumableChatTransport<M extends UIMessage = UIMessage>(options: ResumableChatTransportOptions): ResumableChatTransport<M> {
  const api = options.api.replace(/\/+$/, '')
  const storage = options.storage ?? defaultStorage()
  const fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis)
  const records = new ChatRecords(storage)

  const connect = (url: string, record: ChatRecord | undefined, signal: AbortSignal | undefined, extra: Partial<ReconnectOptions>) =>
    new SseConnection(url, 'ui', {
      fetch: fetchFn,
      ...(signal ? { signal } : {}),
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.retry ? { retry: options.retry } : {}),
      ...(options.onDisconnect ? { onDisconnect: options.onDisconnect } : {}),
      ...(options.onReconnect ? { onReconnect: options.onReconnect } : {}),
      ...(record?.lastEventId !== undefined ? { lastEventId: record.lastEventId } : {}),
      ...extra,
    })

  /** `useChat`'s stream of `connection`: each chunk recorded as it is handed over; ends at the run's terminal chunk. */
  const chunks = (chatId: string, connection: SseConnection, prefix: UIChunk[], continuing: ChatRecord | undefined): ReadableStream<UIMessageChunk> => {
    const iterator = connection[Symbol.asyncIterator]()
    let record = continuing
    let replay = [...prefix]
    return asUIStream(
      {
        pull: async (controller) => {
          if (replay.length > 0) {
            controller.enqueue(replay.shift()!)
            return
          }
          for (;;) {
            const { done, value } = await iterator.next()
            if (done) {
              if (record) records.save(chatId, { ...record, done: true })
              return controller.close()
            }
            if (value.data === '[DONE]' || value.event !== undefined) continue
            const chunk = JSON.parse(value.data) as UIChunk
            const runId = connection.runId!
            if (!record || record.runId !== runId) record = { runId, lastEventId: undefined, chunks: [], done: false }
            record = { ...record, lastEventId: connection.lastEventId, chunks: appendChunk(record.chunks, chunk) }
            const terminal = TERMINAL_TYPES.has(chunk.type)
            records.save(chatId, { ...record, done: terminal })
            controller.enqueue(chunk)
            if (terminal) {
              await iterator.return?.()
              return controller.close()
            }
            return
          }
        },
        cancel: async () => {
          await iterator.return?.()
        },
      },
      0,
    )
  }

  return {
    async sendMessages({ chatId, messages, abortSignal, trigger, messageId, body }) {
      const current = records.load(chatId)
      const request = { ...options.body, ...body, id: chatId, messages, trigger, messageId }
      const connection = connect(api, undefined, abortSignal, { body: request })
      // An approval sent back continues the chat's current run: its chunks add to the same answer.
      return chunks(chatId, connection, [], current)
    },

    async reconnectToStream({ chatId }) {
      const record = records.load(chatId)
      if (!record) {
        // Nothing kept here: ask for the chat's latest run as stock useChat does (204: nothing to resume).
        const connection = connect(`${api}/${encodeURIComponent(chatId)}/stream`, undefined, undefined, {})
        return chunks(chatId, connection, [], undefined)
      }
      if (record.done) return replayOnly(record.chunks)
      const connection = connect(`${api}/${encodeURIComponent(record.runId)}/stream`, record, undefined, {})
      return chunks(chatId, connection, record.chunks, record)
    },

    messagesForResume(chatId, messages) {
      const record = records.load(chatId)
      return record ? messages.filter((message) => message.id !== record.runId) : messages
    },

    runIdOf(chatId) {
      return records.load(chatId)?.runId
    },

    async stop(chatId, reason) {
      const runId = records.load(chatId)?.runId
      if (runId === undefined) return
      const response = await fetchFn(`${api}/${encodeURIComponent(runId)}/stop`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...options.headers },
        body: JSON.stringify(reason === undefined ? {} : { reason }),
      })
      if (!response.ok) throw await responseError(response)
    },
  }
}

/** A stream of `chunks` alone: the answer is complete and kept here. */
function replayOnly(chunks: UIChunk[]): ReadableStream<UIMessageChunk> {
  return asUIStream(
    {
      start(controller) {
        for (const chunk of chunks) controller.enqueue(chunk)
        controller.close()
      },
    },
    chunks.length,
  )
}

/** A `ReadableStream` source of chunks (the DOM's `UnderlyingDefaultSource`, which Node's typings do not name). */
interface ChunkSource {
  start?(controller: ReadableStreamDefaultController<UIChunk>): void
  pull?(controller: ReadableStreamDefaultController<UIChunk>): Promise<void>
  cancel?(): Promise<void>
}

/** A stream of the server's chunks, typed as the AI SDK's (the handler writes its shapes; this transport does not check them). */
function asUIStream(source: ChunkSource, highWaterMark: number): ReadableStream<UIMessageChunk> {
  return new ReadableStream<UIChunk>(source, { highWaterMark }) as unknown as ReadableStream<UIMessageChunk>
}

/**
 * `chunks` with `chunk` applied: consecutive deltas of one part merge into
 * one chunk (the AI SDK adds deltas up, so the answer rebuilds the same),
 * which keeps a long answer's record to a chunk per part.
 */
function appendChunk(chunks: UIChunk[], chunk: UIChunk): UIChunk[] {
  const last = chunks[chunks.length - 1]
  const field = DELTA_FIELD[chunk.type]
  if (field && last && last.type === chunk.type && sameTarget(last, chunk)) {
    return [...chunks.slice(0, -1), { ...last, [field]: String(last[field]) + String(chunk[field]) }]
  }
  return [...chunks, chunk]
}

const DELTA_FIELD: Record<string, string> = { 'text-delta': 'delta', 'reasoning-delta': 'delta', 'tool-input-delta': 'inputTextDelta' }

function sameTarget(a: UIChunk, b: UIChunk): boolean {
  return a.id === b.id && a.toolCallId === b.toolCallId && a.providerMetadata === undefined && b.providerMetadata === undefined
}

class ChatRecords {
  constructor(readonly storage: ChatStorage) {}

  load(chatId: string): ChatRecord | undefined {
    const text = this.storage.getItem(KEY_PREFIX + chatId)
    if (text === null) return undefined
    try {
      return JSON.parse(text) as ChatRecord
    } catch {
      return undefined
    }
  }

  save(chatId: string, record: ChatRecord): void {
    try {
      this.storage.setItem(KEY_PREFIX + chatId, JSON.stringify(record))
    } catch {
      // Storage full: keep only which run it is, never a record that is behind (a reload then reads the run from its start).
      this.storage.setItem(KEY_PREFIX + chatId, JSON.stringify({ runId: record.runId, lastEventId: undefined, chunks: [], done: false }))
    }
  }
}

function defaultStorage(): ChatStorage {
  const session = (globalThis as { sessionStorage?: ChatStorage }).sessionStorage
  if (session) return session
  const map = new Map<string, string>()
  return {
    getItem: (key) => map.get(key) ?? null,
    setItem: (key, value) => void map.set(key, value),
    removeItem: (key) => void map.delete(key),
  }
}
