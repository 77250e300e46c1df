// The operator's answer (issue 12, contract/CONTRACT.md section 8): per concern (BHI; retpoline / RRSBA)
// protected | at-risk | vulnerable | unknown, from what the kernel says it uses, the hardware it
// sees (bare metal) or the VMM's part (in a VM), with findings from contract/findings.ts.
// Laid out like bugs.c: one basis per kernel state (VERDICT_RULES), then one small step per
// question. Facts, Decision and the agent's report record in; GuestVerdict out. No I/O.
import { hex } from './bits.js'
import type { Decision, VirtEnumeration } from './decision-types.js'
import { type CpuView, viewCpu } from './decide.js'
import type { Facts } from './facts.js'
import { findingDef } from './findings.js'
import { cpuRanges } from './format.js'
import {
  ARCH_CAP_RRSBA, CPUID7_2_EDX_BHI_CTRL, CPUID7_2_EDX_RRSBA_CTRL, MITI_CTRL_BHB_CLEAR_SEQ_S_USED, MITI_CTRL_RETPOLINE_S_USED, hasBit32,
} from './registers.js'
import { BHI_MODE_TEXT } from './sysfs-spectre-v2.js'
import { CONCERNS, type Concern, type ConcernVerdict, type FindingHit, type GuestVerdict, type Verdict, type VmmPart } from './verdict-types.js'

export * from './verdict-types.js'

const S = (n: number) => `contract/CONTRACT.md section ${n}`
const BUGS_C = 'Linux arch/x86/kernel/cpu/bugs.c'

/**
 * How a kernel state is judged. 'vmm': a software sequence only the VMM can back in a VM
 * (section 1), judged by the VMM's part; on bare metal by the CPU itself ('hardware').
 */
export interface VerdictRule { rule: string; judge: Verdict | 'needs-backing'; text: string; sources: string[] }

export const VERDICT_RULES: readonly VerdictRule[] = [
  { rule: 'bhi.not-affected', judge: 'protected', text: 'the kernel says this CPU is not affected by BHI', sources: [S(6)] },
  { rule: 'bhi.bhi-dis-s', judge: 'protected', text: 'BHI_DIS_S: a hardware control the kernel sets itself; it holds on any host that shows BHI_CTRL', sources: [S(1), S(6)] },
  { rule: 'bhi.sw-loop', judge: 'needs-backing', text: 'the short SW BHB-clearing loop: effective only on CPUs before Alder Lake / Sapphire Rapids', sources: [S(1), S(4), S(6)] },
  { rule: 'bhi.retpoline', judge: 'needs-backing', text: 'retpoline covers BHI only while RRSBA behaviour is absent or disabled (RRSBA_DIS_S)', sources: [S(1), S(6), `${BUGS_C} spectre_bhi_state()`] },
  { rule: 'bhi.vmexit-only', judge: 'vulnerable', text: 'BHB cleared on VM exit only', sources: [S(6)] },
  { rule: 'bhi.vulnerable', judge: 'vulnerable', text: 'no BHI mitigation', sources: [S(6)] },
  { rule: 'bhi.not-reported', judge: 'unknown', text: 'the kernel predates BHI reporting', sources: [S(6)] },
  { rule: 'retpoline.not-affected', judge: 'protected', text: 'the kernel says this CPU is not affected by Spectre v2', sources: [S(6)] },
  { rule: 'retpoline.hardware', judge: 'protected', text: 'an IBRS mode, not retpoline: nothing for the VMM to back', sources: [S(4), S(6)] },
  { rule: 'retpoline.retpoline', judge: 'needs-backing', text: 'retpoline: on CPUs with RRSBA behaviour it needs RRSBA_DIS_S', sources: [S(1), S(4)] },
  { rule: 'retpoline.kernel-rrsba-dis-s', judge: 'protected', text: 'retpoline with RRSBA_DIS_S set by the kernel itself (it sees RRSBA and RRSBA_CTRL)', sources: [S(6), `${BUGS_C} spec_ctrl_disable_kernel_rrsba()`] },
  { rule: 'retpoline.not-intel', judge: 'protected', text: 'retpoline on a non-Intel CPU: RRSBA behaviour and RRSBA_DIS_S are Intel-defined (ARCH_CAP bit 19, SPEC_CTRL bit 6), and a guest migrates only between hosts of its own vendor', sources: [S(1), S(2), S(5)] },
  { rule: 'retpoline.vulnerable', judge: 'vulnerable', text: 'the kernel reports its Spectre v2 mode as vulnerable', sources: [S(6)] },
  { rule: 'mitigations-off', judge: 'vulnerable', text: 'no Spectre v2 mitigation at all', sources: [S(6)] },
  { rule: 'kernel.unknown', judge: 'unknown', text: "the kernel's state could not be read or understood", sources: [S(6)] },
  { rule: 'vmm.backing', judge: 'protected', text: 'the VMM advertises that it can back this sequence, and every CPU told it', sources: [S(4), S(5)] },
  { rule: 'baremetal.hardware', judge: 'protected', text: 'bare metal: judged by this CPU', sources: [S(1)] },
]
const RULE = new Map(VERDICT_RULES.map(r => [r.rule, r]))

