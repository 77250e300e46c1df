// The qemu tier without booting: the built-in matrix (sizes of the full and CI sets), matrix
// file errors, and runQemuTier over recorded boots with the image build and boot injected.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { tapDocument } from '../../bin/lib/tap.js'
import type { BootOptions, BootResult } from './boot.js'
import { parseFrames } from './frames.js'
import type { ImageBuild } from './image.js'
import { loadRecordedBoot, sectionMap } from './recorded-boot.js'
import { QEMU_FAULTS } from './checks-patched.js'
import { bootName, deathOutcome, patchedBootName, builtinQemuDir, defaultSet, loadQemuMatrix, parseQemuMatrix, qemuTable, qemuTierUnavailable, runQemuTier, selectSet, tierPaths, type QemuBoot, type TierDeps } from './tier.js'
import type { KernelSpec, Resolution } from './kernels.js'

// Issue 15 "Done when": 3 kernels x 5+ models x these command lines (retbleed=off: patched.yaml).
const DONE_WHEN = ['', 'spectre_bhi=off', 'spectre_bhi=vmexit', 'spectre_v2=retpoline', 'mitigations=off spectre_v2=retpoline',
  'mitigations=off spectre_bhi=on', 'mitigations=auto,no_user_kernel', 'mitigations=auto,no_user_kernel,no_guest_host']

t.test('built-in matrix: full = 3 kernels x 5+ models x the Done-when command lines; a small CI set over every kernel', async t => {
  const all = loadQemuMatrix([builtinQemuDir()!])
  t.same(all.errors, [])
  const m = { boots: all.boots.filter(b => b.vmm === 'stock') }
  const kernels = new Set(m.boots.map(b => b.kernel.id)), models = new Set(m.boots.map(b => b.cpu)), lines = new Set(m.boots.map(b => b.append.join(' ')))
  t.ok(kernels.size >= 3 && models.size >= 5, `full: ${kernels.size} kernels x ${models.size} models x ${lines.size} command lines`)
  t.same(DONE_WHEN.filter(l => !lines.has(l)), [], 'every Done-when command line is in the full set')
  t.equal(m.boots.length, kernels.size * models.size * lines.size, 'the full set is the cross product')
  const ci = selectSet(m.boots, 'ci')
  t.same([...new Set(ci.map(b => b.kernel.id))], [...kernels], 'the CI set boots every kernel')
  t.ok(ci.length <= 12, `${ci.length} stock CI boots`)
  t.ok(ci.some(b => b.death !== undefined) && ci.some(b => b.death === undefined && b.kernel.id.startsWith('7')), 'CI: a known 7.x death and a 7.x boot that reaches /init')
  t.equal(new Set(m.boots.map(b => b.name)).size, m.boots.length)
  t.ok(m.boots.every(b => b.vcpus === 2), '2 vCPUs')
  t.equal(bootName('6.1', 'EPYC', ['spectre_bhi=on']), 'qemu: linux-6.1 EPYC spectre_bhi=on')
  const dies = m.boots.filter(b => b.death)
  t.ok(dies.length > 0 && dies.every(b => b.kernel.id.startsWith('7') && b.append.includes('spectre_v2=retpoline,lfence')), 'deaths: 7.x with LFENCE retpolines only')
})

