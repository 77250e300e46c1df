import t from 'tap'
import { TestWrites, type SignalHost } from './test-writes.js'
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
  const g = new TestWrites(p)
  for (const i of [MSR.VIRTUAL_MITIGATION_CTRL, MSR.SPEC_CTRL, MSR.VIRTUAL_ENUMERATION]) t.match(g.write(0, i, 1n), { ok: false, fault: { message: /bit 63 clear/ } })
  t.same(p.writes, [])
  t.same(reads.filter(i => i >= MSR.VIRTUAL_ENUMERATION), [])
  const q = fakePlatform({ virtualEnumeration: 0n })
  t.match(new TestWrites(q).write(0, MSR.VIRTUAL_MITIGATION_CTRL, 0n), { ok: false, fault: { message: /bit 0 clear/ } })
  t.same(q.writes, [])
})

t.test('selftest gate refuses SPEC_CTRL without CPUID.(7,0):EDX[26]', async t => {
  const p = fakePlatform({ specCtrl: false })
  t.match(new TestWrites(p).write(0, MSR.SPEC_CTRL, 0n), { ok: false, fault: { message: /EDX\[26\]/ } })
  t.same(p.writes, [])
})

t.test('selftest gate records originals and restores them all, newest first; restore is idempotent', async t => {
  const p = fakePlatform({ ncpus: 2 })
  p.ctrl.set(0, 1n); p.specCtrl.set(1, 0x400n)
  const g = new TestWrites(p)
  t.equal(g.write(0, MSR.VIRTUAL_MITIGATION_CTRL, 2n).ok, true)
  t.equal(g.write(0, MSR.VIRTUAL_MITIGATION_CTRL, 3n).ok, true)
  t.equal(g.write(1, MSR.SPEC_CTRL, 0x1n).ok, true)
  t.same(g.recorded(), [{ cpu: 0, index: MSR.VIRTUAL_MITIGATION_CTRL, value: 1n }, { cpu: 1, index: MSR.SPEC_CTRL, value: 0x400n }])
  const r = g.restoreAll()
  t.same(r.failed, [])
  t.same(r.restored.map(x => x.index), [MSR.SPEC_CTRL, MSR.VIRTUAL_MITIGATION_CTRL], 'newest first')
  t.equal(p.ctrl.get(0), 1n)
  t.equal(p.specCtrl.get(1), 0x400n)
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

t.test('SIGTERM handler restores, then exits 143; uninstall removes both handlers', async t => {
  const p = fakePlatform()
  const g = new TestWrites(p)
  const h = new Map<string, () => void>()
  let code: number | undefined
  const host: SignalHost = { on: (s, f) => { h.set(s, f) }, off: s => { h.delete(s) }, exit: c => { code = c } }
  const err: string[] = []
  const off = g.installSignalHandlers(host, s => { err.push(s) })
  t.same([...h.keys()].sort(), ['SIGINT', 'SIGTERM'])
  g.write(0, MSR.VIRTUAL_MITIGATION_CTRL, 3n)
  h.get('SIGTERM')!()
  t.equal(code, 143)
  t.equal(p.ctrl.get(0), 0n)
  t.match(err.join(''), /interrupted by SIGTERM: restored 1 value/)
  off()
  t.equal(h.size, 0)
})
