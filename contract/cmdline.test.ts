// Kernel command line parsing for the BHI / spectre_v2 policy (contract/CONTRACT.md section 6).
// Linux init/main.c parse_early_param: each occurrence runs the handler, in order; everything after
// "--" goes to init. The per-generation resolution is in kernel-generation.ts (tested below too).
import t from 'tap'
import { parseCmdline } from './cmdline.js'
import { attackVectors, legacyMitigationsOff, retbleedCmd, spectreBhiCmd, spectreV2Cmd } from './kernel-generation.js'

const none = { spectreBhi: [], spectreV2: [], mitigations: [], retbleed: [] }
const whole = (spectreV2: string[] = [], nospectreV2 = false) => ({ spectreV2, nospectreV2 })

t.test('spectre_bhi=, spectre_v2=, mitigations=, retbleed= are read; others ignored', async t => {
  t.same(parseCmdline('BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet\n'), { all: none, wholeLine: whole() })
  t.same(parseCmdline('ro spectre_bhi=vmexit spectre_v2=retpoline,lfence mitigations=auto,nosmt retbleed=off,nosmt'),
    { spectreBhi: 'vmexit', spectreV2: 'retpoline,lfence', mitigations: 'auto,nosmt', retbleed: 'off,nosmt',
      all: { spectreBhi: ['vmexit'], spectreV2: ['retpoline,lfence'], mitigations: ['auto,nosmt'], retbleed: ['off,nosmt'] }, wholeLine: whole(['retpoline,lfence']) })
})

t.test('every occurrence is kept; the plain field is the last one', async t => {
  t.same(parseCmdline('spectre_bhi=off spectre_bhi=on'), { spectreBhi: 'on', all: { ...none, spectreBhi: ['off', 'on'] }, wholeLine: whole() })
})

t.test('nospectre_v2 is sticky, before or after spectre_v2= (bugs.c 6.1.192/6.12.117 cmdline_find_option_bool; Linux 7.2.13 `if (nospectre_v2) return 0`)', async t => {
  for (const c of ['spectre_v2=eibrs nospectre_v2', 'nospectre_v2 spectre_v2=retpoline']) {
    const p = parseCmdline(c)
    t.equal(p.spectreV2, 'off', c)
    t.equal(spectreV2Cmd(p, false), 'off', `${c} (6.x)`)
    t.equal(spectreV2Cmd(p, true), 'off', `${c} (7.x)`)
  }
})

t.test('arguments after "--" belong to init, not the kernel', async t => {
  t.same(parseCmdline('ro -- spectre_bhi=off'), { all: none, wholeLine: whole() })
  t.same(parseCmdline('ro spectre_v2=off -- mitigations=off'), { spectreV2: 'off', all: { ...none, spectreV2: ['off'] }, wholeLine: whole(['off']) })
})

t.test('before the vectors spectre_v2= is read past "--" (bugs.c 6.12.117 cmdline_find_option(boot_command_line)); 7.x early params stop there (Linux 7.2.13)', async t => {
  const p = parseCmdline('ro -- spectre_v2=retpoline')
  t.equal(spectreV2Cmd(p, false), 'retpoline')
  t.equal(spectreV2Cmd(p, true), 'auto')
  t.equal(spectreV2Cmd(parseCmdline('ro -- nospectre_v2'), false), 'off')
})

t.test('a bare key without "=" gives an empty value; similar names do not match', async t => {
  t.same(parseCmdline('spectre_bhi').all.spectreBhi, [''])
  t.same(parseCmdline('xspectre_bhi=off spectre_bhi_x=off nomitigations=off'), { all: none, wholeLine: whole() })
  t.same(parseCmdline('  \t '), { all: none, wholeLine: whole() })
})

t.test('spectre_v2=: 6.x takes the last occurrence, unknown = AUTO; 7.x ignores unknown values (bugs.c 6.12.117 / Linux 7.2.13)', async t => {
  const p = parseCmdline('spectre_v2=retpoline spectre_v2=bogus')
  t.equal(spectreV2Cmd(p, false), 'auto', '6.x: "unknown option (bogus). Switching to AUTO select"')
  t.equal(spectreV2Cmd(p, true), 'retpoline', '7.x: "Ignoring unknown spectre_v2 option", retpoline stays')
})

t.test('spectre_bhi=: unknown values (auto, and vmexit before 6.11) are ignored, the previous one stays (bugs.c 6.1.192 / Linux 7.2.13)', async t => {
  const p = parseCmdline('spectre_bhi=off spectre_bhi=vmexit spectre_bhi=auto')
  t.equal(spectreBhiCmd(p, '6.1.0-42-amd64'), 'off')
  t.equal(spectreBhiCmd(p, '7.2.13+deb14-amd64'), 'vmexit')
  t.equal(spectreBhiCmd(parseCmdline('spectre_bhi=auto'), '7.2.13+deb14-amd64'), undefined, 'auto: the default')
})

t.test('retbleed=: a ","-list per occurrence, the last of off/auto/unret/ibpb/stuff wins; 6.1 has no stuff (bugs.c 6.1.192, 6.12.117, Linux 7.2.13)', async t => {
  t.equal(retbleedCmd(parseCmdline('retbleed=off,nosmt'), '7.2.13+deb14-amd64'), 'off')
  t.equal(retbleedCmd(parseCmdline('retbleed=off retbleed=nosmt'), '7.2.13+deb14-amd64'), 'off', 'nosmt does not reset the mitigation')
  t.equal(retbleedCmd(parseCmdline('retbleed=stuff'), '6.1.0-42-amd64'), 'auto', '6.1: "Ignoring unknown retbleed option (stuff)"')
  t.equal(retbleedCmd(parseCmdline('retbleed=stuff'), '6.12.117+deb13-amd64'), 'stuff')
})

t.test('mitigations= as kernel/cpu.c replays it (Linux 7.2.13 mitigations_parse_cmdline; 6.12.117 before the vectors)', async t => {
  const vec = (c: string, kvm = true) => attackVectors(parseCmdline(c).all.mitigations, kvm)
  t.same(vec(''), { userKernel: true, userUser: true, guestHost: true, guestGuest: true, crossThread: true })
  t.equal(vec('', false).guestHost, false, 'guest_host defaults to IS_ENABLED(CONFIG_KVM)')
  t.same(vec('mitigations=off'), { userKernel: false, userUser: false, guestHost: false, guestGuest: false, crossThread: false })
  t.same(vec('mitigations=auto,nosmt,no_user_kernel'), { userKernel: false, userUser: true, guestHost: true, guestGuest: true, crossThread: true }, 'the global option is a prefix')
  // "auto,no_user_kernel,nosmt,no_guest_host": nosmt is not a vector option: the parse stops there.
  t.equal(vec('mitigations=auto,no_user_kernel,nosmt,no_guest_host').guestHost, true, 'options after an unsupported one are not applied')
  t.equal(vec('mitigations=auto,no_user_kernel,nosmt,no_guest_host').userKernel, false)
  t.equal(vec('mitigations=auto,no_user_kernel mitigations=auto').userKernel, false, 'auto does not turn a vector back on')
  t.equal(vec('mitigations=bogus').userKernel, true, 'an unsupported option leaves auto')
  t.equal(legacyMitigationsOff(parseCmdline('mitigations=off mitigations=auto,no_user_kernel')), true, '6.x: "Unsupported mitigations=" keeps the previous off')
  t.equal(legacyMitigationsOff(parseCmdline('mitigations=off mitigations=auto')), false)
})
