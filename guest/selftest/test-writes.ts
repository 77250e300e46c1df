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

/**
 * The selftest's own written rule (issue 14 item 3; DESIGN.md conventions): which MSRs it may
 * write, and which bits of each it may change. `changes` are the bits a write may differ from
 * `against`: the MSR's value recorded before the selftest's first write on that CPU ('original'),
 * or its value read by the gate right before this write ('current'). Restoring a recorded
 * original is always allowed. ARCH_CAPABILITIES and every other MSR are off the table.
 */
export interface WriteRule {
  index: number
  name: string
  changes: bigint
  against: 'original' | 'current'
  /** Only with SelftestOptions.specCtrlWrites (the CLI's --allow-spec-ctrl-writes). */
  optIn?: 'specCtrlWrites'
  why: string
}
const ALL_BITS = (1n << 64n) - 1n
export const SELFTEST_WRITE_RULES: readonly WriteRule[] = [
  { index: MSR.VIRTUAL_MITIGATION_CTRL, name: 'MSR_VIRTUAL_MITIGATION_CTRL', changes: ALL_BITS, against: 'original',
    why: 'every non-enumerated bit is written once to prove it faults; every enumerated value to prove it reads back (contract/CONTRACT.md section 3)' },
  { index: MSR.VIRTUAL_ENUMERATION, name: 'MSR_VIRTUAL_ENUMERATION', changes: 0x1n, against: 'original',
    why: 'read-only: its value and bit 0 flipped are written to prove the write faults and changes nothing (contract/CONTRACT.md section 3)' },
  { index: MSR.VIRTUAL_MITIGATION_ENUM, name: 'MSR_VIRTUAL_MITIGATION_ENUM', changes: 0x3n, against: 'original',
    why: 'read-only: its value and bits 0-1 flipped are written to prove the write faults and changes nothing (contract/CONTRACT.md section 3)' },
  { index: MSR.SPEC_CTRL, name: 'IA32_SPEC_CTRL', changes: 0n, against: 'current', optIn: 'specCtrlWrites',
    why: 'opt-in only: the value the CPU holds right now is written back to check the shadow after a write. SPEC_CTRL is per CPU and per task on Linux (SSBD by prctl, conditional STIBP): even that write can clear another task\'s bits' },
]
/** The MSRs on the table (contract/CONTRACT.md sections 3 and 5); ARCH_CAPABILITIES is not among them. */
export const SELFTEST_WRITABLE: readonly number[] = SELFTEST_WRITE_RULES.map(r => r.index)
const ruleOf = (index: number) => SELFTEST_WRITE_RULES.find(r => r.index === index)

export interface Change { cpu: number; index: number; value: bigint; ok: boolean }
export interface RestoreResult {
  restored: { cpu: number; index: number; value: bigint }[]
  failed: { cpu: number; index: number; value: bigint; fault: AccessFault | { errno: 'EIO'; message: string } }[]
}
export interface Original { cpu: number; index: number; value: bigint }

/**
 * Every signal whose default action ends the process and that Node lets a script catch (signal(7)).
 * SIGSEGV, SIGBUS, SIGFPE and SIGILL are Node's own (its handlers must not be replaced), SIGKILL and
 * SIGSTOP cannot be caught: the journal covers those (journal.ts).
 */
export const TERMINATING_SIGNALS = [
  'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGTRAP', 'SIGABRT', 'SIGPIPE', 'SIGALRM', 'SIGTERM', 'SIGUSR2', 'SIGSTKFLT',
  'SIGXCPU', 'SIGXFSZ', 'SIGVTALRM', 'SIGPROF', 'SIGPOLL', 'SIGPWR', 'SIGSYS',
] as const satisfies readonly NodeJS.Signals[]
export type TerminatingSignal = (typeof TERMINATING_SIGNALS)[number]
/** Signal numbers on x86-64 Linux (exit code 128 + n, as a shell reports it). */
export const SIGNAL_NUMBER: Record<TerminatingSignal | 'SIGUSR1', number> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGTRAP: 5, SIGABRT: 6, SIGUSR1: 10, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15,
  SIGSTKFLT: 16, SIGXCPU: 24, SIGXFSZ: 25, SIGVTALRM: 26, SIGPROF: 27, SIGPOLL: 29, SIGPWR: 30, SIGSYS: 31,
}

