// host caps / expect / check CLIs: exit codes (DESIGN.md), outputs, usage errors.
import t, { type Test } from 'tap'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Parser } from 'tap-parser'
import { main as capsMain } from './caps.js'
import { main as expectMain } from './expect.js'
import { main as checkMain } from './check.js'
import { UsageError, InputError } from '../../bin/lib/cli.js'
import { simulatedPlatform } from '../vmm/simulated.js'
import { profileByName } from '../vmm/profiles.js'
import { vmmStateJson } from '../vmm/state.js'
import { miniGuestReport, TEST_UUID } from '../check/fixtures.js'
import type { CpuModel } from '../../contract/cpu-model.js'
import type { Platform } from '../../guest/platform.js'
import { HostCapsJson } from '../../contract/host-caps.js'

const SPR_LIKE: CpuModel = {
  id: 'spr', name: 'SPR-like', vendor: 'GenuineIntel', family: 6, model: 0x8f, stepping: 8,
  cpuid7_0_edx: ((1 << 26) | (1 << 27) | (1 << 29) | (1 << 31)) >>> 0, cpuid7_2_edx: 0x17, archCapabilities: (1n << 19n) | 0x2bn, sources: {},
}
const SPR = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }
const hostPlatform = (): Platform => simulatedPlatform({ presented: { model: SPR_LIKE, hypervisor: false, archCapabilities: SPR_LIKE.archCapabilities }, hostCaps: SPR, profile: profileByName('no-virtual-msrs')!, vcpus: 2, sysfs: {} }).platform

