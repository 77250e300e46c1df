// Checks of one live-guest boot (issue 7, DESIGN.md test tier 4): the sections the guest sent
// (host/qemu/commands.ts) in, TAP points out. Pure: no I/O, no clocks.
// The real kernel is the oracle: its sysfs spectre_v2 line and rdmsr are what the agent's
// parse, prediction and MSR reads are held against. Every failure names both values.
import { hex, parseU64 } from '../../contract/bits.js'
import type { BhiMode, SpectreV2Mode } from '../../contract/decision-types.js'
import { ProbeJson } from '../../contract/probe-schema.js'
import { MSR } from '../../contract/registers.js'
import { GuestReport } from '../../contract/report-json.js'
import { BHI_MODE_TEXT, V2_MODE_TEXT } from '../../contract/sysfs-spectre-v2.js'
import type { TapPoint } from '../../bin/lib/tap.js'
import { CROSS_CHECK_MSRS, parseRdmsrSection, rdmsrSectionName } from './commands.js'
import type { Section } from './frames.js'

export interface BootContext {
  /** QEMU -cpu model. */
  cpu: string
  /** Kernel parameters added for this boot, e.g. ['spectre_bhi=off']. */
  append: readonly string[]
  accel: 'tcg' | 'kvm'
  /** -smp (default 2). */
  vcpus?: number
  /**
   * QEMU presents the virtual MSRs (patched, virt-miti=on): the "no virtual MSRs" points below
   * do not apply; host/qemu/checks-patched.ts checks that boot instead.
   */
  virtMsrs?: boolean
}

/** What one boot showed, for the tier's summary line and --json. */
export interface BootFacts {
  kernelLine?: string
  agentKernel?: { spectreV2: string; bhi: string; retpoline: unknown }
  agentExpected?: { spectreV2: string; bhi: string; retpoline: unknown }
  probeStatus?: string
}

export interface BootCheck { points: TapPoint[]; facts: BootFacts }

/** Selftest exit code when nothing could be tested (guest/selftest: every point skipped). */
export const SELFTEST_EXIT_SKIPPED = 4
const ARCH_CAP_VIRTUAL_ENUM_BIT = 63n // contract/CONTRACT.md section 3 step 1: ARCH_CAPABILITIES bit 63

const MSR_NAMES: Record<number, string> = {
  [MSR.ARCH_CAPABILITIES]: 'IA32_ARCH_CAPABILITIES', [MSR.SPEC_CTRL]: 'IA32_SPEC_CTRL',
  [MSR.VIRTUAL_ENUMERATION]: 'MSR_VIRTUAL_ENUMERATION', [MSR.VIRTUAL_MITIGATION_ENUM]: 'MSR_VIRTUAL_MITIGATION_ENUM',
  [MSR.VIRTUAL_MITIGATION_CTRL]: 'MSR_VIRTUAL_MITIGATION_CTRL',
}

// --- The oracle's reading of the kernel line -----------------------------------------------
// Written by hand from Linux arch/x86/kernel/cpu/bugs.c (spectre_v2_strings[], spectre_bhi_state(),
// spectre_v2_show_state()), independently of contract/sysfs-spectre-v2.ts, so that a wrong table
// in the agent shows up as a disagreement here instead of agreeing with itself.
const V2_FIRST: Record<string, SpectreV2Mode> = {
  'Not affected': 'not-affected',
  'Vulnerable': 'none',
  'Mitigation: Retpolines': 'retpoline',
  'Mitigation: LFENCE': 'lfence',
  'Vulnerable: LFENCE': 'lfence', // 6.1.y stable and newer spell SPECTRE_V2_LFENCE so
  'Mitigation: Enhanced IBRS': 'eibrs',
  'Mitigation: Enhanced / Automatic IBRS': 'eibrs',
  'Mitigation: Enhanced IBRS + LFENCE': 'eibrs-lfence',
  'Mitigation: Enhanced / Automatic IBRS + LFENCE': 'eibrs-lfence',
  'Mitigation: Enhanced IBRS + Retpolines': 'eibrs-retpoline',
  'Mitigation: Enhanced / Automatic IBRS + Retpolines': 'eibrs-retpoline',
  'Mitigation: IBRS': 'ibrs',
}
const BHI_SEGMENT: Record<string, BhiMode> = {
  'BHI: Not affected': 'not-affected',
  'BHI: BHI_DIS_S': 'bhi-dis-s',
  'BHI: SW loop, KVM: SW loop': 'sw-loop',
  'BHI: Retpoline': 'retpoline',
  'BHI: Vulnerable, KVM: SW loop': 'vmexit-sw-loop',
  'BHI: Vulnerable': 'vulnerable',
}

