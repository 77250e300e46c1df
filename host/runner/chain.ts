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
  ARCH_CAPABILITIES, CPUID7_EDX_SPEC_CTRL, MSR, SPEC_CTRL, SPEC_CTRL_IBRS, VIRTUAL_MITIGATION_CTRL, hasBit32,
} from '../../contract/registers.js'
import type { Scenario } from '../../contract/scenario.js'
import type { MitiCtrlWish } from '../../contract/miti-ctrl.js'
import type { Platform } from '../../guest/platform.js'
import { probe } from '../../guest/probe.js'
import { runReport } from '../../guest/apply/report.js'
import { RULES, runSelftest } from '../../guest/selftest/run.js'
import { check } from '../check/check.js'
import { expectForCtrl } from '../check/expect.js'
import type { VmmEmulation } from '../vmm/emulation.js'
import type { VmmProfile } from '../vmm/profile.js'
import { vmmStateJson } from '../vmm/state.js'

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

/** A guest platform and the VMM emulation behind it; close() releases real resources (kvm). */
export interface GuestMachine { platform: Platform; vmm: VmmEmulation; close(): void }
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
  /** guest report exit code (0 ok, 1 violation, 3 could not tell). */
  reportExit: number
  notes: string[]
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

export function guestFiles(cmdline: string, spectreV2: string): Record<string, string> {
  return {
    '/sys/devices/system/cpu/vulnerabilities/spectre_v2': spectreV2 + '\n',
    '/proc/cmdline': cmdline + '\n',
    '/proc/sys/kernel/osrelease': '6.12.0-virtmiti-scenario\n',
    '/sys/class/dmi/id/product_uuid': SCENARIO_VM_UUID + '\n',
  }
}

const stringify = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? hex(x) : x))
/** Whether a failure names `bit` (in its message or diagnostics). */
export const failureNames = (f: StageFailure, bit: string): boolean =>
  new RegExp(`\\b${bit}\\b`).test(f.message) || new RegExp(`\\b${bit}\\b`).test(stringify(f.diag ?? {}))

/**
 * The guest kernel's own SPEC_CTRL use: write at boot, read back (what a guest kernel does on each CPU).
 * IBRS for an eIBRS kernel (Linux bugs.c spectre_v2_select_mitigation sets SPEC_CTRL_IBRS), else 0.
 * This exercises the forced bits' survival and the shadow read (contract/CONTRACT.md section 5).
 */
export function kernelSpecCtrl(p: Platform, spectreV2: string, cpus: number[]): string[] {
  const notes: string[] = []
  const k = /^Mitigation: Enhanced/.test(spectreV2) ? SPEC_CTRL_IBRS : 0n
  for (const c of cpus) {
    const l7 = p.cpuid(c, 7, 0)
    if (!l7.ok || !hasBit32(l7.regs.edx, CPUID7_EDX_SPEC_CTRL)) { notes.push(`cpu ${c}: no SPEC_CTRL, kernel step skipped`); continue }
    const w = p.wrmsr(c, MSR.SPEC_CTRL, k)
    if (!w.ok) notes.push(`cpu ${c}: kernel SPEC_CTRL write faulted: ${w.fault.message}`)
    p.rdmsr(c, MSR.SPEC_CTRL)
  }
  return notes
}

interface Started { m: GuestMachine; observed: Observed }

