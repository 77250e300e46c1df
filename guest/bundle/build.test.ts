import t from 'tap'
import * as fs from 'node:fs'
import { join, dirname } from 'node:path'
import { tmpdir } from 'node:os'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { buildGuestBundle, type GuestBundleResult } from './build.mjs'

const HERE = dirname(fileURLToPath(import.meta.url))
// Outside the repository, so `node` cannot find node_modules by walking up.
const tmp = fs.mkdtempSync(join(tmpdir(), 'virtmiti-bundle-'))
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }))

type Built = GuestBundleResult

const outfile = join(tmp, 'virtmiti-guest.mjs')
let built: Built

t.before(async () => { built = await buildGuestBundle({ entry: join(HERE, '../../bin/virtmiti-guest.ts'), outfile }) })

const run = (args: string[], cwd = tmp) => spawnSync(process.execPath, [outfile, ...args], { cwd, encoding: 'utf8', env: { ...process.env, NODE_PATH: '', NO_COLOR: '1' } })

t.test('bundle: one executable ESM file with a node shebang, only pure-JS packages inside', async t => {
  const text = fs.readFileSync(outfile, 'utf8')
  t.equal(text.split('\n')[0], '#!/usr/bin/env node')
  t.equal(fs.statSync(outfile).mode & 0o111, 0o111, 'executable')
  t.notOk(built.packages.includes('koffi'), 'koffi not bundled')
  t.same(built.packages.filter((p: string) => !['zod', 'chalk', 'yaml'].includes(p)), [], `bundled packages: ${built.packages.join(', ')}`)
  t.notMatch(text, /from ["'](?!node:)[a-z@][^"']*["']/, 'no import of anything but node: built-ins')
})

t.test('bundle: the build refuses an entry that reaches koffi', async t => {
  const bad = join(HERE, `zz-bad-entry-${process.pid}.ts`)
  fs.writeFileSync(bad, "import koffi from 'koffi'\nconsole.log(koffi)\n")
  t.teardown(() => fs.rmSync(bad, { force: true }))
  await t.rejects(buildGuestBundle({ entry: bad, outfile: join(tmp, 'bad.mjs') }), /must not contain koffi: koffi imported by guest\/bundle\/zz-bad-entry/)
})

t.test('bundle runs with plain node outside the repository (no node_modules)', async t => {
  const h = run(['--help'])
  t.equal(h.status, 0, h.stderr)
  t.match(h.stdout, /virtmiti-guest report/)
  t.match(h.stdout, /virtmiti-guest selftest/)
  t.match(h.stdout, /virtmiti-guest install-service/)
  const rh = run(['report', '--help'])
  t.equal(rh.status, 0, rh.stderr)
  t.match(rh.stdout, /--out FILE/)
  t.equal(run(['report', '--bogus']).status, 2)
})

// What `report` must say here depends on this machine (machines of this kind differ): measure
// CPUID.(7,0):EDX[29] ARCH_CAPABILITIES through the cpuid driver first (16-byte reads, offset =
// leaf), then expect. With it and no msr driver: could not tell (exit 3, the reason named); without
// it there is no MSR to read: nothing enumerated, nothing written, exit 0 (contract/CONTRACT.md section 3 step 1).
function hostArchCapabilities(): boolean | undefined {
  let fd: number | undefined
  try {
    fd = fs.openSync('/dev/cpu/0/cpuid', 'r')
    const b = Buffer.alloc(16)
    if (fs.readSync(fd, b, 0, 16, 7) !== 16) return undefined
    return ((b.readUInt32LE(12) >>> 29) & 1) === 1
  } catch { return undefined } finally { if (fd !== undefined) fs.closeSync(fd) }
}
const archCap = hostArchCapabilities()
const noMsrSkip = fs.existsSync('/dev/cpu/0/msr') ? 'this machine has /dev/cpu/0/msr' : archCap === undefined ? 'no /dev/cpu/0/cpuid here to measure CPUID.(7,0):EDX[29]' : false

t.test(`bundle: \`report\` here (measured: CPUID.(7,0):EDX[29] ${archCap ? 'set' : 'clear'}, no msr driver) ${archCap ? 'exits 3 and says the msr driver is missing' : 'exits 0: not enumerated, nothing written'}`, { skip: noMsrSkip }, async t => {
  const r = run(['report', '--json'])
  const j = JSON.parse(r.stdout)
  t.equal(j.schema, 'virtmiti/guest-report/v1')
  const human = run(['report'])
  if (archCap) {
    t.equal(r.status, 3, r.stderr)
    t.ok(j.cpus.every((c: { outcome: string; fault?: { errno: string } }) => c.outcome === 'fault' && c.fault && ['ENOENT', 'EACCES', 'EPERM'].includes(c.fault.errno)), JSON.stringify(j.cpus))
    t.equal(human.status, 3)
    t.match(human.stdout, /msr: device missing: the driver is not loaded/)
    t.match(human.stdout, /result: could not tell/)
  } else {
    t.equal(r.status, 0, r.stderr)
    t.equal(j.enumerated, false)
    t.ok(j.cpus.every((c: { outcome: string; written?: string }) => c.outcome === 'not-enumerated' && c.written === undefined), JSON.stringify(j.cpus))
    t.equal(human.status, 0)
    t.match(human.stdout, /CPUID\.\(7,0\):EDX\[29\] is clear: no IA32_ARCH_CAPABILITIES/)
  }
})

t.test('bundle: install-service copies the bundle itself under the prefix', async t => {
  const prefix = join(tmp, 'root')
  const r = run(['install-service', '--prefix', prefix])
  t.equal(r.status, 0, r.stderr + r.stdout)
  t.equal(fs.readFileSync(join(prefix, 'usr/lib/virtmiti/virtmiti-guest.mjs'), 'utf8'), fs.readFileSync(outfile, 'utf8'))
  t.ok(fs.existsSync(join(prefix, 'etc/udev/rules.d/90-virtmiti.rules')))
})
