// The kernel command-line options that steer the BHI and spectre_v2 choice (contract/CONTRACT.md section 6).
// Early params run their handler once per occurrence, in order (Linux init/main.c parse_early_param),
// and a handler may ignore a value it does not know, or keep state from an earlier one (bugs.c and
// kernel/cpu.c, Linux 7.2.13): so every occurrence is kept, and kernel-generation.ts resolves them
// per kernel generation. The plain fields are the last occurrence, for display.

export interface MitigationPolicy {
  /** spectre_bhi=on|off|vmexit|auto, absent when not given. */
  spectreBhi?: string
  /** spectre_v2=..., or 'off' when nospectre_v2 is given (anywhere: it is sticky, see nospectreV2). */
  spectreV2?: string
  /** mitigations=off|auto|auto,nosmt|auto,<attack vectors> */
  mitigations?: string
  /** retbleed=off|auto|unret|ibpb|stuff|nosmt,... (steers spectre_v2=auto to IBRS or not; contract/CONTRACT.md section 6). */
  retbleed?: string
  /**
   * nospectre_v2 anywhere: spectre_v2= is then ignored whatever its position (bugs.c 6.1.192/6.12.117
   * spectre_v2_parse_cmdline: cmdline_find_option_bool; 7.2.13: `if (nospectre_v2) return 0`).
   */
  nospectreV2?: boolean
  /** Every occurrence in order, for the options whose handlers keep or ignore values. */
  all: { spectreBhi: string[]; spectreV2: string[]; mitigations: string[]; retbleed: string[] }
  /**
   * spectre_v2= / nospectre_v2 over the whole line, "--" and init's arguments included: kernels before
   * the vectors read them with cmdline_find_option(boot_command_line) (bugs.c 6.1.192 / 6.12.117,
   * arch/x86/lib/cmdline.c), which does not stop at "--".
   */
  wholeLine: { spectreV2: string[]; nospectreV2: boolean }
}

export function parseCmdline(cmdline: string): MitigationPolicy {
  const p: MitigationPolicy = { all: { spectreBhi: [], spectreV2: [], mitigations: [], retbleed: [] }, wholeLine: { spectreV2: [], nospectreV2: false } }
  for (const tok of cmdline.trim().split(/\s+/)) {
    if (tok === 'nospectre_v2') p.wholeLine.nospectreV2 = true
    else if (tok.startsWith('spectre_v2=')) p.wholeLine.spectreV2.push(tok.slice('spectre_v2='.length))
  }
  // Everything after a bare "--" goes to init, not the kernel.
  for (const tok of cmdline.split(' -- ')[0]!.trim().split(/\s+/)) {
    if (tok === '--') break
    const eq = tok.indexOf('=')
    const key = eq < 0 ? tok : tok.slice(0, eq)
    const val = eq < 0 ? '' : tok.slice(eq + 1)
    if (key === 'spectre_bhi') { p.spectreBhi = val; p.all.spectreBhi.push(val) }
    else if (key === 'spectre_v2') p.all.spectreV2.push(val)
    else if (key === 'nospectre_v2') p.nospectreV2 = true
    else if (key === 'mitigations') { p.mitigations = val; p.all.mitigations.push(val) }
    else if (key === 'retbleed') { p.retbleed = val; p.all.retbleed.push(val) }
  }
  if (p.nospectreV2) p.spectreV2 = 'off'
  else if (p.all.spectreV2.length) p.spectreV2 = p.all.spectreV2.at(-1)
  return p
}
