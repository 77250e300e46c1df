// The simulated platform: CPUID from the presented model, MSRs through the reference emulation,
// faults as the msr driver shows them (EIO), and the guest probe running on it unchanged.
import t from 'tap'
import { simulatedPlatform } from './simulated.js'
import { profileByName } from './profiles.js'
import type { CpuModel, PresentedCpu } from '../../contract/cpu-model.js'
import type { HostCaps } from '../../contract/host-caps.js'
import { MSR } from '../../contract/registers.js'
import { probe } from '../../guest/probe.js'
import { msrKey } from '../../contract/facts.js'

const MODEL: CpuModel = {
  id: 't', name: 'test', vendor: 'GenuineIntel', family: 6, model: 0x55, stepping: 4,
  cpuid7_0_edx: ((1 << 26) | (1 << 27) | (1 << 29) | (1 << 31)) >>> 0, cpuid7_2_edx: 0, archCapabilities: 0x2bn, sources: {},
}
const HOST: HostCaps = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }
const presented = (over: Partial<PresentedCpu> = {}): PresentedCpu => ({ model: MODEL, hypervisor: true, archCapabilities: MODEL.archCapabilities, ...over })
const sim = (profile: string, over: Partial<PresentedCpu> = {}, vcpus = 2) =>
  simulatedPlatform({ presented: presented(over), hostCaps: HOST, profile: profileByName(profile)!, vcpus, sysfs: { '/proc/cmdline': 'quiet\n' } })

t.test('simulated: CPUID answers from the presented model', async t => {
  const { platform } = sim('reference')
  t.equal(platform.kind, 'simulated')
  t.same(platform.cpus(), [0, 1])
  const l7 = platform.cpuid(1, 7, 0)
  t.ok(l7.ok && l7.regs.edx === MODEL.cpuid7_0_edx)
  const l1 = platform.cpuid(0, 1, 0)
  t.ok(l1.ok && l1.regs.ecx === 0x80000000, 'HYPERVISOR bit')
  const hv = platform.cpuid(0, 0x40000000, 0)
  t.ok(hv.ok && hv.regs.eax === 0x40000001)
  const none = platform.cpuid(0, 0x12345, 0)
  t.same(none, { ok: true, regs: { eax: 0, ebx: 0, ecx: 0, edx: 0 } })
})

t.test('simulated: a CPU that does not exist answers ENXIO', async t => {
  const { platform } = sim('reference')
  for (const r of [platform.cpuid(2, 0, 0), platform.rdmsr(2, MSR.SPEC_CTRL), platform.wrmsr(-1, MSR.SPEC_CTRL, 0n)]) {
    t.equal(!r.ok && r.fault.errno, 'ENXIO')
  }
})

t.test('simulated: a #GP from the emulation surfaces as EIO (msr driver)', async t => {
  const { platform } = sim('reference')
  const w = platform.wrmsr(0, MSR.VIRTUAL_MITIGATION_ENUM, 0n)
  t.equal(!w.ok && w.fault.errno, 'EIO')
  const u = platform.rdmsr(0, 0xc0011029)
  t.equal(!u.ok && u.fault.errno, 'EIO', 'unknown MSR faults under unknownMsr=fault')
})

t.test('simulated: read-zero profile reads unknown MSRs as 0 and ignores writes', async t => {
  const { platform } = sim('read-zero')
  t.same(platform.rdmsr(0, 0xc0011029), { ok: true, value: 0n })
  t.same(platform.wrmsr(0, MSR.VIRTUAL_MITIGATION_CTRL, 1n), { ok: true })
  t.same(platform.rdmsr(0, MSR.VIRTUAL_MITIGATION_CTRL), { ok: true, value: 0n })
})

t.test('simulated: writes reach the per-vCPU emulation state', async t => {
  const { platform, vmm } = sim('reference')
  t.same(platform.wrmsr(1, MSR.VIRTUAL_MITIGATION_CTRL, 1n), { ok: true })
  t.same(vmm.states().map(s => s.forcedMask), [0n, 1n << 10n])
  t.equal(platform.readText('/proc/cmdline'), 'quiet\n')
  t.equal(platform.readText('/nope'), undefined)
})

t.test('simulated: the guest probe runs unchanged and sees the discovery chain', async t => {
  const { platform } = sim('reference', {}, 3)
  const f = probe(platform)
  t.equal(f.cpus.length, 3)
  const m = f.cpus[2]!.msr
  t.same(m[msrKey(MSR.ARCH_CAPABILITIES)], { value: 0x2bn | (1n << 63n) })
  t.same(m[msrKey(MSR.VIRTUAL_ENUMERATION)], { value: 1n })
  t.same(m[msrKey(MSR.VIRTUAL_MITIGATION_ENUM)], { value: 3n })
  t.same(m[msrKey(MSR.VIRTUAL_MITIGATION_CTRL)], { value: 0n })
})

t.test('simulated: the probe stops at ARCH_CAPABILITIES bit 63 when the VMM does not advertise', async t => {
  const f = probe(sim('no-virtual-msrs').platform)
  t.match(f.cpus[0]!.msr[msrKey(MSR.VIRTUAL_ENUMERATION)], { skipped: /bit 63/ })
})

t.test('simulated: no ARCH_CAPABILITIES presented hides CPUID.(7,0):EDX[29] and the MSR', async t => {
  const { platform } = sim('reference', { archCapabilities: null })
  const l7 = platform.cpuid(0, 7, 0)
  t.ok(l7.ok && (l7.regs.edx & (1 << 29)) === 0)
  t.equal(platform.rdmsr(0, MSR.ARCH_CAPABILITIES).ok, false)
})
