// Platform over the Linux cpuid and msr drivers: pread/pwrite on /dev/cpu/N/{cpuid,msr}.
// Pitfalls measured here: the cpuid device needs 16-byte reads at offset (subleaf << 32 | leaf);
// fs.readSync/writeSync with a BigInt position does a plain read/write at the current offset,
// so positions are passed as Numbers (every offset used here is below 2^53).
import * as fs from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import type { AccessFault, CpuidResult, MsrRead, MsrWrite, Platform } from './platform.js'
import { InputError } from '../bin/lib/cli.js'
import { readBoundedSync } from '../bin/lib/read-bounded.js'

/** At most this many CPUs in a list, as the report and state schemas allow (issue 14 item 10). */
export const MAX_CPUS = 8192
/** Highest CPU number accepted (the report schema's cpu bound). */
const MAX_CPU_NUMBER = 65535

/**
 * modprobe, by absolute path only (issue 14 item 8: a PATH lookup and MODPROBE_OPTIONS ran code as
 * root in a test chroot). Debian's kmod installs /usr/sbin/modprobe (/sbin is a link to it on a
 * merged /usr); both are root-owned system paths.
 */
export const MODPROBE_PATHS: readonly string[] = ['/usr/sbin/modprobe', '/sbin/modprobe']
/** The whole environment modprobe gets: nothing inherited (no MODPROBE_OPTIONS, no LD_*, no PATH of the caller). */
export const MODPROBE_ENV: Readonly<Record<string, string>> = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' }

export interface DevcpuOptions {
  /** Root of the tree holding dev/cpu, sys and proc ("/" on a real machine). */
  root?: string
  /** Try `modprobe msr` / `modprobe cpuid` once when the device is missing (only with root "/"). */
  modprobe?: boolean
  /** Where modprobe may be found (tests); default MODPROBE_PATHS. */
  modprobePaths?: readonly string[]
}

/**
 * Parse a kernel CPU list such as "0-3,8,10-11" (Documentation/admin-guide/cputopology.rst).
 * Untrusted (a --dev-root tree, a broken sysfs): at most MAX_CPUS CPUs, numbers up to 65535, a
 * bounded text, ranges ascending; anything else is an InputError naming the text (issue 14 item 10:
 * "0-4294967295" aborted V8).
 */
export function parseCpuList(s: string, what = 'CPU list'): number[] {
  const shown = JSON.stringify(s.length > 80 ? s.slice(0, 80) + '...' : s)
  if (s.length > 64 * 1024) throw new InputError(`${what}: ${s.length} characters is too long for a CPU list`)
  const out: number[] = []
  for (const part of s.trim().split(',')) {
    if (part === '') continue
    const m = /^(\d{1,10})(?:-(\d{1,10}))?$/.exec(part)
    if (!m) throw new InputError(`${what}: bad CPU list ${shown} (expected e.g. 0-3,8)`)
    const a = Number(m[1]), b = m[2] !== undefined ? Number(m[2]) : a
    if (b < a) throw new InputError(`${what}: bad CPU list ${shown}: range ${part} is descending`)
    if (b > MAX_CPU_NUMBER) throw new InputError(`${what}: bad CPU list ${shown}: CPU ${b} is above ${MAX_CPU_NUMBER}`)
    if (out.length + (b - a + 1) > MAX_CPUS) throw new InputError(`${what}: bad CPU list ${shown}: more than ${MAX_CPUS} CPUs`)
    for (let i = a; i <= b; i++) out.push(i)
  }
  return out
}

function faultOf(e: unknown, what: string, hint: () => string): AccessFault {
  const code = (e as NodeJS.ErrnoException).code ?? 'EUNKNOWN'
  const causes: Record<string, string> = {
    ENOENT: 'device missing: the driver is not loaded',
    EACCES: 'permission denied: not root',
    EPERM: 'operation not permitted: not root, or kernel lockdown',
    EIO: 'the instruction faulted (#GP): not implemented on this CPU or by this VMM',
    ENXIO: 'no such CPU (offline or absent)',
  }
  const extra = hint()
  return { errno: code, message: `${what}: ${causes[code] ?? (e as Error).message}${extra ? `; ${extra}` : ''}` }
}

/** Character device majors of the drivers (Linux include/uapi/linux/major.h). */
export const DEVICE_MAJOR = { msr: 202, cpuid: 203 } as const

