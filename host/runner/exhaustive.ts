// The exhaustive matrix (issue 6, `scenarios run --exhaustive`): every combination of the bits
// that drive the contract, run end to end in simulation (probe -> decide -> report -> kernel
// SPEC_CTRL step -> VMM response -> host check -> reset), each compared with an independent
// restatement of contract/CONTRACT.md sections 4 and 5 written here with literal bit numbers (section 2),
// not with contract/miti-ctrl.ts or contract/vmm-response.ts.
import { decode } from '../../contract/bits.js'
import type { CpuModel } from '../../contract/cpu-model.js'
import { SPEC_CTRL, VIRTUAL_MITIGATION_CTRL, type RegisterDef } from '../../contract/registers.js'
import type { HostCaps } from '../../contract/host-caps.js'
import type { TapPoint } from '../../bin/lib/tap.js'
import { VmmConfigError } from '../vmm/emulation.js'
import type { VmmProfile } from '../vmm/profile.js'
import { FIXED_NOW, SCENARIO_VM_UUID, guestFiles, kernelSpecCtrl, runChainSync, type ChainSetup } from './chain.js'
import { decide } from '../../contract/decide.js'
import type { GuestReport } from '../../contract/report-json.js'
import type { VmmState } from '../../contract/vmm-state-json.js'
import type { Platform } from '../../guest/platform.js'
import { probe } from '../../guest/probe.js'
import { runReport } from '../../guest/apply/report.js'
import { check } from '../check/check.js'
import { vmmStateJson } from '../vmm/state.js'
import { kernelState, type BhiPolicy, type KernelState, type V2Policy } from './kernel-model.js'
import { simMachine } from './machines.js'

export const EXHAUSTIVE_NAME = 'exhaustive-matrix'

const B = (n: number) => 1n << BigInt(n)
// contract/CONTRACT.md section 2, by number.
const AC_IBRS_ALL = B(1), AC_RRSBA = B(19), AC_BHI_NO = B(20)
const SC_IBRS = B(0), SC_STIBP = B(1), SC_SSBD = B(2), SC_RRSBA_DIS_S = B(6), SC_BHI_DIS_S = B(10)
const CTRL_BHB = B(0), CTRL_RET = B(1)
const EDX7_SPEC_CTRL = 1 << 26, EDX7_STIBP = 1 << 27, EDX7_ARCH_CAP = 1 << 29, EDX7_SSBD = 2 ** 31
const EDX72_RRSBA_CTRL = 1 << 2, EDX72_BHI_CTRL = 1 << 4

/** One generated case: every field is one dimension of the matrix. */
export interface Case {
  /** oldKernel: the guest kernel predates 9f725eec8fc0 and exempts BHI_NO parts (only varied when bhiNo is set: otherwise both kernels agree). */
  guest: { ibrsAll: boolean; rrsba: boolean; bhiNo: boolean; bhiCtrl: boolean; rrsbaCtrl: boolean; hypervisor: boolean; oldKernel: boolean }
  bhi: BhiPolicy
  v2: V2Policy
  /** advertise = ARCH_CAP VIRTUAL_ENUM shown; enum = MITI_ENUM; unknownMsr only matters when not advertised. */
  vmm: { advertise: boolean; mitiEnum: bigint; unknownMsr: 'fault' | 'read-zero-ignore-write' }
  host: { bhiCtrl: boolean; bhiNo: boolean; rrsbaCtrl: boolean; rrsba: boolean }
  /** Userspace force per bit: free (not in the mask), held off, held on. */
  force: { bhi: 'free' | 'off' | 'on'; rrsba: 'free' | 'off' | 'on' }
}

const bools = [false, true]
const FORCE = ['free', 'off', 'on'] as const

type GuestPart = Pick<Case, 'guest' | 'bhi' | 'v2' | 'vmm'>

