// `host check`: pair a guest report with the VMM's observed state and verify every vCPU
// against contract/CONTRACT.md sections 3 and 5. Pure: inputs are already-validated objects.
import { decode, hex, parseU64 } from '../../contract/bits.js'
import { HOST_CAP_NAMES, type HostCaps } from '../../contract/host-caps.js'
import { SPEC_CTRL, VIRTUAL_MITIGATION_CTRL, VIRTUAL_MITIGATION_ENUM, type RegisterDef } from '../../contract/registers.js'
import type { GuestReport, ReportCpu } from '../../contract/report-json.js'
import { effectiveSpecCtrl, forcedFor, validateUserspaceForce } from '../../contract/vmm-response.js'
import type { VmmState, VmmStateVcpu } from '../../contract/vmm-state-json.js'
import { guestCtrlOf } from './expect.js'

export const CHECK_RESULT_SCHEMA_ID = 'virtmiti/check-result/v1'

/** One verified property. `message` names the wrong bits when it fails. */
export interface CheckItem {
  id: string
  ok: boolean
  message: string
  /** Set when the item could not apply (e.g. the guest did not report CTRL). */
  skip?: string
  diag?: Record<string, unknown>
}

export interface VcpuCheck {
  index: number; ok: boolean; items: CheckItem[]; notes: string[]
  /**
   * What this vCPU was checked on (issue 14 item 1): 'guest+vmm' when the guest report gives a
   * usable observation for it (a CTRL value, or "not enumerated"), 'vmm-only' otherwise (offline,
   * a fault, absent from the report): the VMM's own state is still checked against its forced bits.
   */
  basis: 'guest+vmm' | 'vmm-only'
}

export interface CheckResult {
  schema: typeof CHECK_RESULT_SCHEMA_ID
  ok: boolean
  /**
   * pass: no failure and at least one vCPU checked on guest data; fail: any failure;
   * could-not-tell: no failure, but no vCPU had usable guest data (an untrusted report saying
   * "offline" or "fault" everywhere must never make a pass, issue 14 item 1). `ok` is verdict === 'pass'.
   */
  verdict: 'pass' | 'fail' | 'could-not-tell'
  vmUuid: string
  pairedBy: 'vm-uuid' | 'vcpu-index-only'
  hostCapsFrom: 'host-caps-file' | 'vmm-state'
  vm: CheckItem[]
  vcpus: VcpuCheck[]
  /** One line per failure, "vCPU N: message". */
  failures: string[]
  /** With the guest selftest's output as evidence (host/check/evidence.ts): one item per rule. */
  selftest?: CheckItem[]
  /** With a VMM state taken after a vCPU reset as evidence: per vCPU, CTRL and forced bits (section 3). */
  afterReset?: VcpuCheck[]
}

const u = (s: string): bigint => parseU64(s) ?? 0n

/** Named difference between two register values: missing/extra bit names. */
function bitDiff(reg: RegisterDef, expected: bigint, observed: bigint) {
  return {
    expected: decode(reg, expected), observed: decode(reg, observed),
    missing: decode(reg, expected & ~observed), extra: decode(reg, observed & ~expected),
  }
}

function diffText(d: ReturnType<typeof bitDiff>): string {
  const parts: string[] = []
  if (d.missing.length) parts.push(`missing ${d.missing.join(', ')}`)
  if (d.extra.length) parts.push(`extra ${d.extra.join(', ')}`)
  return parts.join('; ')
}

function compare(id: string, what: string, reg: RegisterDef, expected: bigint, observed: bigint, extra: Record<string, unknown> = {}): CheckItem {
  const d = bitDiff(reg, expected, observed)
  const ok = expected === observed
  return {
    id, ok,
    message: ok ? `${what} is ${hex(observed)}${d.observed.length ? ` (${d.observed.join(', ')})` : ''}` : `${what}: ${diffText(d)} (expected ${hex(expected)}, observed ${hex(observed)})`,
    ...(ok ? {} : { diag: { expected: d.expected, observed: d.observed, missing: d.missing, extra: d.extra, expectedHex: hex(expected), observedHex: hex(observed), ...extra } }),
  }
}

const skipItem = (id: string, message: string, skip: string): CheckItem => ({ id, ok: true, message, skip })

