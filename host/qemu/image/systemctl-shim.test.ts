// The systemctl shim of the udev image: unit parsing (systemd.syntax(7)), specifiers
// (systemd.unit(5)), Exec lines (systemd.service(5)) on the real installed template, and real
// starts (blocking and --no-block) under a temporary root.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { expandSpecifiers, findUnitFile, JOURNAL_DIR, main, nameSpecifiers, parseExecLine, parseUnitFile, planStart, unescapeUnitName, unitNameParts } from './systemctl-shim.mjs'
import { AGENT_PATH, REPORT_CPU_SERVICE, SERVICE_FILES, UDEV_RULE } from '../../../guest/service/units.js'

t.test('the installed virtmiti-report@.service: what starting it for cpu2 runs, read from the unit itself', async t => {
  const plan = planStart(REPORT_CPU_SERVICE, 'virtmiti-report@cpu2.service')
  t.same(plan.errors, [])
  t.same(plan.ignored, [], 'every directive of the installed unit is one the shim implements (a new one must be added to the shim or listed here)')
  // Expected from the unit text, line by line (not a copy of the command).
  const lines = REPORT_CPU_SERVICE.split('\n').filter(l => /^ExecStart(Pre)?=/.test(l))
  t.same(plan.steps.map(s => s.directive), lines.map(l => l.slice(0, l.indexOf('='))))
  t.same(plan.steps.map(s => [s.ignoreFailure, s.argv.join(' ')]), lines.map(l => { const v = l.slice(l.indexOf('=') + 1); return [v.startsWith('-'), v.replace(/^-/, '')] }))
  t.ok(plan.steps.some(s => s.argv.includes(AGENT_PATH)), 'the agent is what ExecStart runs')
  t.same(plan.runtimeDirectories, ['virtmiti'])
  t.same(plan.conditions, [{ path: AGENT_PATH, negate: false }])
  // The rule starts exactly this unit name through /bin/systemctl, which is where the image puts the shim.
  t.match(UDEV_RULE, /RUN\+="\/bin\/systemctl --no-block start virtmiti-report@%k\.service"/)
  t.ok(SERVICE_FILES.some(f => f.path.endsWith('/virtmiti-report@.service') && f.content === REPORT_CPU_SERVICE))
})

t.test('unit file syntax: sections, comments, continuation lines, errors with line numbers', async t => {
  const text = '# c\n; c\n[Unit]\nDescription = a  \\\n  b\n[Service]\nExecStart=/bin/echo one \\\n# inside\n two\nbroken line\n'
  const r = parseUnitFile(text)
  t.same(r.entries.map(e => [e.section, e.key, e.value, e.line]), [['Unit', 'Description', 'a   b', 4], ['Service', 'ExecStart', '/bin/echo one  two', 7]])
  t.same(r.errors, ['line 10: not "Key=Value": broken line'])
  t.same(parseUnitFile('A=1\n').errors, ['line 1: assignment before any [Section]'])
})

t.test('specifiers: instance, unescaped instance, names; an unknown one fails', async t => {
  t.same(unitNameParts('virtmiti-report@cpu2.service'), { name: 'virtmiti-report@cpu2.service', prefix: 'virtmiti-report', instance: 'cpu2', type: 'service', template: 'virtmiti-report@.service' })
  t.equal(unitNameParts('plain.service')?.template, undefined)
  t.equal(unitNameParts('x.socket'), undefined)
  t.equal(unescapeUnitName('dev-disk\\x2dby\\x2did'), 'dev/disk-by-id')
  const s = nameSpecifiers('a-b@c-d\\x2de.service')
  t.same([s.n, s.N, s.p, s.P, s.i, s.I], ['a-b@c-d\\x2de.service', 'a-b@c-d\\x2de', 'a-b', 'a/b', 'c-d\\x2de', 'c/d-e'])
  t.equal(expandSpecifiers('%i:%I:%n:100%%', s), 'c-d\\x2de:c/d-e:a-b@c-d\\x2de.service:100%')
  t.throws(() => expandSpecifiers('%t/x', s), /specifier %t is not implemented/)
  t.match(planStart('[Service]\nType=oneshot\nExecStart=/bin/echo %H\n', 'x.service').errors, [/line 3: specifier %H is not implemented/])
})

t.test('Exec lines: "-" ignores failure; other prefixes, quoting and $VAR are refused, never guessed', async t => {
  t.same(parseExecLine('-/sbin/modprobe msr'), { ignoreFailure: true, argv: ['/sbin/modprobe', 'msr'] })
  t.same(parseExecLine('/bin/a  b\tc'), { ignoreFailure: false, argv: ['/bin/a', 'b', 'c'] })
  t.throws(() => parseExecLine('@/bin/a argv0'), /prefix "@" is not implemented/)
  t.throws(() => parseExecLine('+/bin/a'), /prefix/)
  t.throws(() => parseExecLine('/bin/sh -c "echo hi"'), /quoting/)
  t.throws(() => parseExecLine('/bin/echo $HOME'), /\$VAR/)
  t.throws(() => parseExecLine('echo hi'), /absolute path/)
  const reset = planStart('[Service]\nType=oneshot\nExecStart=/bin/a\nExecStart=\nExecStart=/bin/b\n', 'x.service')
  t.same(reset.steps.map(s => s.argv[0]), ['/bin/b'], 'an empty assignment resets the list')
  t.match(planStart('[Service]\nExecStart=/bin/a\n', 'x.service').errors, [/Type=simple: this shim runs oneshot services only/])
  t.match(planStart('[Service]\nType=oneshot\n', 'x.service').errors, ['no ExecStart'])
  t.match(planStart('[Service]\nType=oneshot\nExecStart=/bin/a\nRuntimeDirectory=../etc\n', 'x.service').errors, [/must be relative to \/run/])
  t.same(planStart('[Unit]\nWants=b.service\n[Service]\nType=oneshot\nExecStart=/bin/a\nUser=nobody\n', 'x.service').ignored, ['Unit.Wants (line 2)', 'Service.User (line 6)'])
})

