/**
 * What the GET route serves under a run id: a durable run's topic (ended by
 * its terminal part, or where it waits for approval), or a direct stream
 * that `CachingTransformStream` recorded under the same topic name.
 */
import type { DurableAgentRun } from '../agent/durable-agent.js'
import { coded, ErrorCodes } from '../errors.js'
import type { PubSubInternals } from '../internal.js'
import type { RunStatus } from './protocol.js'
import { TERMINAL_TYPES } from './protocol.js'
import { nextIndexOf, SEND, SKIP, type StreamSource, type Verdict } from './topic-stream.js'

/** A run's topic (the agent's naming). */
export function runTopic(runId: string): string {
  return `agent.stream.${runId}`
}

const STATUS_OF: Record<string, Exclude<RunStatus, 'running' | 'suspended'>> = { finish: 'finished', error: 'failed', abort: 'aborted' }

/** Event types of a direct stream (`CachingTransformStream`). */
export const DIRECT_CHUNK = 'chunk'
export const DIRECT_END = 'end'
export const DIRECT_ERROR = 'error'

/** A durable run of `agent`. */
export function runSource(agent: { getRun(runId: string): Promise<DurableAgentRun> }, runId: string): StreamSource {
  return {
    kind: 'run',
    topic: runTopic(runId),
    classify(event, last): Verdict | Promise<Verdict> {
      if (event.type === 'chunk') {
        const type = (event.data as { type?: string } | null)?.type ?? ''
        return TERMINAL_TYPES.has(type) ? { send: true, end: { status: STATUS_OF[type]!, nextIndex: event.index + 1 } } : SEND
      }
      // A suspension with events after it was resumed: read on.
      if (event.type !== 'suspended' || !last) return SKIP
      return agent.getRun(runId).then((run) =>
        run.status === 'suspended'
          ? { send: false, suspension: true, end: { status: 'suspended', nextIndex: run.nextIndex, pendingApprovals: run.pendingApprovals } }
          : SKIP,
      )
    },
    check: async () => {
      await agent.getRun(runId)
    },
  }
}

/** A direct stream recorded under `runTopic(id)`. */
export function directSource(internals: PubSubInternals, id: string): StreamSource {
  const topic = runTopic(id)
  return {
    kind: 'direct',
    topic,
    classify(event): Verdict {
      if (event.type === DIRECT_CHUNK) return SEND
      if (event.type === DIRECT_END) return { send: false, end: { status: 'finished', nextIndex: event.index + 1 } }
      if (event.type === DIRECT_ERROR) {
        const error = event.data as { name: string; message: string }
        return { send: false, end: { status: 'failed', nextIndex: event.index + 1, error } }
      }
      return SKIP
    },
    check: async () => {
      if ((await nextIndexOf(internals, topic)) === 0) throw notFound(id)
    },
  }
}

export function notFound(runId: string): Error {
  return coded(new Error(`no run or stream \`${runId}\`: it never existed, was cleaned up, or expired`), ErrorCodes.RUN_NOT_FOUND)
}
