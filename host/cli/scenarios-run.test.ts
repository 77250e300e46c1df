// `virtmiti scenarios run`: TAP in both versions parses strictly, a wrong expectation fails
// naming the bit, bad files give file:line:column, shards are complete and disjoint, filter works.
import t from 'tap'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Parser } from 'tap-parser'
import { main } from './scenarios-run.js'
import { InputError, UsageError } from '../../bin/lib/cli.js'
import { builtinCasesDir } from '../runner/catalog.js'

function capture() {
  const o = { out: '', err: '' }
  return { io: { out: (s: string) => { o.out += s }, err: (s: string) => { o.err += s } }, o }
}

async function run(argv: string[]) {
  const { io, o } = capture()
  const code = await main(argv, { io, isTTY: false })
  return { code, ...o }
}

/** Parse with tap-parser in strict mode; resolves the final result and every assertion seen. */
async function parseTap(text: string) {
  const p = new Parser({ strict: true })
  const asserts: { ok: boolean; name: string; todo?: unknown }[] = []
  const extra: string[] = []
  p.on('assert', (a: { ok: boolean; name: string; todo?: unknown }) => asserts.push(a))
  p.on('extra', (s: string) => extra.push(s))
  const done = new Promise<{ ok: boolean; count: number; pass: number; fail: number; plan: { start: number; end: number } }>(res => p.on('complete', res))
  p.end(text)
  return { result: await done, asserts, extra }
}

const CASES = builtinCasesDir()!
const SCEN = fs.readFileSync(path.join(CASES, 'migration-pool-cascade-lake-on-sapphire-rapids.yaml'), 'utf8')
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-scen-'))

for (const v of ['14', '13']) {
  t.test(`built-in catalog on the sim tier: TAP ${v} parses strictly, plan first, every run passes, exit 0`, async t => {
    const r = await run(['--tier', 'sim', '--tap-version', v])
    t.equal(r.code, 0, 'exit 0')
    const lines = r.out.split('\n')
    t.equal(lines[0], `TAP version ${v}`)
    t.match(lines[1], /^1\.\.\d+$/, 'plan right after the version line')
    const p = await parseTap(r.out)
    t.equal(p.result.ok, true, 'tap-parser: ok')
    t.equal(p.result.fail, 0)
    t.same(p.extra, [], 'no non-TAP lines')
    t.ok(p.result.count >= 24, `at least 24 runs (got ${p.result.count})`)
    t.match(r.err, new RegExp(`${p.result.count} runs: ${p.result.count} pass, 0 fail, 0 skip`), 'summary table on stderr')
    const names = p.asserts.map(a => a.name)
    t.equal(new Set(names).size, names.length, 'names are unique')
  })
}

t.test('a scenario whose expectation is wrong fails, and the diagnostic names the bit', async t => {
  const d = tmp()
  // The contract forces BHI_DIS_S here; claim RRSBA_DIS_S instead.
  fs.writeFileSync(path.join(d, 'wrong.yaml'), SCEN.replace('name: migration-pool-cascade-lake-on-sapphire-rapids', 'name: wrong-expectation')
    .replace('forced: { mask: [BHI_DIS_S], value: [BHI_DIS_S] }', 'forced: { mask: [RRSBA_DIS_S], value: [RRSBA_DIS_S] }'))
  const r = await run([d, '--tier', 'sim'])
  t.equal(r.code, 1, 'exit 1 on a failed run')
  t.match(r.out, /not ok 4 - forced SPEC_CTRL mask and value per vCPU as expected/)
  t.match(r.out, /field: "forcedMask"\n\s+expected:\n\s+- "RRSBA_DIS_S"\n\s+observed:\n\s+- "BHI_DIS_S"\n\s+missing:\n\s+- "RRSBA_DIS_S"\n\s+extra:\n\s+- "BHI_DIS_S"/, 'expected vs observed by bit name')
  t.match(r.out, /not ok 1 - wrong-expectation \[sim\]/)
  t.match(r.err, /wrong-expectation\s+FAIL/)
  const p = await parseTap(r.out)
  t.equal(p.result.ok, false)
})

t.test('a faulty profile expected to be caught naming the wrong bit fails with what was caught', async t => {
  const d = tmp()
  const src = fs.readFileSync(path.join(CASES, 'faulty-forces-nothing.yaml'), 'utf8')
  fs.writeFileSync(path.join(d, 'x.yaml'), src.replace('caught: { check: check.forced-mask, bit: BHI_DIS_S }', 'caught: { check: check.forced-mask, bit: RRSBA_DIS_S }'))
  const r = await run([d, '--tier', 'sim'])
  t.equal(r.code, 1)
  t.match(r.out, /not ok 5 - verdict fail: caught by check.forced-mask naming RRSBA_DIS_S/)
  t.match(r.out, /forced mask: missing BHI_DIS_S/, 'the diagnostic shows what the checker did say')
})

