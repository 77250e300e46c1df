// Kernel command line parsing for the BHI / spectre_v2 policy (contract/CONTRACT.md section 6).
// Linux init/main.c parse_early_param: each occurrence runs the handler, so the last one wins;
// everything after "--" goes to init.
import t from 'tap'
import { parseCmdline } from './cmdline.js'

t.test('spectre_bhi=, spectre_v2=, mitigations= are read; others ignored', async t => {
  t.same(parseCmdline('BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet\n'), {})
  t.same(parseCmdline('ro spectre_bhi=vmexit spectre_v2=retpoline,lfence mitigations=auto,nosmt'),
    { spectreBhi: 'vmexit', spectreV2: 'retpoline,lfence', mitigations: 'auto,nosmt' })
})

t.test('last occurrence wins (parse_early_param runs each one)', async t => {
  t.same(parseCmdline('spectre_bhi=off spectre_bhi=on'), { spectreBhi: 'on' })
  t.same(parseCmdline('spectre_v2=eibrs nospectre_v2'), { spectreV2: 'off' }, 'nospectre_v2 after spectre_v2= turns it off')
  t.same(parseCmdline('nospectre_v2 spectre_v2=retpoline'), { spectreV2: 'retpoline' })
})

t.test('arguments after "--" belong to init, not the kernel', async t => {
  t.same(parseCmdline('ro -- spectre_bhi=off'), {})
  t.same(parseCmdline('ro spectre_v2=off -- mitigations=off'), { spectreV2: 'off' })
})

t.test('a bare key without "=" gives an empty value; similar names do not match', async t => {
  t.same(parseCmdline('spectre_bhi'), { spectreBhi: '' })
  t.same(parseCmdline('xspectre_bhi=off spectre_bhi_x=off nomitigations=off'), {})
  t.same(parseCmdline('  \t '), {})
})
