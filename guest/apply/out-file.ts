// `--out FILE` for the report (issue 4): atomic for regular files (write FILE.tmp-<pid>, fsync,
// rename, fsync the directory), direct for character devices and FIFOs (/dev/ttyS1, a
// virtio-serial port /dev/vport*p*), where a rename would replace the device node.
import * as nodeFs from 'node:fs'
import { dirname } from 'node:path'

/** The node:fs calls --out uses; tests inject failures through it. */
export type OutFs = Pick<typeof nodeFs, 'statSync' | 'openSync' | 'writeSync' | 'fsyncSync' | 'closeSync' | 'renameSync' | 'unlinkSync'>

function writeAll(fs: OutFs, fd: number, text: string): void {
  const buf = Buffer.from(text, 'utf8')
  let off = 0
  // writeSync may write less than asked (a serial line, a full pipe): loop until done.
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off)
}

export interface OutResult { mode: 'atomic' | 'device'; path: string }

/** Write `text` to `file`; throws with a message naming the file. No partial FILE is left on failure. */
/** `deviceText` (default `text`) is what a character device or FIFO gets instead, e.g. one line of JSON. */
export function writeOut(file: string, text: string, opts: { fs?: OutFs; pid?: number; deviceText?: string } = {}): OutResult {
  const fs = opts.fs ?? nodeFs
  let st: nodeFs.Stats | undefined
  try { st = fs.statSync(file) } catch { st = undefined }
  if (st?.isCharacterDevice() || st?.isFIFO()) {
    const fd = fs.openSync(file, 'w')
    try { writeAll(fs, fd, opts.deviceText ?? text) } finally { fs.closeSync(fd) }
    return { mode: 'device', path: file }
  }
  if (st?.isDirectory()) throw new Error(`--out ${file}: is a directory`)
  const tmp = `${file}.tmp-${opts.pid ?? process.pid}`
  let fd: number | undefined
  try {
    fd = fs.openSync(tmp, 'wx', 0o644)
    writeAll(fs, fd, text)
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    fd = undefined
    fs.renameSync(tmp, file)
  } catch (e) {
    if (fd !== undefined) { try { fs.closeSync(fd) } catch { /* already failing */ } }
    try { fs.unlinkSync(tmp) } catch { /* never created */ }
    throw new Error(`--out ${file}: ${(e as Error).message}`)
  }
  // Make the rename itself durable; a failure here leaves a complete file, so it is not an error.
  try { const d = fs.openSync(dirname(file), 'r'); try { fs.fsyncSync(d) } finally { fs.closeSync(d) } } catch { /* tmpfs, or no O_RDONLY on dirs */ }
  return { mode: 'atomic', path: file }
}
