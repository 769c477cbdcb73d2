// The web demo's agent: a durable agent whose model is scripted and
// deterministic (no API key), streams its answer a word at a time, and, when
// the user mentions a refund, calls a tool that needs approval.
//
// `pace(signal)` runs before every word (default: 60 ms): the demo's answers
// come slowly enough to reload the page mid-answer; tests pass their own.
import { createDurableAgent } from '../../dist/index.js'

const PARAGRAPH =
  'This answer is a durable run: every word you see was stored with its index before it reached you. ' +
  'Reload the page, close the tab, or lose the network, and the stream picks up after the last word your page applied, ' +
  'from this server or any other one sharing the store. Stop ends the run itself, wherever it is driven.'

/** The words of the first step's answer to `question`, each with its leading space. */
export function answerWords(question) {
  const text = `You asked: "${question}". ${PARAGRAPH}`
  return text.split(' ').map((word, i) => (i === 0 ? word : ` ${word}`))
}

/** The second step's words: after the refund tool's result (or its refusal). */
export function afterToolWords(result) {
  const text =
    result.type === 'execution-denied'
      ? `Understood: no refund was issued${result.reason ? ` (${result.reason})` : ''}.`
      : `Refund ${result.value.refundId} issued: ${result.value.amount} EUR for order ${result.value.order}.`
  return text.split(' ').map((word, i) => (i === 0 ? word : ` ${word}`))
}

/** The text a run answering `question` ends with (without a tool call). */
export function expectedText(question) {
  return answerWords(question).join('')
}

const usage = { inputTokens: { total: 20, noCache: 20 }, outputTokens: { total: 40, text: 40 } }

const wait = (ms, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true })
  })

/** An AI SDK language model (specification v3) that plays the script. */
export function scriptedModel({ pace = (signal) => wait(60, signal) } = {}) {
  return {
    specificationVersion: 'v3',
    provider: 'demo',
    modelId: 'scripted',
    supportedUrls: {},
    async doGenerate() {
      throw new Error('the demo model only streams')
    },
    async doStream({ prompt, abortSignal }) {
      const toolResult = prompt
        .filter((m) => m.role === 'tool')
        .flatMap((m) => m.content)
        .at(-1)
      const question =
        prompt
          .filter((m) => m.role === 'user')
          .at(-1)
          ?.content.map((p) => p.text ?? '')
          .join('') ?? ''
      const id = toolResult ? 'answer-2' : 'answer-1'
      const words = toolResult ? afterToolWords(toolResult.output) : answerWords(question)
      const callsTool = !toolResult && /refund/i.test(question)
      const parts = [
        { type: 'stream-start', warnings: [] },
        { type: 'text-start', id },
        ...words.map((delta) => ({ type: 'text-delta', id, delta, paced: true })),
        { type: 'text-end', id },
        ...(callsTool ? [{ type: 'tool-call', toolCallId: 'refund-1', toolName: 'issueRefund', input: JSON.stringify({ order: 'A-1001', amount: 42 }) }] : []),
        { type: 'finish', finishReason: { unified: callsTool ? 'tool-calls' : 'stop', raw: callsTool ? 'tool_calls' : 'stop' }, usage },
      ]
      let i = 0
      return {
        stream: new ReadableStream({
          async pull(controller) {
            const part = parts[i++]
            if (!part) return controller.close()
            if (part.paced) {
              await pace(abortSignal)
              const { paced, ...rest } = part
              return controller.enqueue(rest)
            }
            controller.enqueue(part)
          },
        }),
      }
    },
  }
}

/** The demo agent over `cache` (an InMemoryServerCache or a RedisServerCache), or over a CachingPubSub's. */
export function createDemoAgent({ cache, pubsub, pace, id = 'demo-agent', cleanupTimeoutMs = 10 * 60_000 } = {}) {
  return createDurableAgent({
    agent: {
      id,
      instructions: 'You are the durable-agent demo.',
      model: scriptedModel({ pace }),
      tools: {
        issueRefund: {
          description: 'Refunds an order',
          inputSchema: {
            type: 'object',
            properties: { order: { type: 'string' }, amount: { type: 'number' } },
            required: ['order', 'amount'],
          },
          needsApproval: true,
          execute: async ({ order, amount }, { idempotencyKey }) => ({ order, amount, refundId: `R-${idempotencyKey.split(':')[0].slice(0, 8)}` }),
        },
      },
    },
    ...(cache ? { cache } : {}),
    ...(pubsub ? { pubsub } : {}),
    cleanupTimeoutMs,
  })
}
