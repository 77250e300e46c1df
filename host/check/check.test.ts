// host check: correct VMM profiles pass, every faulty profile is caught with a message naming
// the wrong bit, pairing by VM UUID and vCPU index, TAP 14 output that tap-parser accepts.
import t from 'tap'
import { Parser } from 'tap-parser'
import { check } from './check.js'
import { checkTap } from './render.js'
import { miniGuestReport, TEST_UUID } from './fixtures.js'
import { simulatedPlatform } from '../vmm/simulated.js'
import { profileByName } from '../vmm/profiles.js'
import { vmmStateJson } from '../vmm/state.js'
import type { CpuModel } from '../../contract/cpu-model.js'
import type { HostCaps } from '../../contract/host-caps.js'
import { GuestReport } from '../../contract/report-json.js'
import { VmmState } from '../../contract/vmm-state-json.js'

const MODEL: CpuModel = {
  id: 't', name: 'test', vendor: 'GenuineIntel', family: 6, model: 0x55, stepping: 4,
  cpuid7_0_edx: ((1 << 26) | (1 << 27) | (1 << 29) | (1 << 31)) >>> 0, cpuid7_2_edx: 0, archCapabilities: 0n, sources: {},
}
const SPR: HostCaps = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }
const IBRS = 1n

interface Run { hostCaps?: HostCaps; ctrl?: (cpu: number) => bigint; specCtrl?: bigint; vcpus?: number; noUuid?: boolean; stateUuid?: string; stateCaps?: HostCaps }
function run(profile: string, o: Run = {}) {
  const { platform, vmm } = simulatedPlatform({
    presented: { model: MODEL, hypervisor: true, archCapabilities: 0n },
    hostCaps: o.stateCaps ?? o.hostCaps ?? SPR, profile: profileByName(profile)!, vcpus: o.vcpus ?? 2, sysfs: {},
  })
  const report = miniGuestReport(platform, { ctrl: o.ctrl ?? (() => 3n), ...(o.specCtrl !== undefined ? { specCtrl: o.specCtrl } : {}), ...(o.noUuid ? { noUuid: true } : {}) })
  const state = vmmStateJson(vmm, o.stateUuid ?? TEST_UUID)
  // What the CLI would accept: both documents validate against their published schemas.
  if (!GuestReport.safeParse(report).success) throw new Error('fixture report invalid: ' + JSON.stringify(GuestReport.safeParse(report).error?.issues))
  if (!VmmState.safeParse(state).success) throw new Error('fixture state invalid')
  return { report, state, result: check(report, state, o.hostCaps) }
}

for (const p of ['reference', 'reference-virtualized', 'bhb-only', 'no-virtual-msrs', 'read-zero', 'userspace-force-bhi', 'userspace-force-bhi-off']) {
  t.test(`correct profile ${p} passes host check`, async t => {
    const { result } = run(p, { specCtrl: IBRS, vcpus: 3 })
    t.same(result.failures, [])
    t.equal(result.ok, true)
    t.equal(result.vcpus.length, 3)
  })
}

for (const caps of [SPR, { ...SPR, bhiNo: true }, { ...SPR, bhiCtrl: false }, { ...SPR, rrsba: false }, { ...SPR, rrsbaCtrl: false, bhiCtrl: false }]) {
  t.test(`reference passes on host ${JSON.stringify(caps)} for every CTRL value`, async t => {
    for (const c of [0n, 1n, 2n, 3n]) t.same(run('reference', { hostCaps: caps, ctrl: () => c, specCtrl: IBRS }).result.failures, [])
  })
}

