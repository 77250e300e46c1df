// `virtmiti guest report` (issue 4): probe, decide, write MITI_CTRL on every CPU through the
// write gate, and report. Exit codes per DESIGN.md: 0 all good (also: nothing enumerated);
// 1 a violation or partial failure; 2 usage; 3 could not tell.
import type { ChalkInstance } from 'chalk'
import type { Platform } from '../platform.js'
import type { Facts } from '../../contract/facts.js'
import type { Decision } from '../../contract/decision-types.js'
import type { ReportCpu } from '../../contract/report-json.js'
import { runReport, type ReportRun } from '../apply/report.js'
import { checkOut, writeOut, type OutFs, type OutOptions } from '../apply/out-file.js'
import { VERSION } from '../../bin/lib/version.js'
import { DevcpuPlatform } from '../devcpu.js'
import { probe } from '../probe.js'
import { decide } from '../../contract/decide.js'
import { EXIT, InputError, UsageError, parse, stdio } from '../../bin/lib/cli.js'
import { safeText } from '../../bin/lib/escape.js'
import { makeColor } from '../../bin/lib/color.js'
import { outputWidth, wrapText } from '../../bin/lib/wrap.js'
import { tapDocument } from '../../bin/lib/tap.js'
import { parseU64 } from '../../contract/bits.js'
import type { GuestVerdict } from '../../contract/verdict.js'
import { verdict as judgeVerdict } from '../verdict.js'
import { explainLines, findingLines, headline, nrpeLine, nrpeUnknown, prometheusText, shortLine, verdictJson } from '../render-verdict.js'
import { FORMAT_OPTIONS, TEXTFILE_NAME, pickFormat, wantsNrpe } from './format.js'
import { join } from 'node:path'

export interface ReportDeps {
  platform: Platform
  probe: (platform: Platform) => Facts
  decide: (facts: Facts) => Decision
  now: () => Date
  out: (s: string) => void
  err: (s: string) => void
  /** node:fs subset for --out (tests inject failures). */
  fs?: OutFs
  /** Temporary-name randomness for --out (tests). */
  random?: () => string
  /** Kernel name of a character device for --out (tests); default from /sys/dev/char. */
  deviceName?: OutOptions['deviceName']
  /** Colour for human output; default from the terminal, NO_COLOR, FORCE_COLOR, --no-color. */
  color?: ChalkInstance
  /** Width to wrap human output to (default: the TTY's, none when not a TTY). */
  width?: number
}

export const REPORT_USAGE = `usage: virtmiti guest report [--dry-run] [--format FMT] [--out FILE] [--cpu N|all] [--dev-root DIR] [--no-color]

Reads CPUID and ARCH_CAPABILITIES on every online CPU, works out which BHI / retpoline
mitigation the kernel uses, and writes MSR_VIRTUAL_MITIGATION_CTRL (0x50000002) on every CPU
that enumerates it (only enumerated bits change), reading each write back.

  --dry-run     print what would be written; write nothing
  --format FMT  human (default: the verdict first, then each CPU), json (the report, schema
                virtmiti/guest-report/v1, with the verdict), tap, prometheus, nrpe, short
  --json, --tap the same as --format json, --format tap
  --explain     human output: per finding, what to do, with sources
  --textfile-dir DIR  also write DIR/${TEXTFILE_NAME.report} (Prometheus, atomically)
  --out FILE    also write the JSON report to FILE, a regular file written atomically (a
                random O_EXCL temporary beside it, then rename), or a console device written
                directly, one line of JSON: ttyS, hvc, vport (virtio-serial, also through
                /dev/virtio-ports/NAME) or /dev/null; anything else (a FIFO, another device,
                a symlink to a non-console) is refused before any MSR is written (exit 2)
  --cpu N|all   act on one online CPU only (default: all)
  --dev-root DIR  use DIR/dev/cpu/N/{cpuid,msr}, DIR/sys, DIR/proc instead of / (tests, benches)
  --no-color    plain text output

exit (about its own job, not the verdict: a boot unit must not fail because the VMM simply
lacks the MSRs): 0 done (or nothing to report: the virtual MSRs are not enumerated); 1 a CPU
failed (fault, read-back differs, went offline) or the VMM broke the contract; 2 usage error;
3 could not tell (msr driver missing, not permitted, ...). The verdict (protected, at risk,
vulnerable, unknown) is in the output; \`guest probe\` exits by it. --format nrpe exits by the
verdict as Nagios plugins do: 0 OK, 1 WARNING (at risk), 2 CRITICAL (vulnerable), 3 UNKNOWN.
`

