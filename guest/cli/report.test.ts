import t from 'tap'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { spawnSync } from 'node:child_process'
import { main, type ReportDeps } from './report.js'
import { simGuest, GUEST_UUID, BOOT_ID } from '../../testing/sim-guest.js'
import { PROFILES } from '../../host/vmm/profiles.js'
import { probe } from '../probe.js'
import { decide } from '../../contract/decide.js'
import { GuestReport } from '../../contract/report-json.js'
import type { Platform } from '../platform.js'
import { Chalk } from 'chalk'

const NOW = new Date('2026-11-26T14:00:00.000Z')

function deps(platform: Platform, extra: Partial<ReportDeps> = {}) {
  const out: string[] = [], err: string[] = []
  const d: ReportDeps = { platform, probe: p => probe(p), decide, now: () => NOW, out: s => { out.push(s) }, err: s => { err.push(s) }, color: new Chalk({ level: 0 }), ...extra }
  return { d, out, err, text: () => out.join(''), errText: () => err.join('') }
}

async function runJson(platform: Platform, argv: string[] = []) {
  const x = deps(platform)
  const code = await main(['--json', ...argv], x.d)
  const report = GuestReport.parse(JSON.parse(x.text()))
  return { code, report, err: x.errText() }
}

// Expected outcome of the first report run per VMM profile (simulated 4-vCPU Skylake-like guest on
// Sapphire Rapids hosts, kernel on retpoline + SW loop: wish CTRL = 0x3). Faults that only change
// what the VMM forces are invisible to the guest (contract/CONTRACT.md section 5: the guest reads its shadow);
// host check catches those.
const EXPECT: Record<string, { code: number; outcomes: string; readBack?: string }> = {
  'reference': { code: 0, outcomes: 'written', readBack: '0x3' },
  'reference-virtualized': { code: 0, outcomes: 'written', readBack: '0x3' },
  'bhb-only': { code: 0, outcomes: 'written', readBack: '0x1' },
  'no-virtual-msrs': { code: 0, outcomes: 'not-enumerated' },
  'read-zero': { code: 0, outcomes: 'not-enumerated' },
  'userspace-force-bhi': { code: 0, outcomes: 'written', readBack: '0x3' },
  'userspace-force-bhi-off': { code: 0, outcomes: 'written', readBack: '0x3' },
  // Section 3 read-back rule broken: the report sees it.
  'ignores-ctrl-writes': { code: 1, outcomes: 'readback-mismatch', readBack: '0x0' },
  'forces-nothing': { code: 0, outcomes: 'written', readBack: '0x3' },
  'forces-bhi-regardless-of-caps': { code: 0, outcomes: 'written', readBack: '0x3' },
  'guest-can-clear-forced': { code: 0, outcomes: 'written', readBack: '0x3' },
  'guest-overrides-userspace': { code: 0, outcomes: 'written', readBack: '0x3' },
  'leaks-forced-into-shadow': { code: 0, outcomes: 'written', readBack: '0x3' },
  // One shared CTRL: CPU 0's write shows on the others, which then need no write.
  'ctrl-not-per-vcpu': { code: 0, outcomes: 'written,unchanged,unchanged,unchanged', readBack: '0x3' },
  'enum-writable': { code: 0, outcomes: 'written', readBack: '0x3' },
  'reserved-ctrl-bits-accepted': { code: 0, outcomes: 'written', readBack: '0x3' },
  'ctrl-not-reset': { code: 0, outcomes: 'written', readBack: '0x3' },
}

t.test('every VMM profile has an expected report outcome', async t => {
  t.same([...PROFILES.keys()].filter(n => !(n in EXPECT)), [], 'profiles without an expectation here')
})

