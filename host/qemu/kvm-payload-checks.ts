// Checks of one -bios payload run under `-accel kvm` with virt-miti=on (kvm-payload.ts): what the
// guest saw on the debug port, what QEMU holds over QMP, and what the contract says both must be.
// Pure: the run and the facts it was started with in, TAP points out. Expectations are derived
// from what QEMU presented (its own CPUID flags, read over QMP), never from one machine's facts.
import { hex, parseU64 } from '../../contract/bits.js'
import type { HostCaps } from '../../contract/host-caps.js'
import { MSR } from '../../contract/registers.js'
import { effectiveSpecCtrl, forcedFor, type UserspaceForce } from '../../contract/vmm-response.js'
import type { TapPoint } from '../../bin/lib/tap.js'
import { exitStatus, EXIT_OK, TAG, type Bench, type PayloadParams, type PayloadRecord } from './kvm-payload.js'
import { POLL_MS, type PayloadRun } from './kvm-payload-run.js'

const ARCH_CAP_VIRTUAL_ENUM = 1n << 63n // contract/CONTRACT.md section 3 step 1
const VIRT_ENUM_MITIGATION_CTRL_SUPPORT = 1n // contract/CONTRACT.md section 3 step 2
/** The MSRs the virt-miti filter routes to QEMU (patch 0005). */
const FILTERED = new Set<number>([MSR.SPEC_CTRL, MSR.ARCH_CAPABILITIES, MSR.VIRTUAL_ENUMERATION, MSR.VIRTUAL_MITIGATION_ENUM, MSR.VIRTUAL_MITIGATION_CTRL])
const CPUID_7_0_EDX_SPEC_CTRL = 1 << 26, CPUID_7_0_EDX_ARCH_CAPABILITIES = 1 << 29

export interface PayloadFacts {
  params: PayloadParams
  mitiEnum: bigint
  /** The catalog host QEMU responds as (virt-miti-host-* properties). */
  caps: HostCaps
  force: UserspaceForce
  /** kvm (default): the filter path of patch 0005; tcg: TCG's helpers, the same shared emulation, no push. */
  accel?: 'kvm' | 'tcg'
}

export const STEP_TAGS = [
  TAG.cpuid70, TAG.cpuid72, TAG.archCap, TAG.virtEnum, TAG.mitiEnum, TAG.ctrlWriteGood, TAG.ctrlReadGood,
  TAG.ctrlWriteBad, TAG.ctrlReadBad, TAG.specWrite, TAG.specRead, TAG.virtEnumWrite, TAG.archCapWrite,
] as const

const pt = (ok: boolean, name: string, diag?: Record<string, unknown>): TapPoint => ({ ok, name, ...(ok || !diag ? {} : { diag }) })
const rec = (run: PayloadRun, tag: string): PayloadRecord | undefined => run.records.find(r => r.tag === tag)

/** Whether QOM filtered-features (X86CPUFeatureWordInfo list) has `bit` of CPUID.(leaf,sub):reg. */
export function filteredBit(v: unknown, leaf: number, sub: number, reg: string, bit: number): boolean {
  if (!Array.isArray(v)) return false
  return v.some((w: Record<string, unknown>) => w?.['cpuid-input-eax'] === leaf && (w['cpuid-input-ecx'] ?? 0) === sub &&
    w['cpuid-register'] === reg && typeof w['features'] === 'number' && (w['features'] & bit) !== 0)
}

export interface BenchFigure {
  name: string; msr: number; loops: number; faults: number
  cycles: bigint; cyclesPerOp: number
  /** Host wall time between the start and end records, per op (ns); polling granularity included; absent for a loop under 10 polls. */
  wallNsPerOp?: number
}

/** Per timed loop: guest TSC cycles and host wall time per WRMSR. */
export function benchFigures(run: PayloadRun, benches: readonly Bench[]): BenchFigure[] {
  const out: BenchFigure[] = []
  for (const b of benches) {
    const si = run.records.findIndex(r => r.tag === TAG.benchStart && r.eax === b.id)
    const end = run.records[si + 1], faults = run.records[si + 2]
    if (si < 0 || end?.tag !== TAG.benchEnd || faults?.tag !== TAG.benchFaults) continue
    const loops = faults.edx
    const t0 = run.seenMs[si], t1 = run.seenMs[si + 1]
    out.push({
      name: b.name, msr: b.msr, loops, faults: faults.eax, cycles: end.value, cyclesPerOp: Number(end.value) / loops,
      // A loop shorter than a few polls has no meaningful wall time.
      ...(t0 !== undefined && t1 !== undefined && t1 - t0 >= 10 * POLL_MS ? { wallNsPerOp: ((t1 - t0) * 1e6) / loops } : {}),
    })
  }
  return out
}

