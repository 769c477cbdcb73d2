/**
 * A run's output as one reader sees it: the stored events of the run's topic
 * from an offset, read in pages, turned into the full stream, the text stream
 * and the promises of the AI SDK's `streamText` result.
 *
 * Reading starts at once (callbacks fire and promises settle whether or not
 * anyone iterates), parts are kept so every `fullStream`/`textStream` access
 * replays them from the start, and the output ends at a terminal part
 * (`finish`, `error`, `abort`), or where the run suspends.
 */
import type { PubSubEvent, TopicReader } from '../topic-reader.js'
import { isTransient, retryDelay, retryPause, RUN_PART_EVENT, SUSPENDED_EVENT } from '../wire.js'
import type {
  FinishReason,
  FullOutput,
  RunOutcome,
  StepResult,
  StreamCallbacks,
  StreamPart,
  SuspendedData,
  TextBlock,
  ToolCallPart,
  ToolResultPart,
  Usage,
} from './types.js'
import { withErrorObjects } from './util.js'

export interface OutputOptions<C = StreamPart> extends StreamCallbacks<C> {
  runId: string
  /** The stream's format: what a stored part is handed out as. */
  toChunk: (part: StreamPart, runId: string) => C
  /** At a `suspended` event with nothing after it in the page: end here? */
  endAtSuspension: () => boolean | Promise<boolean>
  /**
   * Called when the output has waited a while for the next event: rejects if
   * the run is gone (cleaned up or expired) or no process drives it, which
   * then ends the output with that error instead of a wait for ever.
   */
  checkRun?: () => Promise<unknown>
}

/** How long an output waits for the next event before it checks the run still exists. */
const IDLE_CHECK_MS = 2_000
const IDLE = Symbol('idle')
/** How long an output keeps retrying reads from a store that is briefly away. */
const RETRY_FOR_MS = 30_000

interface Deferred<T> {
  promise: Promise<T>
  resolve(value: T): void
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}

function newStep(): StepResult {
  return {
    content: [],
    text: '',
    reasoning: [],
    reasoningText: '',
    files: [],
    sources: [],
    toolCalls: [],
    staticToolCalls: [],
    dynamicToolCalls: [],
    toolResults: [],
    staticToolResults: [],
    dynamicToolResults: [],
    finishReason: 'unknown',
    usage: {},
    warnings: [],
    request: {},
    response: {},
  }
}

function addUsage(total: Usage, step: Usage): Usage {
  const out: Usage = { ...total }
  for (const key of Object.keys(step) as (keyof Usage)[]) out[key] = (out[key] ?? 0) + (step[key] ?? 0)
  return out
}

export class DurableOutput<C = StreamPart> {
  readonly runId: string
  readonly #parts: StreamPart[] = []
  readonly #steps: StepResult[] = []
  #step: StepResult = newStep()
  /** The step's open text and reasoning blocks, by part id. */
  #blocks = new Map<string, TextBlock>()
  /** Text of the steps that finished; the current step's is in `#step`. */
  #text = ''
  #usage: Usage = {}
  #finishReason: FinishReason = 'unknown'
  #outcome: RunOutcome | undefined
  #ended = false
  #suspended: SuspendedData | undefined
  #error: Error | undefined
  #wake: Deferred<void> = deferred()
  readonly #result = deferred<FullOutput>()
  readonly #options: OutputOptions<C>
  readonly #reader: TopicReader | undefined
  /** The read in flight, until `#wait` hands its outcome out. */
  #reading: Promise<{ page: PubSubEvent[] | undefined } | { error: unknown }> | undefined

  /** `reader: undefined`: an output that is already over (`outcome`). */
  constructor(reader: TopicReader | undefined, options: OutputOptions<C>, outcome?: RunOutcome) {
    this.runId = options.runId
    this.#options = options
    this.#reader = reader
    if (reader) void this.#pump(reader)
    else this.#end(outcome ?? 'finished')
  }

  /**
   * Every part, from the first this output read (in the agent's stream
   * format): `for await` it, or use it as a `ReadableStream`.
   */
  get fullStream(): ReadableStream<C> {
    const { toChunk, runId } = this.#options
    return this.#stream((part) => toChunk(part, runId))
  }

  /** The text deltas. */
  get textStream(): ReadableStream<string> {
    return this.#stream((part) => (part.type === 'text-delta' ? part.text : undefined))
  }

  /**
   * All text of the steps the output read (on suspension: the text so far).
   * A step cut off by a crash and run again counts once: its partial deltas
   * stay in the streams, not here.
   */
  get text(): Promise<string> {
    return this.#result.promise.then((r) => r.text)
  }
  get usage(): Promise<Usage> {
    return this.#result.promise.then((r) => r.usage)
  }
  get totalUsage(): Promise<Usage> {
    return this.usage
  }
  get finishReason(): Promise<FinishReason> {
    return this.#result.promise.then((r) => r.finishReason)
  }
  get steps(): Promise<StepResult[]> {
    return this.#result.promise.then((r) => r.steps)
  }
  /** The tool calls of the last step. */
  get toolCalls(): Promise<ToolCallPart[]> {
    return this.#result.promise.then((r) => r.toolCalls)
  }
  /** The tool results of the last step. */
  get toolResults(): Promise<ToolResultPart[]> {
    return this.#result.promise.then((r) => r.toolResults)
  }
  /** Everything, once the output ends. */
  getFullOutput(): Promise<FullOutput> {
    return this.#result.promise
  }

