// TAP 14/13 writer (bin/lib/tap.ts): every document it writes parses with tap-parser in strict mode
// (TAP 14 spec: testanything.org/tap-version-14-specification.html), counts match, '#' is escaped.
import t from 'tap'
import { Parser } from 'tap-parser'
import { allOk, tapDocument, type TapPoint } from './tap.js'

function parse(text: string): Promise<{ ok: boolean; count: number; pass: number; fail: number; skip: number; todo: number; failures: unknown[] }> {
  return new Promise(res => { const p = new Parser({ strict: true }, r => res(r as never)); p.end(text) })
}

const POINTS: TapPoint[] = [
  { ok: true, name: 'plain' },
  { ok: false, name: 'fails # with a hash', diag: { kernel: 'BHI: SW loop, KVM: SW loop', value: 0x8000000000000000n, list: ['a', 'b'], nested: { x: 1 } } },
  { ok: false, name: 'skipped', skip: 'no msr driver' },
  { ok: false, name: 'todo', todo: 'later' },
  { ok: true, name: 'parent', sub: [{ ok: true, name: 'child 1' }, { ok: false, name: 'child 2' }] },
  { ok: true, name: '12 starts with a digit' },
]

t.test('TAP 14 document parses strictly, with skip/todo/diag and a subtest', async t => {
  const doc = tapDocument(POINTS)
  t.match(doc, /^TAP version 14\n1\.\.6\n/)
  t.match(doc, /not ok 2 - fails \\# with a hash\n {2}---\n {2}kernel: "BHI: SW loop, KVM: SW loop"\n {2}value: "0x8000000000000000"\n/)
  t.match(doc, /ok 3 - skipped # SKIP no msr driver\n/)
  t.match(doc, /# Subtest: parent\n {4}1\.\.2\n {4}ok 1 - child 1\n {4}not ok 2 - child 2\nok 5 - parent\n/)
  const r = await parse(doc)
  t.equal(r.count, 6)
  t.equal(r.skip, 1)
  t.equal(r.todo, 1)
  t.equal(r.fail, 2, 'the failing point and the todo (which does not fail the run)')
  t.equal(r.ok, false)
})

t.test('TAP 13 flattens subtests as "parent > child"; a parent with a failing child fails', async t => {
  const doc = tapDocument(POINTS, 13)
  t.match(doc, /^TAP version 13\n1\.\.8\n/)
  t.match(doc, /ok 5 - parent > child 1\nnot ok 6 - parent > child 2\nnot ok 7 - parent\n/)
  const r = await parse(doc)
  t.equal(r.count, 8)
})

t.test('allOk: skips count as ok, failures in subtests do not', async t => {
  t.equal(allOk([{ ok: true, name: 'a' }, { ok: false, name: 'b', skip: 'why' }]), true)
  t.equal(allOk(POINTS), false)
  t.equal(allOk([{ ok: true, name: 'p', sub: [{ ok: false, name: 'c' }] }]), false)
  const r = await parse(tapDocument([{ ok: true, name: 'a' }, { ok: false, name: 'b', skip: 'why' }]))
  t.equal(r.ok, true)
})
