// Read-only probe: gather Facts from a Platform (issue 2). Follows the discovery chain of
// contract/CONTRACT.md section 3 and never probes 0x5000000x without ARCH_CAPABILITIES bit 63.
import { CPUID_LEAVES, configOptions, msrKey, type CpuFacts, type Facts, type KernelFacts, type MsrFact } from '../contract/facts.js'
import { ARCH_CAP_VIRTUAL_ENUM, CPUID7_EDX_ARCH_CAPABILITIES, MSR, VIRT_ENUM_MITIGATION_CTRL_SUPPORT, hasBit32 } from '../contract/registers.js'
import type { Platform } from './platform.js'

/** Vulnerability files recorded with the facts; spectre_v2 is the one the decision reads. */
export const VULN_FILES = ['spectre_v2', 'spectre_v1', 'retbleed', 'spec_store_bypass', 'indirect_target_selection'] as const

export function probeKernel(p: Platform): KernelFacts {
  const first = (s: string | undefined) => s?.split('\n')[0]
  const k: KernelFacts = { vulnerabilities: {} }
  const rel = first(p.readText('/proc/sys/kernel/osrelease')); if (rel !== undefined) k.release = rel
  const cmd = first(p.readText('/proc/cmdline')); if (cmd !== undefined) k.cmdline = cmd
  const ld = first(p.readText('/sys/kernel/security/lockdown')); if (ld !== undefined) k.lockdown = ld
  // The build options behind the defaults (CONFIG_KVM -> 7.x guest_host vector): Debian installs
  // /boot/config-<release>; the qemu tier's image carries it there too (build-initramfs.sh).
  const cfg = rel !== undefined ? p.readText(`/boot/config-${rel}`) : undefined
  if (cfg !== undefined) k.config = configOptions(cfg)
  for (const f of VULN_FILES) {
    const v = first(p.readText(`/sys/devices/system/cpu/vulnerabilities/${f}`))
    if (v !== undefined) k.vulnerabilities[f] = v
  }
  return k
}

export function probeCpu(p: Platform, cpu: number): CpuFacts {
  const out: CpuFacts = { cpu, cpuid: {}, msr: {} }
  for (const l of CPUID_LEAVES) {
    // 0x40000000 is only meaningful under a hypervisor; reading it is harmless either way.
    const r = p.cpuid(cpu, l.leaf, l.subleaf)
    out.cpuid[l.key] = r.ok ? { regs: r.regs } : { fault: r.fault }
  }
  const read = (index: number): MsrFact => { const r = p.rdmsr(cpu, index); return r.ok ? { value: r.value } : { fault: r.fault } }
  const skip = (index: number, why: string) => { out.msr[msrKey(index)] = { skipped: why } }
  const l7 = out.cpuid['0x7.0']
  const chain = [MSR.ARCH_CAPABILITIES, MSR.VIRTUAL_ENUMERATION, MSR.VIRTUAL_MITIGATION_ENUM, MSR.VIRTUAL_MITIGATION_CTRL]
  const skipRest = (from: number, why: string) => { for (const i of chain.slice(from)) skip(i, why) }
  if (!l7 || !('regs' in l7)) return skipRest(0, 'CPUID leaf 7 unreadable'), out
  if (!hasBit32(l7.regs.edx, CPUID7_EDX_ARCH_CAPABILITIES)) return skipRest(0, 'CPUID.(7,0):EDX[29] clear: no IA32_ARCH_CAPABILITIES'), out
  const ac = (out.msr[msrKey(MSR.ARCH_CAPABILITIES)] = read(MSR.ARCH_CAPABILITIES))
  if (!('value' in ac)) return skipRest(1, 'IA32_ARCH_CAPABILITIES unreadable'), out
  // contract/CONTRACT.md section 3: never probe 0x5000000x without ARCH_CAPABILITIES bit 63.
  if ((ac.value & ARCH_CAP_VIRTUAL_ENUM) === 0n) return skipRest(1, 'ARCH_CAPABILITIES bit 63 (VIRTUAL_ENUM) clear'), out
  const ve = (out.msr[msrKey(MSR.VIRTUAL_ENUMERATION)] = read(MSR.VIRTUAL_ENUMERATION))
  if (!('value' in ve)) return skipRest(2, 'MSR_VIRTUAL_ENUMERATION unreadable'), out
  if ((ve.value & VIRT_ENUM_MITIGATION_CTRL_SUPPORT) === 0n) return skipRest(2, 'MSR_VIRTUAL_ENUMERATION bit 0 clear'), out
  out.msr[msrKey(MSR.VIRTUAL_MITIGATION_ENUM)] = read(MSR.VIRTUAL_MITIGATION_ENUM)
  out.msr[msrKey(MSR.VIRTUAL_MITIGATION_CTRL)] = read(MSR.VIRTUAL_MITIGATION_CTRL)
  return out
}

/**
 * Each CPU's descriptors are closed once its reads are done (issue 15 item 4, "Hardening" item 7):
 * holding two per CPU made the process's descriptor table double past 64, 128, 256, ... and each
 * doubling stalled 6-16 ms (a multi-threaded process waits for an RCU grace period, Linux
 * fs/file.c expand_fdtable). `guest report` opens the CPU again for its write.
 */
export function probe(p: Platform, cpus: number[] = p.cpus()): Facts {
  return { platform: p.kind, kernel: probeKernel(p), cpus: cpus.map(c => { const f = probeCpu(p, c); p.release?.(c); return f }) }
}