/** What signal handling needs from `process` (injected by tests). */
export interface SignalHost {
  on(sig: NodeJS.Signals, fn: () => void): unknown
  off(sig: NodeJS.Signals, fn: () => void): unknown
  exit(code: number): void
}

/** Where the gate records originals before the first write of each MSR (journal.ts). */
export interface JournalSink { save(originals: readonly Original[]): void; clear(): void }

const refuse = (message: string): MsrWrite => ({ ok: false, fault: { errno: 'EPERM', message: `selftest gate: ${message}` } })

export class TestWrites {
  /** Every write attempted, in order, with whether the platform accepted it. */
  readonly changes: Change[] = []
  private readonly originals = new Map<string, { cpu: number; index: number; value: bigint }>()
  private readonly checked = new Map<number, string | true>()

  constructor(private readonly platform: Platform, private readonly opts: { specCtrlWrites?: boolean; journal?: JournalSink } = {}) {}

  /** Why the rule table refuses this write, or undefined when it allows it. */
  private ruleRefusal(cpu: number, index: number, value: bigint): string | undefined {
    const rule = ruleOf(index)
    if (!rule) return `MSR ${hex(index)} is not one the selftest may write`
    if (rule.optIn === 'specCtrlWrites' && this.opts.specCtrlWrites !== true) return `${rule.name} writes are off (opt in with --allow-spec-ctrl-writes: ${rule.why})`
    const base = rule.against === 'original' ? this.originals.get(`${cpu}:${index}`)?.value : (() => { const r = this.platform.rdmsr(cpu, index); return r.ok ? r.value : undefined })()
    if (base === undefined) return `cpu ${cpu}: ${rule.name} has no ${rule.against} value to compare with`
    const changed = value ^ base
    if ((changed & ~rule.changes) !== 0n) return `cpu ${cpu}: ${hex(value)} changes bits ${hex(changed & ~rule.changes)} of ${rule.name} (${rule.against} ${hex(base)}), outside the bits the selftest may change (${hex(rule.changes)})`
    return undefined
  }

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

