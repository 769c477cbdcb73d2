// The scratch app's TypeScript usage file, checked by `tsc --noEmit` with
// moduleResolution bundler (tsconfig.bundler.json: the `import` typings) and
// node16 (tsconfig.node16.json: this app is CommonJS, so the `require`
// typings). The `@ts-expect-error` lines fail the check if the typings
// resolve to `any` or stop describing the API.
import { MockLanguageModelV3 } from 'ai/test'
import {
  AgentHttpError,
  CachingPubSub,
  createAgentHandler,
  createDurableAgent,
  ErrorCodes,
  InMemoryServerCache,
  isDurableAgent,
  RedisServerCache,
  resumableStream,
  toNodeHandler,
  type CodedError,
  type ErrorCode,
  type PubSubEvent,
  type ServerCache,
  type StreamPart,
} from 'durable-agent'

const memory = new InMemoryServerCache({ ttlMs: 60_000, maxSize: 1_000 })
const redis = new RedisServerCache({ url: 'redis://127.0.0.1:6379' }, { keyPrefix: 'app:' })
const caches: ServerCache[] = [memory, redis]
const pubsub = new CachingPubSub(null, memory)

export async function replay(topic: string): Promise<PubSubEvent[]> {
  const events: PubSubEvent[] = []
  for await (const event of pubsub.subscribeWithReplay(topic, { offset: 0 })) {
    const index: number = event.index
    const createdAt: Date = event.createdAt
    events.push(event)
    if (index > 10 || createdAt.getTime() < 0) break
  }
  return events
}

export async function run(): Promise<string> {
  const agent = createDurableAgent({
    agent: { id: 'support', instructions: 'Be brief.', model: new MockLanguageModelV3() },
    cache: redis,
  })
  if (!isDurableAgent(agent)) throw new Error('not durable')
  const result = await agent.stream('Hello')
  const parts: StreamPart[] = []
  for await (const part of result.fullStream) parts.push(part)
  return (await result.output.getFullOutput()).text
}

export async function overHttp(url: string): Promise<string[]> {
  const handler: (request: Request) => Promise<Response> = createAgentHandler(createDurableAgent({ agent: { id: 'web', model: new MockLanguageModelV3() } }), {
    basePath: '/api',
  })
  void toNodeHandler(handler)
  const types: string[] = []
  try {
    for await (const part of resumableStream(url)) types.push(part.type)
  } catch (error) {
    if (error instanceof AgentHttpError) types.push(error.code)
  }
  return types
}

export function codeOf(error: CodedError): ErrorCode {
  return error.code
}

export const notJson: ErrorCode = ErrorCodes.NOT_JSON

// @ts-expect-error keys are strings
void caches[0]!.get(42)
// @ts-expect-error no such option
void new InMemoryServerCache({ ttl: 1 })
// @ts-expect-error an agent needs a model
createDurableAgent({ agent: { id: 'no-model' } })