t.test('patched matrix: the CI set covers what issue 11 "Done when" lists', async t => {
  const m = loadQemuMatrix([builtinQemuDir()!])
  const ci = selectSet(m.boots, 'ci').filter(b => b.vmm === 'patched').map(b => b.patched!)
  t.ok(ci.length > 0 && ci.length <= 12, `${ci.length} patched CI boots (each 20-60 s under TCG)`)
  t.same([...new Set(ci.map(b => b.expect?.bhi).filter(Boolean))].sort(), ['bhi-dis-s', 'retpoline', 'sw-loop', 'vulnerable'], 'the four BHI choices, by the kernel')
  const ctrl = new Set(ci.map(b => b.expect?.mitiCtrl))
  t.ok(ctrl.has(1n) && ctrl.has(2n) && ctrl.has(0n), 'CTRL 0x1, 0x2, and left at 0')
  t.ok(ci.some(b => b.expect?.forcedMask === 0n && !b.fault) && ci.some(b => (b.expect?.forcedMask ?? 0n) !== 0n || (b.expect?.destForcedMask ?? 0n) !== 0n), 'a host that forces nothing, one that forces bits')
  t.same(ci.map(b => b.fault ?? b.vmmProps?.fault).filter(Boolean).sort(), [...QEMU_FAULTS].sort(), 'every fault property, once (directly or through a vmm: definition)')
  t.ok(ci.some(b => b.vmm !== undefined), 'a boot naming a VMM definition (host/qemu/vmm-props.ts)')
  t.ok(ci.some(b => b.migrateTo), 'one migration')
  t.ok(ci.some(b => b.hotplug === 1 && b.expect?.mitiCtrl !== undefined && b.expect.mitiCtrl !== 0n), 'one vCPU hot-plug, with a CTRL other than the reset value (so its write is seen)')
  t.equal(patchedBootName(ci.find(b => b.migrateTo)!, '6.1'), 'qemu-patched: linux-6.1 Cascadelake-Server-v2 on cascade-lake (default) -> sapphire-rapids')
  const kernels = new Set(selectSet(m.boots, 'ci').filter(b => b.vmm === 'patched').map(b => b.kernel.id))
  t.ok(kernels.size >= 3, `patched CI boots on ${[...kernels].join(', ')}`)
})

