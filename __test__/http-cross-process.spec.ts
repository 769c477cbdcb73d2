/**
 * The agent handler across processes over Redis: two server processes
 * (fixtures/http-server.mjs) share one Redis. A stop sent to one aborts the
 * run the other drives; an approval sent to one continues a run the other
 * suspended; a client whose connection to one breaks mid-run reconnects to
 * the other and ends with exactly the run's parts.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { RedisServerCache, resumableStream, runTopic, CachingPubSub, type StreamPart } from '../dist/index.js'
import { expectedText } from '../examples/web/demo-agent.mjs'
import { eventually, REDIS_URL, uniquePrefix } from './helpers.js'
import { cuttingFetch, readSse } from './http-helpers.js'

const SERVER = join(__dirname, 'fixtures', 'http-server.mjs')
const WAIT_MS = 20_000

/** A server process of the fixture. */
class ServerProcess {
  readonly process: ChildProcessWithoutNullStreams
  readonly events: { event: string; port?: number }[] = []
  stderr = ''
  #partial = ''

  constructor(prefix: string) {
    this.process = spawn(process.execPath, [SERVER, REDIS_URL, prefix], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.process.stdout.setEncoding('utf8')
    this.process.stdout.on('data', (chunk: string) => {
      const lines = (this.#partial + chunk).split('\n')
      this.#partial = lines.pop()!
      for (const line of lines) this.events.push(JSON.parse(line))
    })
    this.process.stderr.setEncoding('utf8')
    this.process.stderr.on('data', (chunk: string) => (this.stderr += chunk))
  }

  async api(): Promise<string> {
    await eventually(() => this.events.some((e) => e.event === 'listening'), WAIT_MS, `the server to listen (${this.stderr})`)
    return `http://127.0.0.1:${this.events.find((e) => e.event === 'listening')!.port}/api`
  }

  send(command: 'hold' | 'release'): void {
    this.process.stdin.write(`${command}\n`)
  }

  held(): number {
    return this.events.filter((e) => e.event === 'held').length
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null) return
    const exited = new Promise((resolve) => this.process.once('exit', resolve))
    this.process.kill('SIGTERM')
    await exited
  }
}

describe('the agent handler across processes over Redis', () => {
  const prefix = uniquePrefix('http-cross')
  let a: ServerProcess
  let b: ServerProcess
  let apiA: string
  let apiB: string
  let cache: RedisServerCache
  let pubsub: CachingPubSub

  beforeAll(async () => {
    a = new ServerProcess(prefix)
    b = new ServerProcess(prefix)
    ;[apiA, apiB] = await Promise.all([a.api(), b.api()])
    cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: prefix })
    pubsub = new CachingPubSub(null, cache)
  })
  afterAll(async () => {
    await Promise.all([a.stop(), b.stop()])
    await cache.close()
  })

  /** The run's stored parts, read from Redis by this (third) process. */
  async function storedParts(runId: string): Promise<StreamPart[]> {
    return (await pubsub.getHistory(runTopic(runId))).filter((e) => e.type === 'chunk').map((e) => e.data as StreamPart)
  }

  const post = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  it('a stop sent to the other process aborts the run: the stream from the driving process ends with abort', async () => {
    a.send('hold')
    const heldBefore = a.held()
    const stream = resumableStream<StreamPart>(`${apiA}/runs`, { body: { messages: 'stop me from afar' } })
    const parts: StreamPart[] = []
    const reading = (async () => {
      for await (const part of stream) parts.push(part)
    })()
    await eventually(() => a.held() > heldBefore, WAIT_MS, 'the model on A to wait')
    const stopped = await post(`${apiB}/runs/${stream.runId}/stop`, { reason: 'stopped on B' })
    // B does not drive it: the stop is a request the driver (A) sees within a quarter of a second.
    expect(stopped.status).toBe(202)
    const run = (await stopped.json()) as { drivenBy?: string }
    expect(run).toMatchObject({ status: 'running', driven: true, drivenHere: false })
    // Driven by A's process, not by this one (nor B, which answered).
    expect(run.drivenBy).toMatch(/^\d+:/)
    expect(run.drivenBy).not.toMatch(new RegExp(`^${process.pid}:`))
    await reading
    a.send('release')
    expect(parts.at(-1)).toEqual({ type: 'abort', reason: 'stopped on B' })
    expect(stream.end).toMatchObject({ status: 'aborted' })
    expect(parts).toEqual(await storedParts(stream.runId!))
  })

  it('an approval sent to the other process continues the run there; both processes serve the same continuation', async () => {
    const stream = resumableStream<StreamPart>(`${apiA}/runs`, { body: { messages: 'refund my order please' } })
    const before: StreamPart[] = []
    for await (const part of stream) before.push(part)
    expect(stream.end).toMatchObject({ status: 'suspended', pendingApprovals: [{ toolCallId: 'refund-1' }] })
    const approved = await post(`${apiB}/runs/${stream.runId}/approve`, { toolCallId: 'refund-1' })
    expect(approved.status).toBe(200)
    const fromB = (await readSse(approved, WAIT_MS)).messages.filter((m) => m.event === undefined).map((m) => JSON.parse(m.data) as StreamPart)
    expect(fromB[0]).toMatchObject({ type: 'tool-result', toolCallId: 'refund-1' })
    expect(fromB.at(-1)).toMatchObject({ type: 'finish' })
    const fromA = resumableStream<StreamPart>(`${apiA}/runs/${stream.runId}/stream`, { lastEventId: stream.lastEventId! })
    const after: StreamPart[] = []
    for await (const part of fromA) after.push(part)
    expect(after).toEqual(fromB)
    expect([...before, ...after]).toEqual(await storedParts(stream.runId!))
  })

  it('a client whose connection to the driving process breaks mid-run reconnects to the other one and ends with exactly the run', async () => {
    a.send('hold')
    const heldBefore = a.held()
    const targets: string[] = []
    // The first answer (from A) breaks after 60 bytes, before the model's first word; every reconnect goes to B.
    const cuts: (number | undefined)[] = [60]
    const portB = new URL(apiB).port
    const fetch = cuttingFetch(
      () => cuts.shift(),
      (url) => {
        if (targets.length > 0) url.port = portB
        targets.push(url.port)
        return url
      },
    )
    let reconnected = false
    const question = 'survive a server change'
    const stream = resumableStream<StreamPart>(`${apiA}/runs`, {
      fetch,
      body: { messages: question },
      retry: { initialDelayMs: 1 },
      onReconnect: () => void (reconnected = true),
    })
    const parts: StreamPart[] = []
    const reading = (async () => {
      for await (const part of stream) parts.push(part)
    })()
    await eventually(() => reconnected && a.held() > heldBefore, WAIT_MS, 'the cut and the reconnect')
    a.send('release')
    await reading
    expect(fetch.cuts).toBe(1)
    expect(targets[0]).toBe(new URL(apiA).port)
    expect(targets.slice(1).every((port) => port === portB)).toBe(true)
    expect(parts).toEqual(await storedParts(stream.runId!))
    expect(parts.map((p) => (p.type === 'text-delta' ? p.text : '')).join('')).toBe(expectedText(question))
    expect(stream.end).toMatchObject({ status: 'finished' })
  })
})
