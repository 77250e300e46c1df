// Load scenario files (scenarios/cases/*.yaml, issue 6): the I/O edge for contract/scenario.ts.
// Parses YAML with intAsBigInt (DESIGN.md conventions) and turns each error path into
// file:line:column, the field, and what was expected.
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { scenarioFromDoc, type Scenario } from '../../contract/scenario.js'
import { fieldPath as fieldName } from '../../contract/format.js'
import { formatLocated, locatePath, parseYamlFile, readTextFile, type LocatedError } from './yaml-file.js'

export type ScenarioFileError = LocatedError
export type ScenarioFileResult = { ok: true; scenario: Scenario; file: string } | { ok: false; errors: ScenarioFileError[] }

export const formatScenarioError = formatLocated

export { fieldName }

/** Parse one scenario file's text; `file` names it in errors. */
export function parseScenario(text: string, file: string): ScenarioFileResult {
  const r = parseYamlFile(text, file, doc => {
    const x = scenarioFromDoc(doc)
    return x.ok ? { ok: true, value: x.scenario } : x
  })
  return r.ok ? { ok: true, scenario: r.value, file } : r
}

export function loadScenarioFile(path: string): ScenarioFileResult {
  const t = readTextFile(path)
  return t.ok ? parseScenario(t.text, path) : t
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
  const t = readTextFile(file)
  return t.ok ? locatePath(t.text, ['name']) : { line: 1, column: 1 }
}
