#!/usr/bin/env node
// `make bench` (issue 2): cost of `virtmiti guest probe` on this machine, run after `make bundle`.
//  (a) wall time of `guest probe` against `node -e 0`, as a ratio of medians over alternating runs
//      (goal <= 1.5x, --goal-ratio); `--version` shows what loading the bundle alone costs.
//  (b) per-CPU cost under --dev-root: (median on a 256-CPU tree - median on a 1-CPU tree) / 255
//      (goal < 50 us per CPU); the trees enumerate ARCH_CAP bit 63 and the virtual MSRs, so every
//      CPU reads the whole discovery chain (4 CPUID leaves + 5th, 4 MSRs); beside it the floor, node's
//      fs calls alone for the same registers (bench/fs-floor.mjs).
// Runs alternate so that load from other processes hits every variant alike; the spread (min,
// quartiles, max) is printed because this machine is shared. Besides wall time, each run's CPU time
// (user + sys of the child and its children, from bash's `times`) is reported: it does not count
// time spent waiting for a CPU, so it is the steadier figure on a loaded machine. The per-CPU cost
// is also measured in process (bench/per-cpu.ts, bundled here with esbuild) where start-up noise
// cannot drown it; the goal is judged on its CPU time (process.cpuUsage). Prints a table, then one JSON line.
// Usage: node bench/probe.mjs [--runs N] [--json] [--bundle FILE] [--goal-ratio X]
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildTree } from './fake-tree.mjs'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const bundleArg = args.indexOf('--bundle')
// --bundle FILE: measure another build of the CLI (e.g. a minified or code-split one) the same way.
const bundle = bundleArg >= 0 ? args[bundleArg + 1] : join(repo, 'dist', 'virtmiti.mjs')
const runsArg = args.indexOf('--runs')
const RUNS = runsArg >= 0 ? Math.max(15, Number(args[runsArg + 1]) || 21) : 21
const jsonOnly = args.includes('--json')
// Goal of issue 2 for the full CLI; issue 15 asks 1.3x of the guest bundle (--goal-ratio 1.3).
const goalArg = args.indexOf('--goal-ratio')
const GOAL_RATIO = goalArg >= 0 ? Number(args[goalArg + 1]) || 1.5 : 1.5
const GOAL_PER_CPU_US = 50

if (!fs.existsSync(bundle)) {
  process.stderr.write(`bench: ${bundle} missing: run "make bundle" first\n`)
  process.exit(2)
}