for (const name of PROFILES.keys()) {
  t.test(`report on simulated VMM profile ${name}`, async t => {
    const e = EXPECT[name]
    if (!e) return t.fail(`no expectation for ${name}`)
    const { platform, vmm } = simGuest(name)
    const { code, report } = await runJson(platform)
    t.equal(code, e.code, 'exit code')
    const outs = e.outcomes.includes(',') ? e.outcomes.split(',') : Array(4).fill(e.outcomes)
    t.same(report.cpus.map(c => c.outcome), outs, 'per-CPU outcomes')
    if (e.readBack) t.same(report.cpus.map(c => c.readBack), Array(4).fill(e.readBack), 'read back')
    t.equal(report.vmUuid, GUEST_UUID)
    t.equal(report.bootId, BOOT_ID)
    t.equal(report.kernelRelease, '6.12.0-virtmiti-test')
    t.equal(report.decision.bhbClearSeqSUsed, true)
    t.equal(report.decision.retpolineSUsed, true)
    if (e.outcomes === 'not-enumerated') {
      t.equal(report.enumerated, false)
      t.same(vmm.states().map(s => s.mitiCtrl), [0n, 0n, 0n, 0n], 'VMM saw no CTRL write')
    } else if (name !== 'ignores-ctrl-writes') {
      // The VMM's own state agrees with what the guest read back.
      t.same(vmm.states().map(s => '0x' + s.mitiCtrl.toString(16)), report.cpus.map(c => c.readBack))
    }
    // Second run: a no-op wherever the first run succeeded.
    const again = await runJson(platform)
    if (e.code === 0 && e.outcomes !== 'not-enumerated') t.same(again.report.cpus.map(c => c.outcome), Array(4).fill('unchanged'), 'second run is a no-op')
    t.equal(again.code, e.code, 'second run exit code')
  })
}

t.test('human output: a line per CPU with before -> wanted and outcome, and the reasons', async t => {
  const x = deps(simGuest('reference').platform)
  t.equal(await main([], x.d), 0)
  const s = x.text()
  t.match(s, /cpu +0: 0x0 -> 0x3 +written \(read back 0x3\)/)
  t.match(s, /cpu +3: 0x0 -> 0x3 +written/)
  t.match(s, /reasons:\n  - the kernel clears the BHB with the short SW loop/)
  t.match(s, /MITI_CTRL 0x3 on cpu 0-3/)
  t.match(s, /result: ok \(exit 0\)/)
})

t.test('not enumerated: human output says why, exit 0', async t => {
  const x = deps(simGuest('read-zero').platform)
  t.equal(await main([], x.d), 0)
  t.match(x.text(), /nothing written: the virtual MSRs are not enumerated \(ARCH_CAPABILITIES bit 63 \(VIRTUAL_ENUM\) is clear/)
  t.match(x.text(), /ok: nothing to report/)
})

t.test('--dry-run: writes nothing, says what it would write', async t => {
  const { platform, vmm } = simGuest('reference')
  const x = deps(platform)
  t.equal(await main(['--dry-run'], x.d), 0)
  t.match(x.text(), /cpu +0: 0x0 -> 0x3 +dry-run/)
  t.same(vmm.states().map(s => s.mitiCtrl), [0n, 0n, 0n, 0n])
})

t.test('--cpu N writes only that CPU; --cpu rejects offline and garbage', async t => {
  const { platform, vmm } = simGuest('reference')
  const { code, report } = await runJson(platform, ['--cpu', '2'])
  t.equal(code, 0)
  t.same(report.cpus.map(c => c.cpu), [2])
  t.same(vmm.states().map(s => s.mitiCtrl), [0n, 0n, 3n, 0n])
  const x = deps(platform)
  t.equal(await main(['--cpu', '9'], x.d), 2)
  t.match(x.errText(), /cpu 9 is not online/)
  const y = deps(platform)
  t.equal(await main(['--cpu', 'two'], y.d), 2)
  t.equal(await main(['--cpu', 'all', '--json'], deps(platform).d), 0)
})

t.test('usage errors exit 2 with the usage text', async t => {
  const x = deps(simGuest('reference').platform)
  t.equal(await main(['--bogus'], x.d), 2)
  t.match(x.errText(), /guest report: Unknown option '--bogus'/)
  t.match(x.errText(), /usage: virtmiti guest report/)
  const h = deps(simGuest('reference').platform)
  t.equal(await main(['--help'], h.d), 0)
  t.match(h.text(), /--out FILE/)
})

t.test('a platform that throws: could not tell, exit 3', async t => {
  const { platform } = simGuest('reference')
  const x = deps(platform, { probe: () => { throw new Error('boom') } })
  t.equal(await main([], x.d), 3)
  t.match(x.errText(), /could not run: boom/)
})

const tmp = fs.mkdtempSync(join(tmpdir(), 'virtmiti-report-'))
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }))

t.test('--out FILE writes the JSON report atomically and leaves no temp file', async t => {
  const file = join(tmp, 'report.json')
  fs.writeFileSync(file, 'old')
  // A leftover temporary of a crashed earlier run is cleaned up.
  fs.writeFileSync(join(tmp, '.report.json.virtmiti-00112233aabbccdd.tmp'), 'half')
  const x = deps(simGuest('reference').platform)
  t.equal(await main(['--out', file], x.d), 0)
  const r = GuestReport.parse(JSON.parse(fs.readFileSync(file, 'utf8')))
  t.equal(r.cpus.length, 4)
  t.same(fs.readdirSync(tmp).filter(n => n.includes('.tmp')), [])
})

