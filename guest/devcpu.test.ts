// DevcpuPlatform over a fake tree (bench/fake-tree.mjs): pread at (subleaf << 32 | leaf) for cpuid
// and at the MSR index for msr, as Linux arch/x86/kernel/cpuid.c and msr.c answer; errno mapped
// to causes (issue 2); the discovery chain of contract/CONTRACT.md section 3 followed through real files.
import t from 'tap'
import * as fs from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DevcpuPlatform, parseCpuList } from './devcpu.js'
import { probe } from './probe.js'
import { decide } from '../contract/decide.js'
import { buildTree, SPR_VIRT, type FakeModel } from '../bench/fake-tree.mjs'

const tmp = (t: Tap) => { const d = fs.mkdtempSync(join(tmpdir(), 'virtmiti-devcpu-')); t.teardown(() => fs.rmSync(d, { recursive: true, force: true })); return d }
type Tap = { teardown: (f: () => void) => void }

t.test('parseCpuList reads the kernel CPU list format', async t => {
  t.same(parseCpuList('0-3,8,10-11\n'), [0, 1, 2, 3, 8, 10, 11])
  t.same(parseCpuList('0\n'), [0])
  t.same(parseCpuList(''), [])
  t.throws(() => parseCpuList('0-a'), /bad CPU list "0-a"/)
})

t.test('cpuid and rdmsr read the registers at the driver offsets', async t => {
  const root = buildTree(tmp(t), 2)
  const p = new DevcpuPlatform({ root, modprobe: false })
  t.teardown(() => p.close())
  t.same(p.cpus(), [0, 1])
  // Records at isolated offsets read back exactly (bench/fake-tree.mjs explains the overlaps).
  t.same(p.cpuid(1, 0x7, 2), { ok: true, regs: { eax: 0, ebx: 0, ecx: 0, edx: 0x17 } }, 'subleaf 2 at offset 2<<32|7')
  t.same(p.cpuid(0, 0x0, 0), { ok: true, regs: { eax: 0x0806f820, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 } }, 'leaf 0 at offset 0: GenuineIntel')
  const l1 = p.cpuid(0, 0x1, 0)
  t.equal(l1.ok && l1.regs.eax, 0x470806f8, 'leaf 1 at offset 1: signature 0x806f8 (top byte from the overlap)')
  const l7 = p.cpuid(0, 0x7, 0)
  t.equal(l7.ok && l7.regs.edx, 0xac000000, 'leaf 7 EDX at offset 7+12, bit 31 unsigned')
  t.same(p.rdmsr(0, 0x10a), { ok: true, value: 0x800000000008e16bn }, 'bit 63 survives as bigint')
  t.same(p.rdmsr(1, 0x50000001), { ok: true, value: 3n })
  t.same(p.rdmsr(1, 0x50000000), { ok: true, value: 0x301n }, 'overlapping record: low byte of 0x50000001 shows as bits 8-15')
  t.same(p.rdmsr(0, 0x48), { ok: true, value: 0n }, 'an unwritten MSR reads 0 from a sparse file')
  t.equal(p.readText('/proc/cmdline'), SPR_VIRT.cmdline + '\n')
  t.equal(p.readText('/sys/nothing/here'), undefined)
})

t.test('wrmsr lands at the MSR index (a BigInt position would write at the file offset)', async t => {
  const root = buildTree(tmp(t), 1)
  const p = new DevcpuPlatform({ root, modprobe: false })
  t.teardown(() => p.close())
  t.same(p.wrmsr(0, 0x50000002, 0x8000000000000001n), { ok: true })
  t.same(p.rdmsr(0, 0x50000002), { ok: true, value: 0x8000000000000001n })
  const raw = Buffer.alloc(8)
  const fd = fs.openSync(join(root, 'dev/cpu/0/msr'), 'r')
  fs.readSync(fd, raw, 0, 8, 0x50000002)
  fs.closeSync(fd)
  t.equal(raw.readBigUInt64LE(0), 0x8000000000000001n, 'bytes at offset 0x50000002 in the file')
})

t.test('probe through the tree: whole discovery chain read, enumerated, BHI_DIS_S expected', async t => {
  const root = buildTree(tmp(t), 4)
  const p = new DevcpuPlatform({ root, modprobe: false })
  const f = probe(p)
  p.close()
  t.equal(f.cpus.length, 4)
  t.equal(f.kernel.release, '6.12.9')
  t.equal(f.kernel.cmdline, SPR_VIRT.cmdline, 'first line only')
  t.same(f.cpus[3]!.msr, { '0x10a': { value: 0x800000000008e16bn }, '0x50000000': { value: 0x301n }, '0x50000001': { value: 3n }, '0x50000002': { value: 0n } })
  const d = decide(f)
  t.match(d.cpu, { vendor: 'GenuineIntel', family: 6, model: 0x8f, stepping: 8, hypervisor: false })
  t.equal(d.bhiAffected.value, true, 'eIBRS: affected')
  t.equal(d.enumerated, true)
  t.equal(d.expected.bhi, 'bhi-dis-s')
  t.same(d.mismatches, [])
  t.same(d.virt.map(v => v.wanted), [0n, 0n, 0n, 0n], 'BHI_DIS_S guest: bit 0 clear, eIBRS: bit 1 clear')
})

