// End to end in process: the real guest agent (probe -> decide -> report, guest/) runs on the
// simulated platform over the reference emulation; host check pairs its report with the VMM
// state. Correct profiles pass; faulty ones are caught by bit name.
import t from 'tap'
import { probe } from '../../guest/probe.js'
import { decide } from '../../contract/decide.js'
import { runReport } from '../../guest/apply/report.js'
import { simGuest, GUEST_UUID } from '../../testing/sim-guest.js'
import { check } from './check.js'
import { vmmStateJson } from '../vmm/state.js'
import { GuestReport } from '../../contract/report-json.js'

function e2e(profile: string) {
  const { platform, vmm } = simGuest(profile, { vcpus: 3 })
  const facts = probe(platform)
  const run = runReport(platform, facts, decide(facts), { dryRun: false, now: new Date(0), agentVersion: 'test' })
  t.equal(GuestReport.safeParse(run.report).success, true, 'the agent report validates')
  return { report: run.report, result: check(run.report, vmmStateJson(vmm, GUEST_UUID)) }
}

for (const p of ['reference', 'bhb-only', 'no-virtual-msrs', 'read-zero', 'userspace-force-bhi']) {
  t.test(`agent e2e: ${p} passes host check`, async t => {
    const { result, report } = e2e(p)
    t.same(result.failures, [])
    t.equal(result.pairedBy, 'vm-uuid')
    t.equal(result.vcpus.length, 3)
    if (p === 'reference') t.same(report.cpus.map(c => c.readBack), ['0x3', '0x3', '0x3'], 'the agent reported short loop + retpoline')
  })
}

for (const [p, re] of [
  ['forces-nothing', /forced mask: missing RRSBA_DIS_S, BHI_DIS_S/],
  ['ignores-ctrl-writes', /MITI_CTRL.*missing BHB_CLEAR_SEQ_S_USED, RETPOLINE_S_USED/],
  ['guest-overrides-userspace', /forced value: extra BHI_DIS_S/],
] as const) {
  t.test(`agent e2e: ${p} is caught`, async t => {
    const { result } = e2e(p)
    t.equal(result.ok, false)
    t.ok(result.failures.some(f => re.test(f)), result.failures.join('\n'))
  })
}

t.test('agent e2e: ctrl-not-per-vcpu is invisible to one uniform guest run (conformance.ts catches it)', async t => {
  // The agent writes the same CTRL on every CPU, so a VM-wide CTRL looks right; a guest whose CPUs
  // differ (check.test.ts) or the section 3 conformance probe (conformance.test.ts) exposes it.
  const { result } = e2e('ctrl-not-per-vcpu')
  t.equal(result.ok, true)
})
