// The CPU model catalog format (scenarios/cpus/<id>.yaml, issue 6): a zod schema and a pure
// converter to CpuModel (contract/cpu-model.ts). Pure: the YAML is parsed at the edge
// (host/runner/cpus.ts), which also maps error paths to file:line:column.
import { z } from 'zod'
import type { CpuModel, Vendor } from './cpu-model.js'
import { ARCH_CAPABILITIES, CPUID_7_0_EDX, CPUID_7_2_EDX, type RegisterDef } from './registers.js'
import { encode } from './bits.js'
import { fieldPath as pathString } from './format.js'

/** Vendor strings as CPUID leaf 0 spells them (contract/cpu-model.ts Vendor). */
export const VENDORS = ['GenuineIntel', 'AuthenticAMD', 'HygonGenuine', 'CentaurHauls', '  Shanghai  '] as const satisfies readonly Vendor[]

/** Keys of `sources`: one public source per value group; "notes" for caveats. */
export const SOURCE_KEYS = ['vendor', 'family_model', 'stepping', 'cpuid7_0_edx', 'cpuid7_2_edx', 'arch_capabilities', 'notes'] as const

const RAW_BIT = /^bit (\d{1,2})$/

/** A bit name of `reg`, or "bit N" with N below `width` (32 for CPUID words, 64 for MSRs). */
function bitName(reg: RegisterDef, width: number) {
  const names = reg.bits.map(b => b.name)
  return z.string().refine(s => names.includes(s) || (RAW_BIT.test(s) && Number(RAW_BIT.exec(s)![1]) < width), {
    message: `expected a ${reg.name} bit name (${names.join(', ')}) or "bit N" with N < ${width}`,
  })
}

/** A list of distinct bit names. */
function bitList(reg: RegisterDef, width: number) {
  return z.array(bitName(reg, width)).refine(a => new Set(a).size === a.length, { message: `expected each ${reg.name} bit at most once` })
}

/** YAML is parsed with intAsBigInt (DESIGN.md conventions): integers arrive as bigint. */
function smallInt(max: number, what: string) {
  return z.union([z.bigint(), z.number()], { message: `expected an integer (${what})` })
    .transform(v => Number(v))
    .pipe(z.number().int(`expected an integer (${what})`).min(0, `expected ${what} >= 0`).max(max, `expected ${what} <= ${max} (0x${max.toString(16)})`))
}

const nonEmpty = (what: string) => z.string({ message: `expected ${what} as a string` }).min(1, `expected a non-empty ${what}`).max(1000)

export const CpuModelDoc = z.strictObject({
  id: z.string({ message: 'expected the model id as a string' }).regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'expected a lower-case id like "sapphire-rapids"'),
  name: nonEmpty('human name'),
  vendor: z.enum(VENDORS, { message: `expected one of ${VENDORS.map(v => JSON.stringify(v)).join(', ')}` }),
  // Family as the kernel computes it (base + extended family); model with the extended model
  // folded in (Intel SDM vol 2A, CPUID leaf 01H; contract/cpu-model.ts signature()).
  family: smallInt(0x10e, 'family'),
  model: smallInt(0xff, 'model'),
  stepping: smallInt(0xf, 'stepping'),
  cpuid7_0_edx: bitList(CPUID_7_0_EDX, 32),
  cpuid7_2_edx: bitList(CPUID_7_2_EDX, 32),
  // null: CPUID.(7,0):EDX[29] clear, the MSR does not exist (contract/CONTRACT.md section 2).
  arch_capabilities: bitList(ARCH_CAPABILITIES, 64).nullable(),
  sources: z.strictObject({
    vendor: nonEmpty('source').optional(),
    family_model: nonEmpty('source'),
    stepping: nonEmpty('source').optional(),
    cpuid7_0_edx: nonEmpty('source'),
    cpuid7_2_edx: nonEmpty('source'),
    arch_capabilities: nonEmpty('source'),
    notes: nonEmpty('note').optional(),
  }),
})
export type CpuModelDoc = z.infer<typeof CpuModelDoc>

/** A path into the document: keys and sequence indices, as the yaml library's getIn() takes them. */
export type DocPath = (string | number)[]
export interface DocError {
  path: DocPath
  message: string
  /** The error is about the key itself (an unknown field), not its value: point at the key. */
  atKey?: boolean
}
export type CpuModelResult = { ok: true; model: CpuModel } | { ok: false; errors: DocError[] }


export { pathString }

function issueToErrors(issue: z.core.$ZodIssue): DocError[] {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol')
  if (issue.code === 'unrecognized_keys') {
    // Point at each unknown key itself, so the loader can give its line:column.
    const allowed: string[] = issue.path.length === 0 ? Object.keys(CpuModelDoc.shape) : [...SOURCE_KEYS] // only two strict objects
    return issue.keys.map(k => ({ path: [...path, k], atKey: true, message: `unknown field "${k}" (expected one of ${allowed.join(', ')})` }))
  }
  if (issue.code === 'invalid_type' && /received undefined/.test(issue.message)) {
    return [{ path, message: `missing required field (${issue.message.replace(/^Invalid input: /, '').replace(/, received undefined$/, '')})` }]
  }
  return [{ path, message: issue.message }]
}

/** 32-bit CPUID word from bit names (all positions < 32, checked by the schema). */
const word32 = (reg: RegisterDef, names: readonly string[]): number => Number(encode(reg, names)) >>> 0

/**
 * Validate a parsed catalog document and build the CpuModel. `id` is the file name without
 * ".yaml": the document's own id must match it, so a copied file cannot shadow another model.
 */
export function cpuModelFromDoc(doc: unknown, id: string): CpuModelResult {
  const r = CpuModelDoc.safeParse(doc)
  if (!r.success) return { ok: false, errors: r.error.issues.flatMap(issueToErrors) }
  const d = r.data
  if (d.id !== id) return { ok: false, errors: [{ path: ['id'], message: `expected "${id}" (the file name without .yaml), found "${d.id}"` }] }
  // IA32_ARCH_CAPABILITIES exists iff CPUID.(7,0):EDX[29] (contract/CONTRACT.md section 2): the two must agree.
  const enumerated = d.cpuid7_0_edx.includes('ARCH_CAPABILITIES')
  if (enumerated !== (d.arch_capabilities !== null)) {
    return { ok: false, errors: [{ path: ['arch_capabilities'], message: enumerated
      ? 'expected a list of bit names: cpuid7_0_edx has ARCH_CAPABILITIES, so the MSR exists'
      : 'expected null: cpuid7_0_edx lacks ARCH_CAPABILITIES, so the MSR does not exist' }] }
  }
  const sources: Record<string, string> = {}
  for (const [k, v] of Object.entries(d.sources)) if (v !== undefined) sources[k] = v
  return {
    ok: true,
    model: {
      id: d.id,
      name: d.name,
      vendor: d.vendor,
      family: d.family,
      model: d.model,
      stepping: d.stepping,
      cpuid7_0_edx: word32(CPUID_7_0_EDX, d.cpuid7_0_edx),
      cpuid7_2_edx: word32(CPUID_7_2_EDX, d.cpuid7_2_edx),
      archCapabilities: d.arch_capabilities === null ? null : encode(ARCH_CAPABILITIES, d.arch_capabilities),
      sources,
    },
  }
}

/** JSON Schema of the catalog format, for the documentation (issue 6 "documented scenario schema"). */
export function cpuModelJsonSchema(): unknown {
  return z.toJSONSchema(CpuModelDoc, { io: 'input', unrepresentable: 'any' })
}
