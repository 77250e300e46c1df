// `guest report` logic (issue 4): Platform + Facts + Decision + options -> GuestReport.
// The discovery chain comes from the decision (decision.virt), cross-checked against the probe's
// Facts so that a VMM reading 0 for unknown MSRs cannot fool it (contract/CONTRACT.md section 3).
// Then, per online CPU: read CTRL, compute wanted (only enumerated bits change, contract/CONTRACT.md
// section 4), write through the gate if different, read back, record the outcome.
// Pure apart from the Platform calls: the timestamp is passed in.
import type { Platform, AccessFault } from '../platform.js'
import type { CpuFacts, Facts } from '../../contract/facts.js'
import type { Decision, Reason, VirtEnumeration } from '../../contract/decision-types.js'
// Types only: importing the zod schema at run time costs about 200 ms of start-up (measured in
// the bundle), more than the whole report; tests parse every report against GuestReport.
import type { GuestReport, ReportCpu } from '../../contract/report-json.js'
import { wantedMitiCtrl } from '../../contract/miti-ctrl.js'
import { MSR, MITI_CTRL_BHB_CLEAR_SEQ_S_USED, MITI_CTRL_RETPOLINE_S_USED } from '../../contract/registers.js'
import { hex } from '../../contract/bits.js'
import { gatedWrite } from './write-gate.js'
import { chainVerdict, type ChainVerdict } from './discovery.js'
import { cpuRanges as cpuList } from '../../contract/format.js'
import { REPORT_SCHEMA_ID } from '../../contract/report-id.js'

export interface ReportOptions {
  dryRun: boolean
  /** CPUs to act on (subset of the online CPUs); undefined = every online CPU. */
  cpus?: readonly number[]
  /** Time of the run (the CLI passes `new Date()`; tests pass a fixed one). */
  now: Date
  agentVersion: string
}

/** How bad one CPU's result is: it decides the exit code (DESIGN.md exit codes). */
export type Severity = 'ok' | 'could-not-tell' | 'failure'

export interface CpuResult { entry: ReportCpu; severity: Severity }

export interface ReportRun {
  report: GuestReport
  /** 0 all good; 1 a violation or partial failure; 3 could not tell (DESIGN.md). */
  exitCode: 0 | 1 | 3
  /** Run-level explanations for humans (which CPUs hold which value, why nothing was written). */
  notes: string[]
  perCpu: CpuResult[]
}

/** The report's schema id, from the zod-free contract/report-id.ts. */
export const REPORT_SCHEMA = REPORT_SCHEMA_ID

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** A UUID-shaped first line of a text file, lower-cased (DMI may spell it upper-case). */
function readUuid(platform: Platform, path: string): string | undefined {
  const t = platform.readText(path)?.trim().toLowerCase()
  return t !== undefined && UUID_RE.test(t) ? t : undefined
}

const clip = (s: string, n: number): string => (s.length <= n ? s : s.slice(0, n - 1) + '…')
const reasonOut = (r: Reason) => ({ rule: clip(r.rule, 200), text: clip(r.text, 2000), source: clip(r.source, 500) })
const faultOut = (step: string, f: AccessFault) => ({
  step: clip(step, 64),
  // Platforms are asked to use Linux errno names; anything else is named EUNKNOWN rather than rejected.
  errno: /^E[A-Z0-9]{1,15}$/.test(f.errno) ? f.errno : 'EUNKNOWN',
  message: clip(f.message, 500),
})

/** EIO is a #GP (contract/CONTRACT.md section 3); ENXIO is an offline CPU; anything else means we could not look. */
const severityOf = (f: AccessFault): Severity => (f.errno === 'EIO' || f.errno === 'ENXIO' ? 'failure' : 'could-not-tell')

/** Per-CPU lookups built once (a 256-vCPU guest would otherwise pay for n^2 searches). */
export interface Index { facts: Map<number, CpuFacts>; virt: Map<number, VirtEnumeration> }
export const indexOf = (facts: Facts, decision: Decision): Index => ({
  facts: new Map(facts.cpus.map(c => [c.cpu, c])),
  virt: new Map(decision.virt.map(v => [v.cpu, v])),
})

