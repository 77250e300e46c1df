import t from 'tap'
import { SELFTEST_WRITE_RULES, TERMINATING_SIGNALS, TestWrites, type SignalHost } from './test-writes.js'
import { fakePlatform } from '../../testing/fake-platform.js'
import { MSR } from '../../contract/registers.js'

t.test('selftest gate refuses ARCH_CAPABILITIES and MSRs off its list, writing nothing', async t => {
  const p = fakePlatform()
  const g = new TestWrites(p)
  for (const i of [MSR.ARCH_CAPABILITIES, 0x10, 0x50000003, 0xc0000080]) t.match(g.write(0, i, 0n), { ok: false, fault: { errno: 'EPERM' } })
  t.same(p.writes, [])
})

t.test('selftest gate never runs unless the MSRs are enumerated, and never probes 0x5000000x without bit 63', async t => {
  const reads: number[] = []
  const p = fakePlatform({ archCap: 0n, unknownMsr: 'read-zero', rdmsrHook: (_c, i) => { reads.push(i); return undefined } })
  const g = new TestWrites(p, { specCtrlWrites: true })
  for (const i of [MSR.VIRTUAL_MITIGATION_CTRL, MSR.SPEC_CTRL, MSR.VIRTUAL_ENUMERATION]) t.match(g.write(0, i, 1n), { ok: false, fault: { message: /bit 63 clear/ } })
  t.same(p.writes, [])
  t.same(reads.filter(i => i >= MSR.VIRTUAL_ENUMERATION), [])
  const q = fakePlatform({ virtualEnumeration: 0n })
  t.match(new TestWrites(q).write(0, MSR.VIRTUAL_MITIGATION_CTRL, 0n), { ok: false, fault: { message: /bit 0 clear/ } })
  t.same(q.writes, [])
})

t.test('selftest gate refuses SPEC_CTRL without CPUID.(7,0):EDX[26]', async t => {
  const p = fakePlatform({ specCtrl: false })
  t.match(new TestWrites(p, { specCtrlWrites: true }).write(0, MSR.SPEC_CTRL, 0n), { ok: false, fault: { message: /EDX\[26\]/ } })
  t.same(p.writes, [])
})

t.test('selftest gate records originals and restores them all, newest first; restore is idempotent', async t => {
  const p = fakePlatform({ ncpus: 2 })
  p.ctrl.set(0, 1n); p.ctrl.set(1, 2n)
  const g = new TestWrites(p)
  t.equal(g.write(0, MSR.VIRTUAL_MITIGATION_CTRL, 2n).ok, true)
  t.equal(g.write(0, MSR.VIRTUAL_MITIGATION_CTRL, 3n).ok, true)
  t.equal(g.write(1, MSR.VIRTUAL_MITIGATION_CTRL, 0x1n).ok, true)
  t.same(g.recorded(), [{ cpu: 0, index: MSR.VIRTUAL_MITIGATION_CTRL, value: 1n }, { cpu: 1, index: MSR.VIRTUAL_MITIGATION_CTRL, value: 2n }])
  const r = g.restoreAll()
  t.same(r.failed, [])
  t.same(r.restored.map(x => x.cpu), [1, 0], 'newest first')
  t.equal(p.ctrl.get(0), 1n)
  t.equal(p.ctrl.get(1), 2n)
  const n = p.writes.length
  t.same(g.restoreAll(), { restored: [], failed: [] }, 'second restore has nothing to do')
  t.equal(p.writes.length, n, 'and writes nothing')
})

t.test('selftest gate reports a value it could not restore', async t => {
  let stuck = false
  const p = fakePlatform({ wrmsrHook: (_c, i, v) => (stuck && i === MSR.VIRTUAL_MITIGATION_CTRL ? { ok: false, fault: { errno: 'EIO', message: `#GP writing ${v}` } } : undefined) })
  const g = new TestWrites(p)
  g.write(0, MSR.VIRTUAL_MITIGATION_CTRL, 3n)
  stuck = true
  const r = g.restoreAll()
  t.match(r.failed, [{ cpu: 0, index: MSR.VIRTUAL_MITIGATION_CTRL, value: 0n, fault: { errno: 'EIO' } }])
})

