// DevcpuPlatform over a fake tree (bench/fake-tree.mjs): pread at (subleaf << 32 | leaf) for cpuid
// and at the MSR index for msr, as Linux arch/x86/kernel/cpuid.c and msr.c answer; errno mapped
// to causes (issue 2); the discovery chain of contract/CONTRACT.md section 3 followed through real files.
import t from 'tap'
import * as fs from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEVICE_MAJOR, DevcpuPlatform, MODPROBE_ENV, MODPROBE_PATHS, devNumber, parseCpuList } from './devcpu.js'
import { spawnSync } from 'node:child_process'
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

t.test('a directory in place of the msr device: EISDIR reported, no throw', async t => {
  // chmod 000 does not stop root, so a directory stands in for an unreadable device.
  const root = buildTree(tmp(t), 1, SPR_VIRT, { msrFile: false })
  fs.mkdirSync(join(root, 'dev/cpu/0/msr'))
  const p = new DevcpuPlatform({ root, modprobe: false })
  const r = p.rdmsr(0, 0x10a)
  p.close()
  t.equal(r.ok, false)
  // Opened once read-write (issue 14 item 7), so a directory is refused at open, naming the path.
  t.match(r, { fault: { errno: 'EISDIR', message: /dev\/cpu\/0\/msr/ } })
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

// Issue 14 item 7: --dev-root must not follow symlinks, and one descriptor per CPU carries the
// probe, the write and the read-back, so nothing swapped in between can redirect a write.
t.test('a symlinked msr device, or a symlinked CPU directory, is refused; the target is never written', async t => {
  const root = buildTree(tmp(t), 2)
  const victim = join(root, 'victim'); fs.writeFileSync(victim, Buffer.alloc(16))
  fs.rmSync(join(root, 'dev/cpu/0/msr')); fs.symlinkSync(victim, join(root, 'dev/cpu/0/msr'))
  const elsewhere = join(root, 'elsewhere'); fs.renameSync(join(root, 'dev/cpu/1'), elsewhere); fs.symlinkSync(elsewhere, join(root, 'dev/cpu/1'))
  const p = new DevcpuPlatform({ root, modprobe: false })
  t.teardown(() => p.close())
  t.match(p.wrmsr(0, 0, 0xffn), { ok: false, fault: { errno: 'ELOOP', message: /symbolic link: refused/ } })
  t.match(p.rdmsr(1, 0x10a), { ok: false, fault: { errno: 'EBADF', message: /resolves to .*elsewhere.*refused/ } })
  t.match(p.wrmsr(1, 0x50000002, 1n), { ok: false })
  t.same(fs.readFileSync(victim), Buffer.alloc(16), 'the symlink target is untouched')
})

t.test('a FIFO or a socket-like non-file in place of a device is refused at once (no hang)', async t => {
  const root = buildTree(tmp(t), 1)
  fs.rmSync(join(root, 'dev/cpu/0/cpuid'))
  spawnSync('mkfifo', [join(root, 'dev/cpu/0/cpuid')])
  const p = new DevcpuPlatform({ root, modprobe: false })
  t.teardown(() => p.close())
  const start = Date.now()
  t.match(p.cpuid(0, 0, 0), { ok: false, fault: { errno: 'EBADF', message: /not a character device or regular file/ } })
  t.ok(Date.now() - start < 1000)
})

// A character device is identified by its number, not its path (Linux include/uapi/linux/major.h:
// MSR_MAJOR 202, CPUID_MAJOR 203; msr.c and cpuid.c take the CPU from the minor).
t.test('devNumber splits a 64-bit dev_t as glibc does', async t => {
  // glibc makedev(maj, min) = (min & 0xff) | ((maj & 0xfff) << 8) | ((min & ~0xff) << 12) | ((maj & ~0xfff) << 32)
  const makedev = (maj: number, min: number) => Number((BigInt(min & 0xff)) | (BigInt(maj & 0xfff) << 8n) | (BigInt(min & ~0xff) << 12n) | (BigInt(maj & ~0xfff) << 32n))
  for (const [maj, min] of [[1, 3], [202, 0], [203, 255], [202, 256], [202, 65535], [4095, 1], [4096, 7], [0x12345, 0xfffff]] as const) {
    t.same(devNumber(makedev(maj, min)), { major: maj, minor: min }, `${maj}:${min}`)
  }
  t.same(DEVICE_MAJOR, { msr: 202, cpuid: 203 })
})

t.test('a character device in place of cpu N/cpuid is used only when it is the cpuid device of CPU N', async t => {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) { t.pass('not root', { skip: 'needs root for mknod' }); return }
  const root = buildTree(tmp(t), 2)
  const node = (cpu: number, dev: string, maj: number, min: number) => {
    const f = join(root, 'dev/cpu', String(cpu), dev)
    fs.rmSync(f)
    const r = spawnSync('mknod', [f, 'c', String(maj), String(min)], { encoding: 'utf8' })
    return r.status === 0 ? undefined : `mknod: ${r.stderr.trim() || r.error?.message}`
  }
  const why = node(0, 'cpuid', 1, 3) ?? node(1, 'cpuid', DEVICE_MAJOR.cpuid, 0)
  if (why) { t.pass('no device nodes', { skip: why }); return }
  const p = new DevcpuPlatform({ root, modprobe: false })
  t.teardown(() => p.close())
  t.match(p.cpuid(0, 0, 0), { ok: false, fault: { errno: 'EBADF', message: /character device 1:3, not the cpuid device of CPU 0 \(203:0\): refused/ } }, '/dev/null is refused')
  t.match(p.cpuid(1, 0, 0), { ok: false, fault: { errno: 'EBADF', message: /character device 203:0, not the cpuid device of CPU 1 \(203:1\)/ } }, "CPU 0's device under CPU 1 is refused")
  // The real driver, where this kernel has it: the right number is accepted whatever the path.
  if (!fs.existsSync('/dev/cpu/0/cpuid')) return
  if (node(1, 'cpuid', DEVICE_MAJOR.cpuid, 1) || !fs.existsSync('/dev/cpu/1')) return
  const q = new DevcpuPlatform({ root, modprobe: false }) // p remembers CPU 1's refusal
  t.teardown(() => q.close())
  const r = q.cpuid(1, 0, 0)
  t.equal(r.ok, true, 'cpuid 203:1 at dev/cpu/1/cpuid reads CPU 1')
})

t.test('one descriptor per CPU: a device swapped after the probe does not receive the write', async t => {
  const root = buildTree(tmp(t), 1)
  const p = new DevcpuPlatform({ root, modprobe: false })
  t.teardown(() => p.close())
  t.equal(p.rdmsr(0, 0x10a).ok, true, 'probe opens the device')
  const dev = join(root, 'dev/cpu/0/msr'), moved = join(root, 'original-msr')
  fs.renameSync(dev, moved)
  const victim = join(root, 'victim'); fs.writeFileSync(victim, Buffer.alloc(16))
  fs.symlinkSync(victim, dev)
  t.same(p.wrmsr(0, 0x50000002, 3n), { ok: true })
  t.same(p.rdmsr(0, 0x50000002), { ok: true, value: 3n })
  t.same(fs.readFileSync(victim), Buffer.alloc(16), 'the swapped-in file is untouched')
  const raw = Buffer.alloc(8); const fd = fs.openSync(moved, 'r'); fs.readSync(fd, raw, 0, 8, 0x50000002); fs.closeSync(fd)
  t.equal(raw.readBigUInt64LE(0), 3n, 'the write went to the device opened at probe time')
  p.release(0)
  t.match(p.rdmsr(0, 0x10a), { ok: false, fault: { errno: 'ELOOP' } }, 'after release the next open sees the symlink and refuses it')
})

t.test('CPU lists are bounded (issue 14 item 10): 0-4294967295 and garbage are input errors, not aborts', async t => {
  t.throws(() => parseCpuList('0-4294967295'), { name: 'Error', message: /above 65535/ })
  t.throws(() => parseCpuList('0-8192'), /more than 8192 CPUs/)
  t.equal(parseCpuList('0-8191').length, 8192)
  t.throws(() => parseCpuList('5-3'), /descending/)
  t.throws(() => parseCpuList('0,,x'), /bad CPU list/)
  const root = buildTree(tmp(t), 1)
  fs.mkdirSync(join(root, 'sys/devices/system/cpu'), { recursive: true })
  fs.writeFileSync(join(root, 'sys/devices/system/cpu/online'), '0-4294967295\n')
  t.throws(() => new DevcpuPlatform({ root, modprobe: false }).cpus(), /online: bad CPU list/)
})

// Issue 14 item 8: modprobe by absolute path, with a clean environment.
t.test('modprobe runs by absolute path with only MODPROBE_ENV, never through PATH or MODPROBE_OPTIONS', async t => {
  t.ok(MODPROBE_PATHS.every(p => p.startsWith('/')))
  t.same(Object.keys(MODPROBE_ENV).sort(), ['LC_ALL', 'PATH'])
  // A fake "modprobe" that records its environment, found only where the platform is told to look.
  const d = tmp(t)
  const fake = join(d, 'modprobe'), log = join(d, 'env.txt')
  fs.writeFileSync(fake, `#!/bin/sh\nenv > ${log}\nexit 1\n`, { mode: 0o755 })
  const onPath = join(d, 'path'); fs.mkdirSync(onPath)
  const trap = join(d, 'trap.txt')
  fs.writeFileSync(join(onPath, 'modprobe'), `#!/bin/sh\ntouch ${trap}\n`, { mode: 0o755 })
  const oldPath = process.env.PATH, oldOpt = process.env.MODPROBE_OPTIONS
  process.env.PATH = `${onPath}:${oldPath}`; process.env.MODPROBE_OPTIONS = '--config=/tmp/evil'
  try {
    // root "/" enables modprobe; CPU 99999 does not exist, so force the path through a CPU dir that exists.
    const p = new DevcpuPlatform({ modprobePaths: [join(d, 'missing'), fake] })
    const cpu0 = fs.existsSync('/dev/cpu/0') && !fs.existsSync('/dev/cpu/0/msr')
    if (!cpu0) { t.pass('this machine has the msr driver (or no /dev/cpu/0): the open never needs modprobe'); return }
    p.rdmsr(0, 0x10a)
    t.match(p.modprobeOutcome('msr') ?? '', /modprobe msr failed \(exit 1\)/)
    const env = fs.readFileSync(log, 'utf8')
    t.notMatch(env, /MODPROBE_OPTIONS/, 'MODPROBE_OPTIONS not inherited')
    t.match(env, /^PATH=\/usr\/sbin:\/usr\/bin:\/sbin:\/bin$/m)
    t.notOk(fs.existsSync(trap), 'nothing on the caller\'s PATH ran')
  } finally {
    process.env.PATH = oldPath
    if (oldOpt === undefined) delete process.env.MODPROBE_OPTIONS; else process.env.MODPROBE_OPTIONS = oldOpt
  }
})
