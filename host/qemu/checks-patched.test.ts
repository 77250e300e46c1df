// checks-patched.ts against a recorded boot under the patched QEMU (Cascadelake-Server-v2 guest,
// Cascade Lake host, SW loop: CTRL 0x1, nothing forced): the real boot passes; each broken
// guest or host fact fails the point named for its rule; each fault is caught by its catcher.
import t from 'tap'
import { GuestReport } from '../../contract/report-json.js'
import { ProbeJson } from '../../contract/probe-schema.js'
import { hostCapsFromCpu, hostCapsToJson, type HostCaps } from '../../contract/host-caps.js'
import type { TapPoint } from '../../bin/lib/tap.js'
import { checkFromText } from '../check/from-text.js'
import { RULES } from '../../guest/selftest/run.js'
import { checkBoot, readKernelLine } from './checks.js'
import { checkPatched, expectedCtrl, FAULT_CATCHERS, QEMU_FAULTS, selftestFailures, type HostSide, type QemuFault } from './checks-patched.js'
import { QOM_CONFIG, QOM_VCPU_REGS, qemuStateToVmmState } from './qemu-state.js'
import { loadRecordedBoot, sectionMap, type RecordedBoot } from './recorded-boot.js'
import { hostCapsProps } from './patched.js'
import { loadCpuCatalog } from '../runner/cpus.js'
import { builtinCpusDir } from '../runner/catalog.js'

const REC = loadRecordedBoot('patched-cascadelake-v2-on-cascade-lake')
const catalog = loadCpuCatalog(builtinCpusDir()!)
const caps = (id: string): HostCaps => hostCapsFromCpu(catalog.models.get(id)!)

/** QEMU's side as the patched QEMU reported it for this boot (QOM values of the recorded run). */
function hostSide(b: RecordedBoot, hostId: string, perVcpu: { ctrl: number; mask: number; value: number }): HostSide {
  const report = b.sections['report']!.output
  const c = caps(hostId)
  const shadow = 0x1 // rdmsr.0x48 of the recorded boot: IBRS (eIBRS kernel)
  const props = (i: number) => ({
    [QOM_CONFIG.virtMiti]: true, [QOM_CONFIG.archCapabilities]: true, [QOM_CONFIG.mitiEnum]: 3,
    [QOM_CONFIG.bhiCtrl]: c.bhiCtrl, [QOM_CONFIG.bhiNo]: c.bhiNo, [QOM_CONFIG.rrsbaCtrl]: c.rrsbaCtrl, [QOM_CONFIG.rrsba]: c.rrsba,
    [QOM_CONFIG.stibp]: c.stibp, [QOM_CONFIG.ssbd]: c.ssbd, [QOM_CONFIG.forceMask]: 0, [QOM_CONFIG.forceValue]: 0, [QOM_CONFIG.fault]: null,
    [QOM_VCPU_REGS.mitiCtrl]: perVcpu.ctrl, [QOM_VCPU_REGS.forcedMask]: perVcpu.mask, [QOM_VCPU_REGS.forcedValue]: perVcpu.value,
    [QOM_VCPU_REGS.specCtrlShadow]: shadow, [QOM_VCPU_REGS.specCtrlEffective]: (shadow & ~perVcpu.mask) | (perVcpu.value & perVcpu.mask),
    [QOM_VCPU_REGS.specCtrlGuestRead]: shadow, [QOM_VCPU_REGS.specCtrlGuestReads]: 4 + i,
  })
  const vmUuid = (JSON.parse(report) as { vmUuid?: string }).vmUuid
  const s = qemuStateToVmmState({ uuid: vmUuid, vcpus: [0, 1].map(i => ({ index: i, qomPath: `/machine/unattached/device[${i}]`, props: props(i) })) })
  if (!s.ok) throw new Error(s.errors.join('; '))
  const ck = checkFromText({ report, state: JSON.stringify(s.state), hostCaps: JSON.stringify(hostCapsToJson(c)) })
  return { state: s.state, ...(ck.ok ? { check: ck.result } : { checkErrors: ck.errors }) }
}

