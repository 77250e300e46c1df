#!/usr/bin/env node
// The plain closing line of `make test`: "N passed, N failed, N skipped", summed over node-tap's
// final count (.cache/tap.log) and the scenario runner's (.cache/scenarios.err).
import { readFileSync } from 'node:fs'

const read = f => { try { return readFileSync(f, 'utf8') } catch { return '' } }
let pass = 0, fail = 0, skip = 0
const tap = [...read('.cache/tap.log').matchAll(/^# \{ total: \d+, pass: (\d+)(?:, fail: (\d+))?(?:, skip: (\d+))?/gm)].pop()
if (tap) { pass += +tap[1]; fail += +(tap[2] ?? 0); skip += +(tap[3] ?? 0) }
const sc = [...read('.cache/scenarios.err').matchAll(/^(\d+) runs: (\d+) pass, (\d+) fail, (\d+) skip/gm)].pop()
if (sc) { pass += +sc[2]; fail += +sc[3]; skip += +sc[4] }
if (!tap || !sc) { console.log(`test summary: missing ${!tap ? 'node-tap' : ''}${!tap && !sc ? ' and ' : ''}${!sc ? 'scenario' : ''} counts`); process.exitCode = 1 }
console.log(`${pass} passed, ${fail} failed, ${skip} skipped`)
