// Extra evidence for host check (issue 13): the selftest's TAP read back exactly as `guest selftest`
// prints it, the after-reset state judged against contract/CONTRACT.md section 3, both joining the
// result; and the scenario format's list of per-vCPU item ids kept in step with the checker.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { tapDocument, type TapPoint } from '../../bin/lib/tap.js'
import { CHECK_VCPU_ITEMS } from '../../contract/scenario.js'
import type { HostCaps } from '../../contract/host-caps.js'
import type { VmmState } from '../../contract/vmm-state-json.js'
import { RULES } from '../../guest/selftest/run.js'
import type { CheckResult } from './check.js'
import { CheckResultJson } from '../../contract/host-output-schemas.js'
import { resetChecks, selftestItems, withEvidence } from './evidence.js'
import { parseSelftestTap } from './selftest-tap.js'

const SPR: HostCaps = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }

const points: TapPoint[] = [
  { ok: true, name: RULES.gateArchCap },
  { ok: false, name: RULES.perVcpu, diag: { cpus: [0, 1], wrote: ['0x1', '0x2'], readBack: ['0x2', '0x2'], source: 'contract/CONTRACT.md section 3: per vCPU' } },
  { ok: true, name: RULES.specShadow, skip: 'no IA32_SPEC_CTRL (CPUID.(7,0):EDX[26] clear) # not a directive' },
  { ok: false, name: 'a rule from a newer agent with a \\ backslash' },
]

t.test('the selftest TAP reads back to the points it was printed from (TAP 14 and 13)', async t => {
  for (const v of [14, 13] as const) {
    const r = parseSelftestTap(tapDocument(points, v))
    if (!r.ok) { t.fail(r.errors.join('; ')); continue }
    t.same(r.value.map(p => [p.ok, p.name, p.skip]), points.map(p => [p.ok, p.name, p.skip]), `TAP ${v}: names, results and SKIP reasons`)
    t.same(r.value[1]!.diag, points[1]!.diag, `TAP ${v}: YAML diagnostics`)
  }
  const items = selftestItems(parseSelftestTap(tapDocument(points)).ok ? points : [])
  t.same(items.map(i => [i.id, i.ok]), [['gateArchCap', true], ['perVcpu', false], ['specShadow', true], ['unknown', false]], 'one item per rule, by RULES key')
  t.match(items[1]!.message, /^guest selftest fails: MSR_VIRTUAL_MITIGATION_CTRL is per vCPU/)
  t.equal(items[2]!.skip, points[2]!.skip)
})

