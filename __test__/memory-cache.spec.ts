import { describe, expect, it } from 'vitest'

import { InMemoryServerCache } from '../dist/index.js'
import { cacheContract } from './contract.js'
import { eventually } from './helpers.js'

cacheContract('InMemoryServerCache', async () => ({ cache: new InMemoryServerCache(), done: async () => {} }))

describe('InMemoryServerCache: TTL and size', () => {
  it('expires values and lists after ttlMs', async () => {
    const cache = new InMemoryServerCache({ ttlMs: 50 })
    await cache.set('v', 1)
    await cache.listPush('l', 1)
    expect(await cache.get('v')).toBe(1)
    await eventually(async () => (await cache.get('v')) === undefined && (await cache.listLength('l')) === 0)
    expect(await cache.listFromTo('l', 0)).toEqual([])
  })

  it('a push refreshes the list TTL; untouched keys still expire', async () => {
    const cache = new InMemoryServerCache({ ttlMs: 150 })
    await cache.set('untouched', 1)
    await cache.listPush('l', 0)
    const start = Date.now()
    let pushes = 1
    // Push every 30 ms for well past the TTL; the list must survive all of it.
    await eventually(
      async () => {
        await cache.listPush('l', pushes++)
        return (await cache.get('untouched')) === undefined && Date.now() - start > 300
      },
      5_000,
      'the untouched key to expire while pushing',
    )
    expect(await cache.listLength('l')).toBe(pushes)
  })

  it('set(key, value, ttlMs) overrides the default TTL, 0 meaning never', async () => {
    const cache = new InMemoryServerCache({ ttlMs: 60_000 })
    await cache.set('short', 1, 30)
    await cache.set('forever', 1, 0)
    const noTtl = new InMemoryServerCache({ ttlMs: 0 })
    await noTtl.set('k', 1)
    await eventually(async () => (await cache.get('short')) === undefined)
    expect(await cache.get('forever')).toBe(1)
    expect(await noTtl.get('k')).toBe(1)
  })

  it('maxSize evicts the least recently used key', async () => {
    const cache = new InMemoryServerCache({ maxSize: 3 })
    await cache.set('key1', 1)
    await cache.set('key2', 2)
    await cache.set('key3', 3)
    await cache.set('key4', 4)
    expect(await cache.get('key1')).toBeUndefined()
    expect(await cache.get('key4')).toBe(4)
  })

  it('maxSize keeps working with ttlMs 0 (where Mastra hangs) and stays bounded', async () => {
    const cache = new InMemoryServerCache({ ttlMs: 0, maxSize: 10 })
    for (let i = 0; i < 5_000; i++) await cache.listPush(`list${i}`, i)
    expect(await cache.listFromTo('list4999', 0)).toEqual([4999])
    let present = 0
    for (let i = 0; i < 5_000; i++) if ((await cache.listLength(`list${i}`)) > 0) present++
    expect(present).toBe(10)
  })
})

describe('InMemoryServerCache: options', () => {
  it.each([
    [{ ttlMs: -1 }, 'ttlMs'],
    [{ ttlMs: Number.NaN }, 'ttlMs'],
    [{ ttlMs: Infinity }, 'ttlMs'],
    [{ ttlMs: '100' }, 'ttlMs'],
    [{ maxSize: 1.5 }, 'maxSize'],
    [{ maxSize: 0 }, 'maxSize'],
    [{ maxSize: -3 }, 'maxSize'],
    [{ maxSize: Number.NaN }, 'maxSize'],
  ])('rejects %o naming the option', (options, name) => {
    expect(() => new InMemoryServerCache(options as never)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining(`\`${name}\``) }),
    )
  })

  it('rejects a negative or NaN per-key ttlMs and stores nothing', async () => {
    const cache = new InMemoryServerCache()
    await expect(cache.set('k', 1, -5)).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' })
    await expect(cache.set('k', 1, Number.NaN)).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' })
    expect(await cache.get('k')).toBeUndefined()
  })
})
