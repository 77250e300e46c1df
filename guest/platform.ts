// The one interface every guest-side step goes through (DESIGN.md "Layers").
// All calls are synchronous: /dev/cpu pread/pwrite, the in-process emulation and
// KVM_RUN through koffi are all blocking calls, and a sync API keeps the agent simple.

import type { AccessFault, CpuidRegs } from '../contract/access.js'
// The register and fault types live in the contract (they name what the rules are about).
export type { AccessFault, CpuidRegs }

export type CpuidResult = { ok: true; regs: CpuidRegs } | { ok: false; fault: AccessFault }
export type MsrRead = { ok: true; value: bigint } | { ok: false; fault: AccessFault }
export type MsrWrite = { ok: true } | { ok: false; fault: AccessFault }

export interface Platform {
  /** Short name shown in output: devcpu, recorded, simulated, kvm. */
  readonly kind: string
  /** Online CPU numbers, ascending. */
  cpus(): number[]
  cpuid(cpu: number, leaf: number, subleaf: number): CpuidResult
  rdmsr(cpu: number, index: number): MsrRead
  /** Only guest/apply's write gate may call this (contract/CONTRACT.md section 3, DESIGN.md conventions). */
  wrmsr(cpu: number, index: number, value: bigint): MsrWrite
  /** A text file of the guest (sysfs, /proc): undefined when absent or unreadable. */
  readText(path: string): string | undefined
  /**
   * Done with this CPU for now: close what it holds open (guest/devcpu.ts). A later access opens
   * again. Optional: platforms that hold nothing per CPU leave it out.
   */
  release?(cpu: number): void
  /** Done with the platform: close everything it holds. */
  close?(): void
}
