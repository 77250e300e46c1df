// Test support: a minimal guest that walks the discovery chain (contract/CONTRACT.md section 3) on a
// Platform, writes MITI_CTRL per CPU and returns a GuestReport, so the checker can be tested
// without the full agent (built elsewhere). Not used by the CLI.
import { hex } from '../../contract/bits.js'
import { REPORT_SCHEMA_ID, type GuestReport, type ReportCpu } from '../../contract/report-json.js'
import { ARCH_CAP_VIRTUAL_ENUM, CPUID7_EDX_ARCH_CAPABILITIES, MSR, VIRT_ENUM_MITIGATION_CTRL_SUPPORT, hasBit32 } from '../../contract/registers.js'
import type { Platform } from '../../guest/platform.js'

export const TEST_UUID = '0b9d7b0e-5a55-4c1e-9f7a-2d6b1f0c4e11'

export interface MiniGuestOptions {
  /** CTRL bits the guest wants per CPU (only enumerated bits are written). */
  ctrl: (cpu: number) => bigint
  vmUuid?: string
  /** Also write SPEC_CTRL with this value on every CPU, then read it back (as a kernel would). */
  specCtrl?: bigint
  /** Omit vmUuid from the report. */
  noUuid?: boolean
}

function runCpu(p: Platform, cpu: number, o: MiniGuestOptions): ReportCpu {
  const fault = (step: string, f: { errno: string; message: string }): ReportCpu => ({ cpu, outcome: 'fault', fault: { step, errno: f.errno, message: f.message.slice(0, 500) } })
  const l7 = p.cpuid(cpu, 7, 0)
  if (!l7.ok) return fault('cpuid', l7.fault)
  if (!hasBit32(l7.regs.edx, CPUID7_EDX_ARCH_CAPABILITIES)) return { cpu, outcome: 'not-enumerated' }
  const ac = p.rdmsr(cpu, MSR.ARCH_CAPABILITIES)
  if (!ac.ok) return fault('arch-cap', ac.fault)
  if ((ac.value & ARCH_CAP_VIRTUAL_ENUM) === 0n) return { cpu, outcome: 'not-enumerated' }
  const ve = p.rdmsr(cpu, MSR.VIRTUAL_ENUMERATION)
  if (!ve.ok) return fault('virtual-enum', ve.fault)
  if ((ve.value & VIRT_ENUM_MITIGATION_CTRL_SUPPORT) === 0n) return { cpu, outcome: 'not-enumerated' }
  const en = p.rdmsr(cpu, MSR.VIRTUAL_MITIGATION_ENUM)
  if (!en.ok) return fault('miti-enum', en.fault)
  const before = p.rdmsr(cpu, MSR.VIRTUAL_MITIGATION_CTRL)
  if (!before.ok) return fault('miti-ctrl-read', before.fault)
  const wanted = (before.value & ~en.value) | (o.ctrl(cpu) & en.value)
  const base = { cpu, mitiEnum: hex(en.value), before: hex(before.value), wanted: hex(wanted) }
  if (wanted === before.value) return { ...base, outcome: 'unchanged', readBack: hex(before.value) }
  const w = p.wrmsr(cpu, MSR.VIRTUAL_MITIGATION_CTRL, wanted)
  if (!w.ok) return { ...base, ...fault('miti-ctrl-write', w.fault) }
  const rb = p.rdmsr(cpu, MSR.VIRTUAL_MITIGATION_CTRL)
  if (!rb.ok) return { ...base, written: hex(wanted), ...fault('miti-ctrl-readback', rb.fault) }
  return { ...base, written: hex(wanted), readBack: hex(rb.value), outcome: rb.value === wanted ? 'written' : 'readback-mismatch' }
}

export function miniGuestReport(p: Platform, o: MiniGuestOptions): GuestReport {
  const cpus = p.cpus().map(cpu => {
    const r = runCpu(p, cpu, o)
    if (o.specCtrl !== undefined) {
      p.wrmsr(cpu, MSR.SPEC_CTRL, o.specCtrl)
      p.rdmsr(cpu, MSR.SPEC_CTRL)
    }
    return r
  })
  return {
    schema: REPORT_SCHEMA_ID,
    agent: { name: 'virtmiti', version: '0.0.0-test' },
    timestamp: '2026-01-01T00:00:00Z',
    ...(o.noUuid ? {} : { vmUuid: o.vmUuid ?? TEST_UUID }),
    platform: p.kind,
    dryRun: false,
    enumerated: cpus.every(c => c.outcome !== 'not-enumerated'),
    decision: { bhbClearSeqSUsed: 'unknown', retpolineSUsed: 'unknown', kernelBhi: 'unknown', kernelSpectreV2: 'unknown', reasons: [] },
    cpus,
    complete: cpus.every(c => c.outcome === 'written' || c.outcome === 'unchanged'),
  }
}
