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

export interface Unit { scenario: Scenario; file: string; tier: Tier; name: string }

export type UnitStatus = 'pass' | 'fail' | 'skip'
export interface UnitResult {
  unit: Unit; status: UnitStatus; point: TapPoint; ms: number
  /** What the chain saw (absent when the run was skipped before it started), and the host caps it ran with. */
  run?: ChainRun
  hostCaps?: HostCaps
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
  // The host check's outcome per vCPU (a fault confined to some vCPUs must show on those only).
  if (e.hostCheck) {
    const obs = o.hostCheckPerVcpu ?? []
    const hOk = obs.length === e.hostCheck.perVcpu.length && obs.every((v, i) => v === e.hostCheck!.perVcpu[i])
    const show = (a: readonly boolean[]) => a.map((v, i) => `vCPU ${i}: ${v ? 'ok' : 'fails'}`)
    points.push({
      ok: hOk, name: `host check per vCPU: ${show(e.hostCheck.perVcpu).join(', ')}`,
      ...(hOk ? {} : { diag: { expected: show(e.hostCheck.perVcpu), observed: show(obs), source: 'contract/CONTRACT.md section 3 (per-vCPU state)' } }),
    })
  }
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

export async function runUnit(u: Unit, ctx: RunContext): Promise<UnitResult> {
  const t0 = performance.now()
  let run: ChainRun | undefined, hostCaps: HostCaps | undefined
  const done = (status: UnitStatus, point: TapPoint): UnitResult => ({ unit: u, status, point, ms: performance.now() - t0, ...(run ? { run } : {}), ...(hostCaps ? { hostCaps } : {}) })
  const s = u.scenario
  if (!s.tiersResolved.includes(u.tier)) return done('skip', { ok: true, name: u.name, skip: `scenario runs on ${s.tiersResolved.join(', ')} only` })
  const m = ctx.machines[u.tier]
  if (!m) return done('skip', { ok: true, name: u.name, skip: `tier ${u.tier} not selected` })
  if (typeof m !== 'function') return done('skip', { ok: true, name: u.name, skip: m.unavailable })
  // The CLI resolves every id before running (exit 2 on an unknown one); this is for other callers.
  const res = resolveScenario(s, ctx.cpus, ctx.vmms ?? PROFILES)
  if (!res.ok) return done('fail', { ok: false, name: u.name, diag: { error: res.error, file: u.file } })
  const { host, guest, profile } = res.value
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
