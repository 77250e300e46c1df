// A kernel that dies before /init (issue 15 item 2): the console's WARN()/panic/Oops/BUG lines are
// the report, not "no @@virtmiti-done line". Measured: Debian 7.2.13 with spectre_v2=retpoline,lfence
// prints "WARNING: arch/x86/kernel/alternative.c:745 at apply_retpolines+0x5e5/0x6d0, CPU#0: ..."
// and its trace, then hangs silently (no panic, so panic=1 never reboots). Pure.

/**
 * Console lines that mean the kernel itself failed: a WARN() splat ("WARNING: <file>:<line> at <fn>",
 * lib/bug.c __warn; not pr_warn text such as "Spectre V2 : WARNING: LFENCE ..."), a panic, an Oops,
 * BUG:, or a general protection fault. Timestamps are stripped.
 */
const DEATH = /^(?:\[\s*\d+\.\d+\]\s*)?((?:WARNING: (?:CPU: \d+ PID: \d+ at )?\S+:\d+ (?:at )?\S.*)|Kernel panic - .*|Oops: .*|BUG: .*|general protection fault.*)$/

export function deathLines(console: string): string[] {
  const out: string[] = []
  for (const raw of console.split('\n')) {
    const m = DEATH.exec(raw.replace(/\r$/, ''))
    if (m) out.push(m[1]!.slice(0, 300))
  }
  return out
}

/** The end of a WARN/Oops trace or a panic: after it, a silent console means the kernel is gone. */
export const TRACE_END = /---\[ end (?:trace [0-9a-f]+|Kernel panic)/

export interface KernelDeath {
  /** The console's last WARNING/panic/Oops/BUG line (what the report quotes). */
  line: string
  /** Every such line, first to last (at most 8). */
  lines: string[]
}

/** Whether a boot that never sent its hello frame died in the kernel; undefined: no such line. */
export function kernelDeath(console: string): KernelDeath | undefined {
  const lines = deathLines(console)
  return lines.length ? { line: lines[lines.length - 1]!, lines: lines.slice(-8) } : undefined
}

/** The matrix's known death matches when one of the console's death lines contains its text. */
export const deathMatches = (d: KernelDeath | undefined, expected: string): boolean => !!d && d.lines.some(l => l.includes(expected))
