// `virtmiti guest selftest` (issue 4): in-guest conformance tests of the VMM's virtual MSRs as
// TAP 14 (or 13). Exit codes (DESIGN.md, kselftest): 0 pass; 1 a rule broken; 2 usage; 3 could
// not tell; 4 skipped (the virtual MSRs are not enumerated).
import * as fs from 'node:fs'
import type { Platform } from '../platform.js'
import { DevcpuPlatform } from '../devcpu.js'
import { runSelftest } from '../selftest/run.js'
import type { SignalHost } from '../selftest/test-writes.js'
import { DEFAULT_JOURNAL_DIR, FileJournal, journalPath, recoverFromJournal } from '../selftest/journal.js'
import { WatchedPlatform, recoverChild, selfCommand, supervise, type SelfCommand } from '../selftest/supervisor.js'
import { hex } from '../../contract/bits.js'
import { EXIT, parse, stdio } from '../../bin/lib/cli.js'
import { safeText } from '../../bin/lib/escape.js'
import { tapDocument, type TapVersion } from '../../bin/lib/tap.js'

export interface SelftestDeps {
  /** Run in this process on this platform (tests, the simulated and KVM tiers): no supervisor. */
  platform?: Platform
  /** The device platform for a --dev-root (default DevcpuPlatform); the runner and --recover use it. */
  makePlatform?: (devRoot: string) => Platform
  out: (s: string) => void
  err: (s: string) => void
  /** Where signal handlers go (default: process). */
  signals?: SignalHost
  between?: (testName: string) => Promise<void>
  /** How to start this program again for the runner and --recover children (default from process.argv). */
  self?: SelfCommand
}

export const SELFTEST_USAGE = `usage: virtmiti guest selftest [--cpu N|all] [--tap] [--tap-version 13|14] [--dev-root DIR]
                              [--allow-spec-ctrl-writes] [--journal-dir DIR] [--access-deadline-ms N]
       virtmiti guest selftest --recover [--dev-root DIR] [--journal-dir DIR]

In-guest conformance tests of the VMM's virtual mitigation MSRs (contract/CONTRACT.md section 3), one
named TAP test per rule: gating by ARCH_CAPABILITIES bit 63 and VIRTUAL_ENUMERATION bit 0;
the ENUM MSRs are read-only; every non-enumerated CTRL bit faults (64 bits tried); enumerated
values read back; CTRL is per vCPU; the SPEC_CTRL shadow (read-only unless opted in). The
output is always TAP; --tap is accepted for symmetry with the other commands.

What it may write (its own rule, guest/selftest/test-writes.ts SELFTEST_WRITE_RULES): MITI_CTRL
(any bit, to prove the non-enumerated ones fault), VIRTUAL_ENUMERATION and MITI_ENUM (their
value or the enumerated bits flipped, to prove the writes fault), and IA32_SPEC_CTRL only with
--allow-spec-ctrl-writes. Every value changed is restored: at the end, on failure, on every
terminating signal (SIGHUP, SIGINT, SIGQUIT, SIGTERM, ...; TAP ends with "Bail out!"), and
after a SIGKILL from the journal, by the next run or by --recover.

  --allow-spec-ctrl-writes  also write IA32_SPEC_CTRL (only the value it holds at that moment) to
                        check the shadow after a write. RISK: on Linux SPEC_CTRL is per CPU and per
                        task (SSBD by prctl, conditional STIBP); such a write can clear another
                        task's SSBD or STIBP. Use only in a VM that runs nothing else.
  --journal-dir DIR     where originals are journalled before the first write (default ${DEFAULT_JOURNAL_DIR})
  --access-deadline-ms N  a device access that takes longer ends the run: the runner is killed,
                        values are restored from the journal, exit 3 (default 10000)
  --recover             only restore what an interrupted run journalled, then remove the journal
  --dev-root DIR        use DIR/dev/cpu/N/{cpuid,msr}, DIR/sys, DIR/proc instead of /

exit: 0 pass; 1 the VMM broke a rule (the failing test names it); 2 usage error (or a journal
that cannot be used); 3 could not tell (msr driver missing, not permitted, a device access past
the deadline, a value not restored); 4 skipped (not enumerated); 128+N interrupted by signal N
(every value restored). --recover: 0 restored or nothing to do; 2 unusable journal; 3 not restored.
`