function checkVcpu(cpu: ReportCpu | undefined, v: VmmStateVcpu, state: VmmState, caps: HostCaps): VcpuCheck {
  const items: CheckItem[] = []
  const notes: string[] = []
  const mitiCtrl = u(v.mitiCtrl)
  const shadow = u(v.specCtrlShadow)
  const force = { mask: u(state.userspaceForce.mask), value: u(state.userspaceForce.value) }

  // The CTRL value the response must follow: the guest's, when its report gives one.
  let ctrl: bigint
  let basis: VcpuCheck['basis'] = 'vmm-only'
  if (!cpu) {
    notes.push('not in the guest report: checked on the VMM state only (its own MITI_CTRL against its forced bits)')
    ctrl = mitiCtrl
  } else if (cpu.outcome === 'offline') {
    // An offline CPU (maxcpus=, or a lying guest) gives no guest data; the VMM still holds state.
    notes.push('the guest says this CPU was offline: checked on the VMM state only (its own MITI_CTRL against its forced bits)')
    ctrl = mitiCtrl
  } else {
    const g = guestCtrlOf(cpu)
    if (cpu.outcome === 'readback-mismatch') {
      const w = cpu.written !== undefined ? u(cpu.written) : 0n
      const r = cpu.readBack !== undefined ? u(cpu.readBack) : 0n
      const d = bitDiff(VIRTUAL_MITIGATION_CTRL, w, r)
      items.push({ id: 'guest-readback', ok: false, message: `guest read back MITI_CTRL ${hex(r)} after writing ${hex(w)}: ${diffText(d)} (contract/CONTRACT.md section 3: a read returns the last value written)`, diag: { expected: d.expected, observed: d.observed, missing: d.missing, extra: d.extra } })
    }
    // Enumeration must agree with what the VMM says it advertises (section 3 discovery).
    if (cpu.outcome === 'not-enumerated' && state.advertised) {
      items.push({ id: 'enumeration', ok: false, message: 'VMM state says the virtual MSRs are advertised, but the guest found them not enumerated on this CPU (contract/CONTRACT.md section 3)' })
    } else if (cpu.mitiEnum !== undefined && !state.advertised) {
      items.push({ id: 'enumeration', ok: false, message: `guest read MITI_ENUM ${cpu.mitiEnum} although the VMM state says the virtual MSRs are not advertised (contract/CONTRACT.md section 3)` })
    }
    if (cpu.mitiEnum !== undefined) {
      items.push(compare('miti-enum', 'MITI_ENUM the guest read vs the VMM\'s', VIRTUAL_MITIGATION_ENUM, u(state.mitiEnum), u(cpu.mitiEnum)))
    }
    if (g.value !== undefined || cpu.outcome === 'not-enumerated') basis = 'guest+vmm'
    if (g.value !== undefined) {
      ctrl = g.value
      items.push(compare('miti-ctrl', `VMM MITI_CTRL vs the guest's CTRL (${g.basis})`, VIRTUAL_MITIGATION_CTRL, g.value, mitiCtrl))
    } else {
      ctrl = mitiCtrl
      items.push(skipItem('miti-ctrl', 'VMM MITI_CTRL vs the guest\'s CTRL', g.basis))
      notes.push(`guest CTRL unknown (${g.basis}): checked on the VMM state only, forced bits against the VMM's own MITI_CTRL ${hex(mitiCtrl)}`)
    }
    if (cpu.readBack !== undefined) {
      items.push(compare('read-back', 'guest read-back vs the VMM\'s MITI_CTRL', VIRTUAL_MITIGATION_CTRL, mitiCtrl, u(cpu.readBack)))
    }
  }

  // Section 5: forced mask/value from CTRL, host caps and userspace's force.
  const exp = forcedFor(state.advertised ? ctrl : 0n, caps, force)
  const rules = exp.rules.filter(r => r.forced).map(r => `${r.bit}: ${r.rule}`)
  items.push(compare('forced-mask', 'forced mask', SPEC_CTRL, exp.mask, u(v.forcedMask), { rules }))
  items.push(compare('forced-value', 'forced value', SPEC_CTRL, exp.value, u(v.forcedValue), { rules }))
  // Section 5: effective = (shadow & ~mask) | (value & mask), with the *expected* mask/value.
  const effective = effectiveSpecCtrl(shadow, exp.mask, exp.value)
  items.push(compare('effective', 'effective SPEC_CTRL', SPEC_CTRL, effective, u(v.specCtrlEffective), { shadow: decode(SPEC_CTRL, shadow) }))
  // What the hypervisor really holds, where the VMM reports it, must be that effective value; on a
  // host that holds no guest SPEC_CTRL it cannot be verified, and the check says so (never a pass).
  if (v.specCtrlHardware !== undefined) {
    const what = 'SPEC_CTRL the hypervisor holds for the vCPU vs the effective value'
    items.push(state.specCtrlHardwareHeld === false
      ? skipItem('hardware', what, `cannot verify: this host's hypervisor does not hold a guest SPEC_CTRL (the VMM's probe did not read back what it wrote; it reads ${v.specCtrlHardware})`)
      : compare('hardware', what, SPEC_CTRL, effective, u(v.specCtrlHardware)))
  }
  // Section 5: the guest reads back its shadow, never the forced bits.
  if (v.specCtrlGuestRead !== undefined) {
    const read = u(v.specCtrlGuestRead)
    const item = compare('guest-read', 'SPEC_CTRL returned to the guest vs its shadow', SPEC_CTRL, shadow, read)
    const leaked = read & ~shadow & exp.mask
    if (leaked !== 0n) item.message = `guest read of SPEC_CTRL leaks forced ${decode(SPEC_CTRL, leaked).join(', ')} (the guest must read its shadow ${hex(shadow)}, got ${hex(read)})`
    items.push(item)
  } else {
    items.push(skipItem('guest-read', 'SPEC_CTRL returned to the guest vs its shadow', 'the guest did not read SPEC_CTRL'))
  }
  return { index: v.index, ok: items.every(i => i.ok), items, notes, basis }
}

