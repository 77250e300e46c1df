// `host expect`: the forced mask/value each vCPU must have for what its guest reported
// (contract/CONTRACT.md section 5), with the rule behind every bit.
import { decode, hex } from '../../contract/bits.js'
import type { HostCaps } from '../../contract/host-caps.js'
import { MITI_CTRL_BHB_CLEAR_SEQ_S_USED, MITI_CTRL_RETPOLINE_S_USED, SPEC_CTRL, VIRTUAL_MITIGATION_CTRL } from '../../contract/registers.js'
import { cpuRanges } from '../../contract/format.js'
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
  /** What the guest relies on that the VMM cannot protect (issue 12); ids from contract/findings.ts. */
  findings?: GuestNeedFinding[]
}

/** A bit the guest relies on (its report's decision) that the VMM cannot be told on some vCPUs. */
export interface GuestNeedFinding {
  id: 'vmm.not-enumerated' | 'vmm.enum-lacks-bit' | 'report.not-reported'
  /** The CTRL bit the guest relies on: "BHB_CLEAR_SEQ_S_USED (bit 0)" or "RETPOLINE_S_USED (bit 1)". */
  bit: string
  vcpus: string
  text: string
}

const NEEDS = [
  { key: 'bhbClearSeqSUsed', mask: MITI_CTRL_BHB_CLEAR_SEQ_S_USED, bit: 'BHB_CLEAR_SEQ_S_USED (bit 0)', enumBit: 'BHB_CLEAR_SEQ_S_SUPPORT (MITI_ENUM bit 0)', uses: 'the short BHB-clearing sequence', forces: 'BHI_DIS_S' },
  { key: 'retpolineSUsed', mask: MITI_CTRL_RETPOLINE_S_USED, bit: 'RETPOLINE_S_USED (bit 1)', enumBit: 'RETPOLINE_S_SUPPORT (MITI_ENUM bit 1)', uses: 'retpoline', forces: 'RRSBA_DIS_S' },
] as const

/**
 * The guest's own decision (report.decision) against what each vCPU can carry: a guest that relies
 * on a sequence the VMM does not enumerate is unprotected by the VMM, whatever CTRL holds
 * (contract/CONTRACT.md sections 3-5). Never contradicts the report.
 */
export function guestNeedFindings(report: GuestReport): GuestNeedFinding[] {
  const out: GuestNeedFinding[] = []
  for (const n of NEEDS) {
    if (report.decision[n.key] !== true) continue
    const notEnum: number[] = [], lacks: number[] = [], notTold: number[] = []
    for (const c of report.cpus) {
      const en = c.mitiEnum === undefined ? undefined : parseU64(c.mitiEnum)
      if (c.outcome === 'not-enumerated') notEnum.push(c.cpu)
      else if (en !== undefined && (en & n.mask) === 0n) lacks.push(c.cpu)
      else if (en !== undefined) {
        const g = guestCtrlOf(c)
        if (g.value === undefined || (g.value & n.mask) === 0n) notTold.push(c.cpu)
      }
    }
    const vc = (l: number[]) => `${l.length > 1 ? 'vCPUs' : 'vCPU'} ${cpuRanges(l)}`
    if (notEnum.length) out.push({ id: 'vmm.not-enumerated', bit: n.bit, vcpus: cpuRanges(notEnum), text: `${vc(notEnum)}: the guest relies on ${n.uses} (${n.bit}) but the VMM does not advertise the virtual MSRs: it cannot be told, and ${n.forces} is not forced: the VMM cannot protect this guest` })
    if (lacks.length) out.push({ id: 'vmm.enum-lacks-bit', bit: n.bit, vcpus: cpuRanges(lacks), text: `${vc(lacks)}: the guest relies on ${n.uses} (${n.bit}) but MSR_VIRTUAL_MITIGATION_ENUM lacks ${n.enumBit}: ${n.bit} is unprotected, the VMM cannot force ${n.forces} for this guest` })
    if (notTold.length) out.push({ id: 'report.not-reported', bit: n.bit, vcpus: cpuRanges(notTold), text: `${vc(notTold)}: the guest relies on ${n.uses} (${n.bit}) and the VMM enumerates it, but the report does not show CTRL holding it` })
  }
  return out
}

/** Rule text for a bit the guest relies on but could not report: never say it "does not rely" on it. */
function reconcile(rules: ForceReason[], report: GuestReport | undefined, ctrl: bigint | undefined): ForceReason[] {
  if (!report) return rules
  return rules.map(r => {
    const n = NEEDS.find(x => x.forces === r.bit)
    if (!n || report.decision[n.key] !== true || r.forced || (ctrl !== undefined && (ctrl & n.mask) !== 0n)) return r
    return { ...r, rule: `guest relies on ${n.uses} (its report: decision.${n.key} true) but its CTRL does not carry ${n.bit}: nothing derived, ${n.forces} not forced: the guest is unprotected by the VMM (see findings)` }
  })
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
        const e = expectForCtrl(c.cpu, ctrl, profile.advertise ? g.basis : `profile ${profile.name} does not advertise the virtual MSRs`, caps, force)
        return { ...e, rules: reconcile(e.rules, report, ctrl) }
      }),
      findings: guestNeedFindings(report),
    },
  }
}
