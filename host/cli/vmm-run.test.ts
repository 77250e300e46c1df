// `virtmiti host vmm run`: usage errors list the valid names (exit 2, no /dev/kvm needed); on a
// usable /dev/kvm the reference VMM passes (exit 0), a faulty one fails (exit 1) naming the bit,
// both TAP versions parse strictly, JSON carries the VMM state and the CPUID origin statement.
import t from 'tap'
import { Parser } from 'tap-parser'
import { main } from './vmm-run.js'
import { liveTierUnavailable } from '../vmm/kvm/machine.js'

const skip = liveTierUnavailable()

async function run(argv: string[]) {
  const o = { out: '', err: '' }
  const code = await main(argv, { io: { out: s => { o.out += s }, err: s => { o.err += s } } })
  return { code, ...o }
}

async function parseTap(text: string) {
  const p = new Parser({ strict: true })
  const extra: string[] = []
  p.on('extra', (s: string) => extra.push(s))
  const done = new Promise<{ ok: boolean; fail: number; count: number }>(res => p.on('complete', res))
  p.end(text)
  return { result: await done, extra }
}

t.test('vmm run: usage errors exit 2 and name what is valid', async t => {
  const noArgs = await run([])
  t.equal(noArgs.code, 2)
  t.match(noArgs.err, /--cpu-model M and --profile P are required/)
  const badProfile = await run(['run', '--cpu-model', 'cascade-lake', '--profile', 'nope'])
  t.equal(badProfile.code, 2)
  t.match(badProfile.err, /unknown profile "nope"; valid profiles: .*forces-nothing.*reference, reference-virtualized/)
  const badModel = await run(['--cpu-model', 'pentium', '--profile', 'reference'])
  t.equal(badModel.code, 2)
  t.match(badModel.err, /unknown CPU model "pentium"; valid models: .*cascade-lake.*sapphire-rapids/)
  const badHost = await run(['--cpu-model', 'cascade-lake', '--profile', 'reference', '--host-cpu', 'z80'])
  t.equal(badHost.code, 2)
  t.match(badHost.err, /unknown host CPU "z80"/)
  for (const v of ['0', '241', 'two', '1.5']) {
    const r = await run(['--cpu-model', 'cascade-lake', '--profile', 'reference', '--vcpus', v])
    t.equal(r.code, 2, `--vcpus ${v}`)
    t.match(r.err, /--vcpus wants an integer 1\.\.240/)
  }
  const tv = await run(['--cpu-model', 'cascade-lake', '--profile', 'reference', '--tap-version', '12'])
  t.equal(tv.code, 2)
  const ac = await run(['--cpu-model', 'cascade-lake', '--profile', 'reference', '--arch-capabilities', 'RDCL_NO,VIRTUAL_ENUM'])
  t.equal(ac.code, 2)
  t.match(ac.err, /not allowed bit name\(s\) VIRTUAL_ENUM/)
  const unknownOpt = await run(['--cpu-model', 'cascade-lake', '--profile', 'reference', '--bogus'])
  t.equal(unknownOpt.code, 2)
  // v3 01/10: BHI_DIS_S may be forced only on a host with BHI_CTRL; Cascade Lake has none.
  const force = await run(['--cpu-model', 'cascade-lake', '--profile', 'userspace-force-bhi', '--host-cpu', 'cascade-lake'])
  t.equal(force.code, 2)
  t.match(force.err, /profile userspace-force-bhi: .*\(host cascade-lake\)/)
  const help = await run(['--help'])
  t.equal(help.code, 0)
  t.match(help.out, /Usage: virtmiti host vmm run --cpu-model M --profile P/)
})

