// Output of `host check`: TAP 14 (one subtest per vCPU, YAML diagnostics with bit names),
// and plain text. JSON output is the CheckResult itself.
import { tapDocument, type TapPoint, type TapVersion } from '../../bin/lib/tap.js'
import type { ChalkInstance } from 'chalk'
import type { CheckItem, CheckResult } from './check.js'

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
  ]
}

export const checkTap = (r: CheckResult, version: TapVersion = 14): string => tapDocument(checkTapPoints(r), version)

/** Human text; `color` (bin/lib/color.ts makeColor) decides whether PASS/FAIL are coloured. */
export function checkText(r: CheckResult, color?: ChalkInstance): string {
  const pass = color ? color.green('PASS') : 'PASS'
  const fail = color ? color.red('FAIL') : 'FAIL'
  const lines = [`VM ${r.vmUuid}: ${r.ok ? pass : fail} (${r.vcpus.length} vCPUs, paired by ${r.pairedBy}, host caps from ${r.hostCapsFrom})`]
  for (const f of r.failures) lines.push(`  ${fail} ${f}`)
  for (const c of r.vcpus) for (const n of c.notes) lines.push(`  note vCPU ${c.index}: ${n}`)
  return lines.join('\n') + '\n'
}
