// The selftest's own write gate (issue 4). `guest selftest` must write values the report never
// would: non-enumerated CTRL bits (to prove they fault), the read-only ENUM MSRs (to prove writes
// fault), SPEC_CTRL (to check the shadow). This gate, used by the selftest only, allows exactly
// those MSRs, only on CPUs whose discovery chain it has walked itself (contract/CONTRACT.md section 3:
// never touch 0x5000000x without ARCH_CAPABILITIES bit 63), records the original value of every
// MSR before its first write, and restores them all: at the end, on exceptions (the runner's
// finally), and on SIGINT/SIGTERM (handlers that restore, then exit). guest/apply/write-gate.ts
// stays the report's strict gate; write-gate.test.ts proves these two are the only writers.
import type { AccessFault, MsrWrite, Platform } from '../platform.js'
import {
  ARCH_CAP_VIRTUAL_ENUM, CPUID7_EDX_ARCH_CAPABILITIES, CPUID7_EDX_SPEC_CTRL, MSR, VIRT_ENUM_MITIGATION_CTRL_SUPPORT, hasBit32,
} from '../../contract/registers.js'
import { hex } from '../../contract/bits.js'

/** The MSRs the selftest may write (contract/CONTRACT.md sections 3 and 5); ARCH_CAPABILITIES is not among them. */
export const SELFTEST_WRITABLE: readonly number[] = [
  MSR.SPEC_CTRL, MSR.VIRTUAL_ENUMERATION, MSR.VIRTUAL_MITIGATION_ENUM, MSR.VIRTUAL_MITIGATION_CTRL,
]

export interface Change { cpu: number; index: number; value: bigint; ok: boolean }
export interface RestoreResult {
  restored: { cpu: number; index: number; value: bigint }[]
  failed: { cpu: number; index: number; value: bigint; fault: AccessFault | { errno: 'EIO'; message: string } }[]
}

/** What signal handling needs from `process` (injected by tests). */
export interface SignalHost {
  on(sig: 'SIGINT' | 'SIGTERM', fn: () => void): unknown
  off(sig: 'SIGINT' | 'SIGTERM', fn: () => void): unknown
  exit(code: number): void
}

const refuse = (message: string): MsrWrite => ({ ok: false, fault: { errno: 'EPERM', message: `selftest gate: ${message}` } })

export class TestWrites {
  /** Every write attempted, in order, with whether the platform accepted it. */
  readonly changes: Change[] = []
  private readonly originals = new Map<string, { cpu: number; index: number; value: bigint }>()
  private readonly checked = new Map<number, string | true>()

  constructor(private readonly platform: Platform) {}

  /**
   * Why writes on `cpu` are refused, or true when the virtual MSRs are enumerated there.
   * Walked by the gate itself, not taken from the caller: the gate never runs unless enumerated.
   */
  enumerated(cpu: number): string | true {
    const known = this.checked.get(cpu)
    if (known !== undefined) return known
    const p = this.platform
    let why: string | true = true
    const c7 = p.cpuid(cpu, 7, 0)
    if (!c7.ok) why = `cpu ${cpu}: CPUID leaf 7 unreadable (${c7.fault.errno})`
    else if (!hasBit32(c7.regs.edx, CPUID7_EDX_ARCH_CAPABILITIES)) why = `cpu ${cpu}: no IA32_ARCH_CAPABILITIES`
    else {
      const ac = p.rdmsr(cpu, MSR.ARCH_CAPABILITIES)
      if (!ac.ok) why = `cpu ${cpu}: ARCH_CAPABILITIES unreadable (${ac.fault.errno})`
      else if ((ac.value & ARCH_CAP_VIRTUAL_ENUM) === 0n) why = `cpu ${cpu}: ARCH_CAPABILITIES bit 63 clear`
      else {
        const ve = p.rdmsr(cpu, MSR.VIRTUAL_ENUMERATION)
        if (!ve.ok) why = `cpu ${cpu}: MSR_VIRTUAL_ENUMERATION unreadable (${ve.fault.errno})`
        else if ((ve.value & VIRT_ENUM_MITIGATION_CTRL_SUPPORT) === 0n) why = `cpu ${cpu}: MSR_VIRTUAL_ENUMERATION bit 0 clear`
      }
    }
    this.checked.set(cpu, why)
    return why
  }

