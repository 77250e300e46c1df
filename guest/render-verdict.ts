// The verdict in every format monitoring reads (issue 12): the human headline and --explain,
// Prometheus text exposition, an NRPE (Nagios plugin) line, one short line, and the JSON part.
// Shared by `guest probe` and `guest report`. Pure: strings in, strings out.
import type { ChalkInstance } from 'chalk'
import { findingDef, remedyFor } from '../contract/findings.js'
import { cpusText, type Concern, type ConcernVerdict, type FindingHit, type GuestVerdict, type Verdict } from '../contract/verdict.js'

export const CONCERN_NAME: Record<Concern, string> = { bhi: 'BHI', retpoline: 'retpoline/RRSBA' }
const WORD: Record<Verdict, string> = { protected: 'protected', 'at-risk': 'at risk', vulnerable: 'vulnerable', unknown: 'unknown' }

const paint = (c: ChalkInstance, v: Verdict, s: string) =>
  v === 'protected' ? c.green(s) : v === 'at-risk' ? c.yellow(s) : v === 'vulnerable' ? c.red(s) : c.magenta(s)

const problems = (v: GuestVerdict) => v.findings.filter(f => f.effect !== 'note')

/** "is this guest protected, and is the VMM doing its part?", in the first lines. */
export function headline(v: GuestVerdict, c: ChalkInstance): string[] {
  const out: string[] = []
  const bad = v.concerns.filter(x => x.verdict !== 'protected')
  const names = (xs: ConcernVerdict[]) => xs.map(x => CONCERN_NAME[x.concern]).join(' and ')
  const first = problems(v).find(f => f.effect === v.verdict)
  let say: string
  if (v.verdict === 'protected') say = 'this guest is protected against BHI and Spectre v2 (retpoline/RRSBA).'
  else if (v.verdict === 'vulnerable') say = `this guest is vulnerable (${names(bad.filter(x => x.verdict === 'vulnerable'))}): ${first ? findingDef(first.id).title : 'see below'}.`
  else if (v.verdict === 'at-risk') {
    const told = bad.filter(x => x.vmm === 'cannot-be-told')
    say = told.length > 0
      ? `this guest relies on a software sequence for ${names(told)} that only the VMM can back, and the VMM cannot be told.`
      : `${names(bad.filter(x => x.verdict === 'at-risk'))}: ${first ? findingDef(first.id).title : 'see below'}.`
  } else say = `could not tell whether this guest is protected: ${first ? findingDef(first.id).title : 'see below'}.`
  out.push(c.bold(paint(c, v.verdict, v.verdict === 'at-risk' ? 'AT RISK' : v.verdict.toUpperCase())) + ': ' + say)
  out.push(vmmLine(v))
  for (const x of v.concerns) {
    const ids = x.findings.length ? ` [${x.findings.join(', ')}]` : ''
    out.push(`  ${CONCERN_NAME[x.concern].padEnd(16)} ${paint(c, x.verdict, WORD[x.verdict].padEnd(10))} ${x.mitigation}: ${x.basis}${ids}`)
  }
  if (problems(v).length > 0) out.push(c.dim('  (--explain: what each finding means and what to do, with sources)'))
  return out
}

function vmmLine(v: GuestVerdict): string {
  if (v.environment === 'bare-metal') return 'Bare metal: no VMM; judged by this CPU\'s own hardware.'
  const parts = v.concerns.map(x => x.vmm)
  const cannot = v.concerns.filter(x => x.vmm === 'cannot-be-told')
  if (cannot.length > 0) {
    const ids = [...new Set(cannot.flatMap(x => x.findings))].join(', ')
    return `The VMM is not doing its part for ${cannot.map(x => CONCERN_NAME[x.concern]).join(' and ')}: ${ids}.`
  }
  if (parts.includes('unknown')) return 'Whether the VMM does its part could not be told.'
  if (parts.includes('backing')) return `The VMM is doing its part: told on every CPU, and it advertises it can back ${v.concerns.filter(x => x.vmm === 'backing').map(x => CONCERN_NAME[x.concern]).join(' and ')}.`
  if (v.environment === 'unknown') return 'Whether this is a VM could not be told.'
  return 'Nothing is needed from the VMM: the mitigations in use hold on any host.'
}

const tagOf = (f: FindingHit) => (f.effect === 'note' ? 'note' : f.effect === 'at-risk' ? 'AT RISK' : f.effect.toUpperCase())

/** One line per finding: effect, id, concern, CPUs, detail. */
export function findingLines(v: GuestVerdict, c: ChalkInstance): string[] {
  return v.findings.map(f => {
    const tag = f.effect === 'note' ? c.cyan('note') : paint(c, f.effect, tagOf(f))
    const where = cpusText(f)
    return `${tag}  ${f.id}${f.concern ? ` (${CONCERN_NAME[f.concern]})` : ''}: ${findingDef(f.id).title}${where || f.detail ? ` -- ${where}${where && f.detail ? ': ' : ''}${f.detail}` : ''}`
  })
}

/** --explain: per finding, the remedy and the sources. */
export function explainLines(v: GuestVerdict, c: ChalkInstance): string[] {
  if (v.findings.length === 0) return ['Nothing to explain: no findings.']
  const out: string[] = [c.bold('Findings explained')]
  for (const f of v.findings) {
    const d = findingDef(f.id)
    out.push(`${f.id}${f.concern ? ` (${CONCERN_NAME[f.concern]})` : ''}: ${d.title}`)
    const where = cpusText(f)
    if (where || f.detail) out.push(`  seen:    ${where}${where && f.detail ? ': ' : ''}${f.detail}`)
    out.push(`  remedy:  ${remedyFor(d, f.concern)}`)
    out.push(`  sources: ${d.sources.join('; ')}`)
  }
  return out
}