  /** Ends the output with an error that is not in the stream (the run could not be driven, or was deleted). */
  fail(error: Error): void {
    if (this.#ended) return
    this.#reader?.close()
    void Promise.resolve(this.#accept({ type: 'error', error })).then(() => this.#end('failed'))
  }

  /**
   * A `ReadableStream` of the picked parts whose `for await` skips the stream
   * machinery (a promise and a pull per part): iterating is the common case,
   * and this halves its cost. `getReader()`, `pipeTo()` and the rest work as
   * on any stream.
   */
  #stream<T>(pick: (part: StreamPart) => T | undefined): ReadableStream<T> {
    let i = 0
    const stream = new ReadableStream<T>(
      {
        pull: async (controller) => {
          for (;;) {
            let pushed = false
            while (i < this.#parts.length) {
              const value = pick(this.#parts[i++]!)
              if (value !== undefined) {
                controller.enqueue(value)
                pushed = true
              }
            }
            if (pushed) return
            if (this.#ended) return controller.close()
            await this.#wake.promise
          }
        },
      },
      { highWaterMark: 0 },
    )
    const iterate = (): AsyncIterableIterator<T> => this.#iterate(pick)
    Object.defineProperties(stream, {
      [Symbol.asyncIterator]: { value: iterate },
      values: { value: iterate },
    })
    return stream
  }

  async *#iterate<T>(pick: (part: StreamPart) => T | undefined): AsyncGenerator<T, void, undefined> {
    let i = 0
    for (;;) {
      while (i < this.#parts.length) {
        const value = pick(this.#parts[i++]!)
        if (value !== undefined) yield value
      }
      if (this.#ended) return
      await this.#wake.promise
    }
  }

  async #pump(reader: TopicReader): Promise<void> {
    try {
      for (;;) {
        const page = reader.ready() ?? (await this.#next(reader))
        if (page === undefined) return this.#end(this.#outcome ?? 'aborted')
        for (let i = 0; i < page.length; i++) {
          const event = page[i]!
          if (event.type === RUN_PART_EVENT) {
            const accepted = this.#accept(withErrorObjects(event.data as StreamPart))
            if (accepted) await accepted
          } else if (event.type === SUSPENDED_EVENT) await this.#atSuspension(event, i === page.length - 1)
          if (this.#ended) return
        }
        this.#signal()
      }
    } catch (error) {
      await this.#accept({ type: 'error', error: error as Error })
      this.#end('failed')
    } finally {
      reader.close()
    }
  }

  /**
   * The next page, checking now and then that the run still exists (see
   * `checkRun`). A store that is briefly away (a Redis stall or reconnect)
   * does not end the output, since the run goes on: the read is retried,
   * for up to `RETRY_FOR_MS`.
   */
  async #next(reader: TopicReader): Promise<PubSubEvent[] | undefined> {
    const giveUpAt = Date.now() + RETRY_FOR_MS
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#wait(reader)
      } catch (error) {
        if (!isTransient(error) || Date.now() + retryDelay(attempt) > giveUpAt) throw error
        await retryPause(attempt)
      }
    }
  }

  /**
   * Waits for the read in flight (or starts one), checking the run every
   * `IDLE_CHECK_MS` meanwhile. A read is consumed only here, when its page
   * is returned or its failure thrown: a check that fails (the store briefly
   * away) leaves the read in flight, and the next attempt waits on that same
   * read. (A second read would take the next page, and this one's events,
   * the run's end among them, would be lost.)
   */
  async #wait(reader: TopicReader): Promise<PubSubEvent[] | undefined> {
    const reading = (this.#reading ??= Promise.resolve(reader.next(true)).then(
      (page) => ({ page }),
      (error: unknown) => ({ error }),
    ))
    const check = this.#options.checkRun
    for (;;) {
      let timer: NodeJS.Timeout | undefined
      const idle = check && new Promise<typeof IDLE>((resolve) => (timer = setTimeout(resolve, IDLE_CHECK_MS, IDLE)))
      const outcome = await (idle ? Promise.race([reading, idle]) : reading)
      clearTimeout(timer)
      if (outcome !== IDLE) {
        this.#reading = undefined
        if ('error' in outcome) throw outcome.error
        return outcome.page
      }
      await check!()
    }
  }

