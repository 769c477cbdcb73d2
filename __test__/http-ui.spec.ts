/**
 * The AI SDK UI message stream: a stock `useChat` client (the AI SDK's own
 * `AbstractChat` with `DefaultChatTransport`, as `useChat` runs them)
 * against the handler, with its resume and its tool approvals; and our
 * `createResumableChatTransport` across a simulated page reload and a
 * network cut, where the stock transport duplicates the answer.
 */
import { AbstractChat, DefaultChatTransport, lastAssistantMessageIsCompleteWithApprovalResponses, type ChatInit, type ChatState, type UIMessage } from 'ai'
import { describe, expect, it } from 'vitest'

import { createResumableChatTransport, type ChatStorage } from '../dist/http/browser.js'
import { expectedText } from '../examples/web/demo-agent.mjs'
import { eventually } from './helpers.js'
import { cuttingFetch, demoServerPerFile } from './http-helpers.js'

/** `useChat`'s state, without React. */
class PlainState implements ChatState<UIMessage> {
  status: ChatState<UIMessage>['status'] = 'ready'
  error: Error | undefined = undefined
  constructor(public messages: UIMessage[]) {}
  pushMessage = (message: UIMessage) => void (this.messages = [...this.messages, message])
  popMessage = () => void (this.messages = this.messages.slice(0, -1))
  replaceMessage = (index: number, message: UIMessage) => void (this.messages = this.messages.map((m, i) => (i === index ? message : m)))
  snapshot = <T>(thing: T): T => structuredClone(thing)
}

class Chat extends AbstractChat<UIMessage> {
  constructor(init: ChatInit<UIMessage>) {
    super({ ...init, state: new PlainState(init.messages ?? []) })
  }
}

const textOf = (message: UIMessage | undefined) => (message?.parts ?? []).map((p) => (p.type === 'text' ? p.text : '')).join('')
const lastAssistant = (chat: Chat) => chat.messages.filter((m) => m.role === 'assistant').at(-1)

/** A `sessionStorage` that outlives "page loads": the test's reloads make new chats and transports over it. */
function memoryStorage(): ChatStorage & { map: Map<string, string> } {
  const map = new Map<string, string>()
  return { map, getItem: (k) => map.get(k) ?? null, setItem: (k, v) => void map.set(k, v), removeItem: (k) => void map.delete(k) }
}

const demo = demoServerPerFile()
const { gate } = demo
/** The handler's runs route, which `useChat`'s transports take as their `api`. */
const runsApi = () => `${demo.api}/runs`

describe('a stock useChat client (DefaultChatTransport)', () => {
  it('chats against the UI message stream: the answer is the run, its message id the run id, its chat the thread', async () => {
    const chat = new Chat({ id: 'chat-stock-1', transport: new DefaultChatTransport({ api: runsApi() }) })
    await chat.sendMessage({ text: 'hello from useChat' })
    expect(chat.status).toBe('ready')
    const answer = lastAssistant(chat)!
    expect(textOf(answer)).toBe(expectedText('hello from useChat'))
    expect(answer.parts.filter((p) => p.type === 'text')).toHaveLength(1)
    const run = await demo.agent.getRun(answer.id)
    expect(run).toMatchObject({ status: 'finished', threadId: 'chat-stock-1' })
  })

  it('reattaches to a running run after a reload with its stock resume (GET {api}/{chatId}/stream), and gets 204 once it has ended', async () => {
    gate.allow(5)
    const first = new Chat({ id: 'chat-stock-2', transport: new DefaultChatTransport({ api: runsApi() }) })
    const sending = first.sendMessage({ text: 'reattach' })
    await eventually(() => gate.reached > 0 && textOf(lastAssistant(first)).split(' ').length >= 4, 10_000, 'some words')
    await first.stop() // a reload: the page goes, the run goes on
    await sending
    // The reloaded page has what a server keeps: the user's message (the answer is not done).
    const saved = first.messages.filter((m) => m.role === 'user')
    const reloaded = new Chat({ id: 'chat-stock-2', messages: saved, transport: new DefaultChatTransport({ api: runsApi() }) })
    const resuming = reloaded.resumeStream()
    gate.open()
    await resuming
    expect(textOf(lastAssistant(reloaded))).toBe(expectedText('reattach'))
    const later = new Chat({ id: 'chat-stock-2', messages: reloaded.messages, transport: new DefaultChatTransport({ api: runsApi() }) })
    await later.resumeStream()
    expect(later.messages).toEqual(reloaded.messages) // 204: nothing to resume, nothing changed
  })

  it("approves a tool call with the AI SDK's own flow (addToolApprovalResponse, then sendAutomaticallyWhen)", async () => {
    const chat = new Chat({
      id: 'chat-stock-3',
      transport: new DefaultChatTransport({ api: runsApi() }),
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    })
    await chat.sendMessage({ text: 'please refund order A-1001' })
    const asking = lastAssistant(chat)!
    const tool = asking.parts.find((p) => p.type === 'tool-issueRefund') as { state: string; approval?: { id: string } } | undefined
    expect(tool?.state).toBe('approval-requested')
    await chat.addToolApprovalResponse({ id: tool!.approval!.id, approved: true })
    await eventually(() => chat.status === 'ready' && textOf(lastAssistant(chat)).includes('Refund R-'), 10_000, 'the continuation')
    const answer = lastAssistant(chat)!
    expect(answer.id).toBe(asking.id)
    expect(answer.parts.find((p) => p.type === 'tool-issueRefund')).toMatchObject({ state: 'output-available', output: { amount: 42 } })
    expect(textOf(answer)).toMatch(/Refund R-[0-9a-f]{8} issued: 42 EUR for order A-1001\.$/)
    expect((await demo.agent.getRun(answer.id)).status).toBe('finished')
  })
})