/** The chain verdict for one CPU: decision.virt, confirmed by the facts' own chain. */
export function cpuVerdict(cpu: number, ix: Index): ChainVerdict {
  const fromFacts = chainVerdict(cpu, ix.facts.get(cpu))
  const v = ix.virt.get(cpu)
  if (v?.enumerated && v.mitiEnum !== undefined) {
    // Write only when both agree, and use the MITI_ENUM the decision saw on this CPU.
    if (fromFacts.kind === 'enumerated') return { kind: 'enumerated', mitiEnum: v.mitiEnum }
    return fromFacts
  }
  if (fromFacts.kind === 'enumerated') {
    // The facts pass the chain but the decision did not enumerate: do not guess; say so.
    return { kind: 'unknown', step: 'decision', fault: { errno: 'ENODATA', message: `cpu ${cpu}: the decision did not enumerate the virtual MSRs although the probe's chain passed (${v?.reason.text ?? 'no decision entry'})` } }
  }
  return fromFacts
}

function oneCpu(platform: Platform, cpu: number, verdict: ChainVerdict, decision: Decision, dryRun: boolean): CpuResult {
  if (verdict.kind === 'absent') return { entry: { cpu, outcome: 'not-enumerated' }, severity: 'ok' }
  if (verdict.kind === 'unknown') return { entry: { cpu, outcome: 'fault', fault: faultOut(verdict.step, verdict.fault) }, severity: 'could-not-tell' }
  if (verdict.kind === 'violation') return { entry: { cpu, outcome: 'fault', fault: faultOut(verdict.step, verdict.fault) }, severity: 'failure' }
  const mitiEnum = verdict.mitiEnum
  const base = { cpu, mitiEnum: hex(mitiEnum) }
  // Fresh read of CTRL right before the write: the probe's value may be stale (another run, hotplug).
  const r = platform.rdmsr(cpu, MSR.VIRTUAL_MITIGATION_CTRL)
  if (!r.ok) {
    if (r.fault.errno === 'ENXIO') return { entry: { ...base, outcome: 'offline', fault: faultOut('read-ctrl', r.fault) }, severity: 'failure' }
    // Section 3: CTRL is readable once VIRTUAL_ENUMERATION bit 0 is set; EIO here is a violation.
    return { entry: { ...base, outcome: 'fault', fault: faultOut('read-ctrl', r.fault) }, severity: severityOf(r.fault) }
  }
  const before = r.value
  const wanted = wantedMitiCtrl(before, mitiEnum, decision.wish)
  const known = { ...base, before: hex(before), wanted: hex(wanted) }
  // Second run is a no-op: nothing is written when the CPU already holds the wanted value.
  if (wanted === before) return { entry: { ...known, outcome: 'unchanged', readBack: hex(before) }, severity: 'ok' }
  if (dryRun) return { entry: { ...known, outcome: 'dry-run' }, severity: 'ok' }
  const g = gatedWrite(platform, cpu, MSR.VIRTUAL_MITIGATION_CTRL, wanted, mitiEnum)
  switch (g.kind) {
    case 'written':
      return { entry: { ...known, outcome: 'written', written: hex(g.written), readBack: hex(g.readBack) }, severity: 'ok' }
    case 'readback-mismatch':
      // Section 3: "A read of 0x50000002 returns the last value written."
      return { entry: { ...known, outcome: 'readback-mismatch', written: hex(g.written), readBack: hex(g.readBack) }, severity: 'failure' }
    case 'refused':
      // Only reachable when `before` already holds bits MITI_ENUM does not enumerate (the VMM let them in).
      return { entry: { ...known, outcome: 'fault', readBack: hex(before), fault: faultOut('gate', { errno: 'EINVAL', message: g.reason }) }, severity: 'failure' }
    case 'write-fault': {
      if (g.fault.errno === 'ENXIO') return { entry: { ...known, outcome: 'offline', fault: faultOut('write', g.fault) }, severity: 'failure' }
      // Say what the CPU holds now: a faulting write must change nothing (section 3), check it.
      const after = platform.rdmsr(cpu, MSR.VIRTUAL_MITIGATION_CTRL)
      return {
        entry: { ...known, outcome: 'fault', ...(after.ok ? { readBack: hex(after.value) } : {}), fault: faultOut('write', g.fault) },
        // An enumerated bit must be writable (section 3), so EIO is a violation.
        severity: severityOf(g.fault),
      }
    }
    case 'readback-fault':
      if (g.fault.errno === 'ENXIO') return { entry: { ...known, outcome: 'offline', written: hex(g.written), fault: faultOut('read-back', g.fault) }, severity: 'failure' }
      return { entry: { ...known, outcome: 'fault', written: hex(g.written), fault: faultOut('read-back', g.fault) }, severity: severityOf(g.fault) }
  }
}

