// The end-to-end chain for one scenario on one guest Platform (issue 6):
// probe -> decide -> guest report (writes MITI_CTRL through the agent's gate) -> the guest
// kernel's own SPEC_CTRL write/read -> VMM state -> host check -> in-guest selftest -> vCPU reset.
// The same chain runs on the simulated platform and on the live KVM payload platform, both
// driven by the one reference emulation (DESIGN.md: a bug shows in both or neither).
import { decode, encode, hex } from '../../contract/bits.js'
import type { CpuModel, PresentedCpu } from '../../contract/cpu-model.js'
import { decide } from '../../contract/decide.js'
import { hostCapsFromCpu, type HostCaps } from '../../contract/host-caps.js'
import {
  ARCH_CAPABILITIES, CPUID7_EDX_SPEC_CTRL, MSR, SPEC_CTRL, SPEC_CTRL_IBRS, hasBit32,
} from '../../contract/registers.js'
import type { Scenario } from '../../contract/scenario.js'
import type { MitiCtrlWish } from '../../contract/miti-ctrl.js'
import type { Platform } from '../../guest/platform.js'
import type { Facts } from '../../contract/facts.js'
import type { Decision } from '../../contract/decision-types.js'
import type { VmmState } from '../../contract/vmm-state-json.js'
import type { Concern, Effect, Verdict } from '../../contract/verdict-types.js'
import { reportVerdict } from '../../guest/cli/report.js'
import { verdictJson } from '../../guest/render-verdict.js'
import type { TapPoint } from '../../bin/lib/tap.js'
import type { CpuidFidelity } from '../vmm/live/cpuid-fidelity.js'
import { probe } from '../../guest/probe.js'
import { runReport, type ReportRun } from '../../guest/apply/report.js'
import { runSelftest, type SelftestResult } from '../../guest/selftest/run.js'
import { check, type CheckResult } from '../check/check.js'
import { resetChecks, selftestItems } from '../check/evidence.js'
import type { VmmEmulation } from '../vmm/emulation.js'
import type { VmmProfile } from '../vmm/profile.js'
import { vmmStateJson, type SpecCtrlHardware } from '../vmm/state.js'

/** A fixed VM identity: the guest reads it as its DMI product UUID, the VMM state names it. */
export const SCENARIO_VM_UUID = '7a1d0c5e-3b2f-4e6a-9c8d-1f2e3d4c5b6a'
export const FIXED_NOW = new Date('2026-01-01T00:00:00Z')

export interface ChainSetup {
  presented: PresentedCpu
  hostCaps: HostCaps
  profile: VmmProfile
  vcpus: number
  /** Guest text files (sysfs, /proc). */
  files: Record<string, string>
}

/**
 * A guest platform and the VMM emulation behind it; close() releases real resources (kvm).
 * A tier may add its own points to every run (kvm: CPUID origin, filter exits), or say that the
 * run cannot stand for the scenario on this host (skip: the chain does not run).
 */
export interface GuestMachine {
  platform: Platform
  vmm: VmmEmulation
  close(): void
  tierPoints?: TapPoint[]
  skip?: string
  /** Guest operations executed so far (kvm: real CPUID/RDMSR/WRMSR by the payload). */
  ops?(): number
  /** Milliseconds the tier took to create the machine, and of that its CPUID proof and filter-exit measurement. */
  createMs?: number
  proofMs?: number
  /** Where the CPUID the agent read came from (kvm tier). */
  cpuid?: CpuidFidelity
  /** What the hypervisor holds for each vCPU's SPEC_CTRL, where the tier pushes it (kvm). */
  specCtrlHardware?(): SpecCtrlHardware
}
export type MachineFactory = (s: ChainSetup) => GuestMachine

/** One failed check, stage-qualified: check.<item>, selftest.<rule>, reset.<item> (contract/scenario.ts CAUGHT_RE). */
export interface StageFailure { id: string; message: string; diag?: Record<string, unknown> }

export interface VcpuObserved { mitiCtrl: bigint; forcedMask: bigint; forcedValue: bigint }

export interface Observed {
  decision: MitiCtrlWish
  enumerated: boolean
  /** VMM state right after the guest's report and kernel step, before the selftest. */
  vcpus: VcpuObserved[]
  failures: StageFailure[]
  /** The first host check's outcome per vCPU (index order): every item ok. */
  hostCheckPerVcpu?: boolean[]
  /** The first host check's failing item ids per vCPU (index order). */
  hostCheckFailingPerVcpu?: string[][]
  /** The guest's verdict after its report (contract/CONTRACT.md section 8), as `guest report` computes it. */
  guest?: { verdict: Verdict; concerns: Partial<Record<Concern, Verdict>>; findings: { id: string; effect: Effect }[] }
  /** guest report exit code (0 ok, 1 violation, 3 could not tell). */
  reportExit: number
  notes: string[]
}

