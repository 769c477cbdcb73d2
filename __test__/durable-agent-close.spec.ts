/**
 * `close()` on a cache while a durable run is driven in this process (issue
 * 12): the model's signal aborts, the run stays at its last checkpoint with
 * its lease given up (so another process recovers it at once, not a lease
 * later), the output ends with ERR_CACHE_CLOSED, and Node exits at once.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'

import { describe, expect, it } from 'vitest'

import { createDurableAgent, RedisServerCache } from '../dist/index.js'
import { answeringModel, REDIS_URL, uniquePrefix, within } from './helpers.js'

/** Answers "Recovered." (what the process that recovers the run uses). */
const answering = () => answeringModel('Recovered.')

describe('closing a cache while this process drives a run on it', () => {
  it('aborts the model call, gives the lease up at once, ends the output with ERR_CACHE_CLOSED, and Node exits by itself', async () => {
    const keyPrefix = uniquePrefix('close')
    const fixture = join(__dirname, 'fixtures', 'agent-close.mjs')
    const child = spawn(process.execPath, [fixture, REDIS_URL, keyPrefix], { stdio: ['ignore', 'pipe', 'pipe'] })
    const lines: Record<string, unknown>[] = []
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>)
    })
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    // Before: the process lingered about 8 s after close(); it must end by itself, well within this bound.
    const exit = await within(
      new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code))),
      5_000,
      'the process to exit by itself after close()',
    )
    expect(exit, stderr).toBe(0)
    expect(lines.map((l) => l.event)).toEqual(['started', 'model-aborted', 'closed'])
    expect(lines[2]).toMatchObject({ activeRuns: 0, outcome: 'failed', code: 'ERR_CACHE_CLOSED' })
    expect(lines[2]!.message).toMatch(/cache was closed.*recover/)

    // Another process sees the run not driven (its 60 s lease was given up,
    // not left to lapse) and finishes it.
    const cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix })
    try {
      const agent = createDurableAgent({ agent: { id: 'closing', model: answering() }, cache, leaseMs: 60_000 })
      const runId = lines[0]!.runId as string
      expect((await agent.listActiveRuns()).runs).toEqual([expect.objectContaining({ runId, driven: false })])
      const recovered = await agent.recover(runId)
      expect(await within(recovered.output.text, 10_000, 'the recovered run')).toBe('Recovered.')
    } finally {
      await cache.clear()
      await cache.close()
    }
  }, 30_000)
})
