// Neutralise untrusted text (guest reports, VMM states, file names) before it reaches a terminal
// or a TAP stream (issue 14 item 9): C0 and C1 controls (ESC starts ANSI sequences, CR rewrites a
// line, LF forges TAP lines), DEL, and the Unicode separators U+2028/U+2029 (TAP and YAML readers
// may break a line there) become visible \xNN / \uNNNN escapes.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g

export function safeText(s: string): string {
  return s.replace(UNSAFE, c => {
    const n = c.charCodeAt(0)
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`
  })
}

/**
 * JSON.stringify, with the characters it leaves raw that a terminal or a line-based reader may act
 * on (DEL, C1 controls, U+2028/2029) written as \u escapes: the same JSON value, safe to print.
 */
export function jsonText(v: unknown, indent?: number): string {
  return JSON.stringify(v, null, indent).replace(/[\u007f-\u009f\u2028\u2029]/g, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}
