import t from 'tap'
import { runReport, cpuList, REPORT_SCHEMA, type ReportOptions } from './report.js'
import { fakePlatform, miniProbe, handDecision, type FakeOptions } from '../../testing/fake-platform.js'
import { GuestReport, REPORT_SCHEMA_ID } from '../../contract/report-json.js'
import { MSR, ARCH_CAP_VIRTUAL_ENUM } from '../../contract/registers.js'
import type { MitiCtrlWish } from '../../contract/miti-ctrl.js'
import type { Platform } from '../platform.js'

const NOW = new Date('2026-11-26T13:00:00.000Z')
const OPTS: ReportOptions = { dryRun: false, now: NOW, agentVersion: '0.1.0' }
const BOTH: MitiCtrlWish = { bhbClearSeqSUsed: true, retpolineSUsed: true }

function run(o: FakeOptions, wish: MitiCtrlWish = BOTH, opts: Partial<ReportOptions> = {}) {
  const p = fakePlatform(o)
  const facts = miniProbe(p)
  const r = runReport(p, facts, handDecision(facts, wish), { ...OPTS, ...opts })
  const parsed = GuestReport.safeParse(r.report)
  if (!parsed.success) throw new Error('report breaks its schema: ' + JSON.stringify(parsed.error.issues))
  return { p, ...r }
}

t.test('enumerated VMM: every CPU written with the wanted value and read back', async t => {
  const { p, report, exitCode } = run({ ncpus: 4, mitiEnum: 3n })
  t.equal(exitCode, 0)
  t.equal(report.enumerated, true)
  t.equal(report.complete, true)
  t.same(report.cpus.map(c => [c.cpu, c.outcome, c.before, c.wanted, c.written, c.readBack]),
    [0, 1, 2, 3].map(c => [c, 'written', '0x0', '0x3', '0x3', '0x3']))
  t.same([...p.ctrl.values()], [3n, 3n, 3n, 3n])
  t.equal(report.timestamp, '2026-11-26T13:00:00.000Z')
})

t.test('only enumerated bits change: ENUM=1 leaves bit 1 alone', async t => {
  const { report } = run({ mitiEnum: 1n })
  t.same(report.cpus.map(c => c.wanted), ['0x1', '0x1'])
})

t.test('wish false clears an enumerated bit that was set', async t => {
  const p = fakePlatform({ mitiEnum: 3n })
  p.ctrl.set(0, 3n); p.ctrl.set(1, 3n)
  const facts = miniProbe(p)
  const r = runReport(p, facts, handDecision(facts, { bhbClearSeqSUsed: false, retpolineSUsed: true }), OPTS)
  t.same(r.report.cpus.map(c => [c.before, c.written]), [['0x3', '0x2'], ['0x3', '0x2']])
})

t.test('second run is a no-op: outcome unchanged, nothing written', async t => {
  const p = fakePlatform({ ncpus: 3 })
  const f1 = miniProbe(p)
  runReport(p, f1, handDecision(f1, BOTH), OPTS)
  const n = p.writes.length
  const f2 = miniProbe(p)
  const r2 = runReport(p, f2, handDecision(f2, BOTH), OPTS)
  t.equal(p.writes.length, n, 'no write on the second run')
  t.same(r2.report.cpus.map(c => c.outcome), ['unchanged', 'unchanged', 'unchanged'])
  t.same(r2.report.cpus.map(c => c.readBack), ['0x3', '0x3', '0x3'])
  t.equal(r2.exitCode, 0)
  t.equal(r2.report.complete, true)
})

t.test('--dry-run writes nothing and says what it would write', async t => {
  const { p, report, exitCode, notes } = run({ ncpus: 2 }, BOTH, { dryRun: true })
  t.same(p.writes, [])
  t.same(report.cpus.map(c => [c.outcome, c.wanted, c.written]), [['dry-run', '0x3', undefined], ['dry-run', '0x3', undefined]])
  t.equal(report.dryRun, true)
  t.equal(report.complete, false, 'the CPUs do not hold the wanted value yet')
  t.equal(exitCode, 0)
  t.match(notes.join('\n'), /MITI_CTRL 0x0 on cpu 0-1/)
})

