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

const verdict = z.enum(['protected', 'at-risk', 'vulnerable', 'unknown'])
const concern = z.enum(['bhi', 'retpoline'])

/** The operator's answer (contract/verdict.ts, contract/CONTRACT.md section 8); also in guest-report/v1. */
export const VerdictJson = z.strictObject({
  verdict,
  environment: z.enum(['vm', 'bare-metal', 'unknown']),
  concerns: z.array(z.strictObject({
    concern, verdict, mitigation: z.string().max(500), basis: z.string().max(2000), rule: z.string().max(100),
    vmm: z.enum(['not-needed', 'backing', 'cannot-be-told', 'unknown']),
    findings: z.array(z.string().max(100)).max(64),
  })).max(2),
})

/**
 * One finding. `level` and `text` are the first probe/v1 fields; the rest came with issue 12 and are
 * optional only so that documents from earlier agents (recorded boots) still read; this agent
 * always writes them. Ids: contract/findings.ts.
 */
export const FindingJson = z.strictObject({
  level: z.enum(['violation', 'cannot-tell', 'note']),
  text: z.string().max(8000),
  id: z.string().max(100).optional(),
  effect: z.enum(['at-risk', 'vulnerable', 'unknown', 'note']).optional(),
  concern: concern.optional(),
  /** CPU list as the kernel writes one ("0-3,5"). */
  cpus: z.string().max(4000).optional(),
  title: z.string().max(500).optional(),
  detail: z.string().max(2000).optional(),
})

export const ProbeJson = z.strictObject({
  schema: z.literal(PROBE_SCHEMA_ID),
  agent: z.strictObject({ name: z.literal('virtmiti'), version: z.string() }),
  /** ok: protected; violation: at risk or vulnerable; cannot-tell: unknown (verdict.verdict says which). */
  status: z.enum(['ok', 'violation', 'cannot-tell']),
  /** 0 protected, 1 at risk or vulnerable, 3 unknown (issue 12). */
  exitCode: z.number().int(),
  /** The operator's answer; absent only in documents from agents before issue 12. */
  verdict: VerdictJson.optional(),
  /** Every finding, most severe first. */
  findings: z.array(FindingJson),
  facts: FactsJson,
  decision: DecisionJson,
})
export type ProbeJson = z.infer<typeof ProbeJson>

export type DecisionJsonT = z.infer<typeof DecisionJson>
