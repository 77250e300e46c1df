// Load VMM definitions (scenarios/vmms/*.yaml, issue 13) from disk: the I/O edge for
// contract/vmm-definition.ts. YAML parsing and error locations are host/runner/yaml-file.ts.
import { readdirSync } from 'node:fs'
import { basename, join } from 'node:path'
import { vmmDefinitionFromDoc, type VmmDefinition } from '../../contract/vmm-definition.js'
import { parseYamlFile, readTextFile, type LocatedError } from './yaml-file.js'

export type VmmFileResult = { ok: true; vmm: VmmDefinition } | { ok: false; errors: LocatedError[] }

/** Parse one definition's text; `file` names it in errors and its base name is the VMM id. */
export function parseVmm(text: string, file: string): VmmFileResult {
  const id = basename(file).replace(/\.ya?ml$/, '')
  const r = parseYamlFile(text, file, doc => vmmDefinitionFromDoc(doc, id))
  return r.ok ? { ok: true, vmm: r.value } : r
}

export function loadVmmFile(path: string): VmmFileResult {
  const t = readTextFile(path)
  return t.ok ? parseVmm(t.text, path) : t
}

export interface VmmCatalog { vmms: Map<string, VmmDefinition>; errors: LocatedError[] }

/** Every *.yaml in `dir`, sorted by id ("reference" before "reference-virtualized"). A bad file adds errors and is left out. */
export function loadVmmCatalog(dir: string): VmmCatalog {
  const vmms = new Map<string, VmmDefinition>()
  const errors: LocatedError[] = []
  let names: string[]
  try {
    names = readdirSync(dir).filter(n => /\.ya?ml$/.test(n)).sort((a, b) => a.replace(/\.ya?ml$/, '').localeCompare(b.replace(/\.ya?ml$/, '')))
  } catch (err) {
    return { vmms, errors: [{ file: dir, line: 1, column: 1, field: '(directory)', message: `cannot list: ${(err as Error).message}` }] }
  }
  for (const name of names) {
    const r = loadVmmFile(join(dir, name))
    if (r.ok) vmms.set(r.vmm.name, r.vmm)
    else errors.push(...r.errors)
  }
  return { vmms, errors }
}
