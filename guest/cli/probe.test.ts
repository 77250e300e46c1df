// `virtmiti guest probe` (issue 2): --json validates against ProbeJson, --tap parses with
// tap-parser in strict mode, --cpu checks, --record/--replay round trip, and bad --replay files
// give exit 2 with the file, the field path and what was expected, never a stack trace (checked
// on the built bundle in a child process, as a user would run it). Exit codes: DESIGN.md.
import t from 'tap'
import * as fs from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Parser } from 'tap-parser'
import { main } from './probe.js'
import { ProbeJson } from '../../contract/probe-schema.js'
import { UsageError } from '../../bin/lib/cli.js'
import { buildTree, SPR_VIRT } from '../../bench/fake-tree.mjs'

const repo = join(fileURLToPath(import.meta.url), '..', '..', '..')
const bundle = join(repo, 'dist', 'virtmiti.mjs')
const fixture = join(repo, 'guest', 'fixtures', 'cascade-lake-guest-enum.json')

function tmp(t: { teardown: (f: () => void) => void }): string {
  const d = fs.mkdtempSync(join(tmpdir(), 'virtmiti-probe-cli-'))
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }))
  return d
}

async function run(argv: string[]) {
  const out: string[] = [], err: string[] = []
  const code = await main(argv, { io: { out: s => { out.push(s) }, err: s => { err.push(s) } } })
  return { code, out: out.join(''), err: err.join('') }
}

/** The error a run rejects with (undefined when it resolves). */
async function failure(p: Promise<unknown>): Promise<Error | undefined> {
  try { await p; return undefined } catch (e) { return e as Error }
}

function parseTap(text: string): Promise<{ ok: boolean; count: number; pass: number; skip: number; failures: unknown[] }> {
  return new Promise(res => { const p = new Parser({ strict: true }, r => res(r as never)); p.end(text) })
}

/** The bundle as a user runs it; exit code, stdout, stderr. (tap instruments it too: keep dist/ out of coverage with coverage-exclude.) */
function cli(args: string[]) {
  const env = process.env
  const r = spawnSync(process.execPath, [bundle, ...args], { encoding: 'utf8', env: { ...env, NO_COLOR: '1' }, timeout: 30_000 })
  return { code: r.status, out: r.stdout, err: r.stderr }
}
const haveBundle = fs.existsSync(bundle)
/** SPR_VIRT with a retpoline kernel: the retpoline verdict needs ARCH_CAP RRSBA, so it needs the msr driver. */
const RETPOLINE_BM = { ...SPR_VIRT, spectreV2: 'Mitigation: Retpolines; IBPB: conditional; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Retpoline' }
const noBundle = haveBundle ? false : `${bundle} missing: run make bundle first`

t.test('--json on a --dev-root tree validates against ProbeJson (contract/probe-schema.ts)', async t => {
  const root = buildTree(tmp(t), 4)
  const r = await run(['--dev-root', root, '--json'])
  t.equal(r.code, 0, 'nothing wrong: exit 0')
  const doc = ProbeJson.safeParse(JSON.parse(r.out))
  t.ok(doc.success, doc.success ? 'valid' : JSON.stringify(doc.error.issues.slice(0, 3)))
  if (!doc.success) return
  t.equal(doc.data.schema, 'virtmiti/probe/v1')
  t.equal(doc.data.status, 'ok')
  t.equal(doc.data.exitCode, 0)
  t.equal(doc.data.facts.cpus.length, 4)
  t.equal(doc.data.facts.cpus[0]!.msr['0x10a'] && 'value' in doc.data.facts.cpus[0]!.msr['0x10a']! && doc.data.facts.cpus[0]!.msr['0x10a'].value, '0x800000000008e16b', '64-bit value as "0x" hex string')
  t.equal(doc.data.decision.enumerated, true)
  t.same(doc.data.decision.virt.map(v => v.wanted), ['0x0', '0x0', '0x0', '0x0'])
  t.equal(doc.data.decision.expected.bhi, 'bhi-dis-s')
})

