// Reading Facts files (--replay); loaded lazily because it needs zod. Errors name the file, the field and
// what was expected, and never carry a stack trace (issue 2).
import { factsFromJson } from '../contract/facts-json.js'
import { FactsJson } from '../contract/facts-schema.js'
import type { Facts } from '../contract/facts.js'
import { InputError } from '../bin/lib/cli.js'
import { readBounded } from '../bin/lib/read-bounded.js'
import { fieldPath } from '../contract/format.js'

const MAX_BYTES = 64 * 1024 * 1024

interface Issue { code?: string; path: readonly PropertyKey[]; message: string; errors?: Issue[][] }

/**
 * zod reports a failed union (a CPUID fact is {regs} or {fault}) as a bare "Invalid input" at the
 * union; descend into the branch the input was meant to be (fewest problems, then deepest path) so
 * the message names the nested field and what it expected (issue 2).
 */
function leafIssues(i: Issue, prefix: readonly PropertyKey[] = []): { path: PropertyKey[]; message: string }[] {
  const path = [...prefix, ...i.path]
  if (i.code !== 'invalid_union' || !i.errors || i.errors.length === 0) return [{ path, message: i.message }]
  const depth = (b: Issue[]) => Math.max(0, ...b.map(x => x.path.length))
  const best = [...i.errors].filter(b => b.length > 0).sort((a, b) => a.length - b.length || depth(b) - depth(a))[0]
  return best ? best.flatMap(x => leafIssues(x, path)) : [{ path, message: i.message }]
}

/** Line and column of a JSON.parse error position, for the message. */
function jsonPosition(text: string, err: Error): string {
  const m = /position (\d+)/.exec(err.message)
  if (!m) return ''
  const pos = Number(m[1])
  const before = text.slice(0, pos).split('\n')
  return ` at line ${before.length}, column ${before[before.length - 1]!.length + 1}`
}

export function readFactsFile(file: string): Facts {
  // Bounded, regular files only, with a deadline (issue 14 item 4: --replay /dev/zero grew to 8.5 GB).
  const text = readBounded(file, { maxBytes: MAX_BYTES, what: 'facts file' })
  let doc: unknown
  try { doc = JSON.parse(text) } catch (e) {
    throw new InputError(`${file}: not valid JSON${jsonPosition(text, e as Error)}: ${(e as Error).message} (expected a virtmiti facts file written by --record)`)
  }
  const r = FactsJson.safeParse(doc)
  if (!r.success) {
    const issues = r.error.issues.flatMap(i => leafIssues(i))
    const lines = issues.slice(0, 8).map(i => `${file}: field ${fieldPath(i.path)}: ${i.message}`)
    if (issues.length > 8) lines.push(`${file}: ... and ${issues.length - 8} more problems`)
    throw new InputError(lines.join('\n'))
  }
  return factsFromJson(r.data)
}