// ---- Prometheus text exposition (prometheus.io/docs/instrumenting/exposition_formats) ------------

const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
export const VERDICT_CODE: Record<Verdict, number> = { protected: 0, 'at-risk': 1, vulnerable: 2, unknown: 3 }

export interface MetricsMeta { command: 'probe' | 'report'; version: string; exitCode: number; timestampMs: number }

/**
 * One series per concern, `virtmiti_guest_concern_state`, value 0 protected, 1 at risk, 2 vulnerable,
 * 3 unknown, with the verdict and the finding ids as labels; the whole guest likewise; the run's time.
 */
export function prometheusText(v: GuestVerdict, m: MetricsMeta): string {
  const L: string[] = []
  L.push('# HELP virtmiti_guest_concern_state Verdict per concern: 0 protected, 1 at risk, 2 vulnerable, 3 unknown (labels: verdict, finding ids).')
  L.push('# TYPE virtmiti_guest_concern_state gauge')
  for (const x of v.concerns) {
    L.push(`virtmiti_guest_concern_state{concern="${x.concern}",verdict="${x.verdict}",vmm="${x.vmm}",findings="${esc(x.findings.join(','))}"} ${VERDICT_CODE[x.verdict]}`)
  }
  L.push('# HELP virtmiti_guest_state Verdict for the whole guest: 0 protected, 1 at risk, 2 vulnerable, 3 unknown.')
  L.push('# TYPE virtmiti_guest_state gauge')
  L.push(`virtmiti_guest_state{verdict="${v.verdict}",environment="${v.environment}"} ${VERDICT_CODE[v.verdict]}`)
  L.push('# HELP virtmiti_guest_findings Findings by id (count of hits; effect as a label).')
  L.push('# TYPE virtmiti_guest_findings gauge')
  const by = new Map<string, { effect: string; n: number }>()
  for (const f of v.findings) { const e = by.get(f.id) ?? { effect: f.effect, n: 0 }; e.n++; by.set(f.id, e) }
  for (const [id, e] of by) L.push(`virtmiti_guest_findings{id="${esc(id)}",effect="${e.effect}"} ${e.n}`)
  L.push('# HELP virtmiti_last_run_timestamp_seconds When virtmiti last ran (Unix time).')
  L.push('# TYPE virtmiti_last_run_timestamp_seconds gauge')
  L.push(`virtmiti_last_run_timestamp_seconds{command="${m.command}"} ${(m.timestampMs / 1000).toFixed(3)}`)
  L.push('# HELP virtmiti_last_run_exit_code Exit code of the last run (probe: the verdict; report: its own job).')
  L.push('# TYPE virtmiti_last_run_exit_code gauge')
  L.push(`virtmiti_last_run_exit_code{command="${m.command}"} ${m.exitCode}`)
  L.push('# HELP virtmiti_build_info The agent version.')
  L.push('# TYPE virtmiti_build_info gauge')
  L.push(`virtmiti_build_info{version="${esc(m.version)}"} 1`)
  return L.join('\n') + '\n'
}

// ---- NRPE / Nagios plugin (Monitoring Plugins Development Guidelines: exit codes, perfdata) -------

/** Nagios plugin exits: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. */
export const NRPE_EXIT: Record<Verdict, 0 | 1 | 2 | 3> = { protected: 0, 'at-risk': 1, vulnerable: 2, unknown: 3 }
const NRPE_WORD = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const

/** `VIRTMITI WARNING - ... | bhi=1;1;2;0;3 retpoline=0;1;2;0;3 findings=1;;;0` */
export function nrpeLine(v: GuestVerdict): { text: string; exit: 0 | 1 | 2 | 3 } {
  const exit = NRPE_EXIT[v.verdict]
  const ids = [...new Set(problems(v).map(f => f.id))]
  const per = v.concerns.map(x => `${CONCERN_NAME[x.concern]} ${WORD[x.verdict]}`).join(', ')
  // '|' separates perfdata: keep it out of the text.
  const text = `VIRTMITI ${NRPE_WORD[exit]} - ${WORD[v.verdict]}: ${per}${ids.length ? ` (${ids.join(', ')})` : ''}`.replace(/\|/g, '/')
  const perf = v.concerns.map(x => `${x.concern}=${VERDICT_CODE[x.verdict]};1;2;0;3`).join(' ') + ` findings=${problems(v).length};;;0`
  return { text: `${text} | ${perf}\n`, exit }
}

/** NRPE UNKNOWN for a run that could not even start (usage error, skipped). */
export const nrpeUnknown = (why: string): string => `VIRTMITI UNKNOWN - ${why.replace(/\|/g, '/').replace(/\n/g, ' ')}\n`

/** One line: `at risk: BHI at risk (vmm.not-enumerated), retpoline/RRSBA protected` */
export function shortLine(v: GuestVerdict): string {
  return `${WORD[v.verdict]}: ${v.concerns.map(x => `${CONCERN_NAME[x.concern]} ${WORD[x.verdict]}${x.findings.length ? ` (${x.findings.join(', ')})` : ''}`).join(', ')}\n`
}

/** The verdict part of the JSON documents (probe/v1 `verdict`, guest-report/v1 `verdict`). */
export function verdictJson(v: GuestVerdict) {
  return {
    verdict: v.verdict, environment: v.environment,
    concerns: v.concerns.map(x => ({ concern: x.concern, verdict: x.verdict, mitigation: x.mitigation, basis: x.basis, rule: x.rule, vmm: x.vmm, findings: [...x.findings] })),
  }
}
