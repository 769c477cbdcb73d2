// What the scratch app's ES-module and CommonJS scripts (esm.mjs, cjs.cjs) do
// with the package: each hands in the exports it imported by name, and this
// uses every one of them. Reading an export goes through a Proxy that records
// its name, so the test can check that nothing was left unused.
//
// Returns a report for the script to print as JSON: what the script imported
// and from where, which addon Node loaded, and what each use gave.
const { MockLanguageModelV3 } = require('ai/test')
const { createServer } = require('node:http')
const { createClient } = require('redis')

const usage = { inputTokens: { total: 3, noCache: 3 }, outputTokens: { total: 3, text: 3 } }
const streamOf = (parts) => ({
  stream: new ReadableStream({
    start(controller) {
      for (const part of parts) controller.enqueue(part)
      controller.close()
    },
  }),
})

/** Step 1 asks for `refund` (which needs approval); step 2, with its result in the prompt, answers. */
const refundModel = () =>
  new MockLanguageModelV3({
    doStream: async ({ prompt }) => {
      const result = prompt.find((message) => message.role === 'tool')?.content[0]?.output?.value
      if (!result) {
        return streamOf([
          { type: 'tool-call', toolCallId: 'call-1', toolName: 'refund', input: JSON.stringify({ order: 'A-1' }) },
          { type: 'finish', finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage },
        ])
      }
      return streamOf([
        { type: 'text-start', id: 't' },
        { type: 'text-delta', id: 't', delta: `Refunded ${result.order}.` },
        { type: 'text-end', id: 't' },
        { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage },
      ])
    },
  })

/** Streams "Hello." and stops. */
const echoModel = () =>
  new MockLanguageModelV3({
    doStream: async () =>
      streamOf([
        { type: 'text-start', id: 't' },
        { type: 'text-delta', id: 't', delta: 'Hello.' },
        { type: 'text-end', id: 't' },
        { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage },
      ]),
  })

/** The error `promise` rejects with, or a marker when it resolves. */
const rejection = (promise) =>
  promise.then(
    () => ({ code: 'resolved' }),
    (error) => error,
  )

/**
 * `imported`: the exports as the script imported them, by name; `namespace`:
 * the whole module as the script sees it; `entry`: the file its import of
 * 'durable-agent' resolved to.
 */
