// `virtmiti scenarios run [DIR|FILE...] [--tier sim|kvm|qemu|all] [--filter GLOB] [--shard i/n]
//  [--tap-version 13|14] [--json] [--jobs N] [--exhaustive] [--qemu-set ci|full] [--cpus DIR]
//  [--vmms DIR] [--allow-shadow] [--emit DIR] [--junit FILE] [--quiet]` (issues 6, 7, 13).
// TAP (streamed: plan first, each run and qemu boot as it completes) or JSON on stdout; progress
// (on a terminal; otherwise one line per qemu boot; none with --quiet) and the summary table on stderr.
// Exit 0 only when every selected run passes (skips allowed); 1 on any failure; 2 usage/input error.
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { EXIT, InputError, UsageError, parse, stdio, type Io } from '../../bin/lib/cli.js'
import { tapStreamHeader, tapStreamPoint, type TapPoint, type TapVersion } from '../../bin/lib/tap.js'
import { TIERS, type Tier } from '../../contract/scenario.js'
import { builtinCasesDir } from '../runner/catalog.js'
import { loadCatalogs } from '../runner/catalogs.js'
import { resolveScenario } from '../runner/resolve.js'
import { formatScenarioError, loadScenarios } from '../runner/scenario-file.js'
import { globRe, makeUnits, matchesFilter, parseShard, runUnits, shard, summaryTable, type RunContext, type UnitResult } from '../runner/run.js'
import { emitRun, realDir, writeFileExclusive } from '../runner/emit.js'
import { junitXml, type JunitCase } from '../runner/junit.js'
import { kvmMachine, simMachine } from '../runner/machines.js'
import { EXHAUSTIVE_NAME, runExhaustive } from '../runner/exhaustive.js'
import { builtinQemuDir, defaultSet, loadQemuMatrix, qemuTable, qemuTierUnavailable, runQemuTier, selectSet, tierPaths, type BootRow, type QemuBoot, type TierOptions } from '../qemu/tier.js'

import { SCENARIO_RUN_SCHEMA_ID as RUN_SCHEMA_ID } from '../../contract/schema-ids.js'

export { RUN_SCHEMA_ID }

const HELP = `Usage: virtmiti scenarios run [DIR|FILE...] [options]
Run scenario files (default: the built-in catalog, scenarios/cases) end to end: guest probe ->
decision -> MITI_CTRL write -> VMM response -> host check, on each tier.
  --tier T          sim | kvm | qemu | all (default all: every tier, unavailable ones SKIP with the reason)
  --filter GLOB     only scenarios whose name (or "name [tier]") matches GLOB (* ? [..])
  --shard i/n       run the i-th of n disjoint shards (1-based) of the selected runs
  --tap-version V   13 or 14 (default 14). Both stream: the plan first (one point per run), each
                    run's point as it completes, its checks as an indented subtest (TAP 13
                    readers such as prove ignore the indented lines; a failed run's point
                    carries the failing checks in its YAML diagnostics)
  --json            a JSON document instead of TAP (at the end)
  --junit FILE      also write JUnit XML (one testsuite per tier, one testcase per run)
  --cpus DIR        more CPU models (DIR/<id>.yaml, scenarios/cpus format); repeatable
  --vmms DIR        more VMM definitions (DIR/<id>.yaml, scenarios/vmms format); repeatable
  --allow-shadow    let a --cpus/--vmms file replace a built-in model of the same id (else an error)
  --emit DIR        per run, write DIR/<scenario>/<tier>/ guest-report.json, vmm-state.json,
                    host-caps.json, selftest.tap, vmm-state-after-reset.json and host-check.json:
                    \`host check\` on them (--selftest, --after-reset) reproduces the run's verdict
  --jobs N          runs in flight at once (default 1; the chain is synchronous, so this only
                    overlaps the selftest's yields; results keep their order)
  --exhaustive      also run the exhaustive matrix over every relevant bit (sim tier)
  --cpuid MODE      kvm tier, CPUID bits this host's KVM pins (each run proves them with a
                    complement VM and says so in its own "CPUID origin" point, SKIP naming the
                    bits): overlay (default) answers them from the VMM's table and still runs
                    every MSR access on real vCPUs; strict skips such runs whole
  --no-cpuid-proof  kvm tier: compare CPUID instead of proving it (implies --cpuid strict)
  --qemu-set S      ci | full: which boots of the qemu matrix (scenarios/qemu/*.yaml, or a
                    qemu directory next to a given cases DIR) the qemu tier runs (default full;
                    ci when CI=true). Scenario cases SKIP on the qemu tier: QEMU implements no
                    virtual MSRs; its tier boots real Linux guests and checks the agent there.
  --quiet           no progress on stderr (a terminal's progress line, elsewhere a line per qemu boot)
Exit: 0 all passed (skipped points and runs allowed); 1 a run failed; 2 usage or bad scenario
file; 4 every selected run was skipped (DESIGN.md exit codes).
`

