// The verdict model (issue 12, contract/CONTRACT.md section 8) over the replay fixtures (guest/fixtures/),
// and over facts varied one fact at a time from them: what the kernel says, the VMM's enumeration,
// CTRL, the agent's report record, lockdown, bare metal vs VM.
import t from 'tap'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { decide } from './decide.js'
import type { Facts } from './facts.js'
import { FINDINGS, FINDING_BY_ID, findingDef, remedyFor } from './findings.js'
import { VERDICT_RULES, exitCodeOf, judge, lockdownMode, worst, type GuestVerdict, type RecordCpu } from './verdict.js'
import { readFactsFile } from '../guest/facts-file.js'

const dir = join(fileURLToPath(import.meta.url), '..', '..', 'guest', 'fixtures')
const fixture = (name: string): Facts => readFactsFile(join(dir, `${name}.json`))
const run = (f: Facts, o: { ctrlNow?: Map<number, bigint | undefined>; record?: { origin: string; cpus: RecordCpu[] } } = {}): GuestVerdict =>
  judge({ facts: f, decision: decide(f), ...o })
const of = (v: GuestVerdict, c: 'bhi' | 'retpoline') => v.concerns.find(x => x.concern === c)!
const ids = (v: GuestVerdict) => [...new Set(v.findings.filter(f => f.effect !== 'note').map(f => f.id))].sort()

/** The same facts with another spectre_v2 line / CTRL / ENUM / lockdown / hypervisor bit. */
function withLine(f: Facts, line: string): Facts { return { ...f, kernel: { ...f.kernel, vulnerabilities: { ...f.kernel.vulnerabilities, spectre_v2: line } } } }
function withMsr(f: Facts, index: string, value: bigint): Facts {
  return { ...f, cpus: f.cpus.map(c => ({ ...c, msr: { ...c.msr, [index]: { value } } })) }
}

const LINE = (mode: string, bhi: string) => `${mode}; IBPB: conditional; RSB filling; PBRSB-eIBRS: SW sequence; ${bhi}`
const EIBRS = 'Mitigation: Enhanced / Automatic IBRS'

t.test('every fixture gets a verdict; the exit code follows it (0 protected, 1 at risk or vulnerable, 3 unknown)', async t => {
  const names = readdirSync(dir).filter(n => n.endsWith('.json') && n !== 'expected.json')
  t.ok(names.length >= 20, `${names.length} fixtures`)
  for (const n of names) {
    const v = run(readFactsFile(join(dir, n)))
    t.equal(v.concerns.length, 2, `${n}: two concerns`)
    t.equal(v.verdict, worst(v.concerns.map(c => c.verdict)), `${n}: guest verdict is the worst concern`)
    t.equal(exitCodeOf(v.verdict), v.verdict === 'protected' ? 0 : v.verdict === 'unknown' ? 3 : 1)
    for (const f of v.findings) t.ok(FINDING_BY_ID.has(f.id), `${n}: ${f.id} is in the findings table`)
  }
})

t.test('section 1: the *-guest-noenum SW-loop fixtures are at risk: the VMM cannot be told', async t => {
  for (const m of ['skylake-sp', 'cascade-lake', 'ice-lake-sp']) {
    const f = fixture(`${m}-guest-noenum`)
    t.match(f.kernel.vulnerabilities['spectre_v2'], /BHI: SW loop, KVM: SW loop/, `${m}: the kernel uses the SW loop`)
    const v = run(f)
    t.equal(v.verdict, 'at-risk', m)
    t.equal(of(v, 'bhi').vmm, 'cannot-be-told')
    t.same(of(v, 'bhi').findings, ['vmm.not-enumerated'])
    t.equal(exitCodeOf(v.verdict), 1)
  }
})

t.test('section 1: BHI_DIS_S fixtures are protected on any host, enumerated or not', async t => {
  for (const m of ['sapphire-rapids', 'granite-rapids']) {
    for (const variant of ['baremetal', 'guest-enum', 'guest-noenum']) {
      const v = run(fixture(`${m}-${variant}`))
      t.equal(of(v, 'bhi').verdict, 'protected', `${m}-${variant}: BHI`)
      t.equal(of(v, 'bhi').rule, 'bhi.bhi-dis-s')
      t.equal(v.verdict, 'protected', `${m}-${variant}`)
      t.equal(exitCodeOf(v.verdict), 0)
    }
  }
})