export interface ChainTimings { createMs: number; proofMs: number; probeMs: number; reportMs: number; checkMs: number; selftestMs: number; totalMs: number }

/**
 * Everything one run of the chain saw, for every consumer (scenario runner, `host vmm run`, the
 * benchmarks): one chain, no second copy (issue 10).
 */
export interface ChainRun {
  observed: Observed
  /** Tier points (CPUID origin, filter exits); with skip, the only points there are. */
  tierPoints: TapPoint[]
  skip?: string
  cpuid?: CpuidFidelity
  facts?: Facts
  decision?: Decision
  report?: ReportRun
  kernelStep?: TapPoint
  /** VMM state after the report and the kernel step (what the first host check saw). */
  state?: VmmState
  check?: CheckResult
  selftest?: SelftestResult
  /** Host check after the selftest (it must restore every value it changed). */
  checkAfterSelftest?: CheckResult
  /** VMM state right after every vCPU was reset (what `host check --after-reset` judges). */
  stateAfterReset?: VmmState
  timings?: ChainTimings
  ops?: { report: number; selftest: number }
}

/** The presented CPU and guest files for a scenario (what the VMM shows the guest). */
export function chainSetup(s: Scenario, host: CpuModel, guest: CpuModel, profile: VmmProfile): ChainSetup {
  const ac = s.guest.archCapabilities === undefined ? guest.archCapabilities
    : s.guest.archCapabilities === null ? null : encode(ARCH_CAPABILITIES, s.guest.archCapabilities)
  return {
    presented: { model: guest, hypervisor: s.guest.hypervisor ?? true, hypervisorVendor: 'KVMKVMKVM\0\0\0', archCapabilities: ac },
    hostCaps: hostCapsFromCpu(host),
    profile,
    vcpus: s.guest.vcpus,
    files: guestFiles(s.kernel.cmdline, s.kernel.spectreV2),
  }
}

const DMI_UUID = '/sys/class/dmi/id/product_uuid'

export function guestFiles(cmdline: string, spectreV2: string): Record<string, string> {
  return {
    '/sys/devices/system/cpu/vulnerabilities/spectre_v2': spectreV2 + '\n',
    '/proc/cmdline': cmdline + '\n',
    '/proc/sys/kernel/osrelease': '6.12.0-virtmiti-scenario\n',
    // DMI may spell the UUID upper-case; the agent lower-cases it (guest/apply/report.ts readUuid).
    [DMI_UUID]: SCENARIO_VM_UUID.toUpperCase() + '\n',
  }
}

const stringify = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? hex(x) : x))
/** Whether a failure names `bit` (in its message or diagnostics). */
export const failureNames = (f: StageFailure, bit: string): boolean =>
  new RegExp(`\\b${bit}\\b`).test(f.message) || new RegExp(`\\b${bit}\\b`).test(stringify(f.diag ?? {}))

/**
 * The guest kernel's own SPEC_CTRL use: write at boot, read back, on each CPU whose CPUID has
 * SPEC_CTRL. IBRS for an eIBRS kernel (Linux bugs.c spectre_v2_select_mitigation sets
 * SPEC_CTRL_IBRS), else 0. This exercises the forced bits' survival and the shadow read
 * (contract/CONTRACT.md section 5). A fault is the VMM's: the MSR exists (CPUID says so) and the value is
 * architectural.
 */
export function kernelSpecCtrl(p: Platform, spectreV2: string, cpus: readonly number[]): TapPoint {
  const value = /^Mitigation: Enhanced/.test(spectreV2) ? SPEC_CTRL_IBRS : 0n
  const bad: string[] = [], skipped: number[] = []
  for (const c of cpus) {
    const l7 = p.cpuid(c, 7, 0)
    if (!l7.ok || !hasBit32(l7.regs.edx, CPUID7_EDX_SPEC_CTRL)) { skipped.push(c); continue }
    const w = p.wrmsr(c, MSR.SPEC_CTRL, value)
    const r = p.rdmsr(c, MSR.SPEC_CTRL)
    if (!w.ok) bad.push(`cpu ${c}: WRMSR SPEC_CTRL ${hex(value)} faulted (${w.fault.message})`)
    else if (!r.ok) bad.push(`cpu ${c}: RDMSR SPEC_CTRL faulted (${r.fault.message})`)
  }
  const name = `guest kernel writes SPEC_CTRL ${hex(value)}${value ? ` (${decode(SPEC_CTRL, value).join(', ')})` : ''} and reads it back on every CPU`
  if (skipped.length === cpus.length) return { ok: true, name, skip: 'no IA32_SPEC_CTRL (CPUID.(7,0):EDX[26] clear)' }
  return { ok: bad.length === 0, name, ...(bad.length ? { diag: { found: bad, source: 'contract/CONTRACT.md section 5; Intel SDM IA32_SPEC_CTRL' } } : {}) }
}

