// The scratch app's ES-module script: named imports of every export, as an
// app written in ES modules imports them, each used by exercise.cjs.
import * as namespace from 'durable-agent'
import {
  AgentHttpError,
  CachingPubSub,
  CachingTransformStream,
  createAgentHandler,
  createDurableAgent,
  DurableAgent,
  DurableOutput,
  ErrorCodes,
  InMemoryServerCache,
  isDurableAgent,
  nodeRedisPreset,
  RedisServerCache,
  resumableStream,
  runTopic,
  toNodeHandler,
  toUIMessageChunk,
  upstashPreset,
  withCaching,
} from 'durable-agent'

import exercise from './exercise.cjs'

// The same names again: named imports cannot be enumerated, so they are handed over by name.
const imported = {
  AgentHttpError,
  CachingPubSub,
  CachingTransformStream,
  createAgentHandler,
  createDurableAgent,
  DurableAgent,
  DurableOutput,
  ErrorCodes,
  InMemoryServerCache,
  isDurableAgent,
  nodeRedisPreset,
  RedisServerCache,
  resumableStream,
  runTopic,
  toNodeHandler,
  toUIMessageChunk,
  upstashPreset,
  withCaching,
}
const report = await exercise(imported, { namespace, entry: import.meta.resolve('durable-agent') })
console.log(JSON.stringify(report))
