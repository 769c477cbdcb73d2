/**
 * Which run a chat's latest answer is. A stock `useChat` reconnects with
 * `GET {api}/{chatId}/stream`, naming the chat, not the run; the handler
 * records each chat's latest run in the agent's cache when it starts it.
 */
import type { InMemoryServerCache } from '../memory-cache.js'
import type { RedisServerCache } from '../redis-cache.js'

/** How long a chat remembers its latest run (a day: past any run's cleanup). */
const CHAT_RUN_TTL_MS = 24 * 60 * 60 * 1000

export class ChatRuns {
  constructor(
    readonly cache: InMemoryServerCache | RedisServerCache,
    readonly agentId: string,
  ) {}

  async latest(chatId: string): Promise<string | undefined> {
    const runId = await this.cache.get(this.#key(chatId))
    return typeof runId === 'string' ? runId : undefined
  }

  async record(chatId: string, runId: string): Promise<void> {
    await this.cache.set(this.#key(chatId), runId, CHAT_RUN_TTL_MS)
  }

  #key(chatId: string): string {
    return `durable-agent:chat:${this.agentId}:${chatId}`
  }
}
