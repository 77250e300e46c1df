// Load the CPU model catalog (scenarios/cpus/*.yaml, issue 6) from disk. The I/O edge for
// contract/cpu-model-json.ts; YAML parsing and error locations are host/runner/yaml-file.ts.
import { readdirSync } from 'node:fs'
import { basename, join } from 'node:path'
import type { CpuModel } from '../../contract/cpu-model.js'
import { cpuModelFromDoc } from '../../contract/cpu-model-json.js'
import { formatLocated, parseYamlFile, readTextFile, type LocatedError } from './yaml-file.js'

/** file:line:column, the dotted field path ("sources.cpuid7_2_edx", "cpuid7_0_edx[2]", "(document)"), the message. */
export type CatalogError = LocatedError

export type CpuFileResult = { ok: true; model: CpuModel } | { ok: false; errors: CatalogError[] }

export const formatCatalogError = formatLocated

/** Parse one catalog file's text; `file` names it in errors and its base name is the model id. */
export function parseCpuModel(text: string, file: string): CpuFileResult {
  const id = basename(file).replace(/\.ya?ml$/, '')
  const r = parseYamlFile(text, file, doc => {
    const m = cpuModelFromDoc(doc, id)
    return m.ok ? { ok: true, value: m.model } : m
  })
  return r.ok ? { ok: true, model: r.value } : r
}

export function loadCpuFile(path: string): CpuFileResult {
  const t = readTextFile(path)
  return t.ok ? parseCpuModel(t.text, path) : t
}

export interface CpuCatalog {
  /** Models by id, in file-name order. */
  models: Map<string, CpuModel>
  errors: CatalogError[]
}

/** Every *.yaml in `dir`, sorted by name. A bad file adds errors and is left out; the rest still load. */
export function loadCpuCatalog(dir: string): CpuCatalog {
  const models = new Map<string, CpuModel>()
  const errors: CatalogError[] = []
  let names: string[]
  try {
    names = readdirSync(dir).filter(n => /\.ya?ml$/.test(n)).sort()
  } catch (err) {
    return { models, errors: [{ file: dir, line: 1, column: 1, field: '(directory)', message: `cannot list: ${(err as Error).message}` }] }
  }
  for (const name of names) {
    const r = loadCpuFile(join(dir, name))
    if (r.ok) models.set(r.model.id, r.model)
    else errors.push(...r.errors)
  }
  return { models, errors }
}
