// QOM values (as the patched QEMU's qom-get returns them) to virtmiti/vmm-state/v1: the
// translation keeps every register exact, and refuses what it cannot translate with the reason.
import t from 'tap'
import { VmmState } from '../../contract/vmm-state-json.js'
import { QOM_CONFIG, QOM_VCPU_REGS, qemuStateToVmmState, type QemuRawState } from './qemu-state.js'

const UUID = '0b9e3c4a-7f3d-4c1e-9a52-6f0e2d8b1c77'
/** A Sapphire Rapids host (BHI_CTRL, RRSBA_CTRL, RRSBA), SW-loop guest: BHI_DIS_S forced. */
function raw(over: (r: QemuRawState) => void = () => {}): QemuRawState {
  const cfg = {
    [QOM_CONFIG.virtMiti]: true, [QOM_CONFIG.archCapabilities]: true, [QOM_CONFIG.mitiEnum]: 3,
    [QOM_CONFIG.bhiCtrl]: true, [QOM_CONFIG.bhiNo]: false, [QOM_CONFIG.rrsbaCtrl]: true, [QOM_CONFIG.rrsba]: true,
    [QOM_CONFIG.stibp]: true, [QOM_CONFIG.ssbd]: true, [QOM_CONFIG.forceMask]: 0, [QOM_CONFIG.forceValue]: 0, [QOM_CONFIG.fault]: null,
  }
  const vcpu = (index: number, reads: number) => ({
    index, qomPath: `/machine/unattached/device[${index}]`,
    props: {
      ...cfg, [QOM_VCPU_REGS.mitiCtrl]: 1, [QOM_VCPU_REGS.forcedMask]: 0x400, [QOM_VCPU_REGS.forcedValue]: 0x400,
      [QOM_VCPU_REGS.specCtrlShadow]: 1, [QOM_VCPU_REGS.specCtrlEffective]: 0x401, [QOM_VCPU_REGS.specCtrlGuestRead]: 1, [QOM_VCPU_REGS.specCtrlGuestReads]: reads,
    },
  })
  const r: QemuRawState = { version: '7.2.22', uuid: UUID.toUpperCase(), vcpus: [vcpu(1, 0), vcpu(0, 3)] }
  over(r)
  return r
}

t.test('a patched QEMU state translates exactly and validates against the schema', async t => {
  const r = qemuStateToVmmState(raw())
  if (!r.ok) { t.fail(r.errors.join('; ')); return }
  t.ok(VmmState.safeParse(r.state).success)
  t.equal(r.state.vmUuid, UUID, 'lower-cased SMBIOS UUID, pairs with the guest report')
  t.same(r.state.hostCaps, { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true })
  t.equal(r.state.advertised, true)
  t.equal(r.state.mitiEnum, '0x3')
  t.same(r.state.vcpus.map(v => v.index), [0, 1], 'sorted by vCPU index')
  t.same(r.state.vcpus[0], { index: 0, mitiCtrl: '0x1', forcedMask: '0x400', forcedValue: '0x400', specCtrlShadow: '0x1', specCtrlEffective: '0x401', specCtrlGuestRead: '0x1' })
  t.notOk('specCtrlGuestRead' in r.state.vcpus[1]!, 'no guest read on vCPU 1: the optional field is absent, not 0')
  t.equal(r.state.vmm.profile, 'virtmiti-patched')
})

t.test('virt-miti off: not advertised, ENUM reads as 0', async t => {
  const r = qemuStateToVmmState(raw(x => { for (const v of x.vcpus) v.props[QOM_CONFIG.virtMiti] = false }))
  t.ok(r.ok && !r.state.advertised && r.state.mitiEnum === '0x0')
})

t.test('a fault property is carried as the profile', async t => {
  const r = qemuStateToVmmState(raw(x => { for (const v of x.vcpus) v.props[QOM_CONFIG.fault] = 'forces-nothing' }))
  t.ok(r.ok && r.state.vmm.profile === 'fault:forces-nothing' && r.fault === 'forces-nothing')
})

t.test('refusals, each with its reason', async t => {
  const cases: [string, (r: QemuRawState) => void, RegExp][] = [
    ['stock QEMU (no such property)', r => { for (const v of r.vcpus) v.props[QOM_VCPU_REGS.mitiCtrl] = { missing: "Property 'x86_64-cpu.virt-miti-ctrl' not found" } }, /not patched/],
    ['a register beyond 2^53 (JSON cannot carry it exactly)', r => { r.vcpus[0]!.props[QOM_VCPU_REGS.specCtrlEffective] = 2 ** 60 }, /spec-ctrl-effective: expected an exact unsigned integer/],
    ['a negative register', r => { r.vcpus[0]!.props[QOM_VCPU_REGS.mitiCtrl] = -1 }, /virt-miti-ctrl: expected an exact/],
    ['vCPUs disagree on configuration', r => { r.vcpus[1]!.props[QOM_CONFIG.bhiCtrl] = false }, /vCPU 0: virt-miti-host-bhi-ctrl = false, vCPU 1 has true/],
    ['not a UUID', r => { r.uuid = 'nope' }, /query-uuid: not a UUID/],
    ['duplicate vCPU index', r => { r.vcpus[1]!.index = 1 }, /not a unique/],
    ['a boolean that is not one', r => { for (const v of r.vcpus) v.props[QOM_CONFIG.rrsba] = 'yes' }, /virt-miti-host-rrsba: expected a boolean/],
  ]
  for (const [name, edit, re] of cases) {
    const r = qemuStateToVmmState(raw(edit))
    t.notOk(r.ok, name)
    if (!r.ok) t.match(r.errors.join('\n'), re, name)
  }
})