/** Major and minor of a dev_t as glibc's gnu_dev_major/minor split it (64-bit dev_t; Number-safe below 2^53). */
export function devNumber(rdev: number): { major: number; minor: number } {
  const hi = Math.floor(rdev / 0x1_0000_0000), lo = rdev % 0x1_0000_0000
  return { major: ((lo >>> 8) & 0xfff) | ((hi & ~0xfff) >>> 0), minor: (lo & 0xff) | ((lo >>> 12) & ~0xff) }
}

export class DevcpuPlatform implements Platform {
  readonly kind = 'devcpu'
  private readonly root: string
  private readonly fds = new Map<string, number | AccessFault>()
  /** CPUs whose msr device opened only read-only, with the error the read-write open gave. */
  private readonly writeRefused = new Map<number, NodeJS.ErrnoException>()
  private readonly modprobeTried = new Map<string, string>()
  private readonly allowModprobe: boolean
  private readonly modprobePaths: readonly string[]
  /** One read buffer for all preads (calls are synchronous): no allocation per register read (bench/probe.mjs). */
  private readonly rbuf = Buffer.alloc(16)
  private resolvedRoot: string | undefined
  /** ROOT/dev/cpu, joined once: path.join per open was measurable at 256 CPUs (bench/probe.mjs). */
  private readonly devCpu: string
  private realDevCpu: string | undefined

  constructor(opts: DevcpuOptions = {}) {
    this.root = opts.root ?? '/'
    this.devCpu = join(this.root, 'dev/cpu')
    this.allowModprobe = (opts.modprobe ?? true) && this.root === '/'
    this.modprobePaths = opts.modprobePaths ?? MODPROBE_PATHS
  }

  cpus(): number[] {
    const online = this.readText('/sys/devices/system/cpu/online')
    if (online !== undefined) return parseCpuList(online, join(this.root, 'sys/devices/system/cpu/online'))
    // No sysfs (a bare --dev-root tree): every numbered directory under dev/cpu.
    try {
      return fs.readdirSync(join(this.root, 'dev/cpu')).filter(n => /^\d{1,5}$/.test(n)).map(Number).filter(n => n <= MAX_CPU_NUMBER).sort((a, b) => a - b).slice(0, MAX_CPUS)
    } catch { return [] }
  }

  /** What `modprobe DRIVER` said, once per driver per process; empty when not attempted. */
  modprobeOutcome(driver: string): string | undefined { return this.modprobeTried.get(driver) }

  private tryModprobe(driver: string): string {
    if (!this.allowModprobe) return ''
    const prev = this.modprobeTried.get(driver)
    if (prev !== undefined) return prev
    const bin = (this.modprobePaths).find(p => { try { return fs.statSync(p).isFile() } catch { return false } })
    if (bin === undefined) {
      const said = `modprobe ${driver} could not run (no ${this.modprobePaths.join(' or ')})`
      this.modprobeTried.set(driver, said)
      return said
    }
    const r = spawnSync(bin, [driver], { encoding: 'utf8', timeout: 10_000, env: { ...MODPROBE_ENV }, stdio: ['ignore', 'pipe', 'pipe'] })
    const said = r.error ? `modprobe ${driver} could not run (${(r.error as NodeJS.ErrnoException).code})`
      : r.status === 0 ? `modprobe ${driver} succeeded`
        : `modprobe ${driver} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n')[0]}`
    this.modprobeTried.set(driver, said)
    return said
  }

  private lockdownHint(code: string | undefined): string {
    if (code !== 'EPERM' && code !== 'EACCES') return ''
    const ld = this.readText('/sys/kernel/security/lockdown')
    const uid = typeof process.getuid === 'function' ? process.getuid() : -1
    if (uid !== 0) return `running as uid ${uid}: run as root`
    return ld ? `kernel lockdown: ${ld.trim()} (the active mode is in brackets)` : ''
  }

