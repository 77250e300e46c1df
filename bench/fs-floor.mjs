// The floor under `guest probe`'s per-CPU cost (bench/probe.mjs (b)): the same system calls the
// agent makes for one CPU of a fake tree, with nothing else: open cpuid and msr (O_NOFOLLOW),
// fstat and /proc/self/fd readlink each (guest/devcpu.ts: a regular file proves its place that
// way), 5 CPUID and 4 MSR preads (guest/probe.ts: leaves 0, 1, 7.0, 7.2, 0x40000000; ARCH_CAP and
// 0x50000000-2), close both. Run as its own process, cold like the agent, so (256 - 1) / 255 of
// its cost is what node's fs layer alone costs per CPU.
// Usage: node bench/fs-floor.mjs TREE
import * as fs from 'node:fs'

const root = process.argv[2]
if (!root) { process.stderr.write('usage: fs-floor.mjs TREE\n'); process.exit(2) }
const cpus = fs.readdirSync(`${root}/dev/cpu`).filter(n => /^\d+$/.test(n)).map(Number)
const flags = fs.constants.O_NOFOLLOW | fs.constants.O_NOCTTY | fs.constants.O_NONBLOCK
const buf = Buffer.alloc(16)
const LEAVES = [0, 1, 7, 0x2_0000_0007, 0x4000_0000]
const MSRS = [0x10a, 0x5000_0000, 0x5000_0001, 0x5000_0002]
for (const c of cpus) {
  const cpuid = fs.openSync(`${root}/dev/cpu/${c}/cpuid`, fs.constants.O_RDONLY | flags)
  const msr = fs.openSync(`${root}/dev/cpu/${c}/msr`, fs.constants.O_RDWR | flags)
  for (const fd of [cpuid, msr]) { fs.fstatSync(fd); fs.readlinkSync(`/proc/self/fd/${fd}`) }
  for (const l of LEAVES) fs.readSync(cpuid, buf, 0, 16, l)
  for (const m of MSRS) fs.readSync(msr, buf, 0, 8, m)
  fs.closeSync(cpuid)
  fs.closeSync(msr)
}
