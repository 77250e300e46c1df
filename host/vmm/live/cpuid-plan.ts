// What a live run does about CPUID the host cannot present (issue 10; DESIGN.md live KVM tier):
// which bits the kvm platform answers from the VMM's own table, the run's CPUID-origin and
// filter-exit test points, and when the whole run must SKIP. Pure: the proof, the per-run
// comparison and the filter-exit measurement come in as data, so tests inject every host kind.
import { hex } from '../../../contract/bits.js'
import type { PresentedCpu } from '../../../contract/cpu-model.js'
import { CPUID7_EDX_ARCH_CAPABILITIES, CPUID7_EDX_SPEC_CTRL, hasBit32 } from '../../../contract/registers.js'
import type { CpuidRegs } from '../../../guest/platform.js'
import type { TapPoint } from '../../../bin/lib/tap.js'
import type { LeafOrigin, LeafProof } from '../kvm/cpuid-table.js'
import type { FilterExitProbe } from '../kvm/cpuid-proof.js'
import { CONTRACT_BITS, cpuidFidelity, describeMask, leafName, type CpuidFidelity } from './cpuid-fidelity.js'

/**
 * overlay (default): host-pinned bits are answered from the VMM's table, the MSR points still run
 * on real vCPUs. strict: a run whose guest would see a contract bit other than the model's is
 * skipped whole. Without a proof (--no-cpuid-proof) nothing is known to be pinned: strict.
 */
export const CPUID_MODES = ['overlay', 'strict'] as const
export type CpuidMode = typeof CPUID_MODES[number]

type Reg = keyof CpuidRegs
const REGS: readonly Reg[] = ['eax', 'ebx', 'ecx', 'edx']
const zero = (): CpuidRegs => ({ eax: 0, ebx: 0, ecx: 0, edx: 0 })

export interface CpuidPlanInput {
  presented: PresentedCpu
  mode: CpuidMode
  /** What vCPU 0 of the run executed against the table (cpuidOrigins). */
  origins: readonly LeafOrigin[]
  /** The complement-VM proof; undefined with --no-cpuid-proof. */
  proof?: readonly LeafProof[]
  /** The filter-exit measurement of this run (measureFilterExits). */
  exits?: readonly FilterExitProbe[]
  /** CPUID.(7,0):EDX of the run's vCPU as this host's KVM really answers it (no injected lens). */
  rawEdx7?: number
}

export interface CpuidPlan {
  fidelity: CpuidFidelity
  /** Contract bits (CONTRACT_BITS) the proof found host-pinned, per leaf. */
  pinned: Record<string, CpuidRegs>
  /** Presented bits the platform answers from the VMM's table (overlay mode), per leaf. */
  overlay: Record<string, CpuidRegs>
  /** The run's CPUID-origin point, then its filter-exit point. */
  points: TapPoint[]
  /** Set: the whole run cannot stand for the model on this host; every point SKIPs with this. */
  skip?: string
}

/** "CPUID.(7,0):EAX, EDX[26] SPEC_CTRL, EDX[29] ARCH_CAPABILITIES" for the masks given per leaf. */
function bitList(masks: Readonly<Record<string, CpuidRegs>>): string {
  return Object.entries(masks).map(([leaf, m]) => `${leafName(leaf)}:${REGS.filter(r => m[r] !== 0).map(r => describeMask(leaf, r, m[r])).join(', ')}`).join('; ')
}

