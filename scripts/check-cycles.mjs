// `npm run lint` step: no import cycle among source files, in TS or Rust
// (type-only imports included).
//
// TS: dpdm over ts/ (it follows `import type` too).
// Rust: the crate's module files as a graph, an edge from a file to each
// module file its paths name (`crate::a::b`, `super::x`, `self::x`, and `x::`
// for its child module `x`); any cycle fails. A path is resolved to the
// deepest module file it names, so `crate::cache::runs::Commit` is an edge to
// cache/runs.rs. A module's use of its own submodules is containment, not an
// import (a parent is made of its children and re-exports them): no edge.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'

const root = join(dirname(new URL(import.meta.url).pathname), '..')
let failed = false

const ts = spawnSync('npx', ['dpdm', '--no-warning', '--no-tree', '--exit-code', 'circular:1', 'ts/**/*.ts'], { cwd: root, encoding: 'utf8' })
if (ts.status !== 0) {
  process.stdout.write(ts.stdout + ts.stderr)
  failed = true
} else console.log('TS: no import cycle (dpdm, type imports included)')

/** Every .rs file below `dir`. */
function rustFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? rustFiles(path) : name.endsWith('.rs') ? [path] : []
  })
}

/** The module path (['cache', 'redis']) of a file of the crate rooted at `src`. */
function modulePath(src, file) {
  const parts = relative(src, file).replace(/\.rs$/, '').split('/')
  if (parts.at(-1) === 'mod' || parts.at(-1) === 'lib') parts.pop()
  return parts
}

function checkCrate(src) {
  const files = rustFiles(src)
  const byModule = new Map(files.map((file) => [modulePath(src, file).join('::'), file]))
  /** The file of the deepest module that `path` (module segments) names. */
  const fileOf = (path) => {
    for (let n = path.length; n >= 0; n--) {
      const file = byModule.get(path.slice(0, n).join('::'))
      if (file) return file
    }
  }
  const edges = new Map()
  for (const file of files) {
    const here = modulePath(src, file)
    const text = readFileSync(file, 'utf8')
      // A file's unit tests (`#[cfg(test)] mod tests`, at its end) are the
      // file itself: their `super` is the file.
      .replace(/#\[cfg\(test\)\]\s*mod tests\b[\s\S]*$/, '')
      // Comments and strings name modules without using them.
      .replace(/\/\/.*$/gm, '')
      .replace(/r#"[\s\S]*?"#/g, '""')
      .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    const targets = new Set()
    const add = (path) => {
      const target = fileOf(path)
      if (!target || target === file) return
      const within = modulePath(src, target)
      if (within.length > here.length && here.every((seg, i) => within[i] === seg)) return
      targets.add(target)
    }
    // use trees: `use crate::a::{b, c::d}` -> a::b, a::c::d
    for (const [, tree] of text.matchAll(/\buse\s+([^;]+);/g)) {
      for (const path of expand(tree.replace(/\s+/g, ''))) resolve(path)
    }
    // inline paths: crate::a::b, super::x::y, self::x
    for (const [path] of text.matchAll(/\b(?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+/g)) resolve(path)
    function resolve(path) {
      const segs = path.split('::').filter((s) => s !== '' && s !== '*')
      let base
      if (segs[0] === 'crate') base = []
      else if (segs[0] === 'super') base = here.slice(0, -1)
      else if (segs[0] === 'self') base = here
      // A bare first segment is a child module of this one, or another crate.
      else if (byModule.has([...here, segs[0]].join('::'))) return add([...here, ...segs])
      else return
      let rest = segs.slice(1)
      while (rest[0] === 'super') {
        base = base.slice(0, -1)
        rest = rest.slice(1)
      }
      add([...base, ...rest])
    }
    edges.set(file, targets)
  }
  // Cycles: depth-first search for a back edge.
  const cycles = []
  const state = new Map()
  const stack = []
  const visit = (file) => {
    state.set(file, 'open')
    stack.push(file)
    for (const next of edges.get(file) ?? []) {
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next])
      else if (!state.has(next)) visit(next)
    }
    stack.pop()
    state.set(file, 'done')
  }
  for (const file of files) if (!state.has(file)) visit(file)
  return cycles.map((cycle) => cycle.map((f) => relative(root, f)).join(' -> '))
}

/** The paths of a `use` tree: `a::{b,c::{d,e}}` -> a::b, a::c::d, a::c::e. */
function expand(tree) {
  const open = tree.indexOf('{')
  if (open < 0) return [tree.replace(/\bas\b.*$/, '')]
  const head = tree.slice(0, open)
  const body = tree.slice(open + 1, tree.lastIndexOf('}'))
  const parts = []
  let depth = 0
  let start = 0
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '{') depth++
    else if (body[i] === '}') depth--
    else if (body[i] === ',' && depth === 0) {
      parts.push(body.slice(start, i))
      start = i + 1
    }
  }
  parts.push(body.slice(start))
  return parts.filter(Boolean).flatMap((part) => expand(head + part))
}

for (const src of ['crates/core/src', 'src']) {
  if (!existsSync(join(root, src))) continue
  const cycles = checkCrate(join(root, src))
  if (cycles.length > 0) {
    console.log(`Rust (${src}): import cycles:\n  ${cycles.join('\n  ')}`)
    failed = true
  } else console.log(`Rust (${src}): no import cycle among its files`)
}
process.exit(failed ? 1 : 0)
