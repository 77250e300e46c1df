// The scenario file format (scenarios/cases/*.yaml, issue 6): a zod schema, its types and its
// JSON Schema. Pure: YAML is parsed at the edge (host/runner/scenario-file.ts), which maps error
// paths to file:line:column. Expectations in scenario files are written by hand from
// contract/CONTRACT.md (each file cites the sections in `source`), never computed by the code under test.
import { z } from 'zod'
import { ARCH_CAPABILITIES, CPUID_7_0_EDX, CPUID_7_2_EDX, SPEC_CTRL, VIRTUAL_MITIGATION_CTRL, type RegisterDef } from './registers.js'
import { VmmDoc, integerIndices } from './vmm-definition.js'
import { FINDINGS } from './findings.js'
import { CONCERNS } from './verdict-types.js'

export const TIERS = ['sim', 'kvm', 'qemu'] as const
export type Tier = (typeof TIERS)[number]

/**
 * Where a faulty VMM must be caught, as "<stage>.<id>": guest.report (the agent's own exit code),
 * check.<item id of host/check/check.ts>, selftest.<RULES key of guest/selftest/run.ts>,
 * reset.<miti-ctrl|forced-mask|forced-value> (the runner's vCPU reset step, contract/CONTRACT.md section 3).
 */
export const CAUGHT_RE = /^(guest|check|selftest|reset)\.[a-zA-Z][a-zA-Z0-9-]{0,63}$/

function bitName(reg: RegisterDef) {
  const names = reg.bits.map(b => b.name) as [string, ...string[]]
  return z.enum(names, { message: `expected a ${reg.name} bit name (${names.join(', ')})` })
}

const RAW_BIT = /^bit (\d{1,2})$/
/** Distinct bit names of `reg`, or "bit N" with N < width (as in scenarios/cpus files). */
function rawBitList(reg: RegisterDef, width: number) {
  const names = reg.bits.map(b => b.name)
  return z.array(z.string().refine(x => names.includes(x) || (RAW_BIT.test(x) && Number(RAW_BIT.exec(x)![1]) < width), { message: `expected a ${reg.name} bit name (${names.join(', ')}) or "bit N" with N < ${width}` }), { message: `expected a list of ${reg.name} bit names` })
    .max(64).refine(a => new Set(a).size === a.length, { message: `expected each ${reg.name} bit at most once` })
}

function bitList(reg: RegisterDef) {
  return z.array(bitName(reg), { message: `expected a list of ${reg.name} bit names, [] for none` })
    .max(64)
    .refine(a => new Set(a).size === a.length, { message: `expected each ${reg.name} bit at most once` })
}

/** YAML is parsed with intAsBigInt (DESIGN.md conventions): integers arrive as bigint. */
const vcpuCount = z.union([z.bigint(), z.number()], { message: 'expected the vCPU count as an integer' })
  .transform(v => Number(v))
  .pipe(z.number().int('expected an integer vCPU count').min(1, 'expected at least 1 vCPU').max(64, 'expected at most 64 vCPUs (the payload VM of the kvm tier holds up to 240)'))

const text = (what: string, max = 2000) => z.string({ message: `expected ${what} as a string` }).min(1, `expected a non-empty ${what}`).max(max)
const catalogId = (what: string) => z.string({ message: `expected the ${what} as a catalog id (scenarios/cpus/<id>.yaml)` })
  .regex(/^[a-z0-9][a-z0-9-]{0,63}$/, `expected the ${what} as a lower-case catalog id like "sapphire-rapids"`)

/** true / false / unknown: "unknown" means the guest leaves the CTRL bit as it is (contract/CONTRACT.md section 4, contract/miti-ctrl.ts). */
const wishValue = z.union([z.boolean(), z.literal('unknown')], { message: 'expected true, false or "unknown"' })