  /**
   * One descriptor per CPU and device, held until release(cpu) (issue 14 item 7): a CPU's reads
   * go through one descriptor, and so do a write's gate read of MITI_ENUM, the write and its
   * read-back (guest/apply/write-gate.ts), so nothing swapped in the tree between them can
   * redirect a write. The probe releases each CPU when its reads are done (guest/probe.ts: no
   * descriptor table growth at 256 CPUs); `report` opens it again, checked the same way, for the
   * write. Opened O_NOFOLLOW, then checked with fstat: a character device (on "/", the
   * msr/cpuid drivers; under --dev-root also a regular file, the fake trees), and, where
   * /proc/self/fd shows it, the file actually opened is DIR/dev/cpu/N/DEV (no symlinked directory
   * on the way). The msr device is opened read-write once (the driver checks CAP_SYS_RAWIO at
   * open, and refuses writes only at write time), read-only where read-write is refused.
   */
  private fd(cpu: number, dev: 'cpuid' | 'msr'): number | AccessFault {
    const key = `${cpu}/${dev}`
    const cached = this.fds.get(key)
    if (cached !== undefined) return cached
    const path = `${this.devCpu}/${cpu}/${dev}`
    let got: number | AccessFault
    const open = (): number => {
      const nofollow = fs.constants.O_NOFOLLOW | fs.constants.O_NOCTTY | fs.constants.O_NONBLOCK
      let fd: number
      if (dev === 'msr') {
        try { fd = fs.openSync(path, fs.constants.O_RDWR | nofollow) } catch (e) {
          const c = (e as NodeJS.ErrnoException).code
          if (c !== 'EACCES' && c !== 'EROFS' && c !== 'EPERM') throw e
          fd = fs.openSync(path, fs.constants.O_RDONLY | nofollow)
          // A write through this read-only descriptor must report why writing was refused, not EBADF.
          this.writeRefused.set(cpu, e as NodeJS.ErrnoException)
        }
      } else fd = fs.openSync(path, fs.constants.O_RDONLY | nofollow)
      const why = this.notTheDevice(fd, path, cpu, dev)
      if (why !== undefined) { fs.closeSync(fd); throw Object.assign(new Error(why), { code: 'EBADF' }) }
      return fd
    }
    try {
      got = open()
    } catch (e) {
      let err = e as NodeJS.ErrnoException
      let note = ''
      if (err.code === 'ELOOP') err = Object.assign(new Error(`${path} is a symbolic link: refused (O_NOFOLLOW)`), { code: 'ELOOP' })
      else if (err.code === 'EBADF') note = ''
      else if (err.code === 'ENOENT' && fs.existsSync(join(this.root, 'dev/cpu', String(cpu)))) {
        note = this.tryModprobe(dev)
        if (note.endsWith('succeeded')) {
          try { got = open(); this.fds.set(key, got); return got } catch (e2) { err = e2 as NodeJS.ErrnoException }
        }
      } else if (err.code === 'ENOENT') {
        err = Object.assign(new Error('no such CPU'), { code: 'ENXIO' })
      }
      got = err.code === 'EBADF' || err.code === 'ELOOP'
        ? { errno: err.code === 'ELOOP' ? 'ELOOP' : 'EBADF', message: err.message }
        : faultOf(err, `${path}`, () => note || this.lockdownHint(err.code))
    }
    this.fds.set(key, got)
    return got
  }

  /**
   * Why the open descriptor is not the device this platform may use, or undefined when it is.
   * A character device proves what it is by its number: MSR_MAJOR 202 and CPUID_MAJOR 203, minor
   * = the CPU (Linux include/uapi/linux/major.h; arch/x86/kernel/msr.c and cpuid.c take the CPU
   * from iminor()), whatever path led to it, so no readlink is needed (two syscalls per CPU
   * fewer, issue 15 item 4). A regular file (a fake tree under --dev-root) has no such number:
   * /proc/self/fd shows whether it lies where it was asked for (no symlinked directory on the way).
   */
  private notTheDevice(fd: number, path: string, cpu: number, dev: 'cpuid' | 'msr'): string | undefined {
    const st = fs.fstatSync(fd)
    if (st.isCharacterDevice()) {
      const { major, minor } = devNumber(st.rdev)
      const want = DEVICE_MAJOR[dev]
      if (major !== want || minor !== cpu) return `${path} is character device ${major}:${minor}, not the ${dev} device of CPU ${cpu} (${want}:${cpu}): refused`
      return undefined
    }
    if (!(this.root !== '/' && st.isFile())) return `${path} is not a ${this.root === '/' ? 'character device' : 'character device or regular file'}: refused`
    let real: string | undefined
    try { real = fs.readlinkSync(`/proc/self/fd/${fd}`) } catch { real = undefined }
    if (real !== undefined) {
      this.realDevCpu ??= join(this.realRoot(), 'dev/cpu')
      const want = this.realDevCpu + path.slice(this.devCpu.length)
      if (real !== want) return `${path} resolves to ${real}: a symbolic link in the tree, refused`
    }
    return undefined
  }

