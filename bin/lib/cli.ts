// Shared CLI plumbing: exit codes (DESIGN.md conventions), usage errors, strict option parsing.
import { writeSync } from 'node:fs'
import { isatty } from 'node:tty'
import { parseArgs, type ParseArgsConfig } from 'node:util'

export const EXIT = { OK: 0, VIOLATION: 1, USAGE: 2, CANNOT_TELL: 3, SKIP: 4 } as const

export class UsageError extends Error {}
/** Bad input file: names the file, the field and what was expected. */
export class InputError extends Error {}

export interface Io { out: (s: string) => void; err: (s: string) => void }

/**
 * Writes fd 1 or 2 directly, synchronously: touching process.stdout builds node's stream stack
 * (about 20 internal modules that `node -e 0` never loads, process.moduleLoadList; issue 15 item 4),
 * and a synchronous write leaves nothing queued when the process
 * exits or is killed. A non-blocking descriptor that fills (EAGAIN) hands the rest to the stream,
 * which queues; a reader that went away (EPIPE) ends the output, as for any command in a pipe.
 */
function fdWriter(fd: 1 | 2): (s: string) => void {
  let viaStream = false
  let closed = false
  return s => {
    if (closed) return
    if (viaStream) { (fd === 1 ? process.stdout : process.stderr).write(s); return }
    const b = Buffer.from(s, 'utf8')
    let off = 0
    try {
      while (off < b.length) off += writeSync(fd, b, off, b.length - off)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'EPIPE') { closed = true; return }
      if (code !== 'EAGAIN') throw e
      viaStream = true
      ;(fd === 1 ? process.stdout : process.stderr).write(b.subarray(off))
    }
  }
}

const direct: Io = { out: fdWriter(1), err: fdWriter(2) }
let caught: Io | undefined

/** stdout and stderr of the commands; `guest batch` catches them per command with captureOutput. */
export const stdio: Io = { out: s => (caught ?? direct).out(s), err: s => (caught ?? direct).err(s) }

/** Send stdio's output to `into` until the returned function is called (one capture at a time). */
export function captureOutput(into: Io): () => void {
  if (caught) throw new Error('captureOutput: already capturing')
  caught = into
  return () => { caught = undefined }
}

/** Whether fd 1 (or 2) is a terminal, without building process.stdout (see fdWriter). */
export const isTerminal = (fd: 1 | 2 = 1): boolean => isatty(fd)

/** parseArgs with strict checking, turning its errors into UsageError with the command's name. */
export function parse<T extends ParseArgsConfig['options']>(cmd: string, argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals })
  } catch (e) {
    throw new UsageError(`${cmd}: ${(e as Error).message.replace(/\. To specify a positional.*$/s, '')}`)
  }
}
