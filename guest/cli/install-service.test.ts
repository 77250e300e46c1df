import t from 'tap'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { spawnSync } from 'node:child_process'
import { main } from './install-service.js'
import { REPORT_SERVICE, REPORT_CPU_SERVICE, UDEV_RULE } from '../service/units.js'

const tmp = fs.mkdtempSync(join(tmpdir(), 'virtmiti-install-'))
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }))

function run(argv: string[], selfPath?: string) {
  const out: string[] = [], err: string[] = []
  return main(argv, { out: s => { out.push(s) }, err: s => { err.push(s) }, ...(selfPath ? { selfPath } : {}) }).then(code => ({ code, out: out.join(''), err: err.join('') }))
}

t.test('install into an empty prefix creates the units, the rule, the enable link and the agent', async t => {
  const prefix = join(tmp, 'root1')
  const bundle = join(tmp, 'virtmiti-guest.cjs')
  fs.writeFileSync(bundle, '#!/usr/bin/env node\nconsole.log("agent")\n')
  const r = await run(['--prefix', prefix], bundle)
  t.equal(r.code, 0, r.err)
  t.equal(fs.readFileSync(join(prefix, 'etc/systemd/system/virtmiti-report.service'), 'utf8'), REPORT_SERVICE)
  t.equal(fs.readFileSync(join(prefix, 'etc/systemd/system/virtmiti-report@.service'), 'utf8'), REPORT_CPU_SERVICE)
  t.equal(fs.readFileSync(join(prefix, 'etc/udev/rules.d/90-virtmiti.rules'), 'utf8'), UDEV_RULE)
  t.equal(fs.readlinkSync(join(prefix, 'etc/systemd/system/multi-user.target.wants/virtmiti-report.service')), '/etc/systemd/system/virtmiti-report.service')
  const agent = join(prefix, 'usr/lib/virtmiti/virtmiti-guest.cjs')
  t.equal(fs.readFileSync(agent, 'utf8'), fs.readFileSync(bundle, 'utf8'))
  t.equal(fs.statSync(agent).mode & 0o777, 0o755)
  t.equal(r.out.match(/^created /gm)?.length, 5, r.out)
  // Second run: everything unchanged, nothing rewritten.
  const again = await run(['--prefix', prefix], bundle)
  t.equal(again.code, 0)
  t.equal(again.out.match(/^unchanged /gm)?.length, 5, again.out)
})