/** The guest verdicts of contract/CONTRACT.md section 8 (contract/verdict-types.ts Verdict). */
export const GUEST_VERDICTS = ['protected', 'at-risk', 'vulnerable', 'unknown'] as const
const guestVerdict = z.enum(GUEST_VERDICTS, { message: `expected a guest verdict (${GUEST_VERDICTS.join(', ')}; contract/CONTRACT.md section 8)` })
const FINDING_IDS = FINDINGS.map(f => f.id) as [string, ...string[]]
const findingId = z.enum(FINDING_IDS, { message: `expected a finding id of contract/findings.ts (${FINDING_IDS.join(', ')})` })

/**
 * The per-vCPU item ids of `host check` (host/check/check.ts checkVcpu): what a per-vCPU outcome may
 * name as failing. Listed here so that a scenario's typo is an input error naming the valid ids;
 * host/check/evidence.test.ts keeps this list and the checker in step.
 */
export const CHECK_VCPU_ITEMS = ['guest-readback', 'enumeration', 'miti-enum', 'miti-ctrl', 'read-back', 'forced-mask', 'forced-value', 'effective', 'hardware', 'guest-read'] as const
const checkItemId = z.enum(CHECK_VCPU_ITEMS, { message: `expected a host check item id (${CHECK_VCPU_ITEMS.join(', ')})` })

/** One vCPU's host check outcome: true (every item ok), false (some item fails), or exactly the failing item ids ([] = ok). */
const vcpuOutcome = z.union([
  z.boolean(),
  z.array(checkItemId).max(CHECK_VCPU_ITEMS.length).refine(a => new Set(a).size === a.length, { message: 'expected each item id at most once' }),
], { message: `expected true (all items ok), false (some item fails) or the list of failing item ids (${CHECK_VCPU_ITEMS.join(', ')})` })

const forcedPair = z.strictObject({
  mask: bitList(SPEC_CTRL),
  value: bitList(SPEC_CTRL),
})

