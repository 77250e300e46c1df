// Parser for /sys/devices/system/cpu/vulnerabilities/spectre_v2 (contract/CONTRACT.md section 6).
// String tables follow Linux arch/x86/kernel/cpu/bugs.c: spectre_v2_strings[],
// spectre_v2_show_state() and spectre_bhi_state(). Unknown text is reported as unknown, never guessed.
import type { BhiMode, SpectreV2Mode } from './decision-types.js'

/** spectre_v2_strings[] across kernel versions -> mode. Exact match on the first segment. */
const V2_MODES: ReadonlyArray<[string, SpectreV2Mode, string]> = [
  ['Not affected', 'not-affected', 'bugs.c cpu_show_common(): !X86_BUG_SPECTRE_V2'],
  ['Vulnerable', 'none', 'bugs.c spectre_v2_strings[SPECTRE_V2_NONE]'],
  ['Mitigation: Retpolines', 'retpoline', 'bugs.c spectre_v2_strings[SPECTRE_V2_RETPOLINE] (4.20+)'],
  ['Mitigation: Full generic retpoline', 'retpoline', 'bugs.c before 4.20 (SPECTRE_V2_RETPOLINE_GENERIC)'],
  ['Mitigation: Full AMD retpoline', 'lfence', 'bugs.c before 4.20 (SPECTRE_V2_RETPOLINE_AMD = lfence)'],
  ['Mitigation: LFENCE', 'lfence', 'bugs.c spectre_v2_strings[SPECTRE_V2_LFENCE] (5.17 to 6.x)'],
  ['Vulnerable: LFENCE', 'lfence', 'bugs.c spectre_v2_strings[SPECTRE_V2_LFENCE] (newest)'],
  ['Mitigation: Enhanced IBRS', 'eibrs', 'bugs.c before 6.3'],
  ['Mitigation: Enhanced / Automatic IBRS', 'eibrs', 'bugs.c spectre_v2_strings[SPECTRE_V2_EIBRS] (6.3+)'],
  ['Mitigation: Enhanced IBRS + LFENCE', 'eibrs-lfence', 'bugs.c before 6.3'],
  ['Mitigation: Enhanced / Automatic IBRS + LFENCE', 'eibrs-lfence', 'bugs.c spectre_v2_strings[SPECTRE_V2_EIBRS_LFENCE]'],
  ['Mitigation: Enhanced IBRS + Retpolines', 'eibrs-retpoline', 'bugs.c before 6.3'],
  ['Mitigation: Enhanced / Automatic IBRS + Retpolines', 'eibrs-retpoline', 'bugs.c spectre_v2_strings[SPECTRE_V2_EIBRS_RETPOLINE]'],
  ['Mitigation: IBRS', 'ibrs', 'bugs.c spectre_v2_strings[SPECTRE_V2_IBRS] (5.19+)'],
  ['Vulnerable: eIBRS with unprivileged eBPF', 'eibrs', 'bugs.c spectre_v2_show_state() (whole line)'],
  ['Vulnerable: eIBRS+LFENCE with unprivileged eBPF and SMT', 'eibrs-lfence', 'bugs.c spectre_v2_show_state() (whole line)'],
]

/** spectre_bhi_state() strings, first match wins in the kernel; here exact match on the segment. */
const BHI_STATES: ReadonlyArray<[string, BhiMode, string]> = [
  ['BHI: Not affected', 'not-affected', 'bugs.c spectre_bhi_state(): !X86_BUG_BHI'],
  ['BHI: BHI_DIS_S', 'bhi-dis-s', 'bugs.c spectre_bhi_state(): X86_FEATURE_CLEAR_BHB_HW'],
  ['BHI: SW loop, KVM: SW loop', 'sw-loop', 'bugs.c spectre_bhi_state(): X86_FEATURE_CLEAR_BHB_LOOP'],
  ['BHI: Retpoline', 'retpoline', 'bugs.c spectre_bhi_state(): RETPOLINE && !RETPOLINE_LFENCE && rrsba_disabled'],
  ['BHI: Vulnerable, KVM: SW loop', 'vmexit-sw-loop', 'bugs.c spectre_bhi_state(): X86_FEATURE_CLEAR_BHB_VMEXIT'],
  ['BHI: Vulnerable', 'vulnerable', 'bugs.c spectre_bhi_state(): fallthrough'],
  // 6.9-rc and early stable backports (contract/CONTRACT.md section 6): syscall hardening instead of the
  // loop on syscall entry; the loop ran on VM exit only.
  ['BHI: Syscall hardening, KVM: SW loop', 'vmexit-sw-loop', 'Linux 6.9-rc / early stable: syscall hardening, loop on VM exit only'],
  ['BHI: Vulnerable (Syscall hardening enabled)', 'vulnerable', 'Linux 6.9-rc / early stable'],
]