t.test('a selftest TAP that is not whole is an input error naming the line', async t => {
  const good = tapDocument(points)
  const cases: [string, RegExp][] = [
    ['', /line 1: expected "TAP version 14"/],
    [good.replace('1..4', '1..5'), /plan says 5 points, 4 found/],
    ['TAP version 14\nBail out! signal SIGTERM\n', /line 2: the selftest did not complete \(Bail out! signal SIGTERM\)/],
    [good.replace('ok 3 -', 'ok 7 -'), /expected test point 3, found 7/],
    [good.replace('  ...\n', ''), /without its closing/],
    [good + 'garbage\n', /not a line of the selftest's TAP: "garbage"/],
    ['TAP version 14\nok 1 - x\n', /no plan/],
  ]
  for (const [text, want] of cases) {
    const r = parseSelftestTap(text)
    t.notOk(r.ok, want.source)
    if (!r.ok) t.match(r.errors.join('\n'), want)
  }
})

const state = (ctrl: string[], forced: string[], o: Partial<VmmState> = {}): VmmState => ({
  schema: 'virtmiti/vmm-state/v1', vmUuid: '7a1d0c5e-3b2f-4e6a-9c8d-1f2e3d4c5b6a', vmm: { name: 't' }, hostCaps: SPR, advertised: true, mitiEnum: '0x3',
  userspaceForce: { mask: '0x0', value: '0x0' }, specCtrl: 'intercepted',
  vcpus: ctrl.map((c, i) => ({ index: i, mitiCtrl: c, forcedMask: forced[i]!, forcedValue: forced[i]!, specCtrlShadow: '0x0', specCtrlEffective: forced[i]! })),
  ...o,
}) as VmmState

t.test('after reset: CTRL 0 and only userspace force, per vCPU, naming the bits', async t => {
  t.ok(resetChecks(state(['0x0', '0x0'], ['0x0', '0x0']), SPR).every(c => c.ok), 'a reset VMM passes')
  const kept = resetChecks(state(['0x0', '0x1'], ['0x0', '0x400']), SPR)
  t.same(kept.map(c => c.items.filter(i => !i.ok).map(i => i.id)), [[], ['miti-ctrl', 'forced-mask', 'forced-value']])
  t.match(kept[1]!.items[0]!.message, /MITI_CTRL after vCPU reset: extra BHB_CLEAR_SEQ_S_USED \(expected 0x0, observed 0x1/)
  // Userspace's force stays after reset (section 5); a declared reset value drives the response.
  t.ok(resetChecks(state(['0x0'], ['0x4'], { userspaceForce: { mask: '0x4', value: '0x4' } }), SPR).every(c => c.ok))
  t.ok(resetChecks(state(['0x1'], ['0x400']), SPR, 1n).every(c => c.ok), 'declared reset CTRL 0x1: BHI_DIS_S forced')
  t.notOk(resetChecks(state(['0x0'], ['0x0']), SPR, 1n)[0]!.ok)
})

t.test('withEvidence: failures join the result and make it fail; a different VM is named', async t => {
  const base: CheckResult = { schema: 'virtmiti/check-result/v1', ok: true, verdict: 'pass', vmUuid: state([], []).vmUuid, pairedBy: 'vm-uuid', hostCapsFrom: 'host-caps-file', vm: [], vcpus: [], failures: [] }
  const clean = withEvidence(base, { selftest: [points[0]!], afterReset: { state: state(['0x0'], ['0x0']) } }, SPR, state(['0x1'], ['0x400']))
  t.equal(clean.verdict, 'pass')
  t.equal(clean.selftest?.length, 1)
  const bad = withEvidence(base, { selftest: points, afterReset: { state: state(['0x2'], ['0x40']) } }, SPR, state(['0x2'], ['0x40']))
  t.equal(bad.verdict, 'fail')
  t.equal(bad.ok, false)
  t.match(bad.failures.join('\n'), /selftest: guest selftest fails: MSR_VIRTUAL_MITIGATION_CTRL is per vCPU[^]*vCPU 0: MITI_CTRL after vCPU reset: extra RETPOLINE_S_USED/)
  // The published check-result schema (contract/schemas/check-result.schema.json) carries both.
  t.ok(CheckResultJson.safeParse(bad).success, 'virtmiti/check-result/v1 with selftest and afterReset')
  const other = withEvidence(base, { afterReset: { state: state(['0x0'], ['0x0'], { vmUuid: '00000000-0000-4000-8000-000000000000' }) } }, SPR, state([], []))
  t.equal(other.verdict, 'fail')
  t.match(other.failures[0], /not the same VM/)
  // A reset that drops userspace's force would also pass the reset rule with no force: named on its own.
  const forced = { userspaceForce: { mask: '0x400', value: '0x400' } }
  const dropped = withEvidence(base, { afterReset: { state: state(['0x0'], ['0x0']) } }, SPR, state(['0x0'], ['0x400'], forced))
  t.equal(dropped.verdict, 'fail')
  t.match(dropped.failures[0], /userspace force mask 0x0 value 0x0, the checked state mask 0x400 value 0x400/)
})

t.test('the scenario format lists exactly the per-vCPU item ids host check produces', async t => {
  const src = readFileSync(fileURLToPath(new URL('./check.ts', import.meta.url)), 'utf8')
  const body = src.slice(src.indexOf('function checkVcpu'), src.indexOf('export function check('))
  const ids = new Set([...body.matchAll(/(?:compare|skipItem)\('([a-z-]+)'|\bid: '([a-z-]+)'/g)].map(m => m[1] ?? m[2]!))
  t.ok(ids.size >= 8, `${ids.size} ids found in checkVcpu`)
  t.same([...ids].sort(), [...CHECK_VCPU_ITEMS].sort())
})