t.test('the VMM can back the SW loop but was not told yet (CTRL bit 0 clear): at risk, report.not-reported', async t => {
  const v = run(fixture('ice-lake-sp-guest-enum'))
  t.equal(of(v, 'bhi').verdict, 'at-risk')
  t.same(of(v, 'bhi').findings, ['report.not-reported'])
  t.match(v.findings.find(f => f.id === 'report.not-reported'), { cpus: [0, 1], detail: /CTRL is 0x0: bit 0 BHB_CLEAR_SEQ_S_USED not set/ })
})

t.test('told and able to back it (CTRL bit 0 set, ENUM bit 0 set): protected, the VMM doing its part', async t => {
  const f = withMsr(fixture('ice-lake-sp-guest-enum'), '0x50000002', 1n)
  const v = run(f)
  t.equal(v.verdict, 'protected')
  t.equal(of(v, 'bhi').vmm, 'backing')
  t.same(ids(v), [])
  // The same through ctrlNow (what guest report read back), with the probe's CTRL still 0.
  const v2 = run(fixture('ice-lake-sp-guest-enum'), { ctrlNow: new Map([[0, 1n], [1, 1n]]) })
  t.equal(v2.verdict, 'protected')
  const v3 = run(fixture('ice-lake-sp-guest-enum'), { ctrlNow: new Map([[0, 1n], [1, 0n]]) })
  t.equal(v3.verdict, 'at-risk', 'one CPU not told is enough (the MSRs are per vCPU, section 3)')
  t.same(v3.findings.find(f => f.id === 'report.not-reported')?.cpus, [1])
})

t.test('MITI_ENUM without bit 0: at risk, the finding names the missing bit', async t => {
  const f = withMsr(fixture('ice-lake-sp-guest-enum'), '0x50000001', 2n)
  const v = run(f)
  t.equal(v.verdict, 'at-risk')
  t.same(of(v, 'bhi').findings, ['vmm.enum-lacks-bit'])
  t.match(v.findings.find(x => x.id === 'vmm.enum-lacks-bit')!.detail, /0x2: no bit 0 BHB_CLEAR_SEQ_S_SUPPORT, so the VMM will not force BHI_DIS_S/)
})

t.test('EPERM on the write (this run or the last report) is the lockdown finding', async t => {
  const f = fixture('ice-lake-sp-guest-enum')
  const rec = (errno: string): { origin: string; cpus: RecordCpu[] } => ({ origin: 'this run', cpus: [0, 1].map(cpu => ({ cpu, outcome: 'fault', fault: { step: 'write', errno, message: 'x' } })) })
  const v = run(f, { record: rec('EPERM') })
  t.equal(v.verdict, 'at-risk')
  t.same(of(v, 'bhi').findings, ['report.lockdown'])
  t.match(remedyFor(findingDef('report.lockdown')), /msr\.allow_writes=on/)
  t.same(of(run(f, { record: rec('EIO') }), 'bhi').findings, ['report.failed'], 'EIO: the report failed, not lockdown')
  // Lockdown seen before any write: predicted from /sys/kernel/security/lockdown.
  const locked = { ...f, kernel: { ...f.kernel, lockdown: 'none [integrity] confidentiality' } }
  const lv = run(locked)
  t.same(of(lv, 'bhi').findings, ['report.lockdown'])
  t.match(lv.findings[0]!.detail, /kernel lockdown is "integrity"/)
  t.equal(lockdownMode('[none] integrity confidentiality'), undefined)
  t.equal(lockdownMode('none integrity [confidentiality]'), 'confidentiality')
})

t.test('section 6: BHI: Vulnerable is vulnerable; mitigations=off too; vmexit-only too', async t => {
  const base = fixture('ice-lake-sp-guest-enum')
  const v = run(withLine(base, LINE(EIBRS, 'BHI: Vulnerable')))
  t.equal(v.verdict, 'vulnerable')
  t.same(of(v, 'bhi').findings, ['kernel.bhi-vulnerable'])
  t.equal(exitCodeOf(v.verdict), 1)
  const off = run(withLine(base, 'Vulnerable; IBPB: disabled; STIBP: disabled; PBRSB-eIBRS: Vulnerable; BHI: Vulnerable'))
  t.equal(of(off, 'bhi').verdict, 'vulnerable')
  t.equal(of(off, 'retpoline').verdict, 'vulnerable')
  t.same(ids(off), ['kernel.mitigations-off'])
  const vmexit = run(withLine(base, LINE(EIBRS, 'BHI: Vulnerable, KVM: SW loop')))
  t.same(of(vmexit, 'bhi').findings, ['kernel.bhi-vmexit-only'])
})