/** The agent's result on one CPU: this run's (guest report) or the last one recorded. */
export interface RecordCpu { cpu: number; outcome: string; fault?: { step: string; errno: string; message: string } }

export interface VerdictInput {
  facts: Facts
  decision: Decision
  /** MITI_CTRL as it is now per CPU (after a report: its read-back); default: the probe's read. */
  ctrlNow?: ReadonlyMap<number, bigint | undefined>
  /** The agent's report per CPU; `origin` says which (this run, or a recorded file). */
  record?: { origin: string; cpus: readonly RecordCpu[] }
}

const RANK: Record<Verdict, number> = { protected: 0, unknown: 1, 'at-risk': 2, vulnerable: 3 }
export const worst = (vs: readonly Verdict[]): Verdict => vs.reduce<Verdict>((a, b) => (RANK[b] > RANK[a] ? b : a), 'protected')

/** DESIGN.md exit codes, as issue 12 defines them for `guest probe`. */
export const exitCodeOf = (v: Verdict): 0 | 1 | 3 => (v === 'protected' ? 0 : v === 'unknown' ? 3 : 1)

/** "none [integrity] confidentiality" -> "integrity"; undefined when none or unreadable. */
export function lockdownMode(text: string | undefined): string | undefined {
  const m = text ? /\[(\w+)\]/.exec(text) : null
  return m && m[1] !== 'none' ? m[1] : undefined
}

