import { describe, expect, it } from 'vitest'

// The generated loader: the debug hooks are not part of the public facade.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const native = require('../native.js') as {
  debugPanicSync(): void
  debugPanicAsync(): Promise<void>
}

describe('a Rust panic', () => {
  it('in a sync call surfaces as a JS Error and the process lives on', () => {
    expect(() => native.debugPanicSync()).toThrow(Error)
    expect(() => native.debugPanicSync()).toThrow(/deliberate panic/)
  })

  it('in an async call rejects with a JS Error and the process lives on', async () => {
    await expect(native.debugPanicAsync()).rejects.toBeInstanceOf(Error)
    // Still alive and answering.
    await expect(native.debugPanicAsync()).rejects.toBeInstanceOf(Error)
  })
})
