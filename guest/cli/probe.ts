// `virtmiti guest probe`: read-only report of what this guest shows about BHI and retpoline,
// and what the agent would write to MSR_VIRTUAL_MITIGATION_CTRL (issue 2).
import { decide } from '../../contract/decide.js'
import { PROBE_SCHEMA_ID, decisionToJson, type ProbeJson } from '../../contract/probe-json.js'
import { factsToJson } from '../../contract/facts-json.js'
import { EXIT, UsageError, parse, stdio, type Io } from '../../bin/lib/cli.js'
import { makeColor } from '../../bin/lib/color.js'
import { tapDocument } from '../../bin/lib/tap.js'
import { VERSION } from '../../bin/lib/version.js'
import { DevcpuPlatform } from '../devcpu.js'
import type { Platform } from '../platform.js'
import { probe } from '../probe.js'
import { RecordedPlatform } from '../recorded.js'
import { renderHuman, probeTap } from '../render-probe.js'
import { verdict } from '../verdict.js'
import { writeFileAtomic } from '../atomic.js'

export const PROBE_HELP = `Usage: virtmiti guest probe [options]

Read-only: reads CPUID and IA32_ARCH_CAPABILITIES on every CPU (and the virtual MSRs
0x50000000-0x50000002 only when ARCH_CAPABILITIES bit 63 enumerates them), parses the
kernel's spectre_v2 sysfs line and command line, and says which BHI and retpoline mitigation
the kernel uses, which one it should use, and what the agent would write to
MSR_VIRTUAL_MITIGATION_CTRL. Never writes an MSR.

Options:
  --cpu N|all        CPUs to probe (default all online CPUs)
  --json             versioned JSON document (schema virtmiti/probe/v1, see contract/schemas/)
  --tap              TAP 14 stream, one test per check
  --record FILE      also write the gathered facts to FILE (atomically), for --replay
  --replay FILE      answer from a recorded facts file instead of this machine
  --dev-root DIR     read DIR/dev/cpu/N/{cpuid,msr}, DIR/sys, DIR/proc instead of /
  --no-color         no colour (also NO_COLOR=1)
  -h, --help         this help

Exit: 0 nothing wrong; 1 the kernel's choice differs from the expected one, or CPUs disagree;
2 usage or input error; 3 could not tell (e.g. msr driver missing: the reason is printed).
`

export interface ProbeDeps { io?: Io; platform?: Platform }

export async function main(argv: string[], deps: ProbeDeps = {}): Promise<number> {
  const io = deps.io ?? stdio
  const { values: o } = parse('guest probe', argv, {
    cpu: { type: 'string' }, json: { type: 'boolean' }, tap: { type: 'boolean' },
    record: { type: 'string' }, replay: { type: 'string' }, 'dev-root': { type: 'string' },
    'no-color': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  })
  if (o.help) { io.out(PROBE_HELP); return EXIT.OK }
  if (o.json && o.tap) throw new UsageError('guest probe: --json and --tap are exclusive')
  if (o.replay && o['dev-root']) throw new UsageError('guest probe: --replay and --dev-root are exclusive')
  const platform: Platform = deps.platform
    ?? (o.replay ? new RecordedPlatform((await import('../facts-file.js')).readFactsFile(o.replay)) : new DevcpuPlatform({ root: o['dev-root'] ?? '/' }))
  const online = platform.cpus()
  let cpus = online
  if (o.cpu !== undefined && o.cpu !== 'all') {
    const n = /^\d+$/.test(o.cpu) ? Number(o.cpu) : NaN
    if (!online.includes(n)) throw new UsageError(`guest probe: --cpu ${o.cpu}: expected "all" or one of the online CPUs (${online.join(',') || 'none'})`)
    cpus = [n]
  }
  if (cpus.length === 0) throw new UsageError('guest probe: no online CPUs found (is /sys mounted, or --dev-root right?)')
  const facts = probe(platform, cpus)
  if (o.replay) facts.platform = 'recorded'
  ;(platform as { close?: () => void }).close?.()
  if (o.record) {
    // A bad --record path is the caller's input error (exit 2), never a stack trace (issue 14 item 10).
    try { writeFileAtomic(o.record, JSON.stringify(factsToJson(facts, `recorded by virtmiti ${VERSION} on ${facts.kernel.release ?? 'unknown kernel'}`), null, 2) + '\n') } catch (e) {
      throw new UsageError(`guest probe: --record ${o.record}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  const d = decide(facts)
  const v = verdict(facts, d)
  if (o.json) {
    const doc: ProbeJson = {
      schema: PROBE_SCHEMA_ID, agent: { name: 'virtmiti', version: VERSION },
      status: v.status, exitCode: v.exitCode, findings: v.findings, facts: factsToJson(facts), decision: decisionToJson(d),
    }
    io.out(JSON.stringify(doc, null, 2) + '\n')
  } else if (o.tap) {
    io.out(tapDocument(probeTap(facts, d, v.findings)))
  } else {
    io.out(renderHuman(facts, d, v.findings, v.exitCode, makeColor({ noColor: o['no-color'] === true })))
  }
  return v.exitCode
}
