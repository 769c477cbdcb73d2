import type { NativeBridge } from '../native.js'
import { coded, ErrorCodes, fromBatchError, fromNative } from './errors.js'

/**
 * The JS half of the completion bridge (see `src/bridge.rs`): JS creates the
 * promise and queues the work natively; once per tick it starts everything
 * queued; results come back in batches, one `JSON.parse` each.
 */
export type BridgedNative = Pick<NativeBridge, 'flush' | 'takeCompletions' | 'hold' | 'release'>

interface Pending {
  resolve(value: unknown): void
  reject(error: unknown): void
  keepAlive: boolean
}

/** A batch entry (see `src/bridge.rs`): `[id, value]`, `[id]` (no value), or `[id, null, '[CODE] message']`. */
type Entry = [id: number, value?: unknown, error?: string]

export class Bridge {
  readonly #pending = new Map<number, Pending>()
  /** Pending calls that keep Node alive (see `call`). */
  #holding = 0
  #flushQueued = false
  #lastId = 0
  #native: BridgedNative | undefined

  /** Pass to the native constructor: called when a batch has results. */
  readonly onReady = (): void => this.#drain()

  /** Calls waiting for their outcome. */
  get pending(): number {
    return this.#pending.size
  }

  attach(native: BridgedNative): void {
    this.#native = native
  }

  /**
   * Runs `submit(id)` (a synchronous native call) and settles with the outcome
   * reported for `id`. While it is pending Node stays alive, unless
   * `keepAlive` is false (a callback subscription waiting for events, which,
   * like an event listener, must not hold the process open).
   */
  call<T>(submit: (id: number) => void, keepAlive = true): Promise<T> {
    const id = (this.#lastId = (this.#lastId + 1) >>> 0)
    return new Promise<T>((resolve, reject) => {
      try {
        submit(id)
      } catch (error) {
        reject(fromNative(error))
        return
      }
      this.#await(id, resolve as (value: unknown) => void, reject, keepAlive)
    })
  }

  /**
   * Like `call`, for work that may complete at once (in memory): `submit`
   * returns the reply's JSON text then, or `null` when it queued the work.
   */
  callNowOrLater<T>(submit: (id: number) => string | null, keepAlive = true): Promise<T> {
    const id = (this.#lastId = (this.#lastId + 1) >>> 0)
    let now: string | null
    try {
      now = submit(id)
    } catch (error) {
      return Promise.reject(fromNative(error))
    }
    if (now !== null) return Promise.resolve(JSON.parse(now) as T)
    return new Promise<T>((resolve, reject) => this.#await(id, resolve as (value: unknown) => void, reject, keepAlive))
  }

  #await(id: number, resolve: (value: unknown) => void, reject: (error: unknown) => void, keepAlive: boolean): void {
    if (keepAlive && this.#holding++ === 0) this.#native!.hold()
    this.#pending.set(id, { resolve, reject, keepAlive })
    if (!this.#flushQueued) {
      this.#flushQueued = true
      queueMicrotask(this.#flush)
    }
  }

  /** Starts, in one native task, all the work this tick queued. */
  readonly #flush = (): void => {
    this.#flushQueued = false
    this.#native!.flush()
  }

  #drain(): void {
    const native = this.#native
    if (!native) return
    const batch = native.takeCompletions()
    if (batch === null) return
    let entries: Entry[]
    try {
      entries = JSON.parse(batch) as Entry[]
    } catch (error) {
      // The native side only embeds valid JSON, so this is a bug. Fail every
      // call in flight loudly rather than leave any hanging or crash Node.
      this.#failAll(coded(new Error(`corrupt completion batch: ${(error as Error).message}`), ErrorCodes.INTERNAL))
      return
    }
    for (const entry of entries) {
      const [id, value, error] = entry
      const pending = this.#pending.get(id)
      if (!pending) continue
      this.#pending.delete(id)
      if (pending.keepAlive && --this.#holding === 0) native.release()
      if (entry.length === 3) pending.reject(fromBatchError(error!))
      else pending.resolve(value)
    }
  }

  #failAll(error: Error): void {
    const pending = [...this.#pending.values()]
    this.#pending.clear()
    if (this.#holding > 0) this.#native?.release()
    this.#holding = 0
    for (const { reject } of pending) reject(error)
  }
}