const checkFailures = (stage: string, label: string, r: CheckResult): StageFailure[] => [
  ...r.vm.filter(i => !i.ok).map(i => ({ id: `${stage}.${i.id}`, message: `${label}VM: ${i.message}`, ...(i.diag ? { diag: i.diag } : {}) })),
  ...r.vcpus.flatMap(c => c.items.filter(i => !i.ok).map(i => ({ id: `${stage}.${i.id}`, message: `${label}vCPU ${c.index}: ${i.message}`, ...(i.diag ? { diag: i.diag } : {}) }))),
]

interface Started { m: GuestMachine; run: ChainRun; t0: number }

const byIndex = <T extends { index: number }>(a: readonly T[]): T[] => [...a].sort((x, y) => x.index - y.index)

const skippedRun = (m: GuestMachine): ChainRun => ({
  observed: { decision: { bhbClearSeqSUsed: 'unknown', retpolineSUsed: 'unknown' }, enumerated: false, vcpus: [], failures: [], reportExit: 0, notes: [] },
  tierPoints: m.tierPoints ?? [], skip: m.skip!, ...(m.cpuid ? { cpuid: m.cpuid } : {}),
})

/** Everything up to and including the host check (synchronous). */
function start(setup: ChainSetup, make: MachineFactory, spectreV2: string, vmUuid: string): Started {
  const t0 = performance.now()
  const m = make(setup)
  try {
    if (m.skip !== undefined) return { m, run: skippedRun(m), t0 }
    const { platform, vmm } = m
    const ops0 = m.ops?.() ?? 0
    const tp = performance.now()
    const cpus = platform.cpus()
    const facts = probe(platform, cpus)
    const probeMs = performance.now() - tp
    const decision = decide(facts)
    const run = runReport(platform, facts, decision, { dryRun: false, now: FIXED_NOW, agentVersion: 'scenario-runner' })
    // The verdict after the report, written into the report as `guest report` does (guest/cli/report.ts).
    const judged = reportVerdict(facts, decision, run)
    run.report.verdict = { ...verdictJson(judged), findings: [...new Set(judged.findings.map(f => f.id))].slice(0, 64) }
    const kernelStep = kernelSpecCtrl(platform, spectreV2, cpus)
    const reportMs = performance.now() - tp
    const reportOps = (m.ops?.() ?? 0) - ops0
    const tc = performance.now()
    const state = vmmStateJson(vmm, vmUuid, m.specCtrlHardware?.())
    const vcpus = vmm.states().map(s => ({ mitiCtrl: s.mitiCtrl, forcedMask: s.forcedMask, forcedValue: s.forcedValue }))
    const failures: StageFailure[] = []
    // The agent's own verdict (DESIGN.md exit codes): 1 = it saw a violation, 3 = it could not tell.
    if (run.exitCode !== 0) failures.push({ id: 'guest.report', message: `guest report exited ${run.exitCode}: ${run.notes.join('; ')}`, diag: { cpus: run.report.cpus } })
    if (!kernelStep.ok) failures.push({ id: 'guest.kernel-spec-ctrl', message: `guest kernel SPEC_CTRL step: ${kernelStep.name}`, ...(kernelStep.diag ? { diag: kernelStep.diag } : {}) })
    // Host check against the independent host caps (the host CPU model), not the VMM's own claim.
    const c1 = check(run.report, state, setup.hostCaps)
    failures.push(...checkFailures('check', '', c1))
    const checkMs = performance.now() - tc
    const notes = [...run.notes, ...(kernelStep.skip ? [`kernel SPEC_CTRL step skipped: ${kernelStep.skip}`] : [])]
    return {
      m, t0,
      run: {
        observed: {
          decision: { ...decision.wish }, enumerated: run.report.enumerated, vcpus, failures,
          hostCheckPerVcpu: byIndex(c1.vcpus).map(v => v.ok), hostCheckFailingPerVcpu: byIndex(c1.vcpus).map(v => v.items.filter(i => !i.ok).map(i => i.id)),
          guest: { verdict: judged.verdict, concerns: Object.fromEntries(judged.concerns.map(c => [c.concern, c.verdict])), findings: judged.findings.map(f => ({ id: f.id, effect: f.effect })) },
          reportExit: run.exitCode, notes,
        },
        tierPoints: m.tierPoints ?? [], ...(m.cpuid ? { cpuid: m.cpuid } : {}),
        facts, decision, report: run, kernelStep, state, check: c1,
        timings: { createMs: m.createMs ?? 0, proofMs: m.proofMs ?? 0, probeMs, reportMs, checkMs, selftestMs: 0, totalMs: 0 },
        ops: { report: reportOps, selftest: 0 },
      },
    }
  } catch (err) {
    m.close()
    throw err
  }
}