t.test('a correct VMM declared faulty fails: nothing caught', async t => {
  const d = tmp()
  fs.writeFileSync(path.join(d, 'x.yaml'), SCEN.replace('verdict: pass', 'verdict: fail\n  caught: { check: check.forced-mask, bit: BHI_DIS_S }'))
  const r = await run([d, '--tier', 'sim'])
  t.equal(r.code, 1)
  t.match(r.out, /no check failed: the faulty VMM went unnoticed/)
})

t.test('bad scenario files: file:line:column, field, what was expected; exit via InputError', async t => {
  const d = tmp()
  const f = path.join(d, 'bad.yaml')
  fs.writeFileSync(f, SCEN.replace('vcpus: 4', 'vcpus: many').replace('mitiCtrl: [BHB_CLEAR_SEQ_S_USED]', 'mitiCtrl: [BHB_CLEAR_SEQ_S_USED, BHI_DIS_S]'))
  const err = await main([d, '--tier', 'sim'], { io: capture().io }).then(() => undefined, e => e)
  t.ok(err instanceof InputError, 'InputError (exit 2)')
  const msg = (err as Error).message
  t.match(msg, new RegExp(`${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:10:\\d+: guest\\.vcpus: expected the vCPU count as an integer`))
  t.match(msg, /bad\.yaml:18:\d+: expected\.mitiCtrl\[1\]: expected a MSR_VIRTUAL_MITIGATION_CTRL bit name \(BHB_CLEAR_SEQ_S_USED, RETPOLINE_S_USED\)/)
  fs.writeFileSync(f, 'name: [unclosed\n')
  const e2 = await main([d, '--tier', 'sim'], { io: capture().io }).then(() => undefined, e => e)
  t.match((e2 as Error).message, /bad\.yaml:\d+:\d+: \(document\): YAML syntax/)
})

// Issue 13: an unknown id is an input error (exit 2) before anything runs, naming the valid ids
// and the directories searched.
t.test('unknown CPU or VMM ids are input errors naming the valid ids and the directories searched', async t => {
  const d = tmp()
  fs.writeFileSync(path.join(d, 'x.yaml'), SCEN.replace('cpu: sapphire-rapids', 'cpu: no-such-cpu'))
  await t.rejects(run([d, '--tier', 'sim']), { constructor: InputError, message: /x\.yaml: unknown host CPU "no-such-cpu"; valid CPU ids: .*sapphire-rapids.* \(searched .*scenarios\/cpus\)/ })
  fs.writeFileSync(path.join(d, 'x.yaml'), SCEN.replace(/profile: [a-z-]+/, 'profile: no-such-vmm'))
  await t.rejects(run([d, '--tier', 'sim']), { constructor: InputError, message: /unknown VMM "no-such-vmm"; valid VMM ids: .*reference.* \(searched .*scenarios\/vmms\)/ })
})

t.test('--shard i/n: complete and disjoint over the selected runs', async t => {
  const all = (await run(['--tier', 'sim', '--json'])).out
  const names = (JSON.parse(all).runs as { name: string }[]).map(r => r.name)
  const seen: string[] = []
  for (const i of [1, 2, 3]) {
    const r = await run(['--tier', 'sim', '--json', '--shard', `${i}/3`])
    t.equal(r.code, 0)
    seen.push(...(JSON.parse(r.out).runs as { name: string }[]).map(x => x.name))
  }
  t.same([...seen].sort(), [...names].sort(), 'the shards together are the whole run, each run once')
  t.equal(new Set(seen).size, seen.length, 'disjoint')
})

t.test('--filter GLOB selects by scenario name', async t => {
  const r = await run(['--tier', 'sim', '--filter', 'faulty-*', '--json'])
  const runs = JSON.parse(r.out).runs as { scenario: string; status: string }[]
  t.equal(runs.length, 11, 'the ten faulty profiles, and one fault on one vCPU')
  t.ok(runs.every(x => x.scenario.startsWith('faulty-') && x.status === 'pass'))
  // Nothing selected is an input error (exit 2), never a green run.
  await t.rejects(run(['--tier', 'sim', '--filter', 'no-such-*', '--json']), { constructor: InputError, message: /nothing selected: \d+ scenario\(s\) in .*none matching --filter "no-such-\*"/ })
})