t.test('not enumerated (ARCH_CAP bit 63 clear): nothing read at 0x5000000x, nothing written, exit 0', async t => {
  const reads: number[] = []
  const { p, report, exitCode, notes } = run({ archCap: 0n, unknownMsr: 'read-zero', rdmsrHook: (_c, i) => { reads.push(i); return undefined } })
  t.same(p.writes, [])
  t.equal(reads.filter(i => i >= MSR.VIRTUAL_ENUMERATION).length, 0, 'never probed 0x5000000x without bit 63')
  t.same(report.cpus.map(c => c.outcome), ['not-enumerated', 'not-enumerated'])
  t.equal(report.enumerated, false)
  t.equal(report.complete, true)
  t.equal(exitCode, 0)
  t.match(notes[0], /bit 63 \(VIRTUAL_ENUM\) is clear/)
  t.ok(report.decision.reasons.some(r => r.rule === 'not-enumerated'))
})

t.test('a VMM reading 0 for unknown MSRs does not fool the report, even if the decision is wrong', async t => {
  // read-zero VMM with bit 63 presented but no emulation: VIRTUAL_ENUMERATION reads 0.
  const p = fakePlatform({ advertise: false, unknownMsr: 'read-zero' })
  const facts = miniProbe(p)
  const d = handDecision(facts, BOTH)
  // A buggy decision that claims enumeration must still not lead to a write.
  const lying = { ...d, enumerated: true, virt: d.virt.map(v => ({ ...v, enumerated: true, reached: 'miti-enum' as const, mitiEnum: 3n })) }
  const r = runReport(p, facts, lying, OPTS)
  t.same(p.writes, [])
  t.same(r.report.cpus.map(c => c.outcome), ['not-enumerated', 'not-enumerated'])
  t.equal(r.exitCode, 0)
  t.match(r.notes[0], /0x50000000\) bit 0 is clear/)
})

t.test('no CPUID.(7,0):EDX[29]: not enumerated, exit 0', async t => {
  const { report, exitCode } = run({ archCap: null })
  t.same(report.cpus.map(c => c.outcome), ['not-enumerated', 'not-enumerated'])
  t.equal(exitCode, 0)
})

t.test('msr driver missing: could not tell, exit 3, reason names the errno', async t => {
  const { report, exitCode, notes } = run({ rdmsrHook: () => ({ ok: false, fault: { errno: 'ENOENT', message: '/dev/cpu/0/msr: no such file (modprobe msr)' } }) })
  t.equal(exitCode, 3)
  t.same(report.cpus.map(c => [c.outcome, c.fault?.errno, c.fault?.step]), [['fault', 'ENOENT', 'rdmsr 0x10a'], ['fault', 'ENOENT', 'rdmsr 0x10a']])
  t.match(notes.join('\n'), /modprobe msr/)
  t.equal(report.complete, false)
})

t.test('VIRTUAL_ENUMERATION faults although bit 63 is set: violation, exit 1', async t => {
  const { exitCode, report } = run({ rdmsrHook: (_c, i) => (i === MSR.VIRTUAL_ENUMERATION ? { ok: false, fault: { errno: 'EIO', message: 'gp' } } : undefined) })
  t.equal(exitCode, 1)
  t.same(report.cpus.map(c => c.fault?.step), ['rdmsr 0x50000000', 'rdmsr 0x50000000'])
})

t.test('partial failure: one CPU faults on the write, the others are written; report says who holds what', async t => {
  const { report, exitCode, notes, p } = run({ ncpus: 4, wrmsrHook: (c) => (c === 2 ? { ok: false, fault: { errno: 'EIO', message: '#GP' } } : undefined) })
  t.equal(exitCode, 1)
  t.same(report.cpus.map(c => c.outcome), ['written', 'written', 'fault', 'written'])
  t.same(report.cpus[2], { cpu: 2, outcome: 'fault', mitiEnum: '0x3', before: '0x0', wanted: '0x3', readBack: '0x0', fault: { step: 'write', errno: 'EIO', message: '#GP' } })
  t.equal(report.complete, false)
  t.equal(p.ctrl.get(2), 0n)
  t.ok(notes.includes('MITI_CTRL 0x3 on cpu 0-1,3'), notes.join('|'))
  t.ok(notes.includes('MITI_CTRL 0x0 on cpu 2'), notes.join('|'))
})