function run(b: RecordedBoot, host: HostSide, fault?: QemuFault): TapPoint[] {
  const sections = sectionMap(b)
  const report = GuestReport.parse(JSON.parse(b.sections['report']!.output))
  const probe = ProbeJson.parse(JSON.parse(b.sections['probe']!.output))
  const kernel = readKernelLine(b.sections['spectre_v2']!.output)
  return [
    ...checkBoot(sections, { cpu: b.cpu, append: b.append, accel: 'tcg', vcpus: 2, virtMsrs: true }).points,
    ...checkPatched(sections, probe, report, host, { vcpus: 2, kernel, mitiEnum: 3n, ...(fault ? { fault } : {}) }),
  ]
}
const failing = (ps: TapPoint[]) => ps.filter(p => !p.ok).map(p => p.name)
const good = { ctrl: 1, mask: 0, value: 0 }

t.test('the recorded boot passes every point: report wrote 0x1, selftest passed, host check passed', async t => {
  const ps = run(REC, hostSide(REC, 'cascade-lake', good))
  t.same(failing(ps), [])
  t.ok(ps.some(p => p.name === 'report: enumerated; every vCPU holds MITI_CTRL 0x1 (kernel: BHI sw-loop, retpoline false)'))
  t.ok(ps.some(p => p.name === 'host check: every vCPU as contract/CONTRACT.md sections 3 and 5 say' && p.ok))
})

t.test('the same guest on a Sapphire Rapids host: QEMU must force BHI_DIS_S; forcing nothing fails host check', async t => {
  t.same(failing(run(REC, hostSide(REC, 'sapphire-rapids', { ctrl: 1, mask: 0x400, value: 0x400 }))), [], 'BHI_DIS_S forced: pass')
  t.same(failing(run(REC, hostSide(REC, 'sapphire-rapids', good))), ['host check: every vCPU as contract/CONTRACT.md sections 3 and 5 say'])
  t.same(failing(run(REC, hostSide(REC, 'sapphire-rapids', good), 'forces-nothing')), [], 'with the fault property set, that is the catch')
  t.same(failing(run(REC, hostSide(REC, 'sapphire-rapids', { ctrl: 1, mask: 0x400, value: 0x400 }), 'forces-nothing')), ['fault forces-nothing: host check catches it'], 'a fault that did not happen is not caught')
})

t.test('guest-side facts, each failing its own point', async t => {
  const edit = (f: (b: RecordedBoot) => void) => { const c = structuredClone(REC); f(c); return c }
  const host = hostSide(REC, 'cascade-lake', good)
  const noBit63 = edit(b => { b.sections['rdmsr.0x10a']!.output = '0 000000000000002b\n1 800000000000002b\n' })
  t.ok(failing(run(noBit63, host)).includes('patched QEMU: IA32_ARCH_CAPABILITIES bit 63 (VIRTUAL_ENUM) set on every vCPU'))
  const wrongCtrl = edit(b => { b.sections['rdmsr.0x50000002']!.output = '0 0000000000000001\n1 0000000000000000\n' })
  t.ok(failing(run(wrongCtrl, host)).includes('rdmsr 0x50000002 reads 0x1 on every vCPU after selftest'))
  const selfFail = edit(b => { b.sections['selftest']!.output = b.sections['selftest']!.output.replace(`ok 8 - ${RULES.perVcpu}`, `not ok 8 - ${RULES.perVcpu}`); b.sections['selftest']!.exit = 1 })
  t.ok(failing(run(selfFail, host)).includes('selftest passes every rule inside the guest kernel (exit 0)'))
  t.same(failing(run(selfFail, host, 'ctrl-not-per-vcpu')), ['fault ctrl-not-per-vcpu: report finds on a later vCPU the CTRL it wrote on an earlier one'], 'ctrl-not-per-vcpu needs both signs')
  // What the fault really does to report: the write on cpu 0 lands on cpu 1, which then reads 0x1 before its own write.
  const shared = edit(b => { b.sections['selftest'] = selfFail.sections['selftest']!; const j = JSON.parse(b.sections['report']!.output); j.cpus[1].before = '0x1'; b.sections['report']!.output = JSON.stringify(j) })
  t.same(failing(run(shared, host, 'ctrl-not-per-vcpu')), [], 'ctrl-not-per-vcpu: caught by the per-vCPU rule and by report, by name')
  t.ok(failing(run(shared, host)).includes('probe read MITI_CTRL as report found it before writing, on every vCPU'), 'without the fault, that is a failure')
  t.ok(failing(run(selfFail, host, 'enum-writable')).length > 0, 'the wrong rule failing is not the catch')
  const reportLies = edit(b => { const j = JSON.parse(b.sections['report']!.output); j.cpus[1].wanted = '0x0'; b.sections['report']!.output = JSON.stringify(j) })
  t.ok(failing(run(reportLies, host)).includes('report: enumerated; every vCPU holds MITI_CTRL 0x1 (kernel: BHI sw-loop, retpoline false)'))
})