const env = { ...process.env, NO_COLOR: '1' }
// bash runs the command and prints its children's user and sys time ("0m0.084s 0m0.006s").
const WRAP = '"$@" >/dev/null 2>&1; rc=$?; times; exit $rc'
const secs = s => { const m = /^(\d+)m([\d.]+)s$/.exec(s); return m ? Number(m[1]) * 60 + Number(m[2]) : NaN }
/** One child process: wall ms and CPU ms; fails loudly on an unexpected exit code. */
function timeRun(argv, okCodes = [0]) {
  const t0 = process.hrtime.bigint()
  const r = spawnSync('bash', ['-c', WRAP, 'bash', process.execPath, ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' })
  const wall = Number(process.hrtime.bigint() - t0) / 1e6
  if (r.error) throw r.error
  if (!okCodes.includes(r.status)) throw new Error(`${argv.join(' ')}: exit ${r.status}\n${r.stderr}`)
  const [u, sy] = r.stdout.trim().split('\n').at(-1).split(/\s+/).map(secs)
  return { wall, cpu: (u + sy) * 1000 }
}

const sorted = a => [...a].sort((x, y) => x - y)
const q = (a, p) => { const s = sorted(a); const i = (s.length - 1) * p; const lo = Math.floor(i), hi = Math.ceil(i); return s[lo] + (s[hi] - s[lo]) * (i - lo) }
const median = a => q(a, 0.5)
const stats = a => ({ median: median(a), min: Math.min(...a), q1: q(a, 0.25), q3: q(a, 0.75), max: Math.max(...a), n: a.length })
const f1 = x => x.toFixed(1)

/** Run each variant once per round, rotating the order, for `rounds` rounds: { name: { wall: [], cpu: [] } }. */
function alternate(variants, rounds) {
  const names = Object.keys(variants)
  const out = Object.fromEntries(names.map(k => [k, { wall: [], cpu: [] }]))
  for (let i = 0; i < 2; i++) for (const n of names) variants[n]() // warm the page cache, not counted
  for (let r = 0; r < rounds; r++) {
    for (let j = 0; j < names.length; j++) {
      const n = names[(r + j) % names.length]
      const m = variants[n]()
      out[n].wall.push(m.wall)
      out[n].cpu.push(m.cpu)
    }
  }
  return out
}

// ---- (a) probe vs node -e 0 on this machine -----------------------------------------------------
// guest probe exits 3 where the msr driver is missing (this machine): that is a normal outcome.
const a = alternate({
  'node -e 0': () => timeRun(['-e', '0']),
  'virtmiti --version': () => timeRun([bundle, '--version']),
  'virtmiti guest probe': () => timeRun([bundle, 'guest', 'probe'], [0, 1, 3]),
}, RUNS)
const ratioOf = (k, what) => median(a[k][what]) / median(a['node -e 0'][what])
// Per-round ratios too: robust against load drifting over the run.
const roundRatios = what => a['virtmiti guest probe'][what].map((v, i) => v / a['node -e 0'][what][i])

// ---- (b) per-CPU cost under --dev-root ----------------------------------------------------------
const N = 256
const dir = fs.mkdtempSync(join(tmpdir(), 'virtmiti-bench-'))
let b, inproc
try {
  const t1 = buildTree(join(dir, 'cpu1'), 1)
  const tN = buildTree(join(dir, `cpu${N}`), N)
  b = alternate({
    '1 CPU': () => timeRun([bundle, 'guest', 'probe', '--dev-root', t1]),
    [`${N} CPUs`]: () => timeRun([bundle, 'guest', 'probe', '--dev-root', tN]),
    [`${N} CPUs --json`]: () => timeRun([bundle, 'guest', 'probe', '--dev-root', tN, '--json']),
    // The floor: node's fs calls for the same registers, nothing else (bench/fs-floor.mjs).
    'fs floor 1 CPU': () => timeRun([join(repo, 'bench', 'fs-floor.mjs'), t1]),
    [`fs floor ${N} CPUs`]: () => timeRun([join(repo, 'bench', 'fs-floor.mjs'), tN]),
  }, RUNS)
  // In process: the command without start-up (bench/per-cpu.ts).
  const harness = join(repo, '.cache', 'bench-per-cpu.mjs')
  const { build } = await import('esbuild')
  await build({ entryPoints: [join(repo, 'bench', 'per-cpu.ts')], bundle: true, platform: 'node', format: 'esm', target: 'node18', outfile: harness, external: ['koffi'], logLevel: 'warning',
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" } })
  inproc = {}
  for (const extra of [[], ['--json']]) {
    const r = spawnSync(process.execPath, [harness, t1, tN, String(RUNS), ...extra], { env, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`per-cpu harness: exit ${r.status}\n${r.stderr}`)
    const { oneUs, manyUs, oneCpuUs, manyCpuUs } = JSON.parse(r.stdout)
    inproc[extra.length ? 'json' : 'human'] = {
      wall: { one: stats(oneUs), many: stats(manyUs) }, cpu: { one: stats(oneCpuUs), many: stats(manyCpuUs) },
      perCpuUs: (median(manyCpuUs) - median(oneCpuUs)) / (N - 1),
      perCpuUsWall: (median(manyUs) - median(oneUs)) / (N - 1),
      perCpuUsWallMin: (Math.min(...manyUs) - Math.min(...oneUs)) / (N - 1),
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
const perCpu = (k, what, base = '1 CPU') => (median(b[k][what]) - median(b[base][what])) / (N - 1) * 1000
const os = await import('node:os')

const allRuns = { ...a, ...Object.fromEntries(Object.entries(b).map(([k, v]) => [`--dev-root ${k}`, v])) }
const result = {
  machine: { node: process.version, cpus: os.cpus().length, loadavg: os.loadavg().map(x => +x.toFixed(2)) },
  runs: RUNS,
  wallMs: Object.fromEntries(Object.entries(allRuns).map(([k, v]) => [k, stats(v.wall)])),
  cpuMs: Object.fromEntries(Object.entries(allRuns).map(([k, v]) => [k, stats(v.cpu)])),
  ratio: {
    goal: GOAL_RATIO,
    probeVsNodeWall: ratioOf('virtmiti guest probe', 'wall'), probeVsNodeCpu: ratioOf('virtmiti guest probe', 'cpu'),
    versionVsNodeWall: ratioOf('virtmiti --version', 'wall'), versionVsNodeCpu: ratioOf('virtmiti --version', 'cpu'),
    perRoundWall: stats(roundRatios('wall')), perRoundCpu: stats(roundRatios('cpu')),
    metWall: ratioOf('virtmiti guest probe', 'wall') <= GOAL_RATIO, metCpu: ratioOf('virtmiti guest probe', 'cpu') <= GOAL_RATIO,
  },
  perCpuUs: {
    goal: GOAL_PER_CPU_US,
    processWall: perCpu(`${N} CPUs`, 'wall'), processCpu: perCpu(`${N} CPUs`, 'cpu'), processCpuJson: perCpu(`${N} CPUs --json`, 'cpu'),
    fsFloorCpu: perCpu(`fs floor ${N} CPUs`, 'cpu', 'fs floor 1 CPU'), fsFloorWall: perCpu(`fs floor ${N} CPUs`, 'wall', 'fs floor 1 CPU'),
    inProcess: inproc.human.perCpuUs, inProcessJson: inproc.json.perCpuUs,
    inProcessWall: inproc.human.perCpuUsWall, inProcessWallMin: inproc.human.perCpuUsWallMin,
    inProcessDetail: inproc,
    processCpuMin: (Math.min(...b[`${N} CPUs`].cpu) - Math.min(...b['1 CPU'].cpu)) / (N - 1) * 1000,
    // The goal as issue 2 states it: a 256-CPU run against a 1-CPU run of the command (CPU time, the
    // steadier of the two on a shared machine). The in-process figures show the warm per-CPU work alone.
    met: perCpu(`${N} CPUs`, 'cpu') < GOAL_PER_CPU_US,
    metInProcess: inproc.human.perCpuUs < GOAL_PER_CPU_US && inproc.json.perCpuUs < GOAL_PER_CPU_US,
  },
}

if (!jsonOnly) {
  const rows = [['variant', 'wall ms', 'min', 'q1', 'q3', 'max', 'cpu ms', 'min', 'q1', 'q3', 'max']]
  for (const k of Object.keys(allRuns)) {
    const w = result.wallMs[k], c = result.cpuMs[k]
    rows.push([k, f1(w.median), f1(w.min), f1(w.q1), f1(w.q3), f1(w.max), f1(c.median), f1(c.min), f1(c.q1), f1(c.q3), f1(c.max)])
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  const line = r => r.map((c, i) => i === 0 ? c.padEnd(w[i]) : c.padStart(w[i])).join('  ')
  const R = result.ratio, P = result.perCpuUs
  const x = v => v.toFixed(2) + 'x'
  const out = [`virtmiti bench: ${RUNS} alternating runs per variant (medians), node ${process.version}, ${result.machine.cpus} CPUs, load ${result.machine.loadavg.join(' ')}`, '', ...rows.map(line), '',
    `(a) guest probe / node -e 0: wall ${x(R.probeVsNodeWall)}, cpu ${x(R.probeVsNodeCpu)} (goal <= ${GOAL_RATIO}x: wall ${R.metWall ? 'met' : 'MISSED'}, cpu ${R.metCpu ? 'met' : 'MISSED'})`,
    `    per-round ratio: wall median ${x(R.perRoundWall.median)} (q1-q3 ${x(R.perRoundWall.q1)}-${x(R.perRoundWall.q3)}), cpu median ${x(R.perRoundCpu.median)} (q1-q3 ${x(R.perRoundCpu.q1)}-${x(R.perRoundCpu.q3)})`,
    `    --version / node -e 0 (loading the bundle alone): wall ${x(R.versionVsNodeWall)}, cpu ${x(R.versionVsNodeCpu)}`,
    `(b) per CPU, (${N} CPUs - 1 CPU) / ${N - 1} under --dev-root, goal < ${GOAL_PER_CPU_US} us:`,
    `    whole process: cpu ${f1(P.processCpu)} us (min-based ${f1(P.processCpuMin)} us; --json ${f1(P.processCpuJson)} us), wall ${f1(P.processWall)} us: ${P.met ? 'met' : 'MISSED'}`,
    `    floor, node's fs calls alone for the same registers (bench/fs-floor.mjs): cpu ${f1(P.fsFloorCpu)} us, wall ${f1(P.fsFloorWall)} us; the agent's own code adds ${f1(P.processCpu - P.fsFloorCpu)} us`,
    `    in process (warm code, no start-up): cpu ${f1(P.inProcess)} us, --json ${f1(P.inProcessJson)} us; wall median-based ${f1(P.inProcessWall)} us, min-based ${f1(P.inProcessWallMin)} us: ${P.metInProcess ? 'met' : 'MISSED'}`,
    '']
  process.stdout.write(out.join('\n') + '\n')
}
process.stdout.write(JSON.stringify(result) + '\n')