/** "0-3,5" for [0,1,2,3,5]. */

export { cpuList }

/** Which CPUs hold which CTRL value after the run, and which are unknown. */
export function holdings(entries: readonly ReportCpu[]): string[] {
  const by = new Map<string, number[]>()
  const unknown: number[] = []
  for (const e of entries) {
    if (e.outcome === 'not-enumerated') continue
    // dry-run and unchanged CPUs hold `before`; everything else holds what was read back.
    const v = e.outcome === 'dry-run' ? e.before : e.readBack
    if (v === undefined) { unknown.push(e.cpu); continue }
    const list = by.get(v)
    if (list) list.push(e.cpu)
    else by.set(v, [e.cpu])
  }
  const lines = [...by].map(([v, cs]) => `MITI_CTRL ${v} on cpu ${cpuList(cs)}`)
  if (unknown.length > 0) lines.push(`MITI_CTRL unknown on cpu ${cpuList(unknown)}`)
  return lines
}

export function runReport(platform: Platform, facts: Facts, decision: Decision, opts: ReportOptions): ReportRun {
  const onlineList = platform.cpus()
  const online = new Set(onlineList)
  const targets = opts.cpus ?? onlineList
  const ix = indexOf(facts, decision)
  const notes: string[] = []
  const perCpu: CpuResult[] = []
  const absentWhy = new Set<string>()
  for (const cpu of targets) {
    if (!online.has(cpu)) {
      perCpu.push({ entry: { cpu, outcome: 'offline', fault: { step: 'cpus', errno: 'ENXIO', message: `cpu ${cpu} is not online` } }, severity: 'failure' })
      continue
    }
    const verdict = cpuVerdict(cpu, ix)
    if (verdict.kind === 'absent') absentWhy.add(verdict.why)
    perCpu.push(oneCpu(platform, cpu, verdict, decision, opts.dryRun))
    // This CPU's gate read, write and read-back are done: close its descriptors (issue 14 item 7).
    platform.release?.(cpu)
  }
  const entries = perCpu.map(p => p.entry)
  const enumeratedCpus = entries.filter(e => e.mitiEnum !== undefined).map(e => e.cpu)
  const absentCpus = entries.filter(e => e.outcome === 'not-enumerated').map(e => e.cpu)
  const reasons: Reason[] = [...decision.wishReasons]
  let severity: Severity = perCpu.some(p => p.severity === 'failure') ? 'failure'
    : perCpu.some(p => p.severity === 'could-not-tell') ? 'could-not-tell' : 'ok'

  if (absentCpus.length === entries.length) {
    // Nothing to report is not an error (issue 4): write nothing, say why, exit 0.
    notes.push(`nothing written: the virtual MSRs are not enumerated (${[...absentWhy].join('; ')})`)
    for (const why of absentWhy) reasons.push({ rule: 'not-enumerated', text: why, source: 'contract/CONTRACT.md section 3' })
  } else if (absentCpus.length > 0) {
    // The MSRs are per vCPU (section 3): a CPU without them cannot carry the guest's report,
    // so the VMM cannot deploy the mitigation there. Report it as a failure.
    const text = `the virtual MSRs are enumerated on some CPUs but not on cpu ${cpuList(absentCpus)} (${[...absentWhy].join('; ')})`
    notes.push(text)
    reasons.push({ rule: 'enumeration-differs-between-cpus', text, source: 'contract/CONTRACT.md section 3 (per vCPU)' })
    severity = 'failure'
  }
  // A wish the decision could not make leaves its bit alone (contract/miti-ctrl.ts); when the VMM
  // enumerates that bit the guest has not told it what it uses: could not tell.
  const enumUnion = entries.reduce((m, e) => (e.mitiEnum ? m | BigInt(e.mitiEnum) : m), 0n)
  const undecided: string[] = []
  if (decision.wish.bhbClearSeqSUsed === 'unknown' && (enumUnion & MITI_CTRL_BHB_CLEAR_SEQ_S_USED) !== 0n) undecided.push('BHB_CLEAR_SEQ_S_USED (bit 0)')
  if (decision.wish.retpolineSUsed === 'unknown' && (enumUnion & MITI_CTRL_RETPOLINE_S_USED) !== 0n) undecided.push('RETPOLINE_S_USED (bit 1)')
  if (undecided.length > 0) {
    const text = `could not tell what the kernel uses for ${undecided.join(' and ')}: left unchanged (see the decision's reasons)`
    notes.push(text)
    reasons.push({ rule: 'wish-unknown', text, source: 'contract/CONTRACT.md section 4' })
    if (severity === 'ok') severity = 'could-not-tell'
  }
  if (enumeratedCpus.length > 0) notes.push(...holdings(entries))
  // Causes, grouped: 256 CPUs missing the same driver make one line, not 256.
  const causes = new Map<string, { cpus: number[]; example: string }>()
  for (const p of perCpu) {
    const e = p.entry
    const key = e.fault ? `${e.outcome} at ${e.fault.step}: ${e.fault.errno}` : e.outcome === 'readback-mismatch' ? `wrote ${e.written} but read back ${e.readBack} (contract/CONTRACT.md section 3: a read returns the last value written)` : undefined
    if (key === undefined) continue
    const c = causes.get(key) ?? { cpus: [], example: e.fault ? e.fault.message : '' }
    c.cpus.push(e.cpu)
    causes.set(key, c)
  }
  for (const [key, c] of causes) notes.push(`cpu ${cpuList(c.cpus)}: ${key}${c.example ? ` (${c.example})` : ''}`)

  const vmUuid = readUuid(platform, '/sys/class/dmi/id/product_uuid')
  const bootId = readUuid(platform, '/proc/sys/kernel/random/boot_id')
  const kernelRelease = facts.kernel.release ?? platform.readText('/proc/sys/kernel/osrelease')?.trim()
  const report: GuestReport = {
    schema: REPORT_SCHEMA,
    agent: { name: 'virtmiti', version: opts.agentVersion },
    timestamp: opts.now.toISOString(),
    ...(vmUuid ? { vmUuid } : {}),
    ...(bootId ? { bootId } : {}),
    ...(kernelRelease ? { kernelRelease: clip(kernelRelease, 256) } : {}),
    platform: clip(platform.kind, 64),
    dryRun: opts.dryRun,
    enumerated: entries.length > 0 && enumeratedCpus.length === entries.length,
    decision: {
      bhbClearSeqSUsed: decision.wish.bhbClearSeqSUsed,
      retpolineSUsed: decision.wish.retpolineSUsed,
      kernelBhi: decision.kernel.bhi,
      kernelSpectreV2: decision.kernel.spectreV2,
      reasons: reasons.slice(0, 64).map(reasonOut),
    },
    cpus: entries,
    // True only when every CPU ended holding `wanted`, or had nothing to be written.
    complete: entries.length > 0 && entries.every(e => e.outcome === 'written' || e.outcome === 'unchanged' || e.outcome === 'not-enumerated'),
  }
  const exitCode = severity === 'failure' ? 1 : severity === 'could-not-tell' ? 3 : 0
  return { report, exitCode, notes, perCpu }
}
