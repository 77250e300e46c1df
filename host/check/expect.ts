// `host expect`: the forced mask/value each vCPU must have for what its guest reported
// (CONTRACT.md section 5), with the rule behind every bit.
import { decode, hex } from '../../contract/bits.js'
import type { HostCaps } from '../../contract/host-caps.js'
import { SPEC_CTRL, VIRTUAL_MITIGATION_CTRL } from '../../contract/registers.js'
import type { GuestReport, ReportCpu } from '../../contract/report-json.js'
import { parseU64 } from '../../contract/bits.js'
import { forcedFor, validateUserspaceForce, type ForceReason, type UserspaceForce } from '../../contract/vmm-response.js'
import type { VmmProfile } from '../vmm/profile.js'

/** The CTRL value the guest holds on one CPU according to its report, or why it is unknown. */
export function guestCtrlOf(c: ReportCpu): { value?: bigint; basis: string } {
  const p = (s: string | undefined) => (s === undefined ? undefined : parseU64(s))
  switch (c.outcome) {
    case 'written': {
      const v = p(c.readBack) ?? p(c.written)
      return v === undefined ? { basis: 'written, but neither readBack nor written given' } : { value: v, basis: c.readBack !== undefined ? 'readBack after the write' : 'written' }
    }
    case 'unchanged': {
      const v = p(c.readBack) ?? p(c.before)
      return v === undefined ? { basis: 'unchanged, but no value given' } : { value: v, basis: 'current value (unchanged)' }
    }
    case 'dry-run': {
      const v = p(c.before)
      return v === undefined ? { basis: 'dry run, CTRL not read' } : { value: v, basis: 'value before the dry run (nothing written)' }
    }
    case 'readback-mismatch': {
      // The VMM must hold what the guest wrote (section 3: a read returns the last value written).
      const v = p(c.written)
      return v === undefined ? { basis: 'readback-mismatch without the written value' } : { value: v, basis: 'written (the read-back differed)' }
    }
    case 'not-enumerated': return { basis: 'virtual MSRs not enumerated on this CPU: guest did not write CTRL' }
    case 'fault': return { basis: `a guest access faulted${c.fault ? ` (${c.fault.step}: ${c.fault.errno})` : ''}` }
    case 'offline': return { basis: 'CPU went offline during the guest run' }
  }
}

export interface VcpuExpectation {
  cpu: number
  /** Guest CTRL the expectation is for (absent: unknown, nothing derived from the guest). */
  mitiCtrl?: string
  mitiCtrlBits?: string[]
  basis: string
  forcedMask: string
  forcedValue: string
  forcedMaskBits: string[]
  forcedValueBits: string[]
  rules: ForceReason[]
}

export interface Expectation {
  userspaceForce: { mask: string; value: string }
  hostCaps: HostCaps
  vcpus: VcpuExpectation[]
}

export function expectForCtrl(cpu: number, ctrl: bigint | undefined, basis: string, caps: HostCaps, force: UserspaceForce): VcpuExpectation {
  const f = forcedFor(ctrl ?? 0n, caps, force)
  return {
    cpu,
    ...(ctrl !== undefined ? { mitiCtrl: hex(ctrl), mitiCtrlBits: decode(VIRTUAL_MITIGATION_CTRL, ctrl) } : {}),
    basis,
    forcedMask: hex(f.mask),
    forcedValue: hex(f.value),
    forcedMaskBits: decode(SPEC_CTRL, f.mask),
    forcedValueBits: decode(SPEC_CTRL, f.value),
    rules: ctrl === undefined ? f.rules.filter(r => r.rule.startsWith('userspace')) : f.rules,
  }
}

/**
 * Expected forced state per reported CPU, for a VMM configured as `profile` on a host with `caps`.
 * A profile that does not advertise the virtual MSRs derives nothing (only userspace's force).
 */
export function expectFor(report: GuestReport, caps: HostCaps, profile: VmmProfile): { ok: true; expectation: Expectation } | { ok: false; error: string } {
  const v = validateUserspaceForce(profile.userspaceForce, caps)
  if (!v.ok) return { ok: false, error: `profile ${profile.name}: ${v.error}` }
  const force = profile.userspaceForce
  return {
    ok: true,
    expectation: {
      userspaceForce: { mask: hex(force.mask), value: hex(force.value) },
      hostCaps: { ...caps },
      vcpus: report.cpus.map(c => {
        const g = guestCtrlOf(c)
        const ctrl = profile.advertise ? g.value : undefined
        return expectForCtrl(c.cpu, ctrl, profile.advertise ? g.basis : `profile ${profile.name} does not advertise the virtual MSRs`, caps, force)
      }),
    },
  }
}
