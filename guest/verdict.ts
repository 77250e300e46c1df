// From Facts and Decision to findings and an exit code (DESIGN.md exit codes). Pure.
import type { Decision } from '../contract/decision-types.js'
import type { Facts } from '../contract/facts.js'
import { cpuRanges } from '../contract/format.js'

export { cpuRanges }

export interface Finding { level: 'violation' | 'cannot-tell' | 'note'; text: string }

/** Group identical messages across CPUs: "CPUs 0-255: message". */
function grouped(items: { cpu: number; text: string }[]): string[] {
  const by = new Map<string, number[]>()
  for (const it of items) by.set(it.text, [...(by.get(it.text) ?? []), it.cpu])
  return [...by].map(([text, cpus]) => `${cpus.length > 1 ? 'CPUs' : 'CPU'} ${cpuRanges(cpus)}: ${text}`)
}

export function verdict(facts: Facts, d: Decision): { findings: Finding[]; exitCode: number; status: 'ok' | 'violation' | 'cannot-tell' } {
  const f: Finding[] = []
  for (const m of d.mismatches) f.push({ level: 'violation', text: `${m.what}: the kernel chose "${m.kernel}" but this CPU and command line call for "${m.expected}" (${m.reason.text}; ${m.reason.source})` })
  for (const t of grouped(d.disagreements.map(x => ({ cpu: x.cpu, text: x.what })))) f.push({ level: 'violation', text: `CPUs disagree: ${t}` })
  const faults: { cpu: number; text: string }[] = []
  for (const c of facts.cpus) {
    for (const [k, v] of Object.entries(c.cpuid)) if (v && 'fault' in v) faults.push({ cpu: c.cpu, text: `CPUID ${k}: ${v.fault.errno}: ${v.fault.message.replace(/\/dev\/cpu\/\d+\//, '/dev/cpu/N/')}` })
    for (const [k, v] of Object.entries(c.msr)) if ('fault' in v) faults.push({ cpu: c.cpu, text: `MSR ${k}: ${v.fault.errno}: ${v.fault.message.replace(/\/dev\/cpu\/\d+\//, '/dev/cpu/N/').replace(/ on CPU \d+/, '')}` })
  }
  for (const t of grouped(faults)) f.push({ level: 'cannot-tell', text: t })
  if (d.kernel.raw === undefined) f.push({ level: 'cannot-tell', text: 'no /sys/devices/system/cpu/vulnerabilities/spectre_v2: which mitigation the kernel uses is unknown' })
  else if (d.kernel.bhi === 'unknown' || d.kernel.spectreV2 === 'unknown') f.push({ level: 'cannot-tell', text: `spectre_v2 line not understood, reported as is: "${d.kernel.raw}"` })
  if (d.expected.bhi === 'unknown' || d.expected.spectreV2 === 'unknown') {
    const r = d.expected.reasons[d.expected.reasons.length - 1]
    f.push({ level: 'note', text: `no prediction of the kernel's choice to compare with: ${r ? r.text : 'unknown'}` })
  }
  const violation = f.some(x => x.level === 'violation')
  const cannot = f.some(x => x.level === 'cannot-tell')
  return { findings: f, exitCode: violation ? 1 : cannot ? 3 : 0, status: violation ? 'violation' : cannot ? 'cannot-tell' : 'ok' }
}
