// The spectre_v2 sysfs parser accepts every string of contract/CONTRACT.md section 6 (Linux bugs.c
// spectre_v2_strings[] and spectre_bhi_state()), in the "; " form (6.9+) and the ", " form (before
// 6.9 and stable backports), and reports anything else as unknown with the raw text.
import t from 'tap'
import { parseSpectreV2, usesRetpoline, BHI_MODE_TEXT, V2_MODE_TEXT } from './sysfs-spectre-v2.js'
import type { BhiMode } from './decision-types.js'

// contract/CONTRACT.md section 6: the BHI segment strings, first match wins in spectre_bhi_state().
const BHI_STRINGS: [string, BhiMode][] = [
  ['BHI: Not affected', 'not-affected'],
  ['BHI: BHI_DIS_S', 'bhi-dis-s'],
  ['BHI: SW loop, KVM: SW loop', 'sw-loop'],
  ['BHI: Retpoline', 'retpoline'],
  ['BHI: Vulnerable, KVM: SW loop', 'vmexit-sw-loop'],
  ['BHI: Vulnerable', 'vulnerable'],
  // 6.9-rc / early stable spellings (contract/CONTRACT.md section 6 "to tolerate").
  ['BHI: Syscall hardening, KVM: SW loop', 'vmexit-sw-loop'],
  ['BHI: Vulnerable (Syscall hardening enabled)', 'vulnerable'],
]

t.test('contract/CONTRACT.md 6: every BHI segment string parses, "; " form (Linux 6.9+)', async t => {
  for (const [seg, mode] of BHI_STRINGS) {
    const line = `Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; RSB filling; PBRSB-eIBRS: SW sequence; ${seg}\n`
    const r = parseSpectreV2(line)
    t.equal(r.bhi, mode, `${seg} -> ${mode}`)
    t.equal(r.bhiText, seg, `${seg}: BHI segment kept whole`)
    t.equal(r.mode, 'eibrs')
    t.equal(r.separator, '; ')
    t.same(r.unknown, [], `${seg}: nothing unknown`)
    t.equal(r.raw, line.trimEnd(), 'raw text without the newline')
    t.equal(r.segments.length, 4, `${seg}: four segments after the mode`)
  }
})

t.test('contract/CONTRACT.md 6: pre-6.9 ", " lines keep "BHI: ..., KVM: SW loop" whole', async t => {
  for (const [seg, mode] of BHI_STRINGS) {
    // Shape of a 5.15/6.1 stable backport line: spectre_v2_show_state() with ", " separators.
    const line = `Mitigation: Retpolines, IBPB: conditional, IBRS_FW, STIBP: conditional, RSB filling, PBRSB-eIBRS: Not affected, ${seg}`
    const r = parseSpectreV2(line)
    t.equal(r.separator, ', ', `${seg}: comma form detected`)
    t.equal(r.mode, 'retpoline')
    t.equal(r.bhi, mode, `${seg} -> ${mode}`)
    t.equal(r.bhiText, seg, `${seg}: BHI segment not cut at ", KVM:"`)
    t.same(r.segments, ['IBPB: conditional', 'IBRS_FW', 'STIBP: conditional', 'RSB filling', 'PBRSB-eIBRS: Not affected', seg])
    t.same(r.unknown, [])
  }
})

t.test('pre-6.9 line without any BHI segment: "not-reported" (kernel predates the BHI mitigation)', async t => {
  const r = parseSpectreV2('Mitigation: Enhanced IBRS, IBPB: conditional, RSB filling, PBRSB-eIBRS: SW sequence\n')
  t.equal(r.mode, 'eibrs', 'pre-6.3 "Enhanced IBRS" spelling')
  t.equal(r.bhi, 'not-reported')
  t.equal(r.bhiText, undefined)
  t.same(r.unknown, [])
})