t.test('patched matrix file errors: unknown fault, bad property, both shapes at once', async t => {
  const head = 'description: d\nsource: s\nvmm: patched\nkernels: [{ id: k, file: /k/boot/vmlinuz-1 }]\n'
  t.match(parseQemuMatrix(head + 'boots:\n  - { cpu: EPYC, host: zen3-milan, append: "", fault: crashes }\n', 'p.yaml').errors.join('\n'), /^p\.yaml:6:\d+: boots\.0\.fault: /m)
  t.match(parseQemuMatrix(head + 'boots:\n  - { cpu: EPYC, host: zen3-milan, append: "", kernel: "9.9" }\n', 'p.yaml').errors.join('\n'), /boots\.0\.kernel: kernel 9\.9 is not in this file's kernels \(k\)/)
  t.match(parseQemuMatrix(head + 'boots:\n  - { cpu: EPYC, host: zen3-milan, append: "", props: ["a,b=on"] }\n', 'p.yaml').errors.join('\n'), /boots\.0\.props\.0: expected a QEMU -cpu property/)
  t.match(parseQemuMatrix(head + 'models: [{ cpu: EPYC }]\ncmdlines: [{ append: "" }]\n', 'p.yaml').errors.join('\n'), /vmm: stock takes models x cmdlines; vmm: patched takes a boots list/)
})

t.test('patched boots SKIP with the reason when the patched QEMU is not built', async t => {
  const m = loadQemuMatrix([builtinQemuDir()!])
  const b = m.boots.find(x => x.vmm === 'patched')!
  const r = await runQemuTier({
    boots: [b], paths: tierPaths()!,
    deps: { resolveKernel, build: () => image, boot: async () => { throw new Error('must not boot') }, findPatched: () => ({ unavailable: 'patched QEMU not built for these patches: run bash host/qemu/build-patched.sh' }) },
  })
  t.same(r.points.map(p => [p.ok, p.skip]), [[true, 'patched QEMU not built for these patches: run bash host/qemu/build-patched.sh']])
  t.equal(r.rows[0]!.status, 'skip')
})

t.test('matrix file errors name file:line:column and the field', async t => {
  const r = parseQemuMatrix('description: d\nsource: s\nkernels: [{ id: "6.1", suite: bookworm, package: linux-image-amd64 }]\nmodels:\n  - { cpu: "Sky lake" }\ncmdlines:\n  - { append: "spectre_bhi=on;reboot" }\n', 'm.yaml')
  t.same(r.boots, [])
  t.match(r.errors.join('\n'), /^m\.yaml:5:\d+: models\.0\.cpu: expected a QEMU -cpu model name/m)
  t.match(r.errors.join('\n'), /^m\.yaml:7:\d+: cmdlines\.0\.append: expected space-separated kernel parameters/m)
  t.match(parseQemuMatrix('description: d\nsource: s\nmodels: [{ cpu: EPYC }]\ncmdlines: [{ append: "" }]\n', 'n.yaml').errors.join('\n'), /kernels: /, 'kernels are required: never /boot implicitly')
  t.match(parseQemuMatrix('description: d\nsource: s\nkernels: [{ id: "6.1", suite: bookworm, package: linux-image-amd64 }, { id: "6.1", file: /x/boot/vmlinuz-6 }]\nmodels: [{ cpu: EPYC }]\ncmdlines: [{ append: "", ci: ["7.2"] }]\ndeaths: [{ kernel: "7.3", append: "x", line: "WARNING: y:1 at z" }]\n', 'n.yaml').errors.join('\n'),
    /kernel id 6\.1 appears twice[^]*deaths\.0\.kernel: kernel 7\.3 is not[^]*cmdlines\.0\.ci\.0: kernel 7\.2 is not/)
  t.match(parseQemuMatrix('models: [unclosed\n', 'x.yaml').errors[0], /^x\.yaml:\d+:\d+: YAML: /)
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-qm-'))
  const ok = 'description: d\nsource: s\nkernels: [{ id: "6.1", suite: bookworm, package: linux-image-amd64 }]\nmodels: [{ cpu: EPYC }]\ncmdlines: [{ append: "" }]\n'
  fs.writeFileSync(path.join(d, 'a.yaml'), ok)
  fs.writeFileSync(path.join(d, 'b.yaml'), ok)
  const dup = loadQemuMatrix([d])
  t.same(dup.boots.map(b => b.name), ['qemu: linux-6.1 EPYC (default)'])
  t.match(dup.errors[0], /b\.yaml: boot "qemu: linux-6\.1 EPYC \(default\)" is also in .*a\.yaml/)
  fs.writeFileSync(path.join(d, 'b.yaml'), ok.replace('package: linux-image-amd64', 'package: linux-image-6.1.0-9-amd64').replace('EPYC', 'Haswell'))
  t.match(loadQemuMatrix([d]).errors[0], /b\.yaml: kernel 6\.1 is .*linux-image-6\.1\.0-9-amd64.* here but .*linux-image-amd64.* in .*a\.yaml/)
})

t.test('set selection: CI=true picks the CI set', async t => {
  t.equal(defaultSet({ CI: 'true' }), 'ci')
  t.equal(defaultSet({}), 'full')
})

t.test('unavailable pieces are named', async t => {
  t.equal(qemuTierUnavailable(tierPaths(), 'no-such-qemu-xyz'), 'no-such-qemu-xyz not found (apt-get install qemu-system-x86)')
  const p = tierPaths()!
  t.match(p.agent, /dist\/virtmiti-guest\.cjs$/)
  t.ok(fs.existsSync(p.script), 'build script found from the package root')
})

// --- runQemuTier with injected build and boot -------------------------------------------------
const recorded = loadRecordedBoot('skylake-server-lfence-bhi-off')
const kernel: KernelSpec = { id: '6.1', suite: 'bookworm', package: 'linux-image-amd64' }
const boot: QemuBoot = { name: bootName('6.1', recorded.cpu, recorded.append), cpu: recorded.cpu, append: recorded.append, ci: true, vcpus: 2, file: 'x.yaml', vmm: 'stock', kernel }
const resolved: Resolution = {
  ok: true,
  kernel: { id: '6.1', release: '6.1.0-57-amd64', vmlinuz: '/vmlinuz', modulesDir: '/m/6.1.0-57-amd64', config: '/config-6.1.0-57-amd64', origin: { suite: 'bookworm', package: 'linux-image-amd64', version: '6.1.192-3', debs: [] } },
}
const resolveKernel = (): Resolution => resolved
const image: ImageBuild = { ok: true, image: '/img', kernel: '/vmlinuz', key: 'k', cacheHit: true, ms: 5, log: '' }
function fakeBoot(over: Partial<BootResult> = {}, sections = sectionMap(recorded)) {
  const calls: BootOptions[] = []
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-qt-'))
  const fn = async (o: BootOptions): Promise<BootResult> => {
    calls.push(o)
    return {
      ok: true, accel: 'tcg', argv: [], wallMs: 16_540, timedOut: false, exitCode: 0, signal: null, sections,
      frames: { ...parseFrames(''), sections, done: { frames: sections.size, uptimeS: 12.27 }, errors: [] },
      consoleLog: path.join(dir, 'console.log'), framesLog: path.join(dir, 'frames.log'), qemuStderr: '', notes: [], ...over,
    }
  }
  return { fn, calls, dir }
}
const paths = { agent: '/a.mjs', script: '/s.sh', cacheDir: '/c' }

t.test('a recorded good boot: one passing subtest with its boot-to-verdict time as a comment', async t => {
  const b = fakeBoot()
  let builds = 0
  const deps: TierDeps = { resolveKernel, build: () => { builds++; return image }, boot: b.fn }
  const r = await runQemuTier({ boots: [boot, { ...boot, name: boot.name + ' again' }], paths, deps })
  t.equal(builds, 1, 'image built once for all boots')
  t.same(b.calls.map(c => [c.cpu, c.append, c.smp, c.accel, c.image, c.kernel]), [[boot.cpu, boot.append, 2, 'tcg', '/img', '/vmlinuz'], [boot.cpu, boot.append, 2, 'tcg', '/img', '/vmlinuz']])
  t.same(r.rows.map(x => [x.status, x.seconds, x.guestDoneS]), [['pass', 16.5, 12.27], ['pass', 16.5, 12.27]])
  const tap = tapDocument(r.points)
  t.match(tap, /^# kernel 6\.1\.0-57-amd64 \(bookworm linux-image-amd64 6\.1\.192-3\)\n# boot-to-verdict 16\.5 s \(QEMU start to exit; guest uptime at its last section 12\.27 s\)\n# Subtest: qemu: linux-6\.1 Skylake-Server spectre_v2=retpoline,lfence spectre_bhi=off\n/m)
  t.match(tap, /^ok 1 - qemu: linux-6\.1 Skylake-Server spectre_v2=retpoline,lfence spectre_bhi=off$/m)
  t.same(r.rows[0]!.kernel, { id: '6.1', version: '6.1.0-57-amd64', origin: resolved.ok && resolved.kernel.origin }, 'the JSON row carries the kernel version and origin')
  t.equal(fs.existsSync(b.dir), false, "a passing boot's logs are removed")
  t.match(qemuTable(r.rows), /pass {2}16\.5s {2}qemu: linux-6\.1 Skylake-Server .* \| 6\.1\.0-57-amd64 \| Vulnerable: LFENCE; .*BHI: Vulnerable \| agent lfence\/vulnerable \| predicted lfence\/vulnerable/)
  t.match(qemuTable(r.rows), /2 boots: 2 pass, 0 fail, 0 skip, boot-to-verdict 16\.5-16\.5 s/)
})

t.test('a boot that times out fails with the error and keeps its logs', async t => {
  const b = fakeBoot({ ok: false, error: 'no poweroff within 180000 ms: QEMU killed', timedOut: true }, new Map())
  const r = await runQemuTier({ boots: [boot], paths, deps: { resolveKernel, build: () => image, boot: b.fn } })
  t.equal(r.points[0]!.ok, false)
  t.same(r.points[0]!.sub![0]!.diag?.['error'], 'no poweroff within 180000 ms: QEMU killed')
  t.equal(r.rows[0]!.status, 'fail')
  t.ok(fs.existsSync(b.dir), 'logs kept')
  t.match(r.points[0]!.comments!.join('\n'), /logs kept: /)
})

t.test("a wrong agent inside a boot fails the boot's subtest naming both values", async t => {
  const s = sectionMap(recorded)
  const p = JSON.parse(s.get('probe')!.output)
  p.decision.expected.bhi = 'retpoline'
  s.set('probe', { ...s.get('probe')!, output: JSON.stringify(p) })
  const r = await runQemuTier({ boots: [boot], paths, deps: { resolveKernel, build: () => image, boot: fakeBoot({}, s).fn } })
  t.equal(r.rows[0]!.status, 'fail')
  t.match(r.rows[0]!.failed, [/^agent's prediction for Skylake-Server/])
  t.match(tapDocument(r.points), /predicted:\n\s+spectreV2: "lfence \(\\"Mitigation: LFENCE\\"\)"\n\s+bhi: "retpoline \(\\"BHI: Retpoline\\"\)"/)
})

t.test('unavailable tier: every boot SKIPs with the reason; a failed image build fails every boot', async t => {
  const s = await runQemuTier({ boots: [boot], unavailable: 'qemu-system-x86_64 not found (apt-get install qemu-system-x86)', paths })
  t.same(s.points, [{ ok: true, name: boot.name, skip: 'qemu tier unavailable here: qemu-system-x86_64 not found (apt-get install qemu-system-x86)' }])
  t.equal(s.rows[0]!.status, 'skip')
  const f = await runQemuTier({ boots: [boot], paths, deps: { resolveKernel, build: () => ({ ok: false, ms: 1, log: 'a\nb\n', error: 'build-initramfs.sh exited 2: no kernel' }), boot: fakeBoot().fn } })
  t.same([f.points[0]!.ok, f.points[0]!.diag?.['error'], f.rows[0]!.status], [false, 'image build: build-initramfs.sh exited 2: no kernel', 'fail'])
  t.same(await runQemuTier({ boots: [], paths }), { points: [], rows: [] })
  const gone = await runQemuTier({ boots: [boot], paths, deps: { resolveKernel: () => ({ ok: false, kind: 'input', error: 'kernel 6.1 (bookworm linux-image-6.1.0-9-amd64): package linux-image-6.1.0-9-amd64 is not in bookworm' }), build: () => image, boot: fakeBoot().fn } })
  t.same([gone.points[0]!.ok, gone.rows[0]!.error], [false, 'kernel input error: kernel 6.1 (bookworm linux-image-6.1.0-9-amd64): package linux-image-6.1.0-9-amd64 is not in bookworm'], 'a vanished kernel fails its boots, naming the package')
})

t.test('kernel deaths: expected deaths pass only with their line; an unexpected death fails with the console line', async t => {
  const line = 'WARNING: arch/x86/kernel/alternative.c:745 at apply_retpolines+0x5e5/0x6d0, CPU#0: swapper/0/0'
  const death = { line, lines: ['Spectre V2 something', line] }
  const r = { consoleLog: '/c.log' }
  const expected = { death: 'WARNING: arch/x86/kernel/alternative.c:745 at apply_retpolines' }
  t.equal(deathOutcome(expected, { ...r, death, error: `kernel died before /init: ${line}` })!.point.ok, true, 'died with the known line: pass')
  t.equal(deathOutcome(expected, { ...r, death: { line: 'Kernel panic - not syncing: x', lines: ['Kernel panic - not syncing: x'] } })!.point.ok, false, 'died differently: fail')
  t.equal(deathOutcome(expected, r)!.point.ok, false, 'booted: fail')
  const u = deathOutcome({}, { ...r, death, error: `kernel died before /init: ${line}` })!.point
  t.same([u.ok, u.diag?.['error']], [false, `kernel died before /init: ${line}`])
  t.equal(deathOutcome({}, r), undefined, 'no death, none expected: the usual checks')
  const b = fakeBoot({ ok: false, death, error: `kernel died before /init: ${line}` }, new Map())
  const tr = await runQemuTier({ boots: [{ ...boot, ...expected }], paths, deps: { resolveKernel, build: () => image, boot: b.fn } })
  t.same([tr.rows[0]!.status, tr.rows[0]!.death], ['pass', { line, expected: expected.death }])
  t.match(qemuTable(tr.rows), /died: WARNING: arch\/x86\/kernel\/alternative\.c:745 at apply_retpolines/)
})

t.test('each boot\'s point is handed on before the next boot starts; progress gets its row', async t => {
  const events: string[] = []
  const b = fakeBoot()
  const boot2: QemuBoot = { ...boot, name: `${boot.name} again` }
  await runQemuTier({
    boots: [boot, boot2], paths,
    deps: { resolveKernel, build: () => image, boot: async o => { events.push('boot'); return b.fn(o) } },
    onPoint: p => events.push(`point ${p.name}`),
    progress: (d, n, name, row) => events.push(`progress ${d}/${n} ${row?.status} ${row?.seconds}`),
  })
  t.same(events, ['boot', `point ${boot.name}`, 'progress 1/2 pass 16.5', 'boot', `point ${boot2.name}`, 'progress 2/2 pass 16.5'])
  const skipped: string[] = []
  await runQemuTier({ boots: [boot], unavailable: 'no qemu', onPoint: p => skipped.push(p.skip ?? '') })
  t.same(skipped, ['qemu tier unavailable here: no qemu'], 'skips stream too')
})

// The measured 7.2.13 TCG flake (host/qemu/death.ts TCG_TEXT_POKE_FLAKE): booted once more, said so.
t.test('an "Oops: int3" before /init is booted once more and the pass says so; twice fails; other deaths never retry', async t => {
  const int3 = { line: 'Kernel panic - not syncing: Fatal exception in interrupt', lines: ['Oops: int3: 0000 [#1] SMP NOPTI', 'Kernel panic - not syncing: Fatal exception in interrupt'] }
  const dead = fakeBoot({ ok: false, death: int3, error: `kernel died before /init: ${int3.line}` }, new Map())
  const good = fakeBoot()
  let n = 0
  const calls: BootOptions[] = []
  const flaky: TierDeps['boot'] = async o => { calls.push(o); return n++ === 0 ? dead.fn(o) : good.fn(o) }
  const r = await runQemuTier({ boots: [boot], paths, deps: { resolveKernel, build: () => image, boot: flaky } })
  t.equal(calls.length, 2, 'booted twice')
  t.equal(r.rows[0]!.status, 'pass', 'the second boot passes')
  t.ok(r.points[0]!.comments?.some(c => /booted twice: the first attempt died before \/init with "Kernel panic - not syncing: Fatal exception in interrupt" \(TCG text-patching race/.test(c)), 'the TAP point names the first attempt')
  const twice = fakeBoot({ ok: false, death: int3, error: `kernel died before /init: ${int3.line}` }, new Map())
  const r2 = await runQemuTier({ boots: [boot], paths, deps: { resolveKernel, build: () => image, boot: twice.fn } })
  t.same([twice.calls.length, r2.rows[0]!.status], [2, 'fail'], 'dies twice: fails')
  const other = { line: 'BUG: kernel NULL pointer dereference, address: 0', lines: ['BUG: kernel NULL pointer dereference, address: 0'] }
  const once = fakeBoot({ ok: false, death: other, error: `kernel died before /init: ${other.line}` }, new Map())
  const r3 = await runQemuTier({ boots: [boot], paths, deps: { resolveKernel, build: () => image, boot: once.fn } })
  t.same([once.calls.length, r3.rows[0]!.status], [1, 'fail'], 'any other death: one boot, fails')
  const expected = fakeBoot({ ok: false, death: int3, error: `kernel died before /init: ${int3.line}` }, new Map())
  await runQemuTier({ boots: [{ ...boot, death: 'Oops: int3' }], paths, deps: { resolveKernel, build: () => image, boot: expected.fn } })
  t.equal(expected.calls.length, 1, 'a death the matrix expects is never retried')
})

// --- `scenarios run` wiring (no boot: the filter selects none, or the input is rejected) -------
t.test('scenarios run: a qemu dir next to the cases dir is the matrix; bad files and --qemu-set are errors', async t => {
  const { main } = await import('../cli/scenarios-run.js')
  const { InputError, UsageError } = await import('../../bin/lib/cli.js')
  const { builtinCasesDir } = await import('../runner/catalog.js')
  const out = { out: '', err: '' }
  const io = { out: (s: string) => { out.out += s }, err: (s: string) => { out.err += s } }
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-qs-'))
  fs.mkdirSync(path.join(d, 'cases'))
  fs.mkdirSync(path.join(d, 'qemu'))
  fs.copyFileSync(path.join(builtinCasesDir()!, 'bhi-no-host.yaml'), path.join(d, 'cases', 'bhi-no-host.yaml'))
  fs.writeFileSync(path.join(d, 'qemu', 'm.yaml'), 'description: d\nsource: s\nkernels: [{ id: "6.1", suite: bookworm, package: linux-image-amd64 }]\nmodels: [{ cpu: EPYC }]\ncmdlines: [{ append: "spectre_bhi=on" }]\n')
  // The filter matches the sim run only: no boot starts, and the qemu runs of cases SKIP with the reason.
  t.equal(await main([path.join(d, 'cases'), '--tier', 'all', '--filter', 'bhi-no-host', '--json'], { io, isTTY: false }), 0)
  const j = JSON.parse(out.out)
  t.same(j.runs.map((r: { tier: string; status: string }) => [r.tier, r.status]), [['sim', 'pass'], ['kvm', j.runs[1].status], ['qemu', 'skip']])
  t.match(j.runs[2].skip, /scenario runs on sim, kvm only/, 'cases default to sim and kvm')
  t.equal(j.qemu, undefined, 'no boot selected: no qemu section')
  fs.writeFileSync(path.join(d, 'qemu', 'm.yaml'), 'description: d\nsource: s\nkernels: [{ id: "6.1", suite: bookworm, package: linux-image-amd64 }]\nmodels: [{ cpu: EPYC, bogus: 1 }]\ncmdlines: [{ append: "x" }]\n')
  const e = await main([path.join(d, 'cases'), '--tier', 'qemu'], { io, isTTY: false }).then(() => undefined, x => x)
  t.ok(e instanceof InputError)
  t.match((e as Error).message, /bad qemu matrix file:\n.*m\.yaml:4:\d+: models\.0: Unrecognized key/)
  const u = await main(['--tier', 'qemu', '--qemu-set', 'most'], { io, isTTY: false }).then(() => undefined, x => x)
  t.ok(u instanceof UsageError)
})

// The full matrix is ~200 boots, an hour: its TAP and a log must show each boot as it ends.
t.test('scenarios run: each qemu point is on stdout before the next boot starts; plan = points; a line per boot without a terminal', async t => {
  const { main } = await import('../cli/scenarios-run.js')
  const { builtinCasesDir } = await import('../runner/catalog.js')
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-qs-'))
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }))
  fs.mkdirSync(path.join(d, 'cases'))
  fs.mkdirSync(path.join(d, 'qemu'))
  fs.copyFileSync(path.join(builtinCasesDir()!, 'bhi-no-host.yaml'), path.join(d, 'cases', 'bhi-no-host.yaml'))
  // The recorded boot's own command line passes; the second line does not match it, so it fails.
  fs.writeFileSync(path.join(d, 'qemu', 'm.yaml'), `description: d\nsource: s\nkernels: [{ id: "6.1", suite: bookworm, package: linux-image-amd64 }]\nmodels: [{ cpu: ${recorded.cpu} }]\ncmdlines: [{ append: "${recorded.append.join(' ')}" }, { append: "spectre_bhi=on" }]\n`)
  const go = async (isTTY: boolean, extra: string[] = []) => {
    const o = { out: '', err: '' }
    const io = { out: (s: string) => { o.out += s }, err: (s: string) => { o.err += s } }
    const b = fakeBoot()
    t.teardown(() => fs.rmSync(b.dir, { recursive: true, force: true }))
    const seen: string[][] = []
    const deps: TierDeps = { resolveKernel, build: () => image, boot: async x => { seen.push(o.out.match(/^(?:not )?ok \d+ - .*$/gm) ?? []); return b.fn(x) } }
    const code = await main([path.join(d, 'cases'), '--tier', 'qemu', '--qemu-set', 'full', ...extra], { io, isTTY, qemu: { paths, deps } })
    return { code, ...o, seen }
  }
  const r = await go(false)
  t.equal(r.code, 1, 'the second boot fails')
  const plan = Number(/^1\.\.(\d+)$/m.exec(r.out)![1])
  const points = r.out.match(/^(?:not )?ok (\d+) - /gm)!.map(l => Number(/\d+/.exec(l)![0]))
  t.same([plan, points], [3, [1, 2, 3]], 'plan 3 (the case SKIPs on the qemu tier, two boots) and points 1..3 in order')
  t.same(r.seen.map(s => s.length), [1, 2], 'boot k+1 starts with point k (and the skipped case) already written')
  t.match(r.seen[1]![1], /^ok 2 - qemu: linux-6\.1 /)
  const lines = r.err.split('\n').filter(l => l.startsWith('[qemu '))
  t.match(lines, [/^\[qemu 1\/2\] pass 16\.5 s qemu: linux-6\.1 Skylake-Server spectre_v2=retpoline,lfence spectre_bhi=off$/, /^\[qemu 2\/2\] fail 16\.5 s qemu: linux-6\.1 Skylake-Server spectre_bhi=on$/])
  t.equal(lines.length, 2)
  t.notMatch(r.err, /[\r\x1b]/, 'no carriage return or escape code in a log')
  t.ok(r.out.indexOf('# pass 16.5 s') > r.out.indexOf('not ok 3 '), 'the per-boot comment rows come after the last point')
  const tty = await go(true)
  t.match(tty.err, /\r\x1b\[K\[qemu 2\/2\] qemu: linux-6\.1 Skylake-Server spectre_bhi=on/, 'a terminal keeps its one rewritten line')
  t.notMatch(tty.err, /^\[qemu /m)
  const quiet = await go(false, ['--quiet'])
  t.notMatch(quiet.err, /\[qemu |\r/, '--quiet: no progress')
  t.match(quiet.err, /2 boots: 1 pass, 1 fail/, '--quiet keeps the summary')
  const logs = (s: string) => s.replace(/virtmiti-qt-\w+/g, 'virtmiti-qt-X')
  t.equal(logs(quiet.out), logs(r.out), '--quiet leaves stdout as it was')
})