t.test('partial failure: read-back differs on one CPU', async t => {
  const p = fakePlatform({ ncpus: 2, wrmsrHook: (c, _i, v) => (c === 1 ? (p.ctrl.set(1, v & 1n), { ok: true }) : undefined) })
  const facts = miniProbe(p)
  const r = runReport(p, facts, handDecision(facts, BOTH), OPTS)
  t.equal(r.exitCode, 1)
  t.same(r.report.cpus[1], { cpu: 1, outcome: 'readback-mismatch', mitiEnum: '0x3', before: '0x0', wanted: '0x3', written: '0x3', readBack: '0x1' })
  t.match(r.notes.join('\n'), /cpu 1: wrote 0x3 but read back 0x1/)
})

t.test('partial failure: a CPU goes offline between the probe and the write', async t => {
  const p = fakePlatform({ ncpus: 3 })
  const facts = miniProbe(p)
  const d = handDecision(facts, BOTH)
  const wrapped: Platform = { ...p, cpus: () => [0, 1, 2], rdmsr: p.rdmsr, wrmsr: p.wrmsr }
  p.online.splice(1, 1) // cpu 1 goes away after the probe, before the report's reads
  const r = runReport(wrapped, facts, d, OPTS)
  t.equal(r.exitCode, 1)
  t.same(r.report.cpus.map(c => c.outcome), ['written', 'offline', 'written'])
  t.equal(r.report.cpus[1].fault?.errno, 'ENXIO')
  t.match(r.notes.join('\n'), /MITI_CTRL 0x3 on cpu 0,2/)
  t.match(r.notes.join('\n'), /MITI_CTRL unknown on cpu 1/)
})

t.test('a CPU that came online after the probe: could not tell, exit 3', async t => {
  const p = fakePlatform({ ncpus: 2 })
  const facts = miniProbe(p)
  p.online.push(2); p.ctrl.set(2, 0n)
  const r = runReport(p, facts, handDecision(facts, BOTH), OPTS)
  t.equal(r.exitCode, 3)
  t.same(r.report.cpus.map(c => c.outcome), ['written', 'written', 'fault'])
  t.match(r.report.cpus[2].fault?.message ?? '', /not probed/)
})

t.test('enumeration on some CPUs only: the others cannot carry the report, exit 1', async t => {
  const { report, exitCode, notes } = run({ ncpus: 3, rdmsrHook: (c, i) => (c === 2 && i === MSR.ARCH_CAPABILITIES ? { ok: true, value: 0n } : undefined) })
  t.equal(exitCode, 1)
  t.same(report.cpus.map(c => c.outcome), ['written', 'written', 'not-enumerated'])
  t.equal(report.enumerated, false)
  t.match(notes.join('\n'), /not on cpu 2/)
})

t.test('unknown wish for an enumerated bit: bit left alone, exit 3', async t => {
  const { report, exitCode } = run({}, { bhbClearSeqSUsed: 'unknown', retpolineSUsed: true })
  t.equal(exitCode, 3)
  t.same(report.cpus.map(c => c.written), ['0x2', '0x2'])
  t.ok(report.decision.reasons.some(r => r.rule === 'wish-unknown'))
})

t.test('CTRL holding a non-enumerated bit: gate refuses the write, exit 1', async t => {
  const p = fakePlatform({ mitiEnum: 1n })
  p.ctrl.set(0, 4n)
  const facts = miniProbe(p)
  const r = runReport(p, facts, handDecision(facts, BOTH), OPTS)
  t.equal(r.exitCode, 1)
  t.same(r.report.cpus[0].fault?.step, 'gate')
  t.same(p.writes.filter(w => w.cpu === 0), [], 'refused write never reached the platform')
})

t.test('--cpu subset: only that CPU is read and written', async t => {
  const { report, p } = run({ ncpus: 4 }, BOTH, { cpus: [2] })
  t.same(report.cpus.map(c => c.cpu), [2])
  t.same(p.writes.map(w => w.cpu), [2])
})