t.test('3: ARCH_CAP bit 63 clear on a VMM that reads 0 for unknown MSRs: not probed, not enumerated', async t => {
  // QEMU TCG / KVM ignore_msrs=1 read 0 (or junk) for 0x5000000x: the probe must not read them at all.
  const m: FakeModel = { ...SPR_VIRT, msr: { 0x10a: 0x8e16bn, 0x50000000: 1n, 0x50000001: 3n, 0x50000002: 0n } }
  const root = buildTree(tmp(t), 1, m)
  const p = new DevcpuPlatform({ root, modprobe: false })
  const reads: number[] = []
  const orig = p.rdmsr.bind(p)
  p.rdmsr = (cpu, index) => { reads.push(index); return orig(cpu, index) }
  const f = probe(p)
  p.close()
  t.same(reads, [0x10a], 'only ARCH_CAPABILITIES read')
  t.match(f.cpus[0]!.msr['0x50000000'], { skipped: /bit 63/ })
  const d = decide(f)
  t.equal(d.enumerated, false)
  t.match(d.virt[0], { reached: 'none', enumerated: false })
})

t.test('missing msr device: ENOENT with the cause, per CPU, chain stops', async t => {
  const root = buildTree(tmp(t), 2, SPR_VIRT, { msrFile: false })
  const p = new DevcpuPlatform({ root, modprobe: false })
  const f = probe(p)
  p.close()
  for (const c of f.cpus) {
    t.match(c.msr['0x10a'], { fault: { errno: 'ENOENT', message: /dev\/cpu\/\d\/msr: device missing: the driver is not loaded/ } }, `CPU ${c.cpu}`)
    t.match(c.msr['0x50000000'], { skipped: /unreadable/ })
  }
  t.ok(f.cpus[0]!.cpuid['0x7.2'] && 'regs' in f.cpus[0]!.cpuid['0x7.2']!, 'CPUID still read')
})

t.test('online CPU without a dev/cpu/N directory: ENXIO (no such CPU)', async t => {
  const root = buildTree(tmp(t), 2)
  fs.writeFileSync(join(root, 'sys/devices/system/cpu/online'), '0-2\n')
  const p = new DevcpuPlatform({ root, modprobe: false })
  const r = p.cpuid(2, 0, 0)
  t.match(r, { ok: false, fault: { errno: 'ENXIO', message: /no such CPU/ } })
  p.close()
})

t.test('a directory in place of the msr device: EISDIR reported per read, no throw', async t => {
  // chmod 000 does not stop root, so a directory stands in for an unreadable device.
  const root = buildTree(tmp(t), 1, SPR_VIRT, { msrFile: false })
  fs.mkdirSync(join(root, 'dev/cpu/0/msr'))
  const p = new DevcpuPlatform({ root, modprobe: false })
  const r = p.rdmsr(0, 0x10a)
  p.close()
  t.equal(r.ok, false)
  t.match(r, { fault: { errno: 'EISDIR', message: /RDMSR 0x10a on CPU 0/ } })
})

t.test('a truncated device file: short read reported as EIO, not a zero value', async t => {
  const root = buildTree(tmp(t), 1)
  fs.truncateSync(join(root, 'dev/cpu/0/msr'), 0x10a + 4)
  fs.truncateSync(join(root, 'dev/cpu/0/cpuid'), 8)
  const p = new DevcpuPlatform({ root, modprobe: false })
  t.match(p.rdmsr(0, 0x10a), { ok: false, fault: { errno: 'EIO', message: /short read of 4 bytes/ } })
  t.match(p.cpuid(0, 0, 0), { ok: false, fault: { errno: 'EIO', message: /short read of 8 bytes/ } })
  p.close()
})

t.test('no sys/devices/system/cpu/online: CPUs come from the numbered dev/cpu directories', async t => {
  const root = buildTree(tmp(t), 3, SPR_VIRT, { online: false })
  fs.mkdirSync(join(root, 'dev/cpu/microcode'))
  fs.mkdirSync(join(root, 'dev/cpu/10'))
  const p = new DevcpuPlatform({ root, modprobe: false })
  t.same(p.cpus(), [0, 1, 2, 10], 'numeric order, non-numeric names ignored')
  t.same(new DevcpuPlatform({ root: join(root, 'nope'), modprobe: false }).cpus(), [])
})
