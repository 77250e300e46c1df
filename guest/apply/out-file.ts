// `--out FILE` for the report (issue 4; hardened by issue 14 item 6). Two kinds of target only:
// - a regular file (or a name that does not exist yet, in an existing directory): written
//   atomically (guest/atomic.ts: O_EXCL | O_NOFOLLOW random temporary, fsync, rename), so a
//   symlink or FIFO planted at the path is replaced, never written through;
// - a console device from an explicit allow-list (serial ttyS, hvc, virtio-serial ports, and
//   /dev/null), possibly through a symlink (/dev/virtio-ports/NAME), checked with fstat after
//   open: the same device number as checked before, a character device, and a name on the list.
//   /dev/cpu/N/msr (a write to MSR 0 that would bypass the write gate) is never on it.
// Everything else is refused before any MSR is written (checkOut), exit 2.
import * as nodeFs from 'node:fs'
import { basename, dirname } from 'node:path'
import { writeAll, writeFileAtomic, type AtomicFs } from '../atomic.js'

/** The node:fs calls --out uses; tests inject failures through it. */
export type OutFs = AtomicFs & Pick<typeof nodeFs, 'statSync' | 'fstatSync' | 'readFileSync'>

/** Console devices --out may write (kernel names, /sys/dev/char/M:m/uevent DEVNAME). */
export const CONSOLE_DEVICES: readonly { name: RegExp; what: string }[] = [
  { name: /^ttyS\d{1,4}$/, what: 'serial port (8250 ttyS)' },
  { name: /^hvc\d{1,4}$/, what: 'hypervisor console (hvc)' },
  { name: /^vport\d{1,4}p\d{1,4}$/, what: 'virtio-serial port' },
  { name: /^null$/, what: '/dev/null' },
]

const major = (rdev: number) => Number((BigInt(rdev) >> 8n) & 0xfffn) | Number((BigInt(rdev) >> 32n) & ~0xfffn)
const minor = (rdev: number) => Number(BigInt(rdev) & 0xffn) | Number((BigInt(rdev) >> 12n) & ~0xffn)

/** The kernel's name of a character device (from sysfs), or undefined when unknown. */
export function charDeviceName(st: nodeFs.Stats, fs: Pick<typeof nodeFs, 'readFileSync'> = nodeFs): string | undefined {
  try {
    const ue = fs.readFileSync(`/sys/dev/char/${major(st.rdev)}:${minor(st.rdev)}/uevent`, 'utf8') as string
    return /^DEVNAME=(.+)$/m.exec(ue.slice(0, 4096))?.[1]
  } catch { return undefined }
}

export interface OutOptions {
  fs?: OutFs
  /** Temporary-name randomness (tests). */
  random?: () => string
  /** `deviceText` (default `text`) is what a console device gets instead, e.g. one line of JSON. */
  deviceText?: string
  /** The kernel name of a character device (tests inject one); default from /sys/dev/char. */
  deviceName?: (st: nodeFs.Stats) => string | undefined
  /** How long a console may refuse bytes (EAGAIN) before the write fails. */
  deadlineMs?: number
}

export type OutTarget = { kind: 'file' } | { kind: 'device'; rdev: number; name: string } | { kind: 'refused'; why: string }

/** What --out FILE would be written as, without opening it; `refused` says why. */
export function checkOut(file: string, opts: OutOptions = {}): OutTarget {
  const fs = opts.fs ?? nodeFs
  const name = opts.deviceName ?? (st => charDeviceName(st, fs))
  let l: nodeFs.Stats | undefined
  try { l = fs.lstatSync(file) } catch { l = undefined }
  if (l === undefined || l.isFile()) {
    let d: nodeFs.Stats
    try { d = fs.statSync(dirname(file)) } catch (e) { return { kind: 'refused', why: `directory ${dirname(file)} does not exist (${(e as NodeJS.ErrnoException).code ?? 'error'})` } }
    if (!d.isDirectory()) return { kind: 'refused', why: `${dirname(file)} is not a directory` }
    if (basename(file) === '' || basename(file) === '.' || basename(file) === '..') return { kind: 'refused', why: 'not a file name' }
    return { kind: 'file' }
  }
  let st: nodeFs.Stats
  try { st = fs.statSync(file) } catch { return { kind: 'refused', why: 'a dangling symbolic link: refused' } }
  if (!st.isCharacterDevice()) {
    const what = l.isSymbolicLink() ? 'a symbolic link to something that is not a console device' : st.isFIFO() ? 'a FIFO' : st.isDirectory() ? 'a directory' : st.isSocket() ? 'a socket' : st.isBlockDevice() ? 'a block device' : 'not a regular file'
    return { kind: 'refused', why: `is ${what}: refused (--out writes a regular file, or a console device: ttyS, hvc, vport)` }
  }
  const n = name(st)
  if (n === undefined || !CONSOLE_DEVICES.some(c => c.name.test(n))) {
    return { kind: 'refused', why: `is the character device ${n ?? `${major(st.rdev)}:${minor(st.rdev)}`}, not a console on the allow-list (ttyS, hvc, vport, null): refused` }
  }
  return { kind: 'device', rdev: st.rdev, name: n }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4))

/** Write `text` to `file`; throws with a message naming the file. No partial FILE is left on failure. */
export function writeOut(file: string, text: string, opts: OutOptions = {}): { mode: 'atomic' | 'device'; path: string } {
  const fs = opts.fs ?? nodeFs
  const target = checkOut(file, opts)
  if (target.kind === 'refused') throw new Error(`--out ${file}: ${target.why}`)
  if (target.kind === 'file') {
    try {
      writeFileAtomic(file, text, { fs, ...(opts.random ? { random: opts.random } : {}) })
    } catch (e) {
      throw new Error(`--out ${file}: ${(e as Error).message}`)
    }
    return { mode: 'atomic', path: file }
  }
  const C = nodeFs.constants
  // O_NONBLOCK: a console whose other end is gone must not hang the agent; EAGAIN is retried below.
  const fd = fs.openSync(file, C.O_WRONLY | C.O_NOCTTY | C.O_NONBLOCK)
  try {
    const st = fs.fstatSync(fd)
    // The node opened must be the device checked (a symlink swapped meanwhile is refused).
    if (!st.isCharacterDevice() || st.rdev !== target.rdev) throw new Error(`--out ${file}: changed between the check and the open: refused`)
    const deadline = Date.now() + (opts.deadlineMs ?? 10_000)
    const retrying: Pick<AtomicFs, 'writeSync'> = {
      writeSync: ((f: number, b: Buffer, off: number, len: number) => {
        for (;;) {
          try { return fs.writeSync(f, b, off, len) } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > deadline) throw e
            Atomics.wait(sleeper, 0, 0, 5)
          }
        }
      }) as typeof nodeFs.writeSync,
    }
    writeAll(retrying, fd, opts.deviceText ?? text)
  } catch (e) {
    throw new Error(`--out ${file}: ${(e as Error).message.replace(/^--out [^:]*: /, '')}`)
  } finally { fs.closeSync(fd) }
  return { mode: 'device', path: file }
}
