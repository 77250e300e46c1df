// Test support for the agent's write path: a small in-test fake Platform that follows
// contract/CONTRACT.md section 3 (with injectable faults), a minimal probe and decision built by hand.
// Test support only (tests import it; the agent never does: testing/layers.test.ts).
import type { CpuidRegs, MsrRead, MsrWrite, Platform } from '../guest/platform.js'
import type { CpuFacts, Facts, MsrFact } from '../contract/facts.js'
import { msrKey } from '../contract/facts.js'
import type { Decision, Reason, VirtEnumeration } from '../contract/decision-types.js'
import type { MitiCtrlWish } from '../contract/miti-ctrl.js'
import { wantedMitiCtrl } from '../contract/miti-ctrl.js'
import { ARCH_CAP_VIRTUAL_ENUM, MSR, VIRT_ENUM_MITIGATION_CTRL_SUPPORT, hasBit32, CPUID7_EDX_ARCH_CAPABILITIES } from '../contract/registers.js'

export interface FakeOptions {
  ncpus?: number
  /** ARCH_CAPABILITIES value; null = no such MSR (CPUID.(7,0):EDX[29] clear). Default bit 63 set. */
  archCap?: bigint | null
  virtualEnumeration?: bigint
  mitiEnum?: bigint
  /** How MSRs the fake does not emulate answer: #GP, or read 0 / ignore writes (QEMU TCG, ignore_msrs). */
  unknownMsr?: 'fault' | 'read-zero'
  /** Whether the virtual MSRs are emulated at all (false = unknown MSRs). */
  advertise?: boolean
  specCtrl?: boolean
  /** Per-call fault injection: return a result to override the emulation. */
  rdmsrHook?: (cpu: number, index: number) => MsrRead | undefined
  wrmsrHook?: (cpu: number, index: number, value: bigint) => MsrWrite | undefined
  text?: Record<string, string>
}

export interface FakePlatform extends Platform {
  ctrl: Map<number, bigint>
  specCtrl: Map<number, bigint>
  writes: { cpu: number; index: number; value: bigint; ok: boolean }[]
  online: number[]
}

const gp = (what: string) => ({ ok: false as const, fault: { errno: 'EIO', message: `${what}: #GP` } })

export function fakePlatform(o: FakeOptions = {}): FakePlatform {
  const ncpus = o.ncpus ?? 2
  const archCap = o.archCap === undefined ? ARCH_CAP_VIRTUAL_ENUM : o.archCap
  const advertise = o.advertise ?? true
  const ve = o.virtualEnumeration ?? VIRT_ENUM_MITIGATION_CTRL_SUPPORT
  const en = o.mitiEnum ?? 3n
  const ctrl = new Map<number, bigint>()
  const specCtrl = new Map<number, bigint>()
  const online = Array.from({ length: ncpus }, (_, i) => i)
  for (const c of online) { ctrl.set(c, 0n); specCtrl.set(c, 0n) }
  const writes: FakePlatform['writes'] = []
  const unknownRead = (index: number): MsrRead => (o.unknownMsr === 'read-zero' ? { ok: true, value: 0n } : gp(`rdmsr ${msrKey(index)}`))
  const hasVirt = () => advertise && archCap !== null && (archCap & ARCH_CAP_VIRTUAL_ENUM) !== 0n
  const p: FakePlatform = {
    kind: 'fake', ctrl, specCtrl, writes, online,
    cpus: () => [...online],
    cpuid(cpu, leaf, sub) {
      if (!online.includes(cpu)) return { ok: false, fault: { errno: 'ENXIO', message: `cpu ${cpu} offline` } }
      const regs: CpuidRegs = { eax: 0, ebx: 0, ecx: 0, edx: 0 }
      if (leaf === 7 && sub === 0) regs.edx = ((archCap !== null ? 1 << 29 : 0) | ((o.specCtrl ?? true) ? 1 << 26 : 0)) >>> 0
      return { ok: true, regs }
    },
    rdmsr(cpu, index) {
      if (!online.includes(cpu)) return { ok: false, fault: { errno: 'ENXIO', message: `cpu ${cpu} offline` } }
      const h = o.rdmsrHook?.(cpu, index)
      if (h) return h
      if (index === MSR.ARCH_CAPABILITIES) return archCap === null ? gp('rdmsr 0x10a') : { ok: true, value: archCap }
      if (index === MSR.SPEC_CTRL) return (o.specCtrl ?? true) ? { ok: true, value: specCtrl.get(cpu)! } : gp('rdmsr 0x48')
      if (index === MSR.VIRTUAL_ENUMERATION) return hasVirt() ? { ok: true, value: ve } : unknownRead(index)
      if (index === MSR.VIRTUAL_MITIGATION_ENUM || index === MSR.VIRTUAL_MITIGATION_CTRL) {
        if (!hasVirt()) return unknownRead(index)
        if ((ve & 1n) === 0n) return gp(`rdmsr ${msrKey(index)}`)
        return { ok: true, value: index === MSR.VIRTUAL_MITIGATION_ENUM ? en : ctrl.get(cpu)! }
      }
      return unknownRead(index)
    },
    wrmsr(cpu, index, value) {
      if (!online.includes(cpu)) return { ok: false, fault: { errno: 'ENXIO', message: `cpu ${cpu} offline` } }
      const h = o.wrmsrHook?.(cpu, index, value)
      const r: MsrWrite = h ?? (() => {
        if (index === MSR.SPEC_CTRL) { specCtrl.set(cpu, value); return { ok: true as const } }
        if (index === MSR.VIRTUAL_MITIGATION_CTRL && hasVirt() && (ve & 1n) !== 0n) {
          if ((value & ~en) !== 0n) return gp('wrmsr 0x50000002 reserved bits')
          ctrl.set(cpu, value); return { ok: true as const }
        }
        if (!hasVirt() && o.unknownMsr === 'read-zero') return { ok: true as const }
        return gp(`wrmsr ${msrKey(index)}`)
      })()
      writes.push({ cpu, index, value, ok: r.ok })
      return r
    },
    readText: path => o.text?.[path],
  }
  return p
}

