/**
 * What the GET route serves under an id: the topic `agent.stream.<id>`,
 * which holds either a durable run's events (`chunk`: a part; `suspended`:
 * where it waits for approval) or a direct stream's that
 * `CachingTransformStream` recorded (`data`: a chunk; `end`, `error`: how
 * its input ended). Event types tell them apart, so a stream is served
 * without first asking what it is.
 */
import type { DurableAgentRun } from '../agent/durable-agent.js'
import { coded, ErrorCodes } from '../errors.js'
import { RUN_PART_EVENT, runTopic, SUSPENDED_EVENT } from '../wire.js'
import type { PubSubInternals } from '../internal.js'
import type { RunStatus } from './protocol.js'
import { TERMINAL_TYPES } from './protocol.js'
import { nextIndexOf, SEND, SKIP, type StreamSource, type Verdict } from './topic-stream.js'

const STATUS_OF: Record<string, Exclude<RunStatus, 'running' | 'suspended'>> = { finish: 'finished', error: 'failed', abort: 'aborted' }

/** Event types: a run's part, and a direct stream's chunk, end and failure. */
export const DIRECT_CHUNK = 'data'
export const DIRECT_END = 'end'
export const DIRECT_ERROR = 'error'

/** The stream under `id`: a run of `agent`, or a direct stream. */
export function topicSource(agent: { getRun(runId: string): Promise<DurableAgentRun> }, internals: PubSubInternals, id: string): StreamSource {
  const topic = runTopic(id)
  return {
    topic,
    classify(event, last): Verdict | Promise<Verdict> {
      switch (event.type) {
        case RUN_PART_EVENT: {
          const type = (event.data as { type?: string } | null)?.type ?? ''
          return TERMINAL_TYPES.has(type) ? { send: true, end: { status: STATUS_OF[type]!, nextIndex: event.index + 1 } } : SEND
        }
        case SUSPENDED_EVENT:
          // A suspension with events after it was resumed: read on.
          if (!last) return SKIP
          return agent
            .getRun(id)
            .then((run) =>
              run.status === 'suspended'
                ? { send: false, suspension: true, end: { status: 'suspended', nextIndex: run.nextIndex, pendingApprovals: run.pendingApprovals } }
                : SKIP,
            )
        case DIRECT_CHUNK:
          return SEND
        case DIRECT_END:
          return { send: false, end: { status: 'finished', nextIndex: event.index + 1 } }
        case DIRECT_ERROR:
          return { send: false, end: { status: 'failed', nextIndex: event.index + 1, error: event.data as { name: string; message: string } } }
        default:
          return SKIP
      }
    },
    check: async () => {
      const run = await agent.getRun(id).catch((error: { code?: string }) => {
        if (error?.code !== ErrorCodes.RUN_NOT_FOUND) throw error
        return undefined
      })
      if (!run && (await nextIndexOf(internals, topic)) === 0) throw notFound(id)
    },
  }
}

export function notFound(runId: string): Error {
  return coded(new Error(`no run or stream \`${runId}\`: it never existed, was cleaned up, or expired`), ErrorCodes.RUN_NOT_FOUND)
}
