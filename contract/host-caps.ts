// The host capabilities the VMM response depends on (contract/CONTRACT.md section 5, v3 01/10).
// Pure: derived from CPUID words and ARCH_CAPABILITIES values that someone else read.
import { z } from 'zod'
import type { CpuFacts } from './facts.js'
import {
  ARCH_CAP_BHI_NO, ARCH_CAP_RRSBA, CPUID7_2_EDX_BHI_CTRL, CPUID7_2_EDX_RRSBA_CTRL,
  CPUID7_EDX_ARCH_CAPABILITIES, CPUID7_EDX_SSBD, CPUID7_EDX_STIBP, MSR, hasBit32,
} from './registers.js'
import { msrKey } from './facts.js'

export interface HostCaps {
  /** CPUID.(7,2):EDX[4]: BHI_DIS_S can be set (contract/CONTRACT.md section 5 `host_bhi_ctrl`). */
  bhiCtrl: boolean
  /** ARCH_CAPABILITIES bit 20 (section 5 `host_bhi_no`). */
  bhiNo: boolean
  /** CPUID.(7,2):EDX[2]: RRSBA_DIS_U/S can be set (section 5 `host_rrsba_ctrl`). */
  rrsbaCtrl: boolean
  /** ARCH_CAPABILITIES bit 19 (section 5 `host_rrsba`). */
  rrsba: boolean
  /** CPUID.(7,0):EDX[27]: STIBP may be forced (v3 01/10 supported bits). */
  stibp: boolean
  /** CPUID.(7,0):EDX[31]: SSBD may be forced (v3 01/10 supported bits). */
  ssbd: boolean
}

export const HOST_CAP_NAMES = ['bhiCtrl', 'bhiNo', 'rrsbaCtrl', 'rrsba', 'stibp', 'ssbd'] as const
export type HostCapName = (typeof HOST_CAP_NAMES)[number]

/** Where each capability comes from, for output and diagnostics. */
export const HOST_CAP_SOURCES: Record<HostCapName, string> = {
  bhiCtrl: 'CPUID.(7,2):EDX[4] BHI_CTRL (Linux scattered.c {EDX,4,7,2})',
  bhiNo: 'IA32_ARCH_CAPABILITIES bit 20 BHI_NO (Linux msr-index.h)',
  rrsbaCtrl: 'CPUID.(7,2):EDX[2] RRSBA_CTRL (Linux scattered.c {EDX,2,7,2})',
  rrsba: 'IA32_ARCH_CAPABILITIES bit 19 RRSBA (Linux msr-index.h)',
  stibp: 'CPUID.(7,0):EDX[27] STIBP (Linux cpufeatures.h)',
  ssbd: 'CPUID.(7,0):EDX[31] SSBD (Linux cpufeatures.h)',
}

/** The CPU data the caps come from: a CpuModel satisfies this. */
export interface CpuCapsData {
  cpuid7_0_edx: number
  cpuid7_2_edx: number
  /** null: no ARCH_CAPABILITIES MSR (CPUID.(7,0):EDX[29] clear), so BHI_NO and RRSBA read as clear. */
  archCapabilities: bigint | null
}

export function hostCapsFromCpu(c: CpuCapsData): HostCaps {
  const ac = c.archCapabilities ?? 0n
  return {
    bhiCtrl: hasBit32(c.cpuid7_2_edx, CPUID7_2_EDX_BHI_CTRL),
    bhiNo: (ac & ARCH_CAP_BHI_NO) !== 0n,
    rrsbaCtrl: hasBit32(c.cpuid7_2_edx, CPUID7_2_EDX_RRSBA_CTRL),
    rrsba: (ac & ARCH_CAP_RRSBA) !== 0n,
    stibp: hasBit32(c.cpuid7_0_edx, CPUID7_EDX_STIBP),
    ssbd: hasBit32(c.cpuid7_0_edx, CPUID7_EDX_SSBD),
  }
}

/** Caps of a host described as a presented CPU (scenario host models): its ARCH_CAPABILITIES as given. */
export function hostCapsFromPresented(p: { model: CpuCapsData; archCapabilities: bigint | null }): HostCaps {
  return hostCapsFromCpu({ cpuid7_0_edx: p.model.cpuid7_0_edx, cpuid7_2_edx: p.model.cpuid7_2_edx, archCapabilities: p.archCapabilities })
}

