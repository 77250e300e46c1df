// Host caps from CPU data and from a Facts CPU entry (contract/CONTRACT.md section 5 inputs).
import t from 'tap'
import { hostCapsFromCpu, hostCapsFromPresented, hostCapsFromCpuFacts, HostCapsJson, hostCapsToJson } from './host-caps.js'
import type { CpuFacts } from './facts.js'

const EDX70 = ((1 << 27) | (1 << 29) | (1 << 31)) >>> 0

t.test('host caps: CPUID.(7,2):EDX[4] is BHI_CTRL and EDX[2] is RRSBA_CTRL (not the other way round)', async t => {
  t.match(hostCapsFromCpu({ cpuid7_0_edx: 0, cpuid7_2_edx: 1 << 4, archCapabilities: null }), { bhiCtrl: true, rrsbaCtrl: false })
  t.match(hostCapsFromCpu({ cpuid7_0_edx: 0, cpuid7_2_edx: 1 << 2, archCapabilities: null }), { bhiCtrl: false, rrsbaCtrl: true })
})

t.test('host caps: ARCH_CAP bit 20 is BHI_NO, bit 19 is RRSBA; STIBP EDX[27], SSBD EDX[31]', async t => {
  t.same(hostCapsFromCpu({ cpuid7_0_edx: EDX70, cpuid7_2_edx: 0, archCapabilities: (1n << 20n) | (1n << 19n) }),
    { bhiCtrl: false, bhiNo: true, rrsbaCtrl: false, rrsba: true, stibp: true, ssbd: true })
  t.match(hostCapsFromCpu({ cpuid7_0_edx: 0, cpuid7_2_edx: 0, archCapabilities: null }), { bhiNo: false, rrsba: false, stibp: false, ssbd: false })
})

t.test('host caps from facts: an unreadable ARCH_CAPABILITIES makes BHI_NO and RRSBA unknown, with the reason', async t => {
  const f: CpuFacts = {
    cpu: 0, cpuid: { '0x7.0': { regs: { eax: 0, ebx: 0, ecx: 0, edx: EDX70 } }, '0x7.2': { regs: { eax: 0, ebx: 0, ecx: 0, edx: 0x14 } } },
    msr: { '0x10a': { fault: { errno: 'ENOENT', message: 'device missing' } } },
  }
  const r = hostCapsFromCpuFacts(f)
  t.same(r.unknown.map(u => u.cap), ['bhiNo', 'rrsba'])
  t.match(r.unknown[0]!.why, /ENOENT/)
  t.match(r.caps, { bhiCtrl: true, rrsbaCtrl: true, stibp: true })
})

t.test('host caps from facts: no ARCH_CAPABILITIES MSR (EDX[29] clear) means BHI_NO/RRSBA known false', async t => {
  const f: CpuFacts = { cpu: 0, cpuid: { '0x7.0': { regs: { eax: 0, ebx: 0, ecx: 0, edx: 0 } }, '0x7.2': { regs: { eax: 0, ebx: 0, ecx: 0, edx: 0 } } }, msr: {} }
  t.same(hostCapsFromCpuFacts(f).unknown, [])
})

t.test('host caps from facts: missing CPUID leaves are unknown', async t => {
  t.same(hostCapsFromCpuFacts({ cpu: 0, cpuid: {}, msr: {} }).unknown.map(u => u.cap).sort(), ['bhiCtrl', 'bhiNo', 'rrsba', 'rrsbaCtrl', 'ssbd', 'stibp'])
})

t.test('host caps JSON round trip, strict', async t => {
  const j = hostCapsToJson({ bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }, { source: 'test' })
  t.equal(HostCapsJson.safeParse(JSON.parse(JSON.stringify(j))).success, true)
  t.equal(HostCapsJson.safeParse({ ...j, caps: { ...j.caps, extra: true } }).success, false)
})

t.test('host caps from a presented CPU use the presented ARCH_CAPABILITIES, not the model\'s', async t => {
  const model = { cpuid7_0_edx: EDX70, cpuid7_2_edx: 0x10, archCapabilities: 1n << 20n }
  t.match(hostCapsFromPresented({ model, archCapabilities: 0n }), { bhiCtrl: true, bhiNo: false })
  t.match(hostCapsFromPresented({ model, archCapabilities: 1n << 20n }), { bhiNo: true })
})