/** Every guest-visible configuration: guest bits x kernel policy x VMM advertisement/ENUM. */
export function guestParts(): GuestPart[] {
  const out: GuestPart[] = []
  for (const ibrsAll of bools) for (const rrsba of bools) for (const bhiNo of bools) for (const oldKernel of bhiNo ? bools : [false])
    for (const bhiCtrl of bools) for (const rrsbaCtrl of bools) for (const hypervisor of bools)
      for (const bhi of ['on', 'off', 'vmexit'] as const) for (const v2 of ['auto', 'retpoline', 'off'] as const)
        for (const vmm of VMMS) out.push({ guest: { ibrsAll, rrsba, bhiNo, bhiCtrl, rrsbaCtrl, hypervisor, oldKernel }, bhi, v2, vmm })
  return out
}

/** Host caps, indexed bhiCtrl*8 + bhiNo*4 + rrsbaCtrl*2 + rrsba. */
const HOSTS: Case['host'][] = Array.from({ length: 16 }, (_, i) => ({ bhiCtrl: (i & 8) !== 0, bhiNo: (i & 4) !== 0, rrsbaCtrl: (i & 2) !== 0, rrsba: (i & 1) !== 0 }))
/** Userspace force, indexed bhi*3 + rrsba over FORCE. */
const FORCES: Case['force'][] = FORCE.flatMap(bhi => FORCE.map(rrsba => ({ bhi, rrsba })))

/** Every case, host caps and force varying innermost. */
export function* cases(): Generator<Case> {
  for (const g of guestParts()) for (const host of HOSTS) for (const force of FORCES) yield { ...g, host, force }
}

/** Advertised with each MITI_ENUM value, or not advertised with each unknown-MSR behaviour. */
const VMMS: Case['vmm'][] = [
  ...[0n, 1n, 2n, 3n].map(mitiEnum => ({ advertise: true, mitiEnum, unknownMsr: 'fault' as const })),
  { advertise: false, mitiEnum: 0n, unknownMsr: 'fault' },
  { advertise: false, mitiEnum: 0n, unknownMsr: 'read-zero-ignore-write' },
]

/** Guest bits: 2^5 with BHI_NO clear, 2^5 x 2 kernels with it set = 96 guest CPUs/kernels. */
export const caseCount = (): number => (2 ** 5 + 2 ** 6) * 9 * VMMS.length * 2 ** 4 * 9

/** What contract/CONTRACT.md sections 3-5 say must happen for a case, restated independently. */
export interface Expect {
  refused: boolean
  bhb: boolean
  ret: boolean
  enumerated: boolean
  ctrl: bigint
  mask: bigint
  value: bigint
}

export function expectCase(c: Case, k: KernelState = kernelState(c.guest, c.bhi, c.v2)): Expect {
  const um = (c.force.bhi !== 'free' ? SC_BHI_DIS_S : 0n) | (c.force.rrsba !== 'free' ? SC_RRSBA_DIS_S : 0n)
  const uv = (c.force.bhi === 'on' ? SC_BHI_DIS_S : 0n) | (c.force.rrsba === 'on' ? SC_RRSBA_DIS_S : 0n)
  // Section 5: forcible bits: IBRS; STIBP, SSBD (the host has both here); RRSBA_DIS_S needs RRSBA_CTRL and RRSBA; BHI_DIS_S needs BHI_CTRL.
  const supported = SC_IBRS | SC_STIBP | SC_SSBD | (c.host.rrsbaCtrl && c.host.rrsba ? SC_RRSBA_DIS_S : 0n) | (c.host.bhiCtrl ? SC_BHI_DIS_S : 0n)
  const refused = (uv & ~supported) !== 0n
  // Section 3: enumerated iff ARCH_CAP bit 63 (the VMM advertises) and VIRTUAL_ENUMERATION bit 0.
  const enumerated = c.vmm.advertise
  // Section 4: bit 0 for the short SW loop on syscall entry, bit 1 for retpoline; only enumerated bits are written.
  const wish = (k.usesSwLoop ? CTRL_BHB : 0n) | (k.usesRetpoline ? CTRL_RET : 0n)
  const ctrl = enumerated ? wish & c.vmm.mitiEnum : 0n
  // Section 5: derived bits, userspace precedence, derived bits forced on.
  let derived = 0n
  if ((ctrl & CTRL_BHB) !== 0n && c.host.bhiCtrl && !c.host.bhiNo) derived |= SC_BHI_DIS_S
  if ((ctrl & CTRL_RET) !== 0n && c.host.rrsbaCtrl && c.host.rrsba) derived |= SC_RRSBA_DIS_S
  derived &= ~um
  return { refused, bhb: k.usesSwLoop, ret: k.usesRetpoline, enumerated, ctrl, mask: um | derived, value: uv | derived }
}