/**
 * Check a guest report against a VMM state. `hostCaps`, when given, is the independent truth
 * about the host (e.g. `host caps --json` on that host); otherwise the state's own caps are used.
 */
export function check(report: GuestReport, state: VmmState, hostCaps?: HostCaps): CheckResult {
  const vm: CheckItem[] = []
  const vcpus: VcpuCheck[] = []
  const caps = hostCaps ?? state.hostCaps
  const result = (pairedBy: CheckResult['pairedBy']): CheckResult => {
    const failures = [
      ...vm.filter(i => !i.ok).map(i => `VM: ${i.message}`),
      ...vcpus.flatMap(c => c.items.filter(i => !i.ok).map(i => `vCPU ${c.index}: ${i.message}`)),
    ]
    const verdict = failures.length > 0 ? 'fail' : vcpus.some(c => c.basis === 'guest+vmm') ? 'pass' : 'could-not-tell'
    if (verdict === 'could-not-tell') {
      // Not ok in TAP and JSON (a harness must not read it as a pass), yet not a violation: exit 3.
      vm.push({ id: 'guest-data', ok: false, message: `could not tell: no vCPU has usable guest data (each is offline, faulted or absent in the guest report), so each was checked on the VMM state only` })
    }
    return {
      schema: CHECK_RESULT_SCHEMA_ID, ok: verdict === 'pass', verdict, vmUuid: state.vmUuid, pairedBy,
      hostCapsFrom: hostCaps ? 'host-caps-file' : 'vmm-state', vm, vcpus, failures,
    }
  }

  // Pair by VM UUID; a report without one can only be paired by vCPU index (issue 3).
  if (report.vmUuid === undefined) {
    vm.push(skipItem('vm-uuid', `VM ${state.vmUuid}`, 'the guest report has no vmUuid: paired by vCPU index only'))
  } else if (report.vmUuid !== state.vmUuid) {
    vm.push({ id: 'vm-uuid', ok: false, message: `guest report is from VM ${report.vmUuid}, VMM state is from VM ${state.vmUuid}: not the same VM, nothing checked` })
    return result('vm-uuid')
  } else {
    vm.push({ id: 'vm-uuid', ok: true, message: `guest report and VMM state are from VM ${state.vmUuid}` })
  }
  const pairedBy = report.vmUuid === undefined ? 'vcpu-index-only' : 'vm-uuid'

  if (hostCaps) {
    const differ = HOST_CAP_NAMES.filter(n => hostCaps[n] !== state.hostCaps[n])
    vm.push(differ.length === 0
      ? { id: 'host-caps', ok: true, message: 'VMM state host caps match the host caps file' }
      : { id: 'host-caps', ok: false, message: `VMM derived its response from wrong host caps: ${differ.map(n => `${n} is ${hostCaps[n]}, VMM says ${state.hostCaps[n]}`).join('; ')}`, diag: { differ } })
  }
  const force = { mask: u(state.userspaceForce.mask), value: u(state.userspaceForce.value) }
  const fv = validateUserspaceForce(force, caps)
  vm.push(fv.ok ? { id: 'userspace-force', ok: true, message: `userspace force mask ${hex(force.mask)} value ${hex(force.value)} is valid` } : { id: 'userspace-force', ok: false, message: fv.error })

  const byIndex = new Map<number, VmmStateVcpu>()
  const dupState = new Set<number>()
  for (const v of state.vcpus) (byIndex.has(v.index) ? dupState.add(v.index) : byIndex.set(v.index, v))
  const reported = new Map<number, ReportCpu>()
  const dupReport = new Set<number>()
  for (const c of report.cpus) (reported.has(c.cpu) ? dupReport.add(c.cpu) : reported.set(c.cpu, c))
  if (dupState.size) vm.push({ id: 'vcpu-indices', ok: false, message: `VMM state lists vCPU ${[...dupState].slice(0, 10).join(', ')} more than once` })
  if (dupReport.size) vm.push({ id: 'guest-cpus', ok: false, message: `guest report lists CPU ${[...dupReport].slice(0, 10).join(', ')} more than once` })
  const unpaired = [...reported.keys()].filter(c => !byIndex.has(c))
  if (unpaired.length) vm.push({ id: 'pairing', ok: false, message: `guest CPU ${unpaired.slice(0, 10).join(', ')}${unpaired.length > 10 ? ', ...' : ''} has no vCPU in the VMM state` })
  else vm.push({ id: 'pairing', ok: true, message: `every guest CPU (${reported.size}) pairs with a vCPU of the VMM state` })

  for (const v of [...byIndex.values()].sort((a, b) => a.index - b.index)) {
    // Every vCPU the VMM holds state for is checked on that state, whatever the guest says.
    vcpus.push(checkVcpu(reported.get(v.index), v, state, caps))
  }
  return result(pairedBy)
}
