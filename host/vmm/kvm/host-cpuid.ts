// How a host's KVM treats KVM_SET_CPUID2 for the contract leaves. Machines of this project's kind
// differ (KVM-NOTES.md "Two hosts of the same kind"): one KVM honours the table, one pins
// CPUID.(7,0) EAX/EDX to values without SPEC_CTRL/ARCH_CAPABILITIES, one to values with both.
// Tests inject each behaviour as a lens over what the real vCPU executes, so every path of the
// live tier runs on any machine; the real behaviour is measured (cpuid-proof.ts), never assumed.
import type { CpuidRegs } from '../../../guest/platform.js'
import type { CpuidEntry } from './sys.js'
import { leafKey, overlayRegs, PRESENTED_BITS, tableRegs } from './cpuid-table.js'

/** What the guest executes, given what the real vCPU executed. */
export type CpuidLens = (leaf: number, subleaf: number, regs: CpuidRegs) => CpuidRegs

export const KVM_CPUID_BEHAVIOURS = ['honours', 'pins-0', 'pins-1'] as const
export type KvmCpuidBehaviour = typeof KVM_CPUID_BEHAVIOURS[number]

/**
 * CPUID.(7,0) as the two pinning hosts showed it whatever was asked (KVM-NOTES.md): machine B
 * EAX 0x1, EDX 0x110 (neither EDX[26] SPEC_CTRL nor EDX[29] ARCH_CAPABILITIES); machine A
 * EDX 0xbc814410 (both set; its EAX was not recorded, 0x2 stands in).
 */
export const PINNED_7_0: Readonly<Record<'pins-0' | 'pins-1', { eax: number; edx: number }>> = {
  'pins-0': { eax: 0x1, edx: 0x110 },
  'pins-1': { eax: 0x2, edx: 0xbc814410 },
}

/** The lens of a host with behaviour `b`, for vCPUs whose KVM_SET_CPUID2 table is `table`. */
export function simulatedHostCpuid(b: KvmCpuidBehaviour): (table: readonly CpuidEntry[]) => CpuidLens {
  return table => (leaf, subleaf, regs) => {
    const bits = PRESENTED_BITS[leafKey(leaf, subleaf)]
    if (!bits) return regs
    // First honour the table for every presented bit (undoing whatever the real host pins)...
    const out = overlayRegs(regs, bits, tableRegs(table, leaf, subleaf))
    // ...then pin CPUID.(7,0) EAX/EDX as the simulated host does.
    if (b !== 'honours' && leaf === 7 && subleaf === 0) Object.assign(out, PINNED_7_0[b])
    return out
  }
}
