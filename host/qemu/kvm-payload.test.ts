// The -bios payload under -accel kvm (issue 11 item 1.d), in the manner of kvm-unit-tests: its
// bytes and the checks are tested with injected runs; the live run needs /dev/kvm and the patched
// QEMU (`build-patched.sh --cached-only`) and SKIPs with the reason otherwise.
import fs from 'node:fs'
import t from 'tap'
import { MITI_CTRL_BHB_CLEAR_SEQ_S_USED, SPEC_CTRL_IBRS, SPEC_CTRL_BHI_DIS_S } from '../../contract/registers.js'
import type { HostCaps } from '../../contract/host-caps.js'
import { assemble, asm } from '../vmm/kvm/asm16.js'
import { BIOS_SEG, BIOS_SIZE, defaultBenches, exitStatus, EXIT_OK, kvmPayloadImage, kvmPayloadProgram, parseRecords, RECORD_SIZE, TAG, type PayloadParams } from './kvm-payload.js'
import { checkKvmPayload, STEP_TAGS, type PayloadFacts } from './kvm-payload-checks.js'
import type { PayloadRun } from './kvm-payload-run.js'
import { runKvmPayload } from './kvm-payload-run.js'
import { catalogHostCaps, hostCapsProps } from './patched.js'
import { findPatchedQemu, tierPaths } from './tier.js'

const base = { ctrlGood: MITI_CTRL_BHB_CLEAR_SEQ_S_USED, ctrlBad: 1n << 2n, specCtrl: SPEC_CTRL_IBRS }
const params = (loops: number): PayloadParams => ({ ...base, loops, benches: defaultBenches(base) })

t.test('assembler: rel16 call and rel8 loop land on their labels', async t => {
  const { code, labels } = assemble([asm.call('f'), asm.label('l'), asm.loop('l'), asm.label('f'), asm.ret()])
  t.same([...code], [0xe8, 0x02, 0x00, 0xe2, 0xfe, 0xc3])
  t.equal(labels.f, 5)
  t.throws(() => assemble([asm.label('x'), asm.label('x')]), /defined twice/)
})

t.test('image: 64 KiB, jmp far F000:start at the reset vector, IVT entries on their handlers', async t => {
  const p = params(10)
  const img = kvmPayloadImage(p)
  const { code, labels } = kvmPayloadProgram(p)
  t.equal(img.length, BIOS_SIZE)
  t.same([...img.slice(0xfff0, 0xfff5)], [0xea, labels.start! & 0xff, labels.start! >> 8, BIOS_SEG & 0xff, BIOS_SEG >> 8])
  // mov word [4*13], gp_handler: C7 06 34 00 lo hi
  const at = (v: number, h: string) => [0xc7, 0x06, 4 * v, 0x00, labels[h]! & 0xff, labels[h]! >> 8]
  const has = (needle: number[]) => code.some((_, i) => needle.every((b, j) => code[i + j] === b))
  t.ok(has(at(13, 'gp_handler')), '#GP vector')
  t.ok(has(at(2, 'unexpected')), 'NMI vector')
  t.ok(has(at(6, 'unexpected')), '#UD vector')
  t.throws(() => kvmPayloadProgram(params(0)), /loops/)
})

t.test('records: 10 bytes each, little endian, trailing bytes counted', async t => {
  const b = new Uint8Array(RECORD_SIZE + 3)
  b.set([0x63, 0x01, 0, 0, 0, 0, 0, 0, 0x80, 1])
  const r = parseRecords(b)
  t.equal(r.trailing, 3)
  t.same(r.records[0], { tag: 'c', eax: 1, edx: 0x80000000, value: (0x80000000n << 32n) | 1n, fault: true })
})

