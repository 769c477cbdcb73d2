/**
 * The typings users compile against (`dist/index.d.ts`): `tsc --noEmit` over
 * a usage file (types/tools-usage.ts) with tools made by the AI SDK's
 * `tool()` (ai 6, and ai 5 as `ai5`), Mastra's `createTool` and plain tool
 * objects must pass, and its `@ts-expect-error` mistakes must still be
 * errors (an unused one fails the compile).
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

import { describe, expect, it } from 'vitest'

const root = join(__dirname, '..')

describe('typings', () => {
  it('take AI SDK (5, 6) and Mastra tools and plain tools without casts, and catch wrong tools', () => {
    const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '--noEmit', '-p', '__test__/types/tsconfig.json'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
    })
    expect(tsc.error).toBeUndefined()
    expect(tsc.stdout + tsc.stderr).toBe('')
    expect(tsc.status).toBe(0)
  }, 130_000)
})
