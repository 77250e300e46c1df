// VMM definitions as data (issue 13): the built-in files load through the one YAML loader, say what
// contract/CONTRACT.md sections 3 and 5 call them (hand-written below), the published JSON Schema accepts
// them and refuses a wrong one, and errors carry file:line:column.
import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { z } from 'zod'
import { builtinVmmsDir } from './catalog.js'
import { loadVmmCatalog, parseVmm } from './vmms.js'
import { vmmJsonSchema } from '../../contract/vmm-definition.js'
import { VMM_FAULTS } from '../vmm/profile.js'

const dir = builtinVmmsDir()!
const cat = loadVmmCatalog(dir)

t.test('every built-in definition loads; the ten fault ids each have their profile, by the same name', async t => {
  t.same(cat.errors, [])
  t.ok(cat.vmms.size >= 17)
  for (const f of VMM_FAULTS) t.same([...(cat.vmms.get(f)?.faults ?? [])], [f], `${f}.yaml has exactly fault ${f}`)
})

t.test('what the files say, written by hand from contract/CONTRACT.md', async t => {
  const ref = cat.vmms.get('reference')!
  t.match(ref, { advertise: true, mitiEnum: 3n, userspaceForce: { mask: 0n, value: 0n }, specCtrl: 'intercepted', unknownMsr: 'fault' })
  t.equal(ref.virtualEnumeration ?? 1n, 1n, 'VIRTUAL_ENUMERATION bit 0')
  t.equal(ref.resetCtrl ?? 0n, 0n, 'CTRL 0 after reset (section 3)')
  t.match(cat.vmms.get('bhb-only'), { mitiEnum: 1n })
  t.match(cat.vmms.get('read-zero'), { advertise: false, mitiEnum: 0n, unknownMsr: 'read-zero-ignore-write' })
  t.match(cat.vmms.get('userspace-force-bhi'), { userspaceForce: { mask: 0x400n, value: 0x400n } })
  t.match(cat.vmms.get('guest-overrides-userspace'), { userspaceForce: { mask: 0x400n, value: 0n } })
  t.match(cat.vmms.get('reference-virtualized'), { specCtrl: 'virtualized' })
})

t.test('per-vCPU knobs, defaults and refusals', async t => {
  const r = parseVmm('id: x\ndescription: d\nadvertise: true\nmitiEnum: [BHB_CLEAR_SEQ_S_SUPPORT]\nctrl: { initial: { perVcpu: [[BHB_CLEAR_SEQ_S_USED], []] }, reset: [] }\nfaults: [enum-writable, { fault: forces-nothing, vcpus: [1] }]\n', '/d/x.yaml')
  if (!r.ok) return t.fail(JSON.stringify(r.errors))
  t.same(r.vmm.initialCtrl, [1n, 0n])
  t.same([...r.vmm.faults], ['enum-writable'])
  t.same([...(r.vmm.vcpuFaults?.get(1) ?? [])], ['forces-nothing'])
  const bad = parseVmm('id: y\ndescription: d\nadvertise: false\n', '/d/x.yaml')
  t.notOk(bad.ok)
  if (!bad.ok) {
    t.match(bad.errors.map(e => `${e.line}:${e.column}: ${e.field}: ${e.message}`), [/^1:5: id: expected "x"/])
  }
  const noAdv = parseVmm('id: x\ndescription: d\nadvertise: false\nmitiEnum: [BHB_CLEAR_SEQ_S_SUPPORT]\n', '/d/x.yaml')
  t.match(!noAdv.ok && noAdv.errors[0], { line: 4, field: 'mitiEnum', message: /does not advertise/ })
  const unk = parseVmm('id: x\ndescription: d\nadvertise: true\nmitiEnums: []\n', '/d/x.yaml')
  t.match(!unk.ok && unk.errors[0], { line: 4, column: 1, message: /unknown field "mitiEnums"/ })
})

t.test('the published JSON Schema accepts every built-in file and refuses an unknown fault id', async t => {
  const v = z.fromJSONSchema(vmmJsonSchema() as any)
  for (const f of readdirSync(dir).filter(n => n.endsWith('.yaml'))) {
    t.ok(v.safeParse(parse(readFileSync(join(dir, f), 'utf8'))).success, f)
  }
  t.notOk(v.safeParse({ id: 'x', description: 'd', advertise: true, faults: ['no-such'] }).success)
  t.ok(v.safeParse({ description: 'd', advertise: true, faults: [{ fault: 'forces-nothing', vcpus: [1] }] }).success, 'per-vCPU fault form')
})