const OPTIONS = {
  ...FORMAT_OPTIONS,
  'dry-run': { type: 'boolean' },
  out: { type: 'string' },
  cpu: { type: 'string' },
  'dev-root': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

function parseCpu(s: string | undefined, online: number[]): number[] | undefined {
  if (s === undefined || s === 'all') return undefined
  if (!/^\d{1,5}$/.test(s)) throw new UsageError(`guest report: --cpu wants a CPU number or "all", got "${s}"`)
  const n = Number(s)
  if (!online.includes(n)) throw new UsageError(`guest report: cpu ${n} is not online (online: ${online.join(',') || 'none'})`)
  return [n]
}

function cpuLine(c: ReportCpu, color: ChalkInstance): string {
  const o = c.outcome
  const paint = o === 'written' || o === 'unchanged' ? color.green : o === 'dry-run' || o === 'not-enumerated' ? color.yellow : color.red
  const values = c.before !== undefined ? `${c.before} -> ${c.wanted}` : ''
  const extra = c.readBack !== undefined && o !== 'unchanged' ? ` (read back ${c.readBack})` : ''
  const f = c.fault ? ` ${safeText(`${c.fault.step}: ${c.fault.errno}: ${c.fault.message}`)}` : ''
  return `  cpu ${String(c.cpu).padStart(3)}: ${values.padEnd(14)} ${paint(o)}${extra}${f}`
}

/** The verdict after this run: CTRL as read back, this run's per-CPU outcomes as the record. */
export function reportVerdict(facts: Facts, decision: Decision, run: ReportRun): GuestVerdict {
  const ctrlNow = new Map<number, bigint | undefined>()
  for (const c of run.report.cpus) {
    const v = c.outcome === 'dry-run' ? c.before : c.readBack
    ctrlNow.set(c.cpu, v === undefined ? undefined : parseU64(v))
  }
  // Only the CPUs this run acted on (--cpu N): facts of the others are left out of the verdict.
  const acted = new Set(run.report.cpus.map(c => c.cpu))
  const f = acted.size === facts.cpus.length ? facts : { ...facts, cpus: facts.cpus.filter(c => acted.has(c.cpu)) }
  return judgeVerdict(f, decision, { ctrlNow, record: { origin: run.report.dryRun ? 'this run (dry run)' : 'this run', cpus: run.report.cpus } }).judged
}

export function renderHuman(run: ReportRun, color: ChalkInstance, v?: GuestVerdict, o: { explain?: boolean } = {}): string {
  const r = run.report
  const out = v ? [...headline(v, color), ''] : []
  out.push(`virtmiti guest report${r.dryRun ? ' (dry run)' : ''}: ${r.platform}, ${r.cpus.length} CPU(s), kernel ${r.kernelRelease ?? 'unknown'}`)
  out.push(`kernel: spectre_v2 ${r.decision.kernelSpectreV2}, BHI ${r.decision.kernelBhi}; report BHB_CLEAR_SEQ_S_USED=${r.decision.bhbClearSeqSUsed}, RETPOLINE_S_USED=${r.decision.retpolineSUsed}`)
  out.push('MITI_CTRL per CPU (before -> wanted, outcome):')
  for (const c of r.cpus) out.push(cpuLine(c, color))
  if (r.decision.reasons.length > 0) {
    out.push('reasons:')
    for (const x of r.decision.reasons) out.push(`  - ${safeText(`${x.text} [${x.rule}; ${x.source}]`)}`)
  }
  // Run-level notes: who holds which value, and each cause once with the CPUs it hit.
  if (run.notes.length > 0) { out.push('summary:'); for (const n of run.notes) out.push(`  ${safeText(n)}`) }
  const verdict = run.exitCode === 0 ? color.green(r.enumerated ? 'ok' : 'ok: nothing to report')
    : run.exitCode === 1 ? color.red('FAILED: not every CPU holds the wanted value, or the VMM broke the contract (see the summary)')
      : color.yellow('could not tell (see the summary)')
  if (v && v.findings.length > 0) out.push(...findingLines(v, color))
  if (v && o.explain) out.push('', ...explainLines(v, color))
  out.push(`result: ${verdict} (exit ${run.exitCode})`)
  return out.join('\n') + '\n'
}

/** The real guest: /dev/cpu through the msr and cpuid drivers (under --dev-root DIR if given), the lead's probe and decision. */
export function defaultReportDeps(devRoot?: string): ReportDeps {
  return {
    platform: new DevcpuPlatform(devRoot !== undefined ? { root: devRoot } : {}), probe: p => probe(p), decide, now: () => new Date(),
    out: stdio.out, err: stdio.err,
  }
}

export async function main(argv: string[], given: Partial<ReportDeps> = {}): Promise<number> {
  const err = given.err ?? stdio.err
  const out = given.out ?? stdio.out
  // NRPE: a run that cannot start is UNKNOWN (3), not a usage error (2).
  const usage = (msg: string): number => { err(msg); if (wantsNrpe(argv)) { out(nrpeUnknown(msg.split('\n')[0]!)); return 3 } return EXIT.USAGE }
  let args
  let format
  try {
    args = parse('guest report', argv, OPTIONS)
    format = pickFormat('guest report', args.values)
  } catch (e) {
    return usage(`${(e as Error).message}\n${REPORT_USAGE}`)
  }
  const v = args.values
  const deps: ReportDeps = { ...defaultReportDeps(v['dev-root']), ...given }
  if (v.help) { deps.out(REPORT_USAGE); return EXIT.OK }
  if (v.out === '') return usage(`guest report: --out wants a file name\n`)
  if (v['textfile-dir'] === '') return usage(`guest report: --textfile-dir wants a directory\n`)
  const outOpts: OutOptions = { ...(deps.fs ? { fs: deps.fs } : {}), ...(deps.random ? { random: deps.random } : {}), ...(deps.deviceName ? { deviceName: deps.deviceName } : {}) }
  if (v.out !== undefined) {
    // Before any MSR is written (issue 14 items 6, 11): a report that cannot be delivered is a usage error.
    const target = checkOut(v.out, outOpts)
    if (target.kind === 'refused') return usage(`guest report: --out ${safeText(v.out)}: ${safeText(target.why)}\n`)
  }
  let run: ReportRun
  let judged: GuestVerdict
  try {
    const online = deps.platform.cpus()
    if (online.length === 0) { deps.err('guest report: no online CPUs found (is /sys mounted, or --dev-root right?)\n'); return EXIT.USAGE }
    const cpus = parseCpu(v.cpu, online)
    const facts = deps.probe(deps.platform)
    const decision = deps.decide(facts)
    run = runReport(deps.platform, facts, decision, { dryRun: v['dry-run'] ?? false, ...(cpus ? { cpus } : {}), now: deps.now(), agentVersion: VERSION })
    judged = reportVerdict(facts, decision, run)
    // The devices are done with (issue 15 item 4: the reader was never closed); an injected
    // platform belongs to its caller.
    if (!given.platform) deps.platform.close?.()
  } catch (e) {
    if (!given.platform) deps.platform.close?.()
    if (e instanceof UsageError || e instanceof InputError) return usage(`${safeText(e.message)}\n`)
    deps.err(`guest report: could not run: ${safeText((e as Error).message)}\n`)
    if (format === 'nrpe') deps.out(nrpeUnknown(`guest report could not run: ${(e as Error).message}`))
    return EXIT.CANNOT_TELL
  }
  run.report.verdict = { ...verdictJson(judged), findings: [...new Set(judged.findings.map(f => f.id))].slice(0, 64) }
  // Not validated against the zod schema here: loading zod would more than double the start-up
  // time (the report's own type is z.infer of the schema, and every test parses the output).
  let exit: number = run.exitCode
  if (v.out !== undefined) {
    try {
      const pretty = JSON.stringify(run.report, null, 2) + '\n'
      // A serial line or virtio port gets one line per report: the host reads line-framed JSON.
      writeOut(v.out, pretty, { ...outOpts, deviceText: JSON.stringify(run.report) + '\n' })
    } catch (e) {
      deps.err(`guest report: ${safeText((e as Error).message)}\n`)
      // The MSRs were handled, but the host cannot be told: could not tell (unless already failing).
      if (exit === EXIT.OK) exit = EXIT.CANNOT_TELL
    }
  }
  const metrics = () => prometheusText(judged, { command: 'report', version: VERSION, exitCode: exit, timestampMs: deps.now().getTime() })
  if (v['textfile-dir'] !== undefined) {
    try { writeOut(join(v['textfile-dir'], TEXTFILE_NAME.report), metrics(), outOpts) } catch (e) {
      deps.err(`guest report: --textfile-dir: ${safeText((e as Error).message)}\n`)
      if (exit === EXIT.OK) exit = EXIT.CANNOT_TELL
    }
  }
  // The printed "(exit N)" is the process's exit code (issue 14 item 11).
  run = { ...run, exitCode: exit as ReportRun['exitCode'] }
  switch (format) {
    case 'json': deps.out(JSON.stringify(run.report, null, 2) + '\n'); break
    case 'tap': deps.out(tapDocument([
      ...judged.concerns.map(x => ({ ok: x.verdict === 'protected', name: `${x.concern === 'bhi' ? 'BHI' : 'retpoline/RRSBA'} protected`, ...(x.verdict === 'unknown' ? { skip: `could not tell: ${x.findings.join(', ')}` } : {}), diag: { verdict: x.verdict, vmm: x.vmm, findings: x.findings } })),
      ...run.report.cpus.map(c => ({ ok: c.outcome === 'written' || c.outcome === 'unchanged' || c.outcome === 'not-enumerated' || c.outcome === 'dry-run', name: `cpu ${c.cpu}: ${c.outcome}`, ...(c.fault ? { diag: { fault: c.fault } } : {}) })),
    ])); break
    case 'prometheus': deps.out(metrics()); break
    case 'short': deps.out(shortLine(judged)); break
    case 'nrpe': { const n = nrpeLine(judged); deps.out(n.text); return n.exit }
    case 'human': deps.out(wrapText(renderHuman(run, deps.color ?? makeColor({ noColor: v['no-color'] ?? false }), judged, { explain: v.explain === true }), deps.width ?? outputWidth()))
  }
  return exit
}