function capture() {
  const o = { out: '', err: '' }
  return { io: { out: (s: string) => { o.out += s }, err: (s: string) => { o.err += s } }, o }
}
/** Rejects with an instance of `cls` (UsageError/InputError map to exit 2 in bin/dispatch.ts). */
async function rejectsWith(t: Test, p: Promise<unknown>, cls: new (...a: any[]) => Error, re?: RegExp) {
  try { await p; t.fail(`expected a ${cls.name}`) } catch (e) {
    t.ok(e instanceof cls, `${cls.name}: ${(e as Error).message}`)
    if (re) t.match((e as Error).message, re)
  }
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-cli-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
const file = (name: string, text: string) => { const p = path.join(dir, name); fs.writeFileSync(p, text); return p }

function fixture(profile: string) {
  const { platform, vmm } = simulatedPlatform({ presented: { model: SPR_LIKE, hypervisor: true, archCapabilities: 0n }, hostCaps: SPR, profile: profileByName(profile)!, vcpus: 2, sysfs: {} })
  const report = miniGuestReport(platform, { ctrl: () => 3n, specCtrl: 1n })
  return { report: file(`${profile}-report.json`, JSON.stringify(report)), state: file(`${profile}-state.json`, JSON.stringify(vmmStateJson(vmm, TEST_UUID))) }
}

t.test('host caps --json reads caps through the platform and validates as host-caps/v1', async t => {
  const { io, o } = capture()
  t.equal(await capsMain(['--json'], { io, platform: hostPlatform() }), 0)
  const j = HostCapsJson.parse(JSON.parse(o.out))
  t.same(j.caps, SPR)
})

t.test('host caps: ARCH_CAPABILITIES unreadable (no msr driver) -> exit 3 with the reason', async t => {
  const p = hostPlatform()
  const noMsr: Platform = { ...p, cpus: () => p.cpus(), cpuid: p.cpuid, readText: p.readText, wrmsr: p.wrmsr, rdmsr: () => ({ ok: false, fault: { errno: 'ENOENT', message: 'device missing: the driver is not loaded' } }) }
  const { io, o } = capture()
  t.equal(await capsMain([], { io, platform: noMsr }), 3)
  t.match(o.out, /BHI_NO\s+unknown\s+IA32_ARCH_CAPABILITIES unreadable \(ENOENT/)
  t.match(o.out, /BHI_CTRL\s+yes/)
})

t.test('host caps: bad flag is a usage error', async t => {
  await rejectsWith(t, capsMain(['--bogus'], { platform: hostPlatform() }), UsageError)
  const { io, o } = capture()
  t.equal(await capsMain(['--help'], { io }), 0)
  t.match(o.out, /Usage: virtmiti host caps/)
})

t.test('host expect --miti-ctrl --caps prints forced bits with rules', async t => {
  const { io, o } = capture()
  t.equal(await expectMain(['--miti-ctrl', '0x1,0x2,0x0', '--caps', 'bhiCtrl,rrsbaCtrl,rrsba'], { io }), 0)
  t.match(o.out, /vCPU 0: MITI_CTRL 0x1 \(BHB_CLEAR_SEQ_S_USED\) -> forced mask 0x400 \(BHI_DIS_S\), value 0x400 \(BHI_DIS_S\)/)
  t.match(o.out, /vCPU 1: MITI_CTRL 0x2 \(RETPOLINE_S_USED\) -> forced mask 0x40 \(RRSBA_DIS_S\)/)
  t.match(o.out, /vCPU 2: MITI_CTRL 0x0 -> forced mask 0x0 \(none\)/)
})

t.test('host expect --json from a guest report and a host caps file; userspace precedence', async t => {
  const f = fixture('reference')
  const caps = file('caps.json', JSON.stringify({ schema: 'virtmiti/host-caps/v1', caps: SPR }))
  const { io, o } = capture()
  t.equal(await expectMain(['--guest-report', f.report, '--host-caps', caps, '--userspace-mask', '0x400', '--json'], { io }), 0)
  const j = JSON.parse(o.out)
  t.equal(j.schema, 'virtmiti/expect/v1')
  t.same(j.vcpus.map((v: any) => [v.forcedMask, v.forcedValue]), [['0x440', '0x40'], ['0x440', '0x40']])
})

t.test('host expect: invalid userspace force and bad inputs are errors', async t => {
  await rejectsWith(t, expectMain(['--miti-ctrl', '0x1', '--caps', 'none', '--userspace-mask', '0x0', '--userspace-value', '0x400']), InputError)
  await rejectsWith(t, expectMain(['--miti-ctrl', '0x1', '--caps', 'bhiCtrl,nope']), Error, /unknown capability "nope"/)
  await rejectsWith(t, expectMain(['--miti-ctrl', 'zz', '--caps', 'none']), UsageError)
  await rejectsWith(t, expectMain(['--caps', 'none']), UsageError)
  await rejectsWith(t, expectMain(['--miti-ctrl', '1', '--caps', 'none', '--profile', 'nope']), Error, /unknown/)
})

t.test('host check: reference passes (exit 0), TAP output parses', async t => {
  const f = fixture('reference')
  const { io, o } = capture()
  t.equal(await checkMain(['--guest-report', f.report, '--vmm-state', f.state, '--tap'], { io }), 0)
  const p = new Parser({ strict: true })
  const done = new Promise<any>(res => p.on('complete', res))
  p.end(o.out)
  t.equal((await done).ok, true)
})

t.test('host check: a faulty VMM exits 1 and names the bit (text and JSON)', async t => {
  const f = fixture('forces-nothing')
  const a = capture()
  t.equal(await checkMain(['--guest-report', f.report, '--vmm-state', f.state], { io: a.io }), 1)
  t.match(a.o.out, /FAIL vCPU 0: forced mask: missing RRSBA_DIS_S, BHI_DIS_S/)
  const b = capture()
  t.equal(await checkMain(['--guest-report', f.report, '--vmm-state', f.state, '--json'], { io: b.io }), 1)
  const j = JSON.parse(b.o.out)
  t.equal(j.schema, 'virtmiti/check-result/v1')
  t.equal(j.ok, false)
})

t.test('host check: a host caps file that contradicts the VMM state fails; one with unknowns exits 3', async t => {
  const f = fixture('reference')
  const caps = file('caps-bhino.json', JSON.stringify({ schema: 'virtmiti/host-caps/v1', caps: { ...SPR, bhiNo: true } }))
  const a = capture()
  t.equal(await checkMain(['--guest-report', f.report, '--vmm-state', f.state, '--host-caps', caps], { io: a.io }), 1)
  t.match(a.o.out, /bhiNo is true, VMM says false/)
  const unk = file('caps-unk.json', JSON.stringify({ schema: 'virtmiti/host-caps/v1', caps: SPR, unknown: [{ cap: 'bhiNo', why: 'ENOENT' }] }))
  t.equal(await checkMain(['--guest-report', f.report, '--vmm-state', f.state, '--host-caps', unk], { io: capture().io }), 3)
})

t.test('host check: malformed report exits 2 with field paths; usage errors throw UsageError', async t => {
  const f = fixture('reference')
  const bad = file('bad.json', JSON.stringify({ schema: 'virtmiti/guest-report/v1', cpus: [{ cpu: -1 }] }))
  const a = capture()
  t.equal(await checkMain(['--guest-report', bad, '--vmm-state', f.state], { io: a.io }), 2)
  t.match(a.o.err, /guest report: cpus\[0\]\.cpu: /)
  const missing = capture()
  await rejectsWith(t, checkMain(['--guest-report', path.join(dir, 'nope.json'), '--vmm-state', f.state], { io: missing.io }), Error, /cannot open \(ENOENT\)/)
  await rejectsWith(t, checkMain(['--guest-report', f.report]), UsageError)
  await rejectsWith(t, checkMain(['--guest-report', f.report, '--vmm-state', f.state, '--tap', '--json']), UsageError)
  await rejectsWith(t, checkMain(['--nope']), UsageError)
  await rejectsWith(t, checkMain(['--guest-report', f.report, '--vmm-state', f.state, '--tap-version', '12']), UsageError)
})

t.test('host check: an oversized report file is refused without reading it all', async t => {
  const f = fixture('reference')
  const big = path.join(dir, 'big.json')
  fs.writeFileSync(big, Buffer.alloc(5 * 1024 * 1024, 0x20))
  await rejectsWith(t, checkMain(['--guest-report', big, '--vmm-state', f.state], { io: capture().io }), Error, /larger than the 4194304-byte limit/)
})

// Issue 14 items 1, 9, 11: exit codes and escaping of the untrusted inputs.
t.test('host check: a guest report saying "offline" everywhere, VMM forcing nothing -> exit 1; consistent VMM -> exit 3', async t => {
  const offline = (f: string) => { const r = JSON.parse(fs.readFileSync(f, 'utf8')); r.cpus = r.cpus.map((c: { cpu: number }) => ({ cpu: c.cpu, outcome: 'offline' })); return file(path.basename(f) + '.offline', JSON.stringify(r)) }
  const broken = fixture('forces-nothing')
  const c1 = capture()
  t.equal(await checkMain(['--guest-report', offline(broken.report), '--vmm-state', broken.state], { io: c1.io }), 1, c1.o.out)
  const fine = fixture('reference')
  for (const fmt of [[], ['--tap'], ['--json']]) {
    const c = capture()
    t.equal(await checkMain(['--guest-report', offline(fine.report), '--vmm-state', fine.state, ...fmt], { io: c.io }), 3, c.o.out)
    if (fmt[0] === '--tap') t.match(c.o.out, /^not ok \d+ - could not tell: no vCPU has usable guest data/m, 'TAP does not read as a pass')
    if (fmt[0] === '--json') t.equal(JSON.parse(c.o.out).verdict, 'could-not-tell')
    if (fmt.length === 0) t.match(c.o.out, /COULD NOT TELL/)
  }
})

t.test('host check: garbage input with a host-caps file that has unknowns is an input error (2), not 3', async t => {
  const caps = file('caps-unknown.json', JSON.stringify({ schema: 'virtmiti/host-caps/v1', caps: SPR, unknown: [{ cap: 'bhiNo', why: 'ARCH_CAPABILITIES unreadable' }] }))
  const { state } = fixture('reference')
  const c = capture()
  t.equal(await checkMain(['--guest-report', file('garbage.json', '{"schema":'), '--vmm-state', state, '--host-caps', caps], { io: c.io }), 2, c.o.err)
})

for (const evil of ['\r', '\n', '\u2028', '\u2029', '\u001b[2J', '\u0085']) {
  t.test(`host check: U+${evil.charCodeAt(0).toString(16).padStart(4, "0")} in cpus[].fault.step reaches neither the terminal nor the TAP stream raw`, async t => {
    const { report, state } = fixture('reference')
    const r = JSON.parse(fs.readFileSync(report, 'utf8'))
    r.cpus[1] = { cpu: 1, outcome: 'fault', fault: { step: `x${evil}ok 99 - forged`, errno: 'EIO', message: `m${evil}not ok 1 - forged` } }
    const f = file('evil.json', JSON.stringify(r))
    for (const fmt of [[], ['--tap'], ['--tap', '--tap-version', '13']]) {
      const c = capture()
      const code = await checkMain(['--guest-report', f, '--vmm-state', state, ...fmt], { io: c.io })
      t.equal(code, 0, 'vCPU 1 checked on the VMM state; vCPU 0 on guest data')
      t.notOk(/[\r\u001b\u0085\u2028\u2029]/.test(c.o.out), `no raw control in ${fmt.join(' ') || 'text'} output`)
      if (fmt[0] === '--tap') {
        const p = new Parser({ strict: true })
        const done = new Promise<{ ok: boolean; count: number }>(res => p.on('complete', res))
        p.end(c.o.out)
        const res = await done
        t.equal(res.ok, true, 'tap-parser --strict agrees with exit 0')
        t.notMatch(c.o.out, /^\s*ok 99 - forged/m)
      }
    }
  })
}

t.test('host check / expect: a FIFO, /dev/zero or /dev/urandom as an input is an input error at once (issue 14 item 4)', async t => {
  const fifo = path.join(dir, 'in.fifo')
  const { spawnSync } = await import('node:child_process')
  spawnSync('mkfifo', [fifo])
  const { state, report } = fixture('reference')
  for (const bad of [fifo, '/dev/zero', '/dev/urandom']) {
    const start = Date.now()
    await rejectsWith(t, checkMain(['--guest-report', bad, '--vmm-state', state], { io: capture().io }), InputError, /refused/)
    await rejectsWith(t, checkMain(['--guest-report', report, '--vmm-state', bad], { io: capture().io }), InputError, /refused/)
    await rejectsWith(t, checkMain(['--guest-report', report, '--vmm-state', state, '--host-caps', bad], { io: capture().io }), InputError, /refused/)
    await rejectsWith(t, expectMain(['--guest-report', bad, '--caps', 'none'], { io: capture().io }), InputError, /refused/)
    await rejectsWith(t, expectMain(['--miti-ctrl', '0x1', '--host-caps', bad], { io: capture().io }), InputError, /refused/)
    t.ok(Date.now() - start < 2000, `${bad}: no hang`)
  }
})