t.test('identity: vmUuid lower-cased, bootId, kernel release', async t => {
  const { report } = run({ text: {
    '/sys/class/dmi/id/product_uuid': 'A1B2C3D4-0000-4000-8000-00000000ABCD\n',
    '/proc/sys/kernel/random/boot_id': '0f0e0d0c-0b0a-4909-8807-060504030201\n',
  } })
  t.equal(report.vmUuid, 'a1b2c3d4-0000-4000-8000-00000000abcd')
  t.equal(report.bootId, '0f0e0d0c-0b0a-4909-8807-060504030201')
  t.equal(report.kernelRelease, '6.1.0-test')
  const { report: r2 } = run({ text: { '/sys/class/dmi/id/product_uuid': 'Not Settable' } })
  t.equal(r2.vmUuid, undefined, 'garbage UUID omitted')
})

t.test('a recording Platform wrapper sees only gated CTRL writes with enumerated bits', async t => {
  for (const mitiEnum of [0n, 1n, 2n, 3n]) {
    for (const before of [0n, 1n, 2n, 3n]) {
      for (const wish of [BOTH, { bhbClearSeqSUsed: false, retpolineSUsed: false }, { bhbClearSeqSUsed: true, retpolineSUsed: 'unknown' as const }]) {
        const p = fakePlatform({ ncpus: 2, mitiEnum: 3n, rdmsrHook: (_c, i) => (i === MSR.VIRTUAL_MITIGATION_ENUM ? { ok: true, value: mitiEnum } : undefined) })
        p.ctrl.set(0, before & mitiEnum); p.ctrl.set(1, before & mitiEnum)
        const facts = miniProbe(p)
        runReport(p, facts, handDecision(facts, wish), OPTS)
        for (const w of p.writes) {
          t.equal(w.index, MSR.VIRTUAL_MITIGATION_CTRL)
          t.equal(w.value & ~mitiEnum, 0n, `value ${w.value} within ENUM ${mitiEnum}`)
        }
      }
    }
  }
})

t.test('cpuList compresses ranges', async t => {
  t.equal(cpuList([0, 1, 2, 3, 5, 7, 8]), '0-3,5,7-8')
  t.equal(cpuList([]), '')
})

t.test('256 vCPUs: every CPU written, report valid', async t => {
  const { report, exitCode } = run({ ncpus: 256, archCap: ARCH_CAP_VIRTUAL_ENUM })
  t.equal(exitCode, 0)
  t.equal(report.cpus.length, 256)
  t.ok(report.cpus.every(c => c.outcome === 'written'))
})

t.test('the zod-free schema id equals the contract\'s', async t => {
  t.equal(REPORT_SCHEMA, REPORT_SCHEMA_ID)
})

t.test('MITI_ENUM faults although VIRTUAL_ENUMERATION bit 0 is set: violation, exit 1; EACCES there: could not tell, exit 3', async t => {
  const eio = run({ rdmsrHook: (_c, i) => (i === MSR.VIRTUAL_MITIGATION_ENUM ? { ok: false, fault: { errno: 'EIO', message: 'gp' } } : undefined) })
  t.equal(eio.exitCode, 1)
  t.same(eio.report.cpus.map(c => c.fault?.step), ['rdmsr 0x50000001', 'rdmsr 0x50000001'])
  t.same(eio.p.writes, [])
  const eacces = run({ rdmsrHook: (_c, i) => (i === MSR.VIRTUAL_MITIGATION_ENUM ? { ok: false, fault: { errno: 'EACCES', message: 'not root' } } : undefined) })
  t.equal(eacces.exitCode, 3)
})

t.test('CTRL read faults on an enumerated CPU: violation, nothing written there', async t => {
  let probed = false
  const p = fakePlatform({ rdmsrHook: (c, i) => (probed && c === 1 && i === MSR.VIRTUAL_MITIGATION_CTRL ? { ok: false, fault: { errno: 'EIO', message: 'gp' } } : undefined) })
  const facts = miniProbe(p); probed = true
  const r = runReport(p, facts, handDecision(facts, BOTH), OPTS)
  t.equal(r.exitCode, 1)
  t.same(r.report.cpus[1], { cpu: 1, outcome: 'fault', mitiEnum: '0x3', fault: { step: 'read-ctrl', errno: 'EIO', message: 'gp' } })
  t.same(p.writes.map(w => w.cpu), [0])
})
