// `host vmm run` (issue 5) on the one live-KVM path (issue 10): the scenario chain
// (host/runner/chain.ts: probe -> decide -> report with real WRMSRs -> the guest kernel's
// SPEC_CTRL step -> host check -> selftest -> host check -> vCPU reset) on payload vCPUs built by
// host/vmm/live/machine.ts, whose MSR-filter exits the reference emulation answers. This is the
// VMM shape contract/CONTRACT.md section 5 gives (Sean Christopherson, ZmepkZfLIvj_st5W@google.com):
// userspace advertises the virtual MSRs and emulates them through KVM_CAP_X86_USER_SPACE_MSR +
// KVM_X86_SET_MSR_FILTER. Without a usable /dev/kvm it skips with the reason (DESIGN.md exit 4).
import { randomUUID } from 'node:crypto'
import type { CpuModel, PresentedCpu } from '../../../contract/cpu-model.js'
import type { HostCaps } from '../../../contract/host-caps.js'
import type { GuestReport } from '../../../contract/report-json.js'
import type { VmmState } from '../../../contract/vmm-state-json.js'
import type { TapPoint } from '../../../bin/lib/tap.js'
import { cpuList } from '../../../guest/apply/report.js'
import type { SelftestResult } from '../../../guest/selftest/run.js'
import { guestFiles, runChain, type ChainRun, type ChainTimings } from '../../runner/chain.js'
import type { CheckResult } from '../../check/check.js'
import { checkTapPoints } from '../../check/render.js'
import type { VmmProfile } from '../profile.js'
import { liveTierUnavailable } from '../kvm/machine.js'
import type { KvmCpuidBehaviour } from '../kvm/host-cpuid.js'
import { liveMachine } from './machine.js'
import type { CpuidMode } from './cpuid-plan.js'
import type { CpuidFidelity } from './cpuid-fidelity.js'

export interface LiveOptions {
  /** The CPU model the VMM presents to the guest (KVM_SET_CPUID2 + the emulated ARCH_CAPABILITIES). */
  cpuModel: CpuModel
  /** The real host's capabilities: the VMM response derives from them (contract/CONTRACT.md section 5). */
  hostCaps: HostCaps
  profile: VmmProfile
  vcpus: number
  /** The guest kernel's state: /proc/cmdline and the spectre_v2 sysfs line (contract/CONTRACT.md section 6). */
  kernel: { cmdline: string; spectreV2: string }
  /** ARCH_CAPABILITIES presented instead of the model's (without bit 63: the profile sets it); null = none. */
  archCapabilities?: bigint | null
  /** CPUID.1:ECX[31]; default true. */
  hypervisor?: boolean
  /** Prove CPUID origins with a complement VM (2 extra 1-vCPU VMs, a few ms each); default true; false implies strict. */
  proveCpuid?: boolean
  /** What to do about CPUID bits this host's KVM pins: overlay (default) or strict (cpuid-plan.ts). */
  cpuid?: CpuidMode
  /** Tests only: stand in for a host whose KVM handles KVM_SET_CPUID2 this way. */
  hostCpuid?: KvmCpuidBehaviour
}

/** createMs: the CPUID proof and filter-exit measurement (proofMs) plus the run's VM up to every vCPU's first signal; totalMs: create .. verdict. */
export type LiveTimings = ChainTimings

export interface LiveResult {
  /** true: the verdict is that of a correct VMM. A skipped run is ok with skipReason set. */
  ok: boolean
  /** 0 pass; 1 a violation (checker, selftest or the agent's own report); 4 skipped (DESIGN.md). */
  exitCode: 0 | 1 | 4
  skipReason?: string
  points: TapPoint[]
  timings?: LiveTimings
  cpuid?: CpuidFidelity
  vmUuid?: string
  report?: GuestReport
  /** VMM state right after the report and the kernel step (what the first host check saw). */
  state?: VmmState
  check?: CheckResult
  /** The host check after the selftest. */
  checkAfterSelftest?: CheckResult
  selftest?: SelftestResult
  /** Guest ops (CPUID/RDMSR/WRMSR executed by the payload) during report + selftest, all vCPUs. */
  ops?: { report: number; selftest: number }
  /** Failures, one line each, stage-qualified ("check: vCPU 0: forced mask: missing BHI_DIS_S ..."). */
  failures: string[]
}

const skipResult = (why: string, extra: Partial<LiveResult> = {}): LiveResult =>
  ({ ok: true, exitCode: 4, skipReason: why, points: [{ ok: true, name: 'live KVM tier', skip: why }], failures: [], ...extra })

