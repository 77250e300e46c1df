// The one YAML loader (CPU models, scenarios) against hostile files (issue 14 items 4 and 5):
// every problem is file:line:column and an error result (exit 2 in the CLIs), never a throw, a
// hang or unbounded memory.
import t from 'tap'
import * as fs from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { parseYamlFile, readTextFile, YAML_MAX_BYTES, type DocCheck } from './yaml-file.js'
import { loadCpuFile } from './cpus.js'
import { loadScenarioFile } from './scenario-file.js'

const dir = fs.mkdtempSync(join(tmpdir(), 'virtmiti-yaml-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
const any = (doc: unknown): DocCheck<unknown> => ({ ok: true, value: doc })

const BOMB = ['a: &a ["x","x","x","x","x","x","x","x","x"]', ...Array.from({ length: 9 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill('*' + String.fromCharCode(97 + i)).join(',')}]`)].join('\n')

t.test('an anchor bomb is an error at the alias, not a crash', async t => {
  const start = Date.now()
  const r = parseYamlFile(BOMB, 'bomb.yaml', any)
  t.equal(r.ok, false)
  if (!r.ok) t.match(r.errors[0], { file: 'bomb.yaml', line: 2, field: '(document)', message: /YAML aliases: .*alias/ })
  t.ok(Date.now() - start < 2000, 'fast')
})

t.test('an undefined alias is an error with its line and column', async t => {
  const r = parseYamlFile('id: x\nname: *nowhere\n', 'u.yaml', any)
  t.equal(r.ok, false)
  if (!r.ok) t.match(r.errors[0], { file: 'u.yaml', line: 2, column: 7 })
})

t.test('duplicate keys are found in linear time (the quadratic check took 93 s for 40k keys)', async t => {
  const keys = (n: number) => Array.from({ length: n }, (_, i) => `k${i}: ${i}`)
  const time = (n: number) => { const s = keys(n).join('\n') + '\n'; const t0 = process.hrtime.bigint(); t.equal(parseYamlFile(s, 'many.yaml', any).ok, true); return Number(process.hrtime.bigint() - t0) / 1e6 }
  // Scaling, not wall time (the machine is shared): 4x the keys must cost far less than 16x.
  time(2000)
  const small = time(5000), big = time(20_000)
  t.ok(big / small < 10, `5k keys ${small.toFixed(0)} ms, 20k keys ${big.toFixed(0)} ms: ratio ${(big / small).toFixed(1)} (quadratic would be about 16)`)
  const dup = parseYamlFile([...keys(20_000), 'k17: again'].join('\n') + '\n', 'dup.yaml', any)
  t.equal(dup.ok, false)
  if (!dup.ok) t.match(dup.errors[0], { line: 20_001, column: 1, message: /duplicate key "k17"/ })
  t.equal(parseYamlFile('a:\n  x: 1\nb:\n  x: 2\n', 'n.yaml', any).ok, true, 'the same key in different maps is fine')
})

t.test('a check that throws is an error result, not a crash', async t => {
  const r = parseYamlFile('a: 1\n', 'c.yaml', () => { throw new Error('boom') })
  t.equal(r.ok, false)
})

t.test('CPU model and scenario loaders: /dev/zero behind a symlink, a FIFO, a directory, a huge file are refused at once', async t => {
  const zero = join(dir, 'zero.yaml'); fs.symlinkSync('/dev/zero', zero)
  const fifo = join(dir, 'fifo.yaml'); execFileSync('mkfifo', [fifo])
  const big = join(dir, 'big.yaml'); fs.writeFileSync(big, 'a: 1\n'); fs.truncateSync(big, YAML_MAX_BYTES + 1)
  const bomb = join(dir, 'bomb.yaml'); fs.writeFileSync(bomb, BOMB)
  for (const [f, re] of [[zero, /character device: refused/], [fifo, /FIFO: refused/], [dir, /directory: refused/], [big, /larger than/], [bomb, /YAML aliases/]] as const) {
    for (const load of [loadCpuFile, loadScenarioFile]) {
      const start = Date.now()
      const r = load(f)
      t.equal(r.ok, false, f)
      if (!r.ok) t.match(r.errors[0]?.message ?? '', re, `${load.name} ${f}`)
      t.ok(Date.now() - start < 3000, 'no hang')
    }
  }
  t.equal(readTextFile(join(dir, 'missing.yaml')).ok, false)
})