const OPTIONS = {
  cpu: { type: 'string' },
  'tap-version': { type: 'string' },
  tap: { type: 'boolean' },
  'dev-root': { type: 'string' },
  'allow-spec-ctrl-writes': { type: 'boolean' },
  'journal-dir': { type: 'string' },
  'access-deadline-ms': { type: 'string' },
  recover: { type: 'boolean' },
  // Internal: the supervised child that touches the devices (guest/selftest/supervisor.ts).
  runner: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

const processSignals: SignalHost = {
  on: (s, f) => process.on(s, f),
  off: (s, f) => process.off(s, f),
  exit: c => process.exit(c),
}

const stdDeps = (): SelftestDeps => ({ out: stdio.out, err: stdio.err })

export async function main(argv: string[], given: SelftestDeps = stdDeps()): Promise<number> {
  const deps: SelftestDeps = { ...given }
  let values
  try {
    values = parse('guest selftest', argv, OPTIONS).values
  } catch (e) {
    deps.err(`${(e as Error).message}\n${SELFTEST_USAGE}`)
    return EXIT.USAGE
  }
  if (values.help) { deps.out(SELFTEST_USAGE); return EXIT.OK }
  const usage = (m: string) => { deps.err(`guest selftest: ${safeText(m)}\n`); return EXIT.USAGE }
  const tv = values['tap-version'] ?? '14'
  if (tv !== '13' && tv !== '14') return usage(`--tap-version wants 13 or 14, got "${tv}"`)
  const deadlineText = values['access-deadline-ms'] ?? '10000'
  if (!/^\d{2,7}$/.test(deadlineText)) return usage(`--access-deadline-ms wants a number of milliseconds (10 to 9999999), got "${deadlineText}"`)
  const accessDeadlineMs = Number(deadlineText)
  if (values['dev-root'] === '') return usage('--dev-root wants a directory')
  if (values['journal-dir'] === '') return usage('--journal-dir wants a directory')
  const devRoot = values['dev-root'] ?? '/'
  const journalDir = values['journal-dir'] ?? DEFAULT_JOURNAL_DIR
  const jpath = journalPath(journalDir, devRoot)
  const makePlatform = deps.makePlatform ?? ((root: string) => new DevcpuPlatform({ root }))
  const signals = deps.signals ?? processSignals
  const common = [...(values['dev-root'] !== undefined ? ['--dev-root', devRoot] : []), '--journal-dir', journalDir]

  if (values.recover) {
    const platform = deps.platform ?? makePlatform(devRoot)
    const bootId = platform.readText('/proc/sys/kernel/random/boot_id')?.trim()
    const r = recoverFromJournal(jpath, platform, { devRoot, ...(bootId ? { bootId } : {}) })
    ;(platform as { close?: () => void }).close?.()
    if (r.kind === 'none') { deps.out(`guest selftest --recover: no journal at ${jpath}: nothing to restore\n`); return EXIT.OK }
    if (r.kind === 'stale') { deps.out(`guest selftest --recover: ${r.why}\n`); return EXIT.OK }
    if (r.kind === 'invalid') { deps.err(`guest selftest --recover: journal kept, not used: ${safeText(r.why)}\n`); return EXIT.USAGE }
    const failed = [...r.result.failed.map(f => `cpu ${f.cpu} MSR ${hex(f.index)} = ${hex(f.value)}: ${f.fault.errno}: ${f.fault.message}`), ...r.refused]
    deps.out(`guest selftest --recover: restored ${r.result.restored.length} value(s)${failed.length ? `; NOT restored: ${safeText(failed.join('; '))} (journal kept)` : ''}\n`)
    return failed.length ? EXIT.CANNOT_TELL : EXIT.OK
  }

  const self = deps.self ?? selfCommand()
  if (!values.runner && deps.platform === undefined && self !== undefined) {
    // The supervisor: never touches a device itself (guest/selftest/supervisor.ts).
    if (fs.existsSync(jpath)) {
      const rec = recoverChild({ self, recoverArgs: common, recoverTimeoutMs: Math.max(30_000, accessDeadlineMs * 8) })
      if (rec.code !== 0) { deps.err(`guest selftest: an earlier run left values changed and they could not be restored: ${safeText(rec.said)}\n`); return EXIT.CANNOT_TELL }
      deps.err(`guest selftest: restored what an earlier, interrupted run changed (${safeText(rec.said)})\n`)
    }
    const passOn = argv.filter(a => a !== '--runner')
    return supervise({
      self, runnerArgs: passOn, recoverArgs: common, journalPath: jpath, accessDeadlineMs,
      recoverTimeoutMs: Math.max(30_000, accessDeadlineMs * 8), tapVersion: tv, out: deps.out, err: deps.err, signals,
    })
  }

  // In this process: the runner child, or an injected platform (tests, simulated/KVM tiers).
  const inner = deps.platform ?? makePlatform(devRoot)
  const platform = values.runner ? new WatchedPlatform(inner) : inner
  const online = platform.cpus()
  let cpus: number[] | undefined
  if (values.cpu !== undefined && values.cpu !== 'all') {
    if (!/^\d{1,5}$/.test(values.cpu) || !online.includes(Number(values.cpu))) {
      return usage(`--cpu wants an online CPU number or "all", got "${values.cpu}" (online: ${online.join(',') || 'none'})`)
    }
    cpus = [Number(values.cpu)]
  }
  if (online.length === 0) return usage('no online CPUs found (is /sys mounted, or --dev-root right?)')
  const useJournal = values.runner === true || values['journal-dir'] !== undefined
  const bootId = inner.readText('/proc/sys/kernel/random/boot_id')?.trim()
  let printed = false
  // In the runner the supervisor prints "Bail out!"; in this process we do.
  const bail = (reason: string) => { if (values.runner || printed) return; printed = true; deps.out(`TAP version ${tv}\nBail out! ${safeText(reason)}\n`) }
  try {
    const r = await runSelftest(platform, {
      ...(cpus ? { cpus } : {}), signals, err: deps.err, bail, ...(deps.between ? { between: deps.between } : {}),
      ...(values['allow-spec-ctrl-writes'] ? { specCtrlWrites: true } : {}),
      ...(useJournal ? { journal: new FileJournal(jpath, { devRoot, ...(bootId ? { bootId } : {}) }) } : {}),
    })
    deps.out(tapDocument(r.points, Number(tv) as TapVersion))
    return r.exitCode
  } catch (e) {
    // The runner has restored everything in its finally before this point.
    if (!printed) deps.out(`TAP version ${tv}\nBail out! ${safeText((e as Error).message)}\n`)
    deps.err(`guest selftest: ${safeText(String((e as Error).stack ?? e))}\n`)
    return EXIT.CANNOT_TELL
  } finally {
    ;(inner as { close?: () => void }).close?.()
  }
}
