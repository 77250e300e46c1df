// Why a CPU does (or does not) enumerate the virtual MSRs, from what the probe saw
// (contract/CONTRACT.md section 3, discovery steps 1-3). decision.virt says *whether*; this says whether a
// "no" is an answer, a fault that leaves the question open (exit 3), or a VMM contract violation
// (exit 1). Pure: reads Facts only, never the platform.
import type { CpuFacts, MsrFact } from '../../contract/facts.js'
import { msrKey } from '../../contract/facts.js'
import type { AccessFault } from '../platform.js'
import {
  ARCH_CAP_VIRTUAL_ENUM, CPUID7_EDX_ARCH_CAPABILITIES, MSR, VIRT_ENUM_MITIGATION_CTRL_SUPPORT, hasBit32,
} from '../../contract/registers.js'

export type ChainVerdict =
  /** Every step passed: ARCH_CAP bit 63, VIRTUAL_ENUMERATION bit 0, MITI_ENUM read. */
  | { kind: 'enumerated'; mitiEnum: bigint }
  /** A definite no: the named step says the MSRs do not exist. Nothing to report; not an error. */
  | { kind: 'absent'; why: string }
  /** The chain could not be walked (driver missing, not permitted, not probed): could not tell. */
  | { kind: 'unknown'; step: string; fault: AccessFault }
  /** The VMM enumerated an MSR that then faulted: a contract violation (contract/CONTRACT.md section 3). */
  | { kind: 'violation'; step: string; fault: AccessFault }

const SEC3 = 'contract/CONTRACT.md section 3'

function msrStep(f: MsrFact | undefined, index: number, cpu: number, enumeratedByPrevious: boolean):
  { value: bigint } | Exclude<ChainVerdict, { kind: 'enumerated' } | { kind: 'absent' }> {
  const step = `rdmsr ${msrKey(index)}`
  if (f === undefined) return { kind: 'unknown', step, fault: { errno: 'ENODATA', message: `cpu ${cpu}: the probe did not read MSR ${msrKey(index)}` } }
  if ('skipped' in f) return { kind: 'unknown', step, fault: { errno: 'ENODATA', message: `cpu ${cpu}: the probe skipped MSR ${msrKey(index)}: ${f.skipped}` } }
  if ('fault' in f) {
    // An EIO (#GP) on an MSR the previous step enumerated breaks section 3; any other errno
    // (ENOENT no msr driver, EACCES/EPERM lockdown, ENXIO offline) means we could not look.
    const kind = f.fault.errno === 'EIO' && enumeratedByPrevious ? 'violation' : 'unknown'
    return { kind, step, fault: f.fault }
  }
  return { value: f.value }
}

/** Walk the discovery chain over one CPU's facts, in the contract's order, stopping at the first "no". */
export function chainVerdict(cpu: number, cf: CpuFacts | undefined): ChainVerdict {
  if (cf === undefined) {
    return { kind: 'unknown', step: 'probe', fault: { errno: 'ENODATA', message: `cpu ${cpu} was not probed (did it come online after the probe?); run the report again` } }
  }
  // Step 1: CPUID.(7,0):EDX[29] says IA32_ARCH_CAPABILITIES exists.
  const c7 = cf.cpuid['0x7.0']
  if (c7 === undefined) return { kind: 'unknown', step: 'cpuid 0x7.0', fault: { errno: 'ENODATA', message: `cpu ${cpu}: the probe did not read CPUID leaf 7` } }
  if ('fault' in c7) return { kind: 'unknown', step: 'cpuid 0x7.0', fault: c7.fault }
  if (!hasBit32(c7.regs.edx, CPUID7_EDX_ARCH_CAPABILITIES)) {
    return { kind: 'absent', why: `CPUID.(7,0):EDX[29] is clear: no IA32_ARCH_CAPABILITIES, so no virtual MSRs (${SEC3}, step 1)` }
  }
  // Step 1: ARCH_CAPABILITIES bit 63 (VIRTUAL_ENUM). EIO here is a fault on an MSR CPUID enumerated:
  // still "could not tell" for the virtual MSRs, since the chain never reached them.
  const ac = msrStep(cf.msr[msrKey(MSR.ARCH_CAPABILITIES)], MSR.ARCH_CAPABILITIES, cpu, false)
  if (!('value' in ac)) return ac
  if ((ac.value & ARCH_CAP_VIRTUAL_ENUM) === 0n) {
    // Gate first: a VMM that reads 0 for unknown MSRs is never asked (contract/CONTRACT.md section 3, last rule).
    return { kind: 'absent', why: `ARCH_CAPABILITIES bit 63 (VIRTUAL_ENUM) is clear: MSR_VIRTUAL_ENUMERATION does not exist and 0x5000000x was not probed (${SEC3}, step 1)` }
  }
  // Step 2: VIRTUAL_ENUMERATION bit 0 (MITIGATION_CTRL_SUPPORT).
  const ve = msrStep(cf.msr[msrKey(MSR.VIRTUAL_ENUMERATION)], MSR.VIRTUAL_ENUMERATION, cpu, true)
  if (!('value' in ve)) return ve
  if ((ve.value & VIRT_ENUM_MITIGATION_CTRL_SUPPORT) === 0n) {
    return { kind: 'absent', why: `MSR_VIRTUAL_ENUMERATION (0x50000000) bit 0 is clear: MITI_ENUM and MITI_CTRL do not exist (${SEC3}, step 2)` }
  }
  // Step 3: MITI_ENUM says what the VMM can deploy.
  const me = msrStep(cf.msr[msrKey(MSR.VIRTUAL_MITIGATION_ENUM)], MSR.VIRTUAL_MITIGATION_ENUM, cpu, true)
  if (!('value' in me)) return me
  return { kind: 'enumerated', mitiEnum: me.value }
}
