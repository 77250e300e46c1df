// YAML data files (CPU models, scenarios) at the I/O edge: parse with intAsBigInt (64-bit values,
// DESIGN.md conventions) and turn each schema error path into file:line:column, the field, and
// what was expected, the form compilers use so editors can jump to it.
import { readBoundedSync } from '../../bin/lib/read-bounded.js'
import { LineCounter, isMap, isPair, isScalar, parseDocument, visit, type Document } from 'yaml'
import { fieldPath } from '../../contract/format.js'

/**
 * A CPU model or scenario file is a few KB. The yaml package parses about 10k lines a second on
 * this project's machines, so 512 KiB bounds a load at a few seconds (issue 14 item 5).
 */
export const YAML_MAX_BYTES = 512 * 1024

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

/** At most this many alias expansions in a document (the yaml package's default): anchor bombs stop here. */
const MAX_ALIAS_COUNT = 100

/**
 * Duplicate keys, in linear time (issue 14 item 5: the yaml package's uniqueKeys check compares each
 * key with every earlier one, and 40k keys took 93 s). Returns the offset and key of the first one.
 */
function firstDuplicateKey(doc: Document): { offset: number; key: string } | undefined {
  let found: { offset: number; key: string } | undefined
  visit(doc, {
    Map(_k, map) {
      const seen = new Set<unknown>()
      for (const p of map.items) {
        const k = isScalar(p.key) ? p.key.value : p.key
        // Only scalar keys are compared (the data files use nothing else); a bigint key compares by value.
        const id = typeof k === 'bigint' ? `n:${k}` : typeof k === 'string' ? `s:${k}` : k
        if (seen.has(id)) {
          found = { offset: (isScalar(p.key) && p.key.range ? p.key.range[0] : map.range?.[0]) ?? 0, key: String(k) }
          return visit.BREAK
        }
        seen.add(id)
      }
      return undefined
    },
  })
  return found
}

/** Parse `text` (named `file` in errors) and check it with `check`. Never throws: every problem is file:line:column. */
export function parseYamlFile<T>(text: string, file: string, check: (doc: unknown) => DocCheck<T>): { ok: true; value: T } | { ok: false; errors: LocatedError[] } {
  const lineCounter = new LineCounter()
  const at = (offset: number, field: string, message: string): LocatedError => {
    const { line, col } = lineCounter.linePos(offset)
    return { file, line, column: col, field, message }
  }
  let doc: Document
  try {
    doc = parseDocument(text, { intAsBigInt: true, lineCounter, prettyErrors: false, uniqueKeys: false })
  } catch (e) {
    return { ok: false, errors: [at(0, '(document)', `YAML syntax: ${(e as Error).message.split('\n')[0]}`)] }
  }
  if (doc.errors.length > 0) return { ok: false, errors: doc.errors.map(e => at(e.pos[0], '(document)', `YAML syntax: ${e.message.split('\n')[0]}`)) }
  const dup = firstDuplicateKey(doc)
  if (dup) return { ok: false, errors: [at(dup.offset, '(document)', `YAML syntax: map keys must be unique (duplicate key ${JSON.stringify(dup.key.slice(0, 64))})`)] }
  let js: unknown
  try {
    js = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT })
  } catch (e) {
    // Undefined aliases and alias bombs throw from toJS: point at the first alias (issue 14 item 5).
    let offset = 0
    visit(doc, { Alias(_k, a) { offset = a.range?.[0] ?? 0; return visit.BREAK } })
    return { ok: false, errors: [at(offset, '(document)', `YAML aliases: ${(e as Error).message.split('\n')[0]} (at most ${MAX_ALIAS_COUNT} alias expansions; every alias needs an anchor defined before it)`)] }
  }
  let r: DocCheck<T>
  try { r = check(js) } catch (e) {
    return { ok: false, errors: [at(0, '(document)', `could not be checked: ${(e as Error).message.split('\n')[0]}`)] }
  }
  if (r.ok) return r
  return { ok: false, errors: r.errors.map(e => at(offsetOf(doc, e.path, e.atKey), fieldPath(e.path), e.message)) }
}

/** Bounded (YAML_MAX_BYTES), regular files only, with a deadline (issue 14 item 4: a YAML symlinked to /dev/zero reached 6.6 GB). */
export function readTextFile(path: string): { ok: true; text: string } | { ok: false; errors: LocatedError[] } {
  const r = readBoundedSync(path, { maxBytes: YAML_MAX_BYTES, what: 'YAML file' })
  if (r.ok) return r
  return { ok: false, errors: [{ file: path, line: 1, column: 1, field: '(file)', message: `cannot read: ${r.error}` }] }
}

/** Line and column of the node at `path` in a YAML text (or of its nearest existing ancestor). */
export function locatePath(text: string, path: DocPath): { line: number; column: number } {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { intAsBigInt: true, lineCounter, uniqueKeys: false })
  const { line, col } = lineCounter.linePos(offsetOf(doc, path))
  return { line, column: col }
}
