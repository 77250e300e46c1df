// Types of the guest verdict (contract/verdict.ts), apart so findings.ts and renderers can name them.

/** The two things a guest relies on (contract/CONTRACT.md section 1): BHI, and retpoline / RRSBA. */
export type Concern = 'bhi' | 'retpoline'
export const CONCERNS: readonly Concern[] = ['bhi', 'retpoline']

/** contract/CONTRACT.md section 8. */
export type Verdict = 'protected' | 'at-risk' | 'vulnerable' | 'unknown'
/** What a finding does to its concern's verdict, or a note that changes nothing. */
export type Effect = Exclude<Verdict, 'protected'> | 'note'

/** What the VMM has to do for a concern, and whether it does. */
export type VmmPart = 'not-needed' | 'backing' | 'cannot-be-told' | 'unknown'

/** One finding as found: the table entry (contract/findings.ts) plus where and why. */
export interface FindingHit {
  id: string
  effect: Effect
  concern?: Concern
  /** CPUs it applies to, when per CPU. */
  cpus?: number[]
  /** The facts behind it, in words. */
  detail: string
}

export interface ConcernVerdict {
  concern: Concern
  verdict: Verdict
  /** What the kernel uses for this concern, as it says it. */
  mitigation: string
  /** Why this verdict, one line. */
  basis: string
  /** Rule id of the basis (VERDICT_RULES in contract/verdict.ts). */
  rule: string
  vmm: VmmPart
  /** Ids of the findings that set this verdict. */
  findings: string[]
}

export interface GuestVerdict {
  verdict: Verdict
  environment: 'vm' | 'bare-metal' | 'unknown'
  concerns: ConcernVerdict[]
  findings: FindingHit[]
}
