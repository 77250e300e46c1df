// Read an input file for the host CLI: bounded in size, regular files only (or "-" for standard
// input), with a deadline, never more than the limit in memory (bin/lib/read-bounded.ts, issue 14
// item 4). Errors are InputErrors (exit 2) naming the file.
import { readBounded } from '../../bin/lib/read-bounded.js'

export function readLimited(path: string, maxBytes: number, what: string): string {
  return readBounded(path, { maxBytes, what, allowStdin: true })
}
