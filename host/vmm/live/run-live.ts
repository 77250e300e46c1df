// The live KVM tier end to end (issue 5): the reference VMM emulation (host/vmm/emulation.ts)
// answers the MSR-filter exits of real vCPUs on /dev/kvm (host/vmm/kvm), the unchanged guest
// agent runs in them through the kvm Platform (probe -> decide -> report, real WRMSRs), the
// guest kernel's own SPEC_CTRL step, `host check` on the VMM's published state, the in-guest
// selftest, and `host check` again (the selftest must leave the state the report made).
// This is the VMM shape contract/CONTRACT.md section 5 gives (Sean Christopherson,
// ZmepkZfLIvj_st5W@google.com): userspace advertises the virtual MSRs and emulates them through
// KVM_CAP_X86_USER_SPACE_MSR + KVM_X86_SET_MSR_FILTER. Without a usable /dev/kvm it skips with
// the reason (DESIGN.md exit 4); it never fakes a pass.
import { randomUUID } from 'node:crypto'
import { decode, hex } from '../../../contract/bits.js'
import type { CpuModel, PresentedCpu } from '../../../contract/cpu-model.js'
import { decide } from '../../../contract/decide.js'
import type { HostCaps } from '../../../contract/host-caps.js'
import type { GuestReport } from '../../../contract/report-json.js'
import { CPUID7_EDX_SPEC_CTRL, MSR, SPEC_CTRL, SPEC_CTRL_IBRS, hasBit32 } from '../../../contract/registers.js'
import type { VmmState } from '../../../contract/vmm-state-json.js'
import type { TapPoint } from '../../../bin/lib/tap.js'
import type { Platform } from '../../../guest/platform.js'
import { probe } from '../../../guest/probe.js'
import { cpuList, runReport } from '../../../guest/apply/report.js'
import { runSelftest, type SelftestResult } from '../../../guest/selftest/run.js'
import { check, type CheckResult } from '../../check/check.js'
import { checkTapPoints } from '../../check/render.js'
import { createVmm } from '../emulation.js'
import type { VmmProfile } from '../profile.js'
import { vmmStateJson } from '../state.js'
import { liveTierUnavailable } from '../kvm/machine.js'
import { kvmPlatform, type KvmPlatform } from '../kvm/platform.js'
import { proveCpuid } from '../kvm/cpuid-proof.js'
import { cpuidFidelity, type CpuidFidelity } from './cpuid-fidelity.js'

export const LIVE_AGENT_VERSION = 'virtmiti-live'

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
  /** Prove CPUID origins with a complement VM (2 extra 1-vCPU VMs, a few ms each); default true. */
  proveCpuid?: boolean
  /** Report timestamp (default now). The VM UUID is always fresh per VM. */
  now?: Date
}

export interface LiveTimings {
  /** open /dev/kvm .. every vCPU at its first signal (KvmVm.createMs). */
  createMs: number
  /** VM create .. final verdict (the wall time of one live scenario). */
  totalMs: number
  probeMs: number
  /** probe + decide + report + kernel step. */
  reportMs: number
  selftestMs: number
  checkMs: number
  /** Complement-VM CPUID proof (outside totalMs). */
  proofMs: number
}

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

/** The guest files a payload VM offers (it has no kernel): the kernel's state and the VM's DMI UUID. */
export function liveFiles(kernel: LiveOptions['kernel'], vmUuid: string): Record<string, string> {
  return {
    '/proc/cmdline': kernel.cmdline + '\n',
    '/sys/devices/system/cpu/vulnerabilities/spectre_v2': kernel.spectreV2 + '\n',
    // DMI spells the UUID upper-case; the agent lower-cases it (guest/apply/report.ts readUuid).
    '/sys/class/dmi/id/product_uuid': vmUuid.toUpperCase() + '\n',
    '/proc/sys/kernel/osrelease': '6.12.0-virtmiti-live\n',
  }
}

/**
 * The guest kernel's own SPEC_CTRL use on each CPU: write at boot and read back. An eIBRS kernel
 * sets IBRS (Linux bugs.c spectre_v2_select_mitigation), others write 0. The read is what lets the
 * host check see whether forced bits leak into the guest's view (contract/CONTRACT.md section 5).
 */
