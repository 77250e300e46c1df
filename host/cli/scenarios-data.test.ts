// Issue 13, `scenarios run` as a VMM engineer uses it: VMMs as data (--vmms, inline definitions,
// per-vCPU faults), explicit model directories with shadowing errors, --emit files that `host
// check` reproduces, TAP that streams and that prove (TAP 13), tap-parser --strict (TAP 14) and
// the node-tap runner read whole, and --junit XML.
import t from 'tap'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { spawnSync } from 'node:child_process'
import { main } from './scenarios-run.js'
import { main as checkMain } from './check.js'
import { InputError } from '../../bin/lib/cli.js'
import { builtinCasesDir, builtinCpusDir, builtinVmmsDir, packageRoot } from '../runner/catalog.js'
import { simMachine } from '../runner/machines.js'
import type { MachineFactory } from '../runner/chain.js'
import { loadScenarios } from '../runner/scenario-file.js'
import { faultyProfiles } from '../vmm/profiles.js'

function capture() {
  const o = { out: '', err: '', writes: [] as { at: number; text: string }[] }
  return { io: { out: (s: string) => { o.out += s; o.writes.push({ at: performance.now(), text: s }) }, err: (s: string) => { o.err += s } }, o }
}
async function run(argv: string[], machines?: NonNullable<Parameters<typeof main>[1]>['machines']) {
  const { io, o } = capture()
  const code = await main(argv, { io, isTTY: false, ...(machines ? { machines } : {}) })
  return { code, ...o }
}

const CASES = builtinCasesDir()!
const ROOT = packageRoot()!
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-data-'))
const read = (f: string) => fs.readFileSync(path.join(CASES, f), 'utf8')
const PASSING = 'migration-pool-cascade-lake-on-sapphire-rapids.yaml'
const ONE_VCPU_FAULT = 'faulty-forces-nothing-on-one-vcpu.yaml'

t.test('the six kinds issue 13 added are in the catalog and pass on the sim tier', async t => {
  const kinds = ['vmm-enumerates-retpoline-only', 'vmm-bit63-without-virtual-enumeration', 'userspace-force-arbitrary',
    'leftover-ctrl-cleared-by-guest', 'faulty-forces-nothing-on-one-vcpu', 'host-arch-cap-override-bhi-no']
  const r = await run(['--tier', 'sim', '--json'])
  const runs = (JSON.parse(r.out).runs as { scenario: string; status: string }[]).filter(x => kinds.includes(x.scenario))
  t.same(runs.map(x => x.scenario).sort(), [...kinds].sort())
  t.ok(runs.every(x => x.status === 'pass'), runs.filter(x => x.status !== 'pass').map(x => x.scenario).join(', ') || 'all pass')
})

// Each new kind must be able to fail: change the VMM, keep the hand-written expectations.
t.test('the new kinds fail when the VMM or host differs from what their expectations were written for', async t => {
  const d = tmp()
  const cases: [string, string, string, RegExp][] = [
    // Fault on vCPU 0 instead of 1: the per-vCPU host-check expectation must fail.
    [ONE_VCPU_FAULT, 'vcpus: [1]', 'vcpus: [0]', /host check per vCPU/],
    // VIRTUAL_ENUMERATION bit 0 set after all: the guest enumerates and writes CTRL.
    ['vmm-bit63-without-virtual-enumeration.yaml', 'virtualEnumeration: []', 'virtualEnumeration: [MITIGATION_CTRL_SUPPORT]', /enumerated on every CPU: false|MITI_CTRL per vCPU as expected/],
    // MITI_ENUM with both bits: CTRL gains BHB_CLEAR_SEQ_S_USED.
    ['vmm-enumerates-retpoline-only.yaml', 'mitiEnum: [RETPOLINE_S_SUPPORT]', 'mitiEnum: [RETPOLINE_S_SUPPORT, BHB_CLEAR_SEQ_S_SUPPORT]', /MITI_CTRL per vCPU as expected/],
    // No userspace SSBD: the forced value loses it.
    ['userspace-force-arbitrary.yaml', 'value: [SSBD]', 'value: []', /forced SPEC_CTRL mask and value per vCPU as expected/],
    // Host without the BHI_NO override: BHI_DIS_S is derived again.
    ['host-arch-cap-override-bhi-no.yaml', ', RRSBA, BHI_NO]', ', RRSBA]', /forced SPEC_CTRL mask and value per vCPU as expected/],
  ]
  for (const [file, from, to, point] of cases) {
    const text = read(file)
    t.ok(text.includes(from), `${file} has ${from}`)
    fs.writeFileSync(path.join(d, 'x.yaml'), text.replace(from, to))
    const r = await run([path.join(d, 'x.yaml'), '--tier', 'sim'])
    t.equal(r.code, 1, `${file} with ${to}: exit 1`)
    t.match(r.out, new RegExp(`not ok \\d+ - (${point.source})`), `${file} with ${to}: the expected point fails`)
  }
  // A leftover CTRL that the guest keeps ("unknown" wish) is a different expectation: here the guest clears it.
  const left = read('leftover-ctrl-cleared-by-guest.yaml')
  fs.writeFileSync(path.join(d, 'x.yaml'), left.replace('BHI: BHI_DIS_S', 'BHI: SW loop, KVM: SW loop'))
  t.equal((await run([path.join(d, 'x.yaml'), '--tier', 'sim'])).code, 1, 'a short-loop guest sets the bit: the hand-written CTRL [] fails')
})