module.exports = async function exercise(imported, { namespace, entry }) {
  const redisUrl = process.env.REDIS_URL
  if (!redisUrl) throw new Error('REDIS_URL names the Redis for the durable run')
  const used = new Set()
  const api = new Proxy(imported, { get: (target, name) => (used.add(name), target[name]) })
  const keyPrefix = `pack-app:${process.pid}:${Date.now()}:`

  // A resumable stream in memory: publish, then read from an offset, through
  // a second CachingPubSub over the same cache (another reader, same store).
  const memory = new api.InMemoryServerCache()
  const publisher = new api.CachingPubSub(null, memory)
  const topic = 'agent.stream.run-1'
  const indices = []
  for (const n of [0, 1, 2]) indices.push(await publisher.publish(topic, { type: 'chunk', runId: 'run-1', data: { n } }))
  const replayed = []
  for await (const event of api.withCaching(null, memory).subscribeWithReplay(topic, { offset: 1 })) {
    replayed.push({ index: event.index, n: event.data.n })
    if (replayed.length === 2) break
  }
  const notJson = await rejection(memory.set('k', 1n))

  // A durable run over Redis that suspends for approval, is approved, and
  // replays from its stored events.
  const cache = new api.RedisServerCache({ url: redisUrl }, { keyPrefix })
  const agent = api.createDurableAgent({
    agent: {
      id: 'refunds',
      instructions: 'Refund orders.',
      model: refundModel(),
      tools: {
        refund: {
          description: 'Refund an order',
          inputSchema: { type: 'object', properties: { order: { type: 'string' } }, required: ['order'] },
          needsApproval: true,
          execute: async ({ order }) => ({ order }),
        },
      },
    },
    cache,
  })
  const first = await agent.stream('Refund order A-1')
  const firstParts = []
  for await (const part of first.fullStream) firstParts.push(part.type)
  const paused = await first.output.getFullOutput()
  const rest = await agent.approveToolCall({ runId: first.runId })
  const text = await rest.text
  const replay = await agent.observe(first.runId, { offset: 0 })
  const replayText = (await replay.output.getFullOutput()).text
  const unknownRun = await rejection(agent.approveToolCall({ runId: 'no-such-run' }))
  const durable = {
    isDurableAgent: api.isDurableAgent(agent),
    instanceOfDurableAgent: agent instanceof api.DurableAgent,
    outputIsDurableOutput: first.output instanceof api.DurableOutput,
    firstParts,
    pausedOutcome: paused.outcome,
    suspendedTool: paused.suspended?.toolName,
    text,
    replayText,
  }
  await agent.cleanup(first.runId)

  // The client mode over node-redis with its preset. (upstashPreset drives
  // @upstash/redis, which speaks HTTP to Upstash and cannot run here: the
  // test suite covers it against an Upstash-shaped client; here it is read
  // as the adapter functions it is.)
  const client = await createClient({ url: redisUrl }).connect()
  const viaClient = new api.RedisServerCache({ client }, { keyPrefix, ...api.nodeRedisPreset })
  const clientIndices = [await viaClient.listPushIndexed('list', 'counter', { a: 1 }), await viaClient.listPushIndexed('list', 'counter', { a: 2 })]
  const clientList = await viaClient.listFromTo('list', 0)
  await viaClient.clear()
  const upstashAdapters = Object.entries(api.upstashPreset).map(([name, value]) => `${name}:${typeof value}`)
  await client.quit()

  // Over HTTP on loopback: the agent's handler in Node's http server, a run
  // started with a POST and read back with the resuming client; a direct
  // stream made resumable by recording it under a topic.
  const textAgent = api.createDurableAgent({ agent: { id: 'echo', model: echoModel() }, cache })
  const server = createServer(api.toNodeHandler(api.createAgentHandler(textAgent, { basePath: '/api' })))
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${server.address().port}/api`
  const started = await fetch(`${base}/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: 'Hi' }) })
  const runId = started.headers.get('x-run-id')
  await started.body.cancel()
  const overHttp = []
  for await (const part of api.resumableStream(`${base}/runs/${runId}/stream`)) overHttp.push(part.type)
  const missing = await rejection(
    (async () => {
      for await (const _ of api.resumableStream(`${base}/runs/no-such-run/stream`)) void _
    })(),
  )
  await new Promise((resolve) => server.close(resolve))
  const recorded = new api.CachingPubSub(null, memory)
  const direct = new ReadableStream({
    start(controller) {
      for (const n of [1, 2]) controller.enqueue({ n })
      controller.close()
    },
  }).pipeThrough(new api.CachingTransformStream(recorded, 'direct.1'))
  for await (const _ of direct) void _
  const http = {
    overHttp,
    missing: missing instanceof api.AgentHttpError && missing.code === api.ErrorCodes.RUN_NOT_FOUND,
    runTopic: api.runTopic(runId) === `agent.stream.${runId}`,
    recorded: (await recorded.getHistory('direct.1')).length,
    uiChunk: api.toUIMessageChunk({ type: 'text-delta', id: 't', text: 'x' }, runId)?.type,
  }
  await cache.clear()
  await cache.close()

  // What `require` gives, compared member by member: one copy of every class
  // whichever way the package is loaded.
  const required = require('durable-agent')
  return {
    entry,
    exports: Object.keys(namespace),
    imported: Object.keys(imported),
    sameAsRequired: Object.keys(imported).every((name) => imported[name] === required[name]),
    addons: Object.keys(require.cache).filter((path) => path.endsWith('.node')),
    stream: { indices, replayed },
    durable,
    errors: {
      notJson: notJson.code === api.ErrorCodes.NOT_JSON,
      runNotFound: unknownRun.code === api.ErrorCodes.RUN_NOT_FOUND,
    },
    client: { indices: clientIndices, list: clientList },
    upstashAdapters,
    http,
    used: [...used].filter((name) => typeof name === 'string').sort(),
  }
}
