// Runner pieces: shard partitioning, glob filter, the built-in catalog location and loading.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { globRe, judge, judgeGuest, makeUnits, parseShard, shard } from './run.js'
import type { Observed } from './chain.js'
import { builtinCasesDir, packageRoot } from './catalog.js'
import { loadScenarios, parseScenario } from './scenario-file.js'

t.test('shards of n are complete and disjoint for every n up to 7', async t => {
  const items = Array.from({ length: 23 }, (_, i) => i)
  for (let n = 1; n <= 7; n++) {
    const got = Array.from({ length: n }, (_, k) => shard(items, k + 1, n)).flat()
    t.same([...got].sort((a, b) => a - b), items, `n=${n}: union is everything, once`)
  }
  t.same(parseShard('2/5'), { i: 2, n: 5 })
  for (const bad of ['0/3', '4/3', '1/0', 'a/b', '1-2']) t.equal(parseShard(bad), undefined, bad)
})

t.test('glob filter', async t => {
  t.ok(globRe('faulty-*').test('faulty-forces-nothing'))
  t.notOk(globRe('faulty-*').test('migration-pool'))
  t.ok(globRe('*-[bh]ost').test('bhi-no-host'))
  t.ok(globRe('a?c').test('abc'))
  t.notOk(globRe('a.c').test('abc'), 'a dot is literal')
  t.notOk(globRe('x [sim]').test('x [sim]'), '[..] is a character class, as in shells')
  t.ok(globRe('x [sim]').test('x s'))
})

t.test('the built-in catalog is found from the module and every file loads with a unique name', async t => {
  const root = packageRoot()!
  t.ok(existsSync(join(root, 'package.json')), `package root ${root}`)
  const l = loadScenarios([builtinCasesDir()!])
  t.same(l.errors, [])
  t.ok(l.scenarios.length >= 24)
  const units = makeUnits(l.scenarios, ['sim', 'kvm'])
  t.equal(new Set(units.map(u => u.name)).size, units.length, 'unit names unique')
  t.ok(l.scenarios.every(s => /CONTRACT\.md section/.test(s.scenario.source)), 'every scenario cites contract/CONTRACT.md')
})

t.test('duplicate scenario names are an error at the second file', async t => {
  const dir = builtinCasesDir()!
  const f = join(dir, 'bhi-no-host.yaml')
  const l = loadScenarios([f, f])
  t.equal(l.scenarios.length, 1)
  t.match(l.errors[0]?.message, /unique scenario name: "bhi-no-host" is also used by/)
  t.equal(l.errors[0]?.field, 'name')
})

t.test('parse errors point at the offending node', async t => {
  const r = parseScenario('name: x\ndescription: d\nsource: s\nhost: { cpu: Bad_Id }\n', 'f.yaml')
  if (r.ok) return t.fail('accepted')
  const e = r.errors.find(x => x.field === 'host.cpu')
  t.same(e && [e.line, e.column], [4, 14])
  const missing = r.errors.find(x => x.field === 'guest')
  t.ok(missing, 'missing field named')
})

t.test('judgeGuest: verdict, concerns and findings (notes aside unless named)', async t => {
  const o: Observed['guest'] = { verdict: 'at-risk', concerns: { bhi: 'protected', retpoline: 'at-risk' }, findings: [{ id: 'vmm.enum-lacks-bit', effect: 'at-risk' }, { id: 'kernel.prediction-mismatch', effect: 'note' }] }
  const oks = (e: Parameters<typeof judgeGuest>[0]) => judgeGuest(e, o).map(p => p.ok)
  t.same(oks({ verdict: 'at-risk', concerns: { retpoline: 'at-risk' }, findings: ['vmm.enum-lacks-bit'] }), [true, true, true])
  t.same(oks({ verdict: 'at-risk', findings: ['vmm.enum-lacks-bit', 'kernel.prediction-mismatch'] }), [true, true], 'a named note must be there')
  t.same(oks({ verdict: 'protected', concerns: { bhi: 'at-risk' }, findings: [] }), [false, false, false], 'each part can fail')
  t.same(oks({ verdict: 'at-risk', findings: ['vmm.enum-lacks-bit', 'vmm.not-enumerated'] }), [true, false], 'a missing finding fails')
  t.same(oks({ verdict: 'at-risk', findings: ['vmm.enum-lacks-bit', 'kernel.no-prediction'] }), [true, false], 'a named note that is absent fails')
  const miss = judgeGuest({ verdict: 'at-risk', findings: [] }, o)[1]!
  t.same(miss.diag?.['extra'], ['vmm.enum-lacks-bit'])
  t.equal(judgeGuest({ verdict: 'protected' }, undefined)[0]!.ok, false, 'no verdict computed is a failure, never a pass')
})

t.test('judge: a per-vCPU outcome may list exactly the failing items', async t => {
  const l = loadScenarios([join(builtinCasesDir()!, 'faulty-forces-nothing-on-one-vcpu.yaml')])
  const s = l.scenarios[0]!.scenario
  const base: Observed = { decision: s.expected.decision, enumerated: true, vcpus: [], failures: [], reportExit: 0, notes: [], hostCheckPerVcpu: [true, false] }
  const point = (failing: string[][]) => judge(s, { ...base, hostCheckFailingPerVcpu: failing }).find(p => p.name.startsWith('host check per vCPU'))!
  t.ok(point([[], ['forced-mask', 'forced-value', 'effective']]).ok)
  const bad = point([[], ['forced-mask']])
  t.notOk(bad.ok, 'another set of failing items fails')
  t.match(JSON.stringify(bad.diag), /vCPU 1: fails forced-mask, forced-value, effective.*vCPU 1: fails forced-mask"/)
})

t.test('a bad expectation id is an input error with file, line, field and the valid ids', async t => {
  const text = readFileSync(join(builtinCasesDir()!, 'vmm-enumerates-bhb-only.yaml'), 'utf8').replace('findings: [vmm.enum-lacks-bit]', 'findings: [vmm.enum-lacks-bits]')
  const r = parseScenario(text, 'x.yaml')
  if (r.ok) return t.fail('accepted')
  const e = r.errors[0]!
  t.equal(e.file, 'x.yaml')
  t.equal(e.line, text.split('\n').findIndex(l => l.includes('vmm.enum-lacks-bits')) + 1, 'the line of the bad id')
  t.match(e.field, /^expected\.guest\.findings(\[0\]|\.0)$/)
  t.match(e.message, /expected a finding id of contract\/findings\.ts \(.*vmm\.enum-lacks-bit,/)
})
