// Facts: what one machine shows, per CPU (issue 2). Pure data; the probe gathers it,
// the decision reads it, --record/--replay store it as JSON (see facts-json.ts).
import type { AccessFault, CpuidRegs } from './access.js'

/** CPUID leaves the probe reads, keyed "leaf.subleaf" in hex: the contract needs no others. */
export const CPUID_LEAVES = [
  { key: '0x0.0', leaf: 0x0, subleaf: 0 },
  { key: '0x1.0', leaf: 0x1, subleaf: 0 },
  { key: '0x7.0', leaf: 0x7, subleaf: 0 },
  { key: '0x7.2', leaf: 0x7, subleaf: 2 },
  { key: '0x40000000.0', leaf: 0x40000000, subleaf: 0 },
] as const
export type CpuidKey = (typeof CPUID_LEAVES)[number]['key']

export type CpuidFact = { regs: CpuidRegs } | { fault: AccessFault }
/** An MSR read as the probe saw it; `skipped` says why it was deliberately not read (discovery chain). */
export type MsrFact = { value: bigint } | { fault: AccessFault } | { skipped: string }

export interface CpuFacts {
  cpu: number
  cpuid: Partial<Record<CpuidKey, CpuidFact>>
  /** Keyed by MSR index in lower-case hex, e.g. "0x10a", "0x50000002". */
  msr: Record<string, MsrFact>
}

export interface KernelFacts {
  release?: string
  cmdline?: string
  /** File name under /sys/devices/system/cpu/vulnerabilities -> its first line. */
  vulnerabilities: Record<string, string>
  /** /sys/kernel/security/lockdown, when readable (explains EPERM on /dev/cpu/N/msr). */
  lockdown?: string
}

export interface Facts {
  /** Platform kind that gathered these facts (devcpu, simulated, kvm, ...). */
  platform: string
  kernel: KernelFacts
  cpus: CpuFacts[]
}

export const msrKey = (index: number): string => '0x' + index.toString(16)
