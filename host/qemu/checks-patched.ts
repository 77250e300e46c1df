// Checks of one boot under the patched QEMU (host/qemu/patches, virt-miti=on; issue 11 item 5):
// the guest side (the virtual MSRs are enumerated, report wrote what the kernel's own choice
// implies, selftest passes inside the real kernel) and the host side (QEMU's state over QMP,
// `host check`). Pure: sections, parsed documents and a check result in, TAP points out.
import { hex } from '../../contract/bits.js'
import { MSR, MITI_CTRL_BHB_CLEAR_SEQ_S_USED, MITI_CTRL_RETPOLINE_S_USED } from '../../contract/registers.js'
import { GuestReport } from '../../contract/report-json.js'
import type { ProbeJson } from '../../contract/probe-schema.js'
import type { VmmState } from '../../contract/vmm-state-json.js'
import type { TapPoint } from '../../bin/lib/tap.js'
import type { CheckResult } from '../check/check.js'
import { RULES } from '../../guest/selftest/run.js'
import { parseRdmsrSection, rdmsrSectionName } from './commands.js'
import type { Section } from './frames.js'
import type { KernelLineReading } from './checks.js'
import { unitCpu as unitCpuOf, type HotplugResult } from './hotplug.js'

const ARCH_CAP_VIRTUAL_ENUM = 1n << 63n // contract/CONTRACT.md section 3 step 1

/** QEMU's test-only fault ids (patch 0006), the same as host/vmm/profiles.ts. */
export const QEMU_FAULTS = ['forces-nothing', 'ignores-ctrl-writes', 'ctrl-not-per-vcpu', 'leaks-forced-into-shadow', 'enum-writable'] as const
export type QemuFault = (typeof QEMU_FAULTS)[number]

/**
 * Who catches each fault, by name: the selftest rules that must fail inside the guest (the same
 * table as guest/selftest/run.test.ts for the simulated profiles), and whether `host check` must
 * fail. Faults in what QEMU forces are invisible to the guest (contract/CONTRACT.md section 5: it reads
 * its shadow): only host check sees forces-nothing. A boot with a fault passes when exactly these
 * detectors fire; every other point still has to pass.
 */
export const FAULT_CATCHERS: Record<QemuFault, { selftest: string[]; hostCheck: 'fail' | 'pass' }> = {
  'forces-nothing': { selftest: [], hostCheck: 'fail' },
  'ignores-ctrl-writes': { selftest: [RULES.ctrlReadBack, RULES.perVcpu], hostCheck: 'fail' },
  'ctrl-not-per-vcpu': { selftest: [RULES.perVcpu], hostCheck: 'pass' },
  // With the SPEC_CTRL opt-in the selftest writes back the value a read returned; a VMM whose
  // reads leak the forced bits makes that value, and so the restore check, wrong as well.
  'leaks-forced-into-shadow': { selftest: [RULES.specShadow, RULES.restore], hostCheck: 'fail' },
  'enum-writable': { selftest: [RULES.veReadOnly, RULES.enumReadOnly], hostCheck: 'pass' },
}

export interface PatchedContext {
  vcpus: number
  /** The kernel's line as checks.ts reads it (the oracle for CTRL, contract/CONTRACT.md section 4). */
  kernel: KernelLineReading | undefined
  /** MITI_ENUM QEMU was told to present (virt-miti-enum). */
  mitiEnum: bigint
  fault?: QemuFault
}

export interface HostSide { state?: VmmState; stateErrors?: string[]; check?: CheckResult; checkErrors?: string[] }

const point = (ok: boolean, name: string, diag?: Record<string, unknown>): TapPoint => ({ ok, name, ...(diag && !ok ? { diag } : {}) })

/** CTRL the guest must hold: section 4 applied to the kernel's own sysfs line, masked by ENUM. */
export function expectedCtrl(k: KernelLineReading | undefined, mitiEnum: bigint): bigint | undefined {
  if (!k || k.bhi === undefined || k.spectreV2 === undefined) return undefined
  let v = 0n
  if (k.bhi === 'sw-loop') v |= MITI_CTRL_BHB_CLEAR_SEQ_S_USED
  if (k.retpoline) v |= MITI_CTRL_RETPOLINE_S_USED
  return v & mitiEnum
}

