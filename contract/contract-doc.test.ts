// The rules the output cites live in the repository (issue 12): every "CONTRACT.md section N" cited
// in the sources, the scenario data and the agent's own output exists in contract/CONTRACT.md; and
// (once scripts/cite-contract.mjs has run) every citation names that file, none one outside the
// repository.
import t from 'tap'
import * as fs from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { main as probeMain } from '../guest/cli/probe.js'
import { FINDINGS } from './findings.js'
import { VERDICT_RULES } from './verdict.js'

/** Set by scripts/cite-contract.mjs when it renames the citations; then they must all name the file. */
const RENAMED = true

const repo = join(fileURLToPath(import.meta.url), '..', '..')
const doc = fs.readFileSync(join(repo, 'contract', 'CONTRACT.md'), 'utf8')
const sections = new Set([...doc.matchAll(/^## (\d+)\. /gm)].map(m => Number(m[1])))

/** Files a cloner gets, as far as citations go: sources, data and docs (recordings of past runs excluded). */
function files(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) { if (!['node_modules', 'dist', '.cache', '.tap', 'coverage', 'testdata'].includes(e.name)) files(p, out) }
    else if (/\.(ts|mjs|md|yaml|json|sh)$/.test(e.name) && !p.endsWith(join('contract', 'CONTRACT.md'))) out.push(p)
  }
  return out
}
const scanned = ['bin', 'contract', 'guest', 'host', 'scripts', 'scenarios', 'bench'].flatMap(d => files(join(repo, d))).concat([join(repo, 'README.md')])

/** "CONTRACT.md section 3", "CONTRACT.md sections 3 and 5", "CONTRACT.md sections 3, 4 and 6". */
const CITE = /CONTRACT\.md sections? (\d+(?:(?:, | and )\d+)*)/g
const cited = (text: string) => [...text.matchAll(CITE)].flatMap(m => m[1]!.split(/, | and /).map(Number))

t.test('contract/CONTRACT.md keeps sections 1-8', async t => {
  t.same([...sections].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8])
})

t.test('every section cited in the repository exists in contract/CONTRACT.md', async t => {
  let n = 0
  for (const f of scanned) {
    const text = fs.readFileSync(f, 'utf8')
    for (const s of cited(text)) { n++; if (!sections.has(s)) t.fail(`${relative(repo, f)} cites section ${s}, which contract/CONTRACT.md does not have`) }
  }
  t.ok(n > 100, `${n} citations checked in ${scanned.length} files`)
  t.same(cited(['x CONTRACT.md sections 3, 4 and 6;', 'CONTRACT.md section', '9'].join(' ')), [3, 4, 6, 9], 'the citation pattern reads lists')
})

t.test('every section the agent cites in its output (reasons, findings, rules) exists', async t => {
  const texts: string[] = [...FINDINGS.flatMap(f => f.sources), ...VERDICT_RULES.flatMap(r => r.sources)]
  const dir = join(repo, 'guest', 'fixtures')
  for (const f of fs.readdirSync(dir).filter(x => x.endsWith('.json') && x !== 'expected.json')) {
    const out: string[] = []
    await probeMain(['--replay', join(dir, f), '--json', '--explain'], { io: { out: s => { out.push(s) }, err: () => {} } })
    texts.push(out.join(''))
  }
  const all = texts.join('\n')
  const secs = cited(all)
  t.ok(secs.length > 50, `${secs.length} citations in the output`)
  for (const s of new Set(secs)) t.ok(sections.has(s), `section ${s} exists`)
  t.notMatch(all, /\.\.\/shared|\/work\/shared/, 'no path outside the repository')
  if (RENAMED) t.notMatch(all, /(?<![\w/.-])CONTRACT\.md/, 'every citation names contract/CONTRACT.md')
})

t.test('no source or data file cites a file outside the repository', async t => {
  for (const f of scanned) {
    const text = fs.readFileSync(f, 'utf8')
    if (/\.\.\/shared\/(CONTRACT|DESIGN|KVM-NOTES)\.md/.test(text)) t.fail(`${relative(repo, f)} points at ../shared`)
    // This test and the rename script speak about citations; they are not citations.
    const aboutCitations = f.endsWith(join('contract', 'contract-doc.test.ts')) || f.endsWith(join('scripts', 'cite-contract.mjs'))
    if (RENAMED && !aboutCitations && /(?<![\w/.\\-])CONTRACT\.md/.test(text)) t.fail(`${relative(repo, f)}: a citation without the in-repo path contract/CONTRACT.md`)
  }
  t.pass(`${scanned.length} files`)
})