  /** Write through the gate. Refused (EPERM, nothing written) off the rule table, unenumerated, or unrestorable. */
  write(cpu: number, index: number, value: bigint): MsrWrite {
    const rule = ruleOf(index)
    if (!rule) return refuse(`MSR ${hex(index)} is not one the selftest may write`)
    if (rule.optIn === 'specCtrlWrites' && this.opts.specCtrlWrites !== true) return refuse(`${rule.name} writes are off (opt in with --allow-spec-ctrl-writes)`)
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
      this.journalSave()
    }
    const why = this.ruleRefusal(cpu, index, value)
    if (why !== undefined) return refuse(why)
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
      // SPEC_CTRL is recorded (and so restored) only when its writes are opted in.
      if (index === MSR.SPEC_CTRL && (!spec || this.opts.specCtrlWrites !== true)) continue
      const key = `${cpu}:${index}`
      if (this.originals.has(key)) continue
      const r = this.platform.rdmsr(cpu, index)
      if (r.ok) this.originals.set(key, { cpu, index, value: r.value })
    }
    this.journalSave()
  }

  /** Journal first, then write (a SIGKILL between the two leaves a journal that restores a no-op). */
  private journalSave(): void { this.opts.journal?.save(this.recorded()) }

  /** After a complete restore, the journal has nothing left to do. */
  finish(r: RestoreResult): void { if (r.failed.length === 0) this.opts.journal?.clear() }

  /**
   * Whether the first link of the chain holds on `cpu` (CPUID.(7,0):EDX[29], ARCH_CAPABILITIES bit
   * 63): enough to touch 0x50000000, so enough to restore it (a broken VMM may have let the selftest
   * clear VIRTUAL_ENUMERATION bit 0, which would otherwise block restoring it).
   */
  archCapEnumerated(cpu: number): string | true {
    const c7 = this.platform.cpuid(cpu, 7, 0)
    if (!c7.ok) return `cpu ${cpu}: CPUID leaf 7 unreadable (${c7.fault.errno})`
    if (!hasBit32(c7.regs.edx, CPUID7_EDX_ARCH_CAPABILITIES)) return `cpu ${cpu}: no IA32_ARCH_CAPABILITIES`
    const ac = this.platform.rdmsr(cpu, MSR.ARCH_CAPABILITIES)
    if (!ac.ok) return `cpu ${cpu}: ARCH_CAPABILITIES unreadable (${ac.fault.errno})`
    return (ac.value & ARCH_CAP_VIRTUAL_ENUM) === 0n ? `cpu ${cpu}: ARCH_CAPABILITIES bit 63 clear` : true
  }

  /** Restore originals recorded by an earlier run (the journal), through the same checked restore. */
  restoreOriginals(originals: readonly Original[]): RestoreResult {
    for (const o of originals) if (SELFTEST_WRITABLE.includes(o.index)) this.originals.set(`${o.cpu}:${o.index}`, { ...o })
    return this.restoreAll()
  }

  /** Original values recorded so far. */
  recorded(): { cpu: number; index: number; value: bigint }[] { return [...this.originals.values()] }

  /**
   * Put every recorded MSR back to its original value, newest first, checking each by reading it.
   * Values that already match are left alone (no write). Idempotent.
   */
  restoreAll(): RestoreResult {
    const out: RestoreResult = { restored: [], failed: [] }
    // VIRTUAL_ENUMERATION first: while a broken VMM shows its bit 0 cleared, 0x50000001/2 fault.
    const all = [...this.originals.values()].reverse()
    const ordered = [...all.filter(o => o.index === MSR.VIRTUAL_ENUMERATION), ...all.filter(o => o.index !== MSR.VIRTUAL_ENUMERATION)]
    for (const o of ordered) {
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
   * Every terminating signal (TERMINATING_SIGNALS): restore everything, print `Bail out!` through
   * `bail`, say so on `err`, exit 128 + the signal number. SIGUSR1 gets a listener that only logs:
   * with a listener, Node does not open its inspector on 127.0.0.1:9229 in this root process (issue
   * 14 item 2; --disable-sigusr1 does not exist on Node 18). Handlers run when the runner yields.
   * Returns the uninstaller.
   */
  installSignalHandlers(host: SignalHost, err: (s: string) => void, bail: (reason: string) => void = () => {}): () => void {
    const installed: [NodeJS.Signals, () => void][] = []
    let done = false
    for (const sig of TERMINATING_SIGNALS) {
      const fn = () => {
        if (done) return
        done = true
        const r = this.restoreAll()
        this.finish(r)
        const what = `interrupted by ${sig}: restored ${r.restored.length} value(s)${r.failed.length ? `, FAILED to restore ${r.failed.map(f => `cpu ${f.cpu} MSR ${hex(f.index)} = ${hex(f.value)}`).join(', ')}` : ''}`
        bail(what)
        err(`guest selftest: ${what}\n`)
        host.exit(128 + SIGNAL_NUMBER[sig])
      }
      host.on(sig, fn); installed.push([sig, fn])
    }
    const usr1 = () => { err('guest selftest: SIGUSR1 ignored (the inspector stays closed in this root process)\n') }
    host.on('SIGUSR1', usr1); installed.push(['SIGUSR1', usr1])
    return () => { for (const [s, f] of installed) host.off(s, f) }
  }
}