// An injected run: what a correct QEMU on a host with SPEC_CTRL (or without it) reports.
const caps: HostCaps = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }
const facts = (loops: number): PayloadFacts => ({ params: params(loops), mitiEnum: 3n, caps, force: { mask: 0n, value: 0n } })
const SPEC_CTRL_FILTERED = [{ 'cpuid-input-eax': 7, 'cpuid-input-ecx': 0, 'cpuid-register': 'EDX', features: 1 << 26 }]
function fakeRun(o: { spec: boolean; held: boolean; badCtrlAccepted?: boolean; kvmSpec?: boolean }): PayloadRun {
  const loops = 5
  const r = (tag: string, value: bigint, fault = false) => ({ tag, eax: Number(value & 0xffffffffn), edx: Number(value >> 32n), value, fault })
  const ctrl = o.badCtrlAccepted ? base.ctrlBad : base.ctrlGood
  const eff = (o.spec ? SPEC_CTRL_IBRS : 0n) | SPEC_CTRL_BHI_DIS_S
  const records = [
    r(TAG.cpuid70, (BigInt(o.spec ? 1 << 26 : 0) | (1n << 29n)) << 32n), r(TAG.cpuid72, 0n), r(TAG.archCap, 1n << 63n), r(TAG.virtEnum, 1n), r(TAG.mitiEnum, 3n),
    r(TAG.ctrlWriteGood, base.ctrlGood), r(TAG.ctrlReadGood, base.ctrlGood), r(TAG.ctrlWriteBad, base.ctrlBad, !o.badCtrlAccepted), r(TAG.ctrlReadBad, ctrl),
    r(TAG.specWrite, base.specCtrl, !o.spec), r(TAG.specRead, o.spec ? base.specCtrl : 0n, !o.spec), r(TAG.virtEnumWrite, 0n, true), r(TAG.archCapWrite, 0n, true),
    ...defaultBenches(base).flatMap(b => [r(TAG.benchStart, (BigInt(loops) << 32n) | BigInt(b.id)), r(TAG.benchEnd, 5000n), r(TAG.benchFaults, (BigInt(loops) << 32n) | BigInt(b.msr === 0x48 && !o.spec ? loops : 0))]),
    r(TAG.done, 0n),
  ]
  return {
    argv: [], records, seenMs: records.map((_, i) => i), trailing: 0, qomErrors: [], exitCode: exitStatus(EXIT_OK), signal: null, stderr: '', wallMs: 1,
    qom: {
      'spec-ctrl': o.spec, 'arch-capabilities': true, 'filtered-features': (o.kvmSpec ?? o.spec) ? [] : SPEC_CTRL_FILTERED, 'virt-miti-ctrl': Number(ctrl), 'spec-ctrl-shadow': o.spec ? 1 : 0,
      'spec-ctrl-forced-mask': Number(SPEC_CTRL_BHI_DIS_S), 'spec-ctrl-forced-value': Number(SPEC_CTRL_BHI_DIS_S), 'spec-ctrl-effective': Number(eff),
      'spec-ctrl-kvm-pushes': 1 + (o.spec ? 1 : 0) + loops * (o.spec ? 2 : 1), 'spec-ctrl-kvm-readback': o.held ? Number(eff) : 0,
    },
  }
}

t.test('checks: a correct QEMU on a host that holds SPEC_CTRL passes every point', async t => {
  const { points } = checkKvmPayload(fakeRun({ spec: true, held: true }), facts(5))
  t.same(points.filter(p => !p.ok).map(p => p.name), [])
  t.equal(points.filter(p => p.skip).length, 0)
})

t.test('checks: without SPEC_CTRL in QEMU\'s table 0x48 must #GP, and the hold check SKIPs with the reason', async t => {
  const { points } = checkKvmPayload(fakeRun({ spec: false, held: false }), facts(5))
  t.same(points.filter(p => !p.ok).map(p => p.name), [])
  t.match(points.find(p => p.skip)?.skip, /does not offer SPEC_CTRL/)
})

t.test('checks: SPEC_CTRL kept in QEMU\'s table by x-force-features on a KVM without it: shadow checked, hold SKIPs', async t => {
  const { points } = checkKvmPayload(fakeRun({ spec: true, held: false, kvmSpec: false }), facts(5))
  t.same(points.filter(p => !p.ok).map(p => p.name), [])
  t.ok(points.some(p => p.ok && /returns the shadow/.test(p.name)))
  t.match(points.find(p => p.skip)?.skip, /filtered the CPUID bit/)
})

