// The scenario runner (issue 6): scenarios x tiers -> one TAP subtest each, with
// expected-vs-observed diagnostics by bit name. Units are selected by --filter and --shard
// before anything runs; results come back in a stable order whatever --jobs says.
import { decode } from '../../contract/bits.js'
import type { CpuModel } from '../../contract/cpu-model.js'
import { SPEC_CTRL, VIRTUAL_MITIGATION_CTRL } from '../../contract/registers.js'
import type { Scenario, Tier } from '../../contract/scenario.js'
import type { TapPoint } from '../../bin/lib/tap.js'
import { PROFILES } from '../vmm/profiles.js'
import type { VmmProfile } from '../vmm/profile.js'
import { resolveScenario } from './resolve.js'
import { chainSetup, failureNames, runChain, type ChainRun, type MachineFactory, type Observed } from './chain.js'
import type { HostCaps } from '../../contract/host-caps.js'
import { FINDING_BY_ID } from '../../contract/findings.js'
import type { Concern, Verdict } from '../../contract/verdict-types.js'

export interface Unit { scenario: Scenario; file: string; tier: Tier; name: string }

export type UnitStatus = 'pass' | 'fail' | 'skip'
export interface UnitResult {
  unit: Unit; status: UnitStatus; point: TapPoint; ms: number
  /** What the chain saw (absent when the run was skipped before it started), and the host caps it ran with. */
  run?: ChainRun
  hostCaps?: HostCaps
  /** The reset CTRL the run's VMM declares (contract/CONTRACT.md section 7), when not 0. */
  resetCtrl?: bigint
}

/** "name [tier]": stable and unique, since scenario names are unique (scenario-file.ts). */
export const unitName = (scenario: string, tier: Tier | 'sim'): string => `${scenario} [${tier}]`

