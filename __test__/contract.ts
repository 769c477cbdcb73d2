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
        expect(await cache.listFromTo('run', 0)).toStrictEqual([{ index: 0, type: 'a', data: { x: 1 } }, { index: 1 }, { index: 2, type: 'c' }])
        expect(await cache.get('run:counter')).toBe(3)
      }))

    it('1,000 concurrent listPushIndexed calls get indices 0..999 exactly once, stored in index order', () =>
      withCache(async (cache) => {
        const indices = await Promise.all(Array.from({ length: 1000 }, (_, i) => cache.listPushIndexed('hot', 'hot:counter', { i })))
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

    // Calls a caller makes without awaiting each must take effect in the
    // order they were made, at any number (issue 12: from about the 128th
    // call of one tick, the native Redis mode let later calls land first).
    describe('calls keep the order they were made in (10,000 unawaited calls of each kind)', () => {
      const N = 10_000
      const numbers = Array.from({ length: N }, (_, i) => i)

      it('set: the last call wins', () =>
        withCache(async (cache) => {
          await Promise.all(numbers.map((v) => cache.set('k', v)))
          expect(await cache.get('k')).toBe(N - 1)
        }))

      it('listPush: the list is in call order', () =>
        withCache(async (cache) => {
          await Promise.all(numbers.map((v) => cache.listPush('l', v)))
          expect(await cache.listFromTo('l', 0)).toEqual(numbers)
        }))

      it('listPushIndexed: indices follow call order', () =>
        withCache(async (cache) => {
          const indices = await Promise.all(numbers.map((i) => cache.listPushIndexed('p', 'p:counter', { i })))
          expect(indices).toEqual(numbers)
          const stored = (await cache.listFromTo('p', 0)) as { index: number; i: number }[]
          expect(stored.map((e) => e.i)).toEqual(numbers)
        }))

      it('increment: each call gets the next number', () =>
        withCache(async (cache) => {
          expect(await Promise.all(numbers.map(() => cache.increment('n')))).toEqual(numbers.map((i) => i + 1))
        }))

      it('set and delete interleaved: the last call decides, for every key', () =>
        withCache(async (cache) => {
          const calls: Promise<unknown>[] = []
          for (const i of numbers) {
            const key = `k${i % 10}`
            calls.push(i % 3 === 2 ? cache.delete(key) : cache.set(key, i))
          }
          await Promise.all(calls)
          for (let k = 0; k < 10; k++) {
            const last = N - 10 + k
            expect(await cache.get(`k${k}`), `k${k}`).toBe(last % 3 === 2 ? undefined : last)
          }
        }))

      it('reads see every write made before them', () =>
        withCache(async (cache) => {
          const reads: Promise<unknown>[] = []
          for (const i of numbers.slice(0, 2000)) {
            void cache.listPush('seen', i)
            void cache.set('latest', i)
            if (i % 100 === 99) {
              reads.push(cache.listLength('seen'), cache.get('latest'), cache.listFromTo('seen', -1))
            }
          }
          const got = await Promise.all(reads)
          for (let r = 0; r < got.length; r += 3) {
            const i = (r / 3) * 100 + 99
            expect(got[r], `listLength after push ${i}`).toBeGreaterThanOrEqual(i + 1)
            expect(got[r + 1], `get after set ${i}`).toBeGreaterThanOrEqual(i)
            expect((got[r + 2] as number[])[0], `last item after push ${i}`).toBeGreaterThanOrEqual(i)
          }
        }))

      it('clear: what was written before it is gone, what was written after it stays', () =>
        withCache(async (cache) => {
          const calls: Promise<unknown>[] = numbers.slice(0, 500).map((i) => cache.set(`before${i}`, i))
          calls.push(cache.clear())
          calls.push(...numbers.slice(0, 500).map((i) => cache.set(`after${i}`, i)))
          await Promise.all(calls)
          for (const i of [0, 1, 250, 499]) {
            expect(await cache.get(`before${i}`), `before${i}`).toBeUndefined()
            expect(await cache.get(`after${i}`), `after${i}`).toBe(i)
          }
        }))
    })

    // The same mistake gives the same code on every backend (issue 12).
    describe('errors a caller can cause carry the same code on every backend', () => {
      it('increment of a value that is not an integer: ERR_WRONG_TYPE, value kept', () =>
        withCache(async (cache) => {
          await cache.set('s', 'abc')
          await expect(cache.increment('s')).rejects.toMatchObject({ code: 'ERR_WRONG_TYPE' })
          await cache.set('f', 1.5)
          await expect(cache.increment('f')).rejects.toMatchObject({ code: 'ERR_WRONG_TYPE' })
          await cache.listPush('l', 1)
          await expect(cache.increment('l')).rejects.toMatchObject({ code: 'ERR_WRONG_TYPE' })
          expect(await cache.get('s')).toBe('abc')
          expect(await cache.get('l')).toEqual([1])
        }))

      it('increment past the largest 64-bit integer: ERR_INVALID_VALUE, value kept', () =>
        withCache(async (cache) => {
          // 807 below 2^63 - 1: of 810 increments, the last 3 overflow.
          await cache.set('max', 9223372036854775000)
          const outcomes = await Promise.allSettled(Array.from({ length: 810 }, () => cache.increment('max')))
          expect(outcomes.slice(0, 807).every((o) => o.status === 'fulfilled')).toBe(true)
          for (const outcome of outcomes.slice(807)) {
            expect(outcome).toMatchObject({ status: 'rejected', reason: { code: 'ERR_INVALID_VALUE' } })
          }
          expect(await cache.get('max')).toBe(9223372036854775807)
        }))

      it('list operations on a value: ERR_WRONG_TYPE', () =>
        withCache(async (cache) => {
          await cache.set('v', { a: 1 })
          await expect(cache.listPush('v', 1)).rejects.toMatchObject({ code: 'ERR_WRONG_TYPE' })
          await expect(cache.listLength('v')).rejects.toMatchObject({ code: 'ERR_WRONG_TYPE' })
          await expect(cache.listFromTo('v', 0)).rejects.toMatchObject({ code: 'ERR_WRONG_TYPE' })
          await expect(cache.listPushIndexed('v', 'v:counter', { x: 1 })).rejects.toMatchObject({
            code: 'ERR_WRONG_TYPE',
          })
          await cache.set('list:counter', 'text')
          await expect(cache.listPushIndexed('list', 'list:counter', { x: 1 })).rejects.toMatchObject({
            code: 'ERR_WRONG_TYPE',
          })
          expect(await cache.listLength('list')).toBe(0)
          expect(await cache.get('v')).toEqual({ a: 1 })
        }))

      it('listPushIndexed with one key for the list and its counter: ERR_INVALID_VALUE', () =>
        withCache(async (cache) => {
          await expect(cache.listPushIndexed('same', 'same', { x: 1 })).rejects.toMatchObject({ code: 'ERR_INVALID_VALUE' })
          expect(await cache.get('same')).toBeUndefined()
        }))
    })
  })
}