  /**
   * The root as the kernel names it, resolved once: the root is what the caller chose to trust;
   * what lies below it is checked at every open. realpath walks each component with lstat, which
   * was a tenth of the per-CPU cost at 256 CPUs (bench/probe.mjs, node --cpu-prof).
   */
  private realRoot(): string {
    if (this.resolvedRoot === undefined) {
      try { this.resolvedRoot = fs.realpathSync(this.root) } catch { this.resolvedRoot = this.root }
    }
    return this.resolvedRoot
  }

  /** Close CPU `cpu`'s descriptors once its work is done (issue 14 item 7; issue 15 descriptor rule). */
  release(cpu: number): void {
    this.writeRefused.delete(cpu)
    for (const dev of ['cpuid', 'msr']) {
      const key = `${cpu}/${dev}`
      const fd = this.fds.get(key)
      if (typeof fd === 'number') try { fs.closeSync(fd) } catch { /* already closed */ }
      this.fds.delete(key)
    }
  }

  cpuid(cpu: number, leaf: number, subleaf: number): CpuidResult {
    const fd = this.fd(cpu, 'cpuid')
    if (typeof fd !== 'number') return { ok: false, fault: fd }
    const buf = this.rbuf
    try {
      const n = fs.readSync(fd, buf, 0, 16, subleaf * 0x1_0000_0000 + leaf)
      if (n !== 16) return { ok: false, fault: { errno: 'EIO', message: `short read of ${n} bytes from cpuid device` } }
    } catch (e) {
      return { ok: false, fault: faultOf(e, `CPUID 0x${leaf.toString(16)}.${subleaf} on CPU ${cpu}`, () => '') }
    }
    return { ok: true, regs: { eax: buf.readUInt32LE(0), ebx: buf.readUInt32LE(4), ecx: buf.readUInt32LE(8), edx: buf.readUInt32LE(12) } }
  }

  rdmsr(cpu: number, index: number): MsrRead {
    const fd = this.fd(cpu, 'msr')
    if (typeof fd !== 'number') return { ok: false, fault: fd }
    const buf = this.rbuf
    try {
      const n = fs.readSync(fd, buf, 0, 8, index)
      if (n !== 8) return { ok: false, fault: { errno: 'EIO', message: `short read of ${n} bytes from msr device` } }
    } catch (e) {
      return { ok: false, fault: faultOf(e, `RDMSR 0x${index.toString(16)} on CPU ${cpu}`, () => this.lockdownHint((e as NodeJS.ErrnoException).code)) }
    }
    return { ok: true, value: buf.readBigUInt64LE(0) }
  }

  wrmsr(cpu: number, index: number, value: bigint): MsrWrite {
    const fd = this.fd(cpu, 'msr')
    if (typeof fd !== 'number') return { ok: false, fault: fd }
    const refused = this.writeRefused.get(cpu)
    if (refused) return { ok: false, fault: faultOf(refused, `WRMSR 0x${index.toString(16)} on CPU ${cpu}: the msr device refused opening for writing`, () => this.lockdownHint(refused.code)) }
    const buf = Buffer.alloc(8)
    buf.writeBigUInt64LE(value)
    try {
      const n = fs.writeSync(fd, buf, 0, 8, index)
      if (n !== 8) return { ok: false, fault: { errno: 'EIO', message: `short write of ${n} bytes to msr device` } }
    } catch (e) {
      return { ok: false, fault: faultOf(e, `WRMSR 0x${index.toString(16)} on CPU ${cpu}`, () => this.lockdownHint((e as NodeJS.ErrnoException).code)) }
    }
    return { ok: true }
  }

  /**
   * A sysfs/proc text: bounded (64 KiB; a kernel config, ~300 KB in Debian 7.2, 1 MiB), regular files
   * and sysfs/procfs only, never a FIFO (issue 14 item 4).
   */
  readText(path: string): string | undefined {
    const r = readBoundedSync(join(this.root, path), { maxBytes: path.startsWith('/boot/config-') ? 1 << 20 : 64 * 1024, what: path })
    return r.ok ? r.text : undefined
  }

  close(): void {
    for (const fd of this.fds.values()) if (typeof fd === 'number') try { fs.closeSync(fd) } catch { /* already closed */ }
    this.fds.clear()
  }
}