export function kernelSpecCtrlStep(p: Platform, spectreV2: string): TapPoint {
  const value = /^Mitigation: Enhanced/.test(spectreV2) ? SPEC_CTRL_IBRS : 0n
  const bad: string[] = [], skipped: number[] = []
  for (const c of p.cpus()) {
    const l7 = p.cpuid(c, 7, 0)
    if (!l7.ok || !hasBit32(l7.regs.edx, CPUID7_EDX_SPEC_CTRL)) { skipped.push(c); continue }
    const w = p.wrmsr(c, MSR.SPEC_CTRL, value)
    const r = p.rdmsr(c, MSR.SPEC_CTRL)
    if (!w.ok) bad.push(`cpu ${c}: WRMSR SPEC_CTRL ${hex(value)} faulted (${w.fault.message})`)
    else if (!r.ok) bad.push(`cpu ${c}: RDMSR SPEC_CTRL faulted (${r.fault.message})`)
  }
  const name = `guest kernel writes SPEC_CTRL ${hex(value)}${value ? ` (${decode(SPEC_CTRL, value).join(', ')})` : ''} and reads it back on every CPU`
  if (skipped.length === p.cpus().length) return { ok: true, name, skip: 'no IA32_SPEC_CTRL (CPUID.(7,0):EDX[26] clear)' }
  // Faults here are the VMM's: SPEC_CTRL exists (CPUID says so) and the value is architectural.
  return { ok: bad.length === 0, name, ...(bad.length ? { diag: { found: bad, source: 'contract/CONTRACT.md section 5; Intel SDM IA32_SPEC_CTRL' } } : {}) }
}

const totalOps = (pf: KvmPlatform) => pf.vm.vcpus.reduce((n, v) => n + v.stats.ops, 0)
const skipResult = (why: string, extra: Partial<LiveResult> = {}): LiveResult =>
  ({ ok: true, exitCode: 4, skipReason: why, points: [{ ok: true, name: 'live KVM tier', skip: why }], failures: [], ...extra })

