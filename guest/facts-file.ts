// Reading Facts files (--replay); loaded lazily because it needs zod. Errors name the file, the field and
// what was expected, and never carry a stack trace (issue 2).
import * as fs from 'node:fs'
import { factsFromJson } from '../contract/facts-json.js'
import { FactsJson } from '../contract/facts-schema.js'
import type { Facts } from '../contract/facts.js'
import { InputError } from '../bin/lib/cli.js'

const MAX_BYTES = 64 * 1024 * 1024

/** "cpus[0].cpuid.0x7.0.regs.edx" from a zod issue path. */
export const fieldPath = (path: readonly PropertyKey[]): string =>
  path.reduce<string>((s, k) => typeof k === 'number' ? `${s}[${k}]` : s ? `${s}.${String(k)}` : String(k), '') || '(top level)'

/** Line and column of a JSON.parse error position, for the message. */
function jsonPosition(text: string, err: Error): string {
  const m = /position (\d+)/.exec(err.message)
  if (!m) return ''
  const pos = Number(m[1])
  const before = text.slice(0, pos).split('\n')
  return ` at line ${before.length}, column ${before[before.length - 1]!.length + 1}`
}

export function readFactsFile(file: string): Facts {
  let text: string
  try {
    const st = fs.statSync(file)
    if (st.size > MAX_BYTES) throw new InputError(`${file}: ${st.size} bytes is larger than the ${MAX_BYTES}-byte limit for a facts file`)
    text = fs.readFileSync(file, 'utf8')
  } catch (e) {
    if (e instanceof InputError) throw e
    throw new InputError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  let doc: unknown
  try { doc = JSON.parse(text) } catch (e) {
    throw new InputError(`${file}: not valid JSON${jsonPosition(text, e as Error)}: ${(e as Error).message} (expected a virtmiti facts file written by --record)`)
  }
  const r = FactsJson.safeParse(doc)
  if (!r.success) {
    const lines = r.error.issues.slice(0, 8).map(i => `${file}: field ${fieldPath(i.path)}: ${i.message}`)
    if (r.error.issues.length > 8) lines.push(`${file}: ... and ${r.error.issues.length - 8} more problems`)
    throw new InputError(lines.join('\n'))
  }
  return factsFromJson(r.data)
}