t.test('QEMU holding another CTRL than the guest wrote fails twice: the QMP point and host check', async t => {
  const f = failing(run(REC, hostSide(REC, 'cascade-lake', { ctrl: 0, mask: 0, value: 0 })))
  t.ok(f.includes('QEMU holds MITI_CTRL 0x1 on every vCPU'))
  t.ok(f.includes('host check: every vCPU as contract/CONTRACT.md sections 3 and 5 say'))
})

t.test('no state read: the state and host check points fail, never pass silently', async t => {
  const f = failing(run(REC, { stateErrors: ['the guest never reached its last section'] }))
  t.ok(f.includes('QEMU state over QMP (qom-get) translates into virtmiti/vmm-state/v1'))
  t.ok(f.includes('host check: every vCPU as contract/CONTRACT.md sections 3 and 5 say'))
})

t.test('expected CTRL from the kernel line (contract/CONTRACT.md section 4), masked by MITI_ENUM', async t => {
  const k = (line: string) => readKernelLine(line)
  t.equal(expectedCtrl(k(REC.sections['spectre_v2']!.output), 3n), 1n)
  t.equal(expectedCtrl(k('Mitigation: Retpolines; IBPB: conditional; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Retpoline'), 3n), 2n)
  t.equal(expectedCtrl(k('Mitigation: Retpolines; IBPB: conditional; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Retpoline'), 1n), 0n, 'RETPOLINE_S_SUPPORT not enumerated: bit 1 stays clear')
  t.equal(expectedCtrl(k('Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; PBRSB-eIBRS: SW sequence; BHI: BHI_DIS_S'), 3n), 0n)
  t.equal(expectedCtrl(k('Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; PBRSB-eIBRS: SW sequence; BHI: Vulnerable'), 3n), 0n)
  t.equal(expectedCtrl(k('something else entirely'), 3n), undefined, 'a line the tables do not know: no expectation, the point fails')
})

t.test('every QEMU fault id is a faulty VMM profile of host/vmm/profiles.ts, with a catcher', async t => {
  const { PROFILES } = await import('../vmm/profiles.js')
  for (const f of QEMU_FAULTS) {
    t.ok(PROFILES.has(f), `${f} is a profile`)
    t.ok(FAULT_CATCHERS[f].selftest.length > 0 || FAULT_CATCHERS[f].hostCheck === 'fail', `${f} has at least one catcher`)
  }
})

t.test('selftest failures are read from its TAP by name', async t => {
  t.same(selftestFailures(`TAP version 14\n1..3\nok 1 - a\nnot ok 2 - ${RULES.perVcpu}\n  ---\n  x: 1\n  ...\nnot ok 3 - b # TODO later\n`), [RULES.perVcpu, 'b'])
})

t.test('host caps become the virt-miti-host-* properties one to one', async t => {
  t.same(hostCapsProps(caps('sapphire-rapids')), ['virt-miti-host-bhi-ctrl=on', 'virt-miti-host-bhi-no=off', 'virt-miti-host-rrsba-ctrl=on', 'virt-miti-host-rrsba=on', 'virt-miti-host-stibp=on', 'virt-miti-host-ssbd=on'])
  t.same(hostCapsProps(caps('cascade-lake')).filter(p => p.endsWith('=on')), ['virt-miti-host-rrsba=on', 'virt-miti-host-stibp=on', 'virt-miti-host-ssbd=on'])
})
