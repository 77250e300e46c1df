// Issue 12 "Done when", through the commands as an operator runs them: replayed fixtures and fake
// --dev-root trees; every --format; the NRPE exit mapping; promtool on the Prometheus output;
// --explain remedies; EPERM on the write (a real pwrite refused by the kernel: chattr +i) giving
// the lockdown finding; guest report keeping its own exit codes.
import t from 'tap'
import * as fs from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { main as probeMain } from './probe.js'
import { main as reportMain } from './report.js'
import { ProbeJson } from '../../contract/probe-schema.js'
import { GuestReport } from '../../contract/report-json.js'
import { DevcpuPlatform } from '../devcpu.js'
import type { Platform } from '../platform.js'
import { probe } from '../probe.js'
import { decide } from '../../contract/decide.js'
import { buildTree, SPR_VIRT } from '../../bench/fake-tree.mjs'

const repo = join(fileURLToPath(import.meta.url), '..', '..', '..')
const fx = (n: string) => join(repo, 'guest', 'fixtures', `${n}.json`)

function tmp(t: { teardown: (f: () => void) => void }): string {
  const d = fs.mkdtempSync(join(tmpdir(), 'virtmiti-formats-'))
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }))
  return d
}

async function probeRun(argv: string[], platform?: Platform) {
  const out: string[] = [], err: string[] = []
  const code = await probeMain(argv, { io: { out: s => { out.push(s) }, err: s => { err.push(s) } }, now: () => 1_700_000_000_000, width: Infinity, ...(platform ? { platform } : {}) })
  return { code, out: out.join(''), err: err.join('') }
}

/** A fixture with another spectre_v2 line, written to DIR. */
function variant(dir: string, base: string, line: string): string {
  const d = JSON.parse(fs.readFileSync(fx(base), 'utf8'))
  d.kernel.vulnerabilities.spectre_v2 = line
  const p = join(dir, `${base}-variant.json`)
  fs.writeFileSync(p, JSON.stringify(d))
  return p
}
const VULN_LINE = 'Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; RSB filling; PBRSB-eIBRS: SW sequence; BHI: Vulnerable'

/** promtool from PROMTOOL, scripts/get-promtool.sh's cache, or PATH. */
function findPromtool(): string | undefined {
  for (const p of [process.env.PROMTOOL, join(repo, '.cache/promtool/root/usr/bin/promtool')]) if (p && fs.existsSync(p)) return p
  const w = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' })
  return w.status === 0 ? w.stdout.trim() : undefined
}
const promtool = findPromtool()

t.test('Done when: the *-guest-noenum SW-loop fixtures say "at risk" in their first lines and exit 1', async t => {
  for (const m of ['skylake-sp', 'cascade-lake', 'ice-lake-sp']) {
    const r = await probeRun(['--replay', fx(`${m}-guest-noenum`), '--no-color'])
    t.equal(r.code, 1, m)
    const [l1, l2, l3] = r.out.split('\n')
    t.match(l1, /^AT RISK: this guest relies on a software sequence for BHI that only the VMM can back, and the VMM cannot be told\.$/, `${m}: line 1`)
    t.match(l2, /^The VMM is not doing its part for BHI: vmm\.not-enumerated\.$/, `${m}: line 2`)
    t.match(l3, /^ {2}BHI +at risk +BHI: SW loop, KVM: SW loop: /)
    t.notMatch(r.out, /BHB_CLEAR_SEQ_S_USED \(bit 0\): set/, 'does not claim bit 0 will be set when nothing can be written')
  }
})

t.test('Done when: the BHI_DIS_S fixtures say "protected" and exit 0', async t => {
  for (const n of ['sapphire-rapids-guest-noenum', 'sapphire-rapids-guest-enum', 'granite-rapids-guest-noenum', 'sapphire-rapids-baremetal']) {
    const r = await probeRun(['--replay', fx(n), '--no-color'])
    t.equal(r.code, 0, n)
    t.match(r.out, /^PROTECTED: this guest is protected/, n)
  }
})