t.test('--out failure mid-write: no partial FILE, the old one intact, temp removed, exit 3', async t => {
  const file = join(tmp, 'kept.json')
  fs.writeFileSync(file, 'previous complete report')
  let calls = 0
  const failing = { ...fs, writeSync: ((fd: number, buf: Buffer, off: number) => {
    if (calls++ === 0) return fs.writeSync(fd, buf, off, 10) // a short first write
    throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })
  }) as typeof fs.writeSync }
  const x = deps(simGuest('reference').platform, { fs: failing, random: () => '0123456789abcdef' })
  t.equal(await main(['--out', file], x.d), 3)
  t.match(x.errText(), /--out .*kept\.json: ENOSPC/)
  t.equal(fs.readFileSync(file, 'utf8'), 'previous complete report')
  t.notOk(fs.existsSync(join(tmp, '.kept.json.virtmiti-0123456789abcdef.tmp')), 'temp file removed')
  t.match(x.text(), /written/, 'the human report is still printed')
  t.match(x.text(), /\(exit 3\)/, 'the printed exit code is the real one (issue 14 item 11)')
})

t.test('--out into a missing directory: refused before any MSR is written, exit 2', async t => {
  const file = join(tmp, 'no', 'such', 'dir', 'r.json')
  const g = simGuest('reference')
  const x = deps(g.platform)
  t.equal(await main(['--out', file], x.d), 2)
  t.match(x.errText(), /directory .* does not exist/)
  t.notOk(fs.existsSync(join(tmp, 'no')))
  t.same(g.vmm.states().map(s => s.mitiCtrl), [0n, 0n, 0n, 0n], 'no MSR written')
})

t.test('--out to a character device writes directly, one line of JSON (serial / virtio port)', async t => {
  const written: string[] = []
  const fake = { ...fs, openSync: ((p: string) => (p === '/dev/ttyS1' ? 99 : fs.openSync(p, 'r'))) as unknown as typeof fs.openSync,
    statSync: ((p: string) => (p === '/dev/ttyS1' ? fs.statSync('/dev/null') : fs.statSync(p))) as typeof fs.statSync,
    lstatSync: ((p: string) => (p === '/dev/ttyS1' ? fs.lstatSync('/dev/null') : fs.lstatSync(p))) as typeof fs.lstatSync,
    fstatSync: ((fd: number) => (fd === 99 ? fs.statSync('/dev/null') : fs.fstatSync(fd))) as typeof fs.fstatSync,
    writeSync: ((fd: number, buf: Buffer, off: number, len: number) => { t.equal(fd, 99); written.push(buf.subarray(off, off + len).toString()); return len }) as typeof fs.writeSync,
    closeSync: ((fd: number) => { if (fd !== 99) fs.closeSync(fd) }) as typeof fs.closeSync,
    renameSync: (() => { throw new Error('rename must not be used for a device') }) as typeof fs.renameSync }
  const x = deps(simGuest('reference').platform, { fs: fake, deviceName: () => 'ttyS1' })
  t.equal(await main(['--out', '/dev/ttyS1'], x.d), 0, x.errText())
  const text = written.join('')
  t.equal(text.split('\n').length, 2, 'one line plus the final newline')
  t.equal(GuestReport.parse(JSON.parse(text)).cpus.length, 4)
  // A real character device: /dev/null stays a device, no temp file appears beside it.
  t.equal(await main(['--out', '/dev/null'], deps(simGuest('reference').platform).d), 0)
  t.ok(fs.statSync('/dev/null').isCharacterDevice())
})

