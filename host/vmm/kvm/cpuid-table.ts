// The KVM_SET_CPUID2 table for a presented CPU, and the check of what the vCPU really shows.
// Pure (no I/O): the KVM table comes in as data.
import type { CpuidRegs } from '../../../guest/platform.js'
import { cpuidLeaves, type PresentedCpu } from '../../../contract/cpu-model.js'
import { CPUID1_ECX_HYPERVISOR } from '../../../contract/registers.js'
import { KVM_CPUID_FLAG_SIGNIFICANT_INDEX } from './uapi.js'
import type { CpuidEntry } from './sys.js'

const REGS = ['eax', 'ebx', 'ecx', 'edx'] as const
type Reg = typeof REGS[number]
const ALL = 0xffffffff

/**
 * Which bits of each contract leaf this VMM sets from the presented CPU (the rest comes from
 * KVM_GET_SUPPORTED_CPUID). Leaf 1: only the signature (EAX) and the hypervisor bit (ECX[31]):
 * cpuidLeaves() leaves the other leaf 1 bits 0, but a vCPU needs its supported features there
 * (e.g. EDX[5] MSR). Keys as in cpuidLeaves() (facts.ts CPUID_LEAVES).
 */
export const PRESENTED_BITS: Readonly<Record<string, Partial<Record<Reg, number>>>> = {
  '0x0.0': { ebx: ALL, ecx: ALL, edx: ALL },                                   // vendor string
  '0x1.0': { eax: ALL, ecx: (1 << CPUID1_ECX_HYPERVISOR) >>> 0 },             // signature, hypervisor (contract/CONTRACT.md section 2)
  '0x7.0': { eax: ALL, edx: ALL },                                             // max subleaf, SPEC_CTRL/STIBP/ARCH_CAP/SSBD
  '0x7.2': { edx: ALL },                                                       // RRSBA_CTRL, BHI_CTRL
  '0x40000000.0': { eax: ALL, ebx: ALL, ecx: ALL, edx: ALL },                  // hypervisor signature
}

export const parseKey = (k: string): { leaf: number; subleaf: number } => {
  const [l, s] = k.split('.')
  return { leaf: Number(l), subleaf: Number(s ?? 0) }
}
export const leafKey = (leaf: number, subleaf: number): string => `0x${leaf.toString(16)}.${subleaf}`

/** Leaves whose subleaf (ECX) selects the answer (Intel SDM CPUID; KVM sets SIGNIFICANT_INDEX for these). */
const INDEXED = new Set([0x4, 0x7, 0xb, 0xd, 0xf, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1d, 0x1e, 0x1f, 0x24, 0x8000001d, 0x80000020])

/**
 * KVM_SET_CPUID2 entries: KVM's supported table with the presented CPU's bits (PRESENTED_BITS)
 * written over it; contract leaves missing from the supported table are added.
 * Leaf 0 EAX (max basic leaf) stays KVM's so the guest sees no leaf KVM has no entry for.
 */
export function guestCpuidTable(supported: readonly CpuidEntry[], presented: PresentedCpu): CpuidEntry[] {
  const want = cpuidLeaves(presented)
  const table = supported.map(e => ({ ...e }))
  for (const [key, regs] of Object.entries(want)) {
    const { leaf, subleaf } = parseKey(key)
    let e = table.find(x => x.function === leaf && (x.index === subleaf || !(x.flags & KVM_CPUID_FLAG_SIGNIFICANT_INDEX)))
    if (!e) {
      e = { function: leaf, index: subleaf, flags: INDEXED.has(leaf) ? KVM_CPUID_FLAG_SIGNIFICANT_INDEX : 0, eax: 0, ebx: 0, ecx: 0, edx: 0 }
      table.push(e)
    }
    const bits = PRESENTED_BITS[key] ?? {}
    for (const r of REGS) {
      const m = bits[r] ?? 0
      e[r] = ((e[r] & ~m) | (regs[r] & m)) >>> 0
    }
  }
  return table
}

/** The registers `table` gives (leaf, subleaf), zeros where it has no entry (as KVM answers). */
export function tableRegs(table: readonly CpuidEntry[], leaf: number, subleaf: number): CpuidRegs {
  const e = table.find(x => x.function === leaf && (x.index === subleaf || !(x.flags & KVM_CPUID_FLAG_SIGNIFICANT_INDEX)))
  return e ? { eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx } : { eax: 0, ebx: 0, ecx: 0, edx: 0 }
}

