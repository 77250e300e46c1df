// What one live-guest boot showed, in a small JSON-friendly form (64-bit values as "0x" hex,
// DESIGN.md conventions): the kernel's own spectre_v2 line, the vCPUs, and rdmsr per CPU.
import { hex } from '../../contract/bits.js'
import type { BootResult } from './boot.js'
import { CROSS_CHECK_MSRS, parseRdmsrSection, rdmsrSectionName } from './commands.js'

export interface BootSummary {
  cpu: string
  append: string[]
  accel: string
  ok: boolean
  error?: string
  wallMs: number
  /** Guest uptime when /init sent its last section (seconds). */
  guestDoneS?: number
  spectreV2?: string
  /** CPUs with a /dev/cpu/N directory in the guest. */
  cpus: number[]
  /** MSR -> CPU -> "0x.." value or "error" (rdmsr failed: #GP through the msr driver). */
  rdmsr: Record<string, Record<string, string>>
  /** Non-zero exit codes by section. */
  failedSections: Record<string, number>
  /** The real agent's probe verdict (schema virtmiti/probe/v1), when the probe section holds one. */
  agent?: { status?: unknown; exitCode?: unknown; kernelBhi?: unknown; expectedBhi?: unknown; kernelRetpoline?: unknown; expectedRetpoline?: unknown; mismatches?: unknown; wish?: unknown }
}

/** Pick the verdict fields out of the agent's probe JSON; undefined for anything else. */
function agentVerdict(output: string | undefined): BootSummary['agent'] {
  let j: unknown
  try { j = JSON.parse(output ?? '') } catch { return undefined }
  if (typeof j !== 'object' || j === null || (j as { schema?: unknown }).schema !== 'virtmiti/probe/v1') return undefined
  const p = j as { status?: unknown; exitCode?: unknown; decision?: { kernel?: { bhi?: unknown; retpoline?: unknown }; expected?: { bhi?: unknown; retpoline?: unknown }; mismatches?: unknown; wish?: unknown } }
  const d = p.decision
  return {
    status: p.status, exitCode: p.exitCode, kernelBhi: d?.kernel?.bhi, expectedBhi: d?.expected?.bhi,
    kernelRetpoline: d?.kernel?.retpoline, expectedRetpoline: d?.expected?.retpoline, mismatches: d?.mismatches, wish: d?.wish,
  }
}

export function summarize(r: BootResult, cpu: string, append: readonly string[]): BootSummary {
  const s = r.sections
  const rdmsr: BootSummary['rdmsr'] = {}
  for (const msr of CROSS_CHECK_MSRS) {
    const sec = s.get(rdmsrSectionName(msr))
    if (!sec) continue
    const perCpu: Record<string, string> = {}
    for (const [c, v] of parseRdmsrSection(sec.output)) perCpu[String(c)] = v === 'error' ? 'error' : hex(v)
    rdmsr[hex(msr)] = perCpu
  }
  const failedSections: Record<string, number> = {}
  for (const [name, sec] of s) if (sec.exit !== 0) failedSections[name] = sec.exit
  const out: BootSummary = {
    cpu, append: [...append], accel: r.accel, ok: r.ok, wallMs: Math.round(r.wallMs),
    cpus: (s.get('cpus')?.output ?? '').split(/\s+/).filter(x => /^\d+$/.test(x)).map(Number).sort((a, b) => a - b),
    rdmsr, failedSections,
  }
  if (r.error !== undefined) out.error = r.error
  if (r.frames.done?.uptimeS !== undefined) out.guestDoneS = r.frames.done.uptimeS
  const agent = agentVerdict(s.get('probe')?.output)
  if (agent) out.agent = agent
  const line = s.get('spectre_v2')?.output.trim()
  if (line !== undefined) out.spectreV2 = line
  return out
}