  async #atSuspension(event: PubSubEvent, last: boolean): Promise<void> {
    const data = event.data as SuspendedData
    // Something follows in this page: the run went on, so read on.
    if (!last || !(await this.#options.endAtSuspension())) return
    this.#suspended = data
    await this.#call(this.#options.onSuspended, data)
    this.#end('suspended')
  }

  /** Takes a part in; a promise only when a user callback returned one. */
  #accept(part: StreamPart): void | Promise<void> {
    this.#parts.push(part)
    const { onChunk, toChunk, runId } = this.#options
    const chunk = onChunk && this.#call(onChunk, toChunk(part, runId))
    if (chunk) return chunk.then(() => this.#update(part))
    return this.#update(part)
  }

  #update(part: StreamPart): void | Promise<void> {
    const step = this.#step
    switch (part.type) {
      case 'start-step':
        // A step that started but never finished was cut off (its process
        // died) and is being run again: its text does not count.
        this.#step = { ...newStep(), request: part.request, warnings: part.warnings }
        this.#blocks.clear()
        break
      case 'text-start':
      case 'reasoning-start':
        this.#block(part.type === 'text-start' ? 'text' : 'reasoning', part.id, part.providerMetadata)
        break
      case 'text-delta':
        step.text += part.text
        this.#block('text', part.id).text += part.text
        break
      case 'reasoning-delta':
        step.reasoningText += part.text
        this.#block('reasoning', part.id).text += part.text
        break
      case 'tool-call':
        step.toolCalls.push(part)
        if (part.dynamic) step.dynamicToolCalls.push(part)
        else step.staticToolCalls.push(part)
        step.content.push(part)
        break
      case 'tool-result':
        step.toolResults.push(part)
        step.staticToolResults.push(part)
        step.content.push(part)
        break
      case 'tool-error':
        step.content.push(part)
        break
      case 'source':
        step.sources.push(part)
        step.content.push(part)
        break
      case 'file':
        step.files.push(part.file)
        step.content.push(part)
        break
      case 'finish-step':
        step.finishReason = part.finishReason
        step.usage = part.usage
        step.response = part.response
        if (part.providerMetadata) step.providerMetadata = part.providerMetadata
        this.#steps.push(step)
        this.#text += step.text
        this.#usage = addUsage(this.#usage, part.usage)
        this.#step = newStep()
        return this.#call(this.#options.onStepFinish, step)
      case 'finish': {
        this.#finishReason = part.finishReason
        this.#usage = part.totalUsage
        this.#outcome = 'finished'
        const called = this.#call(this.#options.onFinish, this.#full())
        if (called) return called.then(() => this.#end('finished'))
        return this.#end('finished')
      }
      case 'error': {
        this.#error = part.error
        this.#finishReason = 'error'
        const called = this.#call(this.#options.onError, { error: part.error })
        if (called) return called.then(() => this.#end('failed'))
        return this.#end('failed')
      }
      case 'abort': {
        this.#finishReason = 'other'
        const called = this.#call(this.#options.onAbort, { ...(part.reason !== undefined ? { reason: part.reason } : {}), steps: this.#steps })
        if (called) return called.then(() => this.#end('aborted'))
        return this.#end('aborted')
      }
    }
  }

  /** The step's text or reasoning block `id`, opened (in content order) when new. */
  #block(type: TextBlock['type'], id: string, providerMetadata?: object): TextBlock {
    let block = this.#blocks.get(id)
    if (block === undefined || block.type !== type) {
      block = { type, text: '', ...(providerMetadata ? { providerMetadata } : {}) }
      this.#blocks.set(id, block)
      this.#step.content.push(block)
      if (type === 'reasoning') this.#step.reasoning.push(block)
    }
    return block
  }

  #full(): FullOutput {
    const last = this.#steps[this.#steps.length - 1]
    return {
      runId: this.runId,
      text: this.#text + this.#step.text,
      usage: this.#usage,
      totalUsage: this.#usage,
      finishReason: this.#finishReason,
      steps: this.#steps,
      toolCalls: last?.toolCalls ?? [],
      toolResults: last?.toolResults ?? [],
      outcome: this.#outcome ?? 'finished',
      ...(this.#suspended ? { suspended: this.#suspended } : {}),
      ...(this.#error ? { error: this.#error } : {}),
    }
  }

  #end(outcome: RunOutcome): void {
    if (this.#ended) return
    this.#ended = true
    this.#outcome = outcome
    if (outcome === 'suspended' && this.#finishReason === 'unknown') this.#finishReason = 'tool-calls'
    this.#reader?.close()
    this.#result.resolve(this.#full())
    this.#signal()
  }

  #signal(): void {
    const wake = this.#wake
    this.#wake = deferred()
    wake.resolve()
  }

  /**
   * Runs a user callback; one that throws or rejects is reported, never
   * allowed to break the stream. A promise only when the callback returned one.
   */
  #call<T>(callback: ((arg: T) => void | PromiseLike<void>) | undefined, arg: T): Promise<void> | undefined {
    if (!callback) return undefined
    try {
      const returned = callback(arg)
      if (returned && typeof returned.then === 'function') return Promise.resolve(returned).then(undefined, warnCallback)
    } catch (error) {
      warnCallback(error)
    }
    return undefined
  }
}

function warnCallback(error: unknown): void {
  process.emitWarning(`durable-agent: a stream callback threw: ${(error as Error)?.message ?? String(error)}`, 'DurableAgentCallbackWarning')
}