t.test('--vmms DIR adds definitions; shadowing a built-in id is an error unless --allow-shadow; files must be directories', async t => {
  const d = tmp(), vm = path.join(d, 'vmms'), cases = path.join(d, 'cases')
  fs.mkdirSync(vm); fs.mkdirSync(cases)
  fs.writeFileSync(path.join(vm, 'my-vmm.yaml'), 'id: my-vmm\ndescription: mine\nadvertise: true\nmitiEnum: [BHB_CLEAR_SEQ_S_SUPPORT, RETPOLINE_S_SUPPORT]\n')
  fs.writeFileSync(path.join(cases, 'x.yaml'), read(PASSING).replace('profile: reference', 'profile: my-vmm'))
  await t.rejects(run([cases, '--tier', 'sim']), { constructor: InputError, message: /unknown VMM "my-vmm"; valid VMM ids: .* \(searched .*scenarios\/vmms\)/ }, 'not found without --vmms')
  t.equal((await run([cases, '--tier', 'sim', '--vmms', vm])).code, 0, 'found with --vmms')
  fs.copyFileSync(path.join(builtinVmmsDir()!, 'reference.yaml'), path.join(vm, 'reference.yaml'))
  await t.rejects(run([cases, '--tier', 'sim', '--vmms', vm]), { constructor: InputError, message: /--vmms .*vmms: VMM definition "reference" is already defined by .*scenarios\/vmms; rename it, or pass --allow-shadow/ })
  t.equal((await run([cases, '--tier', 'sim', '--vmms', vm, '--allow-shadow'])).code, 0, '--allow-shadow replaces it')
  fs.copyFileSync(path.join(builtinCpusDir()!, 'sapphire-rapids.yaml'), path.join(d, 'sapphire-rapids.yaml'))
  await t.rejects(run([cases, '--tier', 'sim', '--cpus', path.join(d, 'sapphire-rapids.yaml')]), { constructor: InputError, message: /--cpus .*sapphire-rapids\.yaml: expected a directory/ })
  const cpus = path.join(d, 'cpus'); fs.mkdirSync(cpus)
  fs.copyFileSync(path.join(builtinCpusDir()!, 'sapphire-rapids.yaml'), path.join(cpus, 'sapphire-rapids.yaml'))
  await t.rejects(run([cases, '--tier', 'sim', '--cpus', cpus]), { constructor: InputError, message: /CPU model "sapphire-rapids" is already defined/ })
  // A bad definition is located by file:line:column.
  fs.writeFileSync(path.join(vm, 'bad.yaml'), 'id: bad\ndescription: x\nadvertise: true\nfaults: [no-such-fault]\n')
  await t.rejects(run([cases, '--tier', 'sim', '--vmms', vm, '--allow-shadow']), { constructor: InputError, message: /bad\.yaml:4:\d+: faults\[0\]: / })
})