t.test('bugs.c spectre_v2_strings[]: every mode string, with and without segments', async t => {
  const modes: [string, string][] = [
    ['Vulnerable', 'none'],
    ['Mitigation: Retpolines', 'retpoline'],
    ['Mitigation: LFENCE', 'lfence'],
    ['Vulnerable: LFENCE', 'lfence'],
    ['Mitigation: Enhanced / Automatic IBRS', 'eibrs'],
    ['Mitigation: Enhanced / Automatic IBRS + LFENCE', 'eibrs-lfence'],
    ['Mitigation: Enhanced / Automatic IBRS + Retpolines', 'eibrs-retpoline'],
    ['Mitigation: Enhanced IBRS + Retpolines', 'eibrs-retpoline'],
    ['Mitigation: IBRS', 'ibrs'],
    ['Mitigation: Full generic retpoline', 'retpoline'],
  ]
  for (const [text, mode] of modes) {
    const alone = parseSpectreV2(text + '\n')
    t.equal(alone.mode, mode, `"${text}" alone -> ${mode}`)
    t.equal(alone.bhi, 'not-reported', `"${text}" alone: no BHI segment`)
    const withBhi = parseSpectreV2(`${text}; IBPB: conditional; BHI: Vulnerable`)
    t.equal(withBhi.mode, mode, `"${text}; ..." -> ${mode}`)
    t.equal(withBhi.modeText, text)
    t.equal(withBhi.bhi, 'vulnerable')
  }
})

t.test('whole-line strings: "Not affected" and the unprivileged-eBPF warnings', async t => {
  const na = parseSpectreV2('Not affected\n')
  t.equal(na.mode, 'not-affected')
  t.equal(na.bhi, 'not-affected', 'a CPU not affected by spectre_v2 is not affected by BHI either')
  const ebpf = parseSpectreV2('Vulnerable: eIBRS with unprivileged eBPF')
  t.equal(ebpf.mode, 'eibrs')
  t.same(ebpf.unknown, [])
})

t.test('" - vulnerable module loaded" suffix (spectre_v2_module_string) does not hide the BHI state', async t => {
  const r = parseSpectreV2('Mitigation: Retpolines; IBPB: conditional; BHI: Retpoline - vulnerable module loaded')
  t.equal(r.bhi, 'retpoline')
  t.equal(r.mode, 'retpoline')
  t.match(r.raw, / - vulnerable module loaded$/, 'raw text keeps the suffix')
})

t.test('unknown text comes back as unknown with the raw text, never guessed', async t => {
  const newBhi = parseSpectreV2('Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; BHI: Long loop, KVM: Long loop\n')
  t.equal(newBhi.bhi, 'unknown', 'unlisted BHI state is unknown, not "sw-loop"')
  t.equal(newBhi.bhiText, 'BHI: Long loop, KVM: Long loop')
  t.same(newBhi.unknown, ['BHI: Long loop, KVM: Long loop'])
  t.equal(newBhi.mode, 'eibrs', 'the known mode is still read')

  const newMode = parseSpectreV2('Mitigation: Something new; BHI: BHI_DIS_S')
  t.equal(newMode.mode, 'unknown')
  t.same(newMode.unknown, ['Mitigation: Something new'])
  t.equal(newMode.bhi, 'bhi-dis-s')
  t.equal(newMode.raw, 'Mitigation: Something new; BHI: BHI_DIS_S')

  const garbage = parseSpectreV2('garbage')
  t.equal(garbage.mode, 'unknown')
  t.equal(garbage.bhi, 'not-reported')
  t.same(garbage.unknown, ['garbage'])
  t.equal(garbage.raw, 'garbage')

  // A near miss must not match: case and spacing are part of the kernel string.
  t.equal(parseSpectreV2('Mitigation: Retpolines; BHI: sw loop, KVM: SW loop').bhi, 'unknown', 'lower-case "sw loop" is not the kernel string')
})

t.test('usesRetpoline (contract/CONTRACT.md 4: "Retpolines" or "... + Retpolines")', async t => {
  t.equal(usesRetpoline('retpoline'), true)
  t.equal(usesRetpoline('eibrs-retpoline'), true)
  t.equal(usesRetpoline('lfence'), false, 'LFENCE flavour is not retpoline')
  t.equal(usesRetpoline('eibrs-lfence'), false)
  t.equal(usesRetpoline('eibrs'), false)
  t.equal(usesRetpoline('ibrs'), false)
  t.equal(usesRetpoline('none'), false)
  t.equal(usesRetpoline('unknown'), 'unknown')
})

t.test('display tables round-trip through the parser', async t => {
  for (const [mode, text] of Object.entries(BHI_MODE_TEXT)) {
    if (mode === 'not-reported' || mode === 'unknown') continue
    t.equal(parseSpectreV2(`Mitigation: Retpolines; ${text}`).bhi, mode, `BHI_MODE_TEXT[${mode}] parses back`)
  }
  for (const [mode, text] of Object.entries(V2_MODE_TEXT)) {
    if (mode === 'unknown') continue
    t.equal(parseSpectreV2(text).mode, mode, `V2_MODE_TEXT[${mode}] parses back`)
  }
})