/** opts.qemu: a test's stand-ins for the qemu tier's paths, availability and boots (TierDeps). */
export async function main(argv: string[], opts: { io?: Io; isTTY?: boolean; machines?: RunContext['machines']; qemu?: Pick<TierOptions, 'paths' | 'unavailable' | 'deps'> } = {}): Promise<number> {
  const io = opts.io ?? stdio
  const { values, positionals } = parse('scenarios run', argv, {
    tier: { type: 'string', default: 'all' },
    filter: { type: 'string' },
    shard: { type: 'string' },
    'tap-version': { type: 'string', default: '14' },
    json: { type: 'boolean', default: false },
    jobs: { type: 'string', default: '1' },
    exhaustive: { type: 'boolean', default: false },
    'qemu-set': { type: 'string' },
    cpuid: { type: 'string', default: 'overlay' },
    'no-cpuid-proof': { type: 'boolean', default: false },
    cpus: { type: 'string', multiple: true },
    vmms: { type: 'string', multiple: true },
    'allow-shadow': { type: 'boolean', default: false },
    emit: { type: 'string' },
    junit: { type: 'string' },
    quiet: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  }, true)
  if (values.help) { io.out(HELP); return EXIT.OK }
  const tierArg = values.tier!
  if (tierArg !== 'all' && !(TIERS as readonly string[]).includes(tierArg)) throw new UsageError(`scenarios run: --tier must be sim, kvm, qemu or all, got "${tierArg}"`)
  const tiers: Tier[] = tierArg === 'all' ? [...TIERS] : [tierArg as Tier]
  const tv = values['tap-version']
  if (tv !== '13' && tv !== '14') throw new UsageError(`scenarios run: --tap-version must be 13 or 14, got "${tv}"`)
  const version = Number(tv) as TapVersion
  const jobs = Number(values.jobs)
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 256) throw new UsageError(`scenarios run: --jobs must be an integer 1..256, got "${values.jobs}"`)
  const sh = values.shard === undefined ? { i: 1, n: 1 } : parseShard(values.shard)
  if (!sh) throw new UsageError(`scenarios run: --shard must be i/n with 1 <= i <= n, got "${values.shard}"`)
  const qemuSet = values['qemu-set'] ?? defaultSet()
  if (qemuSet !== 'ci' && qemuSet !== 'full') throw new UsageError(`scenarios run: --qemu-set must be ci or full, got "${qemuSet}"`)
  const cpuidMode = values.cpuid!
  if (cpuidMode !== 'overlay' && cpuidMode !== 'strict') throw new UsageError(`scenarios run: --cpuid must be overlay or strict, got "${cpuidMode}"`)
  let filter: RegExp | undefined
  try { filter = values.filter === undefined ? undefined : globRe(values.filter) } catch { throw new UsageError(`scenarios run: bad --filter glob "${values.filter}"`) }

  const builtin = builtinCasesDir()
  const paths = positionals.length ? positionals : builtin ? [builtin] : []
  if (paths.length === 0) throw new InputError('scenarios run: the built-in catalog (scenarios/cases) was not found next to this program; give a DIR or FILE')

  // CPU models and VMM definitions: the built-in catalogs plus the explicit --cpus / --vmms DIRs.
  const cat = loadCatalogs({ cpus: values.cpus ?? [], vmms: values.vmms ?? [], allowShadow: values['allow-shadow'] === true })
  if (cat.errors.length) throw new InputError(cat.errors.join('\n'))
  const loaded = loadScenarios(paths)
  if (loaded.errors.length) throw new InputError(`bad scenario file${loaded.errors.length > 1 ? 's' : ''}:\n${loaded.errors.map(formatScenarioError).join('\n')}`)
  // An unknown id is an input error before anything runs: it names the valid ids and the directories searched.
  const unresolved = loaded.scenarios.flatMap(({ scenario, file }) => {
    const r = resolveScenario(scenario, cat.cpus, cat.vmms, cat.dirs)
    return r.ok ? [] : [`${file}: ${r.error}`]
  })
  if (unresolved.length) throw new InputError(`scenarios run: ${unresolved.join('\n')}`)
  const ctx: RunContext = { cpus: cat.cpus, vmms: cat.vmms, machines: {} }
  // opts.machines: a test's own tier (a slowed fake, to see TAP stream).
  if (opts.machines) Object.assign(ctx.machines, opts.machines)
  if (tiers.includes('sim') && !opts.machines?.sim) ctx.machines.sim = simMachine
  if (tiers.includes('kvm')) ctx.machines.kvm = await kvmMachine({ cpuid: cpuidMode, ...(values['no-cpuid-proof'] ? { prove: false } : {}) })
  if (tiers.includes('qemu')) ctx.machines.qemu = { unavailable: 'scenario cases do not run on the qemu tier: QEMU implements no virtual MSRs (its tier boots the scenarios/qemu matrix instead)' }
  // The qemu matrix: built-in, or a `qemu` directory next to each given cases path (as for `cpus`).
  let qemuBoots: QemuBoot[] = []
  if (tiers.includes('qemu')) {
    const qdirs = (positionals.length ? positionals.map(p => join(dirname(resolve(p)), 'qemu')) : [builtinQemuDir()]).filter((d): d is string => !!d && existsSync(d))
    const m = loadQemuMatrix([...new Set(qdirs)])
    if (m.errors.length) throw new InputError(`bad qemu matrix file:\n${m.errors.join('\n')}`)
    qemuBoots = shard(selectSet(m.boots, qemuSet).filter(b => matchesFilter({ scenario: { name: b.name }, name: `${b.name} [qemu]` }, filter)), sh.i, sh.n)
  }

  const all = makeUnits(loaded.scenarios, tiers).filter(u => matchesFilter(u, filter))
  const units = shard(all, sh.i, sh.n)
  const exhaustiveSelected = values.exhaustive && tiers.includes('sim') && sh.i === 1 && matchesFilter({ scenario: { name: EXHAUSTIVE_NAME }, name: `${EXHAUSTIVE_NAME} [sim]` }, filter)
  // Nothing to run is an input error, not a pass (a typo in --filter must not go green).
  if (units.length === 0 && qemuBoots.length === 0 && !exhaustiveSelected) {
    throw new InputError(`scenarios run: nothing selected: ${loaded.scenarios.length} scenario(s) in ${paths.join(', ')}${values.filter !== undefined ? `, none matching --filter "${values.filter}"` : ''}${sh.n > 1 ? ` in shard ${sh.i}/${sh.n}` : ''} on tier ${tierArg}`)
  }
  const tty = opts.isTTY ?? process.stderr.isTTY === true
  const quiet = values.quiet === true
  const progress = tty && !quiet ? (d: number, t: number, name: string) => io.err(`\r\x1b[K[${d}/${t}] ${name}`) : undefined
  const t0 = performance.now()
  if (values.emit !== undefined) {
    try { realDir(values.emit) } catch (err) { throw new InputError(`scenarios run: --emit ${values.emit}: ${(err as Error).message}`) }
  }
  // TAP streams: the plan is known before anything runs (one point per run, exhaustive, qemu boot).
  let n = 0
  const tap = !values.json
  const put = (p: TapPoint) => { if (tap) io.out(tapStreamPoint(version === 13 ? withFailureSummary(p) : p, ++n, version)) }
  if (tap) io.out(tapStreamHeader(units.length + (exhaustiveSelected ? 1 : 0) + qemuBoots.length, version))
  const emitted: string[] = []
  const results: UnitResult[] = await runUnits(units, ctx, jobs, progress, r => {
    if (progress) io.err('\r\x1b[K')
    if (values.emit !== undefined && r.run && r.hostCaps) {
      const e = emitRun(values.emit, r.unit.scenario.name, r.unit.tier, r.run, r.hostCaps, `scenario ${r.unit.scenario.name}: host ${r.unit.scenario.host.cpu}`, r.resetCtrl)
      if (e) emitted.push(e.dir)
    }
    put(r.point)
  })
  if (progress) io.err('\r\x1b[K')
  const points: TapPoint[] = []
  const comments: string[] = []
  // The exhaustive matrix is one more unit, on the sim tier, subject to --filter and to shard 1.
  let exhaustive: Awaited<ReturnType<typeof runExhaustive>> | undefined
  if (exhaustiveSelected) {
    exhaustive = runExhaustive()
    points.push(exhaustive.point)
    put(exhaustive.point)
    comments.push(`# exhaustive: ${exhaustive.cases} cases (${exhaustive.refused} of them refused userspace forces; ${exhaustive.guestRuns} guest runs, ${exhaustive.vmmRuns} VMM runs), ${exhaustive.ms.toFixed(0)} ms wall, ${exhaustive.cpuMs.toFixed(0)} ms CPU`)
  }
  // Boots run one at a time whatever --jobs says (two TCG guests overload a 2-core machine).
  let qemu: Awaited<ReturnType<typeof runQemuTier>> | undefined
  if (qemuBoots.length > 0) {
    const paths = opts.qemu ? opts.qemu.paths : tierPaths()
    const line = !quiet && tty
    qemu = await runQemuTier({
      boots: qemuBoots, paths, unavailable: opts.qemu ? opts.qemu.unavailable : qemuTierUnavailable(paths),
      ...(opts.qemu?.deps ? { deps: opts.qemu.deps } : {}),
      // Each boot's point as soon as it is judged: the TAP stream promised by its plan.
      onPoint: p => { if (line) io.err('\r\x1b[K'); put(p) },
      // A boot takes 5-25 s and the full matrix an hour: a log (no TTY) gets one plain line per boot.
      ...(quiet ? {} : {
        progress: tty ? (d: number, t: number, name: string) => io.err(`\r\x1b[K[qemu ${d}/${t}] ${name}`)
          : (d: number, t: number, name: string, row?: BootRow) => io.err(`[qemu ${d}/${t}] ${row?.status ?? 'done'}${row?.seconds !== undefined ? ` ${row.seconds.toFixed(1)} s` : ''} ${name}\n`),
      }),
    })
    if (line) io.err('\r\x1b[K')
    points.push(...qemu.points)
    comments.push(...qemu.rows.map(r => `# ${r.status} ${r.seconds !== undefined ? `${r.seconds.toFixed(1)} s` : '-'} ${r.name}: kernel "${r.facts?.kernelLine ?? '-'}"; agent ${r.facts?.agentKernel ? `${r.facts.agentKernel.spectreV2}/${r.facts.agentKernel.bhi}` : '-'}; predicted ${r.facts?.agentExpected ? `${r.facts.agentExpected.spectreV2}/${r.facts.agentExpected.bhi}` : '-'}`))
  }
  const failed = results.some(r => r.status === 'fail') || (exhaustive !== undefined && !exhaustive.point.ok) || (qemu?.rows.some(r => r.status === 'fail') ?? false)
  if (values.junit !== undefined) {
    const cases: JunitCase[] = [
      ...results.map(r => ({ suite: r.unit.tier, name: r.unit.name, classname: `virtmiti.scenarios.${r.unit.tier}`, ms: r.ms, point: r.point })),
      ...points.map(p => ({ suite: p.name === exhaustive?.point.name ? 'sim' : 'qemu', name: p.name, classname: p.name === exhaustive?.point.name ? 'virtmiti.scenarios.sim' : 'virtmiti.scenarios.qemu', ms: 0, point: p })),
    ]
    try { writeFileExclusive(resolve(values.junit), junitXml(cases, performance.now() - t0)) } catch (err) { throw new InputError(`scenarios run: --junit ${values.junit}: ${(err as Error).message}`) }
  }
  if (values.json) {
    io.out(JSON.stringify({
      schema: RUN_SCHEMA_ID,
      shard: `${sh.i}/${sh.n}`,
      ok: !failed,
      runs: results.map(r => ({ name: r.unit.name, scenario: r.unit.scenario.name, tier: r.unit.tier, file: r.unit.file, status: r.status, ms: Math.round(r.ms), ...(r.point.skip ? { skip: r.point.skip } : {}), ...(r.status === 'fail' ? { points: r.point.sub ?? [r.point] } : {}) })),
      ...(qemu ? { qemu: { set: qemuSet, ...(qemu.image ? { image: qemu.image } : {}), boots: qemu.rows } } : {}),
      ...(exhaustive ? { exhaustive: { cases: exhaustive.cases, refused: exhaustive.refused, ms: Math.round(exhaustive.ms), cpuMs: Math.round(exhaustive.cpuMs), ok: exhaustive.point.ok, failures: exhaustive.point.diag?.['firstFailures'] ?? [] } } : {}),
    }, (_k, v) => (typeof v === 'bigint' ? '0x' + v.toString(16) : v), 2) + '\n')
  } else if (comments.length) {
    io.out(comments.join('\n') + '\n')
  }
  if (emitted.length) io.err(`emitted ${emitted.length} run(s) under ${values.emit}\n`)
  io.err(summaryTable(results, tiers) + (qemu ? qemuTable(qemu.rows) : '') + (exhaustive ? `exhaustive matrix: ${exhaustive.point.ok ? 'pass' : 'FAIL'}, ${exhaustive.cases} cases in ${exhaustive.ms.toFixed(0)} ms (${exhaustive.cpuMs.toFixed(0)} ms CPU)\n` : '') + `wall time ${((performance.now() - t0) / 1000).toFixed(2)} s\n`)
  if (failed) return EXIT.VIOLATION
  // DESIGN.md: 4 only when the whole run cannot apply, i.e. every selected run was skipped.
  const ran = results.some(r => r.status === 'pass') || exhaustive !== undefined || (qemu?.rows.some(r => r.status === 'pass') ?? false)
  return ran ? EXIT.OK : EXIT.SKIP
}

/**
 * TAP 13 readers skip the indented subtest: a failed run's point also carries its failing checks
 * (name and diagnostics, one line each) so that prove shows what failed.
 */
function withFailureSummary(p: TapPoint): TapPoint {
  if (p.ok || p.skip !== undefined || !p.sub) return p
  const failed = (ps: readonly TapPoint[], prefix: string): string[] => ps.flatMap(x => x.ok || x.skip !== undefined ? [] : x.sub ? failed(x.sub, `${prefix}${x.name} > `) : [`${prefix}${x.name}`])
  return { ...p, diag: { ...(p.diag ?? {}), failed: failed(p.sub, ''), details: p.sub.filter(x => !x.ok && x.skip === undefined && x.diag).map(x => ({ point: x.name, ...x.diag })) } }
}
