// A small TAP 14 (and 13) writer: plan first, YAML diagnostics, nested subtests.
// TAP 14 spec: testanything.org/tap-version-14-specification.html. Output is checked with
// tap-parser in strict mode by the tests.
import { emitYaml } from './yaml-emit.js'
import { safeText } from './escape.js'

export type TapVersion = 13 | 14

export interface TapPoint {
  ok: boolean
  name: string
  /** Reason: the point is marked `# SKIP reason` (a skipped point is ok). */
  skip?: string
  todo?: string
  diag?: Record<string, unknown>
  /** Points of a subtest; printed as an indented child stream before this point (TAP 14). */
  sub?: TapPoint[]
  /** "# ..." comment lines printed just before this point (before its subtest, if any). */
  comments?: string[]
}

// TAP descriptions must not contain '#' unescaped, nor start with a digit that could read as a number.
// Every line break and control character (CR, ESC, U+2028/2029: issue 14 item 9) becomes a visible
// escape, so untrusted text cannot end a line, forge a point, or drive the operator's terminal.
const clean = (s: string) => safeText(s.replace(/\\/g, '\\\\').replace(/#/g, '\\#'))

function yamlBlock(diag: Record<string, unknown>, indent: string): string[] {
  return [`${indent}  ---`, ...emitYaml(diag, `${indent}  `), `${indent}  ...`]
}

function lines(points: TapPoint[], indent: string, version: TapVersion): string[] {
  return [`${indent}1..${points.length}`, ...points.flatMap((p, i) => pointLines(p, i + 1, indent, version))]
}

/** One test point (its comments, its subtest, the point line, its diagnostics) numbered `n`. */
function pointLines(p: TapPoint, n: number, indent: string, version: TapVersion): string[] {
  const out: string[] = []
  for (const c of p.comments ?? []) out.push(`${indent}# ${safeText(c)}`)
  if (p.sub) {
    out.push(`${indent}# Subtest: ${clean(p.name)}`)
    out.push(...lines(p.sub, indent + '    ', version))
  }
  let line = `${indent}${p.ok || p.skip !== undefined ? 'ok' : 'not ok'} ${n} - ${clean(p.name)}`
  if (p.skip !== undefined) line += ` # SKIP ${clean(p.skip)}`
  else if (p.todo !== undefined) line += ` # TODO ${clean(p.todo)}`
  out.push(line)
  if (p.diag && Object.keys(p.diag).length > 0) out.push(...yamlBlock(p.diag, indent))
  return out
}

/**
 * Streaming (issue 13): the header and plan up front, then each top-level point as its run
 * completes. Subtests stay nested (indented) in both versions: TAP 13 readers such as Perl's
 * TAP::Harness read the indented lines as unknown and ignore them, so the plan counts the
 * top-level points and is known before anything runs.
 */
export const tapStreamHeader = (plan: number, version: TapVersion = 14): string => `TAP version ${version}\n1..${plan}\n`
export const tapStreamPoint = (p: TapPoint, n: number, version: TapVersion = 14): string => pointLines(p, n, '', version).join('\n') + '\n'

/** A whole TAP document. TAP 13 has no subtest syntax: subtests are flattened with "parent > child" names. */
export function tapDocument(points: TapPoint[], version: TapVersion = 14): string {
  const pts = version === 13 ? flatten(points) : points
  return [`TAP version ${version}`, ...lines(pts, '', version)].join('\n') + '\n'
}

function flatten(points: TapPoint[], prefix = ''): TapPoint[] {
  const out: TapPoint[] = []
  for (const p of points) {
    const name = prefix + p.name
    if (p.sub) out.push(...flatten(p.sub, name + ' > '))
    const { sub: _sub, ...rest } = p
    out.push({ ...rest, name, ok: p.ok && (!p.sub || p.sub.every(s => s.ok || s.skip !== undefined)) })
  }
  return out
}

export const allOk = (points: TapPoint[]): boolean => points.every(p => (p.ok || p.skip !== undefined) && (!p.sub || allOk(p.sub)))