t.test('checks: a host with SPEC_CTRL that reads back another value fails; an accepted bad CTRL write fails', async t => {
  t.ok(checkKvmPayload(fakeRun({ spec: true, held: false }), facts(5)).points.some(p => !p.ok && /KVM holds/.test(p.name)))
  const bad = checkKvmPayload(fakeRun({ spec: true, held: true, badCtrlAccepted: true }), facts(5)).points.filter(p => !p.ok).map(p => p.name)
  t.ok(bad.some(n => /not enumerated/.test(n)), 'the #GP rule')
  t.ok(bad.some(n => /virt-miti-ctrl/.test(n)), 'QEMU\'s CTRL')
  t.ok(checkKvmPayload({ ...fakeRun({ spec: true, held: true }), records: [] }, facts(5)).points.some(p => !p.ok), 'no records')
  t.equal(STEP_TAGS.length, 13)
})

const patchedAny = findPatchedQemu(tierPaths()?.patchedScript)
const patched = fs.existsSync('/dev/kvm') ? patchedAny : { unavailable: 'no /dev/kvm on this machine' }
const liveSkip = 'unavailable' in patched ? patched.unavailable : false

t.test('checks: under TCG nothing is pushed into KVM, and a push there fails', async t => {
  const r = fakeRun({ spec: true, held: false })
  const tcg = (pushes: number) => checkKvmPayload({ ...r, qom: { ...r.qom, 'spec-ctrl-kvm-pushes': pushes } }, { ...facts(5), accel: 'tcg' }).points
  t.same(tcg(0).filter(p => !p.ok).map(p => p.name), [])
  t.ok(tcg(0).every(p => !/KVM holds/.test(p.name)), 'no hold check under TCG')
  t.ok(tcg(3).some(p => !p.ok && /TCG/.test(p.name)))
})

// The same payload through TCG: the emulation patch 0005 shares between TCG and KVM (needs no /dev/kvm).
const tcgSkip = 'unavailable' in patchedAny ? patchedAny.unavailable : false
t.test('live: the payload under -accel tcg with virt-miti=on (the shared emulation)', { skip: tcgSkip }, async t => {
  const q = patchedAny as { path: string }
  const hc = catalogHostCaps('sapphire-rapids')
  if (typeof hc === 'string') return t.fail(hc)
  const f: PayloadFacts = { params: params(200), mitiEnum: 3n, caps: hc, force: { mask: 0n, value: 0n }, accel: 'tcg' }
  const cpu = ['Cascadelake-Server', '+spec-ctrl', '+arch-capabilities', 'virt-miti=on', 'virt-miti-enum=3', ...hostCapsProps(hc)].join(',')
  const run = await runKvmPayload({ qemu: q.path, accel: 'tcg', cpu, params: f.params, timeoutMs: 120_000 })
  const { points, comments } = checkKvmPayload(run, f)
  for (const c of comments) t.comment(c)
  for (const p of points) t.ok(p.ok, p.name, p.ok ? {} : { diag: p.diag })
})

// Two models: as KVM offers it (QEMU drops what KVM lacks), and with x-force-features=on, so that
// SPEC_CTRL stays in QEMU's table and its shadow path runs even on a host whose KVM lacks it.
for (const force of [false, true]) {
  t.test(`live: the payload under -accel kvm with virt-miti=on${force ? ', x-force-features=on' : ''}`, { skip: liveSkip }, async t => {
    const q = patched as { path: string }
    const host = 'sapphire-rapids'
    const hc = catalogHostCaps(host)
    if (typeof hc === 'string') return t.fail(hc)
    const loops = 2000
    const f: PayloadFacts = { params: params(loops), mitiEnum: 3n, caps: hc, force: { mask: 0n, value: 0n } }
    const cpu = ['qemu64', '+spec-ctrl', '+arch-capabilities', ...(force ? ['x-force-features=on'] : []), 'virt-miti=on', 'virt-miti-enum=3', ...hostCapsProps(hc)].join(',')
    const run = await runKvmPayload({ qemu: q.path, cpu, params: f.params, timeoutMs: 120_000 })
    const { points, comments } = checkKvmPayload(run, f)
    t.comment(`qemu ${q.path} -cpu ${cpu}; catalog host ${host}; ${run.records.length} records in ${run.wallMs.toFixed(0)} ms`)
    for (const c of comments) t.comment(c)
    for (const p of points) {
      if (p.skip) t.ok(true, p.name, { skip: p.skip })
      else t.ok(p.ok, p.name, p.ok ? {} : { diag: p.diag })
    }
  })
}
