// Section 3 conformance: the reference passes; the faults a normal guest run cannot expose are caught.
import t from 'tap'
import { conformance } from './conformance.js'
import { createVmm } from '../vmm/emulation.js'
import { correctProfiles, profileByName } from '../vmm/profiles.js'

const CAPS = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }
const target = (profile: string) => createVmm({ archCapabilities: 0n, hostCaps: CAPS, profile: profileByName(profile)!, vcpus: 2 })

for (const p of correctProfiles()) {
  t.test(`conformance: correct profile ${p} passes`, async t => {
    const m = target(p)
    const items = conformance(m)
    t.same(items.filter(i => !i.ok).map(i => i.message), [])
    t.same(m.states().map(s => s.mitiCtrl), [0n, 0n], 'CTRL left at 0')
  })
}

const CAUGHT: [string, string, RegExp][] = [
  ['enum-writable', 'MSR_VIRTUAL_ENUMERATION-read-only', /MSR_VIRTUAL_ENUMERATION is read-only: a write of 0x0 succeeded/],
  ['enum-writable', 'MSR_VIRTUAL_MITIGATION_ENUM-read-only', /MSR_VIRTUAL_MITIGATION_ENUM is read-only/],
  ['reserved-ctrl-bits-accepted', 'ctrl-reserved', /accepted bit 2, bit 3, bit 4, bit 5, \.\.\. bit 63 \(62 bits\), not enumerated/],
  ['ctrl-not-reset', 'ctrl-reset', /after vCPU reset reads 0x3 \(BHB_CLEAR_SEQ_S_USED, RETPOLINE_S_USED\), expected 0x0/],
  ['ctrl-not-per-vcpu', 'ctrl-per-vcpu', /not per vCPU: .* vCPU 1 reads 0x3/],
  ['ignores-ctrl-writes', 'ctrl-read-back', /wrote 0x1, read 0x0/],
]
for (const [profile, id, re] of CAUGHT) {
  t.test(`conformance: faulty profile ${profile} is caught by ${id}`, async t => {
    const item = conformance(target(profile)).find(i => i.id === id)
    t.equal(item?.ok, false)
    t.match(item?.message, re)
  })
}

t.test('conformance: a VMM that does not advertise is skipped, not failed', async t => {
  const items = conformance(target('no-virtual-msrs'))
  t.equal(items.length, 1)
  t.ok(items[0]!.skip)
})
