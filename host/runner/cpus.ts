// Load the CPU model catalog (scenarios/cpus/*.yaml, issue 6) from disk. The I/O edge for
// contract/cpu-model-json.ts: reads files, parses YAML with intAsBigInt (64-bit values,
// DESIGN.md conventions) and turns each error path into file:line:column.
import { readFileSync, readdirSync } from 'node:fs'
import { basename, join } from 'node:path'
import { LineCounter, isMap, isPair, isScalar, parseDocument, type Document } from 'yaml'
import type { CpuModel } from '../../contract/cpu-model.js'
import { cpuModelFromDoc, pathString, type DocPath } from '../../contract/cpu-model-json.js'

export interface CatalogError {
  file: string
  line: number
  column: number
  /** Dotted field path, e.g. "sources.cpuid7_2_edx" or "cpuid7_0_edx[2]"; "(document)" for the root. */
  field: string
  message: string
}

export type CpuFileResult = { ok: true; model: CpuModel } | { ok: false; errors: CatalogError[] }

/** "file:line:column: field: message" (the form compilers use, so editors can jump to it). */
export const formatCatalogError = (e: CatalogError): string => `${e.file}:${e.line}:${e.column}: ${e.field}: ${e.message}`

/** Offset of the node at `path`, or of the nearest existing ancestor; with `atKey`, of the last key itself. */
function offsetOf(doc: Document, path: DocPath, atKey = false): number {
  for (let n = atKey ? path.length - 1 : path.length; n >= 0; n--) {
    const parentPath = path.slice(0, n)
    const node = n === 0 ? doc.contents : doc.getIn(parentPath, true)
    if (n < path.length && isMap(node)) {
      // The child is missing or is a key the schema does not know: point at the key if present.
      const key = path[n]
      const pair = node.items.find(p => isPair(p) && isScalar(p.key) && p.key.value === key)
      if (pair && isScalar(pair.key) && pair.key.range) return pair.key.range[0]
    }
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range
    if (range) return range[0]
  }
  return 0
}

/** Parse one catalog file's text; `file` names it in errors and its base name is the model id. */
export function parseCpuModel(text: string, file: string): CpuFileResult {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { intAsBigInt: true, lineCounter, prettyErrors: false })
  const at = (offset: number, field: string, message: string): CatalogError => {
    const { line, col } = lineCounter.linePos(offset)
    return { file, line, column: col, field, message }
  }
  if (doc.errors.length > 0) {
    return { ok: false, errors: doc.errors.map(e => at(e.pos[0], '(document)', `YAML syntax: ${e.message.split('\n')[0]}`)) }
  }
  const id = basename(file).replace(/\.ya?ml$/, '')
  const r = cpuModelFromDoc(doc.toJS(), id)
  if (r.ok) return r
  return { ok: false, errors: r.errors.map(e => at(offsetOf(doc, e.path, e.atKey), pathString(e.path), e.message)) }
}

export function loadCpuFile(path: string): CpuFileResult {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    return { ok: false, errors: [{ file: path, line: 1, column: 1, field: '(file)', message: `cannot read: ${(err as Error).message}` }] }
  }
  return parseCpuModel(text, path)
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