/** regs with the bits of `mask` taken from `want` (the VMM's table answering for the vCPU). */
export function overlayRegs(regs: CpuidRegs, mask: Partial<CpuidRegs>, want: CpuidRegs): CpuidRegs {
  const out = { ...regs }
  for (const r of REGS) out[r] = ((regs[r] & ~(mask[r] ?? 0)) | (want[r] & (mask[r] ?? 0))) >>> 0
  return out
}

/** Per contract leaf: did the vCPU's executed CPUID show what KVM_SET_CPUID2 asked for? */
export interface LeafOrigin {
  leaf: string
  /** true: every presented bit came from the vCPU (the guest really executes it so). */
  fromVcpu: boolean
  requested: CpuidRegs
  seen: CpuidRegs
  /** Presented bits (PRESENTED_BITS) where seen differs from requested; 0 everywhere when fromVcpu. */
  differs: CpuidRegs
}

/**
 * Compare the CPUID the vCPU executed with the table that was set. On some hosts KVM keeps only
 * part of KVM_SET_CPUID2 (KVM-NOTES.md: leaf 1 ECX/EDX and leaf 7.0/7.1 are replaced by native
 * values), so a live tier must say per leaf where a value came from, never assume.
 */
export function cpuidOrigins(requested: readonly CpuidEntry[], seen: Readonly<Record<string, CpuidRegs>>): LeafOrigin[] {
  return Object.keys(PRESENTED_BITS).filter(k => seen[k]).map(key => {
    const { leaf, subleaf } = parseKey(key)
    const req = tableRegs(requested, leaf, subleaf)
    const got = seen[key]!
    const bits = PRESENTED_BITS[key]!
    const differs = { eax: 0, ebx: 0, ecx: 0, edx: 0 }
    for (const r of REGS) differs[r] = ((req[r] ^ got[r]) & (bits[r] ?? 0)) >>> 0
    return { leaf: key, fromVcpu: REGS.every(r => differs[r] === 0), requested: req, seen: { ...got }, differs }
  })
}

/** The table with every presented bit flipped: the control for cpuidFollowed. */
export function invertPresented(table: readonly CpuidEntry[]): CpuidEntry[] {
  return table.map(e => {
    const bits = PRESENTED_BITS[leafKey(e.function, e.index)]
    if (!bits) return { ...e }
    const out = { ...e }
    for (const r of REGS) out[r] = (e[r] ^ (bits[r] ?? 0)) >>> 0
    return out
  })
}

/** Per contract leaf: which presented bits followed KVM_SET_CPUID2 in both the VM and its control. */
export interface LeafProof {
  leaf: string
  /** Every presented bit of this leaf followed the table both ways: the guest sees the VMM's value. */
  fromTable: boolean
  /** Presented bits that followed the table (set where asked, clear where asked) in both VMs. */
  followed: CpuidRegs
  /** Presented bits that did not: the host decides them, whatever the VMM asks. */
  hostBits: CpuidRegs
}

/**
 * A bit equal to what was asked may be a coincidence (the host's own value). Asking once for the
 * value and once for its complement (invertPresented) and seeing both proves the bit comes from the
 * table. Inputs: the two tables and the CPUID each VM executed.
 */
export function cpuidFollowed(table: readonly CpuidEntry[], seen: Readonly<Record<string, CpuidRegs>>,
  control: readonly CpuidEntry[], controlSeen: Readonly<Record<string, CpuidRegs>>): LeafProof[] {
  const a = Object.fromEntries(cpuidOrigins(table, seen).map(o => [o.leaf, o]))
  const b = Object.fromEntries(cpuidOrigins(control, controlSeen).map(o => [o.leaf, o]))
  return Object.keys(PRESENTED_BITS).filter(k => a[k] && b[k]).map(leaf => {
    const followed = { eax: 0, ebx: 0, ecx: 0, edx: 0 }, hostBits = { eax: 0, ebx: 0, ecx: 0, edx: 0 }
    for (const r of REGS) {
      const m = PRESENTED_BITS[leaf]![r] ?? 0
      const bad = (a[leaf]!.differs[r] | b[leaf]!.differs[r]) & m
      followed[r] = (m & ~bad) >>> 0
      hostBits[r] = bad >>> 0
    }
    return { leaf, fromTable: REGS.every(r => hostBits[r] === 0), followed, hostBits }
  })
}
