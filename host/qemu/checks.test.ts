// checks.ts against recorded boots (Debian 6.1 under QEMU TCG): the real outputs pass; every
// deliberately wrong agent output fails, naming the kernel's value and the agent's.
import t from 'tap'
import { tapDocument, type TapPoint } from '../../bin/lib/tap.js'
import { checkBoot, readKernelLine, REQUIRED_SECTIONS, type BootContext } from './checks.js'
import { loadRecordedBoot, sectionMap, type RecordedBoot } from './recorded-boot.js'

const INTEL = 'skylake-server-lfence-bhi-off'
const AMD = 'epyc-bhi-on'
const ctxOf = (b: RecordedBoot): BootContext => ({ cpu: b.cpu, append: b.append, accel: b.accel, vcpus: b.vcpus })
const failing = (ps: TapPoint[]) => ps.filter(p => !p.ok)
/** The boot with one section's JSON changed by `edit`. */
function withJson(b: RecordedBoot, section: 'probe' | 'report', edit: (j: any) => void): RecordedBoot {
  const c = structuredClone(b)
  const j = JSON.parse(c.sections[section]!.output)
  edit(j)
  c.sections[section]!.output = JSON.stringify(j)
  return c
}
const run = (b: RecordedBoot) => checkBoot(sectionMap(b), ctxOf(b))
const only = (ps: TapPoint[], re: RegExp) => { const p = ps.find(x => re.test(x.name)); if (!p) throw new Error(`no point matches ${re}`); return p }

for (const name of [INTEL, AMD, 'skylake-server-retpoline-bhi-off']) {
  t.test(`recorded boot ${name}: every check passes`, async t => {
    const b = loadRecordedBoot(name)
    const r = run(b)
    t.same(failing(r.points).map(p => ({ name: p.name, diag: p.diag })), [], 'no failing point')
    t.equal(r.points.length, 18, 'one point per check: 5 setup, 4 kernel-line, 5 MSRs, 4 not-enumerated')
    t.equal(r.facts.kernelLine, b.sections['spectre_v2']!.output.trim())
  })
}

