// The simulated guest Platform (DESIGN.md platforms table): a presented CPU model plus the
// reference VMM emulation, in process. The guest agent runs on it unchanged.
import type { CpuidResult, MsrRead, MsrWrite, Platform } from '../../guest/platform.js'
import { cpuidLeaves, type PresentedCpu } from '../../contract/cpu-model.js'
import type { HostCaps } from '../../contract/host-caps.js'
import { CPUID7_EDX_SPEC_CTRL, hasBit32 } from '../../contract/registers.js'
import { createVmm, type VmmEmulation } from './emulation.js'
import type { VmmProfile } from './profile.js'

export interface SimulatedOptions {
  presented: PresentedCpu
  hostCaps: HostCaps
  profile: VmmProfile
  vcpus: number
  /** Guest text files (sysfs, /proc): path -> content. */
  sysfs: Record<string, string>
}

export function simulatedPlatform(o: SimulatedOptions): { platform: Platform; vmm: VmmEmulation } {
  const leaves = cpuidLeaves(o.presented)
  const vmm = createVmm({
    archCapabilities: o.presented.archCapabilities,
    hostCaps: o.hostCaps,
    profile: o.profile,
    vcpus: o.vcpus,
    guestSpecCtrl: hasBit32(o.presented.model.cpuid7_0_edx, CPUID7_EDX_SPEC_CTRL),
  })
  // The same table the VMM presents; leaf 7 subleaf 0 ARCH_CAPABILITIES bit follows archCapabilities (cpuidLeaves).
  const noCpu = (cpu: number) => ({ errno: 'ENXIO', message: `no CPU ${cpu} (simulated guest has ${o.vcpus})` })
  const online = (cpu: number) => Number.isInteger(cpu) && cpu >= 0 && cpu < o.vcpus
  const files = new Map(Object.entries(o.sysfs))

  const platform: Platform = {
    kind: 'simulated',
    cpus: () => Array.from({ length: o.vcpus }, (_, i) => i),
    cpuid(cpu: number, leaf: number, subleaf: number): CpuidResult {
      if (!online(cpu)) return { ok: false, fault: noCpu(cpu) }
      // Leaves other than 7 ignore the subleaf; unlisted leaves read as zeros (bits the contract does not use).
      const key = `0x${(leaf >>> 0).toString(16)}.${leaf === 7 ? subleaf : 0}`
      const regs = leaves[key] ?? { eax: 0, ebx: 0, ecx: 0, edx: 0 }
      return { ok: true, regs: { ...regs } }
    },
    rdmsr(cpu: number, index: number): MsrRead {
      if (!online(cpu)) return { ok: false, fault: noCpu(cpu) }
      const v = vmm.vcpus[cpu]!
      const a = v.indices.includes(index) ? v.rdmsr(index) : vmm.unknownRead(index)
      // A #GP surfaces as EIO through Linux's msr driver (contract/CONTRACT.md section 3).
      return a.ok ? { ok: true, value: a.value } : { ok: false, fault: { errno: 'EIO', message: a.reason } }
    },
    wrmsr(cpu: number, index: number, value: bigint): MsrWrite {
      if (!online(cpu)) return { ok: false, fault: noCpu(cpu) }
      const v = vmm.vcpus[cpu]!
      const a = v.indices.includes(index) ? v.wrmsr(index, value) : vmm.unknownWrite(index, value)
      return a.ok ? { ok: true } : { ok: false, fault: { errno: 'EIO', message: a.reason } }
    },
    readText: (path: string) => files.get(path),
  }
  return { platform, vmm }
}