t.test('Done when: a BHI: Vulnerable guest says "vulnerable" and exits 1; --explain gives the remedy', async t => {
  const f = variant(tmp(t), 'ice-lake-sp-guest-enum', VULN_LINE)
  const r = await probeRun(['--replay', f, '--no-color', '--explain'])
  t.equal(r.code, 1)
  t.match(r.out, /^VULNERABLE: this guest is vulnerable \(BHI\): the kernel reports BHI: Vulnerable/)
  t.match(r.out, /\nkernel\.bhi-vulnerable \(BHI\): .*\n {2}seen: .*\n {2}remedy: {2}remove spectre_bhi=off .*\n {2}sources: contract\/CONTRACT\.md section 6; Linux arch\/x86\/kernel\/cpu\/bugs\.c/)
})

t.test('--explain prints a remedy for every finding of the at-risk fixtures, with sources', async t => {
  const r = await probeRun(['--replay', fx('ice-lake-sp-guest-noenum'), '--no-color', '--explain'])
  const ex = r.out.slice(r.out.indexOf('Findings explained'))
  t.match(ex, /vmm\.not-enumerated \(BHI\): .*\n {2}seen: .*\n {2}remedy: {2}ask the VMM operator to advertise .* not on those or later parts .*\n {2}sources: /)
  const ok = await probeRun(['--replay', fx('sapphire-rapids-guest-noenum'), '--no-color', '--explain'])
  t.match(ok.out, /Nothing to explain: no findings\./)
})

t.test('--format short, json, tap: one line; JSON carries the verdict and the findings', async t => {
  const s = await probeRun(['--replay', fx('ice-lake-sp-guest-noenum'), '--format', 'short'])
  t.equal(s.out, 'at risk: BHI at risk (vmm.not-enumerated), retpoline/RRSBA protected\n')
  t.equal(s.code, 1)
  const j = await probeRun(['--replay', fx('ice-lake-sp-guest-noenum'), '--format', 'json'])
  const doc = ProbeJson.parse(JSON.parse(j.out))
  t.equal(doc.verdict?.verdict, 'at-risk')
  t.same(doc.verdict?.concerns.map(c => [c.concern, c.verdict, c.findings]), [['bhi', 'at-risk', ['vmm.not-enumerated']], ['retpoline', 'protected', []]])
  t.match(doc.findings[0], { id: 'vmm.not-enumerated', effect: 'at-risk', concern: 'bhi', cpus: '0-1' })
  const alias = await probeRun(['--replay', fx('ice-lake-sp-guest-noenum'), '--json'])
  t.equal(alias.out, j.out, '--json is --format json')
  const tap = await probeRun(['--replay', fx('ice-lake-sp-guest-noenum'), '--tap'])
  t.match(tap.out, /^TAP version 14\n1\.\.8\nnot ok 1 - BHI protected\n/)
  t.equal((await probeRun(['--replay', fx('ice-lake-sp-guest-noenum'), '--format', 'tap'])).out, tap.out)
})

t.test('--format nrpe: 0 OK, 1 WARNING (at risk), 2 CRITICAL (vulnerable), 3 UNKNOWN (unknown, usage error)', async t => {
  const dir = tmp(t)
  const cases: [string, number, RegExp][] = [
    [fx('sapphire-rapids-guest-noenum'), 0, /^VIRTMITI OK - protected: BHI protected, retpoline\/RRSBA protected \| bhi=0;1;2;0;3 retpoline=0;1;2;0;3 findings=0;;;0\n$/],
    [fx('ice-lake-sp-guest-noenum'), 1, /^VIRTMITI WARNING - at risk: .*\(vmm\.not-enumerated\) \| bhi=1;1;2;0;3 /],
    [variant(dir, 'ice-lake-sp-guest-enum', VULN_LINE), 2, /^VIRTMITI CRITICAL - vulnerable: BHI vulnerable/],
  ]
  for (const [f, code, re] of cases) {
    const r = await probeRun(['--replay', f, '--format', 'nrpe'])
    t.equal(r.code, code, `${f}: exit ${code}`)
    t.match(r.out, re)
    t.equal(r.out.split('\n').length, 2, 'one line')
  }
  const d = JSON.parse(fs.readFileSync(fx('ice-lake-sp-guest-noenum'), 'utf8'))
  delete d.kernel.vulnerabilities.spectre_v2
  fs.writeFileSync(join(dir, 'nosysfs.json'), JSON.stringify(d))
  const u = await probeRun(['--replay', join(dir, 'nosysfs.json'), '--format', 'nrpe'])
  t.equal(u.code, 3)
  t.match(u.out, /^VIRTMITI UNKNOWN - unknown: /)
  const bad = await probeRun(['--format', 'nrpe', '--frobnicate'])
  t.equal(bad.code, 3, 'a usage error is UNKNOWN under nrpe')
  t.match(bad.out, /^VIRTMITI UNKNOWN - guest probe: Unknown option '--frobnicate'/)
  // Other formats keep exit 2 for usage errors (thrown to the dispatcher).
  await t.rejects(probeRun(['--format', 'short', '--frobnicate']), /Unknown option/)
  await t.rejects(probeRun(['--format', 'xml']), /--format xml: expected one of human, json, tap, prometheus, nrpe, short/)
})

