// VMM definitions as patched-QEMU -cpu properties (issue 13): every knob QEMU can express maps to
// a property the patch series defines, what it cannot is an explicit error naming the knob; the
// fault ids are the patch's and the VMM definitions' both. The built-in catalog is translated whole.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { VMM_FAULTS, vmmFromDoc, VmmDoc, type VmmDefinition } from '../../contract/vmm-definition.js'
import { PROFILES } from '../vmm/profiles.js'
import { QEMU_FAULTS } from './checks-patched.js'
import { vmmQemuProps } from './vmm-props.js'
import { parseQemuMatrix } from './tier.js'

const PATCHES = fileURLToPath(new URL('./patches/', import.meta.url))
const series = readdirSync(PATCHES).filter(f => f.endsWith('.patch')).sort().map(f => readFileSync(join(PATCHES, f), 'utf8')).join('\n')
/** Property names the series defines (DEFINE_PROP_* on x86 CPUs, added lines only). */
const defined = new Set([...series.matchAll(/^\+\s*DEFINE_PROP_[A-Z0-9]+\("([a-z0-9-]+)"/gm)].map(m => m[1]!))

const def = (d: Record<string, unknown>): VmmDefinition => vmmFromDoc(VmmDoc.parse({ description: 't', advertise: true, ...d }), 't')
const props = (d: Record<string, unknown>, vcpus = 2) => vmmQemuProps(def(d), vcpus)

t.test('the fault ids QEMU knows are those of patch x-virt-miti-fault, and VMM definition ids', async t => {
  const table = /virt_miti_fault_names\[\] = \{([^}]*)\}/.exec(series)
  t.ok(table, 'the patch series has the fault name table')
  const names = [...(table?.[1] ?? '').matchAll(/\] = "([a-z-]+)"/g)].map(m => m[1]!).filter(n => n !== 'none')
  t.same([...names].sort(), [...QEMU_FAULTS].sort())
  for (const f of QEMU_FAULTS) t.ok((VMM_FAULTS as readonly string[]).includes(f), `${f} is a VMM definition fault id`)
})

t.test('every knob QEMU can express maps to a property the patch series defines', async t => {
  const r = props({ mitiEnum: ['BHB_CLEAR_SEQ_S_SUPPORT'], userspaceForce: { mask: ['BHI_DIS_S', 'SSBD'], value: ['SSBD'] }, ctrl: { initial: ['BHB_CLEAR_SEQ_S_USED'], reset: ['BHB_CLEAR_SEQ_S_USED'] }, faults: ['enum-writable'] })
  if (!r.ok) return t.fail(r.errors.join('; '))
  t.same(r.props, ['virt-miti=on', 'virt-miti-enum=1', 'virt-miti-ctrl-reset=1', `spec-ctrl-force-mask=${0x404}`, 'spec-ctrl-force-value=4', 'x-virt-miti-fault=enum-writable'])
  t.equal(r.fault, 'enum-writable')
  t.equal(r.mitiEnum, 1n)
  for (const p of r.props) t.ok(defined.has(p.split('=')[0]!), `${p.split('=')[0]} is defined by the patches`)
  const off = props({ advertise: false, unknownMsr: 'read-zero-ignore-write' })
  t.same(off.ok && off.props, ['virt-miti=off', 'spec-ctrl-force-mask=0', 'spec-ctrl-force-value=0'], 'not advertising: TCG already reads unknown MSRs as 0')
})

