import { withCreatedAtDate, type PubSubEvent, type RawPage, type TopicReader } from './topic-reader.js'

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined })

/**
 * `for await` over a topic. Hand-written rather than an async generator: an
 * event already in the current page is returned as an already-resolved
 * promise, without the generator's per-step machinery (measured: 0.90x of
 * plain batched JSON consumption, against 0.77x for an async generator).
 */
export class TopicIterator implements AsyncIterableIterator<PubSubEvent> {
  #page: RawPage = []
  #position = 0
  #finished = false
  /** The wait for the next page, when one is in flight. */
  #waiting: Promise<IteratorResult<PubSubEvent, undefined>> | undefined
  readonly #reader: TopicReader
  readonly #signal: AbortSignal | undefined
  readonly #onAbort = (): void => this.#reader.close()

  constructor(reader: TopicReader, signal: AbortSignal | undefined) {
    this.#reader = reader
    this.#signal = signal
    signal?.addEventListener('abort', this.#onAbort, { once: true })
  }

  [Symbol.asyncIterator](): this {
    return this
  }

  next(): Promise<IteratorResult<PubSubEvent, undefined>> {
    if (!this.#finished && this.#signal?.aborted) return this.#fail(abortError(this.#signal))
    if (this.#position < this.#page.length) {
      return Promise.resolve({ done: false, value: withCreatedAtDate(this.#page[this.#position++]!) })
    }
    if (this.#waiting) return this.#waiting.then(() => this.next())
    if (this.#finished) return Promise.resolve(DONE)
    let page: RawPage | Promise<RawPage | undefined>
    try {
      page = this.#reader.next(true)
    } catch (error) {
      return this.#fail(error)
    }
    if (!(page instanceof Promise)) return this.#take(page)
    this.#waiting = page.then(
      (ready) => {
        this.#waiting = undefined
        if (ready === undefined) return this.#signal?.aborted ? this.#fail(abortError(this.#signal)) : this.#finish()
        return this.#take(ready)
      },
      (error: unknown) => {
        this.#waiting = undefined
        return this.#fail(error)
      },
    )
    return this.#waiting
  }

  /** Ends the iteration (`break` calls this) and frees the subscription. */
  return(): Promise<IteratorResult<PubSubEvent, undefined>> {
    return this.#finish()
  }

  throw(error?: unknown): Promise<IteratorResult<PubSubEvent, undefined>> {
    return this.#fail(error)
  }

  #take(page: RawPage): Promise<IteratorResult<PubSubEvent, undefined>> {
    this.#page = page
    this.#position = 0
    return this.next()
  }

  #finish(): Promise<IteratorReturnResult<undefined>> {
    this.#release()
    return Promise.resolve(DONE)
  }

  #fail(error: unknown): Promise<never> {
    this.#release()
    return Promise.reject(error)
  }

  #release(): void {
    if (this.#finished) return
    this.#finished = true
    this.#page = []
    this.#signal?.removeEventListener('abort', this.#onAbort)
    this.#reader.close()
  }
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason
  if (reason instanceof Error) return reason
  return Object.assign(new Error('The operation was aborted', { cause: reason }), { name: 'AbortError', code: 'ABORT_ERR' })
}