function planExits(i: CpuidPlanInput): { point: TapPoint; skip?: string } {
  const name = 'filtered MSRs exit to the VMM when the vCPU\'s own CPUID lacks their bits (0x10A without CPUID.(7,0):EDX[29], 0x48 without EDX[26])'
  if (!i.exits) return { point: { ok: true, name, skip: 'not measured on this run' } }
  // Needed: the presented model has the MSR, the run's real vCPU does not show its bit.
  const raw = i.rawEdx7
  const modelHas = (bit: number) => bit === CPUID7_EDX_ARCH_CAPABILITIES ? i.presented.archCapabilities !== null : hasBit32(i.presented.model.cpuid7_0_edx, bit)
  const needed = (bit: number) => modelHas(bit) && raw !== undefined && !hasBit32(raw, bit)
  const lines = i.exits.map(e => e.vcpuLacksBit
    ? `${e.access} ${e.exited ? 'exits' : 'does NOT exit'} with EDX[${e.bit}] ${e.bitName} clear in the vCPU (measured)`
    : `${e.access}: not measurable here, this host's vCPUs show EDX[${e.bit}] ${e.bitName} whatever KVM_SET_CPUID2 asks`)
  const broken = i.exits.filter(e => e.vcpuLacksBit && !e.exited && needed(e.bit))
  if (broken.length) {
    const why = `${broken.map(e => e.access).join(', ')} did not reach the VMM with the bit clear in the vCPU's CPUID, so the run's MSR points cannot run on this host's vCPUs`
    return { point: { ok: true, name, skip: why, diag: { measured: lines } }, skip: why }
  }
  return { point: { ok: true, name, diag: { measured: lines, neededByThisRun: [CPUID7_EDX_ARCH_CAPABILITIES, CPUID7_EDX_SPEC_CTRL].filter(needed).map(b => `EDX[${b}]`) } } }
}

export function planCpuid(i: CpuidPlanInput): CpuidPlan {
  const fidelity = cpuidFidelity(i.origins, i.proof)
  const pinned: Record<string, CpuidRegs> = {}
  const overlay: Record<string, CpuidRegs> = {}
  for (const p of i.proof ?? []) {
    const want = CONTRACT_BITS[p.leaf] ?? {}
    const c = zero()
    for (const r of REGS) c[r] = (p.hostBits[r] & (want[r] ?? 0)) >>> 0
    if (REGS.some(r => c[r] !== 0)) pinned[p.leaf] = c
    if (i.mode === 'overlay' && !p.fromTable) overlay[p.leaf] = { ...p.hostBits }
  }
  const exits = planExits(i)
  const originName = 'CPUID origin: every CPUID leaf and bit the agent reads comes from the vCPU as the VMM set it (KVM_SET_CPUID2)'
  let origin: TapPoint
  let skip: string | undefined
  if (!i.proof) {
    // Compared, not proven: a bit equal to the model's may be the host's own (cpuid-table.ts cpuidFollowed).
    if (fidelity.blocking.length) skip = `this host cannot present ${i.presented.model.id} to a guest: ${fidelity.blocking.join('; ')}`
    origin = { ok: true, name: originName, skip: skip ?? `not proven (--no-cpuid-proof): ${fidelity.statement}` }
  } else if (Object.keys(pinned).length === 0) {
    origin = { ok: true, name: originName, diag: { statement: fidelity.statement } }
  } else {
    const seen = Object.fromEntries(i.origins.map(o => [o.leaf, o.seen]))
    const shown = Object.keys(pinned).map(l => `${leafName(l)} ${REGS.filter(r => pinned[l]![r] !== 0).map(r => `${r.toUpperCase()} ${hex(seen[l]?.[r] ?? 0)}`).join(' ')}`).join('; ')
    const what = `${bitList(pinned)}: this host's KVM pins it (the vCPU shows ${shown} whatever KVM_SET_CPUID2 asks)`
    if (i.mode === 'overlay') {
      origin = { ok: true, name: originName, skip: `${what}; the agent is answered these bits from the VMM's table, MSR accesses still run on real vCPUs` }
    } else {
      if (fidelity.blocking.length) skip = `--cpuid strict: this host cannot present ${i.presented.model.id} to a guest: ${fidelity.blocking.join('; ')}`
      origin = { ok: true, name: originName, skip: skip ?? `${what}; the pinned values equal the model's, so the guest sees the model (--cpuid strict)` }
    }
  }
  skip ??= exits.skip
  return { fidelity, pinned, overlay, points: [origin, exits.point], ...(skip !== undefined ? { skip } : {}) }
}
