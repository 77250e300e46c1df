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

/**
 * The one death the tier boots again, once: an int3 the kernel did not place, while it patches its
 * own text (static branches, text_poke_bp) on a TCG guest of 2 vCPUs. Measured on the full matrix
 * (issue 15), host AMD EPYC family 25 model 17, two runs of 200 boots: 6 of 120 Debian 7.2.13
 * boots and 1 of 120 6.12.117 boots died with "Oops: int3" at static-branch sites (sched_clock_cpu+0x9,
 * ktime_get_real_ts64+0x41, set_next_task_fair+0x6ed), each on a command line that booted on the
 * other models and in the other run; 0 of 120 6.1 boots. A kernel that dies so twice in a row fails
 * with both lines; any other death fails at once.
 */
export const TCG_TEXT_POKE_FLAKE = /^Oops: int3: /

export const isTcgTextPokeFlake = (d: KernelDeath | undefined): boolean => !!d && d.lines.some(l => TCG_TEXT_POKE_FLAKE.test(l))
