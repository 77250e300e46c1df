// Strict zod schema of the Facts JSON file (--record/--replay). Loaded only where untrusted
// input is validated: zod's start-up cost stays off the probe's hot path (see bench/).
import { z } from 'zod'
import { CPUID_LEAVES } from './facts.js'
import { FACTS_SCHEMA_ID } from './schema-ids.js'

const hex32 = z.string().regex(/^0x[0-9a-f]{1,8}$/, 'a 32-bit value as "0x" lower-case hex')
const hex64 = z.string().regex(/^0x[0-9a-f]{1,16}$/, 'a 64-bit value as "0x" lower-case hex')
const fault = z.strictObject({ errno: z.string().regex(/^E[A-Z0-9]+$/, 'an errno name like "EIO"'), message: z.string().max(500) })
const regs = z.strictObject({ eax: hex32, ebx: hex32, ecx: hex32, edx: hex32 })
export const cpuidFact = z.union([z.strictObject({ regs }), z.strictObject({ fault })])
export const msrFact = z.union([
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
    config: z.record(z.string().regex(/^CONFIG_[A-Z0-9_]{1,64}$/), z.string().max(64)).optional().describe('kernel build options the choices depend on (y, m, n), from /boot/config-<release>'),
  }),
  cpus: z.array(z.strictObject({
    cpu: z.number().int().min(0).max(65535),
    cpuid: z.strictObject(cpuidKeys),
    msr: z.record(z.string().regex(/^0x[0-9a-f]{1,8}$/, 'an MSR index as "0x" lower-case hex'), msrFact),
  })).min(1).max(8192),
})
export type FactsJson = z.infer<typeof FactsJson>

export type CpuidFactJson = z.infer<typeof cpuidFact>
export type MsrFactJson = z.infer<typeof msrFact>
