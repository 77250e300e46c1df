import t from 'tap'
import { Parser } from 'tap-parser'
import { runSelftest, RULES } from './run.js'
import { main } from '../cli/selftest.js'
import { simGuest } from '../../testing/sim-guest.js'
import { fakePlatform } from '../../testing/fake-platform.js'
import { PROFILES } from '../../host/vmm/profiles.js'
import { MSR } from '../../contract/registers.js'
import type { Platform } from '../platform.js'
import type { SignalHost } from './test-writes.js'

const noSignals: SignalHost = { on: () => {}, off: () => {}, exit: () => { throw new Error('exit called') } }

// Which rule each profile breaks, as the selftest can see it from inside the guest. Faults in
// what the VMM forces are invisible here (contract/CONTRACT.md section 5: the guest reads its shadow, never
// the forced bits), and ctrl-not-reset needs a vCPU reset: those pass here and are the host
// checker's to catch (host/check).
const BROKEN: Record<string, { exit: number; failing: string[] }> = {
  'reference': { exit: 0, failing: [] },
  'reference-virtualized': { exit: 0, failing: [] },
  'bhb-only': { exit: 0, failing: [] },
  'no-virtual-msrs': { exit: 4, failing: [] },
  'read-zero': { exit: 4, failing: [] },
  'userspace-force-bhi': { exit: 0, failing: [] },
  'userspace-force-bhi-off': { exit: 0, failing: [] },
  'ignores-ctrl-writes': { exit: 1, failing: [RULES.ctrlReadBack, RULES.perVcpu] },
  'forces-nothing': { exit: 0, failing: [] },
  'forces-bhi-regardless-of-caps': { exit: 0, failing: [] },
  'guest-can-clear-forced': { exit: 0, failing: [] },
  'guest-overrides-userspace': { exit: 0, failing: [] },
  'leaks-forced-into-shadow': { exit: 1, failing: [RULES.specShadow] },
  'ctrl-not-per-vcpu': { exit: 1, failing: [RULES.perVcpu] },
  'enum-writable': { exit: 1, failing: [RULES.veReadOnly, RULES.enumReadOnly] },
  'reserved-ctrl-bits-accepted': { exit: 1, failing: [RULES.ctrlReserved] },
  'ctrl-not-reset': { exit: 0, failing: [] },
}

/** Parse TAP with tap-parser; returns the parser's final result. */
function parseTap(text: string): Promise<{ ok: boolean; count: number; pass: number; fail: number; skip: number; failures: { name: string }[] }> {
  return new Promise(resolve => {
    const p = new Parser({ strict: true }, r => resolve(r as never))
    p.end(text)
  })
}

t.test('every VMM profile has an expected selftest result', async t => {
  t.same([...PROFILES.keys()].filter(n => !(n in BROKEN)), [])
})

for (const name of PROFILES.keys()) {
  t.test(`selftest on simulated VMM profile ${name}`, async t => {
    const e = BROKEN[name]!
    const { platform, vmm } = simGuest(name)
    const before = vmm.states()
    const out: string[] = []
    const code = await main([], { platform, out: s => { out.push(s) }, err: () => {}, signals: noSignals })
    t.equal(code, e.exit, 'exit code')
    const tap = out.join('')
    const res = await parseTap(tap)
    t.same(res.failures.map(f => f.name).sort(), [...e.failing].sort(), 'failing tests name the broken rule')
    t.equal(res.count, Object.keys(RULES).length, 'one point per rule plus restore')
    if (e.exit === 4) t.equal(res.skip, Object.keys(RULES).length, 'everything skipped with a reason')
    // Everything the selftest changed is back (restore point passes; VMM state as before).
    t.notMatch(tap, /not ok \d+ - restore/)
    t.same(vmm.states().map(s => [s.mitiCtrl, s.specCtrlShadow]), before.map(s => [s.mitiCtrl, s.specCtrlShadow]), 'CTRL and SPEC_CTRL shadow restored')
    t.equal(vmm.virtualEnumeration(), name === 'no-virtual-msrs' || name === 'read-zero' ? 0n : 1n, 'VIRTUAL_ENUMERATION restored')
  })
}

t.test('the reserved-bits test tries every non-enumerated bit: 62 per CPU with ENUM=0x3', async t => {
  const { platform } = simGuest('reference', { vcpus: 2 })
  const r = await runSelftest(platform, { signals: noSignals })
  const p = r.points.find(x => x.name === RULES.ctrlReserved)!
  t.equal(p.diag?.writesTried, 124)
  const bad = simGuest('reserved-ctrl-bits-accepted', { vcpus: 1 })
  const rb = await runSelftest(bad.platform, { signals: noSignals })
  const pb = rb.points.find(x => x.name === RULES.ctrlReserved)!
  t.equal(pb.ok, false)
  t.match((pb.diag?.found as string[])[0], /non-enumerated bit\(s\) 2,3,4,.*,63 accepted \(MITI_ENUM 0x3\)/)
})

t.test('one CPU: per-vCPU test skipped with the reason', async t => {
  const { platform } = simGuest('reference', { vcpus: 1 })
  const r = await runSelftest(platform, { signals: noSignals })
  t.match(r.points.find(p => p.name === RULES.perVcpu), { ok: true, skip: /needs two CPUs/ })
  t.equal(r.exitCode, 0)
})

t.test('no SPEC_CTRL in CPUID: shadow test skipped', async t => {
  const p = fakePlatform({ specCtrl: false })
  const r = await runSelftest(p, { signals: noSignals })
  t.match(r.points.find(x => x.name === RULES.specShadow), { skip: /CPUID\.\(7,0\):EDX\[26\] clear/ })
  t.equal(p.writes.filter(w => w.index === MSR.SPEC_CTRL).length, 0)
})

