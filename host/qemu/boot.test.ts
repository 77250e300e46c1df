// One real boot of the live-guest image under QEMU TCG (issue 7), with the stand-in agent
// and a short command list so it stays near 15 s. Skips with the reason when QEMU or a
// Debian kernel is missing.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { bootGuest } from './boot.js'
import { rdmsrCommand } from './commands.js'
import { buildImage, STAND_IN_AGENT } from './image.js'
import { cachedMatrixKernel } from './tier.js'
import { parseRdmsrSection } from './commands.js'

function skipReason(): string | undefined {
  try { execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' }) } catch { return 'qemu-system-x86_64 not found (apt-get install qemu-system-x86)' }
  return kernel.ok ? undefined : `${kernel.error} (bash .ci/setup fetches the matrix kernels)`
}
// The matrix's first kernel, from the kernel cache (never /boot).
const kernel = cachedMatrixKernel()

// A real boot needs more than tap's default 30 s per file on a loaded machine; the
// top-level setTimeout overrides it for this file only (tap docs, --timeout).
t.setTimeout(240_000)
const skip = skipReason()
t.test('TCG boot: /init runs the list, both vCPUs appear, TCG reads unknown MSRs as 0', { skip: skip ?? false, timeout: 200_000 }, async t => {
  if (!kernel.ok) return
  const img = buildImage(STAND_IN_AGENT, kernel.kernel)
  t.ok(img.ok, `image builds: ${img.error ?? img.log.trim()}`)
  if (!img.ok) return
  const again = buildImage(STAND_IN_AGENT, kernel.kernel)
  t.same([again.cacheHit, again.image, again.key], [true, img.image, img.key], 'second build with the same inputs is a cache hit on the same file')
  const r = await bootGuest({
    image: img.image!, kernel: img.kernel!, cpu: 'Skylake-Server', append: ['spectre_bhi=on'], timeoutMs: 150_000, // ~15 s idle; far more on a loaded 2-CPU machine
    commands: [
      { name: 'spectre_v2', command: 'cat /sys/devices/system/cpu/vulnerabilities/spectre_v2' },
      { name: 'cpus', command: 'ls /dev/cpu' },
      { name: 'probe', command: 'node /virtmiti-guest.cjs probe --json' },
      rdmsrCommand(0x10a), rdmsrCommand(0x50000002),
      { name: 'fails', command: 'echo out; echo err >&2; exit 3' },
      // A framed command (virtmiti-guest batch's kind): its frames pass through and count.
      { name: 'framed', command: "printf '@@virtmiti-begin inner\\naGkK\\n@@virtmiti-end inner 5 3 1.0\\n'; echo late >&2; exit 7", framed: true },
    ],
  })
  t.comment(`boot-to-done ${Math.round(r.wallMs)} ms, guest uptime at done ${r.frames.done?.uptimeS} s`)
  t.equal(r.error, undefined, `boot succeeds (console: ${r.consoleLog})`)
  t.equal(r.ok, true)
  t.same([...r.sections.keys()], ['insmod.msr', 'insmod.cpuid', 'spectre_v2', 'cpus', 'probe', 'rdmsr.0x10a', 'rdmsr.0x50000002', 'fails', 'inner', 'framed'])
  t.same([r.sections.get('inner')?.exit, r.sections.get('inner')?.output], [5, 'hi\n'], 'a framed command\'s own frame arrives as it printed it')
  t.same([r.sections.get('framed')?.exit, r.sections.get('framed')?.output, r.sections.get('framed')?.stderr], [7, '', 'late\n'], 'then its exit code and stderr')
  t.equal(r.bootKernel?.kind, /^CONFIG_PVH=y$/m.test(fs.readFileSync(img.kernel!.replace('vmlinuz-', 'config-'), 'utf8')) ? 'vmlinux-pvh' : 'as-given', `booted: ${r.bootKernel?.reason}`)
  t.equal(r.sections.get('insmod.msr')?.exit, 0, 'msr module loads')
  t.equal(r.sections.get('insmod.cpuid')?.exit, 0, 'cpuid module loads')
  t.match(r.sections.get('spectre_v2')?.output, /; BHI: /, 'Debian 6.1 kernel prints a BHI segment (stable backport)')
  t.same(r.sections.get('cpus')?.output.split(/\s+/).filter(Boolean), ['0', '1'], 'both vCPUs of -smp 2 have /dev/cpu/N')
  // TCG answers MSRs it does not implement with 0 and no #GP (KVM-NOTES.md "QEMU").
  t.same([...parseRdmsrSection(r.sections.get('rdmsr.0x10a')!.output)], [[0, 0n], [1, 0n]], 'rdmsr 0x10a is 0 on both CPUs')
  t.same([...parseRdmsrSection(r.sections.get('rdmsr.0x50000002')!.output)], [[0, 0n], [1, 0n]], 'rdmsr 0x50000002 is 0, no fault')
  const probe = JSON.parse(r.sections.get('probe')!.output) as { cpus: { cpu: number; msr: Record<string, { value?: string }> }[] }
  t.same(probe.cpus.map(c => c.msr['0x10a']?.value), ['0x0', '0x0'], 'node fs.readSync at position 0x10a agrees with rdmsr')
  const f = r.sections.get('fails')
  t.same([f?.exit, f?.output, f?.stderr], [3, 'out\n', 'err\n'], 'exit code, stdout and stderr travel separately')
})
