// A VMM definition as data (scenarios/vmms/<id>.yaml, or inline in a scenario; issue 13): every
// knob of contract/CONTRACT.md sections 3 and 5 that a VMM configuration decides, and the deliberate
// faults (deviations) the checker must catch. Pure: YAML is parsed at the edge
// (host/runner/vmms.ts). The fault ids are shared with the patched-QEMU tier's properties: never
// rename one.
import { z } from 'zod'
import { encode } from './bits.js'
import { SPEC_CTRL, VIRTUAL_ENUMERATION, VIRTUAL_MITIGATION_CTRL, VIRTUAL_MITIGATION_ENUM, type RegisterDef } from './registers.js'

/** Deliberate deviations from contract/CONTRACT.md sections 3 and 5 (faulty VMMs for testing the checker). */
export const VMM_FAULTS = [
  /** CTRL writes succeed but are dropped: read-back stale, no response (section 3 read-back). */
  'ignores-ctrl-writes',
  /** CTRL is stored, but nothing is ever derived from it (section 5 derived bits). */
  'forces-nothing',
  /** BHI_DIS_S derived from CTRL bit 0 without looking at host BHI_CTRL / BHI_NO (section 5). */
  'forces-bhi-regardless-of-caps',
  /** A guest SPEC_CTRL write replaces the effective value, forced bits included (section 5 effective). */
  'guest-can-clear-forced',
  /** Derived bits are not masked by userspace's mask (section 5 userspace precedence). */
  'guest-overrides-userspace',
  /** A guest read of SPEC_CTRL returns the effective value instead of the shadow (section 5). */
  'leaks-forced-into-shadow',
  /** One CTRL and one forced state for the whole VM instead of per vCPU (section 3 per-vCPU scope). */
  'ctrl-not-per-vcpu',
  /** Writes to the read-only ENUM MSRs succeed and change them (section 3 read-only). */
  'enum-writable',
  /** CTRL writes with bits not in MITI_ENUM are accepted (section 3 reserved bits fault). */
  'reserved-ctrl-bits-accepted',
  /** vCPU reset keeps CTRL (section 3: 0 after reset). */
  'ctrl-not-reset',
] as const
export type VmmFault = (typeof VMM_FAULTS)[number]

/** Faults about the VM's scope itself: they cannot be confined to some vCPUs. */
export const VM_ONLY_FAULTS: readonly VmmFault[] = ['ctrl-not-per-vcpu']

export const SPEC_CTRL_HANDLING = ['virtualized', 'intercepted'] as const
export const UNKNOWN_MSR = ['fault', 'read-zero-ignore-write'] as const

/** One VMM configuration, as the emulation (host/vmm/emulation.ts) and the state file read it. */
export interface VmmDefinition {
  name: string
  description: string
  /**
   * Whether the VMM implements the virtual MSRs and shows ARCH_CAPABILITIES bit 63 (contract/CONTRACT.md
   * section 3 step 1). When false, the virtual MSRs are unknown MSRs and answer per `unknownMsr`.
   */
  advertise: boolean
  /** MSR_VIRTUAL_ENUMERATION as the guest reads it; default: bit 0 (MITIGATION_CTRL_SUPPORT) when advertising. */
  virtualEnumeration?: bigint
  /** MSR_VIRTUAL_MITIGATION_ENUM value (bit 0 BHB_CLEAR_SEQ_S_SUPPORT, bit 1 RETPOLINE_S_SUPPORT). */
  mitiEnum: bigint
  /** KVM_CAP_FORCE_SPEC_CTRL-style userspace force (v3 01/10); validated against host caps. */
  userspaceForce: { mask: bigint; value: bigint }
  /** CTRL each vCPU holds before the guest runs (a value left over from an earlier boot): one for all, or one per vCPU. Default 0. */
  initialCtrl?: bigint | readonly bigint[]
  /** CTRL after a vCPU reset (contract/CONTRACT.md section 3: 0 in the RFC; section 7: Intel's value unconfirmed). Default 0. */
  resetCtrl?: bigint
  /** 'virtualized': the VMX control holds mask/value; 'intercepted': the VMM traps SPEC_CTRL (section 5). */
  specCtrl: (typeof SPEC_CTRL_HANDLING)[number]
  /** MSRs the VMM does not implement: #GP, or read 0 and ignore writes (section 3). */
  unknownMsr: (typeof UNKNOWN_MSR)[number]
  /** Faults of the whole VM. */
  faults: ReadonlySet<VmmFault>
  /** Faults of single vCPUs, by vCPU index. */
  vcpuFaults?: ReadonlyMap<number, ReadonlySet<VmmFault>>
}

const RAW_BIT = /^bit (\d{1,2})$/

