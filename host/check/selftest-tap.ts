// The guest selftest's output read back as evidence for `host check --selftest FILE` (issue 13):
// exactly what `virtmiti guest selftest` prints (TAP 14, or 13 with --tap-version 13; bin/lib/tap.ts
// writes it), so a VMM engineer saves it from a real guest (`virtmiti-guest selftest > selftest.tap`).
// The file is untrusted input: a strict reader of that subset (version, plan, points with
// SKIP/TODO directives, YAML diagnostics, comments), every error naming the line. Pure.
import { parse as parseYaml } from 'yaml'
import type { Parsed } from './parse.js'
import type { SelftestPoint } from './evidence.js'

export const SELFTEST_TAP_MAX_BYTES = 1024 * 1024

const unescape = (s: string) => s.replace(/\\(.)/g, '$1')

/** A TAP description back to text: "\#" and "\\" unescaped; an unescaped "#" starts the directive. */
function splitDescription(s: string): { name: string; directive?: string } {
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\') { i++; continue }
    if (s[i] === '#') return { name: unescape(s.slice(0, i)).trimEnd(), directive: unescape(s.slice(i + 1).trim()) }
  }
  return { name: unescape(s) }
}

const POINT = /^(not )?ok (\d+)(?: - (.*)|)$/

export function parseSelftestTap(text: string): Parsed<SelftestPoint[]> {
  const bad = (line: number, msg: string): Parsed<SelftestPoint[]> => ({ ok: false, errors: [`selftest TAP line ${line}: ${msg}`] })
  if (text.length > SELFTEST_TAP_MAX_BYTES) return { ok: false, errors: [`selftest TAP: over ${SELFTEST_TAP_MAX_BYTES} bytes`] }
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  if (!/^TAP version 1[34]$/.test(lines[0] ?? '')) return bad(1, `expected "TAP version 14" (or 13), the first line of \`virtmiti guest selftest\`'s output; found ${JSON.stringify((lines[0] ?? '').slice(0, 60))}`)
  let plan: number | undefined
  const points: SelftestPoint[] = []
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]!
    const n = i + 1
    if (l === '' || l.startsWith('#')) continue
    const bail = /^Bail out!(.*)$/.exec(l)
    if (bail) return bad(n, `the selftest did not complete (Bail out!${bail[1]}): run it again (after \`virtmiti guest selftest --recover\`)`)
    const p = /^1\.\.(\d{1,4})$/.exec(l)
    if (p) {
      if (plan !== undefined) return bad(n, 'a second plan')
      plan = Number(p[1])
      continue
    }
    const m = POINT.exec(l)
    if (m) {
      if (Number(m[2]) !== points.length + 1) return bad(n, `expected test point ${points.length + 1}, found ${m[2]}`)
      const d = splitDescription(m[3] ?? '')
      const skip = d.directive !== undefined ? /^skip\b\s*(.*)$/i.exec(d.directive) : null
      points.push({ ok: m[1] === undefined, name: d.name, ...(skip ? { skip: skip[1]! } : {}) })
      continue
    }
    if (l === '  ---') {
      const end = lines.indexOf('  ...', i + 1)
      if (end < 0) return bad(n, 'a YAML diagnostics block without its closing "  ..."')
      if (points.length === 0) return bad(n, 'YAML diagnostics before any test point')
      let diag: unknown
      try { diag = parseYaml(lines.slice(i + 1, end).map(x => x.slice(2)).join('\n')) } catch (e) {
        return bad(n, `YAML diagnostics do not parse: ${(e as Error).message.split('\n')[0]}`)
      }
      if (diag && typeof diag === 'object' && !Array.isArray(diag)) points[points.length - 1]!.diag = diag as Record<string, unknown>
      i = end
      continue
    }
    return bad(n, `not a line of the selftest's TAP: ${JSON.stringify(l.slice(0, 80))}`)
  }
  if (plan === undefined) return { ok: false, errors: ['selftest TAP: no plan ("1..N")'] }
  if (plan !== points.length) return { ok: false, errors: [`selftest TAP: the plan says ${plan} points, ${points.length} found (truncated?)`] }
  return { ok: true, value: points }
}
