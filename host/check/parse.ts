// Untrusted input parsing for `host check` (issue 3): size limit, JSON.parse in try, strict
// schema validation, errors naming the field path and what was expected. Never throws.
import { z } from 'zod'
import { parseGrowing } from '../../contract/evolution.js'
import { GuestReport, REPORT_MAX_BYTES } from '../../contract/report-json.js'
import { VMM_STATE_MAX_BYTES, VmmState } from '../../contract/vmm-state-json.js'
import { HostCapsJson } from '../../contract/host-caps.js'
import { fieldPath as pathString } from '../../contract/format.js'

export type Parsed<T> = { ok: true; value: T } | { ok: false; errors: string[] }

/** At most this many schema errors are listed (the rest are counted). */
const MAX_ERRORS = 20
const HOST_CAPS_MAX_BYTES = 64 * 1024

/** "cpus[3].outcome" from a zod path. */

export { pathString }

function formatIssues(what: string, issues: readonly z.core.$ZodIssue[]): string[] {
  const out = issues.slice(0, MAX_ERRORS).map(i => {
    const at = pathString(i.path)
    if (i.code === 'unrecognized_keys') return `${what}: ${at}: unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.slice(0, 5).map(k => JSON.stringify(k.slice(0, 64))).join(', ')} (not in the schema; unknown fields are rejected)`
    return `${what}: ${at}: ${i.message}`
  })
  if (issues.length > MAX_ERRORS) out.push(`${what}: ... and ${issues.length - MAX_ERRORS} more errors`)
  return out
}

function parseText<T>(what: string, text: string, maxBytes: number, schema: z.ZodType<T>): Parsed<T> {
  try {
    if (typeof text !== 'string') return { ok: false, errors: [`${what}: not text`] }
    // Cheap bound first (a UTF-16 unit is at most 3 UTF-8 bytes), exact count only when close.
    if (text.length > maxBytes || (text.length * 3 > maxBytes && Buffer.byteLength(text, 'utf8') > maxBytes)) {
      return { ok: false, errors: [`${what}: larger than the ${maxBytes}-byte limit`] }
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e)
      return { ok: false, errors: [`${what}: not valid JSON (${msg.slice(0, 200)})`] }
    }
    // A later v1 revision may add optional fields: read what this version knows, ignore the rest (contract/EVOLUTION.md).
    const r = parseGrowing(schema, json)
    if (!r.success) return { ok: false, errors: formatIssues(what, r.error.issues) }
    return { ok: true, value: r.data }
  } catch (e) {
    // Defence in depth: a validator bug must still give a clean error, never a crash.
    return { ok: false, errors: [`${what}: could not be validated (${e instanceof Error ? e.message.slice(0, 200) : 'unknown error'})`] }
  }
}

export const parseGuestReport = (text: string): Parsed<GuestReport> => parseText('guest report', text, REPORT_MAX_BYTES, GuestReport)
export const parseVmmState = (text: string): Parsed<VmmState> => parseText('VMM state', text, VMM_STATE_MAX_BYTES, VmmState)
export const parseHostCaps = (text: string): Parsed<HostCapsJson> => parseText('host caps', text, HOST_CAPS_MAX_BYTES, HostCapsJson)
