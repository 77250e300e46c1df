// zod schema of the `guest probe --json` document; published as JSON Schema by `make schemas`.
import { z } from 'zod'
import { FactsJson } from './facts-schema.js'
import { PROBE_SCHEMA_ID } from './schema-ids.js'

const hex64 = z.string().regex(/^0x[0-9a-f]{1,16}$/)
const tri = z.union([z.boolean(), z.literal('unknown')])
const reason = z.strictObject({ rule: z.string(), text: z.string(), source: z.string() })
const bhiMode = z.enum(['not-affected', 'bhi-dis-s', 'sw-loop', 'retpoline', 'vmexit-sw-loop', 'vulnerable', 'not-reported', 'unknown'])
const v2Mode = z.enum(['not-affected', 'none', 'retpoline', 'lfence', 'eibrs', 'eibrs-lfence', 'eibrs-retpoline', 'ibrs', 'unknown'])

export const DecisionJson = z.strictObject({
  cpu: z.strictObject({ vendor: z.string(), family: z.number().int(), model: z.number().int(), stepping: z.number().int(), hypervisor: z.boolean() }),
  bhiAffected: z.strictObject({ value: tri, reasons: z.array(reason) }),
  kernel: z.strictObject({ spectreV2: v2Mode, bhi: bhiMode, raw: z.string().optional(), retpoline: tri }),
  expected: z.strictObject({ spectreV2: v2Mode, bhi: bhiMode, retpoline: tri, reasons: z.array(reason) }),
  mismatches: z.array(z.strictObject({ what: z.enum(['bhi', 'spectre_v2']), kernel: z.string(), expected: z.string(), reason })),
  wish: z.strictObject({ bhbClearSeqSUsed: tri, retpolineSUsed: tri }),
  wishReasons: z.array(reason),
  virt: z.array(z.strictObject({
    cpu: z.number().int(), reached: z.enum(['none', 'arch-cap', 'virtual-enum', 'miti-enum']), enumerated: z.boolean(),
    mitiEnum: hex64.optional(), mitiCtrl: hex64.optional(), wanted: hex64.optional(), reason,
  })),
  enumerated: z.boolean(),
  disagreements: z.array(z.strictObject({ cpu: z.number().int(), what: z.string() })),
})

export const ProbeJson = z.strictObject({
  schema: z.literal(PROBE_SCHEMA_ID),
  agent: z.strictObject({ name: z.literal('virtmiti'), version: z.string() }),
  /** ok: nothing wrong found; violation: a mismatch or CPUs that disagree; cannot-tell: some fact could not be read. */
  status: z.enum(['ok', 'violation', 'cannot-tell']),
  exitCode: z.number().int(),
  /** One line per problem, most important first. */
  findings: z.array(z.strictObject({ level: z.enum(['violation', 'cannot-tell', 'note']), text: z.string() })),
  facts: FactsJson,
  decision: DecisionJson,
})
export type ProbeJson = z.infer<typeof ProbeJson>

export type DecisionJsonT = z.infer<typeof DecisionJson>