/**
 * Caps from one CPU of a Facts record (what a probe saw on the host). A capability that could
 * not be read (CPUID or MSR fault) is listed in `unknown` with the reason and reads as false in
 * `caps`: callers must not treat an unknown as a known "absent" (DESIGN.md exit code 3).
 */
export function hostCapsFromCpuFacts(c: CpuFacts): { caps: HostCaps; unknown: { cap: HostCapName; why: string }[] } {
  const unknown: { cap: HostCapName; why: string }[] = []
  const l70 = c.cpuid['0x7.0']
  const l72 = c.cpuid['0x7.2']
  const edx70 = l70 && 'regs' in l70 ? l70.regs.edx : undefined
  const edx72 = l72 && 'regs' in l72 ? l72.regs.edx : undefined
  if (edx70 === undefined) for (const cap of ['stibp', 'ssbd'] as const) unknown.push({ cap, why: `CPUID.(7,0) not read${l70 && 'fault' in l70 ? `: ${l70.fault.errno} ${l70.fault.message}` : ''}` })
  if (edx72 === undefined) for (const cap of ['bhiCtrl', 'rrsbaCtrl'] as const) unknown.push({ cap, why: `CPUID.(7,2) not read${l72 && 'fault' in l72 ? `: ${l72.fault.errno} ${l72.fault.message}` : ''}` })
  let archCap: bigint | null = null
  if (edx70 === undefined) {
    for (const cap of ['bhiNo', 'rrsba'] as const) unknown.push({ cap, why: 'CPUID.(7,0) not read, so whether IA32_ARCH_CAPABILITIES exists is unknown' })
  } else if (hasBit32(edx70, CPUID7_EDX_ARCH_CAPABILITIES)) {
    // The MSR exists iff CPUID.(7,0):EDX[29] (contract/CONTRACT.md section 2); it must then be read.
    const m = c.msr[msrKey(MSR.ARCH_CAPABILITIES)]
    if (m && 'value' in m) archCap = m.value
    else {
      const why = m && 'fault' in m ? `${m.fault.errno} ${m.fault.message}` : m && 'skipped' in m ? `skipped: ${m.skipped}` : 'not read'
      for (const cap of ['bhiNo', 'rrsba'] as const) unknown.push({ cap, why: `IA32_ARCH_CAPABILITIES unreadable (${why})` })
    }
  }
  return { caps: hostCapsFromCpu({ cpuid7_0_edx: edx70 ?? 0, cpuid7_2_edx: edx72 ?? 0, archCapabilities: archCap }), unknown }
}

export const HOST_CAPS_SCHEMA_ID = 'virtmiti/host-caps/v1'

/** HostCaps as JSON (`virtmiti host caps --json`, `host check --host-caps F`). */
export const HostCapsJson = z.strictObject({
  schema: z.literal(HOST_CAPS_SCHEMA_ID),
  caps: z.strictObject({
    bhiCtrl: z.boolean(), bhiNo: z.boolean(), rrsbaCtrl: z.boolean(),
    rrsba: z.boolean(), stibp: z.boolean(), ssbd: z.boolean(),
  }),
  /** Capabilities that could not be read, with why (they read as false in `caps`). */
  unknown: z.array(z.strictObject({ cap: z.enum(HOST_CAP_NAMES), why: z.string().max(500) })).max(16).optional(),
  /** Free-form provenance (machine, CPU model id). */
  source: z.string().max(4000).optional(),
})
export type HostCapsJson = z.infer<typeof HostCapsJson>

export function hostCapsToJson(caps: HostCaps, extra: { unknown?: HostCapsJson['unknown']; source?: string } = {}): HostCapsJson {
  return {
    schema: HOST_CAPS_SCHEMA_ID,
    caps: { ...caps },
    ...(extra.unknown && extra.unknown.length ? { unknown: extra.unknown } : {}),
    ...(extra.source ? { source: extra.source } : {}),
  }
}

/** Short text like "BHI_CTRL !BHI_NO RRSBA_CTRL RRSBA STIBP SSBD" for test names and diagnostics. */
export function describeHostCaps(c: HostCaps): string {
  const f = (on: boolean, name: string) => (on ? name : '!' + name)
  return [f(c.bhiCtrl, 'BHI_CTRL'), f(c.bhiNo, 'BHI_NO'), f(c.rrsbaCtrl, 'RRSBA_CTRL'), f(c.rrsba, 'RRSBA'), f(c.stibp, 'STIBP'), f(c.ssbd, 'SSBD')].join(' ')
}