export function checkKvmPayload(run: PayloadRun, f: PayloadFacts): { points: TapPoint[]; comments: string[] } {
  const points: TapPoint[] = []
  const comments: string[] = []
  const p = f.params
  const tags = run.records.map(r => r.tag).join('')
  const stepsSeen = STEP_TAGS.every(t => rec(run, t))
  points.push(pt(stepsSeen && rec(run, TAG.done) !== undefined && !rec(run, TAG.unexpected) && run.trailing === 0,
    'every step reported on the debug port, then done', { records: tags, trailing: run.trailing, error: run.error, stderr: run.stderr.slice(-400) }))
  if (!stepsSeen) return { points, comments }

  // What QEMU presented (its CPUID table, after KVM filtered it) decides SPEC_CTRL's behaviour.
  const specPresented = run.qom['spec-ctrl'] === true
  // KVM itself offers SPEC_CTRL unless QEMU had to filter the bit (x-force-features keeps it in QEMU's table anyway).
  const kvmSpecCtrl = !filteredBit(run.qom['filtered-features'], 7, 0, 'EDX', CPUID_7_0_EDX_SPEC_CTRL)
  const archPresented = run.qom['arch-capabilities'] === true
  const c70 = rec(run, TAG.cpuid70)!, c72 = rec(run, TAG.cpuid72)!
  comments.push(`guest CPUID.(7,0):EDX ${hex(c70.edx)} (SPEC_CTRL ${(c70.edx & CPUID_7_0_EDX_SPEC_CTRL) ? 1 : 0}, ARCH_CAPABILITIES ${(c70.edx & CPUID_7_0_EDX_ARCH_CAPABILITIES) >>> 29}); CPUID.(7,2):EDX ${hex(c72.edx)}; QEMU's table: spec-ctrl ${specPresented}, arch-capabilities ${archPresented}; KVM offers SPEC_CTRL: ${kvmSpecCtrl}`)
  points.push(pt(!c70.fault && !c72.fault, 'CPUID (7,0) and (7,2) run'))

  const ac = rec(run, TAG.archCap)!
  points.push(pt(archPresented && !ac.fault && (ac.value & ARCH_CAP_VIRTUAL_ENUM) !== 0n,
    'RDMSR 0x10a through the filter: bit 63 (VIRTUAL_ENUM) set (contract/CONTRACT.md section 3)', { value: hex(ac.value), fault: ac.fault, archPresented }))
  const ve = rec(run, TAG.virtEnum)!
  points.push(pt(!ve.fault && ve.value === VIRT_ENUM_MITIGATION_CTRL_SUPPORT, 'RDMSR 0x50000000 = MITIGATION_CTRL_SUPPORT', { value: hex(ve.value), fault: ve.fault }))
  const me = rec(run, TAG.mitiEnum)!
  points.push(pt(!me.fault && me.value === f.mitiEnum, `RDMSR 0x50000001 = virt-miti-enum ${hex(f.mitiEnum)}`, { value: hex(me.value), fault: me.fault }))

  const wg = rec(run, TAG.ctrlWriteGood)!, rg = rec(run, TAG.ctrlReadGood)!
  points.push(pt(!wg.fault && !rg.fault && rg.value === p.ctrlGood, `WRMSR CTRL ${hex(p.ctrlGood)} (enumerated bits) is accepted and reads back`, { writeFault: wg.fault, read: hex(rg.value) }))
  const wb = rec(run, TAG.ctrlWriteBad)!, rb = rec(run, TAG.ctrlReadBad)!
  points.push(pt(wb.fault && !rb.fault && rb.value === p.ctrlGood, `WRMSR CTRL ${hex(p.ctrlBad)} (a bit not enumerated) is #GP and CTRL stays ${hex(p.ctrlGood)} (section 3)`, { writeFault: wb.fault, read: hex(rb.value) }))

  const sw = rec(run, TAG.specWrite)!, sr = rec(run, TAG.specRead)!
  if (specPresented) points.push(pt(!sw.fault && !sr.fault && sr.value === p.specCtrl, `WRMSR 0x48 ${hex(p.specCtrl)}, RDMSR 0x48 returns the shadow (section 5)`, { writeFault: sw.fault, readFault: sr.fault, read: hex(sr.value) }))
  else points.push(pt(sw.fault && sr.fault, 'QEMU does not present SPEC_CTRL (KVM filtered the CPUID bit): WRMSR and RDMSR 0x48 are #GP', { writeFault: sw.fault, readFault: sr.fault }))
  const vw = rec(run, TAG.virtEnumWrite)!, aw = rec(run, TAG.archCapWrite)!
  points.push(pt(vw.fault && aw.fault, 'WRMSR of the read-only 0x50000000 and 0x10a is #GP', { virtEnumFault: vw.fault, archCapFault: aw.fault }))

  // QEMU's side, over QMP (patches 0002, 0003, 0005).
  const q = (k: string): bigint | undefined => parseU64(run.qom[k])
  if (run.qomErrors.length) points.push(pt(false, 'QOM state read over QMP', { errors: run.qomErrors }))
  const shadow = specPresented ? p.specCtrl : 0n
  const want = forcedFor(p.ctrlGood, f.caps, f.force)
  const eff = effectiveSpecCtrl(shadow, want.mask, want.value)
  const got = { ctrl: q('virt-miti-ctrl'), shadow: q('spec-ctrl-shadow'), mask: q('spec-ctrl-forced-mask'), value: q('spec-ctrl-forced-value'), eff: q('spec-ctrl-effective') }
  points.push(pt(got.ctrl === p.ctrlGood, `QOM virt-miti-ctrl = ${hex(p.ctrlGood)}`, { got: run.qom['virt-miti-ctrl'] }))
  points.push(pt(got.shadow === shadow, `QOM spec-ctrl-shadow = ${hex(shadow)}`, { got: run.qom['spec-ctrl-shadow'] }))
  points.push(pt(got.mask === want.mask && got.value === want.value, `QOM forced mask/value = ${hex(want.mask)}/${hex(want.value)} (contract/vmm-response.ts forcedFor)`,
    { gotMask: run.qom['spec-ctrl-forced-mask'], gotValue: run.qom['spec-ctrl-forced-value'] }))
  points.push(pt(got.eff === eff, `QOM spec-ctrl-effective = ${hex(eff)} ((shadow & ~mask) | (value & mask))`, { got: run.qom['spec-ctrl-effective'] }))

  // Every accepted filtered write pushes the effective value (KVM_SET_MSRS), then reads it back.
  const benches = benchFigures(run, p.benches)
  const acceptedWrites = 1 + (specPresented ? 1 : 0) +
    benches.filter(b => FILTERED.has(b.msr)).reduce((n, b) => n + b.loops - b.faults, 0)
  const pushes = q('spec-ctrl-kvm-pushes'), readback = q('spec-ctrl-kvm-readback')
  if (f.accel === 'tcg') {
    points.push(pt(pushes === 0n, 'TCG: nothing pushed into KVM (spec-ctrl-kvm-pushes = 0)', { got: run.qom['spec-ctrl-kvm-pushes'] }))
    return { points: [...points, ...benchPoints(run, f, specPresented, benches, comments)], comments }
  }
  points.push(pt(pushes !== undefined && pushes >= BigInt(acceptedWrites), `QEMU pushed SPEC_CTRL after every accepted write (spec-ctrl-kvm-pushes >= ${acceptedWrites})`, { got: run.qom['spec-ctrl-kvm-pushes'] }))
  comments.push(`KVM_GET_MSRS read back ${readback === undefined ? '?' : hex(readback)} after pushing ${hex(eff)} (${pushes ?? '?'} pushes)`)
  const held = readback === eff
  if (held) points.push(pt(true, `KVM holds the effective SPEC_CTRL ${hex(eff)}`))
  else if (!kvmSpecCtrl) points.push({ ok: true, name: 'KVM holds the effective SPEC_CTRL', skip: `this host's KVM does not offer SPEC_CTRL to guests (QEMU filtered the CPUID bit); KVM_GET_MSRS read ${readback === undefined ? 'nothing' : hex(readback)}, the push cannot be verified here` })
  else points.push(pt(false, `KVM holds the effective SPEC_CTRL ${hex(eff)}`, { readback: readback === undefined ? null : hex(readback) }))

  return { points: [...points, ...benchPoints(run, f, specPresented, benches, comments)], comments }
}

