// YAML data files (CPU models, scenarios) at the I/O edge: parse with intAsBigInt (64-bit values,
// DESIGN.md conventions) and turn each schema error path into file:line:column, the field, and
// what was expected, the form compilers use so editors can jump to it.
import { readFileSync } from 'node:fs'
import { LineCounter, isMap, isPair, isScalar, parseDocument, type Document } from 'yaml'
import { fieldPath } from '../../contract/format.js'

export interface LocatedError { file: string; line: number; column: number; field: string; message: string }
export type DocPath = (string | number)[]
/** What a pure schema check (contract/) returns for a parsed document. */
export type DocCheck<T> = { ok: true; value: T } | { ok: false; errors: { path: DocPath; message: string; atKey?: boolean }[] }

export const formatLocated = (e: LocatedError): string => `${e.file}:${e.line}:${e.column}: ${e.field}: ${e.message}`

/** Offset of the node at `path`, or of the nearest existing ancestor; with `atKey`, of the last key itself. */
function offsetOf(doc: Document, path: DocPath, atKey = false): number {
  for (let n = atKey ? path.length - 1 : path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)
    if (n < path.length && isMap(node)) {
      // The child is missing or is a key the schema does not know: point at the key if present.
      const pair = node.items.find(p => isPair(p) && isScalar(p.key) && p.key.value === path[n])
      if (pair && isScalar(pair.key) && pair.key.range) return pair.key.range[0]
    }
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range
    if (range) return range[0]
  }
  return 0
}

/** Parse `text` (named `file` in errors) and check it with `check`. */
export function parseYamlFile<T>(text: string, file: string, check: (doc: unknown) => DocCheck<T>): { ok: true; value: T } | { ok: false; errors: LocatedError[] } {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { intAsBigInt: true, lineCounter, prettyErrors: false, uniqueKeys: true })
  const at = (offset: number, field: string, message: string): LocatedError => {
    const { line, col } = lineCounter.linePos(offset)
    return { file, line, column: col, field, message }
  }
  if (doc.errors.length > 0) return { ok: false, errors: doc.errors.map(e => at(e.pos[0], '(document)', `YAML syntax: ${e.message.split('\n')[0]}`)) }
  const r = check(doc.toJS())
  if (r.ok) return r
  return { ok: false, errors: r.errors.map(e => at(offsetOf(doc, e.path, e.atKey), fieldPath(e.path), e.message)) }
}

/** A file's text, or the error saying why it could not be read. */
export function readTextFile(path: string): { ok: true; text: string } | { ok: false; errors: LocatedError[] } {
  try {
    return { ok: true, text: readFileSync(path, 'utf8') }
  } catch (err) {
    return { ok: false, errors: [{ file: path, line: 1, column: 1, field: '(file)', message: `cannot read: ${(err as Error).message}` }] }
  }
}

/** Line and column of the node at `path` in a YAML text (or of its nearest existing ancestor). */
export function locatePath(text: string, path: DocPath): { line: number; column: number } {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { intAsBigInt: true, lineCounter })
  const { line, col } = lineCounter.linePos(offsetOf(doc, path))
  return { line, column: col }
}
