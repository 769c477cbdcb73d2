// `prepack` (npm pack, npm publish): refuses to pack a main package whose
// package.json names no platform package at its own version. Such a tarball
// installs, then fails to load anywhere ("Cannot find native binding"): the
// addon is not in it but in the platform packages. `napi prepublish` names
// them (the release pipeline, docs/release.md), and so does
// `npm run pack:all`, which packs this checkout for the platforms built here.
import { readFileSync } from 'node:fs'

const { name, version, optionalDependencies = {} } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
const platforms = Object.keys(optionalDependencies).filter((dep) => dep.startsWith(`${name}-`) && optionalDependencies[dep] === version)
if (platforms.length === 0) {
  console.error(
    `${name}: package.json names no platform package at ${version} in optionalDependencies, so this tarball would load nowhere.\n` +
      'Pack with `npm run pack:all -- <folder>` (the main and platform tarballs for the platforms built here),\n' +
      'or publish through the release pipeline (docs/release.md), whose `napi prepublish` names the platform packages.',
  )
  process.exit(1)
}