/** A synthetic Intel guest model (Sapphire Rapids signature: not on the RETBLEED list) carrying the case's bits. */
function guestModel(c: Case): CpuModel {
  return {
    id: 'exhaustive-guest', name: 'generated', vendor: 'GenuineIntel', family: 6, model: 0x8f, stepping: 8,
    cpuid7_0_edx: (EDX7_SPEC_CTRL | EDX7_STIBP | EDX7_ARCH_CAP | EDX7_SSBD) >>> 0,
    cpuid7_2_edx: (c.guest.bhiCtrl ? EDX72_BHI_CTRL : 0) | (c.guest.rrsbaCtrl ? EDX72_RRSBA_CTRL : 0),
    archCapabilities: (c.guest.ibrsAll ? AC_IBRS_ALL : 0n) | (c.guest.rrsba ? AC_RRSBA : 0n) | (c.guest.bhiNo ? AC_BHI_NO : 0n),
    sources: { all: 'generated by the exhaustive matrix' },
  }
}

export function setupFor(c: Case): { setup: ChainSetup; spectreV2: string } {
  const k = kernelState(c.guest, c.bhi, c.v2)
  const model = guestModel(c)
  const hostCaps: HostCaps = { ...c.host, stibp: true, ssbd: true }
  const profile: VmmProfile = {
    name: 'exhaustive', description: 'generated', advertise: c.vmm.advertise, mitiEnum: c.vmm.mitiEnum,
    userspaceForce: {
      mask: (c.force.bhi !== 'free' ? SC_BHI_DIS_S : 0n) | (c.force.rrsba !== 'free' ? SC_RRSBA_DIS_S : 0n),
      value: (c.force.bhi === 'on' ? SC_BHI_DIS_S : 0n) | (c.force.rrsba === 'on' ? SC_RRSBA_DIS_S : 0n),
    },
    specCtrl: 'intercepted', unknownMsr: c.vmm.unknownMsr, faults: new Set(),
  }
  return {
    setup: { presented: { model, hypervisor: c.guest.hypervisor, archCapabilities: model.archCapabilities }, hostCaps, profile, vcpus: 1, files: guestFiles(k.cmdline, k.spectreV2) },
    spectreV2: k.spectreV2,
  }
}

const describe = (c: Case): string =>
  `guest{${Object.entries(c.guest).filter(([, v]) => v).map(([k]) => k).join(',')}} spectre_bhi=${c.bhi} spectre_v2=${c.v2} ` +
  `vmm{advertise=${c.vmm.advertise},enum=${c.vmm.mitiEnum},unknown=${c.vmm.unknownMsr}} host{${Object.entries(c.host).filter(([, v]) => v).map(([k]) => k).join(',')}} force{bhi=${c.force.bhi},rrsba=${c.force.rrsba}}`