/** The timed loops' #GP counts, their cost as comments, and the exit status. */
function benchPoints(run: PayloadRun, f: PayloadFacts, specPresented: boolean, benches: BenchFigure[], comments: string[]): TapPoint[] {
  const p = f.params
  const points: TapPoint[] = []
  for (const b of p.benches) {
    const fig = benches.find(x => x.name === b.name)
    const wantFaults = b.msr === MSR.SPEC_CTRL && !specPresented ? p.loops : 0
    points.push(pt(fig !== undefined && fig.faults === wantFaults, `timed loop ${b.name}: ${p.loops} WRMSRs, ${wantFaults} #GP`, { got: fig ? fig.faults : 'no records' }))
    if (fig) comments.push(`${b.name} (MSR ${hex(fig.msr)}${fig.faults ? ', #GP' : ''}): ${fig.cyclesPerOp.toFixed(0)} TSC cycles/op${fig.wallNsPerOp !== undefined ? `, ${(fig.wallNsPerOp / 1000).toFixed(2)} us/op wall` : ''}`)
  }
  points.push(pt(run.exitCode === exitStatus(EXIT_OK), `left through isa-debug-exit after the host's system_reset (status ${exitStatus(EXIT_OK)})`, { exitCode: run.exitCode, signal: run.signal }))
  return points
}