export interface SpectreV2Sysfs {
  raw: string
  mode: SpectreV2Mode
  /** The first segment as printed. */
  modeText: string
  /** Remaining segments, in order ("IBPB: conditional", "BHI: SW loop, KVM: SW loop", ...). */
  segments: string[]
  bhi: BhiMode
  bhiText?: string
  /** "; " since 6.9, ", " before (contract/CONTRACT.md section 6). */
  separator: '; ' | ', '
  /** Set when some part of the line is not in the tables: the raw text is the truth. */
  unknown: string[]
  source: string
}

/** Split a pre-6.9 ", " line: the BHI segment itself contains ", KVM: ", so glue "KVM: ..." back on. */
function splitCommaLine(rest: string): string[] {
  const out: string[] = []
  for (const part of rest.split(', ')) {
    if (part.startsWith('KVM: ') && out.length > 0 && out[out.length - 1]!.startsWith('BHI: ')) out[out.length - 1] += ', ' + part
    else out.push(part)
  }
  return out
}

export function parseSpectreV2(text: string): SpectreV2Sysfs {
  const raw = text.replace(/\n+$/, '')
  // spectre_v2_module_string() appends " - vulnerable module" with no separator; drop it for matching.
  const line = raw.replace(/ - vulnerable module loaded$/, '')
  const whole = V2_MODES.find(([s]) => s === line)
  if (whole) {
    return { raw, mode: whole[1], modeText: line, segments: [], bhi: whole[1] === 'not-affected' ? 'not-affected' : 'not-reported', separator: '; ', unknown: [], source: whole[2] }
  }
  const semi = line.indexOf('; ')
  const separator: '; ' | ', ' = semi >= 0 ? '; ' : ', '
  let modeText: string
  let segments: string[]
  if (semi >= 0) {
    modeText = line.slice(0, semi)
    segments = line.slice(semi + 2).split('; ')
  } else {
    // ", " before 6.9: mode strings never contain ", " so the first piece is the mode.
    const pieces = splitCommaLine(line)
    modeText = pieces[0]!
    segments = pieces.slice(1)
  }
  const unknown: string[] = []
  const m = V2_MODES.find(([s]) => s === modeText)
  if (!m) unknown.push(modeText)
  const bhiSeg = segments.find(s => s.startsWith('BHI:'))
  let bhi: BhiMode = 'not-reported'
  if (bhiSeg !== undefined) {
    const b = BHI_STATES.find(([s]) => s === bhiSeg)
    bhi = b ? b[1] : 'unknown'
    if (!b) unknown.push(bhiSeg)
  }
  return {
    raw, mode: m ? m[1] : 'unknown', modeText, segments, bhi, ...(bhiSeg !== undefined ? { bhiText: bhiSeg } : {}),
    separator, unknown, source: m ? m[2] : 'not in bugs.c spectre_v2_strings[]',
  }
}

/** Whether the kernel runs retpolines in supervisor mode (contract/CONTRACT.md section 4: "Retpolines" or "... + Retpolines"). */
export function usesRetpoline(mode: SpectreV2Mode): boolean | 'unknown' {
  if (mode === 'unknown') return 'unknown'
  return mode === 'retpoline' || mode === 'eibrs-retpoline'
}

export const BHI_MODE_TEXT: Record<BhiMode, string> = {
  'not-affected': 'BHI: Not affected',
  'bhi-dis-s': 'BHI: BHI_DIS_S',
  'sw-loop': 'BHI: SW loop, KVM: SW loop',
  'retpoline': 'BHI: Retpoline',
  'vmexit-sw-loop': 'BHI: Vulnerable, KVM: SW loop',
  'vulnerable': 'BHI: Vulnerable',
  'not-reported': '(no BHI segment: kernel predates the BHI mitigation)',
  'unknown': '(unknown)',
}

export const V2_MODE_TEXT: Record<SpectreV2Mode, string> = {
  'not-affected': 'Not affected',
  'none': 'Vulnerable',
  'retpoline': 'Mitigation: Retpolines',
  'lfence': 'Mitigation: LFENCE',
  'eibrs': 'Mitigation: Enhanced / Automatic IBRS',
  'eibrs-lfence': 'Mitigation: Enhanced / Automatic IBRS + LFENCE',
  'eibrs-retpoline': 'Mitigation: Enhanced / Automatic IBRS + Retpolines',
  'ibrs': 'Mitigation: IBRS',
  'unknown': '(unknown)',
}
