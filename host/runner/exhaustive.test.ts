// The exhaustive matrix: its independent restatement agrees with hand-worked cases from
// contract/CONTRACT.md, the memoized replay agrees with the whole chain, and a broken VMM half is caught.
import t from 'tap'
import { parseSpectreV2 } from '../../contract/sysfs-spectre-v2.js'
import { caseCount, cases, expectCase, guestParts, judgeCase, replayCase, runCase, runExhaustive, type Case } from './exhaustive.js'
import { kernelState } from './kernel-model.js'

const base: Case = {
  guest: { ibrsAll: true, rrsba: true, bhiNo: false, bhiCtrl: false, rrsbaCtrl: false, hypervisor: true, oldKernel: false },
  bhi: 'on', v2: 'auto',
  vmm: { advertise: true, mitiEnum: 3n, unknownMsr: 'fault' },
  host: { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true },
  force: { bhi: 'free', rrsba: 'free' },
}
const BHI_DIS_S = 0x400n, RRSBA_DIS_S = 0x40n

t.test('restatement, worked by hand from contract/CONTRACT.md sections 4-6', async t => {
  // Migration pool: eIBRS guest without BHI_CTRL -> SW loop -> CTRL bit 0 -> BHI_DIS_S on an SPR-like host.
  t.same(expectCase(base), { refused: false, bhb: true, ret: false, enumerated: true, ctrl: 1n, mask: BHI_DIS_S, value: BHI_DIS_S })
  // BHI_NO host: nothing derived (section 5 "and not host_bhi_no").
  t.same(expectCase({ ...base, host: { ...base.host, bhiNo: true } }).mask, 0n)
  // Userspace holds BHI_DIS_S off: mask keeps it, value does not (section 5 precedence).
  const off = expectCase({ ...base, force: { bhi: 'off', rrsba: 'free' } })
  t.same([off.mask, off.value], [BHI_DIS_S, 0n])
  // Forcing BHI_DIS_S on without host BHI_CTRL is refused (section 5 supported bits).
  t.equal(expectCase({ ...base, host: { ...base.host, bhiCtrl: false }, force: { bhi: 'on', rrsba: 'free' } }).refused, true)
  // spectre_v2=retpoline, RRSBA without RRSBA_CTRL: both retpoline and the loop -> both bits, both controls.
  const both = expectCase({ ...base, v2: 'retpoline' })
  t.same([both.ctrl, both.mask], [3n, BHI_DIS_S | RRSBA_DIS_S])
  // ENUM without bit 1: only bit 0 written (section 4 read-modify-write of enumerated bits).
  t.equal(expectCase({ ...base, v2: 'retpoline', vmm: { ...base.vmm, mitiEnum: 1n } }).ctrl, 1n)
  // Not advertised: nothing written, nothing derived.
  t.same(expectCase({ ...base, vmm: { advertise: false, mitiEnum: 0n, unknownMsr: 'read-zero-ignore-write' } }).ctrl, 0n)
  // Guest with BHI_CTRL: BHI_DIS_S itself -> bit 0 clear.
  t.equal(expectCase({ ...base, guest: { ...base.guest, bhiCtrl: true } }).bhb, false)
  // spectre_bhi=vmexit: loop on VM exit only -> bit 0 clear.
  t.equal(expectCase({ ...base, bhi: 'vmexit' }).bhb, false)
  // BHI_NO guest: a current kernel still runs the loop (9f725eec8fc0), an older one is "Not affected".
  t.equal(expectCase({ ...base, guest: { ...base.guest, bhiNo: true } }).bhb, true)
  t.equal(expectCase({ ...base, guest: { ...base.guest, bhiNo: true, oldKernel: true } }).bhb, false)
})

t.test('kernel model lines parse to the BHI state they claim', async t => {
  const bad: string[] = []
  const lines = new Set<string>()
  for (const c of guestParts()) {
    const k = kernelState(c.guest, c.bhi, c.v2)
    lines.add(k.spectreV2)
    const p = parseSpectreV2(k.spectreV2)
    if (p.unknown.length) bad.push(`not parsed: ${k.spectreV2}`)
    if ((p.bhi === 'sw-loop') !== k.usesSwLoop) bad.push(`usesSwLoop disagrees with the parser for ${k.spectreV2}`)
    if ((p.mode === 'retpoline') !== k.usesRetpoline) bad.push(`usesRetpoline disagrees with the parser for ${k.spectreV2}`)
  }
  t.same(bad, [], 'every generated line parses, to the state the model claims')
  t.ok(lines.size >= 10, `${lines.size} distinct sysfs lines generated`)
  t.equal(kernelState({ ibrsAll: false, rrsba: false, rrsbaCtrl: false, bhiCtrl: false, hypervisor: false }, 'on', 'auto').spectreV2.endsWith('BHI: Not affected'), true, 'bare metal without eIBRS: not affected')
})

t.test('memoized replay equals the whole chain on a spread of cases', async t => {
  let n = 0, k = 0
  for (const c of cases()) {
    if (k++ % 1999 !== 0) continue
    n++
    t.same(replayCase(c), runCase(c), `case ${k}`)
    t.same(runCase(c), [], `case ${k} conforms`)
  }
  t.ok(n >= 200, `${n} cases compared`)
})

t.test('a VMM half that forces nothing is caught, naming the difference', async t => {
  const g = { kernel: kernelState(base.guest, base.bhi, base.v2), report: { enumerated: true } as never, exitCode: 0, decision: { bhb: true, ret: false }, ops: [], trace: '' }
  const bad = judgeCase(base, g, { refused: false, ctrl: 1n, mask: 0n, value: 0n, checkFailures: [], afterReset: { ctrl: 0n, mask: 0n, value: 0n } })
  t.same(bad, ['forced mask [] (0x0), expected [BHI_DIS_S] (0x400)', 'forced value [] (0x0), expected [BHI_DIS_S] (0x400)'])
  const refusedOk = judgeCase({ ...base, host: { ...base.host, bhiCtrl: false }, force: { bhi: 'on', rrsba: 'free' } }, g, { refused: false, ctrl: 1n, mask: 0n, value: 0n, checkFailures: [], afterReset: { ctrl: 0n, mask: 0n, value: 0n } })
  t.match(refusedOk[0], /accepted a userspace force value outside the supported bits/)
})

t.test('the whole matrix conforms; count and time are reported', async t => {
  const r = runExhaustive()
  t.equal(r.cases, caseCount())
  t.equal(r.cases, 746496)
  t.equal(r.guestRuns, 5184)
  t.same((r.point.diag as { firstFailures?: unknown })?.firstFailures ?? [], [], 'no case differs from the restatement')
  t.equal(r.point.ok, true, 'the TAP point is ok')
  t.comment(`exhaustive: ${r.cases} cases, ${r.guestRuns} guest runs, ${r.vmmRuns} VMM runs, ${r.ms.toFixed(0)} ms wall, ${r.cpuMs.toFixed(0)} ms CPU`)
})
