#!/usr/bin/env node
// Make every citation of the contract name the file a cloner has: "CONTRACT.md" (the team's
// design input outside the repository) -> "contract/CONTRACT.md" (issue 12). Mechanical and
// idempotent: run it again after merging other branches; it changes only what is still bare.
//   node scripts/cite-contract.mjs          rewrite tracked files in place, print what changed
//   node scripts/cite-contract.mjs --check  exit 1 if anything is still bare (changes nothing)
// Rules:
//   - `CONTRACT.md` not preceded by a word character, '/', '.', '\' or '-' becomes
//     `contract/CONTRACT.md`; in regular-expression text, `CONTRACT\.md` (same condition) becomes
//     `contract\/CONTRACT\.md`.
//   - Left alone: contract/CONTRACT.md itself; this script; recordings of past runs (host/qemu/testdata/);
//     package-lock.json; contract/contract-doc.test.ts, whose patterns are about citations
//     (only its RENAMED flag is set to true, so that it then insists on the in-repo path).
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const root = execFileSync('git', ['rev-parse', '--show-toplevel'], { encoding: 'utf8' }).trim()
const check = process.argv.includes('--check')
const SKIP = [/^scripts\/cite-contract\.mjs$/, /^contract\/CONTRACT\.md$/, /^host\/qemu\/testdata\//, /^package-lock\.json$/, /^contract\/contract-doc\.test\.ts$/]
const TEXT = /\.(ts|mts|mjs|js|md|yaml|yml|json|sh|txt)$|^Makefile$|(^|\/)\.ci\//
const BARE = /(?<![\w/.\\-])CONTRACT\.md/g
const BARE_RE = /(?<![\w/.\\-])CONTRACT\\\.md/g

let changed = 0
for (const f of execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean)) {
  if (SKIP.some(r => r.test(f)) || !TEXT.test(f)) continue
  const p = join(root, f)
  const before = readFileSync(p, 'utf8')
  const after = before.replace(BARE_RE, 'contract\\/CONTRACT\\.md').replace(BARE, 'contract/CONTRACT.md')
  if (after === before) continue
  const n = (before.match(BARE) ?? []).length + (before.match(BARE_RE) ?? []).length
  changed += n
  process.stdout.write(`${f}: ${n}\n`)
  if (!check) writeFileSync(p, after)
}
const flag = join(root, 'contract', 'contract-doc.test.ts')
const t = readFileSync(flag, 'utf8')
if (t.includes('const RENAMED = false')) {
  changed++
  process.stdout.write('contract/contract-doc.test.ts: RENAMED = true\n')
  if (!check) writeFileSync(flag, t.replace('const RENAMED = false', 'const RENAMED = true'))
}
process.stdout.write(`${changed} change(s)${check ? ' needed' : ''}\n`)
if (check && changed > 0) process.exitCode = 1
