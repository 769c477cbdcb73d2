import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer } from 'node:net'

import { MockLanguageModelV3 } from 'ai/test'

/** The Redis every Redis test talks to: `REDIS_URL`, else the local default. */
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

/** The Redis Cluster the cluster tests talk to: `REDIS_CLUSTER_NODES` (comma separated URLs; `npm test` starts one). */
export function redisClusterNodes(): string[] {
  const nodes = process.env.REDIS_CLUSTER_NODES
  if (!nodes) throw new Error('REDIS_CLUSTER_NODES lists the Redis Cluster to test on (npm test starts one)')
  return nodes.split(',')
}

/**
 * The keys matching `pattern` on every node of a cluster (`redis-cli --scan`
 * on each: no client, so no connection or timer outlives the call).
 */
export function clusterKeys(nodes: string[], pattern: string): Promise<string[]> {
  const keys = nodes.flatMap((url) => {
    const { hostname, port } = new URL(url)
    const out = execFileSync('redis-cli', ['-h', hostname, '-p', port, '--scan', '--pattern', pattern], { encoding: 'utf8' })
    return out.split('\n').filter(Boolean)
  })
  return Promise.resolve(keys)
}

/**
 * Each Redis deployment a cross-process test runs on: `arg` is what fixtures
 * take on their command line (see fixtures/redis-target.mjs).
 */
export function redisTargets(): { name: string; arg: string; connection: { url: string } | { cluster: { nodes: string[] } } }[] {
  const nodes = redisClusterNodes()
  return [
    { name: 'Redis', arg: REDIS_URL, connection: { url: REDIS_URL } },
    { name: 'Redis Cluster', arg: `cluster:${nodes.join(',')}`, connection: { cluster: { nodes } } },
  ]
}

/** CachingPubSub's default keyPrefix, as documented: where topics (and durable runs) live in a cache. */
export const TOPIC_PREFIX = 'durable-agent:'

/** A key prefix no other test or run shares. */
export function uniquePrefix(label: string): string {
  return `test:${label}:${randomBytes(6).toString('hex')}:`
}

/** Rejects if `promise` has not settled by the deadline (a stream that never ends, a call that never returns). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** Every item of a stream, which must end within `ms`. */
export function drain<T>(stream: ReadableStream<T>, what: string, ms = 10_000): Promise<T[]> {
  return within(
    (async () => {
      const items: T[] = []
      for await (const item of stream as unknown as AsyncIterable<T>) items.push(item)
      return items
    })(),
    ms,
    what,
  )
}

/** Polls `check` until it returns true or `timeoutMs` passes, then fails. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

/** A redis-server of the test's own, so it can be stopped and restarted. */
export class OwnRedis {
  #process: ChildProcess | undefined
  constructor(
    readonly port: number,
    readonly extraArgs: string[] = [],
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  /** Starts the server (again, after `stop`); a no-op while it runs. */
  async start(): Promise<void> {
    if (this.#process && this.#process.exitCode === null && this.#process.signalCode === null) return
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...this.extraArgs]
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    this.#process = child
    let output = ''
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) resolve()
      }
      child.stdout?.on('data', onData)
      child.stderr?.on('data', onData)
      child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)))
      setTimeout(() => reject(new Error(`redis-server did not start: ${output}`)), 10_000).unref()
    })
  }

  async stop(): Promise<void> {
    const child = this.#process
    if (!child || child.exitCode !== null) return
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve())
      child.kill('SIGKILL')
    })
    this.#process = undefined
  }

  /** Freezes the server (SIGSTOP): connections stay open, nothing answers. */
  freeze(): void {
    this.#process?.kill('SIGSTOP')
  }

  /** Lets a frozen server go on (SIGCONT). */
  thaw(): void {
    this.#process?.kill('SIGCONT')
  }
}

/** An {@link OwnRedis} that keeps its data across a restart (every write fsynced to its append-only file). */
export function persistentRedis(port: number): OwnRedis {
  const dir = mkdtempSync(join(tmpdir(), 'durable-agent-redis-'))
  return new OwnRedis(port, ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir])
}

/** A v3 model whose every call answers `text` (none: no text) and finishes with `stop`. */
export function answeringModel(text?: string): MockLanguageModelV3 {
  const usage = {
    inputTokens: { total: 2, noCache: 2, cacheRead: undefined, cacheWrite: undefined },
    outputTokens: { total: 1, text: 1, reasoning: undefined },
  }
  const textParts =
    text === undefined
      ? []
      : ([
          { type: 'text-start', id: 't' },
          { type: 'text-delta', id: 't', delta: text },
          { type: 'text-end', id: 't' },
        ] as const)
  return new MockLanguageModelV3({
    doStream: async () => ({
      stream: new ReadableStream({
        start(controller) {
          for (const part of [...textParts, { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage }] as const) controller.enqueue(part)
          controller.close()
        },
      }),
    }),
  })
}
