// The guest report (issue 4): what `virtmiti guest report` writes and `virtmiti host check`
// pairs with the VMM's observed state. The host treats it as untrusted input: strict schema,
// unknown fields rejected, bounded sizes (issue 3).
import { z } from 'zod'

import { REPORT_SCHEMA_ID } from './report-id.js'
import { VerdictJson } from './probe-schema.js'

export { REPORT_SCHEMA_ID, REPORT_MAX_BYTES } from './report-id.js'

const hex64 = z.string().regex(/^0x[0-9a-f]{1,16}$/, 'a 64-bit value as "0x" lower-case hex')
const errnoName = z.string().regex(/^E[A-Z0-9]{1,15}$/, 'an errno name like "EIO"')

export const ReportReason = z.strictObject({
  rule: z.string().max(200),
  text: z.string().max(2000),
  source: z.string().max(500),
})

/** Outcome of the read-modify-write on one CPU. */
export const CpuOutcome = z.enum([
  'written',        // value changed, written, read back equal
  'unchanged',      // already held the wanted value: nothing written (second run is a no-op)
  'dry-run',        // would write `wanted`; nothing written
  'not-enumerated', // virtual MSRs not enumerated on this CPU: nothing read or written
  'fault',          // a read or the write faulted (see fault)
  'readback-mismatch', // written, but the read-back differs from what was written
  'offline',        // CPU went away during the run (ENXIO)
])

export const ReportCpu = z.strictObject({
  cpu: z.number().int().min(0).max(65535),
  outcome: CpuOutcome,
  /** MITI_ENUM as read on this CPU, when enumerated. */
  mitiEnum: hex64.optional(),
  /** MITI_CTRL before the run, when it could be read. */
  before: hex64.optional(),
  /** The value the agent wants this CPU to hold (read-modify-write of enumerated bits). */
  wanted: hex64.optional(),
  /** What was written (absent when nothing was written). */
  written: hex64.optional(),
  /** MITI_CTRL read back after the write (or the current value when unchanged). */
  readBack: hex64.optional(),
  fault: z.strictObject({ step: z.string().max(64), errno: errnoName, message: z.string().max(500) }).optional(),
})

export const GuestReport = z.strictObject({
  schema: z.literal(REPORT_SCHEMA_ID),
  agent: z.strictObject({ name: z.literal('virtmiti'), version: z.string().max(64) }),
  /** ISO 8601 UTC timestamp of the run. */
  timestamp: z.string().max(64).regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, 'an ISO 8601 UTC timestamp'),
  /** /sys/class/dmi/id/product_uuid when readable (lower-case), else absent. */
  vmUuid: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'a lower-case UUID').optional(),
  /** /proc/sys/kernel/random/boot_id. */
  bootId: z.string().regex(/^[0-9a-f-]{36}$/, 'a boot id (UUID)').optional(),
  kernelRelease: z.string().max(256).optional(),
  platform: z.string().max(64),
  dryRun: z.boolean(),
  /** Whether the virtual MSRs are enumerated (all CPUs); false -> nothing written, and why. */
  enumerated: z.boolean(),
  decision: z.strictObject({
    /** Whether this guest relies on the short BHB clearing sequence (CTRL bit 0), or unknown. */
    bhbClearSeqSUsed: z.union([z.boolean(), z.literal('unknown')]),
    /** Whether this guest uses retpoline in supervisor mode (CTRL bit 1), or unknown. */
    retpolineSUsed: z.union([z.boolean(), z.literal('unknown')]),
    kernelBhi: z.string().max(64),
    kernelSpectreV2: z.string().max(64),
    reasons: z.array(ReportReason).max(64),
  }),
  cpus: z.array(ReportCpu).min(1).max(8192),
  /** True only when every CPU ended holding `wanted` (or nothing was to be written). */
  complete: z.boolean(),
  /**
   * The guest's verdict after this run (issue 12; contract/verdict.ts), with the finding ids
   * (contract/findings.ts). Informational for the host: `host expect`/`host check` derive their
   * own answer from the per-CPU data and never trust this.
   */
  verdict: VerdictJson.extend({ findings: z.array(z.string().max(100)).max(64) }).optional(),
})
export type GuestReport = z.infer<typeof GuestReport>
export type ReportCpu = z.infer<typeof ReportCpu>
