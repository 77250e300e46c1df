// The published JSON Schemas (contract/schemas/*.schema.json) equal what scripts/gen-schemas.ts
// generates from the zod schemas now, so they never drift (regenerate with `make schemas`), and
// they are usable: read back as a validator (z.fromJSONSchema) they accept every replay fixture and
// a probe document, and refuse a wrong value.
import t from 'tap'
import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { schemaFiles } from '../../scripts/gen-schemas.js'
import { main } from '../../guest/cli/probe.js'
import * as fs from 'node:fs'
import { tmpdir } from 'node:os'
import { main as expectMain } from '../../host/cli/expect.js'
import { main as checkMain } from '../../host/cli/check.js'
import { simulatedPlatform } from '../../host/vmm/simulated.js'
import { profileByName } from '../../host/vmm/profiles.js'
import { vmmStateJson } from '../../host/vmm/state.js'
import { miniGuestReport, TEST_UUID } from '../../host/check/fixtures.js'
import type { CpuModel } from '../cpu-model.js'
import { ExpectJson, CheckResultJson } from '../host-output-schemas.js'
import { ScenarioRunJson, VmmRunJson } from '../run-output-schemas.js'
import { runReport } from '../../guest/apply/report.js'
import { RecordedPlatform } from '../../guest/recorded.js'
import { readFactsFile } from '../../guest/facts-file.js'
import { decide } from '../decide.js'

const here = join(fileURLToPath(import.meta.url), '..')
const fixtures = join(here, '..', '..', 'guest', 'fixtures')
const generated = schemaFiles()

t.test('committed JSON Schemas equal the generated ones (run `make schemas` after changing a zod schema)', async t => {
  t.same(Object.keys(generated).sort(), ['check-result.schema.json', 'cpu-model.schema.json', 'expect.schema.json', 'facts.schema.json', 'guest-report.schema.json', 'host-caps.schema.json', 'probe.schema.json', 'scenario-run.schema.json', 'scenario.schema.json', 'vmm-run.schema.json', 'vmm-state.schema.json', 'vmm.schema.json'])
  const committed = readdirSync(here).filter(f => f.endsWith('.schema.json')).sort()
  t.same(committed, Object.keys(generated).sort(), 'no stale or missing files')
  for (const [file, text] of Object.entries(generated)) {
    const path = join(here, file)
    t.equal(existsSync(path) ? readFileSync(path, 'utf8') : '(missing)', text, `${file} up to date`)
  }
})

t.test('the facts JSON Schema accepts every fixture and refuses a number where hex is expected', async t => {
  const v = z.fromJSONSchema(JSON.parse(generated['facts.schema.json']!))
  const files = existsSync(fixtures) ? readdirSync(fixtures).filter(f => f.endsWith('.json') && f !== 'expected.json') : []
  for (const f of files) {
    const doc = JSON.parse(readFileSync(join(fixtures, f), 'utf8'))
    t.ok(v.safeParse(doc).success, `${f} valid`)
  }
  if (files[0]) {
    const doc = JSON.parse(readFileSync(join(fixtures, files[0]), 'utf8'))
    doc.cpus[0].msr['0x10a'] = { value: 5 }
    t.notOk(v.safeParse(doc).success, 'MSR value as a number refused')
    doc.cpus[0].msr['0x10a'] = { value: '0x5', extra: 1 }
    t.notOk(v.safeParse(doc).success, 'unknown field refused (strict objects)')
  }
})

const probeFixture = join(fixtures, 'skylake-sp-guest-enum.json')
t.test('the probe JSON Schema accepts a real --json document', { skip: existsSync(probeFixture) ? false : 'fixture missing' }, async t => {
  const v = z.fromJSONSchema(JSON.parse(generated['probe.schema.json']!))
  const f = probeFixture
  const out: string[] = []
  await main(['--replay', f, '--json'], { io: { out: s => { out.push(s) }, err: () => {} } })
  const doc = JSON.parse(out.join(''))
  t.ok(v.safeParse(doc).success, 'valid')
  doc.status = 'fine'
  t.notOk(v.safeParse(doc).success, 'status outside the enum refused')
})

