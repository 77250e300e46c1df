import t from 'tap'
import * as fs from 'node:fs'
import { join, dirname } from 'node:path'
import { tmpdir } from 'node:os'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { buildGuestBundle, type GuestBundleResult } from './build.mjs'
import { buildTree } from '../../bench/fake-tree.mjs'

const HERE = dirname(fileURLToPath(import.meta.url))
// Outside the repository, so `node` cannot find node_modules by walking up.
const tmp = fs.mkdtempSync(join(tmpdir(), 'virtmiti-bundle-'))
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }))

type Built = GuestBundleResult

const outfile = join(tmp, 'virtmiti-guest.cjs')
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
  t.equal(fs.readFileSync(join(prefix, 'usr/lib/virtmiti/virtmiti-guest.cjs'), 'utf8'), fs.readFileSync(outfile, 'utf8'))
  t.ok(fs.existsSync(join(prefix, 'etc/udev/rules.d/90-virtmiti.rules')))
})

// Issue 15 item 4: zod is in the bundle as a string, evaluated only where validation needs it.
// Observed from outside: a preload counts the `new Function(module, exports, require, ...)` calls.
t.test('bundle: zod is embedded lazily: a probe never evaluates it, --replay does', async t => {
  t.same(built.lazy, ['zod'])
  t.ok(built.packages.includes('zod'), 'still listed as bundled')
  const preload = join(tmp, 'count-lazy.cjs')
  fs.writeFileSync(preload, `const F = globalThis.Function; let n = 0
globalThis.Function = new Proxy(F, { construct(target, args) { if (args[0] === 'module' && args[2] === 'require') n++; return Reflect.construct(target, args) } })
process.on('exit', () => { require('fs').writeSync(2, '\\nlazy-evaluated ' + n + '\\n') })\n`)
  const count = (args: string[]) => {
    const r = spawnSync(process.execPath, ['-r', preload, outfile, ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } })
    return { n: Number(/lazy-evaluated (\d+)/.exec(r.stderr)?.[1] ?? NaN), status: r.status, stderr: r.stderr }
  }
  const tree = buildTree(join(tmp, 'lazy-tree'), 2)
  const p = count(['probe', '--json', '--dev-root', tree])
  t.same([p.n, p.status], [0, 0], `probe: zod not evaluated (${p.stderr.trim()})`)
  const fixture = join(HERE, '../fixtures/cascade-lake-guest-enum.json')
  const r = count(['probe', '--replay', fixture, '--format', 'short'])
  t.equal(r.n, 1, '--replay validates the facts file with zod: evaluated once')
  t.equal(r.status, 1, r.stderr)
})

// Issue 15 item 4: `batch` gives each command the stdout, stderr and exit code of its own run.
t.test('bundle: batch frames hold exactly what separate runs print and exit with', async t => {
  const norm = (s: string, tree: string) => s.split(tree).join('TREE').replace(/"timestamp": "[^"]+"/g, '"timestamp": "T"')
  const cmds = (tree: string, journal: string) => [['probe', '--json', '--dev-root', tree], ['report', '--json', '--dev-root', tree], ['selftest', '--tap', '--dev-root', tree, '--journal-dir', journal]]
  // Two identical trees: report writes MITI_CTRL into its tree, so each way gets a fresh one.
  const sepTree = buildTree(join(tmp, 'sep-tree'), 2), batchTree = buildTree(join(tmp, 'bat-tree'), 2)
  const separate = cmds(sepTree, join(tmp, 'sep-j')).map(a => { const r = run(a); return { exit: r.status, out: norm(r.stdout, sepTree), err: norm(r.stderr, sepTree) } })
  const b = run(['batch', ...cmds(batchTree, join(tmp, 'bat-j')).flatMap((a, i) => (i ? ['::', ...a] : a))])
  t.equal(b.status, 0, b.stderr)
  const { parseFrames } = await import('../../host/qemu/frames.js')
  const f = parseFrames(`@@virtmiti-hello 1 0\n${b.stdout}@@virtmiti-done ${(b.stdout.match(/^@@virtmiti-end /gm) ?? []).length} 0\n`)
  t.same(f.errors, [])
  const framed = ['probe', 'report', 'selftest'].map(n => { const s = f.sections.get(n); return s && { exit: s.exit, out: norm(s.output, batchTree), err: norm(s.stderr, batchTree) } })
  t.same(framed, separate)
  t.ok(separate.some(s => s.exit !== 0), `exit codes differ from 0 somewhere, so they are compared for real: ${separate.map(s => s.exit).join(', ')}`)
})

// Issue 15 item 4: node:tty (with net and stream behind it) is loaded on first use, not at every
// start; tty.isatty still answers for stdout (false for a file). (node:child_process is lazy too,
// but under the test runner something else of the child's loads it: not asserted here.)
t.test('bundle: a probe writing into files does not load node:tty', async t => {
  const preload = join(tmp, 'modules.cjs')
  fs.writeFileSync(preload, `process.on('exit', () => { require('fs').writeSync(2, '\\nloaded ' + process.moduleLoadList.filter(m => m.startsWith('NativeModule ')).map(m => m.slice(13)).join(',') + '\\n') })\n`)
  const tree = buildTree(join(tmp, 'modules-tree'), 1)
  // stdout and stderr to files, as in the guest's /init (a pipe is a net.Socket, which loads both).
  const outPath = join(tmp, 'modules-out.txt')
  const outFd = fs.openSync(outPath, 'w'), errFd = fs.openSync(`${outPath}.err`, 'w')
  const env = { ...process.env }
  // No colour forcing, nor the test runner's IPC channel and NODE_OPTIONS hooks (they load child_process).
  for (const k of ['NO_COLOR', 'FORCE_COLOR', 'NODE_CHANNEL_FD', 'NODE_CHANNEL_SERIALIZATION_MODE', 'NODE_OPTIONS']) delete env[k]
  const r = spawnSync(process.execPath, ['-r', preload, outfile, 'probe', '--dev-root', tree], { cwd: tmp, env, stdio: ['ignore', outFd, errFd] })
  fs.closeSync(outFd); fs.closeSync(errFd)
  const stderr = fs.readFileSync(`${outPath}.err`, 'utf8')
  const loaded = (/loaded (.*)/.exec(stderr)?.[1] ?? '').split(',')
  t.equal(r.status, 0, stderr)
  const stdout = fs.readFileSync(outPath, 'utf8')
  t.match(stdout, /PROTECTED/, 'the probe printed its verdict')
  t.ok(loaded.length > 10, `the preload saw the module list (${loaded.length})`)
  t.notOk(loaded.includes('tty'), 'node:tty not loaded')
  t.notMatch(stdout, /\u001b\[/, 'no colour into a file: isatty answered false without node:tty')
  // Where the code does need it, it is there: the selftest supervisor spawns its runner child.
  const s = run(['selftest', '--tap', '--dev-root', tree, '--journal-dir', join(tmp, 'modules-j')])
  t.match(s.stdout, /^TAP version 14/m, s.stderr)
})
