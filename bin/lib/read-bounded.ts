// Bounded input reading for every command (issue 14 item 4): `guest probe --replay /dev/zero` grew to
// 8.5 GB, a scenario YAML symlinked to /dev/zero to 6.6 GB, and FIFOs hung host check/expect,
// --replay and scenario loading. Rules:
// - a size limit, enforced while reading (never more than limit + one chunk in memory);
// - only regular files, refused otherwise (a FIFO, a device, a directory, a socket), except
//   standard input ("-") where the command takes it;
// - opened O_NONBLOCK so that opening a FIFO never waits for a writer, and so that its type is
//   checked (fstat) before any read;
// - a deadline: standard input is re-opened through /proc/self/fd/0 as a new, non-blocking file
//   description, polled with short sleeps (no spinning on EAGAIN) until the deadline.
import * as fs from 'node:fs'
import { InputError } from './cli.js'

export interface BoundedOptions {
  maxBytes: number
  /** Names the input in errors, e.g. "guest report". */
  what: string
  /** "-" reads standard input (a pipe, a terminal or a file). */
  allowStdin?: boolean
  /** Give up after this long (default 30 s for standard input; regular files never wait). */
  deadlineMs?: number
}
export type Bounded = { ok: true; text: string } | { ok: false; error: string }

const CHUNK = 64 * 1024
const sleeper = new Int32Array(new SharedArrayBuffer(4))
const sleep = (ms: number) => { Atomics.wait(sleeper, 0, 0, ms) }

function kind(st: fs.Stats): string {
  return st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device'
    : st.isDirectory() ? 'a directory' : st.isSocket() ? 'a socket' : 'not a regular file'
}

function openStdin(): { fd: number; close: boolean } {
  // A new open file description of the same pipe/tty, with O_NONBLOCK of its own: a read can then
  // never block past the deadline, whatever mode the caller left fd 0 in.
  try { return { fd: fs.openSync('/proc/self/fd/0', fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY), close: true } } catch { return { fd: 0, close: false } }
}

/** Read `path` within the rules above; never throws. */
export function readBoundedSync(path: string, o: BoundedOptions): Bounded {
  const fail = (why: string): Bounded => ({ ok: false, error: `${o.what} ${path}: ${why}` })
  const stdin = path === '-' && o.allowStdin === true
  let fd: number
  let close = true
  if (stdin) ({ fd, close } = openStdin())
  else {
    try { fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY) } catch (e) {
      return fail(`cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
    }
  }
  try {
    const st = fs.fstatSync(fd)
    if (!stdin && !st.isFile()) return fail(`is ${kind(st)}: refused (only regular files are read)`)
    if (st.isFile() && st.size > o.maxBytes) return fail(`${st.size} bytes is larger than the ${o.maxBytes}-byte limit`)
    const deadline = Date.now() + (o.deadlineMs ?? (stdin ? 30_000 : 10_000))
    const chunks: Buffer[] = []
    let total = 0
    const buf = Buffer.alloc(CHUNK)
    for (;;) {
      let n: number
      try {
        n = fs.readSync(fd, buf, 0, buf.length, null)
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          if (Date.now() > deadline) return fail(`no end of input within ${Math.round((o.deadlineMs ?? 30_000) / 1000)} s (deadline)`)
          sleep(5)
          continue
        }
        if (code === 'EOF') break
        return fail(`cannot read (${code ?? (e as Error).message})`)
      }
      if (n === 0) break
      total += n
      if (total > o.maxBytes) return fail(`larger than the ${o.maxBytes}-byte limit`)
      chunks.push(Buffer.from(buf.subarray(0, n)))
      if (Date.now() > deadline) return fail(`not read within the deadline`)
    }
    return { ok: true, text: Buffer.concat(chunks).toString('utf8') }
  } catch (e) {
    return fail(`cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
  } finally {
    if (close) try { fs.closeSync(fd) } catch { /* already closed */ }
  }
}

/** readBoundedSync, throwing an InputError (exit 2) when the input is refused. */
export function readBounded(path: string, o: BoundedOptions): string {
  const r = readBoundedSync(path, o)
  if (!r.ok) throw new InputError(r.error)
  return r.text
}
