// The `guest probe --json` document: its id and the Decision -> JSON codec (no zod here, so the
// probe does not pay zod's start-up cost; the schema is in probe-schema.ts).
import type { Decision } from './decision-types.js'
import type { DecisionJsonT } from './probe-schema.js'
import { hex } from './bits.js'

export type { ProbeJson } from './probe-schema.js'
import { PROBE_SCHEMA_ID } from './schema-ids.js'
export { PROBE_SCHEMA_ID }

export function decisionToJson(d: Decision): DecisionJsonT {
  return {
    ...d,
    kernel: { ...d.kernel },
    virt: d.virt.map(v => ({
      cpu: v.cpu, reached: v.reached, enumerated: v.enumerated, reason: v.reason,
      ...(v.mitiEnum !== undefined ? { mitiEnum: hex(v.mitiEnum) } : {}),
      ...(v.mitiCtrl !== undefined ? { mitiCtrl: hex(v.mitiCtrl) } : {}),
      ...(v.wanted !== undefined ? { wanted: hex(v.wanted) } : {}),
    })),
  }
}