/** Run one case through the whole chain (no replay); returns what differs from the restatement, empty when it conforms. */
export function runCase(c: Case): string[] {
  const e = expectCase(c)
  const { setup, spectreV2 } = setupFor(c)
  let o
  try {
    o = runChainSync(setup, simMachine, spectreV2)
  } catch (err) {
    if (err instanceof VmmConfigError) return e.refused ? [] : [`VMM refused a valid userspace force: ${err.message}`]
    throw err
  }
  if (e.refused) return ['VMM accepted a userspace force value outside the supported bits (contract/CONTRACT.md section 5, v3 01/10)']
  const bad: string[] = []
  if (o.decision.bhbClearSeqSUsed !== e.bhb) bad.push(`decision BHB_CLEAR_SEQ_S_USED ${o.decision.bhbClearSeqSUsed}, expected ${e.bhb}`)
  if (o.decision.retpolineSUsed !== e.ret) bad.push(`decision RETPOLINE_S_USED ${o.decision.retpolineSUsed}, expected ${e.ret}`)
  if (o.enumerated !== e.enumerated) bad.push(`enumerated ${o.enumerated}, expected ${e.enumerated}`)
  const v = o.vcpus[0]!
  if (v.mitiCtrl !== e.ctrl) bad.push(`MITI_CTRL 0x${v.mitiCtrl.toString(16)}, expected 0x${e.ctrl.toString(16)}`)
  if (v.forcedMask !== e.mask) bad.push(`forced mask 0x${v.forcedMask.toString(16)}, expected 0x${e.mask.toString(16)}`)
  if (v.forcedValue !== e.value) bad.push(`forced value 0x${v.forcedValue.toString(16)}, expected 0x${e.value.toString(16)}`)
  for (const f of o.failures) bad.push(`${f.id}: ${f.message}`)
  return bad
}

/** A guest's MSR access as it happened, with the answer it got. */
type Op = { kind: 'rd'; cpu: number; index: number; ok: boolean; value?: bigint; errno?: string }
  | { kind: 'wr'; cpu: number; index: number; value: bigint; ok: boolean; errno?: string }

/** Wrap a platform so every MSR access and its answer is recorded (CPUID comes from the presented model, not the VMM). */
function recording(p: Platform): { platform: Platform; ops: Op[] } {
  const ops: Op[] = []
  return {
    ops,
    platform: {
      kind: p.kind, cpus: () => p.cpus(), cpuid: (c, l, s) => p.cpuid(c, l, s), readText: path => p.readText(path),
      rdmsr(cpu, index) {
        const r = p.rdmsr(cpu, index)
        ops.push(r.ok ? { kind: 'rd', cpu, index, ok: true, value: r.value } : { kind: 'rd', cpu, index, ok: false, errno: r.fault.errno })
        return r
      },
      wrmsr(cpu, index, value) {
        const r = p.wrmsr(cpu, index, value)
        ops.push(r.ok ? { kind: 'wr', cpu, index, value, ok: true } : { kind: 'wr', cpu, index, value, ok: false, errno: r.fault.errno })
        return r
      },
    },
  }
}

interface GuestRun { kernel: KernelState; report: GuestReport; exitCode: number; decision: { bhb: unknown; ret: unknown }; ops: Op[]; trace: string }

/** The guest half, run end to end once per guest-visible configuration (host caps and force are invisible to it). */
function runGuest(c: Case): GuestRun {
  const { setup, spectreV2 } = setupFor(c)
  const m = simMachine(setup)
  const rec = recording(m.platform)
  const cpus = rec.platform.cpus()
  const facts = probe(rec.platform, cpus)
  const decision = decide(facts)
  const run = runReport(rec.platform, facts, decision, { dryRun: false, now: FIXED_NOW, agentVersion: 'exhaustive' })
  kernelSpecCtrl(rec.platform, spectreV2, cpus)
  // What the VMM receives (accesses and written values, not its answers) plus what check() reads of the report.
  const trace = toJson([rec.ops.map(o => [o.kind, o.cpu, o.index, o.kind === 'wr' ? o.value : 0]), run.report.vmUuid, run.report.cpus])
  return { kernel: kernelState(c.guest, c.bhi, c.v2), report: run.report, exitCode: run.exitCode, decision: { bhb: decision.wish.bhbClearSeqSUsed, ret: decision.wish.retpolineSUsed }, ops: rec.ops, trace }
}

const toJson = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString(16) : x))