export const ScenarioDoc = z.strictObject({
  /** Stable unique name: the TAP subtest name and the --filter target. */
  name: z.string({ message: 'expected the scenario name as a string' }).regex(/^[a-z0-9][a-z0-9-]{0,95}$/, 'expected a lower-case name of letters, digits and "-" (it names the TAP subtest)').describe('Stable unique name: the TAP subtest name and the --filter target'),
  description: text('description'),
  /** The contract/CONTRACT.md sections (and other sources) the expectations were written from. */
  source: text('source').describe('The contract/CONTRACT.md sections (and other sources) the expectations were written from'),
  host: z.strictObject({
    /** The real hardware the VMM runs on: its caps drive the VMM response (contract/CONTRACT.md section 5). */
    cpu: catalogId('host CPU').describe('The real hardware the VMM runs on (scenarios/cpus/<id>.yaml): its caps drive the VMM response (contract/CONTRACT.md section 5)'),
    /** Overrides of the catalog model's registers (bit names, as in scenarios/cpus): a host of that model with other microcode or settings. */
    archCapabilities: rawBitList(ARCH_CAPABILITIES, 64).nullable().optional()
      .describe('The host\'s IA32_ARCH_CAPABILITIES instead of the model\'s (bit names or "bit N"; null: no such MSR): BHI_NO and RRSBA drive section 5'),
    cpuid7_0_edx: rawBitList(CPUID_7_0_EDX, 32).optional().describe('The host\'s CPUID.(7,0):EDX instead of the model\'s (STIBP, SSBD: forcible bits, v3 01/10)'),
    cpuid7_2_edx: rawBitList(CPUID_7_2_EDX, 32).optional().describe('The host\'s CPUID.(7,2):EDX instead of the model\'s (BHI_CTRL, RRSBA_CTRL drive section 5)'),
  }),
  guest: z.strictObject({
    /** The CPU model the VMM presents (may differ from the host: the migration pool, contract/CONTRACT.md section 1). */
    cpu: catalogId('presented guest CPU').describe('The CPU model the VMM presents; may differ from the host (migration pool)'),
    /**
     * ARCH_CAPABILITIES the VMM presents instead of the model's (bit names, without VIRTUAL_ENUM:
     * the VMM profile adds bit 63); null: no ARCH_CAPABILITIES at all. Default: the model's value.
     */
    archCapabilities: bitList(ARCH_CAPABILITIES).refine(a => !a.includes('VIRTUAL_ENUM'), { message: 'expected no VIRTUAL_ENUM here: the VMM profile decides bit 63 (contract/CONTRACT.md section 3)' }).nullable().optional(),
    /** CPUID.1:ECX[31]; default true (a guest). */
    hypervisor: z.boolean({ message: 'expected true or false' }).optional(),
    vcpus: vcpuCount,
  }),
  /** A VMM definition by id (scenarios/vmms/<id>.yaml, or --vmms DIR), or one written inline. */
  vmm: z.union([
    z.strictObject({
      profile: z.string({ message: 'expected a VMM id' }).regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'expected a VMM id like "reference" (scenarios/vmms/<id>.yaml)')
        .describe('A VMM definition id: scenarios/vmms/<id>.yaml or a file of a --vmms DIR'),
    }),
    z.strictObject({ define: VmmDoc.describe('A VMM definition written inline (the format of scenarios/vmms/*.yaml; id optional)') }),
  ], { message: 'expected { profile: <id> } or { define: { ...VMM definition } }' }),
  kernel: z.strictObject({
    /** /proc/cmdline of the guest kernel. */
    cmdline: z.string({ message: 'expected the kernel command line as a string ("" for none)' }).max(4096),
    /** /sys/devices/system/cpu/vulnerabilities/spectre_v2: the kernel's resulting state (contract/CONTRACT.md section 6). */
    spectreV2: text('spectre_v2 sysfs line', 1000).describe('/sys/devices/system/cpu/vulnerabilities/spectre_v2: the kernel\'s resulting state (contract/CONTRACT.md section 6)'),
  }),
  expected: z.strictObject({
    /** What the guest decides to report (contract/CONTRACT.md section 4). */
    decision: z.strictObject({ bhbClearSeqSUsed: wishValue, retpolineSUsed: wishValue }),
    /** Whether the guest finds the virtual MSRs enumerated on every CPU (contract/CONTRACT.md section 3). */
    enumerated: z.boolean({ message: 'expected true or false' }),
    /** MSR_VIRTUAL_MITIGATION_CTRL the VMM holds after the guest's report: one list for all vCPUs, or perVcpu. */
    mitiCtrl: z.union([
      bitList(VIRTUAL_MITIGATION_CTRL),
      z.strictObject({ perVcpu: z.array(bitList(VIRTUAL_MITIGATION_CTRL)).min(1).max(64) }),
    ], { message: `expected a list of ${VIRTUAL_MITIGATION_CTRL.name} bit names, or { perVcpu: [[...], ...] }` }),
    /** Forced SPEC_CTRL mask/value per vCPU (contract/CONTRACT.md section 5): one pair for all vCPUs, or perVcpu. */
    forced: z.union([
      forcedPair,
      z.strictObject({ perVcpu: z.array(forcedPair).min(1).max(64) }),
    ], { message: 'expected { mask: [...], value: [...] } of SPEC_CTRL bit names, or { perVcpu: [{ mask, value }, ...] }' }),
    /** pass: a correct VMM, everything checks out. fail: a faulty VMM that must be caught as `caught` says. */
    verdict: z.enum(['pass', 'fail'], { message: 'expected "pass" or "fail"' }).describe('pass: a correct VMM; fail: a faulty VMM that must be caught as `caught` says'),
    /**
     * The host check's outcome per vCPU, for faults confined to some vCPUs: true (every item of that
     * vCPU ok), false (some item fails), or exactly the ids of the failing items.
     */
    hostCheck: z.strictObject({ perVcpu: z.array(vcpuOutcome).min(1).max(64) }).optional()
      .describe('The first host check\'s outcome per vCPU: true when every item of that vCPU is ok, false when some fails, or the exact list of failing item ids'),
    /**
     * The guest's own verdict after its report (contract/CONTRACT.md section 8; contract/verdict.ts): the
     * whole guest, optionally per concern, and the finding ids (contract/findings.ts) it names.
     */
    guest: z.strictObject({
      verdict: guestVerdict.describe('The whole guest\'s verdict after the report (the worst concern)'),
      concerns: z.strictObject(Object.fromEntries(CONCERNS.map(c => [c, guestVerdict.optional()])) as Record<'bhi' | 'retpoline', z.ZodOptional<typeof guestVerdict>>).optional()
        .describe('Per concern (bhi; retpoline = retpoline/RRSBA): its verdict'),
      findings: z.array(findingId).max(FINDING_IDS.length).refine(a => new Set(a).size === a.length, { message: 'expected each finding id at most once' }).optional()
        .describe('Exactly the findings that are not notes ([] for none); a note id listed here must be among the findings too (other notes are allowed)'),
    }).optional().describe('The guest verdict after its report (contract/CONTRACT.md section 8)'),
    caught: z.strictObject({
      check: z.string({ message: 'expected a check id' }).regex(CAUGHT_RE, 'expected "guest.report", "check.<item>", "selftest.<rule>" or "reset.<item>"'),
      /** The bit the failure must name (SPEC_CTRL or MITI_CTRL name); omit only for selftest rules. */
      bit: z.string().regex(/^[A-Z][A-Z0-9_]{0,40}$/, 'expected a bit name like BHI_DIS_S').optional(),
    }).optional(),
  }).superRefine((e, ctx) => {
    if (e.verdict === 'fail' && !e.caught) ctx.addIssue({ code: 'custom', path: ['caught'], message: 'expected `caught: { check, bit }` when verdict is fail (which check must catch the faulty VMM)' })
    if (e.verdict === 'pass' && e.caught) ctx.addIssue({ code: 'custom', path: ['caught'], message: 'expected no `caught` when verdict is pass' })
    if (e.caught && !e.caught.check.startsWith('selftest.') && e.caught.bit === undefined) ctx.addIssue({ code: 'custom', path: ['caught', 'bit'], message: 'expected the bit the failure names (required for check.* and reset.*)' })
  }),
  /** Tiers this scenario runs on (default sim and kvm). */
  tiers: z.array(z.enum(TIERS, { message: `expected one of ${TIERS.join(', ')}` })).min(1).max(3).optional(),
}).superRefine((s, ctx) => {
  const n = s.guest.vcpus
  const m = s.expected.mitiCtrl
  if (!Array.isArray(m) && m.perVcpu.length !== n) ctx.addIssue({ code: 'custom', path: ['expected', 'mitiCtrl', 'perVcpu'], message: `expected ${n} entries (guest.vcpus), got ${m.perVcpu.length}` })
  const f = s.expected.forced
  if ('perVcpu' in f && f.perVcpu.length !== n) ctx.addIssue({ code: 'custom', path: ['expected', 'forced', 'perVcpu'], message: `expected ${n} entries (guest.vcpus), got ${f.perVcpu.length}` })
  const hc = s.expected.hostCheck
  if (hc && hc.perVcpu.length !== n) ctx.addIssue({ code: 'custom', path: ['expected', 'hostCheck', 'perVcpu'], message: `expected ${n} entries (guest.vcpus), got ${hc.perVcpu.length}` })
  if ('define' in s.vmm) {
    const d = s.vmm.define
    const init = d.ctrl?.initial
    if (init && !Array.isArray(init) && init.perVcpu.length !== n) ctx.addIssue({ code: 'custom', path: ['vmm', 'define', 'ctrl', 'initial', 'perVcpu'], message: `expected ${n} entries (guest.vcpus), got ${init.perVcpu.length}` })
    ;(d.faults ?? []).forEach((x, i) => {
      if (typeof x !== 'string') (x.vcpus ?? []).forEach((v, j) => { if (v >= n) ctx.addIssue({ code: 'custom', path: ['vmm', 'define', 'faults', i, 'vcpus', j], message: `expected a vCPU index below ${n} (guest.vcpus)` }) })
    })
  }
})