t.test('--format prometheus passes promtool check metrics; --textfile-dir writes it atomically', { skip: promtool ? false : 'promtool not found: run scripts/get-promtool.sh (Debian prometheus package, extracted, not installed) or set PROMTOOL' }, async t => {
  const dir = tmp(t)
  for (const n of ['ice-lake-sp-guest-noenum', 'sapphire-rapids-guest-enum', 'skylake-sp-guest-enum-retpoline']) {
    const r = await probeRun(['--replay', fx(n), '--format', 'prometheus', '--textfile-dir', dir])
    t.match(r.out, /^# HELP virtmiti_guest_concern_state .*\n# TYPE virtmiti_guest_concern_state gauge\nvirtmiti_guest_concern_state\{concern="bhi",verdict="[a-z-]+",vmm="[a-z-]+",findings="[a-z.,-]*"\} [0-3]\n/)
    const chk = spawnSync(promtool!, ['check', 'metrics'], { input: r.out, encoding: 'utf8' })
    t.equal(chk.status, 0, `${n}: promtool check metrics: ${chk.stdout}${chk.stderr}`)
    t.equal(chk.stdout + chk.stderr, '', 'no lint complaints')
    const file = join(dir, 'virtmiti.prom')
    t.equal(fs.readFileSync(file, 'utf8'), r.out, 'the textfile holds the same exposition')
    t.same(fs.readdirSync(dir), ['virtmiti.prom'], 'no temporary file left behind')
  }
  // And a deliberately broken exposition fails promtool: the check can fail.
  const broken = spawnSync(promtool!, ['check', 'metrics'], { input: 'virtmiti_x{a="b" 1\n', encoding: 'utf8' })
  t.not(broken.status, 0)
})

/** A --dev-root tree seen as a VM guest: the fake tree cannot carry CPUID.1:ECX[31] (bench/fake-tree.mjs). */
function asGuest(p: DevcpuPlatform): Platform {
  return new Proxy(p, {
    get(target, prop, recv) {
      if (prop === 'cpuid') return (cpu: number, leaf: number, sub: number) => {
        const r = target.cpuid(cpu, leaf, sub)
        return r.ok && leaf === 1 ? { ok: true, regs: { ...r.regs, ecx: (r.regs.ecx | 0x80000000) >>> 0 } } : r
      }
      const v = Reflect.get(target, prop, recv)
      return typeof v === 'function' ? v.bind(target) : v
    },
  })
}
const SW_LOOP_TREE = { ...SPR_VIRT, cpuid: { ...SPR_VIRT.cpuid, '0x7.2': [0, 0, 0, 0] }, spectreV2: 'Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; RSB filling; PBRSB-eIBRS: SW sequence; BHI: SW loop, KVM: SW loop' }

t.test('Done when: an EPERM on the write gives the lockdown finding (fake --dev-root tree, kernel-refused pwrite)', async t => {
  const root = buildTree(tmp(t), 2, SW_LOOP_TREE)
  const msrFiles = [0, 1].map(n => join(root, 'dev/cpu', String(n), 'msr'))
  // chattr +i: even root's open for writing fails with EPERM, as the msr driver does under lockdown.
  const ch = spawnSync('chattr', ['+i', ...msrFiles], { encoding: 'utf8' })
  t.teardown(() => { spawnSync('chattr', ['-i', ...msrFiles]) })
  let probeFd: number | undefined
  try { probeFd = fs.openSync(msrFiles[0]!, 'r+') } catch (e) { probeFd = undefined; t.equal((e as NodeJS.ErrnoException).code, 'EPERM', 'measured: the write open is refused with EPERM') }
  if (ch.status !== 0 || probeFd !== undefined) {
    if (probeFd !== undefined) fs.closeSync(probeFd)
    t.pass('no EPERM to test with', { skip: `chattr +i not effective here (${ch.stderr.trim() || 'open for writing still works'})` })
    return
  }
  const out: string[] = []
  const platform = asGuest(new DevcpuPlatform({ root }))
  const code = await reportMain(['--no-color', '--explain'], { platform, probe: p => probe(p), decide, now: () => new Date(0), out: s => { out.push(s) }, err: () => {}, width: Infinity })
  const text = out.join('')
  t.equal(code, 3, 'report: its own job could not be done (EPERM is "not permitted", exit 3)')
  t.match(text, /^AT RISK: this guest relies on a software sequence for BHI/)
  t.match(text, /AT RISK {2}report\.lockdown \(BHI\): writes to MSR_VIRTUAL_MITIGATION_CTRL are refused \(EPERM\): kernel lockdown or msr\.allow_writes=off -- CPUs 0-1: this run: write: EPERM/)
  t.match(text, /\n {2}remedy: {2}the msr driver refuses writes under kernel lockdown .*msr\.allow_writes=on/)
  // The same through --format json: the report carries the verdict.
  const jout: string[] = []
  await reportMain(['--format', 'json'], { platform: asGuest(new DevcpuPlatform({ root })), probe: p => probe(p), decide, now: () => new Date(0), out: s => { jout.push(s) }, err: () => {} })
  const rep = GuestReport.parse(JSON.parse(jout.join('')))
  t.equal(rep.verdict?.verdict, 'at-risk')
  t.ok(rep.verdict?.findings.includes('report.lockdown'))
  // probe reads the record of that run from DIR/run/virtmiti/report.json.
  fs.mkdirSync(join(root, 'run/virtmiti'), { recursive: true })
  fs.writeFileSync(join(root, 'run/virtmiti/report.json'), jout.join(''))
  const p = await probeRun(['--no-color'], asGuest(new DevcpuPlatform({ root })))
  t.equal(p.code, 1)
  t.match(p.out, /report\.lockdown \(BHI\): .* -- CPUs 0-1: last report \(\/run\/virtmiti\/report\.json, 1970-01-01T00:00:00\.000Z\): write: EPERM/)
})

t.test('lockdown predicted before any write: /sys/kernel/security/lockdown in the tree', async t => {
  const root = buildTree(tmp(t), 2, SW_LOOP_TREE)
  fs.mkdirSync(join(root, 'sys/kernel/security'), { recursive: true })
  fs.writeFileSync(join(root, 'sys/kernel/security/lockdown'), 'none [integrity] confidentiality\n')
  const r = await probeRun(['--no-color', '--format', 'short'], asGuest(new DevcpuPlatform({ root })))
  t.equal(r.out, 'at risk: BHI at risk (report.lockdown), retpoline/RRSBA protected\n')
  t.equal(r.code, 1)
})

t.test('guest report keeps exit codes about its own job: a VMM without the MSRs is exit 0, the verdict says at risk', async t => {
  const root = buildTree(tmp(t), 2, { ...SW_LOOP_TREE, msr: { 0x10a: 0x16bn } })
  const out: string[] = []
  const code = await reportMain(['--no-color'], { platform: asGuest(new DevcpuPlatform({ root })), probe: p => probe(p), decide, now: () => new Date(0), out: s => { out.push(s) }, err: () => {}, width: Infinity })
  t.equal(code, 0, 'nothing to report is not a failure (the boot unit must not fail)')
  t.match(out.join(''), /^AT RISK: .*\nThe VMM is not doing its part for BHI: vmm\.not-enumerated\./)
  const n: string[] = []
  const nc = await reportMain(['--format', 'nrpe'], { platform: asGuest(new DevcpuPlatform({ root })), probe: p => probe(p), decide, now: () => new Date(0), out: s => { n.push(s) }, err: () => {} })
  t.equal(nc, 1, 'nrpe exits by the verdict: WARNING')
  t.match(n.join(''), /^VIRTMITI WARNING - /)
})
