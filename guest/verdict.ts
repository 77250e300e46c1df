// From Facts and Decision to the operator's verdict (contract/verdict.ts) and the probe's exit code
// (issue 12: 0 protected, 1 at risk or vulnerable, 3 unknown). Pure.
import type { Decision } from '../contract/decision-types.js'
import type { Facts } from '../contract/facts.js'
import { findingDef } from '../contract/findings.js'
import { cpuRanges } from '../contract/format.js'
import { exitCodeOf, judge, type FindingHit, type GuestVerdict, type RecordCpu, type Verdict } from '../contract/verdict.js'

export { cpuRanges }

/** One finding as the outputs print it. `level` and `text` keep the probe/v1 reading of older consumers. */
export interface Finding {
  id: string
  effect: FindingHit['effect']
  concern?: FindingHit['concern']
  cpus?: string
  title: string
  detail: string
  level: 'violation' | 'cannot-tell' | 'note'
  text: string
}

const LEVEL = { vulnerable: 'violation', 'at-risk': 'violation', unknown: 'cannot-tell', note: 'note' } as const

export function findingOut(h: FindingHit): Finding {
  const d = findingDef(h.id)
  const cpus = h.cpus?.length ? cpuRanges(h.cpus) : undefined
  const where = cpus ? `${h.cpus!.length > 1 ? 'CPUs' : 'CPU'} ${cpus}: ` : ''
  return {
    id: h.id, effect: h.effect, ...(h.concern ? { concern: h.concern } : {}), ...(cpus ? { cpus } : {}),
    title: d.title, detail: h.detail, level: LEVEL[h.effect],
    text: `${h.concern ? `${h.concern === 'bhi' ? 'BHI' : 'retpoline'}: ` : ''}${d.title}: ${where}${h.detail}`,
  }
}

export interface VerdictOptions {
  ctrlNow?: ReadonlyMap<number, bigint | undefined>
  record?: { origin: string; cpus: readonly RecordCpu[] }
}

/** probe/v1 `status`: ok = protected, violation = at risk or vulnerable, cannot-tell = unknown. */
export const STATUS: Record<Verdict, 'ok' | 'violation' | 'cannot-tell'> = { protected: 'ok', 'at-risk': 'violation', vulnerable: 'violation', unknown: 'cannot-tell' }

export function verdict(facts: Facts, d: Decision, o: VerdictOptions = {}): { judged: GuestVerdict; findings: Finding[]; exitCode: 0 | 1 | 3; status: 'ok' | 'violation' | 'cannot-tell' } {
  const judged = judge({ facts, decision: d, ...o })
  return { judged, findings: judged.findings.map(findingOut), exitCode: exitCodeOf(judged.verdict), status: STATUS[judged.verdict] }
}
