// Types of the guest decision (contract/decide.ts). Kept apart so other modules can name them
// without pulling in the rules.
import type { MitiCtrlWish } from './miti-ctrl.js'

/** One conclusion's justification: which rule, in words, and where the rule comes from. */
export interface Reason { rule: string; text: string; source: string }

/**
 * The kernel's BHI state, one per spectre_bhi_state() string (Linux bugs.c), plus the
 * early-6.9 spellings mapped onto their meaning, and 'unknown' for anything else.
 */
export type BhiMode = 'not-affected' | 'bhi-dis-s' | 'sw-loop' | 'retpoline' | 'vmexit-sw-loop' | 'vulnerable'
  /** No BHI segment at all: the kernel predates the BHI mitigation (no clear_bhb_loop). */
  | 'not-reported'
  | 'unknown'

/** The spectre_v2 mode, one per spectre_v2_strings[] entry (Linux bugs.c). */
export type SpectreV2Mode = 'not-affected' | 'none' | 'retpoline' | 'lfence' | 'eibrs' | 'eibrs-lfence' | 'eibrs-retpoline' | 'ibrs' | 'unknown'

export type Tri = boolean | 'unknown'

/** Discovery chain on one CPU (contract/CONTRACT.md section 3). */
export interface VirtEnumeration {
  cpu: number
  /** Last step passed: none, arch-cap (bit 63 set), virtual-enum (0x50000000 bit 0), miti-enum (0x50000001 read). */
  reached: 'none' | 'arch-cap' | 'virtual-enum' | 'miti-enum'
  enumerated: boolean
  mitiEnum?: bigint
  mitiCtrl?: bigint
  /** What the agent would write on this CPU (read-modify-write); absent when not enumerated or CTRL unreadable. */
  wanted?: bigint
  reason: Reason
}

export interface Decision {
  cpu: { vendor: string; family: number; model: number; stepping: number; hypervisor: boolean }
  /** Whether the kernel should consider itself affected by BHI (X86_BUG_BHI). */
  bhiAffected: { value: Tri; reasons: Reason[] }
  /** What the running kernel says (sysfs spectre_v2), parsed. */
  kernel: { spectreV2: SpectreV2Mode; bhi: BhiMode; raw?: string; retpoline: Tri }
  /** What the kernel should have chosen for this CPU and command line (bugs.c selection order). */
  expected: { spectreV2: SpectreV2Mode; bhi: BhiMode; retpoline: Tri; reasons: Reason[] }
  /** Kernel state vs expectation, where both are known and differ. */
  mismatches: { what: 'bhi' | 'spectre_v2'; kernel: string; expected: string; reason: Reason }[]
  /** CTRL bits the guest should report, each with its reasons (contract/CONTRACT.md section 4). */
  wish: MitiCtrlWish
  wishReasons: Reason[]
  virt: VirtEnumeration[]
  /** All CPUs enumerate the virtual MSRs. */
  enumerated: boolean
  /** CPUs whose CPUID or MSR values differ from CPU 0's, with what differs. */
  disagreements: { cpu: number; what: string }[]
}
