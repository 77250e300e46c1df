// Write a file so that readers see the old content or the whole new content, never a part:
// write a temporary file beside it, fsync, rename over (POSIX rename is atomic within a filesystem).
// As root in directories others may write (issue 14 item 6): the temporary is created O_EXCL |
// O_NOFOLLOW with a random name (a pid-based name can collide after a reboot, and a planted
// symlink or FIFO at a guessable name would be written through), leftover temporaries of
// earlier runs are removed, and the rename replaces a directory entry, never writes through one.
import * as nodeFs from 'node:fs'
import { randomBytes } from 'node:crypto'
import { dirname, basename, join } from 'node:path'

/** The node:fs calls an atomic write uses; tests inject failures through it. */
export type AtomicFs = Pick<typeof nodeFs, 'openSync' | 'writeSync' | 'fsyncSync' | 'closeSync' | 'renameSync' | 'unlinkSync' | 'readdirSync' | 'lstatSync' | 'fchmodSync'>

export interface AtomicOptions {
  fs?: AtomicFs
  mode?: number
  /** 16 hex digits naming the temporary (tests); default crypto-random. */
  random?: () => string
}

const TMP_SUFFIX = /^[0-9a-f]{16}\.tmp$/
/** The temporary's name for `file`: `.NAME.virtmiti-<16 hex>.tmp` in the same directory. */
export const tmpName = (file: string, random: string) => join(dirname(file), `.${basename(file)}.virtmiti-${random}.tmp`)

/** Remove our own leftover temporaries for `file` (a crash between create and rename leaves one). */
export function cleanLeftovers(file: string, fs: AtomicFs = nodeFs): void {
  const prefix = `.${basename(file)}.virtmiti-`
  let names: string[]
  try { names = fs.readdirSync(dirname(file)) as unknown as string[] } catch { return }
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1
  for (const n of names) {
    if (!n.startsWith(prefix) || !TMP_SUFFIX.test(n.slice(prefix.length))) continue
    const p = join(dirname(file), n)
    try {
      const st = fs.lstatSync(p)
      // Only regular files this user owns: never follow or remove what somebody else planted.
      if (st.isFile() && (uid < 0 || st.uid === uid)) fs.unlinkSync(p)
    } catch { /* gone meanwhile */ }
  }
}

export function writeAll(fs: Pick<AtomicFs, 'writeSync'>, fd: number, data: string | Buffer): void {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
  let off = 0
  // writeSync may write less than asked: loop until done.
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off)
}

export function writeFileAtomic(file: string, data: string | Buffer, opts: AtomicOptions = {}): void {
  const fs = opts.fs ?? nodeFs
  cleanLeftovers(file, fs)
  const tmp = tmpName(file, (opts.random ?? (() => randomBytes(8).toString('hex')))())
  const C = nodeFs.constants
  let fd: number | undefined
  let created = false
  try {
    fd = fs.openSync(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW | C.O_NOCTTY, opts.mode ?? 0o644)
    created = true
    // The umask must not weaken or widen the mode asked for (an executable agent bundle, 0644 units).
    if (opts.mode !== undefined) fs.fchmodSync(fd, opts.mode)
    writeAll(fs, fd, data)
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    fd = undefined
    fs.renameSync(tmp, file)
  } catch (e) {
    if (fd !== undefined) try { fs.closeSync(fd) } catch { /* closing after a failed write */ }
    if (created) try { fs.unlinkSync(tmp) } catch { /* already gone */ }
    throw e
  }
  // Make the rename itself durable; a failure here leaves a complete file, so it is not an error.
  try { const d = fs.openSync(dirname(file), 'r'); try { fs.fsyncSync(d) } finally { fs.closeSync(d) } } catch { /* tmpfs, or no O_RDONLY on dirs */ }
}