const CAUGHT: { profile: string; run: Run; want: RegExp }[] = [
  { profile: 'ignores-ctrl-writes', run: {}, want: /MITI_CTRL.*missing BHB_CLEAR_SEQ_S_USED/ },
  { profile: 'ignores-ctrl-writes', run: {}, want: /forced mask: missing BHI_DIS_S, RRSBA_DIS_S|forced mask: missing RRSBA_DIS_S, BHI_DIS_S/ },
  { profile: 'forces-nothing', run: {}, want: /forced mask: missing RRSBA_DIS_S, BHI_DIS_S/ },
  { profile: 'forces-bhi-regardless-of-caps', run: { hostCaps: { ...SPR, bhiCtrl: false } }, want: /forced mask: extra BHI_DIS_S/ },
  { profile: 'forces-bhi-regardless-of-caps', run: { hostCaps: { ...SPR, bhiNo: true } }, want: /forced value: extra BHI_DIS_S/ },
  { profile: 'guest-can-clear-forced', run: { specCtrl: IBRS }, want: /effective SPEC_CTRL: missing RRSBA_DIS_S, BHI_DIS_S/ },
  { profile: 'guest-overrides-userspace', run: {}, want: /forced value: extra BHI_DIS_S/ },
  { profile: 'leaks-forced-into-shadow', run: { specCtrl: IBRS }, want: /leaks forced RRSBA_DIS_S, BHI_DIS_S/ },
  { profile: 'ctrl-not-per-vcpu', run: { ctrl: cpu => (cpu === 0 ? 1n : 0n) }, want: /vCPU 0: .*MITI_CTRL.*missing BHB_CLEAR_SEQ_S_USED/ },
  { profile: 'ctrl-not-per-vcpu', run: { ctrl: cpu => (cpu === 0 ? 1n : 0n) }, want: /vCPU 0: forced mask: missing BHI_DIS_S/ },
]
for (const c of CAUGHT) {
  t.test(`faulty profile ${c.profile} is caught: ${c.want.source}`, async t => {
    const { result } = run(c.profile, c.run)
    t.equal(result.ok, false)
    t.ok(result.failures.some(f => c.want.test(f)), result.failures.join('\n'))
  })
}

t.test('a VMM state whose host caps disagree with the host caps file is caught, naming the cap', async t => {
  const { result } = run('reference', { hostCaps: { ...SPR, bhiNo: true }, stateCaps: SPR })
  t.equal(result.ok, false)
  t.ok(result.failures.some(f => /bhiNo is true, VMM says false/.test(f)), result.failures.join('\n'))
  t.ok(result.failures.some(f => /forced mask: extra BHI_DIS_S/.test(f)), 'and the bit it forced wrongly')
})

t.test('pairing: a VM UUID mismatch is a clear failure and nothing else is checked', async t => {
  const { result } = run('reference', { stateUuid: '11111111-2222-4333-8444-555555555555' })
  t.equal(result.ok, false)
  t.match(result.failures[0], /guest report is from VM 0b9d7b0e-.*VMM state is from VM 11111111-/)
  t.equal(result.vcpus.length, 0)
})

t.test('pairing: a report without a VM UUID is paired by vCPU index, and says so', async t => {
  const { result } = run('reference', { noUuid: true })
  t.equal(result.ok, true)
  t.equal(result.pairedBy, 'vcpu-index-only')
  t.equal(result.vm.find(i => i.id === 'vm-uuid')?.skip, 'the guest report has no vmUuid: paired by vCPU index only')
})

t.test('pairing: a guest CPU with no vCPU in the state fails; a vCPU the guest did not report is checked on its own', async t => {
  const { report, state } = run('reference')
  const r1 = check({ ...report, cpus: [...report.cpus, { ...report.cpus[0]!, cpu: 7 }] }, state)
  t.ok(r1.failures.some(f => /guest CPU 7 has no vCPU/.test(f)))
  const r2 = check({ ...report, cpus: [report.cpus[0]!] }, state)
  t.equal(r2.ok, true)
  t.match(r2.vcpus[1]!.notes[0], /not in the guest report/)
})

t.test('a guest-reported read-back mismatch is a failure naming the bit', async t => {
  const { report, state } = run('reference')
  const cpus = report.cpus.map(c => ({ ...c, outcome: 'readback-mismatch' as const, readBack: '0x1' }))
  const r = check({ ...report, cpus }, state)
  t.ok(r.failures.some(f => /guest read back MITI_CTRL 0x1 after writing 0x3: missing RETPOLINE_S_USED/.test(f)), r.failures.join('\n'))
})

t.test('a state that advertises while the guest found nothing enumerated is a failure', async t => {
  const { report, state } = run('reference')
  const r = check({ ...report, cpus: report.cpus.map(c => ({ cpu: c.cpu, outcome: 'not-enumerated' as const })) }, state)
  t.ok(r.failures.some(f => /not enumerated/.test(f)))
})

