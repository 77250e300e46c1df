// `host check` from file contents: parse (untrusted), then check. Never throws (issue 3).
import { check, type CheckResult } from './check.js'
import { parseGuestReport, parseHostCaps, parseVmmState } from './parse.js'

export type CheckOutcome = { ok: true; result: CheckResult } | { ok: false; errors: string[] }

export function checkFromText(input: { report: string; state: string; hostCaps?: string }): CheckOutcome {
  try {
    const r = parseGuestReport(input.report)
    const s = parseVmmState(input.state)
    const h = input.hostCaps === undefined ? undefined : parseHostCaps(input.hostCaps)
    const errors = [...(r.ok ? [] : r.errors), ...(s.ok ? [] : s.errors), ...(h && !h.ok ? h.errors : [])]
    if (!r.ok || !s.ok || (h && !h.ok)) return { ok: false, errors }
    return { ok: true, result: check(r.value, s.value, h?.ok ? h.value.caps : undefined) }
  } catch (e) {
    // check() is pure over validated input; if it ever throws, that is a bug reported cleanly.
    return { ok: false, errors: [`internal error while checking: ${e instanceof Error ? e.message : String(e)}`] }
  }
}
