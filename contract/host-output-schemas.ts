// zod schemas of two documents the host prints (issue 12, "every JSON kind has a published
// schema"): `host expect --json` (virtmiti/expect/v1) and `host check --json`
// (virtmiti/check-result/v1). Output-only: the host never parses them; scripts/gen-schemas.ts
// publishes them and contract/schemas/schemas.test.ts checks real output against them.
import { z } from 'zod'

export const EXPECT_SCHEMA_ID = 'virtmiti/expect/v1'
export const CHECK_RESULT_SCHEMA_ID = 'virtmiti/check-result/v1'

const hex64 = z.string().regex(/^0x[0-9a-f]{1,16}$/)
const caps = z.strictObject({ bhiCtrl: z.boolean(), bhiNo: z.boolean(), rrsbaCtrl: z.boolean(), rrsba: z.boolean(), stibp: z.boolean(), ssbd: z.boolean() })
const forceReason = z.strictObject({ bit: z.string(), forced: z.boolean(), rule: z.string(), source: z.string() })

/** A bit the guest relies on that the VMM cannot protect (host/check/expect.ts guestNeedFindings). */
const needFinding = z.strictObject({
  id: z.enum(['vmm.not-enumerated', 'vmm.enum-lacks-bit', 'report.not-reported']),
  bit: z.string(),
  /** vCPU list as the kernel writes CPU lists ("0-3,5"). */
  vcpus: z.string(),
  text: z.string(),
})

export const ExpectJson = z.strictObject({
  schema: z.literal(EXPECT_SCHEMA_ID),
  profile: z.string(),
  userspaceForce: z.strictObject({ mask: hex64, value: hex64 }),
  hostCaps: caps,
  vcpus: z.array(z.strictObject({
    cpu: z.number().int().min(0),
    mitiCtrl: hex64.optional(),
    mitiCtrlBits: z.array(z.string()).optional(),
    basis: z.string(),
    forcedMask: hex64,
    forcedValue: hex64,
    forcedMaskBits: z.array(z.string()),
    forcedValueBits: z.array(z.string()),
    rules: z.array(forceReason),
  })),
  /** Only with --guest-report (the guest's own decision is needed). */
  findings: z.array(needFinding).optional(),
})

const checkItem = z.strictObject({
  id: z.string(),
  ok: z.boolean(),
  message: z.string(),
  skip: z.string().optional(),
  diag: z.record(z.string(), z.unknown()).optional(),
})

const vcpuCheck = z.strictObject({
  index: z.number().int().min(0), ok: z.boolean(), items: z.array(checkItem), notes: z.array(z.string()),
  basis: z.enum(['guest+vmm', 'vmm-only']).describe('what the vCPU was checked on: guest data and the VMM state, or the VMM state only (offline, fault, absent from the report)'),
})

const checkOk = z.strictObject({
  schema: z.literal(CHECK_RESULT_SCHEMA_ID),
  ok: z.boolean().describe('verdict === "pass"'),
  verdict: z.enum(['pass', 'fail', 'could-not-tell']).describe('could-not-tell: no failure, but no vCPU had usable guest data (exit 3, never a pass)'),
  vmUuid: z.string(),
  pairedBy: z.enum(['vm-uuid', 'vcpu-index-only']),
  hostCapsFrom: z.enum(['host-caps-file', 'vmm-state']),
  vm: z.array(checkItem),
  vcpus: z.array(vcpuCheck),
  failures: z.array(z.string()),
  findings: z.array(needFinding).optional(),
  selftest: z.array(checkItem).optional().describe('with --selftest: the guest selftest\'s rules, one item each (id: the rule key, e.g. perVcpu)'),
  afterReset: z.array(vcpuCheck).optional().describe('with --after-reset: per vCPU, CTRL and the forced bits after a vCPU reset (contract/CONTRACT.md section 3)'),
})

/** The inputs did not parse: exit 2, with the file, field and expectation per error. */
const checkInputErrors = z.strictObject({
  schema: z.literal(CHECK_RESULT_SCHEMA_ID),
  ok: z.literal(false),
  inputErrors: z.array(z.string()),
})

export const CheckResultJson = z.union([checkOk, checkInputErrors])