/** Run one live scenario. The VM is closed before this returns, whatever happens. */
export async function runLive(o: LiveOptions): Promise<LiveResult> {
  const presented: PresentedCpu = {
    model: o.cpuModel, hypervisor: o.hypervisor ?? true, hypervisorVendor: 'KVMKVMKVM\0\0\0',
    archCapabilities: o.archCapabilities === undefined ? o.cpuModel.archCapabilities : o.archCapabilities,
  }
  // The VMM first: a configuration the contract refuses throws VmmConfigError, with or without /dev/kvm.
  const vmm = createVmm({
    archCapabilities: presented.archCapabilities, hostCaps: o.hostCaps, profile: o.profile, vcpus: o.vcpus,
    // Same rule as the simulated platform: 0x48 exists iff the presented CPUID.(7,0):EDX[26]; the
    // fidelity check below refuses runs where the guest sees that bit otherwise.
    guestSpecCtrl: hasBit32(o.cpuModel.cpuid7_0_edx, CPUID7_EDX_SPEC_CTRL),
  })
  const why = liveTierUnavailable()
  if (why) return skipResult(`live KVM tier unavailable: ${why}`)
  let proofMs = 0
  let proof: ReturnType<typeof proveCpuid> | undefined
  if (o.proveCpuid ?? true) {
    const p0 = performance.now()
    proof = proveCpuid(presented)
    proofMs = performance.now() - p0
  }
  const vmUuid = randomUUID()
  const t0 = performance.now()
  // handler: each real vCPU's filtered MSR exits go to its own emulated vCPU (per vCPU, section 3).
  const pf = kvmPlatform({ vcpus: o.vcpus, presented, handler: i => vmm.vcpus[i]!, files: liveFiles(o.kernel, vmUuid) })
  try {
    const createMs = pf.vm.createMs
    const fidelity = cpuidFidelity(pf.cpuidOrigins(0), proof)
    const cpuidPoint: TapPoint = { ok: true, name: `CPUID origin: ${fidelity.statement}`, diag: { asPresented: fidelity.asPresented, notAsPresented: fidelity.notAsPresented, hostPinned: fidelity.hostPinned } }
    if (fidelity.blocking.length > 0) {
      // KVM-NOTES.md: the guest would run with contract bits the model does not have.
      return skipResult(`this host cannot present ${o.cpuModel.id} to a guest: ${fidelity.blocking.join('; ')}`, { cpuid: fidelity, points: [cpuidPoint, { ok: true, name: `live ${o.cpuModel.id}`, skip: `this host cannot present ${o.cpuModel.id}: ${fidelity.blocking.join('; ')}` }] })
    }
    const points: TapPoint[] = [cpuidPoint]
    const failures: string[] = []

    // Guest side, unchanged agent code on real vCPUs.
    const tp = performance.now()
    const ops0 = totalOps(pf)
    const facts = probe(pf)
    const probeMs = performance.now() - tp
    const decision = decide(facts)
    const run = runReport(pf, facts, decision, { dryRun: false, now: o.now ?? new Date(), agentVersion: LIVE_AGENT_VERSION })
    const enumerated = run.report.cpus.filter(c => c.mitiEnum !== undefined).map(c => c.cpu)
    points.push({
      ok: true,
      name: `probe: ${facts.cpus.length} vCPUs; virtual MSRs ${enumerated.length ? `enumerated on cpu ${cpuList(enumerated)} (MITI_ENUM ${run.report.cpus.find(c => c.mitiEnum)?.mitiEnum})` : 'not enumerated'}; decision BHB_CLEAR_SEQ_S_USED=${decision.wish.bhbClearSeqSUsed} RETPOLINE_S_USED=${decision.wish.retpolineSUsed} (kernel BHI: ${decision.kernel.bhi})`,
      diag: { reasons: decision.wishReasons.map(r => `${r.rule}: ${r.text} (${r.source})`) },
    })
    const reportPoint: TapPoint = {
      ok: run.exitCode === 0,
      name: `guest report: exit ${run.exitCode}${run.notes.length ? `; ${run.notes.join('; ')}` : ''}`,
      sub: run.perCpu.map(p => ({
        ok: p.severity === 'ok',
        name: `cpu ${p.entry.cpu}: ${p.entry.outcome}${p.entry.readBack !== undefined ? `, MITI_CTRL read back ${p.entry.readBack}` : ''}${p.entry.wanted !== undefined ? ` (wanted ${p.entry.wanted})` : ''}`,
        ...(p.entry.fault ? { diag: { fault: p.entry.fault } } : {}),
      })),
    }
    points.push(reportPoint)
    if (run.exitCode !== 0) failures.push(`guest report: exit ${run.exitCode}: ${run.notes.join('; ')}`)
    const kernelPoint = kernelSpecCtrlStep(pf, o.kernel.spectreV2)
    points.push(kernelPoint)
    if (!kernelPoint.ok) failures.push(`guest kernel SPEC_CTRL step: ${JSON.stringify(kernelPoint.diag)}`)
    const reportOps = totalOps(pf) - ops0
    const reportMs = performance.now() - tp

    // Host side: the VMM publishes its state; check against the independent host caps.
    const tc = performance.now()
    const state = vmmStateJson(vmm, vmUuid)
    const c1 = check(run.report, state, o.hostCaps)
    let checkMs = performance.now() - tc
    points.push({ ok: c1.ok, name: `host check after the guest report (VM ${vmUuid})`, sub: checkTapPoints(c1) })
    failures.push(...c1.failures.map(f => `host check: ${f}`))

    const ts = performance.now()
    const ops1 = totalOps(pf)
    const st = await runSelftest(pf, { between: async () => {} })
    const selftestOps = totalOps(pf) - ops1
    const selftestMs = performance.now() - ts
    const stFailed = st.points.filter(p => !p.ok && p.skip === undefined)
    points.push({ ok: stFailed.length === 0, name: `guest selftest: exit ${st.exitCode}`, sub: st.points })
    failures.push(...stFailed.map(p => `selftest: ${p.name}${p.diag ? ` ${JSON.stringify(p.diag)}` : ''}`))

    const tc2 = performance.now()
    const c2 = check(run.report, vmmStateJson(vmm, vmUuid), o.hostCaps)
    checkMs += performance.now() - tc2
    points.push({ ok: c2.ok, name: 'host check after the selftest (every value it changed restored)', sub: checkTapPoints(c2) })
    failures.push(...c2.failures.map(f => `host check after selftest: ${f}`))
    const totalMs = performance.now() - t0

    const ok = failures.length === 0
    return {
      ok, exitCode: ok ? 0 : 1, points, failures, vmUuid, cpuid: fidelity,
      timings: { createMs, totalMs, probeMs, reportMs, selftestMs, checkMs, proofMs },
      report: run.report, state, check: c1, checkAfterSelftest: c2, selftest: st, ops: { report: reportOps, selftest: selftestOps },
    }
  } finally {
    pf.close()
  }
}

/** What the scenario runner's kvm tier gets: the same input as runLive. */
export interface LiveScenarioResult { ok: boolean; points: TapPoint[]; skipReason?: string }

export async function runLiveScenario(s: LiveOptions): Promise<LiveScenarioResult> {
  const r = await runLive(s)
  return { ok: r.ok, points: r.points, ...(r.skipReason !== undefined ? { skipReason: r.skipReason } : {}) }
}