/** Failing selftest point names from its TAP text (top-level "not ok N - name"). */
export function selftestFailures(tap: string): string[] {
  return tap.split('\n').map(l => /^not ok \d+ - (.*?)(?: # .*)?$/.exec(l)?.[1]).filter((x): x is string => x !== undefined)
}

export function checkPatched(sections: ReadonlyMap<string, Section>, probe: ProbeJson | undefined, report: GuestReport | undefined, host: HostSide, ctx: PatchedContext): TapPoint[] {
  const points: TapPoint[] = []
  const cpus = Array.from({ length: ctx.vcpus }, (_, i) => i)
  const want = expectedCtrl(ctx.kernel, ctx.mitiEnum)
  const wantText = want === undefined ? '(kernel line not understood)' : hex(want)

  // Guest: ARCH_CAPABILITIES bit 63 on every vCPU, as rdmsr reads it (section 3 step 1).
  const ac = parseRdmsrSection(sections.get(rdmsrSectionName(MSR.ARCH_CAPABILITIES))?.output ?? '')
  const no63 = cpus.filter(c => { const v = ac.get(c); return v === undefined || v === 'error' || (v & ARCH_CAP_VIRTUAL_ENUM) === 0n })
  points.push(point(no63.length === 0, 'patched QEMU: IA32_ARCH_CAPABILITIES bit 63 (VIRTUAL_ENUM) set on every vCPU', {
    cpusWithout: no63, values: Object.fromEntries([...ac].map(([c, v]) => [c, v === 'error' ? 'fault' : hex(v)])), source: 'contract/CONTRACT.md section 3 step 1',
  }))

  // Guest: report wrote, on every vCPU, the CTRL its kernel's choice implies (section 4).
  // ignores-ctrl-writes: the write "succeeds" and reads back the old value: report must say so.
  const dropped = ctx.fault === 'ignores-ctrl-writes' && want !== 0n
  const bad = (report?.cpus ?? []).filter(c => want === undefined || c.wanted !== hex(want) ||
    (dropped ? c.outcome !== 'readback-mismatch' : c.readBack !== hex(want) || !['written', 'unchanged'].includes(c.outcome)))
    .map(c => ({ cpu: c.cpu, outcome: c.outcome, wanted: c.wanted ?? '-', readBack: c.readBack ?? '-' }))
  points.push(point(report !== undefined && report.enumerated && report.complete === !dropped && bad.length === 0 && report.cpus.length === ctx.vcpus,
    dropped ? `fault ignores-ctrl-writes: report wants MITI_CTRL ${wantText} and sees the read-back mismatch on every vCPU`
      : `report: enumerated; every vCPU holds MITI_CTRL ${wantText} (kernel: BHI ${ctx.kernel?.bhi ?? '?'}, retpoline ${ctx.kernel?.retpoline ?? '?'})`, {
      expected: wantText, enumerated: report?.enumerated, complete: report?.complete, badCpus: bad, source: 'contract/CONTRACT.md section 4',
    }))

  // Guest: probe (before report) read the CTRL report found as its "before" value.
  const probeCtrl = probe ? cpus.map(c => ({ cpu: c, probe: (m => m && 'value' in m ? m.value : m && 'fault' in m ? `fault ${m.fault.errno}` : 'not read')(probe.facts.cpus.find(x => x.cpu === c)?.msr[hex(MSR.VIRTUAL_MITIGATION_CTRL)]), before: report?.cpus.find(x => x.cpu === c)?.before ?? '-' })) : []
  const probeBad = probeCtrl.filter(x => x.probe !== x.before)
  // ctrl-not-per-vcpu: report's write on vCPU 0 lands on vCPU 1 too, so report finds there the
  // value it just wrote, not what probe read (when it writes a non-zero CTRL).
  const shared = ctx.fault === 'ctrl-not-per-vcpu' && want !== undefined && want !== 0n
  points.push(point(probe !== undefined && report !== undefined && (shared ? probeBad.length > 0 : probeBad.length === 0),
    shared ? 'fault ctrl-not-per-vcpu: report finds on a later vCPU the CTRL it wrote on an earlier one' : 'probe read MITI_CTRL as report found it before writing, on every vCPU', { mismatches: probeBad }))

  // Guest: rdmsr of CTRL after selftest restored everything equals the same value (the reset
  // value 0 when QEMU dropped every write).
  const held = dropped ? 0n : want
  const heldText = held === undefined ? wantText : hex(held)
  const ctrl = parseRdmsrSection(sections.get(rdmsrSectionName(MSR.VIRTUAL_MITIGATION_CTRL))?.output ?? '')
  const ctrlBad = cpus.filter(c => ctrl.get(c) !== held).map(c => ({ cpu: c, rdmsr: ctrl.get(c) === 'error' ? 'fault' : ctrl.get(c) === undefined ? '(no line)' : hex(ctrl.get(c) as bigint) }))
  points.push(point(held !== undefined && ctrlBad.length === 0, `rdmsr 0x50000002 reads ${heldText} on every vCPU after selftest`, { expected: heldText, mismatches: ctrlBad }))

  // Guest: selftest inside the real kernel (a #GP arrives as EIO through the msr driver).
  const st = sections.get('selftest')
  const failing = selftestFailures(st?.output ?? '')
  const passed = (st?.output ?? '').split('\n').filter(l => /^ok \d+ /.test(l) && !/# SKIP/.test(l)).length
  const catcher = ctx.fault ? FAULT_CATCHERS[ctx.fault] : undefined
  const expectFail = catcher?.selftest ?? []
  const selftestOk = st !== undefined && passed > 0 && JSON.stringify([...failing].sort()) === JSON.stringify([...expectFail].sort()) && st.exit === (expectFail.length ? 1 : 0)
  points.push(point(selftestOk, ctx.fault
    ? (expectFail.length ? `fault ${ctx.fault}: selftest catches it by name (${expectFail.join(' | ')})` : `fault ${ctx.fault}: invisible to the guest, selftest passes (host check must catch it)`)
    : 'selftest passes every rule inside the guest kernel (exit 0)', {
    exit: st?.exit, passed, failing, expectedFailing: expectFail,
  }))

  // Host: QEMU's state over QMP, in virtmiti/vmm-state/v1.
  points.push(point(host.state !== undefined, 'QEMU state over QMP (qom-get) translates into virtmiti/vmm-state/v1', { errors: host.stateErrors ?? [] }))
  if (host.state) {
    const qCtrl = host.state.vcpus.filter(v => want === undefined || v.mitiCtrl !== hex(want)).map(v => ({ vcpu: v.index, mitiCtrl: v.mitiCtrl }))
    points.push(point(dropped ? qCtrl.length === ctx.vcpus : qCtrl.length === 0, dropped ? 'fault ignores-ctrl-writes: QEMU holds a CTRL other than what the guest wrote, on every vCPU' : `QEMU holds MITI_CTRL ${wantText} on every vCPU`, { expected: wantText, mismatches: qCtrl }))
  }

  // Host: `host check` of the guest report against that state.
  const hostWant = catcher?.hostCheck ?? 'pass'
  const checked = host.check !== undefined
  const verdict = host.check?.ok ? 'pass' : 'fail'
  points.push(point(checked && verdict === hostWant, ctx.fault
    ? (hostWant === 'fail' ? `fault ${ctx.fault}: host check catches it` : `fault ${ctx.fault}: host check passes (the guest-side rule is the catcher)`)
    : 'host check: every vCPU as contract/CONTRACT.md sections 3 and 5 say', {
    expected: hostWant, verdict: checked ? verdict : '(not run)', failures: host.check?.failures ?? [], errors: host.checkErrors ?? [],
  }))
  return points
}

/** What a hot-plug boot found (host/qemu/hotplug.ts HotplugResult, and the host side after it). */
export interface HotplugFacts {
  /** vCPUs at boot. */
  vcpus: number
  result: Pick<HotplugResult, 'slot' | 'vcpu' | 'start' | 'ms' | 'eventErrors' | 'error'>
  /** The boot's report: what the guest reported on the CPUs it had. */
  bootReport: GuestReport | undefined
  /** QEMU's state and host check after the hot-plug, with the report the new unit start wrote. */
  after: HostSide
}

/**
 * The hot-plugged vCPU gets its CTRL through the installed udev rule and unit (issue 11 item 5):
 * the new vCPU must hold what the guest reported on the others (contract/CONTRACT.md section 4:
 * every CPU reports), and host check must pass on every vCPU, the new one on guest data. Pure.
 */
export function checkHotplug(h: HotplugFacts): TapPoint[] {
  const r = h.result
  const n = h.vcpus + 1
  const vcpu = r.vcpu
  const who = `vCPU ${vcpu ?? '?'}`
  const points: TapPoint[] = []
  const slot = r.slot ? `${r.slot.driver} ${Object.entries(r.slot.props).map(([k, v]) => `${k}=${v}`).join(',')}` : '(no slot)'
  points.push(point(vcpu !== undefined, `hot-plug: device_add ${slot} adds ${who} to QEMU`, { error: r.error ?? 'QEMU never listed a new vCPU' }))
  const s = r.start
  points.push(point(s !== undefined && s.status === 0 && r.eventErrors.length === 0,
    `hot-plug: 90-virtmiti.rules started ${s?.unit ?? 'virtmiti-report@cpuN.service'} for the new CPU (systemctl shim) and it succeeded${r.ms.unit !== undefined ? ` ${r.ms.unit} ms after device_add` : ''}`, {
      error: r.error, status: s?.status, log: s?.log.trim().split('\n').slice(-8), eventErrors: r.eventErrors,
    }))
  // What the guest reported on the CPUs it had at boot: one value (section 4 is per VM).
  const others = [...new Set((h.bootReport?.cpus ?? []).map(c => c.readBack ?? '-'))]
  const want = others.length === 1 && others[0] !== '-' ? others[0]! : undefined
  let after: GuestReport | undefined
  try { const v = GuestReport.safeParse(JSON.parse(s?.report ?? '')); if (v.success) after = v.data } catch { /* said below */ }
  const guestCpu = s ? unitCpuOf(s.unit) : undefined
  const newEntry = after?.cpus.find(c => c.cpu === guestCpu)
  const badAfter = (after?.cpus ?? []).filter(c => c.readBack !== want).map(c => ({ cpu: c.cpu, outcome: c.outcome, readBack: c.readBack ?? '-' }))
  points.push(point(after !== undefined && want !== undefined && after.cpus.length === n && newEntry !== undefined && badAfter.length === 0 && ['written', 'unchanged'].includes(newEntry.outcome),
    `hot-plug: the report the unit wrote covers all ${n} CPUs; cpu${guestCpu ?? '?'} holds MITI_CTRL ${want ?? '?'} as the others do`, {
      reportedOnOthers: others, cpus: after?.cpus.length ?? '(no parsable report.json)', newCpu: newEntry ? { outcome: newEntry.outcome, wanted: newEntry.wanted, readBack: newEntry.readBack } : '(absent)', mismatches: badAfter,
    }))
  const st = h.after.state
  const q = st?.vcpus.find(v => v.index === vcpu)
  points.push(point(want !== undefined && q !== undefined && q.mitiCtrl === want && st!.vcpus.length === n,
    `hot-plug: QEMU's ${who} holds MITI_CTRL ${want ?? '?'}, what the guest reported on the others (contract/CONTRACT.md section 4)`, {
      expected: want ?? `(the boot report disagrees with itself: ${others.join(', ')})`, qemu: st?.vcpus.map(v => ({ vcpu: v.index, mitiCtrl: v.mitiCtrl })) ?? h.after.stateErrors, source: 'contract/CONTRACT.md section 4',
    }))
  const ck = h.after.check
  const basis = ck?.vcpus.find(v => v.index === vcpu)?.basis
  points.push(point(ck !== undefined && ck.ok && ck.vcpus.length === n && basis === 'guest+vmm',
    `hot-plug: host check passes on all ${n} vCPUs, ${who} checked on guest data`, {
      verdict: ck?.verdict ?? '(not run)', failures: ck?.failures ?? [], errors: h.after.checkErrors ?? h.after.stateErrors ?? [], basis: basis ?? '(not checked)',
    }))
  return points
}
