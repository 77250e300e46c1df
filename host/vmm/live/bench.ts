// Bench of the live KVM tier end to end; prints one JSON object.
// Per live scenario (2 vCPUs): wall time VM create -> verdict, median of 5; and the per-op cost of
// the guest report and the selftest (wall time / guest ops executed by the payload).
// Run: esbuild host/vmm/live/bench.ts --bundle --platform=node --format=esm --packages=external
//      --outfile=.cache/live-bench.mjs && node .cache/live-bench.mjs [runs, default 5]
// Without a usable /dev/kvm it prints {"skipped": reason} and exits 4 (the tier's skip code).
import { hostCapsFromCpu } from '../../../contract/host-caps.js'
import { loadCpuCatalog } from '../../runner/cpus.js'
import { builtinCpusDir } from '../../runner/catalog.js'
import { profileByName } from '../profiles.js'
import { liveTierUnavailable } from '../kvm/machine.js'
import { runLive, type LiveOptions } from './run-live.js'

const RETPOLINE_SW_LOOP = 'Mitigation: Retpolines; IBPB: conditional; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: SW loop, KVM: SW loop'
const EIBRS_SW_LOOP = 'Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; RSB filling; PBRSB-eIBRS: SW sequence; BHI: SW loop, KVM: SW loop'
const EIBRS_BHI_DIS_S = 'Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; RSB filling; PBRSB-eIBRS: SW sequence; BHI: BHI_DIS_S'
const IBRS_SW_LOOP = 'Mitigation: IBRS; IBPB: conditional; STIBP: conditional; RSB filling; PBRSB-eIBRS: Not affected; BHI: SW loop, KVM: SW loop'

/** [presented model, profile, spectre_v2 line, ARCH_CAPABILITIES override]; host: sapphire-rapids. */
const SCENARIOS: [string, string, string, bigint | undefined][] = [
  ['cascade-lake', 'reference', RETPOLINE_SW_LOOP, undefined],
  ['ice-lake-sp', 'reference', EIBRS_SW_LOOP, undefined],
  ['sapphire-rapids', 'reference', EIBRS_BHI_DIS_S, undefined],
  ['skylake-sp', 'reference', IBRS_SW_LOOP, 0n],
  ['cascade-lake', 'forces-nothing', RETPOLINE_SW_LOOP, undefined],
  ['cascade-lake', 'leaks-forced-into-shadow', RETPOLINE_SW_LOOP, undefined],
  ['ice-lake-sp', 'no-virtual-msrs', EIBRS_SW_LOOP, undefined],
]

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const r2 = (x: number) => Math.round(x * 100) / 100

async function main(): Promise<number> {
  const runs = Number(process.argv[2] ?? 5)
  const why = liveTierUnavailable()
  if (why) { console.log(JSON.stringify({ skipped: why })); return 4 }
  const dir = builtinCpusDir()
  if (!dir) { console.log(JSON.stringify({ error: 'scenarios/cpus not found' })); return 2 }
  const models = loadCpuCatalog(dir).models
  const hostCaps = hostCapsFromCpu(models.get('sapphire-rapids')!)
  const out: Record<string, unknown> = {}
  const proofMs: number[] = []
  for (const [cpu, profile, spectreV2, ac] of SCENARIOS) {
    const o: LiveOptions = {
      cpuModel: models.get(cpu)!, hostCaps, profile: profileByName(profile)!, vcpus: 2,
      kernel: { cmdline: 'console=ttyS0', spectreV2 }, ...(ac !== undefined ? { archCapabilities: ac } : {}),
    }
    await runLive(o) // warm-up (JIT, first mmap)
    const total: number[] = [], create: number[] = [], reportUs: number[] = [], selftestUs: number[] = [], opUs: number[] = []
    let verdict = ''
    let ops = { report: 0, selftest: 0 }
    for (let i = 0; i < runs; i++) {
      const r = await runLive(o)
      if (!r.timings || !r.ops) { verdict = `skipped: ${r.skipReason}`; break }
      verdict = r.ok ? 'pass' : 'fail'
      ops = r.ops
      total.push(r.timings.totalMs); create.push(r.timings.createMs); proofMs.push(r.timings.proofMs)
      reportUs.push(1000 * r.timings.reportMs / r.ops.report)
      selftestUs.push(1000 * r.timings.selftestMs / r.ops.selftest)
      opUs.push(1000 * (r.timings.reportMs + r.timings.selftestMs) / (r.ops.report + r.ops.selftest))
    }
    out[`${cpu} ${profile}`] = total.length === 0 ? { verdict } : {
      verdict,
      createToVerdictMs: r2(median(total)), min: r2(Math.min(...total)), max: r2(Math.max(...total)),
      vmCreateMs: r2(median(create)),
      guestOps: ops,
      usPerOp: { report: r2(median(reportUs)), selftest: r2(median(selftestUs)), reportPlusSelftest: r2(median(opUs)) },
    }
  }
  console.log(JSON.stringify({
    node: process.version, runs, vcpus: 2, host: 'sapphire-rapids (caps model)',
    note: 'createToVerdictMs: VM create (CPUID proof + filter-exit measurement + the run VM) -> final verdict (probe, report, kernel SPEC_CTRL step, host check, selftest, host check, vCPU reset), the same path as scenarios run --tier kvm; median of runs',
    scenarios: out,
    cpuidProofAndExitsMs: proofMs.length ? r2(median(proofMs)) : null,
  }, null, 2))
  return 0
}

process.exitCode = await main()