export interface KernelLineReading { first: string; bhiSegment?: string; spectreV2?: SpectreV2Mode; bhi?: BhiMode; retpoline: boolean }

/** The kernel's line split as bugs.c joins it ("; " since 6.9 and in 6.1.y stable, ", " before). */
export function readKernelLine(raw: string): KernelLineReading {
  const line = raw.replace(/\n+$/, '').replace(/ - vulnerable module loaded$/, '')
  let parts: string[]
  if (line.includes('; ')) parts = line.split('; ')
  else {
    parts = []
    for (const p of line.split(', ')) { // "BHI: ..., KVM: ..." is one segment
      if (p.startsWith('KVM: ') && parts.length > 0 && parts[parts.length - 1]!.startsWith('BHI: ')) parts[parts.length - 1] += ', ' + p
      else parts.push(p)
    }
  }
  const first = parts[0] ?? ''
  const bhiSegment = parts.slice(1).find(p => p.startsWith('BHI: '))
  const spectreV2 = V2_FIRST[first]
  const bhi: BhiMode | undefined = bhiSegment === undefined ? (spectreV2 === 'not-affected' ? 'not-affected' : 'not-reported') : BHI_SEGMENT[bhiSegment]
  return {
    first, ...(bhiSegment !== undefined ? { bhiSegment } : {}), ...(spectreV2 ? { spectreV2 } : {}), ...(bhi ? { bhi } : {}),
    retpoline: / Retpolines$|^Mitigation: Retpolines$/.test(first),
  }
}

// --- helpers -------------------------------------------------------------------------------
const point = (ok: boolean, name: string, diag?: Record<string, unknown>, comments?: string[]): TapPoint =>
  ({ ok, name, ...(diag && !ok ? { diag } : {}), ...(comments?.length ? { comments } : {}) })

function parseJson(text: string | undefined): unknown {
  try { return JSON.parse(text ?? '') } catch { return undefined }
}

const head = (s: string | undefined, n = 400): string => (s === undefined ? '(section missing)' : s.length > n ? s.slice(0, n) + '...' : s)

/** The sections /init must send for the checks below (host/qemu/commands.ts defaultCommands()). */
export const REQUIRED_SECTIONS = ['insmod.msr', 'insmod.cpuid', 'cmdline', 'spectre_v2', 'cpus', 'nproc', 'probe', 'report', 'selftest', ...CROSS_CHECK_MSRS.map(rdmsrSectionName)]

