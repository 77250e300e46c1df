// `virtmiti guest probe`: read-only report of what this guest shows about BHI and retpoline,
// whether it is protected and whether the VMM does its part (issues 2 and 12).
import { decide } from '../../contract/decide.js'
import { PROBE_SCHEMA_ID, decisionToJson, type ProbeJson } from '../../contract/probe-json.js'
import { factsToJson } from '../../contract/facts-json.js'
import { EXIT, UsageError, parse, stdio, type Io } from '../../bin/lib/cli.js'
import { makeColor } from '../../bin/lib/color.js'
import { tapDocument } from '../../bin/lib/tap.js'
import { VERSION } from '../../bin/lib/version.js'
import { outputWidth } from '../../bin/lib/wrap.js'
import { DevcpuPlatform } from '../devcpu.js'
import type { Platform } from '../platform.js'
import { probe } from '../probe.js'
import { RecordedPlatform } from '../recorded.js'
import { renderHuman, probeTap } from '../render-probe.js'
import { nrpeLine, nrpeUnknown, prometheusText, shortLine, verdictJson } from '../render-verdict.js'
import { verdict } from '../verdict.js'
import { writeFileAtomic } from '../atomic.js'
import { lastReport } from '../last-report.js'
import { writeOut } from '../apply/out-file.js'
import { join } from 'node:path'
import { FORMAT_OPTIONS, TEXTFILE_NAME, pickFormat, wantsNrpe } from './format.js'

export const PROBE_HELP = `Usage: virtmiti guest probe [options]

Read-only: is this guest protected against BHI and Spectre v2 (retpoline/RRSBA), and is the VMM
doing its part? Reads CPUID and IA32_ARCH_CAPABILITIES on every CPU (and the virtual MSRs
0x50000000-0x50000002 only when ARCH_CAPABILITIES bit 63 enumerates them), the kernel's
spectre_v2 sysfs line and command line, and the agent's last report on this boot
(/run/virtmiti/report.json). Never writes an MSR.

Per concern the verdict is: protected (a mitigation that holds on any host, or a software
sequence the VMM was told about and can back); at risk (a software sequence only the VMM can
back, while the VMM cannot be told); vulnerable (the kernel says so, or mitigations are off);
unknown (with the reason). Bare metal is judged by its own hardware. Rules: contract/CONTRACT.md
section 8; finding ids: contract/findings.ts.

Options:
  --format FMT       human (default), json (schema virtmiti/probe/v1), tap (TAP 14),
                     prometheus (text exposition), nrpe (a Nagios plugin line), short (one line)
  --json, --tap      the same as --format json, --format tap
  --explain          human output: per finding, what to do (kernel command line, what to ask
                     the VMM for, which CPU generations the SW loop fails on), with sources
  --textfile-dir DIR also write DIR/${TEXTFILE_NAME.probe} (Prometheus format, atomically) for
                     node_exporter's textfile collector
  --cpu N|all        CPUs to probe (default all online CPUs)
  --record FILE      also write the gathered facts to FILE (atomically), for --replay
  --replay FILE      answer from a recorded facts file instead of this machine
  --dev-root DIR     read DIR/dev/cpu/N/{cpuid,msr}, DIR/sys, DIR/proc, DIR/run instead of /
  --no-color         no colour (see README "Colour" for NO_COLOR, FORCE_COLOR, TERM=dumb)
  -h, --help         this help

Exit: 0 protected; 1 at risk or vulnerable; 2 usage or input error; 3 unknown (e.g. msr driver
missing: the reason is printed). A prediction of the kernel's choice that differs from what it
chose is a finding (kernel.prediction-mismatch) and does not change the exit code.
--format nrpe remaps, as Nagios plugins do: 0 OK (protected), 1 WARNING (at risk),
2 CRITICAL (vulnerable), 3 UNKNOWN (unknown, usage error).
`

export interface ProbeDeps { io?: Io; platform?: Platform; now?: () => number; width?: number }

export async function main(argv: string[], deps: ProbeDeps = {}): Promise<number> {
  const io = deps.io ?? stdio
  if (!wantsNrpe(argv)) return run(argv, deps, io)
  try { return await run(argv, deps, io) } catch (e) {
    // NRPE: a run that cannot start is UNKNOWN (3), with the reason on the plugin line.
    io.out(nrpeUnknown((e as Error).message))
    return 3
  }
}

async function run(argv: string[], deps: ProbeDeps, io: Io): Promise<number> {
  const { values: o } = parse('guest probe', argv, {
    ...FORMAT_OPTIONS, cpu: { type: 'string' },
    record: { type: 'string' }, replay: { type: 'string' }, 'dev-root': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  })
  if (o.help) { io.out(PROBE_HELP); return EXIT.OK }
  const format = pickFormat('guest probe', o)
  if (o['textfile-dir'] === '') throw new UsageError('guest probe: --textfile-dir wants a directory')
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
  // A replay describes another machine: this machine's last report says nothing about it.
  const record = o.replay ? undefined : lastReport(platform)
  ;(platform as { close?: () => void }).close?.()
  if (o.record) {
    // A bad --record path is the caller's input error (exit 2), never a stack trace (issue 14 item 10).
    try { writeFileAtomic(o.record, JSON.stringify(factsToJson(facts, `recorded by virtmiti ${VERSION} on ${facts.kernel.release ?? 'unknown kernel'}`), null, 2) + '\n') } catch (e) {
      throw new UsageError(`guest probe: --record ${o.record}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  const d = decide(facts)
  const v = verdict(facts, d, record ? { record } : {})
  const now = (deps.now ?? Date.now)()
  const metrics = () => prometheusText(v.judged, { command: 'probe', version: VERSION, exitCode: v.exitCode, timestampMs: now })
  if (o['textfile-dir'] !== undefined) {
    try { writeOut(join(o['textfile-dir'], TEXTFILE_NAME.probe), metrics()) } catch (e) {
      io.err(`guest probe: --textfile-dir: ${(e as Error).message}\n`)
      if (format === 'nrpe') { io.out(nrpeUnknown(`cannot write the textfile: ${(e as Error).message}`)); return 3 }
      return EXIT.CANNOT_TELL
    }
  }
  switch (format) {
    case 'json': {
      const doc: ProbeJson = {
        schema: PROBE_SCHEMA_ID, agent: { name: 'virtmiti', version: VERSION },
        status: v.status, exitCode: v.exitCode, verdict: verdictJson(v.judged), findings: v.findings, facts: factsToJson(facts), decision: decisionToJson(d),
      }
      io.out(JSON.stringify(doc, null, 2) + '\n')
      break
    }
    case 'tap': io.out(tapDocument(probeTap(facts, d, v.judged))); break
    case 'prometheus': io.out(metrics()); break
    case 'short': io.out(shortLine(v.judged)); break
    case 'nrpe': { const n = nrpeLine(v.judged); io.out(n.text); return n.exit }
    case 'human':
      io.out(renderHuman(facts, d, v.judged, v.exitCode, makeColor({ noColor: o['no-color'] === true }), { explain: o.explain === true, width: deps.width ?? outputWidth() }))
  }
  return v.exitCode
}