function root(t: { teardown: (f: () => void) => void }, units: Record<string, string>): string {
  const r = fs.mkdtempSync(path.join(os.tmpdir(), 'vm-shim-t-'))
  t.teardown(() => fs.rmSync(r, { recursive: true, force: true }))
  for (const [p, text] of Object.entries(units)) { fs.mkdirSync(path.dirname(path.join(r, p)), { recursive: true }); fs.writeFileSync(path.join(r, p), text) }
  return r
}
const journal = (r: string) => fs.readdirSync(path.join(r, JOURNAL_DIR)).sort().map(f => [f.replace(/^.*\./, ''), fs.readFileSync(path.join(r, JOURNAL_DIR, f), 'utf8')] as const)

t.test('unit lookup: the instance file, else its template; /etc before /usr/lib', async t => {
  const r = root(t, { 'usr/lib/systemd/system/a@.service': 'x', 'etc/systemd/system/a@.service': 'y', 'usr/lib/systemd/system/a@one.service': 'z' })
  t.equal(findUnitFile(r, 'a@one.service'), path.join(r, 'usr/lib/systemd/system/a@one.service'))
  t.equal(findUnitFile(r, 'a@two.service'), path.join(r, 'etc/systemd/system/a@.service'))
  t.equal(findUnitFile(r, 'b.service'), undefined)
})

t.test('a real start: pre command failure ignored, runtime directory made, ExecStart run with %i, journal written', async t => {
  const r = root(t, {})
  const unit = `[Unit]\nConditionPathExists=/etc/systemd/system\n[Service]\nType=oneshot\nExecStartPre=-/bin/false\nExecStart=/usr/bin/touch ${r}/out-%i\nRuntimeDirectory=demo\n`
  fs.mkdirSync(path.join(r, 'etc/systemd/system'), { recursive: true })
  fs.writeFileSync(path.join(r, 'etc/systemd/system/demo@.service'), unit)
  t.equal(main(['--root', r, 'start', 'demo@cpu7.service']), 0)
  t.ok(fs.existsSync(path.join(r, 'out-cpu7')), 'ExecStart ran with %i = cpu7')
  t.ok(fs.statSync(path.join(r, 'run/demo')).isDirectory())
  const j = journal(r)
  t.same(j.map(([ext]) => ext), ['log', 'result'])
  t.equal(j[1]![1], '0 demo@cpu7.service\n')
  t.match(j[0]![1], /ExecStartPre=-\/bin\/false -> exit 1 \(ignored\)\n/)
  t.match(j[0]![1], /demo@cpu7.service: result success\n$/)
})

t.test('--no-block returns at once; the start finishes detached and leaves its result', async t => {
  const r = root(t, {})
  fs.mkdirSync(path.join(r, 'etc/systemd/system'), { recursive: true })
  fs.writeFileSync(path.join(r, 'etc/systemd/system/slow@.service'), `[Service]\nType=oneshot\nExecStart=/bin/sleep 0.5\nExecStart=/usr/bin/touch ${r}/done-%i\n`)
  const t0 = performance.now()
  t.equal(main(['--no-block', '--root', r, 'start', 'slow@x.service']), 0)
  t.ok(performance.now() - t0 < 400, 'did not wait for the 0.5 s command')
  t.notOk(fs.existsSync(path.join(r, 'done-x')))
  const dl = Date.now() + 20_000
  while (Date.now() < dl && !journal(r).some(([e]) => e === 'result')) await new Promise(res => setTimeout(res, 100))
  t.equal(journal(r).find(([e]) => e === 'result')?.[1], '0 slow@x.service\n')
  t.ok(fs.existsSync(path.join(r, 'done-x')))
})

t.test('failures: a failing ExecStart stops the start with its status; an unmet condition skips it; bad usage', async t => {
  const r = root(t, {})
  fs.mkdirSync(path.join(r, 'etc/systemd/system'), { recursive: true })
  fs.writeFileSync(path.join(r, 'etc/systemd/system/f.service'), `[Service]\nType=oneshot\nExecStart=/bin/sh -c exit\nExecStart=/bin/false\nExecStartPost=/usr/bin/touch ${r}/post\n`)
  fs.writeFileSync(path.join(r, 'etc/systemd/system/c.service'), `[Unit]\nConditionPathExists=/nonexistent\n[Service]\nType=oneshot\nExecStart=/usr/bin/touch ${r}/c\n`)
  t.equal(main(['--root', r, 'start', 'f.service']), 1)
  t.notOk(fs.existsSync(path.join(r, 'post')), 'nothing after the failing command')
  t.match(journal(r).find(([e]) => e === 'result')?.[1], /^1 f.service\n$/)
  t.equal(main(['--root', r, 'start', 'c.service']), 0)
  t.notOk(fs.existsSync(path.join(r, 'c')))
  t.equal(main(['--root', r, 'start', 'missing.service']), 1)
  t.ok(journal(r).some(([, text]) => /unit missing.service not found/.test(text)))
  t.equal(main(['--root', r, 'stop', 'f.service']), 1)
  t.equal(main(['--root', r, 'start', 'not-a-unit']), 1)
})