/** A shell-style glob (* ? [..]) as an anchored RegExp. */
export function globRe(glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === '*') re += '.*'
    else if (c === '?') re += '.'
    else if (c === '[') {
      const j = glob.indexOf(']', i + 1)
      if (j < 0) re += '\\['
      else { re += '[' + glob.slice(i + 1, j).replace(/^!/, '^').replace(/\\/g, '\\\\') + ']'; i = j }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

/** A unit matches the filter by scenario name or by its full unit name ("name [tier]"). */
export const matchesFilter = (u: { scenario: { name: string }; name: string }, filter: RegExp | undefined): boolean =>
  !filter || filter.test(u.scenario.name) || filter.test(u.name)

/** Shard i of n (1-based): every n-th unit of the sorted list, so shards are complete and disjoint. */
export function shard<T>(units: readonly T[], i: number, n: number): T[] {
  return units.filter((_, k) => k % n === i - 1)
}

export function parseShard(s: string): { i: number; n: number } | undefined {
  const m = /^(\d{1,6})\/(\d{1,6})$/.exec(s)
  if (!m) return undefined
  const i = Number(m[1]), n = Number(m[2])
  return n >= 1 && i >= 1 && i <= n ? { i, n } : undefined
}

export function makeUnits(scenarios: readonly { scenario: Scenario; file: string }[], tiers: readonly Tier[]): Unit[] {
  const units: Unit[] = []
  for (const { scenario, file } of [...scenarios].sort((a, b) => a.scenario.name.localeCompare(b.scenario.name))) {
    for (const tier of tiers) units.push({ scenario, file, tier, name: unitName(scenario.name, tier) })
  }
  return units
}

export interface RunContext {
  cpus: ReadonlyMap<string, CpuModel>
  /** VMM definitions by id (default: the built-in scenarios/vmms). */
  vmms?: ReadonlyMap<string, VmmProfile>
  /** A machine factory per tier, or the reason the tier cannot run here. */
  machines: Partial<Record<Tier, MachineFactory | { unavailable: string }>>
}

const names = (reg: typeof SPEC_CTRL, v: bigint) => decode(reg, v)
const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join() === [...b].sort().join()

function bitDiag(vcpu: number, field: string, expected: string[], observed: string[]) {
  return {
    vcpu, field, expected, observed,
    missing: expected.filter(x => !observed.includes(x)), extra: observed.filter(x => !expected.includes(x)),
  }
}

/** Compare what ran with the scenario's hand-written expectations: one TAP point per expectation. */
export function judge(s: Scenario, o: Observed): TapPoint[] {
  const e = s.expected
  const faulty = e.verdict === 'fail'
  const points: TapPoint[] = []
  // Decision (contract/CONTRACT.md section 4): what the guest reports.
  const dOk = o.decision.bhbClearSeqSUsed === e.decision.bhbClearSeqSUsed && o.decision.retpolineSUsed === e.decision.retpolineSUsed
  points.push({
    ok: dOk, name: `guest decision: BHB_CLEAR_SEQ_S_USED ${e.decision.bhbClearSeqSUsed}, RETPOLINE_S_USED ${e.decision.retpolineSUsed}`,
    ...(dOk ? {} : { diag: { expected: { ...e.decision }, observed: { ...o.decision }, source: 'contract/CONTRACT.md section 4' } }),
  })
  const enOk = o.enumerated === e.enumerated
  points.push({ ok: enOk, name: 'guest finds the virtual MSRs enumerated on every CPU: ' + e.enumerated, ...(enOk ? {} : { diag: { expected: e.enumerated, observed: o.enumerated, source: 'contract/CONTRACT.md section 3' } }) })
  // MITI_CTRL per vCPU (VMM state after the guest's report).
  const ctrlBad = o.vcpus.map((v, i) => bitDiag(i, 'mitiCtrl', s.mitiCtrlPerVcpu[i] ?? [], names(VIRTUAL_MITIGATION_CTRL, v.mitiCtrl))).filter(d => !same(d.expected, d.observed))
  // A faulty VMM may deviate from the contract's state: shown, not judged (the verdict point judges it).
  points.push({
    ok: faulty || ctrlBad.length === 0, name: faulty ? 'MITI_CTRL per vCPU vs the contract (faulty VMM: shown, not judged)' : 'MITI_CTRL per vCPU as expected',
    ...(ctrlBad.length ? { diag: { mismatches: ctrlBad, source: 'contract/CONTRACT.md sections 3-4' } } : {}),
  })
  const fBad = o.vcpus.flatMap((v, i) => {
    const f = s.forcedPerVcpu[i] ?? { mask: [], value: [] }
    return [bitDiag(i, 'forcedMask', f.mask, names(SPEC_CTRL, v.forcedMask)), bitDiag(i, 'forcedValue', f.value, names(SPEC_CTRL, v.forcedValue))]
  }).filter(d => !same(d.expected, d.observed))
  points.push({
    ok: faulty || fBad.length === 0, name: faulty ? 'forced SPEC_CTRL mask and value per vCPU vs the contract (faulty VMM: shown, not judged)' : 'forced SPEC_CTRL mask and value per vCPU as expected',
    ...(fBad.length ? { diag: { mismatches: fBad, source: 'contract/CONTRACT.md section 5' } } : {}),
  })
  // The host check's outcome per vCPU (a fault confined to some vCPUs must show on those only):
  // true / false, or exactly the failing item ids.
  if (e.hostCheck) {
    const obs = o.hostCheckPerVcpu ?? [], failing = o.hostCheckFailingPerVcpu ?? []
    const want = e.hostCheck.perVcpu
    const okAt = (w: boolean | string[], i: number) => typeof w === 'boolean' ? obs[i] === w : same(w, failing[i] ?? [])
    const hOk = obs.length === want.length && want.every(okAt)
    const show = (w: boolean | readonly string[], i: number) => `vCPU ${i}: ${w === true || (Array.isArray(w) && w.length === 0) ? 'ok' : w === false ? 'fails' : `fails ${w.join(', ')}`}`
    points.push({
      ok: hOk, name: `host check per vCPU: ${want.map(show).join('; ')}`,
      ...(hOk ? {} : { diag: { expected: want.map(show), observed: obs.map((v, i) => show(v ? true : failing[i] ?? false, i)), source: 'contract/CONTRACT.md section 3 (per-vCPU state)' } }),
    })
  }
  if (e.guest) points.push(...judgeGuest(e.guest, o.guest))
  const failures = o.failures.map(f => ({ id: f.id, message: f.message }))
  if (!faulty) {
    points.push({
      ok: o.failures.length === 0, name: 'verdict pass: host check, guest report, selftest and reset find nothing wrong',
      ...(o.failures.length ? { diag: { failures, details: o.failures.slice(0, 8).map(f => f.diag ?? {}) } } : {}),
    })
  } else {
    const c = e.caught!
    const hit = o.failures.find(f => f.id === c.check && (c.bit === undefined || failureNames(f, c.bit)))
    points.push({
      ok: hit !== undefined, name: `verdict fail: caught by ${c.check}${c.bit ? ` naming ${c.bit}` : ''}`,
      ...(hit ? { diag: { caught: hit.message } } : { diag: { expected: { check: c.check, ...(c.bit ? { bit: c.bit } : {}) }, observed: failures.length ? failures : 'no check failed: the faulty VMM went unnoticed' } }),
    })
  }
  return points
}

type GuestExpect = NonNullable<Scenario['expected']['guest']>

/**
 * The guest's verdict after its report against the scenario's (contract/CONTRACT.md section 8): the whole
 * verdict, each concern named, and the findings: every finding that is not a note exactly, and
 * each note the scenario names present (other notes are allowed: they never change a verdict).
 */
export function judgeGuest(e: GuestExpect, o: Observed['guest']): TapPoint[] {
  const S8 = 'contract/CONTRACT.md section 8'
  if (!o) return [{ ok: false, name: `guest verdict ${e.verdict}`, diag: { observed: 'the chain computed no guest verdict' } }]
  const points: TapPoint[] = []
  const findings = [...new Set(o.findings.map(f => f.id))]
  const vOk = o.verdict === e.verdict
  points.push({ ok: vOk, name: `guest verdict ${e.verdict}`, ...(vOk ? {} : { diag: { expected: e.verdict, observed: o.verdict, findings, source: S8 } }) })
  const named = Object.entries(e.concerns ?? {}).filter((x): x is [Concern, Verdict] => x[1] !== undefined)
  if (named.length) {
    const bad = named.filter(([c, v]) => o.concerns[c] !== v)
    points.push({
      ok: bad.length === 0, name: `guest verdict per concern: ${named.map(([c, v]) => `${c} ${v}`).join(', ')}`,
      ...(bad.length ? { diag: { expected: Object.fromEntries(named), observed: { ...o.concerns }, findings, source: S8 } } : {}),
    })
  }
  if (e.findings) {
    const isNote = (id: string) => FINDING_BY_ID.get(id)?.effect === 'note'
    const want = e.findings.filter(id => !isNote(id)), notes = e.findings.filter(isNote)
    const got = [...new Set(o.findings.filter(f => f.effect !== 'note').map(f => f.id))]
    const missing = [...want.filter(id => !got.includes(id)), ...notes.filter(id => !findings.includes(id))]
    const extra = got.filter(id => !want.includes(id))
    const fOk = missing.length === 0 && extra.length === 0
    points.push({
      ok: fOk, name: `guest findings: ${e.findings.length ? e.findings.join(', ') : 'none'}${notes.length ? '' : ' (notes aside)'}`,
      ...(fOk ? {} : { diag: { expected: e.findings, observed: findings, missing, extra, source: `${S8}; contract/findings.ts` } }),
    })
  }
  return points
}

export async function runUnit(u: Unit, ctx: RunContext): Promise<UnitResult> {
  const t0 = performance.now()
  let run: ChainRun | undefined, hostCaps: HostCaps | undefined, resetCtrl: bigint | undefined
  const done = (status: UnitStatus, point: TapPoint): UnitResult => ({ unit: u, status, point, ms: performance.now() - t0, ...(run ? { run } : {}), ...(hostCaps ? { hostCaps } : {}), ...(resetCtrl ? { resetCtrl } : {}) })
  const s = u.scenario
  if (!s.tiersResolved.includes(u.tier)) return done('skip', { ok: true, name: u.name, skip: `scenario runs on ${s.tiersResolved.join(', ')} only` })
  const m = ctx.machines[u.tier]
  if (!m) return done('skip', { ok: true, name: u.name, skip: `tier ${u.tier} not selected` })
  if (typeof m !== 'function') return done('skip', { ok: true, name: u.name, skip: m.unavailable })
  // The CLI resolves every id before running (exit 2 on an unknown one); this is for other callers.
  const res = resolveScenario(s, ctx.cpus, ctx.vmms ?? PROFILES)
  if (!res.ok) return done('fail', { ok: false, name: u.name, diag: { error: res.error, file: u.file } })
  const { host, guest, profile } = res.value
  resetCtrl = profile.resetCtrl
  let sub: TapPoint[]
  try {
    const setup = chainSetup(s, host, guest, profile)
    hostCaps = setup.hostCaps
    const r = run = await runChain(setup, m, s.kernel.spectreV2)
    // A run the tier cannot stand for here (kvm: CPUID this host pins, --cpuid strict) SKIPs whole.
    if (r.skip !== undefined) return done('skip', { ok: true, name: u.name, skip: r.skip, ...(r.tierPoints.length ? { sub: r.tierPoints } : {}) })
    sub = [...r.tierPoints, ...judge(s, r.observed)]
  } catch (err) {
    sub = [{ ok: false, name: 'the chain ran', diag: { error: (err as Error).message, stack: ((err as Error).stack ?? '').split('\n').slice(0, 6) } }]
  }
  const ok = sub.every(p => p.ok || p.skip !== undefined)
  return done(ok ? 'pass' : 'fail', { ok, name: u.name, sub })
}

/**
 * Run units with at most `jobs` in flight; results in unit order. `onResult` sees each result as
 * soon as it and every unit before it have completed (streaming output keeps the stable order).
 */
export async function runUnits(units: readonly Unit[], ctx: RunContext, jobs: number, progress?: (done: number, total: number, name: string) => void,
  onResult?: (r: UnitResult, k: number) => void): Promise<UnitResult[]> {
  const results: UnitResult[] = new Array(units.length)
  let next = 0, finished = 0, released = 0
  const worker = async () => {
    while (next < units.length) {
      const k = next++
      results[k] = await runUnit(units[k]!, ctx)
      progress?.(++finished, units.length, units[k]!.name)
      while (released < units.length && results[released] !== undefined) { onResult?.(results[released]!, released); released++ }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, units.length)) }, worker))
  return results
}

/** Summary table (scenarios x tiers) for stderr. */
export function summaryTable(results: readonly UnitResult[], tiers: readonly Tier[]): string {
  const rows = new Map<string, Map<Tier, UnitStatus>>()
  for (const r of results) {
    const row = rows.get(r.unit.scenario.name) ?? new Map<Tier, UnitStatus>()
    row.set(r.unit.tier, r.status)
    rows.set(r.unit.scenario.name, row)
  }
  const w = Math.max(8, ...[...rows.keys()].map(k => k.length))
  const cell = (s: UnitStatus | undefined) => (s === undefined ? '-' : s === 'fail' ? 'FAIL' : s).padEnd(6)
  const lines = [`${'scenario'.padEnd(w)}  ${tiers.map(t => t.padEnd(6)).join('')}`]
  for (const [name, row] of rows) lines.push(`${name.padEnd(w)}  ${tiers.map(t => cell(row.get(t))).join('')}`)
  const count = (st: UnitStatus) => results.filter(r => r.status === st).length
  lines.push(`${results.length} runs: ${count('pass')} pass, ${count('fail')} fail, ${count('skip')} skip`)
  return lines.join('\n') + '\n'
}