/**
 * vCPU reset: CTRL is 0 after reset (contract/CONTRACT.md section 3), so only userspace's force remains
 * (section 5). Intel's reset value is unconfirmed (section 7): a VMM definition may declare
 * another (`ctrl.reset`), and then the response must follow that value. Judged by the same
 * function as `host check --after-reset` (host/check/evidence.ts); returns the state it judged.
 */
function resetCheck(setup: ChainSetup, m: GuestMachine, vmUuid: string, failures: StageFailure[]): VmmState {
  for (const v of m.vmm.vcpus) v.reset()
  const after = vmmStateJson(m.vmm, vmUuid, m.specCtrlHardware?.())
  for (const c of resetChecks(after, setup.hostCaps, setup.profile.resetCtrl ?? 0n)) {
    for (const i of c.items) if (!i.ok) failures.push({ id: `reset.${i.id}`, message: `vCPU ${c.index}: ${i.message}`, ...(i.diag ? { diag: i.diag } : {}) })
  }
  return after
}

/** The chain without the selftest, synchronously (the exhaustive matrix runs this). */
export function runChainSync(setup: ChainSetup, make: MachineFactory, spectreV2: string): Observed {
  const { m, run } = start(setup, make, spectreV2, SCENARIO_VM_UUID)
  try {
    if (run.skip === undefined) resetCheck(setup, m, SCENARIO_VM_UUID, run.observed.failures)
    return run.observed
  } finally {
    m.close()
  }
}

export interface ChainOptions {
  /** The VM's UUID, as the guest reads it and the VMM state names it (default SCENARIO_VM_UUID). */
  vmUuid?: string
}

/**
 * The whole chain: report, kernel step, host check, in-guest selftest, host check again (the
 * selftest must leave the state the report made), vCPU reset (contract/CONTRACT.md section 3).
 */
export async function runChain(setup: ChainSetup, make: MachineFactory, spectreV2: string, o: ChainOptions = {}): Promise<ChainRun> {
  const vmUuid = o.vmUuid ?? SCENARIO_VM_UUID
  const { m, run, t0 } = start({ ...setup, files: { ...setup.files, [DMI_UUID]: vmUuid.toUpperCase() + '\n' } }, make, spectreV2, vmUuid)
  try {
    if (run.skip !== undefined) return run
    const failures = run.observed.failures
    const ts = performance.now()
    const ops0 = m.ops?.() ?? 0
    // SPEC_CTRL writes are opt-in (they can clear another task's SSBD/STIBP on a real Linux guest);
    // a payload or simulated VM runs nothing else, so the chain opts in.
    const st = await runSelftest(m.platform, { between: async () => {}, specCtrlWrites: true })
    run.ops!.selftest = (m.ops?.() ?? 0) - ops0
    run.timings!.selftestMs = performance.now() - ts
    run.selftest = st
    // Judged as `host check --selftest` judges the selftest's TAP (host/check/evidence.ts).
    for (const i of selftestItems(st.points)) {
      if (!i.ok) failures.push({ id: `selftest.${i.id}`, message: i.message, ...(i.diag ? { diag: i.diag } : {}) })
    }
    const tc = performance.now()
    run.checkAfterSelftest = check(run.report!.report, vmmStateJson(m.vmm, vmUuid, m.specCtrlHardware?.()), setup.hostCaps)
    failures.push(...checkFailures('check-after-selftest', 'after the selftest: ', run.checkAfterSelftest))
    run.timings!.checkMs += performance.now() - tc
    run.timings!.totalMs = performance.now() - t0
    run.stateAfterReset = resetCheck(setup, m, vmUuid, failures)
    return run
  } finally {
    m.close()
  }
}