t.test('what QEMU cannot express is an error naming the knob, never dropped', async t => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ virtualEnumeration: [] }, /virtualEnumeration 0x0: .*no property/],
    [{ mitiEnum: ['BHB_CLEAR_SEQ_S_SUPPORT'], ctrl: { initial: ['BHB_CLEAR_SEQ_S_USED'] } }, /ctrl\.initial 0x1: .*power-on reset/],
    [{ mitiEnum: ['BHB_CLEAR_SEQ_S_SUPPORT'], ctrl: { initial: { perVcpu: [['BHB_CLEAR_SEQ_S_USED'], []] } } }, /ctrl\.initial perVcpu \[0x1, 0x0\]/],
    [{ specCtrl: 'virtualized' }, /specCtrl virtualized/],
    [{ advertise: false, unknownMsr: 'fault' }, /unknownMsr fault: under TCG/],
    [{ faults: [{ fault: 'forces-nothing', vcpus: [1] }] }, /faults forces-nothing on vCPU 1: .*every vCPU/],
    [{ faults: ['ctrl-not-reset'] }, /faults ctrl-not-reset: x-virt-miti-fault knows forces-nothing/],
    [{ faults: ['forces-nothing', 'enum-writable'] }, /takes one fault id/],
  ]
  for (const [d, want] of cases) {
    const r = props(d)
    t.notOk(r.ok, want.source)
    if (!r.ok) { t.match(r.errors.join('\n'), want); t.ok(r.errors.every(e => e.startsWith('not expressible under patched QEMU: '))) }
  }
  t.ok(props({ ctrl: { initial: { perVcpu: [[], []] } } }).ok, 'an initial CTRL equal to the reset value is what QEMU does')
})

t.test('the built-in catalog: each definition translates or says which knob it cannot', async t => {
  const out = new Map([...PROFILES].map(([id, p]) => [id, vmmQemuProps(p, 2)]))
  t.same([...out].filter(([, r]) => r.ok).map(([id]) => id).sort(), ['bhb-only', 'ctrl-not-per-vcpu', 'enum-writable', 'forces-nothing', 'ignores-ctrl-writes',
    'leaks-forced-into-shadow', 'read-zero', 'reference', 'userspace-force-bhi', 'userspace-force-bhi-off'].sort())
  const why = (id: string) => { const r = out.get(id)!; return r.ok ? '' : r.errors.join('; ') }
  t.match(why('reference-virtualized'), /specCtrl virtualized/)
  t.match(why('no-virtual-msrs'), /unknownMsr fault/)
  t.match(why('ctrl-not-reset'), /faults ctrl-not-reset/)
})

t.test('patched.yaml boots may name a vmm: definition; what QEMU cannot express is a located input error', async t => {
  const head = 'description: d\nsource: s\nvmm: patched\nvcpus: 2\nkernels: [{ id: k, file: /k/boot/vmlinuz-1 }]\nboots:\n'
  const ok = parseQemuMatrix(head + '  - { cpu: Cascadelake-Server-v2, host: sapphire-rapids, append: "", vmm: bhb-only }\n', 'm.yaml')
  t.same(ok.errors, [])
  t.same(ok.boots[0]?.patched?.vmmProps?.props, ['virt-miti=on', 'virt-miti-enum=1', 'virt-miti-ctrl-reset=0', 'spec-ctrl-force-mask=0', 'spec-ctrl-force-value=0'])
  t.match(ok.boots[0]?.name, /vmm bhb-only/)
  const bad = parseQemuMatrix(head + '  - { cpu: Cascadelake-Server-v2, host: sapphire-rapids, append: "",\n      vmm: reference-virtualized }\n', 'm.yaml')
  t.match(bad.errors.join('\n'), /^m\.yaml:8:\d+: boots\.0\.vmm: vmm reference-virtualized: not expressible under patched QEMU: specCtrl virtualized/)
  const unknown = parseQemuMatrix(head + '  - { cpu: Cascadelake-Server-v2, host: sapphire-rapids, append: "", vmm: nope }\n', 'm.yaml')
  t.match(unknown.errors.join('\n'), /unknown VMM definition "nope" \(scenarios\/vmms: .*reference/)
  const both = parseQemuMatrix(head + '  - { cpu: Cascadelake-Server-v2, host: sapphire-rapids, append: "", vmm: reference, fault: forces-nothing }\n', 'm.yaml')
  t.match(both.errors.join('\n'), /vmm or fault\/force, not both/)
})
