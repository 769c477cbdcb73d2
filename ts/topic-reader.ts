import type { NativeSubscription } from '../native.js'
import type { Bridge } from './bridge.js'
import { native } from './errors.js'

/** An event as subscribers receive it: Mastra's `Event`, with its index. */
export interface PubSubEvent {
  id: string
  type: string
  runId: string
  // Mastra's Event types `data` as `any`; events carry whatever JSON the publisher gave.
  data: unknown
  createdAt: Date
  /** 0-based, gap-free, in publish order per topic. */
  index: number
}

/** A page as it arrives: parsed JSON, `createdAt` still as stored (see `withCreatedAtDate`). */
export type RawPage = PubSubEvent[]

/**
 * One reader's pages, whichever way they come: synchronously when the store
 * has them ready (in memory), else through the completion bridge. Pages are
 * one JSON text per up to `pageSize` events, parsed once; callers turn
 * `createdAt` into a `Date` per event as they hand it out (`withCreatedAtDate`).
 */
export class TopicReader {
  constructor(
    readonly subscription: NativeSubscription,
    readonly bridge: Bridge,
    readonly pageSize: number,
    /** Turns a failed read's error into the one to report (see `CachingPubSub`). */
    readonly explain: (error: unknown) => Promise<unknown>,
  ) {}

  /** A page ready now, or `null`. */
  ready(): RawPage | null {
    const text = native(() => this.subscription.tryNext(this.pageSize))
    return text === null ? null : (JSON.parse(text) as RawPage)
  }

  /**
   * The next stored page without waiting for new events; `undefined` once
   * caught up (or closed). `max`: a smaller page, for a first answer that
   * should not wait for a whole page to be read.
   */
  available(max = this.pageSize): RawPage | Promise<RawPage | undefined> {
    return this.#read((id) => this.subscription.readAvailable(id, max))
  }

  /**
   * The next page, waiting for events; `undefined` once closed. `keepAlive`:
   * whether the wait holds Node open.
   */
  next(keepAlive: boolean): RawPage | Promise<RawPage | undefined> {
    return this.#read((id) => this.subscription.next(id, this.pageSize), keepAlive)
  }

  /** A page ready now, else `start`'s through the bridge; a failure of either rejects, explained. */
  #read(start: (id: number) => void, keepAlive?: boolean): RawPage | Promise<RawPage | undefined> {
    let page: RawPage | null
    try {
      page = this.ready()
    } catch (error) {
      return this.#failed(error)
    }
    return page ?? this.bridge.call<RawPage | undefined>(start, keepAlive).catch((error: unknown) => this.#failed(error))
  }

  async #failed(error: unknown): Promise<never> {
    throw await this.explain(error)
  }

  close(): void {
    this.subscription.close()
  }
}

/**
 * Events are stored with `createdAt` as epoch ms (earlier builds stored ISO
 * text, which reads back too); subscribers get a `Date`.
 */
export function withCreatedAtDate(event: PubSubEvent): PubSubEvent {
  event.createdAt = new Date(event.createdAt as unknown as number | string)
  return event
}