/** The stage points of one chain run, in the order the chain ran them. */
export function livePoints(r: ChainRun, vmUuid: string): TapPoint[] {
  const points = [...r.tierPoints]
  const { facts, decision, report: run } = r
  if (!facts || !decision || !run || !r.check) return points
  const enumerated = run.report.cpus.filter(c => c.mitiEnum !== undefined).map(c => c.cpu)
  points.push({
    ok: true,
    name: `probe: ${facts.cpus.length} vCPUs; virtual MSRs ${enumerated.length ? `enumerated on cpu ${cpuList(enumerated)} (MITI_ENUM ${run.report.cpus.find(c => c.mitiEnum)?.mitiEnum})` : 'not enumerated'}; decision BHB_CLEAR_SEQ_S_USED=${decision.wish.bhbClearSeqSUsed} RETPOLINE_S_USED=${decision.wish.retpolineSUsed} (kernel BHI: ${decision.kernel.bhi})`,
    diag: { reasons: decision.wishReasons.map(x => `${x.rule}: ${x.text} (${x.source})`) },
  })
  points.push({
    ok: run.exitCode === 0,
    name: `guest report: exit ${run.exitCode}${run.notes.length ? `; ${run.notes.join('; ')}` : ''}`,
    sub: run.perCpu.map(p => ({
      ok: p.severity === 'ok',
      name: `cpu ${p.entry.cpu}: ${p.entry.outcome}${p.entry.readBack !== undefined ? `, MITI_CTRL read back ${p.entry.readBack}` : ''}${p.entry.wanted !== undefined ? ` (wanted ${p.entry.wanted})` : ''}`,
      ...(p.entry.fault ? { diag: { fault: p.entry.fault } } : {}),
    })),
  })
  if (r.kernelStep) points.push(r.kernelStep)
  points.push({ ok: r.check.ok, name: `host check after the guest report (VM ${vmUuid})`, sub: checkTapPoints(r.check) })
  if (r.selftest) {
    const failed = r.selftest.points.filter(p => !p.ok && p.skip === undefined)
    points.push({ ok: failed.length === 0, name: `guest selftest: exit ${r.selftest.exitCode}`, sub: r.selftest.points })
  }
  if (r.checkAfterSelftest) points.push({ ok: r.checkAfterSelftest.ok, name: 'host check after the selftest (every value it changed restored)', sub: checkTapPoints(r.checkAfterSelftest) })
  const reset = r.observed.failures.filter(f => f.id.startsWith('reset.'))
  points.push({ ok: reset.length === 0, name: 'vCPU reset: MITI_CTRL 0, only userspace\'s force remains (contract/CONTRACT.md sections 3, 5)', ...(reset.length ? { diag: { found: reset.map(f => f.message) } } : {}) })
  return points
}

/** Failures, one line each, stage-qualified, as `host vmm run` prints them. */
function liveFailures(r: ChainRun): string[] {
  const out: string[] = []
  if (r.report && r.report.exitCode !== 0) out.push(`guest report: exit ${r.report.exitCode}: ${r.report.notes.join('; ')}`)
  if (r.kernelStep && !r.kernelStep.ok) out.push(`guest kernel SPEC_CTRL step: ${JSON.stringify(r.kernelStep.diag)}`)
  out.push(...(r.check?.failures ?? []).map(f => `host check: ${f}`))
  for (const p of r.selftest?.points ?? []) if (!p.ok && p.skip === undefined) out.push(`selftest: ${p.name}${p.diag ? ` ${JSON.stringify(p.diag)}` : ''}`)
  out.push(...(r.checkAfterSelftest?.failures ?? []).map(f => `host check after selftest: ${f}`))
  out.push(...r.observed.failures.filter(f => f.id.startsWith('reset.')).map(f => `reset: ${f.message}`))
  return out
}

/** Run one live scenario. The VM is closed before this returns, whatever happens. */
export async function runLive(o: LiveOptions): Promise<LiveResult> {
  const presented: PresentedCpu = {
    model: o.cpuModel, hypervisor: o.hypervisor ?? true, hypervisorVendor: 'KVMKVMKVM\0\0\0',
    archCapabilities: o.archCapabilities === undefined ? o.cpuModel.archCapabilities : o.archCapabilities,
  }
  const why = liveTierUnavailable()
  const make = liveMachine({ ...(o.cpuid ? { cpuid: o.cpuid } : {}), ...(o.proveCpuid === false ? { prove: false } : {}), ...(o.hostCpuid ? { hostCpuid: o.hostCpuid } : {}) })
  if (why) {
    // A configuration the contract refuses throws VmmConfigError with or without /dev/kvm.
    const { createVmm } = await import('../emulation.js')
    createVmm({ archCapabilities: presented.archCapabilities, hostCaps: o.hostCaps, profile: o.profile, vcpus: o.vcpus, guestSpecCtrl: false })
    return skipResult(`live KVM tier unavailable: ${why}`)
  }
  const vmUuid = randomUUID()
  const r = await runChain({ presented, hostCaps: o.hostCaps, profile: o.profile, vcpus: o.vcpus, files: guestFiles(o.kernel.cmdline, o.kernel.spectreV2) }, make, o.kernel.spectreV2, { vmUuid })
  if (r.skip !== undefined) return skipResult(r.skip, { points: [...r.tierPoints, { ok: true, name: `live ${o.cpuModel.id}`, skip: r.skip }], ...(r.cpuid ? { cpuid: r.cpuid } : {}) })
  const failures = liveFailures(r)
  const ok = failures.length === 0
  return {
    ok, exitCode: ok ? 0 : 1, points: livePoints(r, vmUuid), failures, vmUuid,
    ...(r.cpuid ? { cpuid: r.cpuid } : {}), ...(r.timings ? { timings: r.timings } : {}), ...(r.ops ? { ops: r.ops } : {}),
    ...(r.report ? { report: r.report.report } : {}), ...(r.state ? { state: r.state } : {}),
    ...(r.check ? { check: r.check } : {}), ...(r.checkAfterSelftest ? { checkAfterSelftest: r.checkAfterSelftest } : {}),
    ...(r.selftest ? { selftest: r.selftest } : {}),
  }
}
