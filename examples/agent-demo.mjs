// A durable agent run: the loop runs as checkpointed steps in Rust, the model
// and the tool stay in JS. The model asks for a tool that needs approval, so
// the run suspends; the user approves; the run finishes; then anyone can
// replay the whole run from its stored events.
//
//   npm run demo              # in memory (the default, nothing to set up)
//   npm run demo -- --redis   # over Redis (REDIS_URL or 127.0.0.1:6379)
//
// The model is a scripted AI SDK mock (`ai/test`), so the demo needs no API
// key: swap in any AI SDK model (`openai('gpt-4o')`, ...) for the real thing.
import { MockLanguageModelV3 } from 'ai/test'

import { createDurableAgent, InMemoryServerCache, RedisServerCache } from '../dist/index.js'

const useRedis = process.argv.includes('--redis')
const cache = useRedis
  ? new RedisServerCache({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }, { keyPrefix: 'demo:', ttlSeconds: 60 })
  : new InMemoryServerCache()

const usage = { inputTokens: { total: 12, noCache: 12 }, outputTokens: { total: 6, text: 6 } }
const streamOf = (parts) => ({
  stream: new ReadableStream({
    start(controller) {
      for (const part of parts) controller.enqueue(part)
      controller.close()
    },
  }),
})
// Step 1 asks for the tool; step 2 (with the tool's result in the prompt) answers.
const model = new MockLanguageModelV3({
  doStream: async ({ prompt }) => {
    const result = prompt.find((m) => m.role === 'tool')?.content[0]?.output?.value
    if (!result) {
      return streamOf([
        { type: 'tool-call', toolCallId: 'call-1', toolName: 'refund', input: JSON.stringify({ order: 'A-1001', amount: 42 }) },
        { type: 'finish', finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage },
      ])
    }
    const words = `Refunded ${result.amount} EUR for order ${result.order}.`.split(' ')
    return streamOf([
      { type: 'text-start', id: 't1' },
      ...words.map((w, i) => ({ type: 'text-delta', id: 't1', delta: i === 0 ? w : ` ${w}` })),
      { type: 'text-end', id: 't1' },
      { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage },
    ])
  },
})

const agent = createDurableAgent({
  agent: {
    id: 'support-agent',
    instructions: 'You help customers with their orders.',
    model,
    tools: {
      refund: {
        description: 'Refund an order',
        inputSchema: { type: 'object', properties: { order: { type: 'string' }, amount: { type: 'number' } }, required: ['order', 'amount'] },
        needsApproval: true,
        execute: async ({ order, amount }, { idempotencyKey }) => ({ order, amount, refundId: idempotencyKey }),
      },
    },
  },
  cache,
})
console.log(`store: ${cache.name}`)

const show = (part) => {
  if (part.type === 'text-delta') process.stdout.write(part.text)
  else if (part.type === 'text-end') process.stdout.write('\n')
  else console.log(`  [${part.type}]${part.type === 'tool-call' ? ` ${part.toolName} ${JSON.stringify(part.input)}` : ''}`)
}

const first = await agent.stream('Please refund order A-1001 (42 EUR).')
console.log(`run ${first.runId}`)
for await (const part of first.fullStream) show(part)
const paused = await first.output.getFullOutput()
console.log(`-> ${paused.outcome}: waiting for approval of ${paused.suspended.toolName}\n`)

// Later (in this process or any other sharing the cache): approve.
const rest = await agent.approveToolCall({ runId: first.runId })
for await (const part of rest.fullStream) show(part)
console.log(`-> ${(await rest.getFullOutput()).outcome}: "${await rest.text}"\n`)

// Anyone can replay the whole run, from any offset.
const replay = await agent.observe(first.runId, { offset: 0 })
const parts = []
for await (const part of replay.fullStream) parts.push(part.type)
console.log(`replayed ${parts.length} parts: ${parts.join(', ')}`)

await replay.cleanup()
if (useRedis) await cache.close()
if (parts.at(-1) !== 'finish' || parts.length !== 17) process.exit(1)