t.test('"Vulnerable: LFENCE" is vulnerable, and so is the older "Mitigation: LFENCE" (same mode)', async t => {
  const base = fixture('skylake-sp-guest-noenum')
  for (const m of ['Vulnerable: LFENCE', 'Mitigation: LFENCE']) {
    const v = run(withLine(base, `${m}; IBPB: conditional; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Vulnerable`))
    t.equal(of(v, 'retpoline').verdict, 'vulnerable', m)
    t.equal(of(v, 'retpoline').mitigation, m, 'the kernel\'s own words')
    t.ok(of(v, 'retpoline').findings.includes('kernel.v2-vulnerable'))
  }
})

t.test('a prediction that differs from the kernel is a note and does not change the verdict', async t => {
  // BHI_CTRL CPU (Sapphire Rapids) whose kernel still says SW loop, told to a VMM that can back it.
  const f = withMsr(withLine(fixture('sapphire-rapids-guest-enum'), LINE(EIBRS, 'BHI: SW loop, KVM: SW loop')), '0x50000002', 1n)
  const d = decide(f)
  t.equal(d.mismatches.length, 1, 'the prediction (BHI_DIS_S) differs')
  const v = judge({ facts: f, decision: d })
  t.ok(v.findings.some(x => x.id === 'kernel.prediction-mismatch' && x.effect === 'note'))
  t.equal(v.verdict, 'protected', 'told and backed: protected despite the mismatch')
})

t.test('bare metal is judged by its own hardware', async t => {
  // Ice Lake bare metal with the SW loop: the short loop works there (section 1).
  const icx = run(fixture('ice-lake-sp-baremetal'))
  t.equal(icx.environment, 'bare-metal')
  t.equal(of(icx, 'bhi').verdict, 'protected')
  t.equal(of(icx, 'bhi').vmm, 'not-needed')
  // The SW loop on a CPU with BHI_CTRL (a kernel that does not use BHI_DIS_S): at risk.
  const spr = run(withLine(fixture('sapphire-rapids-baremetal'), LINE(EIBRS, 'BHI: SW loop, KVM: SW loop')))
  t.same(of(spr, 'bhi').findings, ['baremetal.sw-loop-on-bhi-ctrl'])
  t.equal(spr.verdict, 'at-risk')
})

t.test('retpoline in a VM needs RETPOLINE_S; on AMD it does not (RRSBA is Intel-defined)', async t => {
  const sky = run(fixture('skylake-sp-guest-enum-retpoline'))
  t.equal(of(sky, 'retpoline').verdict, 'at-risk')
  t.same(of(sky, 'retpoline').findings, ['report.not-reported'])
  t.equal(of(sky, 'bhi').rule, 'bhi.retpoline', 'BHI: Retpoline rests on the same bit')
  const told = run(withMsr(fixture('skylake-sp-guest-enum-retpoline'), '0x50000002', 2n))
  t.equal(told.verdict, 'protected')
  t.equal(of(run(fixture('zen3-milan-guest-noenum')), 'retpoline').rule, 'retpoline.not-intel')
})

t.test('unknown: no sysfs line, or unreadable ARCH_CAPABILITIES where the VMM part matters', async t => {
  const f = fixture('ice-lake-sp-guest-noenum')
  const { spectre_v2: _drop, ...rest } = f.kernel.vulnerabilities
  const v = run({ ...f, kernel: { ...f.kernel, vulnerabilities: rest } })
  t.equal(v.verdict, 'unknown')
  t.same(ids(v), ['kernel.sysfs-missing'])
  const noMsr: Facts = { ...f, cpus: f.cpus.map(c => ({ ...c, msr: { '0x10a': { fault: { errno: 'ENOENT', message: '/dev/cpu/0/msr: device missing' } } } })) }
  const u = run(noMsr)
  t.equal(of(u, 'bhi').verdict, 'unknown')
  t.ok(of(u, 'bhi').findings.includes('vmm.cannot-tell'))
  t.equal(exitCodeOf(u.verdict), 3)
})

t.test('the tables: every finding and rule has sources; ids are unique and stable-looking', async t => {
  t.equal(new Set(FINDINGS.map(f => f.id)).size, FINDINGS.length)
  for (const f of FINDINGS) {
    t.match(f.id, /^[a-z]+\.[a-z0-9-]+$/, f.id)
    t.ok(f.sources.length > 0, `${f.id}: sourced`)
    t.ok(Object.values(f.remedy).every(r => r && r.length > 10), `${f.id}: a remedy`)
  }
  for (const r of VERDICT_RULES) t.ok(r.sources.length > 0, `${r.rule}: sourced`)
})