/** A read-only probe shaped like the lead's: walks the chain, never probing 0x5000000x without bit 63. */
export function miniProbe(p: Platform): Facts {
  const cpus: CpuFacts[] = p.cpus().map(cpu => {
    const cf: CpuFacts = { cpu, cpuid: {}, msr: {} }
    const c7 = p.cpuid(cpu, 7, 0)
    cf.cpuid['0x7.0'] = c7.ok ? { regs: c7.regs } : { fault: c7.fault }
    const rd = (i: number): MsrFact => { const r = p.rdmsr(cpu, i); return r.ok ? { value: r.value } : { fault: r.fault } }
    const skip = (i: number, why: string) => { cf.msr[msrKey(i)] = { skipped: why } }
    if (!c7.ok || !hasBit32(c7.regs.edx, CPUID7_EDX_ARCH_CAPABILITIES)) { skip(MSR.ARCH_CAPABILITIES, 'no CPUID.(7,0):EDX[29]'); return cf }
    const ac = cf.msr[msrKey(MSR.ARCH_CAPABILITIES)] = rd(MSR.ARCH_CAPABILITIES)
    if (!('value' in ac) || (ac.value & ARCH_CAP_VIRTUAL_ENUM) === 0n) { skip(MSR.VIRTUAL_ENUMERATION, 'ARCH_CAP bit 63 clear'); return cf }
    const ve = cf.msr[msrKey(MSR.VIRTUAL_ENUMERATION)] = rd(MSR.VIRTUAL_ENUMERATION)
    if (!('value' in ve) || (ve.value & 1n) === 0n) return cf
    cf.msr[msrKey(MSR.VIRTUAL_MITIGATION_ENUM)] = rd(MSR.VIRTUAL_MITIGATION_ENUM)
    cf.msr[msrKey(MSR.VIRTUAL_MITIGATION_CTRL)] = rd(MSR.VIRTUAL_MITIGATION_CTRL)
    return cf
  })
  return { platform: p.kind, kernel: { release: '6.1.0-test', vulnerabilities: {} }, cpus }
}

const R = (rule: string, text: string): Reason => ({ rule, text, source: 'test' })

/** A hand-built Decision: the chain per CPU from the facts, and the given wish. */
export function handDecision(facts: Facts, wish: MitiCtrlWish): Decision {
  const virt: VirtEnumeration[] = facts.cpus.map(c => {
    const v = (i: number) => { const f = c.msr[msrKey(i)]; return f && 'value' in f ? f.value : undefined }
    const ac = v(MSR.ARCH_CAPABILITIES); const ve = v(MSR.VIRTUAL_ENUMERATION); const me = v(MSR.VIRTUAL_MITIGATION_ENUM); const ct = v(MSR.VIRTUAL_MITIGATION_CTRL)
    if (ac === undefined || (ac & ARCH_CAP_VIRTUAL_ENUM) === 0n) return { cpu: c.cpu, reached: 'none', enumerated: false, reason: R('gate', 'bit 63 clear') }
    if (ve === undefined || (ve & 1n) === 0n) return { cpu: c.cpu, reached: 'arch-cap', enumerated: false, reason: R('gate', 've bit 0 clear') }
    if (me === undefined) return { cpu: c.cpu, reached: 'virtual-enum', enumerated: false, reason: R('gate', 'enum unreadable') }
    return { cpu: c.cpu, reached: 'miti-enum', enumerated: true, mitiEnum: me, mitiCtrl: ct, ...(ct !== undefined ? { wanted: wantedMitiCtrl(ct, me, wish) } : {}), reason: R('gate', 'enumerated') }
  })
  return {
    cpu: { vendor: 'GenuineIntel', family: 6, model: 0x8f, stepping: 8, hypervisor: true },
    bhiAffected: { value: true, reasons: [] },
    kernel: { spectreV2: 'retpoline', bhi: 'sw-loop', retpoline: true },
    expected: { spectreV2: 'retpoline', bhi: 'sw-loop', retpoline: true, reasons: [] },
    mismatches: [],
    wish,
    wishReasons: [R('bhb', 'kernel says BHI: SW loop'), R('retpoline', 'kernel uses retpoline')],
    virt,
    enumerated: virt.every(v => v.enumerated),
    disagreements: [],
  }
}