t.test('inline definitions are validated against the scenario (per-vCPU knobs name existing vCPUs)', async t => {
  const d = tmp()
  fs.writeFileSync(path.join(d, 'x.yaml'), read(ONE_VCPU_FAULT).replace('vcpus: [1]', 'vcpus: [2]'))
  await t.rejects(run([d, '--tier', 'sim']), { constructor: InputError, message: /vmm\.define\.faults\[0\]\.vcpus\[0\]: expected a vCPU index below 2/ })
  fs.writeFileSync(path.join(d, 'x.yaml'), read(ONE_VCPU_FAULT).replace('{ fault: forces-nothing, vcpus: [1] }', '{ fault: ctrl-not-per-vcpu, vcpus: [1] }'))
  await t.rejects(run([d, '--tier', 'sim']), { constructor: InputError, message: /cannot be limited to some vCPUs/ })
})

t.test('--emit: host check on the emitted files reproduces each run\'s verdict, naming the same failure', async t => {
  const d = tmp(), out = path.join(d, 'out')
  const r = await run(['--tier', 'sim', '--emit', out])
  t.equal(r.code, 0)
  const catalog = loadScenarios([CASES]).scenarios.map(x => x.scenario)
  const named = new Set(catalog.filter(s => s.expected.verdict === 'fail').map(s => 'profile' in s.vmm ? s.vmm.profile : undefined))
  t.same(faultyProfiles().filter(p => !named.has(p)), [], 'every faulty VMM definition of the catalog has a scenario here')
  type Item = { id: string; ok: boolean; message: string; diag?: unknown }
  type Result = { ok: boolean; vm: Item[]; vcpus: { items: Item[] }[]; selftest?: Item[]; afterReset?: { items: Item[] }[] }
  /** The failing items as the run's stage ids (contract/scenario.ts CAUGHT_RE): check.*, selftest.*, reset.*. */
  const failing = (x: Result) => [
    ...[...x.vm, ...x.vcpus.flatMap(v => v.items)].map(i => ({ ...i, id: `check.${i.id}` })),
    ...(x.selftest ?? []).map(i => ({ ...i, id: `selftest.${i.id}` })),
    ...(x.afterReset ?? []).flatMap(v => v.items).map(i => ({ ...i, id: `reset.${i.id}` })),
  ].filter(i => !i.ok)
  for (const s of catalog) {
    const dir = path.join(out, s.name, 'sim')
    const f = (n: string) => path.join(dir, n)
    t.ok(fs.existsSync(f('selftest.tap')) && fs.existsSync(f('vmm-state-after-reset.json')), `${s.name}: selftest and after-reset evidence emitted`)
    const { io, o } = capture()
    const code = await checkMain(['--guest-report', f('guest-report.json'), '--vmm-state', f('vmm-state.json'), '--host-caps', f('host-caps.json'),
      '--selftest', f('selftest.tap'), '--after-reset', f('vmm-state-after-reset.json'), '--json'], { io })
    const now = JSON.parse(o.out) as Result
    const recorded = JSON.parse(fs.readFileSync(f('host-check.json'), 'utf8')) as Result
    t.same(failing(now).map(i => i.id), failing(recorded).map(i => i.id), `${s.name}: host-check.json is that check`)
    if (s.expected.verdict === 'pass') { t.equal(code, 0, `${s.name}: correct VMM, exit 0`); continue }
    t.equal(code, 1, `${s.name}: faulty VMM, exit 1`)
    const c = s.expected.caught!
    const hit = failing(now).find(i => i.id === c.check && (c.bit === undefined || new RegExp(`\\b${c.bit}\\b`).test(i.message + JSON.stringify(i.diag ?? {}))))
    t.ok(hit, `${s.name}: host check names ${c.check}${c.bit ? ` ${c.bit}` : ''}, as the run did (${failing(now).map(i => i.id).join(', ')})`)
  }
  // The guest report carries the verdict, as `guest report --out` writes it.
  const rep = JSON.parse(fs.readFileSync(path.join(out, 'vmm-enumerates-bhb-only', 'sim', 'guest-report.json'), 'utf8')) as { verdict?: { verdict: string; findings: string[] } }
  t.same(rep.verdict && [rep.verdict.verdict, rep.verdict.findings.filter(x => x.startsWith('vmm.'))], ['at-risk', ['vmm.enum-lacks-bit']])
  // Without the extra evidence, faults only the selftest or a reset see pass the state check, as they pass the run's first check.
  const one = path.join(out, 'faulty-ctrl-not-per-vcpu', 'sim')
  t.equal(await checkMain(['--guest-report', path.join(one, 'guest-report.json'), '--vmm-state', path.join(one, 'vmm-state.json')], { io: capture().io }), 0)
  const { io, o } = capture()
  t.equal(await checkMain(['--guest-report', path.join(one, 'guest-report.json'), '--vmm-state', path.join(one, 'vmm-state.json'), '--selftest', path.join(one, 'selftest.tap')], { io }), 1)
  t.match(o.out, /FAIL selftest: guest selftest fails: MSR_VIRTUAL_MITIGATION_CTRL is per vCPU/)
  // Output-file rules: the run's directory may not be a symlink.
  const evil = path.join(d, 'evil'); fs.mkdirSync(evil)
  const out2 = path.join(d, 'out2'); fs.mkdirSync(out2)
  fs.symlinkSync(evil, path.join(out2, 'bhi-no-host'))
  await t.rejects(run(['--tier', 'sim', '--filter', 'bhi-no-host', '--emit', out2]), /symlink/)
  t.same(fs.readdirSync(evil), [], 'nothing written through the symlink')
})