t.test('VIRTUAL_ENUMERATION bit 0 clear: the fault-on-read rule runs, the rest skip', async t => {
  const good = fakePlatform({ virtualEnumeration: 0n })
  const r = await runSelftest(good, { signals: noSignals })
  t.match(r.points.find(p => p.name === RULES.gateVirtEnumClear), { ok: true })
  t.equal(r.exitCode, 0)
  t.same(good.writes, [], 'nothing written')
  const bad = fakePlatform({ virtualEnumeration: 0n, rdmsrHook: (_c, i) => (i === MSR.VIRTUAL_MITIGATION_ENUM ? { ok: true, value: 0n } : undefined) })
  const rb = await runSelftest(bad, { signals: noSignals })
  t.match(rb.points.find(p => p.name === RULES.gateVirtEnumClear), { ok: false })
  t.equal(rb.exitCode, 1)
})

t.test('msr driver missing: everything skipped, exit 3', async t => {
  const p = fakePlatform({ rdmsrHook: () => ({ ok: false, fault: { errno: 'ENOENT', message: 'no /dev/cpu/0/msr' } }) })
  const r = await runSelftest(p, { signals: noSignals })
  t.equal(r.exitCode, 3)
  t.ok(r.points.every(x => x.skip !== undefined && /could not walk the discovery chain on cpu 0 \(rdmsr 0x10a: ENOENT/.test(x.skip)))
})

t.test('SIGINT between tests: values restored, then exit 130', async t => {
  const { platform, vmm } = simGuest('reference', { vcpus: 2 })
  const handlers = new Map<string, () => void>()
  let exited: number | undefined
  const host: SignalHost = { on: (s, f) => { handlers.set(s, f) }, off: s => { handlers.delete(s) }, exit: c => { exited = c; throw new Error('exited') } }
  const err: string[] = []
  // Deliver SIGINT right after the reserved-bits test, while CTRL holds a test value.
  const between = async (name: string) => {
    if (name === RULES.ctrlReadBack) {
      const cpu0 = platform.rdmsr(0, MSR.VIRTUAL_MITIGATION_CTRL)
      t.ok(cpu0.ok && cpu0.value === 0n, 'read-back test leaves 0 (its last value)')
      platform.rdmsr(0, MSR.VIRTUAL_MITIGATION_CTRL)
      handlers.get('SIGINT')!()
    }
  }
  // Start with non-zero values, so restoring is visible.
  platform.wrmsr(0, MSR.VIRTUAL_MITIGATION_CTRL, 3n) // test setup, outside the agent
  platform.wrmsr(1, MSR.VIRTUAL_MITIGATION_CTRL, 1n)
  await t.rejects(runSelftest(platform, { signals: host, err: s => { err.push(s) }, between }), /exited/)
  t.equal(exited, 130)
  t.same(vmm.states().map(s => s.mitiCtrl), [3n, 1n], 'CTRL restored before exit')
  t.match(err.join(''), /interrupted by SIGINT: restored 2 value\(s\)/)
  t.equal(handlers.size, 0, 'handlers removed')
})

t.test('an exception mid-run still restores everything', async t => {
  const { platform, vmm } = simGuest('reference', { vcpus: 2 })
  platform.wrmsr(0, MSR.VIRTUAL_MITIGATION_CTRL, 2n) // test setup, outside the agent
  const boom = async (name: string) => { if (name === RULES.ctrlReserved) throw new Error('boom') }
  await t.rejects(runSelftest(platform, { signals: noSignals, between: boom }), /boom/)
  t.same(vmm.states().map(s => s.mitiCtrl), [2n, 0n])
})

t.test('CLI: TAP 13 and usage errors', async t => {
  const { platform } = simGuest('reference')
  const out: string[] = []
  t.equal(await main(['--tap-version', '13'], { platform, out: s => { out.push(s) }, err: () => {}, signals: noSignals }), 0)
  t.match(out.join(''), /^TAP version 13\n1\.\.10\n/)
  const err: string[] = []
  t.equal(await main(['--tap-version', '12'], { platform, out: () => {}, err: s => { err.push(s) }, signals: noSignals }), 2)
  t.equal(await main(['--cpu', '99'], { platform, out: () => {}, err: s => { err.push(s) }, signals: noSignals }), 2)
  t.equal(await main(['--nope'], { platform, out: () => {}, err: s => { err.push(s) }, signals: noSignals }), 2)
  t.match(err.join(''), /usage: virtmiti guest selftest/)
})

t.test('selftest after the boot report: passes and leaves the reported CTRL value in place', async t => {
  const { platform, vmm } = simGuest('reference', { vcpus: 3 })
  const { main: report } = await import('../cli/report.js')
  const { probe } = await import('../probe.js')
  const { decide } = await import('../../contract/decide.js')
  t.equal(await report(['--json'], { platform, probe: p => probe(p), decide, now: () => new Date(0), out: () => {}, err: () => {} }), 0)
  const before = vmm.states().map(s => [s.mitiCtrl, s.forcedMask, s.forcedValue, s.specCtrlShadow, s.specCtrlEffective])
  t.same(before.map(s => s[0]), [3n, 3n, 3n])
  const r = await runSelftest(platform, { signals: noSignals })
  t.equal(r.exitCode, 0)
  t.same(vmm.states().map(s => [s.mitiCtrl, s.forcedMask, s.forcedValue, s.specCtrlShadow, s.specCtrlEffective]), before, 'CTRL, forced bits and SPEC_CTRL as the report left them')
})
