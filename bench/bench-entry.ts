// Bench entry (issue 4 "make bench"): `guest report` on a simulated 256-vCPU guest (reference VMM
// profile), run as its own bundled process so its wall time compares with `node -e 0`.
//   node guest/bundle/build.mjs --entry bench/bench-entry.ts --outfile dist/bench-report.mjs
//   node dist/bench-report.mjs [vcpus]      (prints nothing; exit code of the report)
import { main } from '../guest/cli/report.js'
import { REFERENCE_PROFILE, simGuestWith } from '../testing/sim-core.js'
import { probe } from '../guest/probe.js'
import { decide } from '../contract/decide.js'

const vcpus = Number(process.argv[2] ?? 256)
const { platform } = simGuestWith(REFERENCE_PROFILE, { vcpus })
process.exitCode = await main(['--json'], { platform, probe: p => probe(p), decide, now: () => new Date(), out: () => {}, err: s => { process.stderr.write(s) } })
