// The host's own capabilities (contract/CONTRACT.md section 5 inputs), read through a Platform: the
// devcpu platform on a real host (CPUID through /dev/cpu/N/cpuid, ARCH_CAPABILITIES through
// /dev/cpu/N/msr), or a simulated one in tests. Read-only: never writes an MSR.
import { hostCapsFromCpuFacts, HOST_CAP_NAMES, type HostCapName, type HostCaps } from '../contract/host-caps.js'
import { msrKey, type CpuFacts } from '../contract/facts.js'
import { CPUID7_EDX_ARCH_CAPABILITIES, MSR, hasBit32 } from '../contract/registers.js'
import type { Platform } from '../guest/platform.js'

export interface HostCapsRead {
  caps: HostCaps
  /** Capabilities that could not be read on the CPUs used, with why (they read as false in caps). */
  unknown: { cap: HostCapName; why: string }[]
  /** CPUs whose caps differ from the first CPU's (hybrid parts, or inconsistent microcode). */
  disagreements: { cpu: number; caps: HostCapName[] }[]
  cpus: number
}

function readCpu(p: Platform, cpu: number): CpuFacts {
  const f: CpuFacts = { cpu, cpuid: {}, msr: {} }
  for (const [key, leaf, sub] of [['0x7.0', 7, 0], ['0x7.2', 7, 2]] as const) {
    const r = p.cpuid(cpu, leaf, sub)
    f.cpuid[key] = r.ok ? { regs: r.regs } : { fault: r.fault }
  }
  const l7 = f.cpuid['0x7.0']
  // ARCH_CAPABILITIES exists iff CPUID.(7,0):EDX[29] (contract/CONTRACT.md section 2): never read it otherwise.
  if (l7 && 'regs' in l7 && hasBit32(l7.regs.edx, CPUID7_EDX_ARCH_CAPABILITIES)) {
    const m = p.rdmsr(cpu, MSR.ARCH_CAPABILITIES)
    f.msr[msrKey(MSR.ARCH_CAPABILITIES)] = m.ok ? { value: m.value } : { fault: m.fault }
  }
  return f
}

/** Caps from the first online CPU; every other CPU is read too and differences are reported. */
export function readHostCaps(p: Platform): HostCapsRead {
  const cpus = p.cpus()
  if (cpus.length === 0) {
    return { caps: { bhiCtrl: false, bhiNo: false, rrsbaCtrl: false, rrsba: false, stibp: false, ssbd: false }, unknown: HOST_CAP_NAMES.map(cap => ({ cap, why: 'no online CPU' })), disagreements: [], cpus: 0 }
  }
  const first = hostCapsFromCpuFacts(readCpu(p, cpus[0]!))
  const disagreements: HostCapsRead['disagreements'] = []
  for (const cpu of cpus.slice(1)) {
    const c = hostCapsFromCpuFacts(readCpu(p, cpu))
    const differ = HOST_CAP_NAMES.filter(n => c.caps[n] !== first.caps[n])
    if (differ.length) disagreements.push({ cpu, caps: differ })
  }
  return { caps: first.caps, unknown: first.unknown, disagreements, cpus: cpus.length }
}
