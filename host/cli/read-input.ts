// Read an input file for the host CLI with a size limit, without reading more than the limit
// (a huge or endless file must not exhaust memory). "-" reads standard input.
import * as fs from 'node:fs'
import { InputError } from '../../bin/lib/cli.js'

export function readLimited(path: string, maxBytes: number, what: string): string {
  let fd: number
  try {
    fd = path === '-' ? 0 : fs.openSync(path, 'r')
  } catch (e) {
    throw new InputError(`${what} ${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
  }
  try {
    const chunks: Buffer[] = []
    let total = 0
    const buf = Buffer.alloc(64 * 1024)
    for (;;) {
      let n: number
      try {
        n = fs.readSync(fd, buf, 0, buf.length, null)
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code
        if (code === 'EAGAIN') continue
        if (code === 'EOF') break
        throw new InputError(`${what} ${path}: cannot read (${code ?? (e as Error).message})`)
      }
      if (n === 0) break
      total += n
      if (total > maxBytes) throw new InputError(`${what} ${path}: larger than the ${maxBytes}-byte limit`)
      chunks.push(Buffer.from(buf.subarray(0, n)))
    }
    const text = Buffer.concat(chunks).toString('utf8')
    return text
  } finally {
    if (fd !== 0) fs.closeSync(fd)
  }
}