for (const v of ['14', '13']) {
  t.test(`vmm run: reference on cascade-lake passes, exit 0, TAP ${v} parses strictly`, { skip }, async t => {
    const r = await run(['run', '--cpu-model', 'cascade-lake', '--profile', 'reference', '--tap-version', v])
    t.equal(r.code, 0, r.out.split('\n').filter(l => /not ok|# FAIL/.test(l)).join('\n'))
    t.equal(r.out.split('\n')[0], `TAP version ${v}`)
    const p = await parseTap(r.out)
    t.equal(p.result.ok, true)
    t.equal(p.result.fail, 0)
    t.same(p.extra, [], 'no non-TAP lines')
    t.match(r.out, /CPUID origin: /)
    t.match(r.out, /# timing: VM create [\d.]+ ms \(CPUID proof and filter-exit measurement [\d.]+ ms of it\); VM create to verdict [\d.]+ ms/)
  })
}

t.test('vmm run: faulty forces-nothing exits 1 and names the missing bits', { skip }, async t => {
  const r = await run(['--cpu-model', 'cascade-lake', '--profile', 'forces-nothing'])
  t.equal(r.code, 1)
  t.match(r.out, /not ok \d+ - forced mask: missing RRSBA_DIS_S, BHI_DIS_S \(expected 0x440, observed 0x0\)/)
  const p = await parseTap(r.out)
  t.equal(p.result.ok, false)
})

t.test('vmm run --json: VMM state per vCPU, CPUID statement, timings', { skip }, async t => {
  const r = await run(['--cpu-model', 'ice-lake-sp', '--profile', 'reference', '--vcpus', '3', '--json',
    '--spectre-v2', 'Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; RSB filling; PBRSB-eIBRS: SW sequence; BHI: SW loop, KVM: SW loop'])
  t.equal(r.code, 0, r.err)
  const j = JSON.parse(r.out)
  t.equal(j.schema, 'virtmiti/vmm-run/v1')
  t.equal(j.ok, true)
  // contract/CONTRACT.md section 4: SW loop -> CTRL bit 0; section 5: BHI_DIS_S (0x400) forced on a SPR host.
  t.same(j.vmmState.vcpus.map((v: { mitiCtrl: string }) => v.mitiCtrl), ['0x1', '0x1', '0x1'])
  t.same(j.vmmState.vcpus.map((v: { forcedMask: string }) => v.forcedMask), ['0x400', '0x400', '0x400'])
  t.equal(j.report.vmUuid, j.vmUuid)
  t.type(j.cpuid.statement, 'string')
  t.ok(j.timings.totalMs > 0)
})

// Default (overlay): the guest is shown the model's CPUID on any host, so skylake-sp (no
// ARCH_CAPABILITIES) runs and finds nothing enumerated. --cpuid strict on a host that pins
// CPUID.(7,0) to values other than the model's skips (exit 4) naming the bits; where the proof
// shows nothing of the model's contract bits pinned otherwise, it runs. Measured, then expected.
t.test('vmm run: skylake-sp runs in overlay mode; --cpuid strict skips exactly where the host pins its bits otherwise', { skip }, async t => {
  const r = await run(['--cpu-model', 'skylake-sp', '--profile', 'reference'])
  t.equal(r.code, 0, r.err)
  const strict = await run(['--cpu-model', 'skylake-sp', '--profile', 'reference', '--cpuid', 'strict', '--json'])
  const j = JSON.parse(strict.out)
  const blocking: string[] = j.cpuid.blocking
  if (blocking.length) {
    t.equal(strict.code, 4)
    t.match(j.skipReason, /--cpuid strict: this host cannot present skylake-sp to a guest: CPUID\.\(7,0\)/)
  } else t.equal(strict.code, 0, strict.err)
  const e = await run(['--cpu-model', 'skylake-sp', '--profile', 'reference', '--arch-capabilities='])
  t.equal(e.code, 0, e.err)
  const bad = await run(['--cpu-model', 'skylake-sp', '--profile', 'reference', '--cpuid', 'loose'])
  t.equal(bad.code, 2)
  t.match(bad.err, /--cpuid wants overlay or strict, got "loose"/)
})