/** What the VMM half produced for one guest trace and VMM configuration. */
interface VmmHalf { refused: boolean; refusal?: string; answerDiffers?: string; ctrl: bigint; mask: bigint; value: bigint; checkFailures: string[]; afterReset: { ctrl: bigint; mask: bigint; value: bigint } }

/**
 * The VMM half for one (guest trace, host caps, userspace force): a fresh VMM receives exactly the
 * guest's MSR accesses and must give every one the same answer the guest got (else the guest could
 * have acted differently); then its state goes through the real host check and a vCPU reset.
 */
function vmmHalf(c: Case, g: GuestRun): VmmHalf {
  const { setup } = setupFor(c)
  let m
  try {
    m = simMachine(setup)
  } catch (err) {
    if (err instanceof VmmConfigError) return { refused: true, refusal: err.message, ctrl: 0n, mask: 0n, value: 0n, checkFailures: [], afterReset: { ctrl: 0n, mask: 0n, value: 0n } }
    throw err
  }
  let answerDiffers: string | undefined
  for (const op of g.ops) {
    const r = op.kind === 'rd' ? m.platform.rdmsr(op.cpu, op.index) : m.platform.wrmsr(op.cpu, op.index, op.value)
    const same = r.ok === op.ok && (r.ok ? op.kind === 'wr' || ('value' in r && r.value === op.value) : r.fault.errno === op.errno)
    if (!same && answerDiffers === undefined) answerDiffers = `guest-visible answer to ${op.kind === 'rd' ? 'RDMSR' : 'WRMSR'} 0x${op.index.toString(16)} depends on host caps or userspace force`
  }
  const v = m.vmm.vcpus[0]!.state()
  const checkFailures = check(g.report, vmmStateJson(m.vmm, SCENARIO_VM_UUID), setup.hostCaps).failures
  m.vmm.vcpus[0]!.reset()
  const r = m.vmm.vcpus[0]!.state()
  return { refused: false, ...(answerDiffers ? { answerDiffers } : {}), ctrl: v.mitiCtrl, mask: v.forcedMask, value: v.forcedValue, checkFailures, afterReset: { ctrl: r.mitiCtrl, mask: r.forcedMask, value: r.forcedValue } }
}

/** "forced mask [] (0x0), expected [BHI_DIS_S] (0x400)": bit names for the reader (decoded only on failure). */
function named(what: string, reg: RegisterDef, observed: bigint, expected: bigint): string {
  const n = (v: bigint) => `[${decode(reg, v).join(', ')}] (0x${v.toString(16)})`
  return `${what} ${n(observed)}, expected ${n(expected)}`
}

/** Compare one case with the restatement, given its guest run and VMM half. */
export function judgeCase(c: Case, g: GuestRun, h: VmmHalf): string[] {
  const e = expectCase(c, g.kernel)
  if (h.refused) return e.refused ? [] : [`VMM refused a valid userspace force: ${h.refusal}`]
  if (e.refused) return ['VMM accepted a userspace force value outside the supported bits (contract/CONTRACT.md section 5, v3 01/10)']
  const bad: string[] = []
  if (h.answerDiffers) bad.push(h.answerDiffers)
  if (g.exitCode !== 0) bad.push(`guest report exited ${g.exitCode}`)
  if (g.decision.bhb !== e.bhb) bad.push(`decision BHB_CLEAR_SEQ_S_USED ${String(g.decision.bhb)}, expected ${e.bhb}`)
  if (g.decision.ret !== e.ret) bad.push(`decision RETPOLINE_S_USED ${String(g.decision.ret)}, expected ${e.ret}`)
  if (g.report.enumerated !== e.enumerated) bad.push(`enumerated ${g.report.enumerated}, expected ${e.enumerated}`)
  if (h.ctrl !== e.ctrl) bad.push(named('MITI_CTRL', VIRTUAL_MITIGATION_CTRL, h.ctrl, e.ctrl))
  if (h.mask !== e.mask) bad.push(named('forced mask', SPEC_CTRL, h.mask, e.mask))
  if (h.value !== e.value) bad.push(named('forced value', SPEC_CTRL, h.value, e.value))
  bad.push(...h.checkFailures)
  // Section 3: CTRL is 0 after reset, so only userspace's force remains (section 5).
  const um = (c.force.bhi !== 'free' ? SC_BHI_DIS_S : 0n) | (c.force.rrsba !== 'free' ? SC_RRSBA_DIS_S : 0n)
  const uv = (c.force.bhi === 'on' ? SC_BHI_DIS_S : 0n) | (c.force.rrsba === 'on' ? SC_RRSBA_DIS_S : 0n)
  const r = h.afterReset
  if (r.ctrl !== 0n || r.mask !== um || r.value !== uv) bad.push(`after reset: MITI_CTRL 0x${r.ctrl.toString(16)}, forced 0x${r.mask.toString(16)}/0x${r.value.toString(16)}, expected 0/0x${um.toString(16)}/0x${uv.toString(16)}`)
  return bad
}

