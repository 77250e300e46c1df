// JSON form of Facts (the --record/--replay file), versioned, with strict validation.
// Register values are "0x" hex strings so that 64-bit values survive JSON (DESIGN.md conventions).
import { z } from 'zod'
import { CPUID_LEAVES, type Facts, type MsrFact, type CpuFacts, type CpuidFact } from './facts.js'
import { hex, parseU64 } from './bits.js'

export const FACTS_SCHEMA_ID = 'virtmiti/facts/v1'

const hex32 = z.string().regex(/^0x[0-9a-f]{1,8}$/, 'a 32-bit value as "0x" lower-case hex')
const hex64 = z.string().regex(/^0x[0-9a-f]{1,16}$/, 'a 64-bit value as "0x" lower-case hex')
const fault = z.strictObject({ errno: z.string().regex(/^E[A-Z0-9]+$/, 'an errno name like "EIO"'), message: z.string().max(500) })
const regs = z.strictObject({ eax: hex32, ebx: hex32, ecx: hex32, edx: hex32 })
const cpuidFact = z.union([z.strictObject({ regs }), z.strictObject({ fault })])
const msrFact = z.union([
  z.strictObject({ value: hex64 }),
  z.strictObject({ fault }),
  z.strictObject({ skipped: z.string().max(500) }),
])
const cpuidKeys = Object.fromEntries(CPUID_LEAVES.map(l => [l.key, cpuidFact.optional()]))

export const FactsJson = z.strictObject({
  schema: z.literal(FACTS_SCHEMA_ID),
  platform: z.string().max(64),
  /** Free-form provenance: where the values came from (machine, or the public sources cited). */
  source: z.string().max(4000).optional(),
  kernel: z.strictObject({
    release: z.string().max(256).optional(),
    cmdline: z.string().max(4096).optional(),
    vulnerabilities: z.record(z.string().regex(/^[a-z0-9_]{1,64}$/), z.string().max(1024)),
    lockdown: z.string().max(256).optional(),
  }),
  cpus: z.array(z.strictObject({
    cpu: z.number().int().min(0).max(65535),
    cpuid: z.strictObject(cpuidKeys),
    msr: z.record(z.string().regex(/^0x[0-9a-f]{1,8}$/, 'an MSR index as "0x" lower-case hex'), msrFact),
  })).min(1).max(8192),
})
export type FactsJson = z.infer<typeof FactsJson>

const u32 = (s: string): number => Number.parseInt(s.slice(2), 16) >>> 0

function cpuidFromJson(f: z.infer<typeof cpuidFact>): CpuidFact {
  if ('fault' in f) return { fault: f.fault }
  return { regs: { eax: u32(f.regs.eax), ebx: u32(f.regs.ebx), ecx: u32(f.regs.ecx), edx: u32(f.regs.edx) } }
}
function msrFromJson(f: z.infer<typeof msrFact>): MsrFact {
  if ('value' in f) return { value: parseU64(f.value)! }
  return f
}

/** Parsed, validated JSON -> Facts. Validation errors come from FactsJson.safeParse. */
export function factsFromJson(j: FactsJson): Facts {
  return {
    platform: j.platform,
    kernel: { ...j.kernel },
    cpus: j.cpus.map((c): CpuFacts => ({
      cpu: c.cpu,
      cpuid: Object.fromEntries(Object.entries(c.cpuid).filter(([, v]) => v).map(([k, v]) => [k, cpuidFromJson(v!)])),
      msr: Object.fromEntries(Object.entries(c.msr).map(([k, v]) => [k, msrFromJson(v)])),
    })),
  }
}

export function factsToJson(f: Facts, source?: string): FactsJson {
  return {
    schema: FACTS_SCHEMA_ID,
    platform: f.platform,
    ...(source ? { source } : {}),
    kernel: f.kernel,
    cpus: f.cpus.map(c => ({
      cpu: c.cpu,
      cpuid: Object.fromEntries(Object.entries(c.cpuid).map(([k, v]) => [k, 'fault' in v
        ? { fault: v.fault }
        : { regs: { eax: hex(v.regs.eax), ebx: hex(v.regs.ebx), ecx: hex(v.regs.ecx), edx: hex(v.regs.edx) } }])),
      msr: Object.fromEntries(Object.entries(c.msr).map(([k, v]) => [k, 'value' in v ? { value: hex(v.value) } : v])),
    })),
  }
}