/** One boot's checks. `sections` as parsed by frames.ts (stderr folded in). */
export function checkBoot(sections: ReadonlyMap<string, Section>, ctx: BootContext): BootCheck {
  const points: TapPoint[] = []
  const facts: BootFacts = {}
  const vcpus = ctx.vcpus ?? 2
  const sec = (n: string) => sections.get(n)

  // /init ran its list (host/qemu/image/init.sh): modules loaded, every section arrived.
  const missing = REQUIRED_SECTIONS.filter(n => !sections.has(n))
  const modFail = ['insmod.msr', 'insmod.cpuid'].filter(n => sections.has(n) && sec(n)!.exit !== 0).map(n => ({ section: n, exit: sec(n)!.exit, stderr: sec(n)!.stderr }))
  points.push(point(missing.length === 0 && modFail.length === 0, 'guest /init: msr and cpuid modules load, every section arrives', { missing, failedModules: modFail }))

  const kernelLine = sec('spectre_v2')?.output.replace(/\n+$/, '')
  if (kernelLine !== undefined) facts.kernelLine = kernelLine
  const probeVal = ProbeJson.safeParse(parseJson(sec('probe')?.output))
  const probe = probeVal.success ? probeVal.data : undefined
  points.push(point(probe !== undefined, 'probe --json prints a virtmiti/probe/v1 document', {
    exit: sec('probe')?.exit, issues: probeVal.success ? [] : probeVal.error.issues.slice(0, 5).map(i => `${i.path.join('.')}: ${i.message}`),
    stdout: head(sec('probe')?.output), stderr: head(sec('probe')?.stderr),
  }))
  const reportVal = GuestReport.safeParse(parseJson(sec('report')?.output))
  const report = reportVal.success ? reportVal.data : undefined
  points.push(point(report !== undefined, 'report --json prints a virtmiti/guest-report/v1 document', {
    exit: sec('report')?.exit, issues: reportVal.success ? [] : reportVal.error.issues.slice(0, 5).map(i => `${i.path.join('.')}: ${i.message}`),
    stdout: head(sec('report')?.output), stderr: head(sec('report')?.stderr),
  }))

  // Both vCPUs present: /dev/cpu/N, /proc/cpuinfo, and the agent's probe and report.
  const devCpus = (sec('cpus')?.output ?? '').split(/\s+/).filter(x => /^\d+$/.test(x)).map(Number).sort((a, b) => a - b)
  const want = Array.from({ length: vcpus }, (_, i) => i)
  const seen = {
    devCpu: devCpus, nproc: Number((sec('nproc')?.output ?? '').trim()),
    probeCpus: probe?.facts.cpus.map(c => c.cpu) ?? null, reportCpus: report?.cpus.map(c => c.cpu) ?? null,
  }
  const cpusOk = JSON.stringify(devCpus) === JSON.stringify(want) && seen.nproc === vcpus &&
    JSON.stringify(seen.probeCpus) === JSON.stringify(want) && JSON.stringify(seen.reportCpus) === JSON.stringify(want)
  points.push(point(cpusOk, `all ${vcpus} vCPUs present: /dev/cpu, /proc/cpuinfo, the agent's probe and report`, { expected: want, observed: seen }))

  // The agent saw this boot's command line (the prediction depends on it).
  const cmdline = sec('cmdline')?.output.replace(/\n+$/, '')
  const words = (cmdline ?? '').split(/\s+/)
  const absent = ctx.append.filter(a => !words.includes(a))
  const agentCmdline = probe?.facts.kernel.cmdline
  points.push(point(cmdline !== undefined && absent.length === 0 && agentCmdline === cmdline,
    `kernel command line carries "${ctx.append.join(' ')}" and the agent read it as /proc/cmdline says`,
    { absent, procCmdline: head(cmdline, 200), agentCmdline: head(agentCmdline, 200) }))

  // (1a) the agent's text is the kernel's line.
  if (probe && kernelLine !== undefined) {
    const agentRaw = probe.decision.kernel.raw
    const factsRaw = probe.facts.kernel.vulnerabilities['spectre_v2']
    points.push(point(agentRaw === kernelLine && factsRaw === kernelLine, "agent's spectre_v2 text is the kernel's sysfs line", {
      kernel: kernelLine, agentDecisionRaw: agentRaw ?? '(absent)', agentFacts: factsRaw ?? '(absent)',
    }))
    // (1b) the agent's parse, against this file's reading of the same string.
    const k = readKernelLine(kernelLine)
    const ak = probe.decision.kernel
    facts.agentKernel = { spectreV2: ak.spectreV2, bhi: ak.bhi, retpoline: ak.retpoline }
    const known = k.spectreV2 !== undefined && k.bhi !== undefined
    const parseOk = known && ak.spectreV2 === k.spectreV2 && ak.bhi === k.bhi && ak.retpoline === k.retpoline
    points.push(point(parseOk, `agent reads the kernel line as spectre_v2 ${k.spectreV2 ?? '?'} ("${k.first}"), BHI ${k.bhi ?? '?'} ("${k.bhiSegment ?? 'no BHI segment'}"), retpoline ${k.retpoline}`, {
      kernel: kernelLine,
      kernelSays: { spectreV2: k.spectreV2 ?? `(not in checks.ts tables: "${k.first}")`, bhi: k.bhi ?? `(not in checks.ts tables: "${k.bhiSegment}")`, retpoline: k.retpoline },
      agentSays: { spectreV2: ak.spectreV2, bhi: ak.bhi, retpoline: ak.retpoline },
      source: 'Linux arch/x86/kernel/cpu/bugs.c spectre_v2_strings[], spectre_bhi_state(); contract/CONTRACT.md section 6',
    }))
    // (1c) the prediction for this CPU model and command line vs what the kernel chose.
    const ex = probe.decision.expected
    facts.agentExpected = { spectreV2: ex.spectreV2, bhi: ex.bhi, retpoline: ex.retpoline }
    const predOk = ex.spectreV2 === ak.spectreV2 && ex.bhi === ak.bhi && ex.retpoline === ak.retpoline && probe.decision.mismatches.length === 0
    points.push(point(predOk, `agent's prediction for ${ctx.cpu} "${ctx.append.join(' ')}" is what the kernel chose`, {
      kernel: { line: kernelLine, spectreV2: ak.spectreV2, bhi: ak.bhi, retpoline: ak.retpoline },
      predicted: { spectreV2: `${ex.spectreV2} ("${V2_MODE_TEXT[ex.spectreV2]}")`, bhi: `${ex.bhi} ("${BHI_MODE_TEXT[ex.bhi]}")`, retpoline: ex.retpoline },
      reasons: ex.reasons.map(r => `${r.rule}: ${r.text}`),
      mismatches: probe.decision.mismatches.map(m => `${m.what}: kernel ${m.kernel}, expected ${m.expected}`),
    }))
    facts.probeStatus = probe.status
    const pExit = sec('probe')?.exit
    // Issue 12: stock QEMU has no virtual MSRs, so a guest relying on the SW loop or retpoline is
    // "at risk" (exit 1); the point checks that the probe decided and exited as its verdict says.
    const want = probe.status === 'ok' ? 0 : probe.status === 'violation' ? 1 : 3
    points.push(point(probe.status !== 'cannot-tell' && probe.exitCode === want && pExit === want, 'probe verdict decided, exit code as the verdict says', {
      status: probe.status, verdict: probe.verdict?.verdict ?? '(agent before issue 12)', exitCode: probe.exitCode, sectionExit: pExit, findings: probe.findings.map(f => `${f.level}: ${f.text}`),
    }))
  } else if (probe) {
    points.push(point(false, "agent's spectre_v2 text is the kernel's sysfs line", { kernel: '(spectre_v2 section missing)' }))
  }

  // (2) the agent's MSR reads equal rdmsr's, per MSR and CPU.
  // With the virtual MSRs presented, report writes CTRL between probe and rdmsr: checks-patched.ts
  // compares probe's CTRL with report's "before" and rdmsr's with what report wrote instead.
  for (const msr of CROSS_CHECK_MSRS) if (!(ctx.virtMsrs && msr === MSR.VIRTUAL_MITIGATION_CTRL)) points.push(msrPoint(msr, sec(rdmsrSectionName(msr)), probe, ctx, want))

  if (ctx.virtMsrs) return { points, facts }
  // (3) QEMU implements no virtual MSRs: ARCH_CAP bit 63 clear (contract/CONTRACT.md section 3 step 1).
  const ac = sec(rdmsrSectionName(MSR.ARCH_CAPABILITIES))
  const acVals = ac ? parseRdmsrSection(ac.output) : new Map<number, bigint | 'error'>()
  const set63 = [...acVals].filter(([, v]) => v !== 'error' && ((v >> ARCH_CAP_VIRTUAL_ENUM_BIT) & 1n) === 1n).map(([c, v]) => `cpu ${c}: ${hex(v as bigint)}`)
  const agentSet63 = (probe?.facts.cpus ?? []).flatMap(c => {
    const f = c.msr[hex(MSR.ARCH_CAPABILITIES)]
    return f && 'value' in f && (((parseU64(f.value) ?? 0n) >> ARCH_CAP_VIRTUAL_ENUM_BIT) & 1n) === 1n ? [`cpu ${c.cpu}: ${f.value}`] : []
  })
  points.push(point(acVals.size > 0 && set63.length === 0 && agentSet63.length === 0, 'QEMU: IA32_ARCH_CAPABILITIES bit 63 (VIRTUAL_ENUM) clear or no ARCH_CAPABILITIES', {
    rdmsrBit63Set: set63, agentBit63Set: agentSet63, rdmsrCpus: acVals.size, source: 'contract/CONTRACT.md section 3 step 1',
  }))
  if (probe) {
    const enumd = probe.decision.virt.filter(v => v.enumerated).map(v => `cpu ${v.cpu}: reached ${v.reached}`)
    points.push(point(!probe.decision.enumerated && enumd.length === 0 && probe.decision.virt.length === vcpus, 'agent: virtual MSRs not enumerated on any CPU', {
      enumerated: probe.decision.enumerated, enumeratedCpus: enumd, virtCpus: probe.decision.virt.length,
    }))
  }
  if (report) {
    const bad = report.cpus.filter(c => c.outcome !== 'not-enumerated' || c.written !== undefined).map(c => ({ cpu: c.cpu, outcome: c.outcome, written: c.written ?? '(none)' }))
    points.push(point(!report.enumerated && bad.length === 0 && report.complete && sec('report')?.exit === 0, 'report --json: not enumerated, every CPU outcome not-enumerated, nothing written', {
      enumerated: report.enumerated, complete: report.complete, exit: sec('report')?.exit, badCpus: bad,
    }))
  }
  points.push(selftestPoint(sec('selftest')))
  return { points, facts }
}

