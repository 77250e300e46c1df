// Output of `host check`: TAP 14 (one subtest per vCPU, YAML diagnostics with bit names),
// and plain text. JSON output is the CheckResult itself.
import { tapDocument, type TapPoint, type TapVersion } from '../../bin/lib/tap.js'
import type { ChalkInstance } from 'chalk'
import type { CheckItem, CheckResult } from './check.js'
import { safeText } from '../../bin/lib/escape.js'

const point = (i: CheckItem): TapPoint => ({
  ok: i.ok, name: i.message,
  ...(i.skip !== undefined ? { skip: i.skip } : {}),
  ...(i.diag ? { diag: { check: i.id, ...i.diag } } : {}),
})

export function checkTapPoints(r: CheckResult): TapPoint[] {
  return [
    ...r.vm.map(point),
    ...r.vcpus.map((c): TapPoint => ({
      ok: c.ok,
      name: `vCPU ${c.index}`,
      sub: c.items.map(point),
      ...(c.notes.length ? { diag: { notes: c.notes } } : {}),
    })),
    ...(r.selftest ? [{ ok: r.selftest.every(i => i.ok), name: 'guest selftest (--selftest)', sub: r.selftest.map(point) }] : []),
    ...(r.afterReset ?? []).map((c): TapPoint => ({ ok: c.ok, name: `vCPU ${c.index} after reset (--after-reset)`, sub: c.items.map(point) })),
  ]
}

export const checkTap = (r: CheckResult, version: TapVersion = 14): string => tapDocument(checkTapPoints(r), version)

/** Human text; `color` (bin/lib/color.ts makeColor) decides whether PASS/FAIL are coloured. */
export function checkText(r: CheckResult, color?: ChalkInstance): string {
  const pass = color ? color.green('PASS') : 'PASS'
  const fail = color ? color.red('FAIL') : 'FAIL'
  const verdict = r.verdict === 'pass' ? pass : r.verdict === 'fail' ? fail : color ? color.yellow('COULD NOT TELL') : 'COULD NOT TELL'
  // Messages quote the untrusted guest report and VMM state: escape controls for the terminal (issue 14 item 9).
  const lines = [`VM ${safeText(r.vmUuid)}: ${verdict} (${r.vcpus.length} vCPUs, paired by ${r.pairedBy}, host caps from ${r.hostCapsFrom})`]
  for (const f of r.failures) lines.push(`  ${fail} ${safeText(f)}`)
  for (const i of r.vm) if (i.id === 'guest-data' && !i.ok) lines.push(`  ${safeText(i.message)}`)
  for (const c of r.vcpus) for (const n of c.notes) lines.push(`  note vCPU ${c.index}: ${safeText(n)}`)
  return lines.join('\n') + '\n'
}
