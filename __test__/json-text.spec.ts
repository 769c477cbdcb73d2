// The facade's JSON helpers, which stand in for built-ins on the hot path and
// must give exactly what the built-ins give.
import { describe, expect, it } from 'vitest'

import { isoString, toJson } from '../dist/json.js'

describe('isoString', () => {
  it('equals toISOString for dates in the same second, across seconds, and at the edges', () => {
    const base = Date.UTC(2026, 10, 28, 10, 51, 52)
    const times = [
      ...[0, 1, 9, 10, 99, 100, 500, 999].map((ms) => base + ms), // same second: the cached prefix
      base + 1000,
      base + 1005,
      base + 59_999,
      base + 60_000,
      base - 1, // neighbouring seconds
      0,
      -1,
      -999,
      -1000,
      -1001, // around the epoch, before it
      Date.UTC(10_000, 0, 1, 0, 0, 0, 7),
      Date.UTC(-1, 0, 1, 0, 0, 0, 42), // six-digit years
      8.64e15,
      -8.64e15, // the range's ends
    ]
    for (const time of [...times, ...times.reverse()]) {
      const date = new Date(time)
      expect(isoString(date)).toBe(date.toISOString())
    }
  })

  it('agrees with toISOString on random dates, in random order', () => {
    let seed = 12345
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
    const base = Date.UTC(2026, 0, 1)
    for (let i = 0; i < 20_000; i++) {
      // Mostly within a few seconds of each other, so the cache is hit and missed.
      const date = new Date(base + Math.floor(random() * 5_000) + (random() < 0.01 ? Math.floor(random() * 1e12) : 0))
      expect(isoString(date)).toBe(date.toISOString())
    }
  })

  it('throws RangeError for an invalid date, as toISOString does', () => {
    expect(() => isoString(new Date(Number.NaN))).toThrow(RangeError)
  })
})

describe('toJson', () => {
  it('writes exactly what JSON.stringify writes, Dates and all', () => {
    const when = new Date(Date.UTC(2026, 10, 28, 10, 51, 52, 868))
    const withOwnToJSON = { a: when, toJSON: () => 'mine' }
    class Stamp {
      constructor(readonly at: Date) {}
      toJSON() {
        return { stamped: this.at.getTime() }
      }
    }
    class LaterDate extends Date {}
    const customToJSON = new Date(when)
    customToJSON.toJSON = () => 'custom'
    const customISO = new Date(when)
    customISO.toISOString = () => 'iso'
    const hidden = Object.defineProperty({ a: when }, 'b', { value: when, enumerable: false })
    const values: unknown[] = [
      { id: 'e1', type: 'chunk', createdAt: when, data: { text: 'hi', at: when } },
      { createdAt: new Date(Number.NaN), n: 1 },
      { 2: when, 1: 'x', b: when, a: undefined, f: () => 1, [Symbol('s')]: when },
      { first: 1, second: when, third: [when, { when }], fourth: null },
      { customToJSON, customISO, later: new LaterDate(when) },
      withOwnToJSON,
      new Stamp(when),
      hidden,
      [when, { when }],
      when,
      { nested: { deep: when } },
      {},
      null,
      'text',
      42,
    ]
    for (const value of values) expect(toJson(value, 'value')).toBe(JSON.stringify(value))
  })

  it('leaves the value it was given untouched', () => {
    const when = new Date()
    const event = { createdAt: when, n: 1 }
    toJson(event, 'event')
    expect(event.createdAt).toBe(when)
  })
})
