// Minimal YAML emitter for TAP diagnostics: block mappings and sequences, strings always
// double-quoted (a JSON string is a valid YAML double-quoted scalar), bigints as "0x" hex.
// Kept dependency-free so TAP output does not pay the yaml package's start-up cost.

// JSON.stringify escapes C0 controls but leaves U+2028/2029, DEL and C1 raw; YAML and TAP readers
// may break a line at them (issue 14 item 9), so they are escaped too (valid in a double-quoted scalar).
// eslint-disable-next-line no-control-regex
const quote = (s: string) => JSON.stringify(s).replace(/[\u007f-\u009f\u2028\u2029]/g, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)

const key = (k: string) => /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(k) ? k : quote(k)

function scalar(v: unknown): string {
  if (v === null || v === undefined) return 'null'
  if (typeof v === 'bigint') return quote('0x' + v.toString(16))
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : quote(String(v))
  if (typeof v === 'boolean') return String(v)
  return quote(String(v))
}

/**
 * A sequence item: Perl's TAP::Parser::YAMLish reader (TAP::Harness 3.44, Debian 12's prove) takes
 * `- "WORD: ..."` for a mapping and then fails on the unterminated quote; a colon written as the
 * YAML escape \x3a reads the same in every YAML parser and leaves the line a plain sequence item.
 */
function itemScalar(v: unknown): string {
  const s = scalar(v)
  return /^- \S+\s*:(\s|$)/.test(`- ${s}`) ? s.replace(/:/g, '\\x3a') : s
}

const isBlock = (v: unknown): v is object =>
  typeof v === 'object' && v !== null && (Array.isArray(v) ? v.length > 0 : Object.keys(v).length > 0)

export function emitYaml(v: unknown, indent = ''): string[] {
  if (Array.isArray(v)) {
    return v.flatMap(item => {
      if (!isBlock(item)) return [`${indent}- ${Array.isArray(item) ? '[]' : typeof item === 'object' && item ? '{}' : itemScalar(item)}`]
      const [first, ...rest] = emitYaml(item, indent + '  ')
      return [`${indent}- ${first!.trimStart()}`, ...rest]
    })
  }
  if (typeof v === 'object' && v !== null) {
    return Object.entries(v).flatMap(([k, x]) => isBlock(x)
      ? [`${indent}${key(k)}:`, ...emitYaml(x, indent + '  ')]
      : [`${indent}${key(k)}: ${Array.isArray(x) ? '[]' : typeof x === 'object' && x ? '{}' : scalar(x)}`])
  }
  return [`${indent}${scalar(v)}`]
}