/** Distinct bit names of `reg` ("bit N" allowed for N < 64 only when `raw`). */
function bitList(reg: RegisterDef, raw = false) {
  const names = reg.bits.map(b => b.name)
  const one = z.string({ message: `expected a ${reg.name} bit name` }).refine(s => names.includes(s) || (raw && RAW_BIT.test(s) && Number(RAW_BIT.exec(s)![1]) < 64), {
    message: `expected a ${reg.name} bit name (${names.join(', ')})${raw ? ' or "bit N" with N < 64' : ''}`,
  })
  return z.array(one, { message: `expected a list of ${reg.name} bit names, [] for none` }).max(64)
    .refine(a => new Set(a).size === a.length, { message: `expected each ${reg.name} bit at most once` })
}

const vcpuIndex = z.union([z.bigint(), z.number()], { message: 'expected a vCPU index as an integer' })
  .transform(v => Number(v)).pipe(z.number().int('expected an integer vCPU index').min(0).max(8191))

const faultId = z.enum(VMM_FAULTS, { message: `expected a fault id (${VMM_FAULTS.join(', ')})` })

const ctrlBits = bitList(VIRTUAL_MITIGATION_CTRL)

/** The YAML document. Everything but `advertise` has the reference's default. */
export const VmmDoc = z.strictObject({
  /** The file name without .yaml (for files); optional inline. */
  id: z.string({ message: 'expected the VMM id as a string' }).regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'expected a lower-case id like "reference"').optional()
    .describe('The file name without .yaml (required in scenarios/vmms files; optional inline)'),
  description: z.string({ message: 'expected the description as a string' }).min(1).max(2000),
  source: z.string().min(1).max(2000).optional().describe('The contract/CONTRACT.md sections (or other sources) this configuration follows'),
  advertise: z.boolean({ message: 'expected true or false' })
    .describe('ARCH_CAPABILITIES bit 63 (VIRTUAL_ENUM) shown to the guest: the VMM implements the virtual MSRs (contract/CONTRACT.md section 3 step 1)'),
  virtualEnumeration: bitList(VIRTUAL_ENUMERATION).optional()
    .describe('MSR_VIRTUAL_ENUMERATION (0x50000000) bit names; default [MITIGATION_CTRL_SUPPORT] when advertising, [] otherwise'),
  mitiEnum: bitList(VIRTUAL_MITIGATION_ENUM).optional()
    .describe('MSR_VIRTUAL_MITIGATION_ENUM (0x50000001) bit names; default [] (none)'),
  userspaceForce: z.strictObject({ mask: bitList(SPEC_CTRL, true), value: bitList(SPEC_CTRL, true) }).optional()
    .describe('KVM_CAP_FORCE_SPEC_CTRL mask/value (RFC v3 01/10) as SPEC_CTRL bit names; value must be a subset of mask and of the host-supported bits (contract/CONTRACT.md section 5); default none'),
  ctrl: z.strictObject({
    initial: z.union([ctrlBits, z.strictObject({ perVcpu: z.array(ctrlBits).min(1).max(8192) })], { message: 'expected a list of MSR_VIRTUAL_MITIGATION_CTRL bit names, or { perVcpu: [[...], ...] }' }).optional()
      .describe('CTRL before the guest runs (a value left over from an earlier boot): one list for all vCPUs, or perVcpu; default []'),
    reset: ctrlBits.optional().describe('CTRL after a vCPU reset; default [] (contract/CONTRACT.md section 3: 0 after reset; section 7: unconfirmed for Intel)'),
  }).optional(),
  specCtrl: z.enum(SPEC_CTRL_HANDLING, { message: 'expected "intercepted" or "virtualized"' }).optional()
    .describe('How SPEC_CTRL is held: trapped reads/writes, or the VMX "virtualize IA32_SPEC_CTRL" control (contract/CONTRACT.md section 5); default intercepted'),
  unknownMsr: z.enum(UNKNOWN_MSR, { message: 'expected "fault" or "read-zero-ignore-write"' }).optional()
    .describe('MSRs the VMM does not implement: #GP (KVM ignore_msrs=0) or read 0 / ignore writes (contract/CONTRACT.md section 3); default fault'),
  faults: z.array(z.union([
    faultId,
    z.strictObject({ fault: faultId, vcpus: z.array(vcpuIndex).min(1).max(8192).optional() }),
  ], { message: 'expected a fault id, or { fault: <id>, vcpus: [<index>, ...] }' })).max(VMM_FAULTS.length * 4).optional()
    .describe('Deliberate deviations: a fault id for the whole VM, or { fault, vcpus } for some vCPUs only; default none'),
}).superRefine((d, ctx) => {
  if (!d.advertise) {
    for (const k of ['virtualEnumeration', 'mitiEnum'] as const) {
      if (d[k] !== undefined && d[k].length > 0) ctx.addIssue({ code: 'custom', path: [k], message: 'expected [] or nothing: a VMM that does not advertise has no virtual MSRs (advertise: false)' })
    }
  }
  const ids = new Set<string>()
  ;(d.faults ?? []).forEach((f, i) => {
    const id = typeof f === 'string' ? f : f.fault
    if (ids.has(id)) ctx.addIssue({ code: 'custom', path: ['faults', i], message: `expected each fault at most once: "${id}" again` })
    ids.add(id)
    if (typeof f !== 'string' && f.vcpus && VM_ONLY_FAULTS.includes(f.fault)) ctx.addIssue({ code: 'custom', path: ['faults', i, 'vcpus'], message: `"${f.fault}" is about the whole VM's scope: it cannot be limited to some vCPUs` })
  })
})
export type VmmDoc = z.output<typeof VmmDoc>

