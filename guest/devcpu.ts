// Platform over the Linux cpuid and msr drivers: pread/pwrite on /dev/cpu/N/{cpuid,msr}.
// Pitfalls measured here: the cpuid device needs 16-byte reads at offset (subleaf << 32 | leaf);
// fs.readSync/writeSync with a BigInt position does a plain read/write at the current offset,
// so positions are passed as Numbers (every offset used here is below 2^53).
import * as fs from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import type { AccessFault, CpuidResult, MsrRead, MsrWrite, Platform } from './platform.js'

export interface DevcpuOptions {
  /** Root of the tree holding dev/cpu, sys and proc ("/" on a real machine). */
  root?: string
  /** Try `modprobe msr` / `modprobe cpuid` once when the device is missing (only with root "/"). */
  modprobe?: boolean
}

/** Parse a kernel CPU list such as "0-3,8,10-11". */
export function parseCpuList(s: string): number[] {
  const out: number[] = []
  for (const part of s.trim().split(',')) {
    if (part === '') continue
    const m = /^(\d+)(?:-(\d+))?$/.exec(part)
    if (!m) throw new Error(`bad CPU list "${s}"`)
    const a = Number(m[1]), b = m[2] !== undefined ? Number(m[2]) : a
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

export class DevcpuPlatform implements Platform {
  readonly kind = 'devcpu'
  private readonly root: string
  private readonly fds = new Map<string, number | AccessFault>()
  private readonly modprobeTried = new Map<string, string>()
  private readonly allowModprobe: boolean
  /** One read buffer for all preads (calls are synchronous): no allocation per register read (bench/probe.mjs). */
  private readonly rbuf = Buffer.alloc(16)

  constructor(opts: DevcpuOptions = {}) {
    this.root = opts.root ?? '/'
    this.allowModprobe = (opts.modprobe ?? true) && this.root === '/'
  }

  cpus(): number[] {
    const online = this.readText('/sys/devices/system/cpu/online')
    if (online !== undefined) return parseCpuList(online)
    // No sysfs (a bare --dev-root tree): every numbered directory under dev/cpu.
    try {
      return fs.readdirSync(join(this.root, 'dev/cpu')).filter(n => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b)
    } catch { return [] }
  }

  /** What `modprobe DRIVER` said, once per driver per process; empty when not attempted. */
  modprobeOutcome(driver: string): string | undefined { return this.modprobeTried.get(driver) }

  private tryModprobe(driver: string): string {
    if (!this.allowModprobe) return ''
    const prev = this.modprobeTried.get(driver)
    if (prev !== undefined) return prev
    const r = spawnSync('modprobe', [driver], { encoding: 'utf8', timeout: 10_000 })
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

  private fd(cpu: number, dev: 'cpuid' | 'msr', write: boolean): number | AccessFault {
    const key = `${cpu}/${dev}/${write ? 'w' : 'r'}`
    const cached = this.fds.get(key)
    if (cached !== undefined) return cached
    const path = join(this.root, 'dev/cpu', String(cpu), dev)
    let got: number | AccessFault
    const open = () => fs.openSync(path, write ? 'r+' : 'r')
    try {
      got = open()
    } catch (e) {
      let err = e as NodeJS.ErrnoException
      let note = ''
      if (err.code === 'ENOENT' && fs.existsSync(join(this.root, 'dev/cpu', String(cpu)))) {
        note = this.tryModprobe(dev)
        if (note.endsWith('succeeded')) {
          try { got = open(); this.fds.set(key, got); return got } catch (e2) { err = e2 as NodeJS.ErrnoException }
        }
      } else if (err.code === 'ENOENT') {
        err = Object.assign(new Error('no such CPU'), { code: 'ENXIO' })
      }
      got = faultOf(err, `${path}`, () => note || this.lockdownHint(err.code))
    }
    this.fds.set(key, got)
    return got
  }

  cpuid(cpu: number, leaf: number, subleaf: number): CpuidResult {
    const fd = this.fd(cpu, 'cpuid', false)
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
    const fd = this.fd(cpu, 'msr', false)
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
    const fd = this.fd(cpu, 'msr', true)
    if (typeof fd !== 'number') return { ok: false, fault: fd }
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

  readText(path: string): string | undefined {
    try { return fs.readFileSync(join(this.root, path), 'utf8') } catch { return undefined }
  }

  close(): void {
    for (const fd of this.fds.values()) if (typeof fd === 'number') try { fs.closeSync(fd) } catch { /* already closed */ }
    this.fds.clear()
  }
}