/** Everything up to and including the host check (synchronous). */
function start(setup: ChainSetup, make: MachineFactory, spectreV2: string): Started {
  const m = make(setup)
  try {
    const { platform, vmm } = m
    const cpus = platform.cpus()
    const facts = probe(platform, cpus)
    const decision = decide(facts)
    const run = runReport(platform, facts, decision, { dryRun: false, now: FIXED_NOW, agentVersion: 'scenario-runner' })
    const notes = [...run.notes, ...kernelSpecCtrl(platform, spectreV2, cpus)]
    const state = vmmStateJson(vmm, SCENARIO_VM_UUID)
    const vcpus = vmm.states().map(s => ({ mitiCtrl: s.mitiCtrl, forcedMask: s.forcedMask, forcedValue: s.forcedValue }))
    const failures: StageFailure[] = []
    // The agent's own verdict (DESIGN.md exit codes): 1 = it saw a violation, 3 = it could not tell.
    if (run.exitCode !== 0) failures.push({ id: 'guest.report', message: `guest report exited ${run.exitCode}: ${run.notes.join('; ')}`, diag: { cpus: run.report.cpus } })
    // Host check against the independent host caps (the host CPU model), not the VMM's own claim.
    const r = check(run.report, state, setup.hostCaps)
    for (const i of r.vm) if (!i.ok) failures.push({ id: `check.${i.id}`, message: `VM: ${i.message}`, ...(i.diag ? { diag: i.diag } : {}) })
    for (const c of r.vcpus) for (const i of c.items) if (!i.ok) failures.push({ id: `check.${i.id}`, message: `vCPU ${c.index}: ${i.message}`, ...(i.diag ? { diag: i.diag } : {}) })
    return { m, observed: { decision: { ...decision.wish }, enumerated: run.report.enumerated, vcpus, failures, reportExit: run.exitCode, notes } }
  } catch (err) {
    m.close()
    throw err
  }
}

/** vCPU reset: CTRL is 0 after reset (contract/CONTRACT.md section 3), so only userspace's force remains (section 5). */
function resetCheck(setup: ChainSetup, vmm: VmmEmulation, failures: StageFailure[]): void {
  for (const v of vmm.vcpus) v.reset()
  const force = setup.profile.userspaceForce
  for (const s of vmm.states()) {
    const e = expectForCtrl(s.index, 0n, 'after vCPU reset', setup.hostCaps, force)
    const cmp = (id: string, what: string, reg: typeof SPEC_CTRL, exp: bigint, obs: bigint) => {
      if (exp === obs) return
      const missing = decode(reg, exp & ~obs), extra = decode(reg, obs & ~exp)
      failures.push({ id: `reset.${id}`, message: `vCPU ${s.index}: ${what} after vCPU reset:${missing.length ? ` missing ${missing.join(', ')}` : ''}${extra.length ? ` extra ${extra.join(', ')}` : ''} (expected ${hex(exp)}, observed ${hex(obs)}; contract/CONTRACT.md section 3: 0 after vCPU reset)`, diag: { expected: decode(reg, exp), observed: decode(reg, obs), missing, extra } })
    }
    cmp('miti-ctrl', 'MITI_CTRL', VIRTUAL_MITIGATION_CTRL, 0n, s.mitiCtrl)
    cmp('forced-mask', 'forced mask', SPEC_CTRL, BigInt(e.forcedMask), s.forcedMask)
    cmp('forced-value', 'forced value', SPEC_CTRL, BigInt(e.forcedValue), s.forcedValue)
  }
}

/** The chain without the selftest, synchronously (the exhaustive matrix runs this). */
export function runChainSync(setup: ChainSetup, make: MachineFactory, spectreV2: string): Observed {
  const { m, observed } = start(setup, make, spectreV2)
  try {
    resetCheck(setup, m.vmm, observed.failures)
    return observed
  } finally {
    m.close()
  }
}

/** The whole chain: report, kernel step, host check, in-guest selftest, vCPU reset. */
export async function runChain(setup: ChainSetup, make: MachineFactory, spectreV2: string): Promise<Observed> {
  const { m, observed } = start(setup, make, spectreV2)
  try {
    const st = await runSelftest(m.platform, { between: async () => {} })
    const keyOf = new Map<string, string>(Object.entries(RULES).map(([k, v]) => [v, k]))
    for (const pt of st.points) {
      if (pt.ok || pt.skip !== undefined) continue
      observed.failures.push({ id: `selftest.${keyOf.get(pt.name) ?? 'unknown'}`, message: pt.name, ...(pt.diag ? { diag: pt.diag } : {}) })
    }
    resetCheck(setup, m.vmm, observed.failures)
    return observed
  } finally {
    m.close()
  }
}