/** Replay one case without memoization (tests compare this with the memoized matrix). */
export function replayCase(c: Case, g: GuestRun = runGuest({ ...c, host: HOSTS[0]!, force: FORCES[0]! })): string[] {
  return judgeCase(c, g, vmmHalf(c, g))
}

export interface ExhaustiveResult { point: TapPoint; cases: number; refused: number; guestRuns: number; vmmRuns: number; ms: number; cpuMs: number }


/**
 * The whole matrix. The guest half runs once per guest-visible configuration (cases() varies host
 * caps and force); the VMM half runs once per distinct (guest trace, VMM configuration,
 * host caps, force): by contract/CONTRACT.md sections 3 and 5 the VMM's behaviour is a function of exactly
 * those (the presented CPU enters only through ARCH_CAP bit 63, which `c.vmm.advertise` fixes).
 * Every case is then judged on its own against the restatement.
 */
export function runExhaustive(limit = Infinity): ExhaustiveResult {
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  let n = 0, refused = 0, failed = 0, guestRuns = 0, vmmRuns = 0
  const failures: { case: string; differences: string[] }[] = []
  const halves = new Map<number, VmmHalf>()
  const traceIds = new Map<string, number>()
  let traceId = 0
  outer: for (const gp of guestParts()) {
    const g = runGuest({ ...gp, host: HOSTS[0]!, force: FORCES[0]! })
    guestRuns++
    const traceId = traceIds.get(g.trace) ?? traceIds.size
    traceIds.set(g.trace, traceId)
    const vmmIdx = VMMS.indexOf(gp.vmm)
    for (let hi = 0; hi < HOSTS.length; hi++) for (let fi = 0; fi < FORCES.length; fi++) {
      if (n >= limit) break outer
      n++
      const c: Case = { ...gp, host: HOSTS[hi]!, force: FORCES[fi]! }
      const hk = ((traceId * VMMS.length + vmmIdx) * HOSTS.length + hi) * FORCES.length + fi
      let h = halves.get(hk)
      if (!h) { h = vmmHalf(c, g); halves.set(hk, h); vmmRuns++ }
      if (h.refused) refused++
      const bad = judgeCase(c, g, h)
      if (bad.length) { failed++; if (failures.length < 20) failures.push({ case: describe(c), differences: bad }) }
    }
  }
  const ms = performance.now() - t0
  const cu = process.cpuUsage(cpu0)
  const cpuMs = (cu.user + cu.system) / 1000
  return {
    point: {
      ok: failed === 0 && n > 0, name: `${EXHAUSTIVE_NAME} [sim]`,
      diag: { cases: n, guestRuns, vmmRuns, distinctGuestTraces: traceIds.size, refusedForces: refused, failed, ms: Math.round(ms), cpuMs: Math.round(cpuMs), ...(failures.length ? { firstFailures: failures } : {}) },
    },
    cases: n, refused, guestRuns, vmmRuns, ms, cpuMs,
  }
}
