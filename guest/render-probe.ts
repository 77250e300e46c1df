// Human and TAP renderings of a probe (issues 2 and 12). Pure: strings in, strings out.
import type { ChalkInstance } from 'chalk'
import { decode, hex } from '../contract/bits.js'
import type { Decision } from '../contract/decision-types.js'
import { viewCpu, type CpuView } from '../contract/decide.js'
import type { Facts } from '../contract/facts.js'
import { ARCH_CAPABILITIES, CPUID_7_0_EDX, CPUID_7_2_EDX, MITI_CTRL_BHB_CLEAR_SEQ_S_USED, MITI_CTRL_RETPOLINE_S_USED } from '../contract/registers.js'
import { BHI_MODE_TEXT, V2_MODE_TEXT } from '../contract/sysfs-spectre-v2.js'
import type { TapPoint } from '../bin/lib/tap.js'
import { cpuRanges } from './verdict.js'
import { cpusText, type GuestVerdict } from '../contract/verdict.js'
import { CONCERN_NAME, explainLines, findingLines, headline } from './render-verdict.js'
import { wrapText } from '../bin/lib/wrap.js'

// Memoised: every CPU of a machine usually shows the same words, and decode is per-bit work (bench/probe.mjs).
const names32Cache = new Map<string, string>()
const names32 = (reg: typeof CPUID_7_0_EDX, w: number | undefined): string => {
  if (w === undefined) return '?'
  const k = `${reg.name}:${w}`
  let s = names32Cache.get(k)
  if (s === undefined) names32Cache.set(k, s = decode(reg, BigInt(w)).filter(n => !n.startsWith('bit ')).join(' ') || '-')
  return s
}

/**
 * Whether the discovery chain could not even start on this CPU: IA32_ARCH_CAPABILITIES (or CPUID
 * leaf 7) unreadable, so selectVirt (contract/decide.ts) stops at 'none' without an answer.
 */
const chainUndetermined = (view: CpuView): boolean => view.archCap === undefined

/** One row per group of CPUs that show the same values; `views[i]` is viewCpu(facts.cpus[i]). */
function cpuRows(facts: Facts, d: Decision, views: CpuView[]): string[][] {
  const rows = new Map<string, { cpus: number[]; cols: string[] }>()
  const virtOf = new Map(d.virt.map(x => [x.cpu, x])) // not d.virt.find per CPU: quadratic at 256+ CPUs
  facts.cpus.forEach((c, i) => {
    const v = views[i]!
    const virt = virtOf.get(c.cpu)!
    const ac = v.archCap === null ? 'none' : v.archCap === undefined ? 'unreadable' : hex(v.archCap)
    const virtCol = virt.enumerated ? `ENUM ${hex(virt.mitiEnum!)}` : chainUndetermined(v) ? 'cannot tell' : 'not enumerated'
    const ctrl = virt.mitiCtrl === undefined ? '-' : virt.wanted === virt.mitiCtrl ? `${hex(virt.mitiCtrl)} (kept)` : `${hex(virt.mitiCtrl)} -> ${hex(virt.wanted!)}`
    const cols = [
      v.vendor ?? '?', v.family === undefined ? '?' : `${v.family}/0x${v.model!.toString(16)}/${v.stepping}`, v.hypervisor ? 'yes' : 'no',
      names32(CPUID_7_0_EDX, v.edx7), names32(CPUID_7_2_EDX, v.edx72), ac, virtCol, ctrl,
    ]
    const key = cols.join('\u0000')
    const g = rows.get(key) ?? { cpus: [], cols }
    g.cpus.push(c.cpu)
    rows.set(key, g)
  })
  return [...rows.values()].map(g => [cpuRanges(g.cpus), ...g.cols])
}

function table(rows: string[][]): string[] {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map(r => r[i]!.length)))
  return rows.map(r => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd())
}

const triText = (t: boolean | 'unknown') => t === 'unknown' ? 'leave as is (unknown)' : t ? 'set' : 'clear'

