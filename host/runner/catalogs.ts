// The id catalogs a scenario run resolves against (issue 13): CPU models and VMM definitions,
// each the built-in directory (scenarios/cpus, scenarios/vmms) plus the directories given with
// --cpus / --vmms, in that order. Explicit only: nothing is picked up from beside a cases
// directory. A given directory that replaces a built-in id is an error unless allowShadow.
import { resolve } from 'node:path'
import type { CpuModel } from '../../contract/cpu-model.js'
import type { VmmDefinition } from '../../contract/vmm-definition.js'
import { builtinCpusDir, builtinVmmsDir } from './catalog.js'
import { loadCpuCatalog } from './cpus.js'
import { loadVmmCatalog } from './vmms.js'
import { formatLocated, type LocatedError } from './yaml-file.js'
import { statSync } from 'node:fs'

export interface Catalogs {
  cpus: Map<string, CpuModel>
  vmms: Map<string, VmmDefinition>
  /** The directories searched, built-in first. */
  dirs: { cpus: string[]; vmms: string[] }
  errors: string[]
}

function merge<T>(kind: string, flag: string, builtin: string | undefined, extra: readonly string[], load: (d: string) => { items: Map<string, T>; errors: LocatedError[] }, allowShadow: boolean, errors: string[]): { items: Map<string, T>; dirs: string[] } {
  const items = new Map<string, T>()
  const from = new Map<string, string>()
  const dirs: string[] = []
  const sources = [...(builtin ? [{ dir: builtin, given: false }] : []), ...extra.map(d => ({ dir: resolve(d), given: true }))]
  for (const { dir, given } of sources) {
    if (given) {
      let isDir = false
      try { isDir = statSync(dir).isDirectory() } catch (err) { errors.push(`${flag} ${dir}: cannot read: ${(err as Error).message}`); continue }
      if (!isDir) { errors.push(`${flag} ${dir}: expected a directory of ${kind} files (<id>.yaml), got a file`); continue }
    }
    dirs.push(dir)
    const c = load(dir)
    errors.push(...c.errors.map(formatLocated))
    for (const [id, v] of c.items) {
      const prev = from.get(id)
      if (prev !== undefined && !allowShadow) {
        errors.push(`${flag} ${dir}: ${kind} "${id}" is already defined by ${prev}; rename it, or pass --allow-shadow to replace it`)
        continue
      }
      items.set(id, v)
      from.set(id, dir)
    }
  }
  return { items, dirs }
}

export function loadCatalogs(o: { cpus: readonly string[]; vmms: readonly string[]; allowShadow: boolean }): Catalogs {
  const errors: string[] = []
  const c = merge('CPU model', '--cpus', builtinCpusDir(), o.cpus, d => { const x = loadCpuCatalog(d); return { items: x.models, errors: x.errors } }, o.allowShadow, errors)
  const v = merge('VMM definition', '--vmms', builtinVmmsDir(), o.vmms, d => { const x = loadVmmCatalog(d); return { items: x.vmms, errors: x.errors } }, o.allowShadow, errors)
  return { cpus: c.items, vmms: v.items, dirs: { cpus: c.dirs, vmms: v.dirs }, errors }
}
