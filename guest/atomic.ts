// Write a file so that readers see the old content or the whole new content, never a part:
// write a temporary file beside it, fsync, rename over (POSIX rename is atomic within a filesystem).
import * as fs from 'node:fs'
import { dirname, basename, join } from 'node:path'

export function writeFileAtomic(file: string, data: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.tmp-${process.pid}`)
  let fd: number | undefined
  try {
    fd = fs.openSync(tmp, 'wx', 0o644)
    fs.writeSync(fd, data)
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    fd = undefined
    fs.renameSync(tmp, file)
  } catch (e) {
    if (fd !== undefined) try { fs.closeSync(fd) } catch { /* closing after a failed write */ }
    try { fs.unlinkSync(tmp) } catch { /* never created */ }
    throw e
  }
}