export type ScenarioDoc = z.output<typeof ScenarioDoc>

/** A scenario with per-vCPU expectations spelt out. */
export interface Scenario extends ScenarioDoc {
  tiersResolved: Tier[]
  mitiCtrlPerVcpu: string[][]
  forcedPerVcpu: { mask: string[]; value: string[] }[]
}

export type DocPath = (string | number)[]
export interface ScenarioIssue { path: DocPath; message: string }

type Issue = z.core.$ZodIssue
const keyPath = (p: readonly PropertyKey[]): DocPath => p.filter((x): x is string | number => typeof x !== 'symbol')

/**
 * A union that fails reports only "expected one of ..."; when one branch got further into the
 * value (a deeper path), its own issues say more precisely what is wrong (e.g. which list item).
 */
function flattenIssue(i: Issue, prefix: DocPath): ScenarioIssue[] {
  const path = [...prefix, ...keyPath(i.path)]
  if (i.code === 'invalid_union' && i.errors.length > 0) {
    const depth = (b: Issue[]) => Math.max(...b.map(x => x.path.length))
    const best = [...i.errors].sort((a, b) => depth(b) - depth(a))[0]!
    if (best.length > 0 && depth(best) > 0) return best.flatMap(x => flattenIssue(x, path))
  }
  return [{ path, message: i.message }]
}

