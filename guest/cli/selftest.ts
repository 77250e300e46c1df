// `virtmiti guest selftest` (issue 4): in-guest conformance tests of the VMM's virtual MSRs as
// TAP 14 (or 13). Exit codes (DESIGN.md, kselftest): 0 pass; 1 a rule broken; 2 usage; 3 could
// not tell; 4 skipped (the virtual MSRs are not enumerated).
import type { Platform } from '../platform.js'
import { DevcpuPlatform } from '../devcpu.js'
import { runSelftest } from '../selftest/run.js'
import type { SignalHost } from '../selftest/test-writes.js'
import { EXIT, parse } from '../../bin/lib/cli.js'
import { tapDocument, type TapVersion } from '../../bin/lib/tap.js'

export interface SelftestDeps {
  platform: Platform
  out: (s: string) => void
  err: (s: string) => void
  /** Where SIGINT/SIGTERM handlers go (default: process). */
  signals?: SignalHost
  between?: (testName: string) => Promise<void>
}

export const SELFTEST_USAGE = `usage: virtmiti guest selftest [--cpu N|all] [--tap] [--tap-version 13|14]

In-guest conformance tests of the VMM's virtual mitigation MSRs (contract/CONTRACT.md section 3), one
named TAP test per rule: gating by ARCH_CAPABILITIES bit 63 and VIRTUAL_ENUMERATION bit 0;
the ENUM MSRs are read-only; every non-enumerated CTRL bit faults (64 bits tried); enumerated
values read back; CTRL is per vCPU; the SPEC_CTRL shadow. Every value changed is restored,
also when a test fails or the run is interrupted (SIGINT/SIGTERM). The output is always TAP;
--tap is accepted for symmetry with the other commands (DESIGN.md: --tap means TAP 14).

exit: 0 pass; 1 the VMM broke a rule (the failing test names it); 2 usage error;
3 could not tell (msr driver missing, not permitted); 4 skipped (not enumerated).
`

const OPTIONS = {
  cpu: { type: 'string' },
  'tap-version': { type: 'string' },
  tap: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

const processSignals: SignalHost = {
  on: (s, f) => process.on(s, f),
  off: (s, f) => process.off(s, f),
  exit: c => process.exit(c),
}

export async function main(argv: string[], deps: SelftestDeps = { platform: new DevcpuPlatform(), out: s => { process.stdout.write(s) }, err: s => { process.stderr.write(s) } }): Promise<number> {
  let values
  try {
    values = parse('guest selftest', argv, OPTIONS).values
  } catch (e) {
    deps.err(`${(e as Error).message}\n${SELFTEST_USAGE}`)
    return EXIT.USAGE
  }
  if (values.help) { deps.out(SELFTEST_USAGE); return EXIT.OK }
  const tv = values['tap-version'] ?? '14'
  if (tv !== '13' && tv !== '14') { deps.err(`guest selftest: --tap-version wants 13 or 14, got "${tv}"\n`); return EXIT.USAGE }
  const online = deps.platform.cpus()
  let cpus: number[] | undefined
  if (values.cpu !== undefined && values.cpu !== 'all') {
    if (!/^\d{1,5}$/.test(values.cpu) || !online.includes(Number(values.cpu))) {
      deps.err(`guest selftest: --cpu wants an online CPU number or "all", got "${values.cpu}" (online: ${online.join(',')})\n`)
      return EXIT.USAGE
    }
    cpus = [Number(values.cpu)]
  }
  try {
    const r = await runSelftest(deps.platform, {
      ...(cpus ? { cpus } : {}), signals: deps.signals ?? processSignals, err: deps.err, ...(deps.between ? { between: deps.between } : {}),
    })
    deps.out(tapDocument(r.points, Number(tv) as TapVersion))
    return r.exitCode
  } catch (e) {
    // The runner has restored everything in its finally before this point.
    deps.out(`TAP version ${tv}\nBail out! ${(e as Error).message.replace(/\n/g, ' ')}\n`)
    deps.err(`guest selftest: ${(e as Error).stack ?? e}\n`)
    return EXIT.CANNOT_TELL
  }
}