t.test('Intel under TCG: the agent read no ARCH_CAPABILITIES (CPUID bit 29 clear); rdmsr must read 0, said in a comment', async t => {
  const r = run(loadRecordedBoot(INTEL))
  const p = only(r.points, /^MSR 0x10a /)
  t.equal(p.name, 'MSR 0x10a (IA32_ARCH_CAPABILITIES): agent read none; rdmsr reads 0 (TCG) on CPUs 0,1')
  t.match(p.comments?.[0], /^cpu 0: agent did not read 0x10a: CPUID\.\(7,0\):EDX\[29\] clear: no IA32_ARCH_CAPABILITIES; rdmsr: 0x0$/)
  t.match(tapDocument(r.points), /\n# cpu 1: agent did not read 0x10a: CPUID/, 'printed as a TAP comment')
  t.same(r.facts.agentKernel, { spectreV2: 'lfence', bhi: 'vulnerable', retpoline: false })
})

t.test('the same case with rdmsr reading non-zero is no vacuous pass: it fails naming both', async t => {
  const b = structuredClone(loadRecordedBoot(INTEL))
  b.sections['rdmsr.0x10a']!.output = '0 0000000000000000\n1 0000000000000020\n'
  const p = only(run(b).points, /^MSR 0x10a /)
  t.equal(p.ok, false)
  t.same(p.diag?.['mismatches'], [{ cpu: 1, agent: 'not read', rdmsr: '0x20', expected: '0x0 (TCG reads unimplemented MSRs as 0)' }])
})

t.test('an agent MSR value differing from rdmsr fails naming both values; an equal one passes as a real comparison', async t => {
  const bad = withJson(loadRecordedBoot(INTEL), 'probe', j => { j.facts.cpus[1].msr['0x10a'] = { value: '0x8' } })
  const p = only(run(bad).points, /^MSR 0x10a /)
  t.equal(p.ok, false)
  t.same(p.diag?.['mismatches'], [{ cpu: 1, agent: '0x8', rdmsr: '0x0' }])
  const good = withJson(loadRecordedBoot(INTEL), 'probe', j => { for (const c of j.facts.cpus) c.msr['0x10a'] = { value: '0x0' } })
  const q = only(run(good).points, /^MSR 0x10a /)
  t.same([q.ok, q.name, q.comments], [true, 'MSR 0x10a (IA32_ARCH_CAPABILITIES): agent = rdmsr on CPUs 0,1', undefined])
  const fault = withJson(loadRecordedBoot(INTEL), 'probe', j => { j.facts.cpus[0].msr['0x10a'] = { fault: { errno: 'EIO', message: 'x' } } })
  t.same(only(run(fault).points, /^MSR 0x10a /).diag?.['mismatches'], [{ cpu: 0, agent: 'fault EIO', rdmsr: '0x0' }])
})

t.test("a wrong parse of the kernel's line fails naming the kernel's BHI and the agent's", async t => {
  const b = withJson(loadRecordedBoot(INTEL), 'probe', j => { j.decision.kernel.bhi = 'sw-loop' })
  const r = run(b)
  const p = only(r.points, /^agent reads the kernel line/)
  t.equal(p.ok, false)
  t.match(p.diag, { kernelSays: { bhi: 'vulnerable' }, agentSays: { bhi: 'sw-loop' } })
  const tap = tapDocument(r.points)
  t.match(tap, /not ok \d+ - agent reads the kernel line as spectre_v2 lfence \("Vulnerable: LFENCE"\), BHI vulnerable \("BHI: Vulnerable"\), retpoline false/)
  t.match(tap, /kernel: "Vulnerable: LFENCE; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Vulnerable"/, 'the kernel string in the diagnostic')
  t.match(tap, /bhi: "sw-loop"/, "the agent's value in the diagnostic")
})

t.test('a wrong prediction fails naming the kernel line and the predicted state', async t => {
  const b = withJson(loadRecordedBoot(INTEL), 'probe', j => { j.decision.expected.bhi = 'sw-loop' })
  const p = only(run(b).points, /^agent's prediction/)
  t.equal(p.name, `agent's prediction for Skylake-Server "spectre_v2=retpoline,lfence spectre_bhi=off" is what the kernel chose`)
  t.equal(p.ok, false)
  t.match(p.diag, {
    kernel: { line: 'Vulnerable: LFENCE; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Vulnerable', bhi: 'vulnerable' },
    predicted: { bhi: 'sw-loop ("BHI: SW loop, KVM: SW loop")' },
  })
  const m = withJson(loadRecordedBoot(INTEL), 'probe', j => { j.decision.mismatches = [{ what: 'bhi', kernel: 'a', expected: 'b', reason: { rule: 'r', text: 't', source: 's' } }] })
  t.equal(only(run(m).points, /^agent's prediction/).ok, false, 'a mismatch the agent itself reports fails too')
})

t.test("the agent's raw text must be the kernel's line", async t => {
  const b = withJson(loadRecordedBoot(AMD), 'probe', j => { j.decision.kernel.raw = 'Mitigation: Retpolines' })
  const p = only(run(b).points, /spectre_v2 text is the kernel's sysfs line/)
  t.equal(p.ok, false)
  t.match(p.diag, { agentDecisionRaw: 'Mitigation: Retpolines', kernel: /BHI: Not affected$/ })
})

t.test('virtual MSRs: bit 63 set, an enumerated CPU, a write, or a selftest that ran all fail', async t => {
  const b63 = structuredClone(loadRecordedBoot(AMD))
  b63.sections['rdmsr.0x10a']!.output = '0 8000000000000000\n1 0000000000000000\n'
  const p = only(run(b63).points, /bit 63/)
  t.same([p.ok, p.diag?.['rdmsrBit63Set']], [false, ['cpu 0: 0x8000000000000000']])
  const written = withJson(loadRecordedBoot(AMD), 'report', j => { j.cpus[1].outcome = 'written'; j.cpus[1].written = '0x1' })
  const w = only(run(written).points, /^report --json: not enumerated/)
  t.same([w.ok, w.diag?.['badCpus']], [false, [{ cpu: 1, outcome: 'written', written: '0x1' }]])
  const en = withJson(loadRecordedBoot(AMD), 'probe', j => { j.decision.virt[0].enumerated = true; j.decision.virt[0].reached = 'miti-enum' })
  t.same(only(run(en).points, /^agent: virtual MSRs not enumerated/).diag?.['enumeratedCpus'], ['cpu 0: reached miti-enum'])
  const st = structuredClone(loadRecordedBoot(AMD))
  st.sections['selftest'] = { exit: 0, output: 'TAP version 14\n1..2\nok 1 - a\nok 2 - b # SKIP why\n' }
  const s = only(run(st).points, /^selftest skips/)
  t.same([s.ok, s.diag?.['exit'], s.diag?.['notSkipped']], [false, 0, ['ok 1 - a']])
  t.match(only(run(loadRecordedBoot(AMD)).points, /^selftest skips/).comments?.[0], /^selftest skip reason: the virtual MSRs are not enumerated/)
})

t.test('a lost vCPU, a missing section, a failed module load and junk JSON fail with what was seen', async t => {
  const one = structuredClone(loadRecordedBoot(AMD))
  one.sections['cpus']!.output = '0\n'
  one.sections['nproc']!.output = '1\n'
  const c = only(run(one).points, /vCPUs present/)
  t.same([c.ok, c.diag?.['expected'], (c.diag?.['observed'] as any).devCpu, (c.diag?.['observed'] as any).nproc], [false, [0, 1], [0], 1])
  const miss = structuredClone(loadRecordedBoot(AMD))
  delete miss.sections['rdmsr.0x48']
  miss.sections['insmod.msr'] = { exit: 1, output: '', stderr: 'insmod: ENOENT\n' }
  const r = run(miss)
  t.same(only(r.points, /^guest \/init/).diag, { missing: ['rdmsr.0x48'], failedModules: [{ section: 'insmod.msr', exit: 1, stderr: 'insmod: ENOENT\n' }] })
  t.same(only(r.points, /^MSR 0x48 /).diag, { error: 'section rdmsr.0x48 missing' })
  const junk = structuredClone(loadRecordedBoot(AMD))
  junk.sections['probe']!.output = 'Error: cannot open /dev/cpu/0/msr\n'
  const j = run(junk)
  t.equal(only(j.points, /^probe --json prints/).ok, false)
  t.ok(failing(j.points).length >= 6, 'every check that needs the probe fails')
  t.ok(REQUIRED_SECTIONS.includes('selftest'))
})

t.test('the command line check: the parameters must be on /proc/cmdline and the agent must have read it', async t => {
  const b = loadRecordedBoot(AMD)
  const r = checkBoot(sectionMap(b), { ...ctxOf(b), append: ['spectre_bhi=vmexit'] })
  const p = only(r.points, /^kernel command line/)
  t.same([p.ok, p.diag?.['absent']], [false, ['spectre_bhi=vmexit']])
})

t.test("readKernelLine: the oracle's own reading of bugs.c strings", async t => {
  t.same(readKernelLine('Mitigation: Retpolines; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Retpoline\n'),
    { first: 'Mitigation: Retpolines', bhiSegment: 'BHI: Retpoline', spectreV2: 'retpoline', bhi: 'retpoline', retpoline: true })
  t.same(readKernelLine('Mitigation: Enhanced IBRS, IBPB: conditional, RSB filling, BHI: Vulnerable, KVM: SW loop'),
    { first: 'Mitigation: Enhanced IBRS', bhiSegment: 'BHI: Vulnerable, KVM: SW loop', spectreV2: 'eibrs', bhi: 'vmexit-sw-loop', retpoline: false }, 'pre-6.9 ", " join keeps "KVM: ..." in the BHI segment')
  t.same(readKernelLine('Mitigation: Enhanced / Automatic IBRS + Retpolines; BHI: SW loop, KVM: SW loop').retpoline, true)
  t.same(readKernelLine('Not affected'), { first: 'Not affected', spectreV2: 'not-affected', bhi: 'not-affected', retpoline: false })
  t.same(readKernelLine('Mitigation: Retpolines; BHI: Something new'), { first: 'Mitigation: Retpolines', bhiSegment: 'BHI: Something new', spectreV2: 'retpoline', retpoline: true }, 'unknown text gets no mode')
  t.equal(readKernelLine('Mitigation: Retpolines; STIBP: disabled').bhi, 'not-reported')
})

t.test('recorded Skylake-Server "spectre_v2=retpoline spectre_bhi=off": the kernel says "BHI: Retpoline" and the agent predicts it', async t => {
  const r = run(loadRecordedBoot('skylake-server-retpoline-bhi-off'))
  t.match(r.facts.kernelLine, /^Mitigation: Retpolines; .*; BHI: Retpoline$/)
  t.same([r.facts.agentKernel, r.facts.agentExpected], [{ spectreV2: 'retpoline', bhi: 'retpoline', retpoline: true }, { spectreV2: 'retpoline', bhi: 'retpoline', retpoline: true }])
})
