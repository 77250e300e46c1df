// JSON form of Facts (the --record/--replay file), versioned. Register values are "0x" hex
// strings so that 64-bit values survive JSON (DESIGN.md conventions). The strict schema that
// validates untrusted files is in facts-schema.ts (zod), kept apart so the probe need not load zod.
import type { FactsJson, CpuidFactJson, MsrFactJson } from './facts-schema.js'
import type { Facts, MsrFact, CpuFacts, CpuidFact } from './facts.js'
import { hex, parseU64 } from './bits.js'

export type { FactsJson } from './facts-schema.js'
import { FACTS_SCHEMA_ID } from './schema-ids.js'
export { FACTS_SCHEMA_ID }

const u32 = (s: string): number => Number.parseInt(s.slice(2), 16) >>> 0

function cpuidFromJson(f: CpuidFactJson): CpuidFact {
  if ('fault' in f) return { fault: f.fault }
  return { regs: { eax: u32(f.regs.eax), ebx: u32(f.regs.ebx), ecx: u32(f.regs.ecx), edx: u32(f.regs.edx) } }
}
function msrFromJson(f: MsrFactJson): MsrFact {
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
