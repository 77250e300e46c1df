// A CPU model as data (scenarios/cpus/*.yaml): the CPUID and ARCH_CAPABILITIES values
// a host has or a VMM presents. Pure: loading YAML is done at the edges.
import type { CpuidRegs } from './access.js'
import { CPUID1_ECX_HYPERVISOR, CPUID7_EDX_ARCH_CAPABILITIES, hasBit32 } from './registers.js'

export type Vendor = 'GenuineIntel' | 'AuthenticAMD' | 'HygonGenuine' | 'CentaurHauls' | '  Shanghai  '

export interface CpuModel {
  /** Stable id, the file name without .yaml: "sapphire-rapids". */
  id: string
  /** Human name: "Intel Xeon 4th gen (Sapphire Rapids)". */
  name: string
  vendor: Vendor
  family: number
  model: number
  stepping: number
  /** CPUID.(7,0):EDX and CPUID.(7,2):EDX as 32-bit unsigned Numbers. */
  cpuid7_0_edx: number
  cpuid7_2_edx: number
  /** IA32_ARCH_CAPABILITIES, or null when CPUID.(7,0):EDX[29] is clear (no such MSR). */
  archCapabilities: bigint | null
  /** Where each value comes from: field name -> public source. */
  sources: Record<string, string>
}

/** What a guest sees of a model: the model itself plus what the VMM adds. */
export interface PresentedCpu {
  model: CpuModel
  /** CPUID.1:ECX[31]. */
  hypervisor: boolean
  /** Hypervisor vendor signature at 0x40000000 (e.g. "KVMKVMKVM\0\0\0"); only when hypervisor. */
  hypervisorVendor?: string
  /** ARCH_CAPABILITIES as presented (VMMs add VIRTUAL_ENUM, bit 63, here); null = no MSR. */
  archCapabilities: bigint | null
}

const str4 = (s: string, i: number): number =>
  (s.charCodeAt(i) | (s.charCodeAt(i + 1) << 8) | (s.charCodeAt(i + 2) << 16) | (s.charCodeAt(i + 3) << 24)) >>> 0

/** CPUID leaf 1 EAX signature from family/model/stepping (Intel SDM vol 2A, CPUID leaf 01H). */
export function signature(family: number, model: number, stepping: number): number {
  const baseFam = family >= 0xf ? 0xf : family
  const extFam = family >= 0xf ? family - 0xf : 0
  return ((extFam << 20) | ((model >> 4) << 16) | (baseFam << 8) | ((model & 0xf) << 4) | (stepping & 0xf)) >>> 0
}

/** Family/model/stepping from a leaf 1 EAX signature (inverse of `signature`). */
export function fms(eax: number): { family: number; model: number; stepping: number } {
  const baseFam = (eax >>> 8) & 0xf
  const family = baseFam === 0xf ? baseFam + ((eax >>> 20) & 0xff) : baseFam
  const model = (baseFam === 0x6 || baseFam === 0xf) ? (((eax >>> 16) & 0xf) << 4) | ((eax >>> 4) & 0xf) : (eax >>> 4) & 0xf
  return { family, model, stepping: eax & 0xf }
}

/**
 * The CPUID leaves the contract reads, as this presented CPU answers them.
 * Keys match CPUID_LEAVES in facts.ts. Bits the contract does not use are 0.
 */
export function cpuidLeaves(p: PresentedCpu): Record<string, CpuidRegs> {
  const v = p.model.vendor.padEnd(12, ' ')
  let edx7 = p.model.cpuid7_0_edx >>> 0
  // ARCH_CAPABILITIES MSR exists iff CPUID.(7,0):EDX[29] (contract/CONTRACT.md section 2).
  if (p.archCapabilities === null && hasBit32(edx7, CPUID7_EDX_ARCH_CAPABILITIES)) edx7 = (edx7 & ~(1 << CPUID7_EDX_ARCH_CAPABILITIES)) >>> 0
  if (p.archCapabilities !== null) edx7 = (edx7 | (1 << CPUID7_EDX_ARCH_CAPABILITIES)) >>> 0
  const leaves: Record<string, CpuidRegs> = {
    '0x0.0': { eax: 0x20, ebx: str4(v, 0), edx: str4(v, 4), ecx: str4(v, 8) },
    '0x1.0': { eax: signature(p.model.family, p.model.model, p.model.stepping), ebx: 0, ecx: p.hypervisor ? (1 << CPUID1_ECX_HYPERVISOR) >>> 0 : 0, edx: 0 },
    '0x7.0': { eax: 2, ebx: 0, ecx: 0, edx: edx7 },
    '0x7.2': { eax: 0, ebx: 0, ecx: 0, edx: p.model.cpuid7_2_edx >>> 0 },
  }
  if (p.hypervisor) {
    const hv = (p.hypervisorVendor ?? 'KVMKVMKVM\0\0\0').padEnd(12, '\0')
    leaves['0x40000000.0'] = { eax: 0x40000001, ebx: str4(hv, 0), ecx: str4(hv, 4), edx: str4(hv, 8) }
  } else {
    leaves['0x40000000.0'] = { eax: 0, ebx: 0, ecx: 0, edx: 0 }
  }
  return leaves
}

/** Vendor string from leaf 0 registers (EBX, EDX, ECX order). */
export function vendorOf(r: CpuidRegs): string {
  const s = (n: number) => String.fromCharCode(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff)
  return s(r.ebx) + s(r.edx) + s(r.ecx)
}