t.test('tiers: not-selected scenarios tiers skip with the reason; qemu skips', async t => {
  const d = tmp()
  fs.writeFileSync(path.join(d, 'x.yaml'), SCEN + 'tiers: [sim]\n')
  const r = await run([d, '--tier', 'all', '--json'])
  t.equal(r.code, 0, 'exit 0')
  const runs = JSON.parse(r.out).runs as { tier: string; status: string; skip?: string }[]
  t.same(runs.map(x => [x.tier, x.status]), [['sim', 'pass'], ['kvm', 'skip'], ['qemu', 'skip']])
  t.match(runs[1]!.skip, /scenario runs on sim only/)
})

// DESIGN.md exit codes: 4 only when the whole run cannot apply, i.e. every selected run skipped;
// skipped points or some skipped runs still exit 0.
t.test('exit 4 only when every selected run was skipped', async t => {
  const d = tmp()
  fs.writeFileSync(path.join(d, 'x.yaml'), SCEN + 'tiers: [sim]\n')
  const r = await run([d, '--tier', 'kvm', '--json'])
  t.equal(r.code, 4)
  t.same((JSON.parse(r.out).runs as { status: string }[]).map(x => x.status), ['skip'])
  const mixed = await run([d, '--tier', 'all', '--json'])
  t.equal(mixed.code, 0, 'one run passed, the others skipped: exit 0')
})

t.test('usage errors', async t => {
  for (const argv of [['--tier', 'xen'], ['--cpuid', 'loose'], ['--shard', '4/3'], ['--shard', '0/1'], ['--tap-version', '12'], ['--jobs', '0'], ['--bogus']]) {
    const e = await main(argv, { io: capture().io }).then(() => undefined, err => err)
    t.ok(e instanceof UsageError, argv.join(' '))
  }
})

t.test('--exhaustive (TAP comment with the count) on a filter that selects only the matrix', async t => {
  const r = await run(['--tier', 'sim', '--exhaustive', '--filter', 'exhaustive-matrix'])
  t.equal(r.code, 0, 'exit 0')
  t.match(r.out, /^ok 1 - exhaustive-matrix \[sim\]$/m)
  t.match(r.out, /^# exhaustive: 746496 cases/m)
  const p = await parseTap(r.out)
  t.equal(p.result.ok, true)
})

const kvmWhy = (await import('../vmm/kvm/machine.js')).liveTierUnavailable()
t.test('kvm tier: scenarios on real vCPUs through the MSR filter', { skip: kvmWhy ?? false }, async t => {
  const a = await run(['--tier', 'kvm', '--json', '--filter', 'migration-pool-cascade-lake-*'])
  const b = await run(['--tier', 'kvm', '--json', '--filter', 'faulty-forces-nothing'])
  for (const x of [a, b]) {
    t.equal(x.code, 0, 'exit 0')
    const runs = JSON.parse(x.out).runs as { tier: string; status: string }[]
    t.same(runs.map(y => [y.tier, y.status]), [['kvm', 'pass']])
  }
})

t.test('progress line on a terminal only', async t => {
  const tty = capture()
  t.equal(await main(['--tier', 'sim', '--filter', 'bhi-no-host'], { io: tty.io, isTTY: true }), 0)
  t.match(tty.o.err, /\r\x1b\[K\[1\/1\] bhi-no-host \[sim\]/)
  const pipe = capture()
  t.equal(await main(['--tier', 'sim', '--filter', 'bhi-no-host'], { io: pipe.io, isTTY: false }), 0)
  t.notMatch(pipe.o.err, /\r/)
})

t.test('a failing run is well-formed TAP 13 too, and --jobs keeps the order', async t => {
  const d = tmp()
  fs.writeFileSync(path.join(d, 'wrong.yaml'), SCEN.replace('mitiCtrl: [BHB_CLEAR_SEQ_S_USED]', 'mitiCtrl: []'))
  const r = await run([d, '--tier', 'sim', '--tap-version', '13'])
  t.equal(r.code, 1)
  // TAP 13 keeps the subtest indented (readers skip it) and names the failing checks on the run's point.
  t.match(r.out, /\n {4}not ok \d+ - MITI_CTRL per vCPU as expected\n/)
  t.match(r.out, /\nnot ok 1 - migration-pool-cascade-lake-on-sapphire-rapids \[sim\]\n {2}---\n {2}failed:\n {4}- "MITI_CTRL per vCPU as expected"\n/)
  t.match(r.out, /extra:\n\s+- "BHB_CLEAR_SEQ_S_USED"/, 'the diagnostic names the bit')
  const p = await parseTap(r.out)
  t.equal(p.result.ok, false)
  t.same(p.extra, [], 'no non-TAP lines')
  const one = JSON.parse((await run(['--tier', 'sim', '--json'])).out).runs.map((x: { name: string }) => x.name)
  const four = JSON.parse((await run(['--tier', 'sim', '--json', '--jobs', '4'])).out).runs.map((x: { name: string }) => x.name)
  t.same(four, one)
})