export interface HumanOptions { explain?: boolean; width?: number }

/** Verdict first (issue 12), then the facts and the decision, then every finding; wrapped only on a TTY. */
export function renderHuman(facts: Facts, d: Decision, v: GuestVerdict, exitCode: number, c: ChalkInstance, o: HumanOptions = {}): string {
  const out: string[] = [...headline(v, c), '']
  out.push(c.bold(`virtmiti guest probe: ${facts.platform}, ${facts.cpus.length} CPU${facts.cpus.length === 1 ? '' : 's'}, kernel ${facts.kernel.release ?? 'unknown'}`))
  const views = facts.cpus.map(viewCpu)
  out.push(...table([['CPUs', 'vendor', 'fam/model/step', 'HV', 'CPUID.(7,0):EDX', 'CPUID.(7,2):EDX', 'ARCH_CAP', 'virtual MSRs', 'MITI_CTRL'], ...cpuRows(facts, d, views)]))
  const acs = new Set(views.map(x => x.archCap).filter((x): x is bigint => typeof x === 'bigint'))
  for (const a of acs) out.push(`  ARCH_CAP ${hex(a)} = ${decode(ARCH_CAPABILITIES, a).join(' ') || '(none)'}`)
  out.push('')
  out.push(c.bold('Kernel'))
  out.push(`  spectre_v2   ${d.kernel.raw ?? '(no sysfs file)'}`)
  // The kernel's own words for its mode (a "Vulnerable: LFENCE" line must not read as a mitigation).
  const modeText = d.kernel.raw?.split('; ')[0]
  out.push(`  mode         ${modeText ?? V2_MODE_TEXT[d.kernel.spectreV2]}   predicted: ${V2_MODE_TEXT[d.expected.spectreV2]}`)
  out.push(`  BHI          ${BHI_MODE_TEXT[d.kernel.bhi]}   predicted: ${BHI_MODE_TEXT[d.expected.bhi]}   affected: ${d.bhiAffected.value}`)
  for (const r of [...d.bhiAffected.reasons, ...d.expected.reasons]) out.push(c.dim(`    - ${r.text} [${r.source}]`))
  out.push('')
  out.push(c.bold('Report to the VMM (MSR_VIRTUAL_MITIGATION_CTRL)'))
  const anyEnum = d.virt.some(x => x.enumerated)
  // Without the virtual MSRs nothing is written: say what the guest relies on, not "set".
  if (anyEnum) out.push(`  BHB_CLEAR_SEQ_S_USED (bit 0): ${triText(d.wish.bhbClearSeqSUsed)}    RETPOLINE_S_USED (bit 1): ${triText(d.wish.retpolineSUsed)}`)
  else out.push(`  relies on the short BHB sequence: ${d.wish.bhbClearSeqSUsed}; on retpoline: ${d.wish.retpolineSUsed}; nothing can be written: the virtual MSRs are not enumerated`)
  for (const r of d.wishReasons) out.push(c.dim(`    - ${r.text} [${r.source}]`))
  const byReason = new Map<string, number[]>()
  for (const x of d.virt) {
    const k = x.reason.text.replace(/\/dev\/cpu\/\d+\//, '/dev/cpu/N/')
    byReason.set(k, [...(byReason.get(k) ?? []), x.cpu])
  }
  for (const [t, cpus] of byReason) out.push(`  ${cpus.length > 1 ? 'CPUs' : 'CPU'} ${cpuRanges(cpus)}: ${t}`)
  if (d.enumerated) {
    const w = d.virt.map(x => x.wanted).filter((x): x is bigint => x !== undefined)
    if (w.length) out.push(`  would write ${[...new Set(w.map(x => hex(x)))].join(', ')} (bit 0 = ${hex(MITI_CTRL_BHB_CLEAR_SEQ_S_USED)}, bit 1 = ${hex(MITI_CTRL_RETPOLINE_S_USED)}) where it differs; nothing is written by probe`)
  }
  out.push('')
  if (v.findings.length === 0) out.push(c.green('No findings.'))
  else out.push(...findingLines(v, c))
  if (o.explain) out.push('', ...explainLines(v, c))
  out.push(`exit ${exitCode}`)
  return wrapText(out.join('\n') + '\n', o.width ?? Infinity)
}

export function probeTap(facts: Facts, d: Decision, v: GuestVerdict): TapPoint[] {
  const pts: TapPoint[] = v.concerns.map(x => {
    const name = `${CONCERN_NAME[x.concern]} protected`
    const diag = { verdict: x.verdict, mitigation: x.mitigation, basis: x.basis, vmm: x.vmm, findings: x.findings }
    if (x.verdict === 'unknown') return { ok: true, name, skip: `could not tell: ${x.findings.join(', ') || x.basis}`, diag }
    return { ok: x.verdict === 'protected', name, diag }
  })
  const cannot = v.findings.filter(f => f.effect === 'unknown').map(f => `${cpusText(f)}${cpusText(f) ? ': ' : ''}${f.id}: ${f.detail}`)
  const cpuidFaults = facts.cpus.flatMap(c => Object.entries(c.cpuid).filter(([, x]) => x && 'fault' in x).map(([k]) => `CPU ${c.cpu} ${k}`))
  pts.push(
    { ok: cpuidFaults.length === 0, name: 'CPUID readable on every CPU', ...(cpuidFaults.length ? { diag: { faults: cpuidFaults } } : {}) },
    { ok: d.disagreements.length === 0, name: 'all CPUs show the same CPUID and MSR values', ...(d.disagreements.length ? { diag: { disagreements: d.disagreements } } : {}) },
  )
  const sysfs = d.kernel.raw !== undefined && d.kernel.bhi !== 'unknown' && d.kernel.spectreV2 !== 'unknown'
  pts.push(sysfs ? { ok: true, name: 'kernel spectre_v2 sysfs line understood' }
    : { ok: false, name: 'kernel spectre_v2 sysfs line understood', diag: { raw: d.kernel.raw ?? null } })
  for (const what of ['spectre_v2', 'bhi'] as const) {
    const name = `kernel ${what === 'bhi' ? 'BHI' : 'spectre_v2'} choice matches the prediction for this CPU and command line (bugs.c)`
    const m = d.mismatches.find(x => x.what === what)
    const unknown = what === 'bhi' ? d.expected.bhi === 'unknown' || d.kernel.bhi === 'unknown' : d.expected.spectreV2 === 'unknown' || d.kernel.spectreV2 === 'unknown'
    // A prediction that differs is informational (kernel generations differ): TODO, never a failure.
    if (m) pts.push({ ok: false, name, todo: 'kernel.prediction-mismatch: informational, the verdict follows the kernel', diag: { kernel: m.kernel, expected: m.expected, rule: m.reason.text, source: m.reason.source } })
    else if (unknown) pts.push({ ok: true, name, skip: 'cannot predict or read this choice: ' + ([...d.expected.reasons].reverse().find(r => r.rule.startsWith(what === 'bhi' ? 'bhi.' : 'v2.'))?.text ?? 'unknown') })
    else pts.push({ ok: true, name })
  }
  const tell = !facts.cpus.some(c => chainUndetermined(viewCpu(c)))
  const needed = v.concerns.some(x => x.vmm !== 'not-needed')
  if (!tell && !needed) pts.push({ ok: true, name: 'virtual MSR enumeration determined on every CPU', skip: 'not needed: the mitigations in use do not depend on the VMM', diag: { cannotTell: cannot.length ? cannot : v.findings.filter(f => f.id === 'facts.read-fault' && f.cpus).map(f => `${cpusText(f)}: ${f.detail}`) } })
  else pts.push(tell ? { ok: true, name: 'virtual MSR enumeration determined on every CPU', diag: { enumerated: d.enumerated } }
    : { ok: false, name: 'virtual MSR enumeration determined on every CPU', diag: { cannotTell: cannot } })
  return pts
}