/** A tier that takes `ms` to create each machine (blocking, as the real chain is synchronous). */
function slowSim(ms: number, starts: number[]): MachineFactory {
  return s => {
    starts.push(performance.now())
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
    return simMachine(s)
  }
}

t.test('TAP streams: the plan first, each run\'s point written when it completes, before the next run starts', async t => {
  const starts: number[] = []
  const r = await run(['--tier', 'sim', '--filter', 'faulty-*'], { sim: slowSim(60, starts) })
  t.equal(r.code, 0)
  t.match(r.writes[0]!.text, /^TAP version 14\n1\.\.\d+\n$/, 'the first write is the header and plan, alone')
  t.ok(r.writes[0]!.at < starts[0]!, 'written before the first run started')
  const points = r.writes.slice(1).filter(w => /^(# Subtest|ok|not ok)/m.test(w.text))
  t.equal(points.length, starts.length, 'one write per run')
  for (let k = 0; k + 1 < starts.length; k++) t.ok(points[k]!.at < starts[k + 1]!, `run ${k + 1} printed before run ${k + 2} started`)
})

function hasProve(): boolean { return spawnSync('prove', ['--version'], { encoding: 'utf8' }).status === 0 }

t.test('TAP 13 through prove (TAP::Harness), passing and failing, with no parse errors', { skip: hasProve() ? false : 'prove (perl) not installed' }, async t => {
  const d = tmp()
  const pass = await run(['--tier', 'sim', '--tap-version', '13'])
  fs.writeFileSync(path.join(d, 'pass.tap'), pass.out)
  // Failing: a wrong expectation, and a faulty VMM declared correct (host check diagnostics with "BIT: ..." messages).
  fs.mkdirSync(path.join(d, 'cases'))
  fs.writeFileSync(path.join(d, 'cases', 'a.yaml'), read(PASSING).replace('mitiCtrl: [BHB_CLEAR_SEQ_S_USED]', 'mitiCtrl: []'))
  fs.writeFileSync(path.join(d, 'cases', 'b.yaml'), read('faulty-forces-nothing.yaml').replace(/verdict: fail\n\s*caught:.*\n/, 'verdict: pass\n'))
  const fail = await run([path.join(d, 'cases'), '--tier', 'sim', '--tap-version', '13'])
  t.equal(fail.code, 1)
  fs.writeFileSync(path.join(d, 'fail.tap'), fail.out)
  const prove = (f: string) => spawnSync('prove', ['-v', '--exec', 'cat', f], { encoding: 'utf8' })
  const p = prove(path.join(d, 'pass.tap'))
  t.equal(p.status, 0, 'prove passes the passing stream')
  t.notMatch(p.stdout + p.stderr, /Parse errors|Bad plan|YAMLish/)
  t.match(p.stdout, /Result: PASS/)
  const f = prove(path.join(d, 'fail.tap'))
  t.not(f.status, 0, 'prove fails the failing stream')
  t.notMatch(f.stdout + f.stderr, /Parse errors|Bad plan|YAMLish|multi-line/, 'read whole')
  t.match(f.stdout, /Failed tests?:\s+1-2/, 'both runs failed, by number')
  // prove's own YAMLish reader got the diagnostics (Perl TAP::Parser, the library prove uses).
  const perl = spawnSync('perl', ['-MTAP::Parser', '-e', 'my $p = TAP::Parser->new({ source => $ARGV[0] }); my $n = 0; while (my $r = $p->next) { $n++ if $r->is_yaml } print "$n\\n"; print join("\\n", $p->parse_errors), "\\n"', path.join(d, 'fail.tap')], { encoding: 'utf8' })
  t.match(perl.stdout, /^[1-9]\d*\n\n$/, 'YAML blocks parsed, no parse errors')
  // `host check --tap --tap-version 13` on a faulty run's emitted files: its "BIT: ..." diagnostics read whole too.
  const out = path.join(d, 'emit')
  await run(['--tier', 'sim', '--filter', 'faulty-forces-nothing', '--emit', out])
  const e = path.join(out, 'faulty-forces-nothing', 'sim')
  const { io, o } = capture()
  t.equal(await checkMain(['--guest-report', path.join(e, 'guest-report.json'), '--vmm-state', path.join(e, 'vmm-state.json'), '--tap', '--tap-version', '13'], { io }), 1)
  fs.writeFileSync(path.join(d, 'check.tap'), o.out)
  const c = prove(path.join(d, 'check.tap'))
  t.notMatch(c.stdout + c.stderr, /Parse errors|Bad plan|YAMLish|multi-line/, 'host check TAP 13 read whole')
  t.match(c.stdout, /Failed tests?:/)
})

function tapParserCli(): string | undefined {
  const p = path.join(ROOT, 'node_modules', '.bin', 'tap-parser')
  return fs.existsSync(p) ? p : undefined
}

t.test('TAP 14 through tap-parser --strict, passing and failing', { skip: tapParserCli() ? false : 'tap-parser not installed' }, async t => {
  const d = tmp()
  fs.writeFileSync(path.join(d, 'a.yaml'), read(PASSING).replace('mitiCtrl: [BHB_CLEAR_SEQ_S_USED]', 'mitiCtrl: []'))
  for (const [name, argv, ok] of [['pass', ['--tier', 'sim'], true], ['fail', [d, '--tier', 'sim'], false]] as const) {
    const r = await run([...argv])
    const p = spawnSync(tapParserCli()!, ['--strict', '-t'], { input: r.out, encoding: 'utf8' })
    t.equal(p.status, ok ? 0 : 1, `${name}: tap-parser --strict exit ${ok ? 0 : 1}`)
    t.notMatch(p.stdout + p.stderr, /non-TAP|Plan|tapError/i, `${name}: no strict-mode complaints`)
  }
})

t.test('the node-tap runner reads a .tap file (coverage off: a .tap file has no code to cover)', async t => {
  const d = tmp()
  fs.writeFileSync(path.join(d, 'a.yaml'), read(PASSING).replace('mitiCtrl: [BHB_CLEAR_SEQ_S_USED]', 'mitiCtrl: []'))
  fs.writeFileSync(path.join(d, 'pass.tap'), (await run(['--tier', 'sim', '--filter', 'bhi-*'])).out)
  fs.writeFileSync(path.join(d, 'fail.tap'), (await run([path.join(d, 'a.yaml'), '--tier', 'sim'])).out)
  const tap = path.join(ROOT, 'node_modules', '.bin', 'tap')
  // The runner imports its plugins ('tap') from the directory it runs in: give the temporary one the project's.
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(d, 'node_modules'))
  for (const [f, code] of [['pass.tap', 0], ['fail.tap', 1]] as const) {
    const p = spawnSync(tap, ['--disable-coverage', '--reporter=tap', f], { cwd: d, encoding: 'utf8', env: { ...process.env, TAP_RCFILE: '/dev/null' } })
    t.equal(p.status, code, `${f}: node-tap exit ${code}`)
  }
})

/** A small strict XML well-formedness reader: tags balance, attributes quoted, entities known. */
function parseXml(s: string): { name: string; attrs: Record<string, string>; children: any[] } {
  const re = /<\?xml[^?]*\?>|<(\/?)([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*="[^"<]*")*)\s*(\/?)>|([^<]+)/gy
  const root = { name: '#root', attrs: {}, children: [] as any[] }
  const stack: any[] = [root]
  let m: RegExpExecArray | null, at = 0
  while (at < s.length && (m = re.exec(s))) {
    at = re.lastIndex
    if (m[5] !== undefined) {
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(m[5])) throw new Error(`bad entity near ${m[5].slice(0, 40)}`)
      continue
    }
    if (m[2] === undefined) continue
    if (m[1]) { const top = stack.pop(); if (top.name !== m[2]) throw new Error(`</${m[2]}> closes <${top.name}>`); continue }
    const attrs: Record<string, string> = {}
    for (const a of m[3]!.matchAll(/([A-Za-z_][\w.-]*)="([^"]*)"/g)) {
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(a[2]!)) throw new Error(`bad entity in attribute ${a[1]}`)
      attrs[a[1]!] = a[2]!
    }
    const el = { name: m[2], attrs, children: [] }
    stack[stack.length - 1].children.push(el)
    if (!m[4]) stack.push(el)
  }
  if (at !== s.length) throw new Error(`not XML at offset ${at}: ${s.slice(at, at + 40)}`)
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1].name}>`)
  return root.children[0]
}

t.test('--junit FILE writes JUnit XML that parses: suites per tier, a failure with its failing checks, skips', async t => {
  const d = tmp(), x = path.join(d, 'j.xml')
  fs.writeFileSync(path.join(d, 'a.yaml'), read(PASSING).replace('mitiCtrl: [BHB_CLEAR_SEQ_S_USED]', 'mitiCtrl: []').replace(/name: .*/, 'name: wrong-expectation'))
  fs.writeFileSync(path.join(d, 'b.yaml'), read('bhi-no-host.yaml'))
  const r = await run([d, '--tier', 'all', '--junit', x])
  t.equal(r.code, 1)
  const doc = parseXml(fs.readFileSync(x, 'utf8'))
  t.equal(doc.name, 'testsuites')
  t.equal(doc.attrs['tests'], '6', '2 scenarios x 3 tiers')
  const withFailure = doc.children.flatMap((s: any) => s.children).filter((c: any) => c.children.some((x: any) => x.name === 'failure'))
  t.equal(doc.attrs['failures'], String(withFailure.length), 'failures counts the testcases with a <failure>')
  t.ok(withFailure.every((c: any) => /^wrong-expectation \[(sim|kvm)\]$/.test(c.attrs.name)), 'only the wrong expectation fails (on kvm too where /dev/kvm exists)')
  const suites = doc.children.map((s: any) => s.attrs.name).sort()
  t.same(suites, ['kvm', 'qemu', 'sim'])
  const sim = doc.children.find((s: any) => s.attrs.name === 'sim')
  const failed = sim.children.find((c: any) => c.children.some((x: any) => x.name === 'failure'))
  t.match(failed.attrs.name, /wrong-expectation \[sim\]/)
  const qemu = doc.children.find((s: any) => s.attrs.name === 'qemu')
  t.ok(qemu.children.every((c: any) => c.children[0]?.name === 'skipped'), 'qemu cases skipped with the reason')
  // Characters XML cannot carry never reach the file.
  const { xmlText } = await import('../runner/junit.js')
  t.equal(xmlText('a\u0000b\u001b[31m<&>'), 'a\uFFFDb\uFFFD[31m&lt;&amp;&gt;')
})
