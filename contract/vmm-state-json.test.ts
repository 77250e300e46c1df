// The VMM state format: strict, versioned, published as JSON Schema.
import t from 'tap'
import { VmmState, VMM_STATE_SCHEMA_ID, vmmStateJsonSchema } from './vmm-state-json.js'

const ok = {
  schema: VMM_STATE_SCHEMA_ID, vmUuid: '0b9d7b0e-5a55-4c1e-9f7a-2d6b1f0c4e11', vmm: { name: 'x' },
  hostCaps: { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true },
  advertised: true, mitiEnum: '0x3', userspaceForce: { mask: '0x0', value: '0x0' }, specCtrl: 'intercepted',
  vcpus: [{ index: 0, mitiCtrl: '0x1', forcedMask: '0x400', forcedValue: '0x400', specCtrlShadow: '0x0', specCtrlEffective: '0x400' }],
}

t.test('vmm-state v1: a minimal valid state parses', async t => {
  t.equal(VmmState.safeParse(ok).success, true)
})

t.test('vmm-state v1: unknown fields are rejected at every level', async t => {
  t.equal(VmmState.safeParse({ ...ok, extra: 1 }).success, false)
  t.equal(VmmState.safeParse({ ...ok, vcpus: [{ ...ok.vcpus[0], extra: 1 }] }).success, false)
})

t.test('vmm-state v1: 64-bit values must be lower-case 0x hex of at most 16 digits', async t => {
  for (const bad of ['0X1', '0xABC', '1024', '0x', '0x10000000000000000']) {
    t.equal(VmmState.safeParse({ ...ok, mitiEnum: bad }).success, false, bad)
  }
  t.equal(VmmState.safeParse({ ...ok, mitiEnum: '0xffffffffffffffff' }).success, true)
})

t.test('vmm-state v1: wrong schema id, upper-case UUID, empty vcpus are rejected', async t => {
  t.equal(VmmState.safeParse({ ...ok, schema: 'virtmiti/vmm-state/v2' }).success, false)
  t.equal(VmmState.safeParse({ ...ok, vmUuid: ok.vmUuid.toUpperCase() }).success, false)
  t.equal(VmmState.safeParse({ ...ok, vcpus: [] }).success, false)
})

t.test('vmm-state v1: JSON Schema export is closed and names every vCPU field', async t => {
  const s = vmmStateJsonSchema() as any
  t.equal(s.additionalProperties, false)
  t.equal(s.properties.schema.const, VMM_STATE_SCHEMA_ID)
  const v = s.properties.vcpus.items
  t.same(Object.keys(v.properties).sort(), ['forcedMask', 'forcedValue', 'index', 'mitiCtrl', 'specCtrlEffective', 'specCtrlGuestRead', 'specCtrlHardware', 'specCtrlShadow'])
  t.same(v.required.sort(), ['forcedMask', 'forcedValue', 'index', 'mitiCtrl', 'specCtrlEffective', 'specCtrlShadow'])
  t.equal(v.additionalProperties, false)
  t.equal(v.properties.mitiCtrl.pattern, '^0x[0-9a-f]{1,16}$')
})