t.test('an invalid userspace force in the VMM state is a failure', async t => {
  const { report, state } = run('reference')
  const r = check(report, { ...state, userspaceForce: { mask: '0x0', value: '0x400' } })
  t.ok(r.failures.some(f => /BHI_DIS_S outside the mask/.test(f)))
})

t.test('TAP 14: one subtest per vCPU, parsed by tap-parser, failures carry YAML with bit names', async t => {
  const { result } = run('forces-nothing', { vcpus: 2 })
  const tap = checkTap(result)
  const p = new Parser({ strict: true })
  const done = new Promise<any>(res => p.on('complete', res))
  const fails: any[] = []
  p.on('fail', (f: any) => fails.push(f))
  p.end(tap)
  const final = await done
  t.equal(final.ok, false)
  t.equal(final.count, result.vm.length + 2, 'VM points plus one subtest per vCPU')
  t.match(tap, /# Subtest: vCPU 0\n/)
  t.match(tap, /# Subtest: vCPU 1\n/)
  const fm = fails.find(f => f.name.startsWith('forced mask'))
  t.ok(fm, 'a failing forced mask point')
  t.same(fm?.diag?.missing, ['RRSBA_DIS_S', 'BHI_DIS_S'], 'YAML diagnostic names the missing bits')
  t.same(fm?.diag?.observed, [])
  const ok = checkTap(run('reference').result)
  const p2 = new Parser({ strict: true })
  const d2 = new Promise<any>(res => p2.on('complete', res))
  p2.end(ok)
  t.equal((await d2).ok, true)
})

t.test('TAP 13 flattens vCPU subtests', async t => {
  const tap = checkTap(run('reference').result, 13)
  t.match(tap, /^TAP version 13\n/)
  t.notMatch(tap, /Subtest/)
  t.match(tap, /ok \d+ - vCPU 1 > forced mask/)
})

// Issue 11 item 6: where the VMM reports the SPEC_CTRL the hypervisor holds (KVM_GET_MSRS after its
// KVM_SET_MSRS push), it must be the effective value (contract/CONTRACT.md section 5); where the host holds
// no guest SPEC_CTRL the item says it cannot verify it, never a silent pass.
t.test('hardware SPEC_CTRL: compared where the host holds it, named when it differs, "cannot verify" where it does not', async t => {
  const { report, state } = run('reference', { specCtrl: IBRS })
  const eff = state.vcpus.map(v => v.specCtrlEffective)
  t.same(eff, ['0x441', '0x441'], 'CTRL 0x3 on a SPR host: IBRS | RRSBA_DIS_S | BHI_DIS_S')
  const held = { ...state, specCtrlHardwareHeld: true, vcpus: state.vcpus.map(v => ({ ...v, specCtrlHardware: v.specCtrlEffective })) }
  t.ok(VmmState.safeParse(held).success, 'the optional fields validate')
  const ok = check(report, held)
  t.equal(ok.ok, true)
  t.ok(ok.vcpus.every(c => c.items.some(i => i.id === 'hardware' && i.ok && i.skip === undefined)))
  const lost = { ...held, vcpus: held.vcpus.map(v => ({ ...v, specCtrlHardware: '0x1' })) }
  const bad = check(report, lost)
  t.equal(bad.ok, false)
  t.ok(bad.failures.includes('vCPU 0: SPEC_CTRL the hypervisor holds for the vCPU vs the effective value: missing RRSBA_DIS_S, BHI_DIS_S (expected 0x441, observed 0x1)'), bad.failures.join('\n'))
  const notHeld = { ...lost, specCtrlHardwareHeld: false, vcpus: lost.vcpus.map(v => ({ ...v, specCtrlHardware: '0x0' })) }
  const cannot = check(report, notHeld)
  t.equal(cannot.ok, true, 'not a failure of the VMM...')
  t.ok(cannot.vcpus.every(c => c.items.some(i => i.id === 'hardware' && /^cannot verify: this host's hypervisor does not hold a guest SPEC_CTRL/.test(i.skip ?? ''))), '...but said, as a skip')
  t.equal(check(report, state).vcpus[0]!.items.some(i => i.id === 'hardware'), false, 'a VMM that reports nothing gets no hardware item')
})

// Issue 14 item 1: the guest report is untrusted. "offline" (or "fault") on every CPU must not
// skip the VMM's state: every vCPU is checked on it, and without any usable guest data the
// verdict is "could not tell", never a pass.
for (const lie of ['offline', 'fault'] as const) {
  const lying = (report: GuestReport): GuestReport => ({
    ...report, cpus: report.cpus.map(c => lie === 'offline'
      ? { cpu: c.cpu, outcome: 'offline', fault: { step: 'cpus', errno: 'ENXIO', message: 'offline' } }
      : { cpu: c.cpu, outcome: 'fault', fault: { step: 'read-ctrl', errno: 'EIO', message: 'faulted' } }),
  })
  t.test(`a guest that says "${lie}" on every CPU cannot make a broken VMM pass`, async t => {
    const { report, state } = run('forces-nothing')
    const r = check(lying(report), state)
    t.equal(r.verdict, 'fail')
    t.ok(r.failures.some(f => /vCPU 0: forced mask: missing RRSBA_DIS_S, BHI_DIS_S/.test(f)), r.failures.join('\n'))
    t.ok(r.failures.some(f => /vCPU 1: forced mask/.test(f)), 'every vCPU is checked on the VMM state')
  })
  t.test(`"${lie}" on every CPU with a self-consistent VMM state is "could not tell", not a pass`, async t => {
    const { report, state } = run('reference')
    const r = check(lying(report), state)
    t.same(r.failures, [])
    t.equal(r.verdict, 'could-not-tell')
    t.equal(r.ok, false)
    t.ok(r.vcpus.every(c => c.basis === 'vmm-only' && c.items.some(i => i.id === 'forced-mask')), 'each vCPU checked on the VMM state only')
    t.match(r.vm.find(i => i.id === 'guest-data')?.message ?? '', /could not tell: no vCPU has usable guest data/)
  })
}

t.test('one legitimately offline vCPU (maxcpus=) is checked on the VMM state only; the run still passes on the others', async t => {
  const { report, state } = run('reference', { vcpus: 3 })
  const r = check({ ...report, cpus: report.cpus.map(c => (c.cpu === 2 ? { cpu: 2, outcome: 'offline' as const } : c)) }, state)
  t.equal(r.verdict, 'pass')
  t.same(r.vcpus.map(c => c.basis), ['guest+vmm', 'guest+vmm', 'vmm-only'])
  t.match(r.vcpus[2]!.notes.join(' '), /offline: checked on the VMM state only/)
})

t.test('property: no lie about per-CPU outcomes makes a VMM that forces nothing pass (2,000 random reports)', async t => {
  const { report, state } = run('forces-nothing', { vcpus: 4 })
  let seed = 42
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
  const hexes = ['0x0', '0x1', '0x2', '0x3']
  const lie = (cpu: number): GuestReport['cpus'][number] => {
    const v = hexes[rnd(4)]!
    switch (rnd(7)) {
      case 0: return { cpu, outcome: 'offline' }
      case 1: return { cpu, outcome: 'fault', fault: { step: 'read-ctrl', errno: 'EIO', message: 'x' } }
      case 2: return { cpu, outcome: 'not-enumerated' }
      case 3: return { cpu, outcome: 'written', mitiEnum: '0x3', before: '0x0', wanted: v, written: v, readBack: v }
      case 4: return { cpu, outcome: 'unchanged', mitiEnum: '0x3', before: v, wanted: v, readBack: v }
      case 5: return { cpu, outcome: 'dry-run', mitiEnum: '0x3', before: v, wanted: v }
      default: return { cpu, outcome: 'readback-mismatch', mitiEnum: '0x3', before: '0x0', wanted: v, written: v, readBack: '0x0' }
    }
  }
  const verdicts = new Map<string, number>()
  for (let i = 0; i < 2000; i++) {
    const cpus = report.cpus.filter(() => rnd(5) !== 0).map(c => lie(c.cpu))
    const r = check({ ...report, cpus: cpus.length ? cpus : [lie(0)] }, state)
    verdicts.set(r.verdict, (verdicts.get(r.verdict) ?? 0) + 1)
    if (r.verdict === 'pass') { t.fail(`passed with ${JSON.stringify(cpus)}`); return }
  }
  t.notOk(verdicts.has('pass'), JSON.stringify([...verdicts]))
})
