// `guest selftest` (issue 4): in-guest conformance tests of the VMM's virtual MSRs, one named
// test per rule of contract/CONTRACT.md section 3, as TAP points. Every write goes through the selftest's
// own gate (test-writes.ts), which restores every value changed: at the end, on an exception,
// and on SIGINT/SIGTERM (the runner yields to the event loop between tests so handlers can run).
import type { Platform } from '../platform.js'
import type { TapPoint } from '../../bin/lib/tap.js'
import { probeCpu } from '../probe.js'
import { chainVerdict, type ChainVerdict } from '../apply/discovery.js'
import { TestWrites, type JournalSink, type SignalHost } from './test-writes.js'
import { CPUID7_EDX_SPEC_CTRL, MSR, bit, hasBit32 } from '../../contract/registers.js'
import { hex } from '../../contract/bits.js'
import { cpuList } from '../apply/report.js'

const S3 = 'contract/CONTRACT.md section 3 (RFC v3 07/10, 08/10; v2 selftest 10/11)'
const S5 = 'contract/CONTRACT.md section 5 (the guest reads back its shadow)'

/** Test names, one per rule; a failing point's name says which rule the VMM broke. */
export const RULES = {
  gateArchCap: 'gating: ARCH_CAPABILITIES bit 63 set and MSR_VIRTUAL_ENUMERATION (0x50000000) readable',
  gateVirtEnum: 'gating: MSR_VIRTUAL_ENUMERATION bit 0 set and MITI_ENUM / MITI_CTRL (0x50000001/2) readable',
  gateVirtEnumClear: 'gating: MITI_ENUM / MITI_CTRL (0x50000001/2) fault on read while MSR_VIRTUAL_ENUMERATION bit 0 is clear',
  veReadOnly: 'MSR_VIRTUAL_ENUMERATION (0x50000000) is read-only: a write faults and changes nothing',
  enumReadOnly: 'MSR_VIRTUAL_MITIGATION_ENUM (0x50000001) is read-only: a write faults and changes nothing',
  ctrlReserved: 'MSR_VIRTUAL_MITIGATION_CTRL: a write of any bit MITI_ENUM does not enumerate faults and changes nothing (64 bits tried)',
  ctrlReadBack: 'MSR_VIRTUAL_MITIGATION_CTRL: every enumerated value is accepted and reads back',
  perVcpu: 'MSR_VIRTUAL_MITIGATION_CTRL is per vCPU: different values on two CPUs read back independently',
  specShadow: 'IA32_SPEC_CTRL shadow: the guest reads back what it wrote, whatever MITI_CTRL makes the VMM force',
  restore: 'restore: every MSR the selftest changed holds its original value again',
} as const

export interface SelftestOptions {
  /** CPUs to test (default all online). */
  cpus?: readonly number[]
  signals?: SignalHost
  err?: (s: string) => void
  /** Yield point between tests (default setImmediate); tests may inject a hook. */
  between?: (testName: string) => Promise<void>
  /**
   * Write IA32_SPEC_CTRL (default false: the shadow check is read-only). On Linux SPEC_CTRL is per
   * CPU and per task (SSBD by prctl, conditional STIBP), so even writing back the value just read
   * can clear another task's bits (issue 14 item 3). Opt in for VMs that run nothing else (the
   * simulated and KVM tiers), or with the CLI's --allow-spec-ctrl-writes.
   */
  specCtrlWrites?: boolean
  /** Where originals are journalled before the first write of each MSR (journal.ts; the CLI passes one). */
  journal?: JournalSink
  /** Called with the reason when a signal interrupts the run (the CLI prints `Bail out!`). */
  bail?: (reason: string) => void
}

export interface SelftestResult {
  points: TapPoint[]
  /** 0 pass; 1 a rule broken; 3 could not tell; 4 everything skipped (kselftest KSFT_SKIP). */
  exitCode: 0 | 1 | 3 | 4
  writes: number
}

const isFault = (r: { ok: boolean }) => !r.ok
/** Subsets of the set bits of m (at most 2^6 of them: MITI_ENUM has 2 bits today). */
function subsets(m: bigint): bigint[] {
  const bits: bigint[] = []
  for (let n = 0; n < 64 && bits.length < 6; n++) if ((m & bit(n)) !== 0n) bits.push(bit(n))
  const out: bigint[] = []
  for (let s = 0; s < 1 << bits.length; s++) out.push(bits.reduce((v, b, i) => ((s >> i) & 1 ? v | b : v), 0n))
  return out
}

