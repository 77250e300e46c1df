// Where the built-in catalog lives: found by walking up from this module until
// `scenarios/cases` exists, so it works from the sources (host/runner/) and from the bundle
// (dist/virtmiti.mjs) alike.
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export function packageRoot(from: string = import.meta.url): string | undefined {
  let dir = dirname(fileURLToPath(from))
  for (;;) {
    if (existsSync(join(dir, 'scenarios', 'cases'))) return dir
    const up = resolve(dir, '..')
    if (up === dir) return undefined
    dir = up
  }
}

export function builtinCasesDir(): string | undefined {
  const r = packageRoot()
  return r && join(r, 'scenarios', 'cases')
}

export function builtinCpusDir(): string | undefined {
  const r = packageRoot()
  return r && join(r, 'scenarios', 'cpus')
}

export function builtinVmmsDir(): string | undefined {
  const r = packageRoot()
  return r && join(r, 'scenarios', 'vmms')
}