  /** Write through the gate. Refused (EPERM, nothing written) off the list, unenumerated, or unrestorable. */
  write(cpu: number, index: number, value: bigint): MsrWrite {
    if (!SELFTEST_WRITABLE.includes(index)) return refuse(`MSR ${hex(index)} is not one the selftest may write`)
    if (value < 0n || value >= 1n << 64n) return refuse(`${value} is not a 64-bit value`)
    const en = this.enumerated(cpu)
    if (en !== true) return refuse(`not enumerated: ${en}`)
    if (index === MSR.SPEC_CTRL) {
      const c7 = this.platform.cpuid(cpu, 7, 0)
      if (!c7.ok || !hasBit32(c7.regs.edx, CPUID7_EDX_SPEC_CTRL)) return refuse(`cpu ${cpu}: no IA32_SPEC_CTRL (CPUID.(7,0):EDX[26] clear)`)
    }
    const key = `${cpu}:${index}`
    if (!this.originals.has(key)) {
      // Record before the first write; what cannot be read back cannot be restored, so it is not written.
      const r = this.platform.rdmsr(cpu, index)
      if (!r.ok) return refuse(`cpu ${cpu}: MSR ${hex(index)} unreadable (${r.fault.errno}), so it could not be restored`)
      this.originals.set(key, { cpu, index, value: r.value })
    }
    const w = this.platform.wrmsr(cpu, index, value)
    this.changes.push({ cpu, index, value, ok: w.ok })
    return w
  }

  /**
   * Record the originals of every MSR the selftest may write on `cpu`, before any write: some
   * reads depend on other MSRs (a faulty VMM leaks forced SPEC_CTRL bits that follow CTRL), so
   * "the value before the first write of this MSR" can already be disturbed. Order matters:
   * restoreAll() goes newest first, so CTRL (recorded last) is restored before SPEC_CTRL.
   */
  snapshot(cpu: number): void {
    if (this.enumerated(cpu) !== true) return
    const c7 = this.platform.cpuid(cpu, 7, 0)
    const spec = c7.ok && hasBit32(c7.regs.edx, CPUID7_EDX_SPEC_CTRL)
    for (const index of SELFTEST_WRITABLE) {
      if (index === MSR.SPEC_CTRL && !spec) continue
      const key = `${cpu}:${index}`
      if (this.originals.has(key)) continue
      const r = this.platform.rdmsr(cpu, index)
      if (r.ok) this.originals.set(key, { cpu, index, value: r.value })
    }
  }

  /** Original values recorded so far. */
  recorded(): { cpu: number; index: number; value: bigint }[] { return [...this.originals.values()] }

  /**
   * Put every recorded MSR back to its original value, newest first, checking each by reading it.
   * Values that already match are left alone (no write). Idempotent.
   */
  restoreAll(): RestoreResult {
    const out: RestoreResult = { restored: [], failed: [] }
    for (const o of [...this.originals.values()].reverse()) {
      const now = this.platform.rdmsr(o.cpu, o.index)
      if (now.ok && now.value === o.value) continue
      const w = this.platform.wrmsr(o.cpu, o.index, o.value)
      this.changes.push({ cpu: o.cpu, index: o.index, value: o.value, ok: w.ok })
      const back = this.platform.rdmsr(o.cpu, o.index)
      if (!w.ok) out.failed.push({ ...o, fault: w.fault })
      else if (!back.ok) out.failed.push({ ...o, fault: back.fault })
      else if (back.value !== o.value) out.failed.push({ ...o, fault: { errno: 'EIO', message: `read back ${hex(back.value)} after restoring ${hex(o.value)}` } })
      else out.restored.push(o)
    }
    return out
  }

  /**
   * SIGINT/SIGTERM: restore everything, say so on `err`, exit 130/143. Returns the uninstaller.
   * Handlers run when the runner yields to the event loop (it does between tests).
   */
  installSignalHandlers(host: SignalHost, err: (s: string) => void): () => void {
    const make = (sig: 'SIGINT' | 'SIGTERM', code: number) => () => {
      const r = this.restoreAll()
      err(`guest selftest: interrupted by ${sig}: restored ${r.restored.length} value(s)${r.failed.length ? `, FAILED to restore ${r.failed.map(f => `cpu ${f.cpu} MSR ${hex(f.index)} = ${hex(f.value)}`).join(', ')}` : ''}\n`)
      host.exit(code)
    }
    const onInt = make('SIGINT', 130), onTerm = make('SIGTERM', 143)
    host.on('SIGINT', onInt); host.on('SIGTERM', onTerm)
    return () => { host.off('SIGINT', onInt); host.off('SIGTERM', onTerm) }
  }
}
