// Format evolution (contract/EVOLUTION.md): a newer v1 document (an added optional field) is read
// by today's reader, today's document by a reader of a later revision, and a change that needs a
// new major is refused. Documents come from a real simulated run (the catalog's migration-pool case).
import t from 'tap'
import { join } from 'node:path'
import { z } from 'zod'
import { parseGrowing } from './evolution.js'
import { GuestReport } from './report-json.js'
import { VmmState } from './vmm-state-json.js'
import { builtinCasesDir } from '../host/runner/catalog.js'
import { loadScenarioFile } from '../host/runner/scenario-file.js'
import { resolveScenario } from '../host/runner/resolve.js'
import { loadCatalogs } from '../host/runner/catalogs.js'
import { chainSetup, runChain } from '../host/runner/chain.js'
import { simMachine } from '../host/runner/machines.js'
import { checkFromText } from '../host/check/from-text.js'

async function documents() {
  const f = loadScenarioFile(join(builtinCasesDir()!, 'migration-pool-cascade-lake-on-sapphire-rapids.yaml'))
  if (!f.ok) throw new Error('catalog file')
  const c = loadCatalogs({ cpus: [], vmms: [], allowShadow: false })
  const r = resolveScenario(f.scenario, c.cpus, c.vmms)
  if (!r.ok) throw new Error(r.error)
  const run = await runChain(chainSetup(f.scenario, r.value.host, r.value.guest, r.value.profile), simMachine, f.scenario.kernel.spectreV2)
  const plain = (v: unknown) => JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? '0x' + x.toString(16) : x)))
  return { report: plain(run.report!.report), state: plain(run.state!) }
}

t.test('a newer v1 document (added optional fields) is read by today\'s reader, which says what it ignored', async t => {
  const { report, state } = await documents()
  t.ok(GuestReport.safeParse(report).success && VmmState.safeParse(state).success, 'today\'s documents are valid')
  const newer = { ...report, kernelGeneration: '7.x', cpus: report.cpus.map((c: object) => ({ ...c, verdictId: 'ok' })) }
  t.notOk(GuestReport.safeParse(newer).success, 'the strict schema alone refuses it')
  const r = parseGrowing(GuestReport, newer)
  t.ok(r.success, 'parseGrowing reads it')
  if (r.success) {
    t.same(r.data, GuestReport.parse(report), 'what it read equals the older document')
    t.same([...r.ignored].sort(), ['kernelGeneration', ...report.cpus.map((_: unknown, i: number) => `cpus.${i}.verdictId`)].sort())
  }
  const s = parseGrowing(VmmState, { ...state, vcpus: state.vcpus.map((v: object) => ({ ...v, specCtrlHost: '0x0' })) })
  t.ok(s.success, 'a newer VMM state too')
  // Known fields keep every check: a bad value next to an unknown field still fails.
  t.notOk(parseGrowing(GuestReport, { ...newer, vmUuid: 'NOT-A-UUID' }).success, 'known fields still validated')
  t.notOk(parseGrowing(GuestReport, JSON.parse(JSON.stringify(newer).replace('"schema"', '"__proto__":{"x":1},"schema"'))).success, '__proto__ never ignored')
  t.notOk(parseGrowing(GuestReport, { ...report, schema: 'virtmiti/guest-report/v2' }).success, 'another major is refused')
  // The input itself is not changed.
  t.ok('kernelGeneration' in newer)
})

t.test('today\'s document is read by a reader of a later v1 revision (its new field optional)', async t => {
  const { report, state } = await documents()
  const LaterReport = GuestReport.extend({ kernelGeneration: z.string().max(16).optional() })
  const LaterState = VmmState.extend({ vmmVersionNote: z.string().optional() })
  t.ok(LaterReport.safeParse(report).success, 'older guest report accepted')
  t.ok(LaterState.safeParse(state).success, 'older VMM state accepted')
  // Why anything else is a new major: a required addition breaks the older documents.
  const NotV1 = GuestReport.extend({ kernelGeneration: z.string() })
  t.notOk(NotV1.safeParse(report).success, 'a required field would refuse every older document: that is v2')
})

t.test('host check (today\'s reader) checks a newer agent\'s report and a newer VMM\'s state as it checks today\'s', async t => {
  const { report, state } = await documents()
  const today = checkFromText({ report: JSON.stringify(report), state: JSON.stringify(state) })
  const newer = checkFromText({
    report: JSON.stringify({ ...report, kernelGeneration: '7.x', cpus: report.cpus.map((c: object) => ({ ...c, verdictId: 'ok' })) }),
    state: JSON.stringify({ ...state, vmm: { ...state.vmm, build: 'x' } }),
  })
  t.ok(today.ok && newer.ok, 'both read')
  if (today.ok && newer.ok) t.same(newer.result, today.result, 'same result')
  // Unknown fields next to a real problem: refused, every problem listed.
  const bad = checkFromText({ report: JSON.stringify({ ...report, kernelGeneration: '7.x', vmUuid: 'NOT-A-UUID' }), state: JSON.stringify(state) })
  t.notOk(bad.ok)
  if (!bad.ok) t.ok(bad.errors.some(e => /vmUuid/.test(e)) && bad.errors.some(e => /kernelGeneration/.test(e)), bad.errors.join('; '))
})