t.test('a differing file is kept without --force (exit 2) and replaced with it', async t => {
  const prefix = join(tmp, 'root2')
  t.equal((await run(['--prefix', prefix])).code, 0)
  const unit = join(prefix, 'etc/systemd/system/virtmiti-report.service')
  fs.writeFileSync(unit, '# local edit\n')
  const kept = await run(['--prefix', prefix])
  t.equal(kept.code, 2)
  t.match(kept.out, /refused +.*virtmiti-report\.service +\(exists with different content/)
  t.equal(fs.readFileSync(unit, 'utf8'), '# local edit\n')
  const forced = await run(['--prefix', prefix, '--force'])
  t.equal(forced.code, 0)
  t.match(forced.out, /replaced +.*virtmiti-report\.service/)
  t.equal(fs.readFileSync(unit, 'utf8'), REPORT_SERVICE)
  t.same(fs.readdirSync(join(prefix, 'etc/systemd/system')).filter(n => n.includes('.tmp-')), [])
})

t.test('not run from the guest bundle (sources, or the host CLI bundle): says how to install the agent', async t => {
  for (const self of ['/work/main/bin/virtmiti-guest.ts', '/work/main/dist/virtmiti.mjs']) {
    const r = await run(['--prefix', join(tmp, 'root3')], self)
    t.match(r.out, /note: not run from the bundle: copy dist\/virtmiti-guest\.cjs/)
    t.notOk(fs.existsSync(join(tmp, 'root3/usr/lib/virtmiti')))
  }
})

t.test('usage errors exit 2', async t => {
  t.equal((await run(['--prefix'])).code, 2)
  t.equal((await run(['--bogus'])).code, 2)
  t.equal((await run(['--prefix', ''])).code, 2)
})

t.test('unit files: the service runs the report to /run/virtmiti after the msr module loads', async t => {
  t.match(REPORT_SERVICE, /^Type=oneshot$/m)
  t.match(REPORT_SERVICE, /^After=systemd-modules-load\.service$/m)
  t.match(REPORT_SERVICE, /^ExecStartPre=-\/sbin\/modprobe msr$/m)
  t.match(REPORT_SERVICE, /^ExecStart=\/usr\/bin\/flock \/run\/virtmiti\/lock \/usr\/bin\/node \/usr\/lib\/virtmiti\/virtmiti-guest\.cjs report --out \/run\/virtmiti\/report\.json$/m)
  t.match(REPORT_SERVICE, /^WantedBy=multi-user\.target$/m)
  t.match(UDEV_RULE, /^ACTION=="online", SUBSYSTEM=="cpu", .*RUN\+="\/bin\/systemctl --no-block start virtmiti-report@%k\.service"$/m)
  t.match(UDEV_RULE, /^ACTION=="add", .*TEST=="\/run\/virtmiti\/report\.json"/m)
})

// systemd-analyze verify checks unit syntax; it needs the ExecStart binaries, so it is run on
// copies that point at /bin/true, keeping every other line.
t.test('systemd-analyze verify accepts the units (and flags a broken copy)', { skip: spawnSync('systemd-analyze', ['--version']).status === 0 ? false : 'systemd-analyze not installed' }, async t => {
  const dir = join(tmp, 'verify')
  fs.mkdirSync(dir)
  const plain = (s: string) => s.replace(/^ExecStart=.*$/m, 'ExecStart=/bin/true').replace(/^ConditionPathExists=.*$/m, '')
  fs.writeFileSync(join(dir, 'virtmiti-report.service'), plain(REPORT_SERVICE))
  fs.writeFileSync(join(dir, 'virtmiti-report@.service'), plain(REPORT_CPU_SERVICE))
  fs.writeFileSync(join(dir, 'broken.service'), plain(REPORT_SERVICE).replace('Type=oneshot', 'Type=oneshoot'))
  // systemd-analyze exits 0 on "ignoring" warnings: any line naming one of our files is a complaint.
  const complaints = (unit: string) => {
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', join(dir, unit)], { encoding: 'utf8' })
    return (r.stderr + r.stdout).split('\n').filter(l => l.includes(dir))
  }
  t.same(complaints('virtmiti-report.service'), [])
  // The template is verified through an instance name, resolved next to it.
  t.same(complaints('virtmiti-report@cpu1.service'), [])
  t.match(complaints('broken.service').join('\n'), /Failed to parse service type/, 'the check can fail')
})

t.test('udevadm verify accepts the rule', { skip: spawnSync('udevadm', ['verify', '--help']).status === 0 ? false : 'udevadm verify not available' }, async t => {
  const f = join(tmp, '90-virtmiti.rules')
  fs.writeFileSync(f, UDEV_RULE)
  const r = spawnSync('udevadm', ['verify', f], { encoding: 'utf8' })
  t.equal(r.status, 0, r.stdout + r.stderr)
})

// Issue 14 items 6 and 10: no symlink hole in the temporary names, no endless loop under /proc.
t.test('install-service --prefix /proc/x ends with an error (exit 3), no endless mkdir loop', async t => {
  const out: string[] = [], err: string[] = []
  const start = Date.now()
  t.equal(await main(['--prefix', '/proc/virtmiti-nonexistent'], { out: s => { out.push(s) }, err: s => { err.push(s) } }), 3)
  t.match(err.join(''), /cannot create directory \/proc\/virtmiti-nonexistent/)
  t.ok(Date.now() - start < 5000)
})

t.test('install-service: symlinks planted at the old pid-based temporary names and at a unit are never written through', async t => {
  const { mkdtempSync, mkdirSync, symlinkSync, writeFileSync, readFileSync, lstatSync, rmSync } = await import('node:fs')
  const { join } = await import('node:path')
  const { tmpdir } = await import('node:os')
  const prefix = mkdtempSync(join(tmpdir(), 'virtmiti-plant-'))
  t.teardown(() => rmSync(prefix, { recursive: true, force: true }))
  const victim = join(prefix, 'victim'); writeFileSync(victim, 'precious')
  const sysd = join(prefix, 'etc/systemd/system'); mkdirSync(sysd, { recursive: true })
  for (let pid = process.pid - 2; pid <= process.pid + 2; pid++) symlinkSync(victim, join(sysd, `virtmiti-report.service.tmp-${pid}`))
  symlinkSync(victim, join(sysd, 'virtmiti-report@.service'))
  const out: string[] = [], err: string[] = []
  t.equal(await main(['--prefix', prefix], { out: s => { out.push(s) }, err: s => { err.push(s) } }), 2, 'the planted unit is kept without --force')
  t.match(out.join(''), /refused .*virtmiti-report@\.service.*not a regular file/)
  t.equal(await main(['--prefix', prefix, '--force'], { out: () => {}, err: () => {} }), 0)
  t.equal(readFileSync(victim, 'utf8'), 'precious', 'nothing written through a symlink')
  t.ok(lstatSync(join(sysd, 'virtmiti-report@.service')).isFile(), 'the symlink was replaced by the unit')
})
