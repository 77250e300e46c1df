// Load scenario files (scenarios/cases/*.yaml, issue 6): the I/O edge for contract/scenario.ts.
// Parses YAML with intAsBigInt (DESIGN.md conventions) and turns each error path into
// file:line:column, the field, and what was expected.
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, type Document } from 'yaml'
import { scenarioFromDoc, type DocPath, type Scenario } from '../../contract/scenario.js'
import { fieldPath as fieldName } from '../../contract/format.js'

export interface ScenarioFileError { file: string; line: number; column: number; field: string; message: string }
export type ScenarioFileResult = { ok: true; scenario: Scenario; file: string } | { ok: false; errors: ScenarioFileError[] }

export const formatScenarioError = (e: ScenarioFileError): string => `${e.file}:${e.line}:${e.column}: ${e.field}: ${e.message}`


export { fieldName }

/** Offset of the node at `path`, or of the nearest existing ancestor (pointing at the key when the value is missing). */
function offsetOf(doc: Document, path: DocPath): number {
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range
    if (range) return range[0]
    // Missing child: point at its key in the parent map, if any.
    if (n > 0) {
      const parent = n === 1 ? doc.contents : doc.getIn(path.slice(0, n - 1), true)
      if (isMap(parent)) {
        const pair = parent.items.find(p => isPair(p) && isScalar(p.key) && p.key.value === path[n - 1])
        if (pair && isScalar(pair.key) && pair.key.range) return pair.key.range[0]
      }
      if (isSeq(parent) && typeof path[n - 1] === 'number') continue
    }
  }
  return 0
}

/** Parse one scenario file's text; `file` names it in errors. */
export function parseScenario(text: string, file: string): ScenarioFileResult {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { intAsBigInt: true, lineCounter, prettyErrors: false, uniqueKeys: true })
  const at = (offset: number, field: string, message: string): ScenarioFileError => {
    const { line, col } = lineCounter.linePos(offset)
    return { file, line, column: col, field, message }
  }
  if (doc.errors.length > 0) return { ok: false, errors: doc.errors.map(e => at(e.pos[0], '(document)', `YAML syntax: ${e.message.split('\n')[0]}`)) }
  const r = scenarioFromDoc(doc.toJS())
  if (r.ok) return { ok: true, scenario: r.scenario, file }
  return { ok: false, errors: r.errors.map(e => at(offsetOf(doc, e.path), fieldName(e.path), e.message)) }
}

export function loadScenarioFile(path: string): ScenarioFileResult {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    return { ok: false, errors: [{ file: path, line: 1, column: 1, field: '(file)', message: `cannot read: ${(err as Error).message}` }] }
  }
  return parseScenario(text, path)
}

export interface LoadedScenarios {
  scenarios: { scenario: Scenario; file: string }[]
  errors: ScenarioFileError[]
}

/**
 * Every *.yaml of each directory (sorted by name) and each file given. A bad file adds errors and
 * is left out. Names must be unique across everything loaded (they name TAP subtests).
 */
export function loadScenarios(paths: readonly string[]): LoadedScenarios {
  const out: LoadedScenarios = { scenarios: [], errors: [] }
  const files: string[] = []
  for (const p of paths) {
    let isDir = false
    try { isDir = statSync(p).isDirectory() } catch (err) {
      out.errors.push({ file: p, line: 1, column: 1, field: '(file)', message: `cannot read: ${(err as Error).message}` })
      continue
    }
    if (isDir) files.push(...readdirSync(p).filter(n => /\.ya?ml$/.test(n)).sort().map(n => join(p, n)))
    else files.push(p)
  }
  const seen = new Map<string, string>()
  for (const f of files) {
    const r = loadScenarioFile(f)
    if (!r.ok) { out.errors.push(...r.errors); continue }
    const prev = seen.get(r.scenario.name)
    if (prev !== undefined) {
      const again = parseScenarioNameOffset(f)
      out.errors.push({ file: f, line: again.line, column: again.column, field: 'name', message: `expected a unique scenario name: "${r.scenario.name}" is also used by ${prev}` })
      continue
    }
    seen.set(r.scenario.name, f)
    out.scenarios.push({ scenario: r.scenario, file: f })
  }
  return out
}

function parseScenarioNameOffset(file: string): { line: number; column: number } {
  const lc = new LineCounter()
  const doc = parseDocument(readFileSync(file, 'utf8'), { intAsBigInt: true, lineCounter: lc })
  const { line, col } = lc.linePos(offsetOf(doc, ['name']))
  return { line, column: col }
}