export interface VmmDocIssue { path: (string | number)[]; message: string; atKey?: boolean }

const keyPath = (p: readonly PropertyKey[]) => p.filter((x): x is string | number => typeof x !== 'symbol')

/** zod issues of a VMM document, each at its path (prefixed, for inline definitions). */
export function vmmDocIssues(err: z.ZodError, prefix: (string | number)[] = []): VmmDocIssue[] {
  return err.issues.flatMap((i): VmmDocIssue[] => {
    const path = [...prefix, ...keyPath(i.path)]
    if (i.code === 'unrecognized_keys') return i.keys.map(k => ({ path: [...path, k], atKey: true, message: `unknown field "${k}"` }))
    return [{ path, message: i.message }]
  })
}

/** The definition a validated document stands for. `name`: the file id, or the inline default. */
export function vmmFromDoc(d: VmmDoc, name: string): VmmDefinition {
  const ve = d.virtualEnumeration !== undefined ? encode(VIRTUAL_ENUMERATION, d.virtualEnumeration) : undefined
  const init = d.ctrl?.initial
  const whole = new Set<VmmFault>()
  const per = new Map<number, Set<VmmFault>>()
  for (const f of d.faults ?? []) {
    if (typeof f === 'string' || !f.vcpus) whole.add(typeof f === 'string' ? f : f.fault)
    else for (const v of f.vcpus) per.set(v, (per.get(v) ?? new Set()).add(f.fault))
  }
  return {
    name,
    description: d.description,
    advertise: d.advertise,
    ...(ve !== undefined ? { virtualEnumeration: ve } : {}),
    mitiEnum: encode(VIRTUAL_MITIGATION_ENUM, d.mitiEnum ?? []),
    userspaceForce: { mask: encode(SPEC_CTRL, d.userspaceForce?.mask ?? []), value: encode(SPEC_CTRL, d.userspaceForce?.value ?? []) },
    ...(init !== undefined ? { initialCtrl: Array.isArray(init) ? encode(VIRTUAL_MITIGATION_CTRL, init) : init.perVcpu.map(b => encode(VIRTUAL_MITIGATION_CTRL, b)) } : {}),
    ...(d.ctrl?.reset !== undefined ? { resetCtrl: encode(VIRTUAL_MITIGATION_CTRL, d.ctrl.reset) } : {}),
    specCtrl: d.specCtrl ?? 'intercepted',
    unknownMsr: d.unknownMsr ?? 'fault',
    faults: whole,
    ...(per.size ? { vcpuFaults: per } : {}),
  }
}

/** Validate a parsed VMM file; `id` is its file name without .yaml, which the document's id must equal. */
export function vmmDefinitionFromDoc(doc: unknown, id: string): { ok: true; value: VmmDefinition } | { ok: false; errors: VmmDocIssue[] } {
  const r = VmmDoc.safeParse(doc)
  if (!r.success) return { ok: false, errors: vmmDocIssues(r.error) }
  if (r.data.id === undefined) return { ok: false, errors: [{ path: ['id'], message: `missing required field: expected id: ${id} (the file name without .yaml)` }] }
  if (r.data.id !== id) return { ok: false, errors: [{ path: ['id'], message: `expected "${id}" (the file name without .yaml), found "${r.data.id}"` }] }
  return { ok: true, value: vmmFromDoc(r.data, id) }
}

export const VMM_SCHEMA_ID = 'https://virtmiti.invalid/schema/vmm/v1.json'

/** The JSON Schema of VMM definition files (scenarios/vmms/<id>.yaml), for `make schemas`. */
export function vmmJsonSchema(): Record<string, unknown> {
  return {
    $id: VMM_SCHEMA_ID,
    title: 'virtmiti VMM definition v1',
    description: 'One VMM configuration: how it answers ARCH_CAPABILITIES bit 63 and the virtual MSRs, its userspace SPEC_CTRL force, CTRL before boot and after reset, SPEC_CTRL handling, and deliberate faults (contract/CONTRACT.md sections 3 and 5). Generated by scripts/gen-schemas.ts; do not edit.',
    ...integerIndices(z.toJSONSchema(VmmDoc, { io: 'input', unrepresentable: 'any' }) as Record<string, any>),
  }
}

/** YAML integers arrive as bigint (not representable in JSON Schema): publish vCPU indices as integers. */
export function integerIndices<T extends Record<string, any>>(s: T): T {
  const walk = (n: any): void => {
    if (!n || typeof n !== 'object') return
    if (n.properties?.vcpus?.type === 'array') n.properties.vcpus.items = { type: 'integer', minimum: 0, maximum: 8191 }
    for (const v of Object.values(n)) walk(v)
  }
  walk(s)
  return s
}