t.test('--dev-root: the real devcpu write path (pwrite on DIR/dev/cpu/N/msr) on a 64-CPU fake tree', async t => {
  const { buildTree, SPR_VIRT } = await import('../../bench/fake-tree.mjs')
  const root = buildTree(join(tmp, 'tree'), 64, { ...SPR_VIRT, spectreV2: 'Mitigation: Retpolines; IBPB: conditional; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: SW loop, KVM: SW loop' })
  const run1 = deps(simGuest('reference').platform)
  const { platform: _unused, ...noPlatform } = run1.d
  t.equal(await main(['--dev-root', root, '--json'], noPlatform), 0, run1.errText())
  const r1 = GuestReport.parse(JSON.parse(run1.text()))
  t.equal(r1.platform, 'devcpu')
  t.equal(r1.cpus.length, 64)
  t.ok(r1.cpus.every(c => c.outcome === 'written' && c.readBack === '0x3'), JSON.stringify(r1.cpus[0]))
  const b = Buffer.alloc(8)
  const fd = fs.openSync(join(root, 'dev/cpu/63/msr'), 'r')
  fs.readSync(fd, b, 0, 8, 0x50000002); fs.closeSync(fd)
  t.equal(b.readBigUInt64LE(0), 3n, 'CTRL bytes in the msr file of cpu 63')
  const run2 = deps(simGuest('reference').platform)
  const { platform: _p2, ...noPlatform2 } = run2.d
  t.equal(await main(['--dev-root', root, '--json'], noPlatform2), 0)
  t.ok(GuestReport.parse(JSON.parse(run2.text())).cpus.every(c => c.outcome === 'unchanged'), 'second run: no-op')
})

// Issue 14 item 6: --out never writes through a symlink into a device or FIFO, and refuses
// anything but a regular file or an allow-listed console, before any MSR is written.
t.test('--out refuses /dev/cpu (a write to MSR 0), FIFOs, other devices and symlinks to them, before any MSR write', async t => {
  const d = fs.mkdtempSync(join(tmp, 'hostile-'))
  const fake = join(d, 'msr'); fs.writeFileSync(fake, '') // stands in for /dev/cpu/0/msr where it does not exist
  const targets: [string, RegExp][] = []
  const link = (name: string, to: string) => { const p = join(d, name); fs.symlinkSync(to, p); return p }
  targets.push([link('to-cpu-msr.json', '/dev/cpu/0/msr'), /dangling|not a console|character device/])
  targets.push([link('to-cpuid.json', '/dev/cpu/0/cpuid'), /dangling|not a console/])
  targets.push([link('to-zero.json', '/dev/zero'), /character device zero, not a console/])
  targets.push([link('to-file.json', fake), /symbolic link to something that is not a console/])
  const fifo = join(d, 'planted.json'); spawnSync('mkfifo', [fifo]); targets.push([fifo, /is a FIFO: refused/])
  targets.push([link('to-fifo.json', fifo), /not a console/])
  targets.push([d, /directory|not a console|refused/])
  for (const [target, re] of targets) {
    const g = simGuest('reference')
    const x = deps(g.platform)
    const start = Date.now()
    t.equal(await main(['--out', target], x.d), 2, `${target}: ${x.errText()}`)
    t.match(x.errText(), re, target)
    t.ok(Date.now() - start < 3000, 'no hang')
    t.same(g.vmm.states().map(s => s.mitiCtrl), [0n, 0n, 0n, 0n], 'no MSR written')
  }
  t.equal(fs.readFileSync(fake, 'utf8'), '', 'the symlink target was not written')
})

t.test('--out: a symlink to an allow-listed console is followed and checked again after open', async t => {
  const d = fs.mkdtempSync(join(tmp, 'console-'))
  const port = join(d, 'org.qemu.port0'); fs.symlinkSync('/dev/null', port) // as /dev/virtio-ports/NAME -> ../vport0p1
  const x = deps(simGuest('reference').platform)
  t.equal(await main(['--out', port], x.d), 0, x.errText())
  t.ok(fs.lstatSync(port).isSymbolicLink(), 'the link itself is kept')
})

t.test('--out: a symlink planted at the final name is replaced, not written through', async t => {
  const d = fs.mkdtempSync(join(tmp, 'plant-'))
  const victim = join(d, 'victim'); fs.writeFileSync(victim, 'precious')
  const file = join(d, 'r.json'); fs.symlinkSync(victim, file)
  const x = deps(simGuest('reference').platform)
  t.equal(await main(['--out', file], x.d), 2, 'a symlink to a regular file is refused too')
  t.equal(fs.readFileSync(victim, 'utf8'), 'precious')
})

t.test('report: an empty online CPU list is a clear error, not a TypeError (issue 14 item 10)', async t => {
  const g = simGuest('reference')
  const empty = { ...g.platform, kind: g.platform.kind, cpus: () => [], cpuid: g.platform.cpuid.bind(g.platform), rdmsr: g.platform.rdmsr.bind(g.platform), wrmsr: g.platform.wrmsr.bind(g.platform), readText: g.platform.readText.bind(g.platform) }
  const x = deps(empty)
  t.equal(await main([], x.d), 2)
  t.match(x.errText(), /no online CPUs found/)
  t.notMatch(x.errText(), /Cannot read properties/)
})
