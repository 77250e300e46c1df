// Test support for supervisor.test.ts: the real `guest selftest` command (supervisor, runner and
// --recover children all started from this one file, as from the guest bundle) on a --dev-root
// fake tree whose device accesses become slow. A synchronous sleep in the access stands in for a
// slow pread on a real device: from JavaScript both are one blocking call that no signal handler
// can interrupt. Only the runner is slow (after VIRTMITI_SLOW_AFTER accesses, VIRTMITI_SLOW_MS
// each), so the --recover child can restore quickly.
import { main } from '../cli/selftest.js'
import { DevcpuPlatform } from '../devcpu.js'
import type { CpuidResult, MsrRead, MsrWrite, Platform } from '../platform.js'

const slowMs = Number(process.env.VIRTMITI_SLOW_MS ?? '0')
const after = Number(process.env.VIRTMITI_SLOW_AFTER ?? '0')
const args = process.argv.slice(2)
if (args[0] === 'selftest') args.shift()
const runner = args.includes('--runner')
const nap = new Int32Array(new SharedArrayBuffer(4))
let n = 0
const slow = () => { if (runner && ++n > after && slowMs > 0) Atomics.wait(nap, 0, 0, slowMs) }

class SlowPlatform implements Platform {
  readonly kind = 'devcpu'
  constructor(private readonly d: DevcpuPlatform) {}
  cpus(): number[] { return this.d.cpus() }
  cpuid(c: number, l: number, s: number): CpuidResult { slow(); return this.d.cpuid(c, l, s) }
  rdmsr(c: number, i: number): MsrRead { slow(); return this.d.rdmsr(c, i) }
  wrmsr(c: number, i: number, v: bigint): MsrWrite { slow(); return this.d.wrmsr(c, i, v) }
  readText(p: string): string | undefined { return this.d.readText(p) }
  close(): void { this.d.close() }
}

process.exitCode = await main(args, {
  out: s => { process.stdout.write(s) }, err: s => { process.stderr.write(s) },
  makePlatform: root => new SlowPlatform(new DevcpuPlatform({ root, modprobe: false })),
})
