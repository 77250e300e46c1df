// Scenario schema: strict fields, bit names checked against the register tables, per-vCPU
// expansion, fail verdicts need `caught`, and the JSON Schema export.
import t from 'tap'
import { scenarioFromDoc, scenarioJsonSchema } from './scenario.js'

const doc = () => ({
  name: 'x', description: 'd', source: 'contract/CONTRACT.md section 5',
  host: { cpu: 'sapphire-rapids' }, guest: { cpu: 'cascade-lake', vcpus: 2n }, vmm: { profile: 'reference' },
  kernel: { cmdline: '', spectreV2: 'Mitigation: Retpolines; BHI: SW loop, KVM: SW loop' },
  expected: {
    decision: { bhbClearSeqSUsed: true, retpolineSUsed: true }, enumerated: true,
    mitiCtrl: ['BHB_CLEAR_SEQ_S_USED', 'RETPOLINE_S_USED'], forced: { mask: ['BHI_DIS_S'], value: ['BHI_DIS_S'] }, verdict: 'pass',
  },
} as Record<string, any>)

t.test('a valid document expands per vCPU and defaults the tiers', async t => {
  const r = scenarioFromDoc(doc())
  if (!r.ok) return t.fail(JSON.stringify(r.errors))
  t.equal(r.scenario.guest.vcpus, 2, 'YAML bigint vcpus become a Number')
  t.same(r.scenario.mitiCtrlPerVcpu, [['BHB_CLEAR_SEQ_S_USED', 'RETPOLINE_S_USED'], ['BHB_CLEAR_SEQ_S_USED', 'RETPOLINE_S_USED']])
  t.same(r.scenario.forcedPerVcpu[1], { mask: ['BHI_DIS_S'], value: ['BHI_DIS_S'] })
  t.same(r.scenario.tiersResolved, ['sim', 'kvm'])
})

t.test('errors name the path and what was expected', async t => {
  const cases: [(d: Record<string, any>) => void, string, RegExp][] = [
    [d => { d.extra = 1 }, '', /Unrecognized key/],
    [d => { d.expected.forced.mask = ['BHI_DIS'] }, 'expected.forced.mask.0', /IA32_SPEC_CTRL bit name/],
    [d => { d.expected.mitiCtrl = ['BHI_DIS_S'] }, 'expected.mitiCtrl.0', /MSR_VIRTUAL_MITIGATION_CTRL bit name/],
    [d => { d.guest.vcpus = 0n }, 'guest.vcpus', /at least 1 vCPU/],
    [d => { d.guest.archCapabilities = ['VIRTUAL_ENUM'] }, 'guest.archCapabilities', /VMM profile decides bit 63/],
    [d => { d.expected.verdict = 'fail' }, 'expected.caught', /expected `caught/],
    [d => { d.expected.verdict = 'fail'; d.expected.caught = { check: 'check.forced-mask' } }, 'expected.caught.bit', /bit the failure names/],
    [d => { d.expected.caught = { check: 'check.forced-mask', bit: 'BHI_DIS_S' } }, 'expected.caught', /no `caught` when verdict is pass/],
    [d => { d.expected.mitiCtrl = { perVcpu: [[]] } }, 'expected.mitiCtrl.perVcpu', /expected 2 entries/],
    [d => { d.tiers = ['xen'] }, 'tiers.0', /expected one of sim, kvm, qemu/],
    // Richer expectations (issue 13): the valid ids are named.
    [d => { d.expected.guest = { verdict: 'safe' } }, 'expected.guest.verdict', /expected a guest verdict \(protected, at-risk, vulnerable, unknown/],
    [d => { d.expected.guest = { verdict: 'at-risk', findings: ['vmm.not-advertised'] } }, 'expected.guest.findings.0', /expected a finding id of contract\/findings\.ts \(kernel\.bhi-vulnerable, .*vmm\.not-enumerated/],
    [d => { d.expected.guest = { verdict: 'at-risk', concerns: { rrsba: 'at-risk' } } }, 'expected.guest.concerns', /Unrecognized key/],
    [d => { d.expected.guest = { verdict: 'at-risk', concerns: { bhi: 'fine' } } }, 'expected.guest.concerns.bhi', /expected a guest verdict/],
    [d => { d.expected.hostCheck = { perVcpu: [true, ['forced-masks']] } }, 'expected.hostCheck.perVcpu.1.0', /expected a host check item id \(guest-readback, .*forced-mask/],
    [d => { d.expected.hostCheck = { perVcpu: [true, 'no'] } }, 'expected.hostCheck.perVcpu.1', /expected true \(all items ok\), false \(some item fails\) or the list of failing item ids/],
  ]
  for (const [mut, path, msg] of cases) {
    const d = doc(); mut(d)
    const r = scenarioFromDoc(d)
    if (r.ok) { t.fail(`accepted: ${path}`); continue }
    const hit = r.errors.find(e => e.path.join('.') === path)
    t.ok(hit, `error at "${path}" (got ${JSON.stringify(r.errors)})`)
    t.match(hit?.message ?? '', msg)
  }
})

t.test('richer expectations parse: guest verdict, concerns, findings, per-vCPU failing items', async t => {
  const d = doc()
  d.expected.guest = { verdict: 'at-risk', concerns: { retpoline: 'at-risk' }, findings: ['vmm.enum-lacks-bit', 'kernel.prediction-mismatch'] }
  d.expected.hostCheck = { perVcpu: [true, ['forced-mask', 'effective']] }
  const r = scenarioFromDoc(d)
  if (!r.ok) return t.fail(JSON.stringify(r.errors))
  t.same(r.scenario.expected.guest?.findings, ['vmm.enum-lacks-bit', 'kernel.prediction-mismatch'])
  t.same(r.scenario.expected.hostCheck?.perVcpu, [true, ['forced-mask', 'effective']])
})

t.test('JSON Schema export is strict and names every top-level field', async t => {
  const s = scenarioJsonSchema() as { properties: Record<string, unknown>; additionalProperties: boolean; required: string[]; $id: string }
  t.equal(s.additionalProperties, false)
  t.same(Object.keys(s.properties).sort(), ['description', 'expected', 'guest', 'host', 'kernel', 'name', 'source', 'tiers', 'vmm'])
  t.same(s.required.sort(), ['description', 'expected', 'guest', 'host', 'kernel', 'name', 'source', 'vmm'])
  t.match(JSON.stringify(s), /"BHI_DIS_S"/, 'bit names are enumerated')
})
