/**
 * `CachingTransformStream`: a `TransformStream` that records every chunk
 * passing through it under a topic of a `CachingPubSub`, so a direct stream
 * (a workflow route's, any `ReadableStream` of JSON values) can be resumed
 * and replayed like a run. Under `agent.stream.<id>` (`runTopic(id)`), the
 * agent handler's `GET {base}/runs/<id>/stream` serves it, from any offset.
 *
 * Each chunk is a `data` event (the chunk in `data`); the end of the input
 * is an `end` event, and an input that failed an `error` event
 * (`{ name, message }`), so readers learn how it ended.
 */
import { errorInfo } from '../agent/util.js'
import type { CachingPubSub } from '../pubsub.js'
import { DIRECT_CHUNK, DIRECT_END, DIRECT_ERROR } from './stream-sources.js'

/** Publishes in flight at most: a source faster than the store waits for it. */
const IN_FLIGHT = 64

export interface CachingTransformStreamOptions {
  /** The `runId` of the recorded events. Default: the topic without its `agent.stream.` prefix. */
  runId?: string
}

export class CachingTransformStream<T = unknown> extends TransformStream<T, T> {
  constructor(pubsub: CachingPubSub, topic: string, options: CachingTransformStreamOptions = {}) {
    const runId = options.runId ?? topic.replace(/^agent\.stream\./, '')
    const inFlight = new Set<Promise<unknown>>()
    let failure: unknown
    // Publishes keep call order (a topic's indices follow the calls), so they need not wait for each other.
    const publish = (type: string, data?: unknown): void => {
      const published: Promise<unknown> = pubsub.publish(topic, { type, runId, ...(data !== undefined ? { data } : {}) }).then(
        () => inFlight.delete(published),
        (error: unknown) => {
          failure ??= error
          inFlight.delete(published)
        },
      )
      inFlight.add(published)
    }
    const settled = async (): Promise<void> => {
      await Promise.all(inFlight)
      if (failure !== undefined) throw failure
    }
    const transformer = {
      transform: async (chunk: T, controller: TransformStreamDefaultController<T>) => {
        if (failure !== undefined) throw failure
        publish(DIRECT_CHUNK, chunk)
        controller.enqueue(chunk)
        if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight)
      },
      flush: async () => {
        publish(DIRECT_END)
        await settled()
      },
      // The input failed (its writable side aborted) or the output was cancelled: readers learn it ended so.
      cancel: async (reason: unknown) => {
        publish(DIRECT_ERROR, errorInfo(reason ?? new Error('the stream was cancelled')))
        await settled()
      },
    }
    // `cancel` is in the Streams standard and Node 20, not yet in these typings.
    super(transformer as ConstructorParameters<typeof TransformStream<T, T>>[0])
  }
}