const devN = (s: string) => s.replace(/\/dev\/cpu\/\d+\//g, '/dev/cpu/N/').replace(/ on CPU \d+/g, '')

/** Collects per-CPU findings: same id and detail -> one hit with the CPU list. */
class Hits {
  private readonly m = new Map<string, FindingHit>()
  add(id: string, detail: string, concern?: Concern, cpu?: number): void {
    const key = `${id}\u0000${concern ?? ''}\u0000${cpu === undefined ? '' : 'cpu'}\u0000${detail}`
    const h = this.m.get(key)
    if (h) { if (cpu !== undefined) h.cpus!.push(cpu); return }
    this.m.set(key, { id, effect: findingDef(id).effect, ...(concern ? { concern } : {}), ...(cpu !== undefined ? { cpus: [cpu] } : {}), detail })
  }
  list(): FindingHit[] { return [...this.m.values()] }
}

const CTRL_BIT: Record<Concern, { mask: bigint; name: string; forces: string }> = {
  bhi: { mask: MITI_CTRL_BHB_CLEAR_SEQ_S_USED, name: 'bit 0 BHB_CLEAR_SEQ_S', forces: 'BHI_DIS_S' },
  retpoline: { mask: MITI_CTRL_RETPOLINE_S_USED, name: 'bit 1 RETPOLINE_S', forces: 'RRSBA_DIS_S' },
}

const FAILED_OUTCOMES = new Set(['fault', 'readback-mismatch', 'offline'])

/** The VMM's part for a sequence that only it can back (sections 3-5), CPU by CPU. */
function vmmPart(seq: Concern, tag: Concern, inp: VerdictInput, views: readonly CpuView[]): { verdict: Verdict; part: VmmPart; hits: FindingHit[] } {
  const local = new Hits()
  const virtOf = new Map<number, VirtEnumeration>(inp.decision.virt.map(v => [v.cpu, v]))
  const recOf = new Map((inp.record?.cpus ?? []).map(r => [r.cpu, r]))
  const lock = lockdownMode(inp.facts.kernel.lockdown)
  const b = CTRL_BIT[seq]
  inp.facts.cpus.forEach((c, i) => {
    const virt = virtOf.get(c.cpu)
    if (!virt || !virt.enumerated) {
      const why = virt ? devN(virt.reason.text) : 'no discovery result for this CPU'
      local.add(views[i]!.archCap === undefined ? 'vmm.cannot-tell' : 'vmm.not-enumerated', why, tag, c.cpu)
      return
    }
    const en = virt.mitiEnum ?? 0n
    if ((en & b.mask) === 0n) {
      local.add('vmm.enum-lacks-bit', `MSR_VIRTUAL_MITIGATION_ENUM is ${hex(en)}: no ${b.name}_SUPPORT, so the VMM will not force ${b.forces} for this guest`, tag, c.cpu)
      return
    }
    const ctrl = inp.ctrlNow ? inp.ctrlNow.get(c.cpu) : virt.mitiCtrl
    if (ctrl !== undefined && (ctrl & b.mask) !== 0n) return // told, and it can back it
    const rec = recOf.get(c.cpu)
    const origin = inp.record?.origin ?? ''
    if (rec?.fault?.errno === 'EPERM') local.add('report.lockdown', `${origin}: ${rec.fault.step}: EPERM${lock ? ` (kernel lockdown: ${lock})` : ''}`, tag, c.cpu)
    else if (rec && FAILED_OUTCOMES.has(rec.outcome)) local.add('report.failed', `${origin}: ${rec.outcome}${rec.fault ? ` at ${rec.fault.step}: ${rec.fault.errno}` : ''}`, tag, c.cpu)
    else if (lock) local.add('report.lockdown', `kernel lockdown is "${lock}": the msr driver will refuse the write (EPERM)`, tag, c.cpu)
    else if (ctrl === undefined) local.add('report.ctrl-unreadable', 'MSR_VIRTUAL_MITIGATION_CTRL not read', tag, c.cpu)
    else local.add('report.not-reported', `MSR_VIRTUAL_MITIGATION_CTRL is ${hex(ctrl)}: ${b.name}_USED not set${rec ? ` (${origin}: ${rec.outcome})` : ''}`, tag, c.cpu)
  })
  const l = local.list()
  const part: VmmPart = l.some(h => h.effect === 'at-risk') ? 'cannot-be-told' : l.length ? 'unknown' : 'backing'
  return { verdict: worst(l.map(h => (h.effect === 'note' ? 'protected' : h.effect))), part, hits: l }
}

export function judge(inp: VerdictInput): GuestVerdict {
  const { facts, decision: d } = inp
  const views = facts.cpus.map(viewCpu)
  const v0: CpuView = views[0] ?? {}
  const environment: GuestVerdict['environment'] = v0.hypervisor === undefined ? 'unknown' : v0.hypervisor ? 'vm' : 'bare-metal'
  const perCpu: FindingHit[] = []
  const hits = new Hits()
  const sys = d.kernel.raw !== undefined
  const modeText = d.kernel.raw?.split('; ')[0] ?? ''
  const v2Vulnerable = d.kernel.spectreV2 === 'lfence' || (modeText.startsWith('Vulnerable:'))

  const concern = (c: Concern, rule: string, mitigation: string, finding?: string, detail?: string): ConcernVerdict => {
    const r = RULE.get(rule)!
    if (finding) hits.add(finding, detail ?? r.text, c)
    return { concern: c, verdict: r.judge === 'needs-backing' ? 'unknown' : r.judge, mitigation, basis: r.text, rule, vmm: 'not-needed', findings: finding ? [finding] : [] }
  }
  /** A software sequence: the VMM's part in a VM, the CPU's own on bare metal. */
  const backed = (c: Concern, seq: Concern, base: ConcernVerdict, bareMetal: () => ConcernVerdict): ConcernVerdict => {
    if (environment === 'bare-metal') return bareMetal()
    if (environment === 'unknown') {
      hits.add('facts.read-fault', 'CPUID leaf 1 unreadable: whether this is a VM is unknown', c)
      return { ...base, verdict: 'unknown', vmm: 'unknown', findings: ['facts.read-fault'] }
    }
    const r = vmmPart(seq, c, inp, views)
    perCpu.push(...r.hits)
    const ok = r.hits.length === 0
    return { ...base, verdict: ok ? 'protected' : r.verdict, vmm: r.part, basis: ok ? `${base.basis}; ${RULE.get('vmm.backing')!.text}` : base.basis, findings: [...new Set(r.hits.map(h => h.id))] }
  }

  // ---- BHI ---------------------------------------------------------------------------------
  const bhiText = d.kernel.raw === undefined ? '(no sysfs file)' : (d.kernel.raw.split('; ').find(s => s.startsWith('BHI: ')) ?? BHI_MODE_TEXT[d.kernel.bhi])
  let bhi: ConcernVerdict
  if (!sys) bhi = concern('bhi', 'kernel.unknown', bhiText, 'kernel.sysfs-missing')
  else switch (d.kernel.bhi) {
    case 'not-affected': bhi = concern('bhi', 'bhi.not-affected', bhiText); break
    case 'bhi-dis-s': bhi = concern('bhi', 'bhi.bhi-dis-s', bhiText); break
    case 'vmexit-sw-loop': bhi = concern('bhi', 'bhi.vmexit-only', bhiText, 'kernel.bhi-vmexit-only'); break
    case 'vulnerable':
      bhi = d.kernel.spectreV2 === 'none' ? concern('bhi', 'mitigations-off', bhiText, 'kernel.mitigations-off') : concern('bhi', 'bhi.vulnerable', bhiText, 'kernel.bhi-vulnerable')
      break
    case 'not-reported':
      if (d.kernel.spectreV2 === 'none') bhi = concern('bhi', 'mitigations-off', bhiText, 'kernel.mitigations-off')
      else if (d.bhiAffected.value === false) bhi = concern('bhi', 'bhi.not-affected', bhiText)
      else bhi = concern('bhi', 'bhi.not-reported', bhiText, 'kernel.bhi-not-reported')
      break
    case 'sw-loop':
      bhi = backed('bhi', 'bhi', concern('bhi', 'bhi.sw-loop', bhiText), () => {
        const ctrl = v0.edx72 === undefined ? 'unknown' : hasBit32(v0.edx72, CPUID7_2_EDX_BHI_CTRL)
        if (ctrl === 'unknown') return { ...concern('bhi', 'bhi.sw-loop', bhiText, 'facts.read-fault', 'CPUID.(7,2) unreadable'), verdict: 'unknown' }
        if (ctrl) return { ...concern('bhi', 'bhi.sw-loop', bhiText, 'baremetal.sw-loop-on-bhi-ctrl', 'CPUID.(7,2):EDX[4] BHI_CTRL is set'), verdict: 'at-risk' }
        return { ...concern('bhi', 'baremetal.hardware', bhiText), basis: `${RULE.get('baremetal.hardware')!.text}: no BHI_CTRL, a part before Alder Lake / Sapphire Rapids, where the short loop works` }
      })
      break
    case 'retpoline':
      bhi = backed('bhi', 'retpoline', concern('bhi', 'bhi.retpoline', bhiText), () =>
        ({ ...concern('bhi', 'baremetal.hardware', bhiText), basis: `${RULE.get('baremetal.hardware')!.text}: the kernel reports "Retpoline" only when RRSBA is absent or disabled` }))
      break
    default: bhi = concern('bhi', 'kernel.unknown', bhiText, 'kernel.sysfs-unknown', `"${d.kernel.raw}"`)
  }

  // ---- retpoline / RRSBA ---------------------------------------------------------------------
  let ret: ConcernVerdict
  const v2Text = sys ? modeText : '(no sysfs file)'
  if (!sys) ret = concern('retpoline', 'kernel.unknown', v2Text, 'kernel.sysfs-missing')
  else if (d.kernel.spectreV2 === 'not-affected') ret = concern('retpoline', 'retpoline.not-affected', v2Text)
  else if (d.kernel.spectreV2 === 'none') ret = concern('retpoline', 'mitigations-off', v2Text, 'kernel.mitigations-off')
  else if (v2Vulnerable) ret = concern('retpoline', 'retpoline.vulnerable', v2Text, 'kernel.v2-vulnerable', `"${modeText}"`)
  else if (d.kernel.spectreV2 === 'unknown') ret = concern('retpoline', 'kernel.unknown', v2Text, 'kernel.sysfs-unknown', `"${d.kernel.raw}"`)
  else if (d.kernel.spectreV2 === 'retpoline' || d.kernel.spectreV2 === 'eibrs-retpoline') {
    const rrsba = v0.archCap === undefined ? 'unknown' : v0.archCap !== null && (v0.archCap & ARCH_CAP_RRSBA) !== 0n
    const rrsbaCtrl = v0.edx72 === undefined ? 'unknown' : hasBit32(v0.edx72, CPUID7_2_EDX_RRSBA_CTRL)
    if (rrsba === true && rrsbaCtrl === true) ret = concern('retpoline', 'retpoline.kernel-rrsba-dis-s', v2Text)
    else if (v0.vendor !== undefined && v0.vendor !== 'GenuineIntel') ret = concern('retpoline', 'retpoline.not-intel', v2Text)
    else {
      ret = backed('retpoline', 'retpoline', concern('retpoline', 'retpoline.retpoline', v2Text), () => {
        if (rrsba === 'unknown' || rrsbaCtrl === 'unknown') return { ...concern('retpoline', 'retpoline.retpoline', v2Text, 'facts.read-fault', 'IA32_ARCH_CAPABILITIES or CPUID.(7,2) unreadable'), verdict: 'unknown' }
        if (rrsba) return { ...concern('retpoline', 'retpoline.retpoline', v2Text, 'baremetal.rrsba', 'ARCH_CAP bit 19 RRSBA set, CPUID.(7,2):EDX[2] RRSBA_CTRL clear'), verdict: 'at-risk' }
        return { ...concern('retpoline', 'baremetal.hardware', v2Text), basis: `${RULE.get('baremetal.hardware')!.text}: no RRSBA behaviour (ARCH_CAP bit 19 clear)` }
      })
    }
  } else ret = concern('retpoline', 'retpoline.hardware', v2Text)

  const concerns = [bhi, ret]
  // CPUs that disagree: the kernel judged from the boot CPU; every concern is at risk.
  if (d.disagreements.length > 0) {
    const by = new Map<string, number[]>()
    for (const x of d.disagreements) by.set(x.what, [...(by.get(x.what) ?? []), x.cpu])
    for (const [what, cpus] of by) for (const c of cpus) hits.add('cpus.disagree', what, undefined, c)
    for (const c of concerns) { c.verdict = worst([c.verdict, 'at-risk']); c.findings.push('cpus.disagree') }
  }
  // Reads that faulted: shown; they matter only through the concern that needed them.
  facts.cpus.forEach(c => {
    for (const [k, v] of Object.entries(c.cpuid)) if (v && 'fault' in v) hits.add('facts.read-fault', `CPUID ${k}: ${v.fault.errno}: ${devN(v.fault.message)}`, undefined, c.cpu)
    for (const [k, v] of Object.entries(c.msr)) if ('fault' in v) hits.add('facts.read-fault', `MSR ${k}: ${v.fault.errno}: ${devN(v.fault.message)}`, undefined, c.cpu)
  })
  for (const m of d.mismatches) hits.add('kernel.prediction-mismatch', `${m.what}: the kernel chose "${m.kernel}", the agent predicts "${m.expected}" (${m.reason.text}; ${m.reason.source})`)
  if (sys && (d.expected.bhi === 'unknown' || d.expected.spectreV2 === 'unknown')) {
    const r = d.expected.reasons[d.expected.reasons.length - 1]
    hits.add('kernel.no-prediction', r ? r.text : 'unknown')
  }
  const all = [...hits.list(), ...perCpu]
  return { verdict: worst(concerns.map(c => c.verdict)), environment, concerns, findings: all.sort((a, b) => effectRank(b) - effectRank(a)) }
}

const effectRank = (h: FindingHit) => (h.effect === 'note' ? -1 : RANK[h.effect])

/** "CPUs 0-3" / "CPU 2" for a hit. */
export const cpusText = (h: FindingHit): string => (h.cpus?.length ? `${h.cpus.length > 1 ? 'CPUs' : 'CPU'} ${cpuRanges(h.cpus)}` : '')

export { CONCERNS }
