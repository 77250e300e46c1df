// The report's write gate: the ONLY code path of `guest report` that calls platform.wrmsr
// (DESIGN.md conventions: "The agent never writes any MSR but 0x50000002, never sets a bit that
// MSR_VIRTUAL_MITIGATION_ENUM does not enumerate"). guest/selftest/test-writes.ts is the
// selftest's own, separately named gate; write-gate.test.ts proves no third path exists.
import type { AccessFault, Platform } from '../platform.js'
import { MSR } from '../../contract/registers.js'
import { hex } from '../../contract/bits.js'

export type GateOutcome =
  /** Nothing was written: the request broke a gate rule. */
  | { kind: 'refused'; reason: string }
  /** The write faulted (contract/CONTRACT.md section 3: a #GP surfaces as EIO through /dev/cpu/N/msr). */
  | { kind: 'write-fault'; fault: AccessFault }
  /** The write was accepted but the read-back faulted: the CPU's value is unknown. */
  | { kind: 'readback-fault'; written: bigint; fault: AccessFault }
  /** Written and read back equal (contract/CONTRACT.md section 3: "A read of 0x50000002 returns the last value written"). */
  | { kind: 'written'; written: bigint; readBack: bigint }
  /** Written, but the read-back differs: the VMM broke the read-back rule. */
  | { kind: 'readback-mismatch'; written: bigint; readBack: bigint }

/**
 * Write `value` to MSR `index` on `cpu`, then read it back.
 * `mitiEnum` is MSR_VIRTUAL_MITIGATION_ENUM as read on that same CPU through the discovery chain
 * (the MSRs are per vCPU, contract/CONTRACT.md section 3): any bit outside it is refused, because the VMM
 * must fault such a write and the agent must never attempt it. The gate reads MITI_ENUM again on
 * that CPU, right before the write, through the same descriptor as the write (issue 14 item 7): a
 * value outside what the CPU enumerates *now*, or a changed MITI_ENUM, is refused.
 */
export function gatedWrite(platform: Platform, cpu: number, index: number, value: bigint, mitiEnum: bigint): GateOutcome {
  if (index !== MSR.VIRTUAL_MITIGATION_CTRL) {
    return { kind: 'refused', reason: `write gate: refusing MSR ${hex(index)}; the agent writes only MSR_VIRTUAL_MITIGATION_CTRL (0x50000002)` }
  }
  if (value < 0n || value >= 1n << 64n) {
    return { kind: 'refused', reason: `write gate: ${value} is not a 64-bit value` }
  }
  const outside = value & ~mitiEnum
  if (outside !== 0n) {
    // contract/CONTRACT.md section 3: "A write to 0x50000002 with any bit not set in 0x50000001 faults".
    return { kind: 'refused', reason: `write gate: refusing ${hex(value)} on cpu ${cpu}: bits ${hex(outside)} are not enumerated by MSR_VIRTUAL_MITIGATION_ENUM (${hex(mitiEnum)})` }
  }
  const now = platform.rdmsr(cpu, MSR.VIRTUAL_MITIGATION_ENUM)
  if (!now.ok) return { kind: 'refused', reason: `write gate: refusing to write cpu ${cpu}: MSR_VIRTUAL_MITIGATION_ENUM unreadable at write time (${now.fault.errno}: ${now.fault.message})` }
  if (now.value !== mitiEnum) {
    return { kind: 'refused', reason: `write gate: refusing ${hex(value)} on cpu ${cpu}: MSR_VIRTUAL_MITIGATION_ENUM reads ${hex(now.value)} at write time, ${hex(mitiEnum)} when probed` }
  }
  const w = platform.wrmsr(cpu, index, value)
  if (!w.ok) return { kind: 'write-fault', fault: w.fault }
  const r = platform.rdmsr(cpu, index)
  if (!r.ok) return { kind: 'readback-fault', written: value, fault: r.fault }
  if (r.value !== value) return { kind: 'readback-mismatch', written: value, readBack: r.value }
  return { kind: 'written', written: value, readBack: r.value }
}
