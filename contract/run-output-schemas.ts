// The JSON documents `host vmm run --json` and `scenarios run --json` print (issue 12 item 7: every
// JSON kind the tools print has a published schema). Growth follows contract/EVOLUTION.md: a v1
// document gains optional fields only. Two parts are open on purpose and say so: a TAP point's
// `diag` (per-check diagnostics, free-form by design) and a QEMU boot row beyond its core fields
// (the qemu tier adds per-boot facts there; host/qemu/tier.ts BootRow).
import { z } from 'zod'
import { TIERS } from './scenario.js'
import { GuestReport } from './report-json.js'
import { VmmState } from './vmm-state-json.js'
import { CheckResultJson } from './host-output-schemas.js'

import { SCENARIO_RUN_SCHEMA_ID, VMM_RUN_SCHEMA_ID } from './schema-ids.js'

export { SCENARIO_RUN_SCHEMA_ID, VMM_RUN_SCHEMA_ID }

/** One TAP test point as the tools hold it (bin/lib/tap.ts TapPoint), subtests nested. */
export const TapPointJson: z.ZodType<unknown> = z.lazy(() => z.strictObject({
  ok: z.boolean(),
  name: z.string(),
  skip: z.string().optional(),
  todo: z.string().optional(),
  diag: z.record(z.string(), z.unknown()).optional().describe('the point\'s YAML diagnostics, free-form'),
  comments: z.array(z.string()).optional(),
  sub: z.array(TapPointJson).optional(),
}))

const hostCaps = z.strictObject({
  bhiCtrl: z.boolean(), bhiNo: z.boolean(), rrsbaCtrl: z.boolean(), rrsba: z.boolean(), stibp: z.boolean(), ssbd: z.boolean(),
})
const hexMasks = z.record(z.string(), z.string())

/** host/vmm/live/cpuid-fidelity.ts CpuidFidelity: where each contract CPUID leaf came from on this host. */
const cpuidFidelity = z.strictObject({
  blocking: z.array(z.string()).describe('contract bits the guest sees differently from the presented model'),
  asPresented: z.array(z.string()),
  notAsPresented: z.array(z.strictObject({ leaf: z.string(), differs: hexMasks })),
  hostPinned: z.array(z.strictObject({ leaf: z.string(), bits: hexMasks })).describe('leaves the complement VM proved host-pinned'),
  statement: z.string(),
})

const ms = z.number().min(0)
export const VmmRunJson = z.strictObject({
  schema: z.literal(VMM_RUN_SCHEMA_ID),
  ok: z.boolean(),
  exitCode: z.union([z.literal(0), z.literal(1), z.literal(4)]).describe('0 the verdict of a correct VMM; 1 a violation; 4 skipped'),
  skipReason: z.string().optional(),
  cpuModel: z.string(), hostCpu: z.string(), hostCaps, profile: z.string(), vcpus: z.number().int().min(1),
  vmUuid: z.string().optional(),
  cpuid: cpuidFidelity.optional(),
  timings: z.strictObject({ createMs: ms, proofMs: ms, probeMs: ms, reportMs: ms, checkMs: ms, selftestMs: ms, totalMs: ms }).optional()
    .describe('createMs includes the CPUID proof and the filter-exit measurement (proofMs)'),
  ops: z.strictObject({ report: z.number().int().min(0), selftest: z.number().int().min(0) }).optional().describe('guest CPUID/RDMSR/WRMSR executed by the payload'),
  failures: z.array(z.string()),
  report: GuestReport.optional(),
  vmmState: VmmState.optional().describe('the VMM state after the report and the kernel step'),
  check: CheckResultJson.optional(),
  checkAfterSelftest: CheckResultJson.optional(),
  selftest: z.strictObject({ exitCode: z.number().int(), points: z.array(TapPointJson) }).optional(),
})

const qemuBoot = z.looseObject({
  name: z.string(), cpu: z.string(), append: z.array(z.string()), status: z.enum(['pass', 'fail', 'skip']),
  seconds: z.number().optional(), skip: z.string().optional(), error: z.string().optional(), failed: z.array(z.string()).optional(),
  kernel: z.strictObject({
    id: z.string(), version: z.string().describe('the guest kernel release (uname -r)'),
    origin: z.union([
      z.strictObject({ suite: z.string(), package: z.string(), version: z.string(), debs: z.array(z.strictObject({ package: z.string(), version: z.string(), sha256: z.string() })) }),
      z.strictObject({ file: z.string(), sha256: z.string() }),
    ]),
  }).optional().describe('the guest kernel and where it came from (host/qemu/kernels.ts)'),
  death: z.strictObject({ line: z.string(), expected: z.string().optional() }).optional().describe('the kernel died before /init: the console\'s last WARNING/panic/Oops line; expected: the matrix\'s known death'),
}).describe('one QEMU boot; further per-boot fields (facts, vmm, patched) may appear (host/qemu/tier.ts BootRow)')

export const ScenarioRunJson = z.strictObject({
  schema: z.literal(SCENARIO_RUN_SCHEMA_ID),
  shard: z.string().regex(/^\d+\/\d+$/, 'i/n'),
  ok: z.boolean(),
  runs: z.array(z.strictObject({
    name: z.string(), scenario: z.string(), tier: z.enum(TIERS), file: z.string(),
    status: z.enum(['pass', 'fail', 'skip']), ms: z.number().int().min(0),
    skip: z.string().optional(),
    points: z.array(TapPointJson).optional().describe('a failed run\'s points'),
  })),
  qemu: z.strictObject({ set: z.enum(['ci', 'full']), image: z.unknown().optional(), boots: z.array(qemuBoot) }).optional(),
  exhaustive: z.strictObject({
    cases: z.number().int(), refused: z.number().int(), ms: ms, cpuMs: ms, ok: z.boolean(), failures: z.array(z.unknown()),
  }).optional(),
})