describe('createResumableChatTransport', () => {
  /** A chat that streams `words` words of its answer and is then "reloaded" mid-answer, keeping its messages as they were. */
  async function reloadMidAnswer(chatId: string, question: string, transport: () => ConstructorParameters<typeof Chat>[0]['transport']) {
    gate.allow(6)
    const first = new Chat({ id: chatId, transport: transport() })
    const sending = first.sendMessage({ text: question })
    await eventually(() => textOf(lastAssistant(first)).split(' ').length >= 5, 10_000, 'some words')
    await first.stop()
    await sending
    return first.messages // with the partial answer, as a page that saves its messages keeps them
  }

  it('a reloaded page ends with exactly the run: stored chunks, then the server from the stored Last-Event-ID', async () => {
    const storage = memoryStorage()
    const seen: { url: string; lastEventId: string | null }[] = []
    const logging: typeof fetch = (input, init) => {
      seen.push({ url: String(input), lastEventId: new Headers(init?.headers).get('last-event-id') })
      return fetch(input, init)
    }
    const make = () => createResumableChatTransport({ api: runsApi(), storage, fetch: logging })
    const saved = await reloadMidAnswer('chat-ours-1', 'reload me', make)
    expect(textOf(saved.at(-1))).not.toBe(expectedText('reload me')) // mid-answer
    const transport = make()
    const reloaded = new Chat({ id: 'chat-ours-1', messages: transport.messagesForResume('chat-ours-1', saved), transport })
    const resuming = reloaded.resumeStream()
    gate.open()
    await resuming
    const answer = lastAssistant(reloaded)!
    expect(textOf(answer)).toBe(expectedText('reload me'))
    expect(answer.parts.filter((p) => p.type === 'text')).toHaveLength(1)
    expect(reloaded.messages.filter((m) => m.role === 'assistant')).toHaveLength(1)
    const resume = seen.at(-1)!
    expect(resume.url).toContain(`/runs/${answer.id}/stream`)
    expect(Number(resume.lastEventId)).toBeGreaterThan(5)
    // And once it is over, a reload rebuilds it from storage alone.
    const count = seen.length
    const again = make()
    const third = new Chat({ id: 'chat-ours-1', messages: again.messagesForResume('chat-ours-1', reloaded.messages), transport: again })
    await third.resumeStream()
    expect(third.messages).toEqual(reloaded.messages)
    expect(seen.length).toBe(count)
  })

  it('where the stock transport, in the same reload, duplicates the answer', async () => {
    const saved = await reloadMidAnswer('chat-stock-dup', 'reload me too', () => new DefaultChatTransport({ api: runsApi() }))
    const reloaded = new Chat({ id: 'chat-stock-dup', messages: saved, transport: new DefaultChatTransport({ api: runsApi() }) })
    const resuming = reloaded.resumeStream()
    gate.open()
    await resuming
    const text = textOf(lastAssistant(reloaded))
    expect(text).not.toBe(expectedText('reload me too'))
    expect(text.endsWith(expectedText('reload me too'))).toBe(true) // the partial answer, then all of it again
  })

  it('rides out network cuts inside one answer: useChat sees no error and every chunk once', async () => {
    const cuts: (number | undefined)[] = [400, 900, 300]
    const cutting = cuttingFetch(() => cuts.shift())
    const transport = createResumableChatTransport({ api: runsApi(), storage: memoryStorage(), fetch: cutting, retry: { initialDelayMs: 1 } })
    const chat = new Chat({ id: 'chat-ours-2', transport })
    await chat.sendMessage({ text: 'cut me' })
    expect(cutting.cuts).toBe(3)
    expect(chat.error).toBeUndefined()
    expect(textOf(lastAssistant(chat))).toBe(expectedText('cut me'))
    expect(lastAssistant(chat)!.parts.filter((p) => p.type === 'text')).toHaveLength(1)
  })

  it('stop(chatId) stops the run itself; useChat’s stop() only disconnects', async () => {
    gate.close()
    const transport = createResumableChatTransport({ api: runsApi(), storage: memoryStorage() })
    const chat = new Chat({ id: 'chat-ours-3', transport })
    const sending = chat.sendMessage({ text: 'stop me' })
    await eventually(() => transport.runIdOf('chat-ours-3') !== undefined && lastAssistant(chat) !== undefined, 10_000, 'the answer to start')
    const runId = transport.runIdOf('chat-ours-3')!
    await transport.stop('chat-ours-3')
    await sending
    await eventually(async () => (await demo.agent.getRun(runId)).status === 'aborted', 10_000, 'the run to abort')
  })
})
