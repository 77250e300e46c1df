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