// ---- host expect / host check output (issue 12): every JSON kind has a published schema with $id --

const SPR_LIKE: CpuModel = {
  id: 'spr', name: 'SPR-like', vendor: 'GenuineIntel', family: 6, model: 0x8f, stepping: 8,
  cpuid7_0_edx: ((1 << 26) | (1 << 27) | (1 << 29) | (1 << 31)) >>> 0, cpuid7_2_edx: 0x17, archCapabilities: (1n << 19n) | 0x2bn, sources: {},
}
const SPR = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }

async function capture(f: (io: { out: (s: string) => void; err: (s: string) => void }) => Promise<number>) {
  const out: string[] = []
  const code = await f({ out: s => { out.push(s) }, err: () => {} })
  return { code, doc: JSON.parse(out.join('')) as Record<string, unknown> }
}

t.test('expect.schema.json and check-result.schema.json have $id and accept real output', async t => {
  const dir = fs.mkdtempSync(join(tmpdir(), 'virtmiti-schemas-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const put = (n: string, s: string) => { const p = join(dir, n); fs.writeFileSync(p, s); return p }
  const ex = JSON.parse(generated['expect.schema.json']!), cr = JSON.parse(generated['check-result.schema.json']!)
  t.equal(ex.$id, 'https://virtmiti.invalid/schema/expect/v1.json')
  t.equal(cr.$id, 'https://virtmiti.invalid/schema/check-result/v1.json')
  // Every document the tools print (the input-only cpu-model and scenario files are their owners').
  for (const f of ['facts', 'probe', 'guest-report', 'host-caps', 'expect', 'check-result', 'vmm-state']) t.match(JSON.parse(generated[`${f}.schema.json`]!).$id, /^https:\/\/virtmiti\.invalid\/schema\//, `${f}.schema.json has $id`)
  const vEx = z.fromJSONSchema(ex), vCr = z.fromJSONSchema(cr)
  // A real guest report from the agent (a dry run on a replay fixture whose MITI_ENUM lacks bit 0).
  const facts = readFactsFile(join(fixtures, 'ice-lake-sp-guest-enum.json'))
  const f2 = { ...facts, cpus: facts.cpus.map(c => ({ ...c, msr: { ...c.msr, '0x50000001': { value: 2n } } })) }
  const rep = runReport(new RecordedPlatform(f2), f2, decide(f2), { dryRun: true, now: new Date(0), agentVersion: 'test' }).report
  const repFile = put('report.json', JSON.stringify(rep))
  for (const argv of [['--guest-report', repFile, '--caps', 'bhiCtrl,rrsbaCtrl,rrsba', '--json'], ['--miti-ctrl', '0x1,0x0', '--caps', 'bhiCtrl', '--userspace-mask', '0x4', '--json']]) {
    const r = await capture(io => expectMain(argv, { io }))
    t.ok(ExpectJson.safeParse(r.doc).success, `${argv[0]}: zod`)
    t.ok(vEx.safeParse(r.doc).success, `${argv[0]}: published schema`)
  }
  const bad = (await capture(io => expectMain(['--miti-ctrl', '0x1', '--caps', 'bhiCtrl', '--json'], { io }))).doc
  ;(bad.vcpus as { forcedMask: string }[])[0]!.forcedMask = '0X400'
  t.notOk(vEx.safeParse(bad).success, 'upper-case hex refused')
  // host check: a passing and a failing VM, and unreadable inputs.
  for (const profile of ['reference', 'no-virtual-msrs']) {
    const { platform, vmm } = simulatedPlatform({ presented: { model: SPR_LIKE, hypervisor: true, archCapabilities: 0n }, hostCaps: SPR, profile: profileByName(profile)!, vcpus: 2, sysfs: {} })
    const report = put(`${profile}-r.json`, JSON.stringify(miniGuestReport(platform, { ctrl: () => 3n })))
    const state = put(`${profile}-s.json`, JSON.stringify(vmmStateJson(vmm, TEST_UUID)))
    const r = await capture(io => checkMain(['--guest-report', report, '--vmm-state', state, '--json'], { io }))
    t.ok(CheckResultJson.safeParse(r.doc).success, `${profile}: zod`)
    t.ok(vCr.safeParse(r.doc).success, `${profile}: published schema (exit ${r.code})`)
  }
  const e = await capture(io => checkMain(['--guest-report', put('junk.json', '{}'), '--vmm-state', put('junk2.json', '[]'), '--json'], { io }))
  t.equal(e.code, 2)
  t.ok(vCr.safeParse(e.doc).success, 'input-error form')
  t.notOk(vCr.safeParse({ ...e.doc, extra: 1 }).success, 'unknown field refused')
})

// vmm-run/v1 and scenario-run/v1 (issue 12 item 7): published with $id, and real output of both
// commands validates against the zod schema and against the published file read back as a validator.
t.test('scenario-run.schema.json and vmm-run.schema.json have $id and accept real output; unknown fields refused', async t => {
  const generated = schemaFiles()
  const sr = JSON.parse(generated['scenario-run.schema.json']!), vr = JSON.parse(generated['vmm-run.schema.json']!)
  t.equal(sr.$id, 'https://virtmiti.invalid/schema/scenario-run/v1.json')
  t.equal(vr.$id, 'https://virtmiti.invalid/schema/vmm-run/v1.json')
  const vSr = z.fromJSONSchema(sr), vVr = z.fromJSONSchema(vr)
  const capture = async (fn: (io: { out: (s: string) => void; err: (s: string) => void }) => Promise<number>) => {
    let out = ''
    const code = await fn({ out: s => { out += s }, err: () => {} })
    return { code, doc: JSON.parse(out) }
  }
  const { main: scenariosMain } = await import('../../host/cli/scenarios-run.js')
  // A passing and a failing sim run (a wrong expectation), so that failed runs' points are covered.
  const pass = await capture(io => scenariosMain(['--tier', 'sim', '--json', '--filter', 'faulty-forces-nothing*'], { io, isTTY: false }))
  t.equal(pass.code, 0)
  for (const [what, doc] of [['passing', pass.doc], ['with the exhaustive matrix', (await capture(io => scenariosMain(['--tier', 'sim', '--json', '--filter', 'exhaustive*', '--exhaustive'], { io, isTTY: false }))).doc]] as const) {
    t.ok(ScenarioRunJson.safeParse(doc).success, `scenarios run ${what}: zod ${JSON.stringify(ScenarioRunJson.safeParse(doc).error?.issues?.slice(0, 2))}`)
    t.ok(vSr.safeParse(doc).success, `scenarios run ${what}: published schema`)
  }
  const bad = JSON.parse(JSON.stringify(pass.doc))
  bad.runs[0].status = 'fail'; bad.runs[0].points = [{ ok: false, name: 'x', diag: { a: 1 }, sub: [{ ok: true, name: 'y' }] }]
  t.ok(vSr.safeParse(bad).success, 'a failed run with nested points')
  t.notOk(vSr.safeParse({ ...pass.doc, extra: 1 }).success, 'unknown top-level field refused')
  const { main: vmmRunMain } = await import('../../host/cli/vmm-run.js')
  const v = await capture(io => vmmRunMain(['--cpu-model', 'cascade-lake', '--profile', 'forces-nothing', '--json'], { io }))
  // Exit 1 (the fault caught) where /dev/kvm works, 4 (skipped, with the reason) where it does not: both are documents of this kind.
  t.ok([1, 4].includes(v.code), `exit ${v.code}`)
  t.ok(VmmRunJson.safeParse(v.doc).success, `host vmm run: zod ${JSON.stringify(VmmRunJson.safeParse(v.doc).error?.issues?.slice(0, 2))}`)
  t.ok(vVr.safeParse(v.doc).success, 'host vmm run: published schema')
  t.notOk(vVr.safeParse({ ...v.doc, extra: 1 }).success, 'unknown top-level field refused')
})
