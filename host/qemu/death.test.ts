// Kernel deaths before /init (issue 15 item 2), on the tail of a real console: Debian 7.2.13 under QEMU
// TCG, Skylake-Server, spectre_v2=retpoline,lfence spectre_bhi=on (lines 118-170 of its console.log).
import t from 'tap'
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'
import { deathLines, deathMatches, kernelDeath, TRACE_END } from './death.js'

const real = fs.readFileSync(fileURLToPath(new URL('./testdata/consoles/7.2.13-retpoline-lfence.log', import.meta.url)), 'utf8')

t.test('the WARN splat is the death; pr_warn "WARNING:" text is not', async t => {
  const d = kernelDeath(real)
  t.equal(d?.line, 'WARNING: arch/x86/kernel/alternative.c:745 at apply_retpolines+0x5e5/0x6d0, CPU#0: swapper/0/0')
  t.notOk(deathLines(real).some(l => l.includes('LFENCE mitigation is not recommended')), 'Spectre V2 : WARNING: ... is a pr_warn, not a death')
  t.ok(TRACE_END.test(real), 'the trace ends: a silent console after it means the kernel is gone')
  t.ok(deathMatches(d, 'WARNING: arch/x86/kernel/alternative.c:745 at apply_retpolines'))
  t.notOk(deathMatches(d, 'Kernel panic'))
})

t.test('panics, Oopses and BUGs; a clean console has none', async t => {
  const c = '[    1.0] BUG: kernel NULL pointer dereference, address: 0000000000000000\n[    1.1] Oops: 0000 [#1] PREEMPT SMP NOPTI\n[    1.2] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009\n'
  t.same(kernelDeath(c), { line: 'Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009', lines: deathLines(c) })
  t.equal(deathLines(c).length, 3)
  t.equal(kernelDeath('[    0.1] Spectre V2 : WARNING: LFENCE mitigation is not recommended for this CPU, data leaks possible!\n[    2.0] Run /init as init process\n'), undefined)
})
