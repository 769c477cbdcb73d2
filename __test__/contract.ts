import { describe, expect, it } from 'vitest'

import type { ServerCache } from '../dist/index.js'

/**
 * The `MastraServerCache` contract, run against every cache and mode. Each
 * test gets a fresh cache from `make` (with keys no other test sees).
 */
export function cacheContract(name: string, make: () => Promise<{ cache: ServerCache; done: () => Promise<void> }>) {
  describe(`${name}: MastraServerCache contract`, () => {
    async function withCache(body: (cache: ServerCache) => Promise<void>) {
      const { cache, done } = await make()
      try {
        await body(cache)
      } finally {
        await done()
      }
    }

    it('round-trips every kind of JSON value exactly', () =>
      withCache(async (cache) => {
        const values: unknown[] = [
          { a: 1, nested: { list: [1, 'two', null, true, 2.5e-8], empty: {} }, s: 'üñï €' },
          [1, [2, [3]]],
          'a string',
          0,
          -12.75,
          Number.MAX_SAFE_INTEGER,
          true,
          false,
          null,
          {},
          [],
        ]
        for (const [i, value] of values.entries()) {
          await cache.set(`k${i}`, value)
          expect(await cache.get(`k${i}`)).toStrictEqual(value)
        }
        expect(await cache.get('missing')).toBeUndefined()
      }))

    it('deletes one key and clears all', () =>
      withCache(async (cache) => {
        await cache.set('a', 1)
        await cache.set('b', 2)
        await cache.listPush('l', 'x')
        await cache.delete('a')
        expect(await cache.get('a')).toBeUndefined()
        expect(await cache.get('b')).toBe(2)
        await cache.clear()
        expect(await cache.get('b')).toBeUndefined()
        expect(await cache.listLength('l')).toBe(0)
      }))

    it('pushes, counts and ranges lists like LRANGE, negative indices included', () =>
      withCache(async (cache) => {
        for (const v of ['a', 'b', 'c', 'd', 'e']) await cache.listPush('l', v)
        expect(await cache.listLength('l')).toBe(5)
        expect(await cache.listFromTo('l', 0)).toEqual(['a', 'b', 'c', 'd', 'e'])
        expect(await cache.listFromTo('l', 1, 2)).toEqual(['b', 'c'])
        expect(await cache.listFromTo('l', -2, -1)).toEqual(['d', 'e'])
        expect(await cache.listFromTo('l', -3)).toEqual(['c', 'd', 'e'])
        expect(await cache.listFromTo('l', 0, -2)).toEqual(['a', 'b', 'c', 'd'])
        expect(await cache.listFromTo('l', -100, 1)).toEqual(['a', 'b'])
        expect(await cache.listFromTo('l', 3, 100)).toEqual(['d', 'e'])
        expect(await cache.listFromTo('l', 4, 2)).toEqual([])
        expect(await cache.listFromTo('l', 5)).toEqual([])
        expect(await cache.listFromTo('missing', 0)).toEqual([])
        expect(await cache.listLength('missing')).toBe(0)
        expect(await cache.get('l')).toEqual(['a', 'b', 'c', 'd', 'e'])
      }))

    it('increments from 1', () =>
      withCache(async (cache) => {
        expect(await cache.increment('n')).toBe(1)
        expect(await cache.increment('n')).toBe(2)
        expect(await cache.increment('n')).toBe(3)
        expect(await cache.get('n')).toBe(3)
      }))

    it('listPushIndexed stores the value with its 0-based index and returns it', () =>
      withCache(async (cache) => {
        expect(await cache.listPushIndexed('run', 'run:counter', { type: 'a', data: { x: 1 } })).toBe(0)
        expect(await cache.listPushIndexed('run', 'run:counter', {})).toBe(1)
        // A caller's own `index` is replaced, never duplicated.
        expect(await cache.listPushIndexed('run', 'run:counter', { index: 99, type: 'c' })).toBe(2)
        expect(await cache.listFromTo('run', 0)).toStrictEqual([
          { index: 0, type: 'a', data: { x: 1 } },
          { index: 1 },
          { index: 2, type: 'c' },
        ])
        expect(await cache.get('run:counter')).toBe(3)
      }))

    it('1,000 concurrent listPushIndexed calls get indices 0..999 exactly once, stored in index order', () =>
      withCache(async (cache) => {
        const indices = await Promise.all(
          Array.from({ length: 1000 }, (_, i) => cache.listPushIndexed('hot', 'hot:counter', { i })),
        )
        expect([...indices].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
        const stored = (await cache.listFromTo('hot', 0)) as { index: number; i: number }[]
        expect(stored.map((e) => e.index)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
        // Each call's value landed at the index that call was given.
        for (const [call, index] of indices.entries()) expect(stored[index]!.i).toBe(call)
      }))

    it('rejects a value JSON cannot represent with ERR_NOT_JSON and stores nothing', () =>
      withCache(async (cache) => {
        const circular: Record<string, unknown> = {}
        circular.self = circular
        const bad: [string, unknown][] = [
          ['bigint', 10n],
          ['nested bigint', { n: 1n }],
          ['circular', circular],
          ['function', () => 1],
          ['symbol', Symbol('s')],
          ['undefined', undefined],
        ]
        for (const [what, value] of bad) {
          for (const call of [
            () => cache.set('bad', value),
            () => cache.listPush('badlist', value),
            () => cache.listPushIndexed('badrun', 'badrun:counter', value as Record<string, unknown>),
          ]) {
            const error = await call().then(
              () => undefined,
              (e: unknown) => e,
            )
            expect(error, what).toBeInstanceOf(TypeError)
            expect((error as { code?: string }).code, what).toBe('ERR_NOT_JSON')
          }
        }
        expect(await cache.get('bad')).toBeUndefined()
        expect(await cache.listLength('badlist')).toBe(0)
        expect(await cache.listLength('badrun')).toBe(0)
        expect(await cache.get('badrun:counter')).toBeUndefined()
      }))

    it('rejects non-object listPushIndexed values and wrong key types with codes, storing nothing', () =>
      withCache(async (cache) => {
        for (const value of [[1, 2], 'text', 5, null]) {
          await expect(cache.listPushIndexed('r', 'r:counter', value as never)).rejects.toMatchObject({
            code: 'ERR_INVALID_VALUE',
          })
        }
        expect(await cache.listLength('r')).toBe(0)
        expect(await cache.get('r:counter')).toBeUndefined()
        await expect(cache.get(42 as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
        await expect(cache.listFromTo('r', 0.5)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
      }))

    it('reports a push onto a non-list key as ERR_WRONG_TYPE and keeps the value', () =>
      withCache(async (cache) => {
        await cache.set('v', { keep: true })
        await expect(cache.listPush('v', 1)).rejects.toMatchObject({ code: 'ERR_WRONG_TYPE' })
        await expect(cache.listLength('v')).rejects.toMatchObject({ code: 'ERR_WRONG_TYPE' })
        expect(await cache.get('v')).toEqual({ keep: true })
      }))
  })
}
