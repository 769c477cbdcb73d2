import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

import { ErrorCodes } from '../dist/index.js'

const root = join(__dirname, '..')

/** Every `ERR_...` string literal in the Rust sources under `dir`. */
function rustCodes(dir: string): Set<string> {
  const codes = new Set<string>()
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) {
      for (const code of rustCodes(path)) codes.add(code)
    } else if (name.endsWith('.rs')) {
      for (const match of readFileSync(path, 'utf8').matchAll(/"(ERR_[A-Z_]+)"/g)) codes.add(match[1]!)
    }
  }
  return codes
}

describe('error codes', () => {
  const exported = new Set<string>(Object.values(ErrorCodes))

  it('the README documents exactly the codes ErrorCodes exports', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8')
    const documented = new Set([...readme.matchAll(/^\| `(ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]!))
    expect([...documented].sort()).toEqual([...exported].sort())
  })

  it('every code the native layer sends is exported', () => {
    const native = new Set([...rustCodes(join(root, 'crates/core/src')), ...rustCodes(join(root, 'src'))])
    expect([...native].filter((code) => !exported.has(code))).toEqual([])
  })
})
