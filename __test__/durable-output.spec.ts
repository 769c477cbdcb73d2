/**
 * `DurableOutput`'s reads when the run check fails on a store that is briefly
 * away (seen with Redis frozen mid-run): the read in flight is waited on
 * again, never replaced by a second read, which would take the next page
 * and lose this one's events (here: the run's end, so the output would wait
 * for ever).
 */
import { describe, expect, it } from 'vitest'

import { DurableOutput } from '../dist/agent/output.js'
import type { StreamPart } from '../dist/agent/types.js'
import type { TopicReader } from '../dist/topic-reader.js'
import { within } from './helpers.js'

const parts = [
  { type: 'start' },
  { type: 'text-start', id: 't' },
  { type: 'text-delta', id: 't', text: 'Back.' },
  { type: 'text-end', id: 't' },
  { type: 'finish', finishReason: 'stop', totalUsage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 } },
]
const page = parts.map((data, index) => ({ id: `e${index}`, type: 'chunk', runId: 'r', data, createdAt: 0, index }))

describe('DurableOutput over a store that is briefly away', () => {
  it('a run check that fails while a read is in flight keeps that read: its page, the run end, is not lost', async () => {
    let release!: (events: typeof page) => void
    const pending = new Promise<typeof page>((resolve) => (release = resolve))
    let reads = 0
    // The one read an output should make here; a second one finds nothing (the store has given the page out).
    const reader = {
      ready: () => null,
      next: () => (++reads === 1 ? pending : new Promise(() => {})),
      close: () => {},
    } as unknown as TopicReader
    let checks = 0
    const output = new DurableOutput<StreamPart>(reader, {
      runId: 'r',
      toChunk: (part) => part,
      endAtSuspension: () => true,
      checkRun: async () => {
        checks++
        // The page arrives while the check finds the store away.
        release(page)
        throw Object.assign(new Error('Redis did not answer in time'), { code: 'ERR_REDIS_TIMEOUT' })
      },
    })
    const full = await within(output.getFullOutput(), 10_000, 'the output to end')
    expect(full.outcome).toBe('finished')
    expect(full.text).toBe('Back.')
    expect(checks).toBe(1)
    expect(reads).toBe(1)
  })
})