t.test('SIGTERM handler restores, then exits 143; every terminating signal and SIGUSR1 get a handler; uninstall removes them', async t => {
  const p = fakePlatform()
  const g = new TestWrites(p)
  const h = new Map<string, () => void>()
  let code: number | undefined
  const host: SignalHost = { on: (s, f) => { h.set(s, f) }, off: s => { h.delete(s) }, exit: c => { code = c } }
  const err: string[] = []
  const off = g.installSignalHandlers(host, s => { err.push(s) })
  t.same([...h.keys()].sort(), [...TERMINATING_SIGNALS, 'SIGUSR1'].sort())
  t.ok(['SIGHUP', 'SIGQUIT', 'SIGINT', 'SIGTERM'].every(s => h.has(s)), 'SIGHUP and SIGQUIT too (issue 14 item 2)')
  g.write(0, MSR.VIRTUAL_MITIGATION_CTRL, 3n)
  h.get('SIGTERM')!()
  t.equal(code, 143)
  t.equal(p.ctrl.get(0), 0n)
  t.match(err.join(''), /interrupted by SIGTERM: restored 1 value/)
  off()
  t.equal(h.size, 0)
})

// Issue 14 item 3: the selftest's own rule, as a table (SELFTEST_WRITE_RULES), enforced by its gate.
t.test('the selftest rule table: the MSRs and bits it names, and nothing else', async t => {
  t.same(SELFTEST_WRITE_RULES.map(r => [r.index, r.changes, r.against, r.optIn ?? null]), [
    [MSR.VIRTUAL_MITIGATION_CTRL, (1n << 64n) - 1n, 'original', null],
    [MSR.VIRTUAL_ENUMERATION, 1n, 'original', null],
    [MSR.VIRTUAL_MITIGATION_ENUM, 3n, 'original', null],
    [MSR.SPEC_CTRL, 0n, 'current', 'specCtrlWrites'],
  ], 'CTRL: any bit (reserved-bit faults); ENUMs: their value or bits 0/0-1 flipped (read-only tests); SPEC_CTRL: opt-in, only its current value')
})

t.test('SPEC_CTRL is never written without the opt-in; with it, only the value it holds right now', async t => {
  const p = fakePlatform()
  p.specCtrl.set(0, 0x5n)
  const off = new TestWrites(p)
  off.snapshot(0)
  t.notOk(off.recorded().some(o => o.index === MSR.SPEC_CTRL), 'not even recorded (so never restored) without the opt-in')
  for (const v of [0n, 0x5n, 0x4n, 0x405n]) t.match(off.write(0, MSR.SPEC_CTRL, v), { ok: false, fault: { errno: 'EPERM', message: /writes are off/ } })
  t.same(p.writes, [])
  const on = new TestWrites(p, { specCtrlWrites: true })
  t.match(on.write(0, MSR.SPEC_CTRL, 0x4n), { ok: false, fault: { message: /outside the bits the selftest may change/ } }, 'clearing SSBD... refused')
  t.match(on.write(0, MSR.SPEC_CTRL, 0x7n), { ok: false }, 'setting a bit refused')
  t.same(p.writes, [])
  t.same(on.write(0, MSR.SPEC_CTRL, 0x5n), { ok: true }, 'the current value may be written back')
})

t.test('property: the gate lets a write through exactly when the table allows it (random MSRs, values, opt-in)', async t => {
  let seed = 0x1234567
  const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed }
  const rnd64 = () => (BigInt(rnd()) << 33n) ^ (BigInt(rnd()) << 2n) ^ BigInt(rnd() & 3)
  const indices = [...SELFTEST_WRITE_RULES.map(r => r.index), MSR.ARCH_CAPABILITIES, 0, 0x49, 0x50000003, 0xc0000080]
  let allowed = 0, refused = 0
  for (let i = 0; i < 3000; i++) {
    const p = fakePlatform()
    const optIn = rnd() % 2 === 0
    const g = new TestWrites(p, { specCtrlWrites: optIn })
    g.snapshot(0)
    const index = indices[rnd() % indices.length]!
    const before = p.rdmsr(0, index)
    const cur = before.ok ? before.value : 0n
    const flip = [0n, 1n, 2n, 3n, 1n << BigInt(rnd() % 64), rnd64()][rnd() % 6]!
    const value = (cur ^ flip) & ((1n << 64n) - 1n)
    const rule = SELFTEST_WRITE_RULES.find(r => r.index === index)
    const expect = rule !== undefined && (rule.optIn === undefined || optIn) && ((value ^ cur) & ~rule.changes) === 0n
    const n = p.writes.length
    const r = g.write(0, index, value)
    const reached = p.writes.length > n
    if (reached !== expect) { t.fail(`index 0x${index.toString(16)} value 0x${value.toString(16)} optIn ${optIn}: reached ${reached}, expected ${expect} (${r.ok ? 'ok' : r.fault.message})`); return }
    if (expect) allowed++; else refused++
  }
  t.ok(allowed > 200 && refused > 200, `both sides exercised (${allowed} allowed, ${refused} refused)`)
})
