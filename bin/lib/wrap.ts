// Wrapping human output to the terminal (issue 12): only on a TTY, at spaces, never truncating
// (a word longer than the width stays whole). Continuation lines keep the line's indentation + 2.
// ANSI colour codes count as zero width.

import { isTerminal } from './cli.js'

const ANSI = /\u001b\[[0-9;]*m/g
const visible = (s: string) => s.replace(ANSI, '').length

/** The width to wrap to: the TTY's columns, or Infinity when not a TTY (a pipe, a file). */
export function outputWidth(given?: { isTTY?: boolean; columns?: number }): number {
  // process.stdout only on a terminal: building it costs start-up (bin/lib/cli.ts fdWriter).
  const stream = given ?? (isTerminal(1) ? process.stdout : { isTTY: false })
  return stream.isTTY === true && typeof stream.columns === 'number' && stream.columns >= 20 ? stream.columns : Infinity
}

export function wrapLine(line: string, width: number): string[] {
  if (!Number.isFinite(width) || visible(line) <= width) return [line]
  const indent = /^ */.exec(line)![0].length
  const pad = ' '.repeat(Math.min(indent + 2, Math.floor(width / 2)))
  const words = line.slice(indent).split(' ')
  const out: string[] = []
  let cur = ' '.repeat(indent)
  let curLen = indent
  let empty = true
  for (const w of words) {
    const wl = visible(w)
    if (!empty && curLen + 1 + wl > width) { out.push(cur); cur = pad + w; curLen = pad.length + wl; continue }
    cur += (empty ? '' : ' ') + w
    curLen += (empty ? 0 : 1) + wl
    empty = false
  }
  out.push(cur)
  return out
}

/** Wrap every line of `text` (which may end with a newline). */
export function wrapText(text: string, width: number): string {
  if (!Number.isFinite(width)) return text
  const end = text.endsWith('\n')
  const lines = (end ? text.slice(0, -1) : text).split('\n')
  return lines.flatMap(l => wrapLine(l, width)).join('\n') + (end ? '\n' : '')
}
