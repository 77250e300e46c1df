// The kernel command-line options that steer the BHI and spectre_v2 choice (contract/CONTRACT.md section 6).
// Early params run once per occurrence, so the last occurrence wins (Linux init/main.c parse_early_param).

export interface MitigationPolicy {
  /** spectre_bhi=on|off|vmexit|auto, absent when not given. */
  spectreBhi?: string
  /** spectre_v2=..., or 'off' for nospectre_v2. */
  spectreV2?: string
  /** mitigations=off|auto|auto,nosmt|auto,<attack vectors> */
  mitigations?: string
  /** retbleed=off|auto|unret|ibpb|ibrs|stuff|nosmt... (steers spectre_v2=auto to IBRS or not; contract/CONTRACT.md section 6). */
  retbleed?: string
}

export function parseCmdline(cmdline: string): MitigationPolicy {
  const p: MitigationPolicy = {}
  // Everything after a bare "--" goes to init, not the kernel.
  for (const tok of cmdline.split(' -- ')[0]!.trim().split(/\s+/)) {
    if (tok === '--') break
    const eq = tok.indexOf('=')
    const key = eq < 0 ? tok : tok.slice(0, eq)
    const val = eq < 0 ? '' : tok.slice(eq + 1)
    if (key === 'spectre_bhi') p.spectreBhi = val
    else if (key === 'spectre_v2') p.spectreV2 = val
    else if (key === 'nospectre_v2') p.spectreV2 = 'off'
    else if (key === 'mitigations') p.mitigations = val
    else if (key === 'retbleed') p.retbleed = val
  }
  return p
}