function msrPoint(msr: number, rd: Section | undefined, probe: ProbeJson | undefined, ctx: BootContext, cpus: number[]): TapPoint {
  const label = `MSR ${hex(msr)} (${MSR_NAMES[msr] ?? '?'})`
  if (!rd) return point(false, `${label}: agent = rdmsr`, { error: `section ${rdmsrSectionName(msr)} missing` })
  if (!probe) return point(false, `${label}: agent = rdmsr`, { error: 'no probe document to compare' })
  const rdv = parseRdmsrSection(rd.output)
  const comments: string[] = []
  const bad: Record<string, unknown>[] = []
  let compared = 0, unread = 0
  for (const cpu of cpus) {
    const r = rdv.get(cpu)
    const rText = r === undefined ? '(no line)' : r === 'error' ? 'fault (rdmsr: EIO)' : hex(r)
    const f = probe.facts.cpus.find(c => c.cpu === cpu)?.msr[hex(msr)]
    if (f && 'value' in f) {
      compared++
      if (r === undefined || r === 'error' || parseU64(f.value) !== r) bad.push({ cpu, agent: f.value, rdmsr: rText })
    } else if (f && 'fault' in f) {
      compared++
      if (r !== 'error') bad.push({ cpu, agent: `fault ${f.fault.errno}`, rdmsr: rText })
    } else {
      // The agent read nothing (e.g. CPUID.(7,0):EDX[29] clear: no ARCH_CAPABILITIES, contract/CONTRACT.md
      // section 3 step 1). Not a vacuous pass: rdmsr must show the TCG case, which answers MSRs it
      // does not implement with 0 and no #GP (KVM-NOTES.md "QEMU"); under KVM a #GP is also fine.
      unread++
      comments.push(`cpu ${cpu}: agent did not read ${hex(msr)}: ${f && 'skipped' in f ? f.skipped : 'not in its MSR list'}; rdmsr: ${rText}`)
      const tcgZero = r === 0n
      // The patched QEMU implements the MSR (e.g. SPEC_CTRL under TCG, patch 0001): any value, no fault.
      const implemented = ctx.virtMsrs === true && typeof r === 'bigint'
      if (!(tcgZero || implemented || (ctx.accel === 'kvm' && r === 'error'))) bad.push({ cpu, agent: 'not read', rdmsr: rText, expected: ctx.accel === 'tcg' ? '0x0 (TCG reads unimplemented MSRs as 0)' : '0x0 or a fault' })
    }
  }
  const how = unread === 0 ? `agent = rdmsr on CPUs ${cpus.join(',')}`
    : compared === 0 ? `agent read none; rdmsr reads ${ctx.accel === 'tcg' ? '0 (TCG)' : '0 or faults'} on CPUs ${cpus.join(',')}`
      : `agent = rdmsr on ${compared} CPU(s), ${unread} unread read as ${ctx.accel === 'tcg' ? '0 (TCG)' : '0 or fault'}`
  return point(bad.length === 0, `${label}: ${how}`, { mismatches: bad, rdmsrStderr: rd.stderr }, comments)
}

/** selftest skips everything (exit 4), each point with its reason (guest/selftest). */
function selftestPoint(s: Section | undefined): TapPoint {
  const name = `selftest skips (exit ${SELFTEST_EXIT_SKIPPED}) with the reason: nothing to test without the virtual MSRs`
  if (!s) return point(false, name, { error: 'section selftest missing' })
  const asserts = s.output.split('\n').filter(l => /^(not )?ok \d+/.test(l))
  const unskipped = asserts.filter(l => !/^ok \d+ .*# SKIP \S/.test(l))
  const reasons = [...new Set(asserts.map(l => /# SKIP (.*)$/.exec(l)?.[1]).filter((x): x is string => !!x))]
  return point(s.exit === SELFTEST_EXIT_SKIPPED && asserts.length > 0 && unskipped.length === 0, name, {
    exit: s.exit, points: asserts.length, notSkipped: unskipped.slice(0, 5), reasons, stderr: head(s.stderr),
  }, reasons.length ? [`selftest skip reason: ${reasons.join(' | ')}`] : undefined)
}