t.test('--tap is TAP 14 that tap-parser accepts in strict mode', async t => {
  const root = buildTree(tmp(t), 2)
  const r = await run(['--dev-root', root, '--tap'])
  t.match(r.out, /^TAP version 14\n1\.\.8\n/)
  t.match(r.out, /\nok 1 - BHI protected\n/)
  const res = await parseTap(r.out)
  t.equal(res.ok, true)
  t.equal(res.count, 8)
  t.same(res.failures, [])
  // The missing msr driver under a retpoline kernel on bare metal (RRSBA unknown): the concern is
  // skipped with the reason (exit 3); the enumeration point is skipped too: no concern needs the VMM.
  const bad = buildTree(tmp(t), 2, RETPOLINE_BM, { msrFile: false })
  const rb = await run(['--dev-root', bad, '--tap'])
  t.equal(rb.code, 3)
  const resb = await parseTap(rb.out)
  t.match(rb.out, /\nok 2 - retpoline\/RRSBA protected # SKIP could not tell: facts\.read-fault\n/)
  t.same(resb.failures, [])
  t.match(rb.out, /ok 8 - virtual MSR enumeration determined on every CPU # SKIP not needed: the mitigations in use do not depend on the VMM\n  ---\n  cannotTell:\n    - "CPUs 0-1: MSR 0x10a: ENOENT: /)
})

t.test('missing msr driver: exit 3 and the ENOENT cause, per CPU, where the verdict needs the MSR (issues 2, 12)', async t => {
  const root = buildTree(tmp(t), 2, RETPOLINE_BM, { msrFile: false })
  const r = await run(['--dev-root', root, '--no-color'])
  t.equal(r.code, 3)
  t.match(r.out, /^UNKNOWN: could not tell whether this guest is protected/)
  t.match(r.out, /note  facts\.read-fault: some CPUID leaves or MSRs could not be read -- CPUs 0-1: MSR 0x10a: ENOENT: .*\/dev\/cpu\/N\/msr: device missing: the driver is not loaded/)
  t.match(r.out, /\nexit 3\n$/)
  const j = await run(['--dev-root', root, '--json'])
  const doc = ProbeJson.parse(JSON.parse(j.out))
  t.equal(doc.status, 'cannot-tell')
  t.equal(doc.verdict?.verdict, 'unknown')
  t.equal(doc.exitCode, 3)
  // BHI_DIS_S + eIBRS on bare metal do not need the MSR: protected, the fault shown as a note.
  const spr = await run(['--dev-root', buildTree(tmp(t), 2, SPR_VIRT, { msrFile: false }), '--no-color'])
  t.equal(spr.code, 0)
  t.match(spr.out, /^PROTECTED: /)
})

t.test('human output: one table row for identical CPUs, the decision with reasons, no colour codes', async t => {
  const root = buildTree(tmp(t), 3)
  const r = await run(['--dev-root', root, '--no-color'])
  t.equal(r.code, 0)
  t.match(r.out, /^PROTECTED: this guest is protected against BHI and Spectre v2 \(retpoline\/RRSBA\)\.\nBare metal: no VMM; judged by this CPU's own hardware\.\n  BHI +protected +BHI: BHI_DIS_S: /)
  t.match(r.out, /\nvirtmiti guest probe: devcpu, 3 CPUs, kernel 6\.12\.9\n/)
  t.match(r.out, /\n0-2 +GenuineIntel +6\/0x8f\/8 +no +SPEC_CTRL STIBP ARCH_CAPABILITIES SSBD +PSFD IPRED_CTRL RRSBA_CTRL BHI_CTRL +0x800000000008e16b +ENUM 0x3 +0x0 \(kept\)\n/)
  t.match(r.out, /BHI {10}BHI: BHI_DIS_S {3}predicted: BHI: BHI_DIS_S/)
  t.match(r.out, /No findings\.\nexit 0\n$/)
  t.notMatch(r.out, /\u001b\[/, 'no ANSI escapes')
})

t.test('--cpu N picks one CPU; a bogus --cpu is a usage error naming the online CPUs', async t => {
  const root = buildTree(tmp(t), 2)
  const one = await run(['--dev-root', root, '--cpu', '1', '--json'])
  t.same(ProbeJson.parse(JSON.parse(one.out)).facts.cpus.map(c => c.cpu), [1])
  const all = await run(['--dev-root', root, '--cpu', 'all', '--json'])
  t.equal(ProbeJson.parse(JSON.parse(all.out)).facts.cpus.length, 2)
  for (const bad of ['7', 'x', '1,2', '', '01x']) {
    const e = await failure(run(['--dev-root', root, '--cpu', bad]))
    t.ok(e instanceof UsageError, `--cpu "${bad}": usage error`)
    t.equal(e?.message, `guest probe: --cpu ${bad}: expected "all" or one of the online CPUs (0,1)`)
  }
  t.match(await failure(run(['--dev-root', root, '--cpu', '-1'])), { message: /^guest probe: Option '--cpu' argument is ambiguous/ }, '--cpu -1: parseArgs refuses it')
  t.ok(await failure(run(['--dev-root', root, '--cpu', '-1'])) instanceof UsageError)
  t.equal((await failure(run(['--json', '--tap'])))?.message, 'guest probe: --format, --json and --tap name different formats (json, tap)')
  t.equal((await failure(run(['--replay', 'x', '--dev-root', root])))?.message, 'guest probe: --replay and --dev-root are exclusive')
  t.match(await failure(run(['--bogus'])), { message: /^guest probe: Unknown option '--bogus'/ })
})

t.test('--record then --replay gives the same document (only the platform name differs)', async t => {
  const dir = tmp(t)
  const root = buildTree(join(dir, 'tree'), 2)
  const rec = join(dir, 'facts.json')
  const a = await run(['--dev-root', root, '--json', '--record', rec])
  t.ok(fs.existsSync(rec), 'facts file written')
  const b = await run(['--replay', rec, '--json'])
  t.equal(b.code, a.code)
  const ja = JSON.parse(a.out), jb = JSON.parse(b.out)
  t.equal(ja.facts.platform, 'devcpu')
  t.equal(jb.facts.platform, 'recorded')
  jb.facts.platform = 'devcpu'
  t.same(jb, ja, 'identical apart from the platform name')
  // Human and TAP output too.
  const ha = await run(['--dev-root', root, '--no-color']), hb = await run(['--replay', rec, '--no-color'])
  t.equal(hb.out.replace('probe: recorded,', 'probe: devcpu,'), ha.out)
  const ta = await run(['--dev-root', root, '--tap']), tb = await run(['--replay', rec, '--tap'])
  t.equal(tb.out, ta.out)
  // Recording a replay reproduces the facts.
  const rec2 = join(dir, 'facts2.json')
  await run(['--replay', rec, '--json', '--record', rec2])
  const f1 = JSON.parse(fs.readFileSync(rec, 'utf8')), f2 = JSON.parse(fs.readFileSync(rec2, 'utf8'))
  t.same(f2.cpus, f1.cpus)
  t.same(f2.kernel, f1.kernel)
})

// ---- bad --replay input, through the bundle: exit 2, file + field + expectation, no stack ---------

const STACK = /^\s+at .+[:(]\d+|\bat file:|node:internal|Error: |\.ts:\d+|\.mjs:\d+/m

t.test('--replay of malformed, truncated or wrong-typed files: exit 2, a message, never a stack trace', { skip: noBundle }, async t => {
  const dir = tmp(t)
  const good = fs.readFileSync(fixture, 'utf8')
  const doc = () => JSON.parse(good)
  const put = (name: string, text: string) => { const p = join(dir, name); fs.writeFileSync(p, text); return p }
  const cases: { name: string; file: string; expect: RegExp[] }[] = [
    { name: 'truncated JSON', file: put('truncated.json', good.slice(0, 700)), expect: [/not valid JSON/, /at line \d+, column \d+/, /expected a virtmiti facts file/] },
    { name: 'empty file', file: put('empty.json', ''), expect: [/not valid JSON/] },
    { name: 'not JSON at all', file: put('text.json', 'hello\n'), expect: [/not valid JSON/] },
    { name: 'a number where a hex string is expected', file: put('wrongtype.json', JSON.stringify((() => { const d = doc(); d.cpus[1].cpuid['0x7.0'].regs.edx = 2885681152; return d })())),
      expect: [/field cpus\[1\]\.cpuid\.0x7\.0\.regs\.edx: Invalid input: expected string, received number/] },
    { name: 'upper-case hex in an MSR value', file: put('hexcase.json', JSON.stringify((() => { const d = doc(); d.cpus[0].msr['0x10a'] = { value: '0x800000000008002B' }; return d })())),
      expect: [/field cpus\[0\]\.msr\.0x10a\.value: a 64-bit value as "0x" lower-case hex/] },
    { name: 'a 65-bit MSR value', file: put('wide.json', JSON.stringify((() => { const d = doc(); d.cpus[0].msr['0x10a'] = { value: '0x10000000000000000' }; return d })())),
      expect: [/field cpus\[0\]\.msr\.0x10a\.value: a 64-bit value/] },
    { name: 'both regs and fault in one CPUID fact', file: put('both.json', JSON.stringify((() => { const d = doc(); d.cpus[0].cpuid['0x1.0'].fault = { errno: 'EIO', message: 'x' }; return d })())),
      expect: [/field cpus\[0\]\.cpuid\.0x1\.0: Unrecognized key: "fault"/] },
    { name: 'missing cpus', file: put('nocpus.json', JSON.stringify((() => { const d = doc(); delete d.cpus; return d })())), expect: [/field cpus: /] },
    { name: 'empty cpus', file: put('zerocpus.json', JSON.stringify((() => { const d = doc(); d.cpus = []; return d })())), expect: [/field cpus: .*1/] },
    { name: 'wrong schema id', file: put('schema.json', JSON.stringify((() => { const d = doc(); d.schema = 'virtmiti/facts/v0'; return d })())), expect: [/field schema: .*virtmiti\/facts\/v1/] },
    { name: 'unknown field', file: put('extra.json', JSON.stringify((() => { const d = doc(); d.kernel.extra = 1; return d })())), expect: [/field kernel: .*extra/] },
    { name: 'a JSON array', file: put('array.json', '[]'), expect: [/field \(document\): .*object/] },
    { name: 'no such file', file: join(dir, 'absent.json'), expect: [/cannot open \(ENOENT\)/] },
    { name: 'a directory', file: dir, expect: [/is a directory: refused/] },
    // Issue 14 item 4: devices and FIFOs are refused at once, never read without bound or waited on.
    { name: '/dev/zero', file: '/dev/zero', expect: [/is a character device: refused/] },
    { name: '/dev/urandom', file: '/dev/urandom', expect: [/is a character device: refused/] },
    { name: 'a FIFO', file: (() => { const p = join(dir, 'fifo.json'); spawnSync('mkfifo', [p]); return p })(), expect: [/is a FIFO: refused/] },
    { name: 'a symlink to /dev/zero', file: (() => { const p = join(dir, 'zero.json'); fs.symlinkSync('/dev/zero', p); return p })(), expect: [/is a character device: refused/] },
  ]
  for (const c of cases) {
    const r = cli(['guest', 'probe', '--replay', c.file])
    t.equal(r.code, 2, `${c.name}: exit 2`)
    t.equal(r.out, '', `${c.name}: nothing on stdout`)
    t.ok(r.err.includes(c.file + ':'), `${c.name}: message names the file`)
    for (const re of c.expect) t.match(r.err, re, `${c.name}: ${re}`)
    t.notMatch(r.err, STACK, `${c.name}: no stack trace`)
  }
})

t.test('bundle: --record into a missing directory or onto a directory, a malformed or huge CPU list: exit 2, no stack trace (issue 14 item 10)', { skip: noBundle }, async t => {
  const dir = tmp(t)
  for (const target of [join(dir, 'no', 'such', 'f.json'), dir]) {
    const r = cli(['guest', 'probe', '--replay', fixture, '--record', target])
    t.equal(r.code, 2, target)
    t.match(r.err, /--record .*: (ENOENT|EISDIR)/)
    t.notMatch(r.err, STACK)
  }
  t.same(fs.readdirSync(dir), [], 'no temporary left behind')
  for (const online of ['0-4294967295', '0-x', '3-1', '']) {
    const root = buildTree(join(dir, `t${online.length}${online.replace(/\W/g, '')}`), 1)
    fs.mkdirSync(join(root, 'sys/devices/system/cpu'), { recursive: true })
    fs.writeFileSync(join(root, 'sys/devices/system/cpu/online'), online + '\n')
    const r = cli(['guest', 'probe', '--dev-root', root])
    t.equal(r.code, 2, `online=${online}: ${r.err}`)
    t.notMatch(r.err, STACK)
    const rep = cli(['guest', 'report', '--dev-root', root])
    t.equal(rep.code, 2, `report online=${online}: ${rep.err}`)
    t.notMatch(rep.err, /Cannot read properties/)
  }
})

t.test('bundle: --cpu bogus and unknown options exit 2 with a message and no stack trace', { skip: noBundle }, async t => {
  const r = cli(['guest', 'probe', '--replay', fixture, '--cpu', '9'])
  t.equal(r.code, 2)
  t.match(r.err, /^virtmiti: guest probe: --cpu 9: expected "all" or one of the online CPUs \(0,1\)\n\(see virtmiti guest probe --help\)\n$/)
  t.notMatch(r.err, STACK)
  const u = cli(['guest', 'probe', '--frobnicate'])
  t.equal(u.code, 2)
  t.notMatch(u.err, STACK)
  const ok = cli(['guest', 'probe', '--replay', fixture, '--json'])
  t.equal(ok.code, 1, 'the fixture replays "at risk" (SW loop, CTRL not set yet: report.not-reported): exit 1')
  t.equal(JSON.parse(ok.out).verdict.verdict, 'at-risk')
  t.ok(ProbeJson.safeParse(JSON.parse(ok.out)).success, 'bundle --json validates too')
})
