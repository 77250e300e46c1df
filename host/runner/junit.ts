// `scenarios run --junit FILE` (issue 13): JUnit XML, the form CI dashboards read. One testsuite
// per tier, one testcase per run; a failed run carries its failing points, a skipped one its reason.
import type { TapPoint } from '../../bin/lib/tap.js'

/** XML 1.0 text: escape the five specials and drop characters XML cannot carry (C0 controls but tab/LF/CR, lone surrogates, U+FFFE/U+FFFF). */
export function xmlText(s: string): string {
  return s.replace(/[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '\uFFFD')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;')
}

export interface JunitCase { suite: string; name: string; classname: string; ms: number; point: TapPoint }

const failing = (p: TapPoint, prefix = ''): string[] => (p.sub ?? []).flatMap(s => [
  ...(!s.ok && s.skip === undefined && !s.sub ? [`${prefix}${s.name}${s.diag ? `: ${JSON.stringify(s.diag, (_k, v) => (typeof v === 'bigint' ? '0x' + v.toString(16) : v))}` : ''}`] : []),
  ...failing(s, `${prefix}${s.name} > `),
])

export function junitXml(cases: readonly JunitCase[], wallMs: number): string {
  const suites = new Map<string, JunitCase[]>()
  for (const c of cases) suites.set(c.suite, [...(suites.get(c.suite) ?? []), c])
  const out = ['<?xml version="1.0" encoding="UTF-8"?>']
  const fails = cases.filter(c => !c.point.ok && c.point.skip === undefined).length
  const skips = cases.filter(c => c.point.skip !== undefined).length
  out.push(`<testsuites name="virtmiti scenarios" tests="${cases.length}" failures="${fails}" errors="0" skipped="${skips}" time="${(wallMs / 1000).toFixed(3)}">`)
  for (const [suite, cs] of suites) {
    const f = cs.filter(c => !c.point.ok && c.point.skip === undefined).length
    const sk = cs.filter(c => c.point.skip !== undefined).length
    const t = cs.reduce((a, c) => a + c.ms, 0)
    out.push(`  <testsuite name="${xmlText(suite)}" tests="${cs.length}" failures="${f}" errors="0" skipped="${sk}" time="${(t / 1000).toFixed(3)}">`)
    for (const c of cs) {
      const head = `    <testcase name="${xmlText(c.name)}" classname="${xmlText(c.classname)}" time="${(c.ms / 1000).toFixed(3)}"`
      if (c.point.skip !== undefined) out.push(`${head}>`, `      <skipped message="${xmlText(c.point.skip)}"/>`, '    </testcase>')
      else if (!c.point.ok) {
        const lines = failing(c.point)
        const body = lines.length ? lines : [c.point.diag ? JSON.stringify(c.point.diag, (_k, v) => (typeof v === 'bigint' ? '0x' + v.toString(16) : v)) : 'failed']
        out.push(`${head}>`, `      <failure message="${xmlText(body[0]!.slice(0, 500))}" type="virtmiti.scenario">${xmlText(body.join('\n'))}</failure>`, '    </testcase>')
      } else out.push(`${head}/>`)
    }
    out.push('  </testsuite>')
  }
  out.push('</testsuites>')
  return out.join('\n') + '\n'
}