/** Validate a parsed document; errors carry the path to the offending node. */
export function scenarioFromDoc(js: unknown): { ok: true; scenario: Scenario } | { ok: false; errors: ScenarioIssue[] } {
  const r = ScenarioDoc.safeParse(js)
  if (!r.success) return { ok: false, errors: r.error.issues.flatMap(i => flattenIssue(i, [])) }
  const s = r.data
  const n = s.guest.vcpus
  const m = s.expected.mitiCtrl
  const f = s.expected.forced
  return {
    ok: true,
    scenario: {
      ...s,
      tiersResolved: s.tiers ?? ['sim', 'kvm'],
      mitiCtrlPerVcpu: Array.isArray(m) ? Array.from({ length: n }, () => [...m]) : m.perVcpu,
      forcedPerVcpu: 'perVcpu' in f ? f.perVcpu : Array.from({ length: n }, () => ({ mask: [...f.mask], value: [...f.value] })),
    },
  }
}

export const SCENARIO_SCHEMA_ID = 'https://virtmiti.invalid/schema/scenario/v1.json'

/** The JSON Schema of scenario files (draft 2020-12), for `make schemas` (contract/schemas/scenario.schema.json). */
export function scenarioJsonSchema(): Record<string, unknown> {
  return {
    $id: SCENARIO_SCHEMA_ID,
    title: 'virtmiti scenario v1',
    description: 'One end-to-end scenario: host CPU, presented guest CPU, VMM profile, guest kernel state, and the hand-written expectations (contract/CONTRACT.md sections 3-6).',
    // vcpus accepts YAML integers (parsed as bigint); input form is the documented one.
    ...withIntegerVcpus(integerIndices(z.toJSONSchema(ScenarioDoc, { io: 'input', unrepresentable: 'any' }) as Record<string, any>)),
  }
}

/** YAML integers arrive as bigint (not representable in JSON Schema): publish vcpus as the integer it is. */
function withIntegerVcpus(s: Record<string, any>): Record<string, unknown> {
  const g = s['properties']?.['guest']?.['properties']
  if (g) g['vcpus'] = { type: 'integer', minimum: 1, maximum: 64, description: 'vCPU count of the guest' }
  return s
}
