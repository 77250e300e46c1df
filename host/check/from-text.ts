// `host check` from file contents: parse (untrusted), then check. Never throws (issue 3).
import { check, type CheckResult } from './check.js'
import { withEvidence, type Evidence } from './evidence.js'
import { parseGuestReport, parseHostCaps, parseVmmState } from './parse.js'
import { parseSelftestTap } from './selftest-tap.js'

export type CheckOutcome = { ok: true; result: CheckResult } | { ok: false; errors: string[] }

export interface CheckTexts {
  report: string
  state: string
  hostCaps?: string
  /** The guest selftest's TAP output (`--selftest FILE`). */
  selftest?: string
  /** A VMM state taken after a vCPU reset (`--after-reset FILE`), and the declared reset CTRL. */
  afterReset?: string
  resetCtrl?: bigint
}

export function checkFromText(input: CheckTexts): CheckOutcome {
  try {
    const r = parseGuestReport(input.report)
    const s = parseVmmState(input.state)
    const h = input.hostCaps === undefined ? undefined : parseHostCaps(input.hostCaps)
    const st = input.selftest === undefined ? undefined : parseSelftestTap(input.selftest)
    const ar = input.afterReset === undefined ? undefined : parseVmmState(input.afterReset)
    const errors = [r, s, h, st].flatMap(x => (x && !x.ok ? x.errors : []))
    if (ar && !ar.ok) errors.push(...ar.errors.map(e => `after-reset ${e}`))
    if (errors.length || !r.ok || !s.ok) return { ok: false, errors }
    const caps = h?.ok ? h.value.caps : undefined
    const result = check(r.value, s.value, caps)
    const ev: Evidence = {
      ...(st?.ok ? { selftest: st.value } : {}),
      ...(ar?.ok ? { afterReset: { state: ar.value, ...(input.resetCtrl !== undefined ? { resetCtrl: input.resetCtrl } : {}) } } : {}),
    }
    return { ok: true, result: ev.selftest || ev.afterReset ? withEvidence(result, ev, caps ?? s.value.hostCaps, s.value) : result }
  } catch (e) {
    // check() is pure over validated input; if it ever throws, that is a bug reported cleanly.
    return { ok: false, errors: [`internal error while checking: ${e instanceof Error ? e.message : String(e)}`] }
  }
}
