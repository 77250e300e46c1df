// Shared CLI plumbing: exit codes (DESIGN.md conventions), usage errors, strict option parsing.
import { parseArgs, type ParseArgsConfig } from 'node:util'

export const EXIT = { OK: 0, VIOLATION: 1, USAGE: 2, CANNOT_TELL: 3, SKIP: 4 } as const

export class UsageError extends Error {}
/** Bad input file: names the file, the field and what was expected. */
export class InputError extends Error {}

export interface Io { out: (s: string) => void; err: (s: string) => void }
export const stdio: Io = { out: s => process.stdout.write(s), err: s => process.stderr.write(s) }

/** parseArgs with strict checking, turning its errors into UsageError with the command's name. */
export function parse<T extends ParseArgsConfig['options']>(cmd: string, argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals })
  } catch (e) {
    throw new UsageError(`${cmd}: ${(e as Error).message.replace(/\. To specify a positional.*$/s, '')}`)
  }
}
