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
  /**
   * The build options the kernel's choices depend on (KERNEL_CONFIG_OPTIONS), from
   * /boot/config-<release>: "y", "m" or "n" ("# CONFIG_X is not set"); absent when the file is.
   */
  config?: Record<string, string>
}

/**
 * Options that change the mitigation defaults (contract/CONTRACT.md section 6): CONFIG_KVM is what the
 * 7.x guest_host attack vector defaults to; the others name the BHI / IBRS-entry / retpoline
 * defaults under their 6.9+ (MITIGATION_*) and older names; CALL_DEPTH_TRACKING and RETBLEED decide
 * whether retbleed=stuff / the default retbleed mitigation keep auto spectre_v2 from IBRS (bugs.c Linux 7.2.13).
 */
export const KERNEL_CONFIG_OPTIONS = [
  'CONFIG_KVM', 'CONFIG_MITIGATION_SPECTRE_BHI', 'CONFIG_SPECTRE_BHI_ON', 'CONFIG_MITIGATION_IBRS_ENTRY', 'CONFIG_CPU_IBRS_ENTRY',
  'CONFIG_MITIGATION_RETPOLINE', 'CONFIG_RETPOLINE', 'CONFIG_CPU_MITIGATIONS',
  'CONFIG_MITIGATION_CALL_DEPTH_TRACKING', 'CONFIG_MITIGATION_RETBLEED',
] as const

/** The KERNEL_CONFIG_OPTIONS lines of a kernel config file. */
export function configOptions(text: string): Record<string, string> {
  const want = new Set<string>(KERNEL_CONFIG_OPTIONS)
  const out: Record<string, string> = {}
  for (const l of text.split('\n')) {
    const m = /^(CONFIG_[A-Z0-9_]+)=(.*)$/.exec(l) ?? /^# (CONFIG_[A-Z0-9_]+) is not set$/.exec(l)
    if (m && want.has(m[1]!)) out[m[1]!] = m[2] === undefined ? 'n' : m[2].replace(/^"|"$/g, '').slice(0, 64)
  }
  return out
}

export interface Facts {
  /** Platform kind that gathered these facts (devcpu, simulated, kvm, ...). */
  platform: string
  kernel: KernelFacts
  cpus: CpuFacts[]
}

export const msrKey = (index: number): string => '0x' + index.toString(16)