export async function runSelftest(platform: Platform, opts: SelftestOptions = {}): Promise<SelftestResult> {
  const cpus = [...(opts.cpus ?? platform.cpus())]
  const between = opts.between ?? (() => new Promise<void>(r => setImmediate(r)))
  const points: TapPoint[] = []
  const skipAll = (why: string, names: string[] = Object.values(RULES)) => { for (const n of names) points.push({ ok: true, name: n, skip: why }) }

  // Discovery, read-only (the probe never reads 0x5000000x without bit 63).
  const facts = cpus.map(c => probeCpu(platform, c))
  const verdicts = new Map<number, ChainVerdict>(cpus.map((c, i) => [c, chainVerdict(c, facts[i])]))
  const vs = [...verdicts.values()]
  const unknown = [...verdicts].filter(([, v]) => v.kind === 'unknown')
  if (unknown.length > 0) {
    const [c, v] = unknown[0]!
    const why = v.kind === 'unknown' ? `could not walk the discovery chain on cpu ${c} (${v.step}: ${v.fault.errno}: ${v.fault.message})` : ''
    skipAll(why)
    return { points, exitCode: 3, writes: 0 }
  }
  const noBit63 = (v: ChainVerdict) => v.kind === 'absent' && /ARCH_CAPABILITIES|CPUID\.\(7,0\)/.test(v.why)
  if (vs.every(noBit63)) {
    skipAll(`the virtual MSRs are not enumerated: ${(vs[0] as { why: string }).why}`)
    return { points, exitCode: 4, writes: 0 }
  }
  const gate = new TestWrites(platform, { ...(opts.specCtrlWrites ? { specCtrlWrites: true } : {}), ...(opts.journal ? { journal: opts.journal } : {}) })
  const uninstall = opts.signals ? gate.installSignalHandlers(opts.signals, opts.err ?? (() => {}), opts.bail ?? (() => {})) : () => {}
  try {
    // Rule: 0x50000000 exists when ARCH_CAP bit 63 is set (reads must not fault).
    const veFault = [...verdicts].filter(([, v]) => v.kind === 'violation' && v.step === 'rdmsr 0x50000000')
    const without63 = [...verdicts].filter(([, v]) => noBit63(v)).map(([c]) => c)
    points.push({
      ok: veFault.length === 0 && without63.length === 0, name: RULES.gateArchCap,
      ...(veFault.length || without63.length ? { diag: {
        rule: 'MSR_VIRTUAL_ENUMERATION exists when ARCH_CAPABILITIES bit 63 is set; the MSRs are per vCPU, so every CPU must enumerate them', source: S3,
        ...(veFault.length ? { faulted: veFault.map(([c, v]) => `cpu ${c}: ${v.kind === 'violation' ? `${v.fault.errno}: ${v.fault.message}` : ''}`) } : {}),
        ...(without63.length ? { cpusWithoutBit63: cpuList(without63) } : {}),
      } } : {}),
    })
    await between(RULES.gateArchCap)

    // Rule: 0x50000001/2 fault on read unless VIRTUAL_ENUMERATION bit 0; readable when set.
    const veClear = [...verdicts].filter(([, v]) => v.kind === 'absent' && /bit 0 is clear/.test(v.why)).map(([c]) => c)
    if (veClear.length === cpus.length) {
      const readable: string[] = []
      for (const c of cpus) for (const i of [MSR.VIRTUAL_MITIGATION_ENUM, MSR.VIRTUAL_MITIGATION_CTRL]) {
        const r = platform.rdmsr(c, i)
        if (r.ok) readable.push(`cpu ${c}: MSR ${hex(i)} read ${hex(r.value)} instead of faulting`)
      }
      points.push({ ok: readable.length === 0, name: RULES.gateVirtEnumClear, ...(readable.length ? { diag: { rule: '0x50000001/2 fault on read unless MSR_VIRTUAL_ENUMERATION bit 0 is set', source: S3, readable } } : {}) })
      skipAll('MSR_VIRTUAL_ENUMERATION bit 0 is clear: MITI_ENUM and MITI_CTRL do not exist', Object.values(RULES).filter(n => n !== RULES.gateArchCap && n !== RULES.gateVirtEnum && n !== RULES.gateVirtEnumClear && n !== RULES.restore))
      return { points, exitCode: points.every(p => p.ok) ? 0 : 1, writes: gate.changes.length }
    }
    const enumFault = [...verdicts].filter(([, v]) => v.kind === 'violation' && v.step !== 'rdmsr 0x50000000')
    const ctrlUnreadable = cpus.filter((c, i) => verdicts.get(c)!.kind === 'enumerated' && !('value' in (facts[i]!.msr['0x50000002'] ?? {})))
    points.push({
      ok: enumFault.length === 0 && veClear.length === 0 && ctrlUnreadable.length === 0, name: RULES.gateVirtEnum,
      ...(enumFault.length || veClear.length || ctrlUnreadable.length ? { diag: {
        rule: 'MITI_ENUM and MITI_CTRL exist when MSR_VIRTUAL_ENUMERATION bit 0 is set, on every vCPU', source: S3,
        ...(enumFault.length ? { faulted: enumFault.map(([c, v]) => `cpu ${c}: ${v.kind === 'violation' ? `${v.step}: ${v.fault.errno}: ${v.fault.message}` : ''}`) } : {}),
        ...(veClear.length ? { cpusWithBit0Clear: cpuList(veClear) } : {}),
        ...(ctrlUnreadable.length ? { ctrlUnreadableOn: cpuList(ctrlUnreadable) } : {}),
      } } : {}),
    })
    points.push({ ok: true, name: RULES.gateVirtEnumClear, skip: 'MSR_VIRTUAL_ENUMERATION bit 0 is set' })
    await between(RULES.gateVirtEnum)

    // The remaining tests run on the CPUs that enumerate the MSRs.
    const en = cpus.filter(c => verdicts.get(c)!.kind === 'enumerated')
    const mitiEnum = new Map(en.map(c => [c, (verdicts.get(c) as { mitiEnum: bigint }).mitiEnum]))
    if (en.length === 0) {
      skipAll('no CPU enumerates the virtual MSRs', Object.values(RULES).filter(n => n !== RULES.restore && !points.some(p => p.name === n)))
      return { points, exitCode: points.some(p => !p.ok) ? 1 : 4, writes: 0 }
    }

    for (const c of en) gate.snapshot(c)

    // Rule: the ENUM MSRs are read-only: a write faults and changes nothing.
    for (const [name, index, flip] of [[RULES.veReadOnly, MSR.VIRTUAL_ENUMERATION, 1n], [RULES.enumReadOnly, MSR.VIRTUAL_MITIGATION_ENUM, 3n]] as const) {
      const bad: string[] = []
      for (const c of en) {
        const before = platform.rdmsr(c, index)
        if (!before.ok) { bad.push(`cpu ${c}: read faulted (${before.fault.errno})`); continue }
        for (const v of [before.value, before.value ^ flip]) {
          const w = gate.write(c, index, v)
          const after = platform.rdmsr(c, index)
          if (w.ok) bad.push(`cpu ${c}: write of ${hex(v)} accepted`)
          if (!after.ok || after.value !== before.value) bad.push(`cpu ${c}: value changed from ${hex(before.value)} to ${after.ok ? hex(after.value) : after.fault.errno}`)
          // Put it back at once: a writable ENUM would disturb the following tests.
          if (w.ok) gate.restoreAll()
        }
      }
      points.push({ ok: bad.length === 0, name, ...(bad.length ? { diag: { rule: `${hex(index)} is read-only for the guest: a write faults and changes nothing`, source: S3, found: bad.slice(0, 32), count: bad.length } } : {}) })
      await between(name)
    }

    // Rule: a CTRL write with any bit not in MITI_ENUM faults and changes nothing (all 64 bits).
    {
      const bad: string[] = []
      let tried = 0
      for (const c of en) {
        const me = mitiEnum.get(c)!
        const base = platform.rdmsr(c, MSR.VIRTUAL_MITIGATION_CTRL)
        if (!base.ok) { bad.push(`cpu ${c}: CTRL read faulted (${base.fault.errno})`); continue }
        const accepted: number[] = []
        for (let n = 0; n < 64; n++) {
          if ((me & bit(n)) !== 0n) continue
          tried++
          const v = base.value | bit(n)
          const w = gate.write(c, MSR.VIRTUAL_MITIGATION_CTRL, v)
          const after = platform.rdmsr(c, MSR.VIRTUAL_MITIGATION_CTRL)
          if (w.ok) { accepted.push(n); gate.write(c, MSR.VIRTUAL_MITIGATION_CTRL, base.value) }
          else if (!after.ok || after.value !== base.value) bad.push(`cpu ${c}: faulting write of bit ${n} changed CTRL to ${after.ok ? hex(after.value) : after.fault.errno}`)
        }
        if (accepted.length) bad.push(`cpu ${c}: writes of non-enumerated bit(s) ${accepted.join(',')} accepted (MITI_ENUM ${hex(me)})`)
      }
      points.push({ ok: bad.length === 0, name: RULES.ctrlReserved, diag: { writesTried: tried, ...(bad.length ? { rule: 'a write to 0x50000002 with any bit not set in 0x50000001 faults and changes nothing', source: S3, found: bad.slice(0, 32), count: bad.length } : {}) } })
      await between(RULES.ctrlReserved)
    }

    // Rule: enumerated values are accepted and read back (a read returns the last value written).
    {
      const bad: string[] = []
      for (const c of en) {
        for (const v of [...subsets(mitiEnum.get(c)!), 0n]) {
          const w = gate.write(c, MSR.VIRTUAL_MITIGATION_CTRL, v)
          const r = platform.rdmsr(c, MSR.VIRTUAL_MITIGATION_CTRL)
          if (!w.ok) bad.push(`cpu ${c}: write of enumerated value ${hex(v)} faulted (${w.fault.errno})`)
          else if (!r.ok || r.value !== v) bad.push(`cpu ${c}: wrote ${hex(v)}, read back ${r.ok ? hex(r.value) : r.fault.errno}`)
        }
      }
      points.push({ ok: bad.length === 0, name: RULES.ctrlReadBack, ...(bad.length ? { diag: { rule: 'a write of enumerated bits succeeds; a read of 0x50000002 returns the last value written', source: S3, found: bad.slice(0, 32), count: bad.length } } : {}) })
      await between(RULES.ctrlReadBack)
    }

    // Rule: the MSRs are per vCPU (v3 06/10): each CPU holds its own CTRL.
    {
      const [a, b] = en
      const common = a !== undefined && b !== undefined ? mitiEnum.get(a)! & mitiEnum.get(b)! : 0n
      if (b === undefined) points.push({ ok: true, name: RULES.perVcpu, skip: `needs two CPUs that enumerate the MSRs; found ${en.length}` })
      else if (common === 0n) points.push({ ok: true, name: RULES.perVcpu, skip: 'MITI_ENUM is 0: CTRL can only hold 0, so two CPUs cannot differ' })
      else {
        const x = common & -common // lowest common enumerated bit
        const bad: string[] = []
        for (const [va, vb] of [[x, 0n], [0n, x]] as const) {
          const wa = gate.write(a!, MSR.VIRTUAL_MITIGATION_CTRL, va)
          const wb = gate.write(b, MSR.VIRTUAL_MITIGATION_CTRL, vb)
          const ra = platform.rdmsr(a!, MSR.VIRTUAL_MITIGATION_CTRL), rb = platform.rdmsr(b, MSR.VIRTUAL_MITIGATION_CTRL)
          if (!wa.ok || !wb.ok) bad.push(`write faulted (cpu ${a}: ${wa.ok ? 'ok' : wa.fault.errno}, cpu ${b}: ${wb.ok ? 'ok' : wb.fault.errno})`)
          else if (!ra.ok || !rb.ok || ra.value !== va || rb.value !== vb) bad.push(`wrote cpu ${a} = ${hex(va)} then cpu ${b} = ${hex(vb)}; read back cpu ${a} = ${ra.ok ? hex(ra.value) : ra.fault.errno}, cpu ${b} = ${rb.ok ? hex(rb.value) : rb.fault.errno}`)
        }
        points.push({ ok: bad.length === 0, name: RULES.perVcpu, ...(bad.length ? { diag: { rule: 'the virtual MSRs are per vCPU: each vCPU has its own CTRL value', source: 'contract/CONTRACT.md section 3 (v3 06/10)', found: bad } } : {}) })
      }
      await between(RULES.perVcpu)
    }

    // Rule: SPEC_CTRL reads return the guest's shadow, never what the VMM forces for CTRL.
    {
      const withSpec = en.filter(c => { const r = platform.cpuid(c, 7, 0); return r.ok && hasBit32(r.regs.edx, CPUID7_EDX_SPEC_CTRL) })
      if (withSpec.length === 0) points.push({ ok: true, name: RULES.specShadow, skip: 'no IA32_SPEC_CTRL (CPUID.(7,0):EDX[26] clear)' })
      else {
        const bad: string[] = []
        for (const c of withSpec) {
          // CTRL 0 first: then nothing the VMM derives from CTRL is forced, and S0 is the shadow.
          gate.write(c, MSR.VIRTUAL_MITIGATION_CTRL, 0n)
          const s0 = platform.rdmsr(c, MSR.SPEC_CTRL)
          if (!s0.ok) { bad.push(`cpu ${c}: SPEC_CTRL read faulted (${s0.fault.errno})`); continue }
          // Read-only by default: SPEC_CTRL is per task on Linux (issue 14 item 3). With
          // specCtrlWrites, only the value the CPU holds right now is written back (the gate's rule).
          for (const v of subsets(mitiEnum.get(c)!).reverse()) {
            gate.write(c, MSR.VIRTUAL_MITIGATION_CTRL, v)
            const r1 = platform.rdmsr(c, MSR.SPEC_CTRL)
            if (!r1.ok || r1.value !== s0.value) bad.push(`cpu ${c}: with CTRL ${hex(v)}, SPEC_CTRL read ${r1.ok ? hex(r1.value) : r1.fault.errno}, expected the shadow ${hex(s0.value)}`)
            if (opts.specCtrlWrites !== true) continue
            const w = gate.write(c, MSR.SPEC_CTRL, s0.value)
            const r2 = platform.rdmsr(c, MSR.SPEC_CTRL)
            if (!w.ok) bad.push(`cpu ${c}: writing SPEC_CTRL back to ${hex(s0.value)} faulted (${w.fault.errno}: ${w.fault.message})`)
            else if (!r2.ok || r2.value !== s0.value) bad.push(`cpu ${c}: wrote SPEC_CTRL ${hex(s0.value)} with CTRL ${hex(v)}, read back ${r2.ok ? hex(r2.value) : r2.fault.errno}`)
          }
        }
        const mode = opts.specCtrlWrites === true ? 'reads, and writes back the current value (--allow-spec-ctrl-writes)' : 'read-only (SPEC_CTRL writes are opt-in: --allow-spec-ctrl-writes)'
        points.push({ ok: bad.length === 0, name: RULES.specShadow, diag: { mode, ...(bad.length ? { rule: 'the guest reads back what it wrote (the shadow), never the forced bits', source: S5, found: bad.slice(0, 32), count: bad.length } : {}) } })
      }
      await between(RULES.specShadow)
    }
  } finally {
    // Also on exceptions: every changed value goes back.
    const r = gate.restoreAll()
    gate.finish(r)
    const mismatched: string[] = r.failed.map(f => `cpu ${f.cpu} MSR ${hex(f.index)}: could not restore ${hex(f.value)} (${f.fault.errno}: ${f.fault.message})`)
    for (const o of gate.recorded()) {
      const now = platform.rdmsr(o.cpu, o.index)
      if (!now.ok || now.value !== o.value) mismatched.push(`cpu ${o.cpu} MSR ${hex(o.index)} holds ${now.ok ? hex(now.value) : now.fault.errno}, original ${hex(o.value)}`)
    }
    points.push({ ok: mismatched.length === 0, name: RULES.restore, diag: { recorded: gate.recorded().length, restored: r.restored.length, ...(mismatched.length ? { notRestored: mismatched } : {}) } })
    uninstall()
  }
  const ran = points.filter(p => p.skip === undefined)
  const exitCode = points.some(p => !p.ok && p.skip === undefined) ? 1 : ran.length === 0 ? 4 : 0
  return { points, exitCode, writes: gate.changes.length }
}
