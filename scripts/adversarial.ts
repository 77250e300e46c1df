// Adversarial campaign of issue 14 (not part of `make test`; the bounded versions of each class
// are in the suite). Run: npx esbuild scripts/adversarial.ts --bundle --platform=node --format=esm
//   --outfile=/tmp/adv.mjs && node /tmp/adv.mjs [N]
// Counts per class: inputs tried, crashes (a throw that is not a usage/input error, a stack trace,
// an exit code outside the table), hangs (over 5 s), wrong exit codes (against the README table),
// safety violations (a write through a symlink, raw control characters reaching the output).
import * as fs from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { main as checkMain } from '../host/cli/check.js'
import { main as expectMain } from '../host/cli/expect.js'
import { main as probeMain } from '../guest/cli/probe.js'
import { loadCpuFile } from '../host/runner/cpus.js'
import { loadScenarioFile } from '../host/runner/scenario-file.js'
import { InputError, UsageError } from '../bin/lib/cli.js'
import { miniGuestReport, TEST_UUID } from '../host/check/fixtures.js'
import { simulatedPlatform } from '../host/vmm/simulated.js'
import { profileByName } from '../host/vmm/profiles.js'
import { vmmStateJson } from '../host/vmm/state.js'
import type { CpuModel } from '../contract/cpu-model.js'

const N = Number(process.argv[2] ?? '1000')
const dir = fs.mkdtempSync(join(tmpdir(), 'virtmiti-adv-'))
let seed = 0xadd5eed
const rnd = (n: number) => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed % n }
const pick = <T>(a: readonly T[]): T => a[rnd(a.length)]!

interface Tally { tried: number; crashes: number; hangs: number; wrongExit: number; safety: number; examples: string[] }
const tallies = new Map<string, Tally>()
const tally = (cls: string) => { let t = tallies.get(cls); if (!t) { t = { tried: 0, crashes: 0, hangs: 0, wrongExit: 0, safety: 0, examples: [] }; tallies.set(cls, t) } return t }
const note = (t: Tally, kind: 'crashes' | 'hangs' | 'wrongExit' | 'safety', what: string) => { t[kind]++; if (t.examples.length < 5) t.examples.push(`${kind}: ${what.slice(0, 300)}`) }
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/ // LF (\n) and TAB are the only controls allowed in output

/** Call a CLI main in process as bin/dispatch.ts would: UsageError/InputError -> 2, anything else a crash. */
async function call(fn: (argv: string[], deps: { io: { out: (s: string) => void; err: (s: string) => void } }) => Promise<number>, argv: string[]) {
  let out = '', err = ''
  const io = { out: (s: string) => { out += s }, err: (s: string) => { err += s } }
  const t0 = Date.now()
  let code: number | 'crash'
  try { code = await fn(argv, { io }) } catch (e) {
    if (e instanceof UsageError || e instanceof InputError) { code = 2; err += (e as Error).message } else { code = 'crash'; err += String((e as Error).stack) }
  }
  return { code, out, err, ms: Date.now() - t0 }
}
const put = (name: string, text: string | Buffer) => { const p = join(dir, name); fs.writeFileSync(p, text); return p }

const MODEL: CpuModel = { id: 't', name: 'test', vendor: 'GenuineIntel', family: 6, model: 0x8f, stepping: 8, cpuid7_0_edx: ((1 << 26) | (1 << 27) | (1 << 29) | (1 << 31)) >>> 0, cpuid7_2_edx: 0x17, archCapabilities: 0n, sources: {} }
const SPR = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }
function pair(profile: string) {
  const { platform, vmm } = simulatedPlatform({ presented: { model: MODEL, hypervisor: true, archCapabilities: 0n }, hostCaps: SPR, profile: profileByName(profile)!, vcpus: 4, sysfs: {} })
  return { report: miniGuestReport(platform, { ctrl: () => 3n, specCtrl: 1n }), state: vmmStateJson(vmm, TEST_UUID) }
}

function mutateText(s: string): string {
  const b = Buffer.from(s)
  switch (rnd(6)) {
    case 0: return s.slice(0, rnd(s.length))
    case 1: { for (let i = 0; i < 1 + rnd(8); i++) b[rnd(b.length)] = rnd(256); return b.toString('latin1') }
    case 2: { const i = rnd(s.length); return s.slice(0, i) + pick(['{', '}', '[', ']', ',', '"', ':', 'null', '1e999', '-0', '"\\u0000"', '\u2028']) + s.slice(i) }
    case 3: return '['.repeat(1 + rnd(20000)) + s
    case 4: return s.replace(/"0x[0-9a-f]+"/g, m => (rnd(3) === 0 ? pick(['"0xZZ"', '"0x1ffffffffffffffff"', '18446744073709551616', '"0X1"', 'true']) : m))
    default: return s.replace(/"(outcome|errno|step|message|index|cpu)": ?("[^"]*"|\d+)/g, (m, k) => (rnd(3) === 0 ? `"${k}": ${pick(['"offline"', '"fault"', '99999', '-1', '"x\\u001b[2J"', '{}', '[]', '"\\r\\nok 1 - forged"'])}` : m))
  }
}

async function checkInputs(n: number) {
  const t = tally('host check: mutated JSON')
  const good = pair('reference')
  const st = put('state.json', JSON.stringify(good.state))
  const rep = put('report.json', JSON.stringify(good.report))
  for (let i = 0; i < n; i++) {
    const which = rnd(2)
    const text = mutateText(JSON.stringify(which ? good.report : good.state, null, rnd(2) ? 2 : 0))
    const f = put('m.json', text)
    const r = await call(checkMain, ['--guest-report', which ? f : rep, '--vmm-state', which ? st : f, ...pick([[], ['--tap'], ['--json']])])
    t.tried++
    if (r.code === 'crash' || /\n\s+at .+:\d+/.test(r.err)) note(t, 'crashes', r.err)
    else if (r.ms > 5000) note(t, 'hangs', `${r.ms} ms`)
    let valid = true
    try { JSON.parse(text) } catch { valid = false }
    if (!valid && r.code !== 2) note(t, 'wrongExit', `invalid JSON gave ${r.code}`)
    if (![0, 1, 2, 3].includes(r.code as number)) note(t, 'wrongExit', `exit ${r.code}`)
    for (const [name, o] of [['stdout', r.out], ['stderr', r.err]] as const) {
      const m = RAW.exec(o)
      if (m) note(t, 'safety', `raw U+${m[0].charCodeAt(0).toString(16)} on ${name}: ${JSON.stringify(o.slice(Math.max(0, m.index - 60), m.index + 20))}`)
    }
  }
}

async function lyingReports(n: number) {
  const t = tally('host check: lying guest reports vs faulty VMMs')
  for (const profile of ['forces-nothing', 'ignores-ctrl-writes', 'guest-can-clear-forced', 'leaks-forced-into-shadow', 'forces-bhi-regardless-of-caps']) {
    const p = pair(profile)
    const st = put(`state-${profile}.json`, JSON.stringify(p.state))
    for (let i = 0; i < n / 5; i++) {
      const rep = JSON.parse(JSON.stringify(p.report))
      const all = i % 5 === 0 ? pick([0, 1, 2]) : -1 // every fifth report tells the same lie on every CPU
      for (const c of rep.cpus) {
        const k = all >= 0 ? all : rnd(4)
        if (k === 0) Object.assign(c, { outcome: 'offline' }), delete c.written, delete c.readBack
        else if (k === 1) { for (const x of Object.keys(c)) if (x !== 'cpu') delete c[x]; Object.assign(c, { outcome: 'fault', fault: { step: 'read-ctrl', errno: 'EIO', message: 'x' } }) }
        else if (k === 2) { for (const x of Object.keys(c)) if (x !== 'cpu') delete c[x]; c.outcome = 'offline' }
      }
      const r = await call(checkMain, ['--guest-report', put('lie.json', JSON.stringify(rep)), '--vmm-state', st])
      t.tried++
      if (r.code === 'crash') note(t, 'crashes', r.err)
      // forces-bhi-regardless-of-caps is correct on this host (BHI_CTRL without BHI_NO): it may pass.
      if (r.code === 0 && profile !== 'forces-bhi-regardless-of-caps') note(t, 'wrongExit', `${profile} passed with ${JSON.stringify(rep.cpus.map((c: { outcome: string }) => c.outcome))}`)
    }
  }
}

async function injected(n: number) {
  const t = tally('host check: injected strings (terminal, TAP)')
  const good = pair('reference')
  const st = put('state-i.json', JSON.stringify(good.state))
  const evil = ['\r', '\u001b[31m', '\u001b]0;x\u0007', '\u2028', '\u2029', '\u0085', '\u009b2J', '\nok 99 - x', '# SKIP', '\\', '\u0000', '\u007f']
  const { Parser } = await import('tap-parser')
  for (let i = 0; i < n; i++) {
    const rep = JSON.parse(JSON.stringify(good.report))
    const c = rep.cpus[rnd(rep.cpus.length)]
    const s = Array.from({ length: 1 + rnd(4) }, () => pick(evil) + 'x').join('').slice(0, 60)
    for (const x of Object.keys(c)) if (x !== 'cpu') delete c[x]
    Object.assign(c, { outcome: 'fault', fault: { step: s, errno: 'EIO', message: s + s } })
    const fmt = pick([[], ['--tap'], ['--tap', '--tap-version', '13'], ['--no-color']])
    const r = await call(checkMain, ['--guest-report', put('inj.json', JSON.stringify(rep)), '--vmm-state', st, ...fmt])
    t.tried++
    if (r.code === 'crash') { note(t, 'crashes', r.err); continue }
    if (RAW.test(r.out) || RAW.test(r.err)) note(t, 'safety', `raw ${JSON.stringify(s)} in ${fmt.join(' ') || 'text'}`)
    if (fmt[0] === '--tap') {
      const p = new Parser({ strict: true })
      const done = new Promise<{ ok: boolean }>(res => p.on('complete', res))
      p.end(r.out)
      const res = await done
      if (res.ok !== (r.code === 0)) note(t, 'wrongExit', `exit ${r.code} but tap-parser ok=${res.ok} for ${JSON.stringify(s)}`)
    }
  }
}

async function factsFiles(n: number) {
  const t = tally('guest probe --replay: mutated facts files')
  const good = fs.readFileSync(new URL('../guest/fixtures/sapphire-rapids-guest-enum.json', import.meta.url), 'utf8')
  for (let i = 0; i < n; i++) {
    const text = mutateText(good)
    const r = await call(probeMain as never, ['--replay', put('f.json', text), ...pick([[], ['--json'], ['--tap']])])
    t.tried++
    if (r.code === 'crash') note(t, 'crashes', r.err)
    else if (r.ms > 5000) note(t, 'hangs', `${r.ms}`)
    let valid = true
    try { JSON.parse(text) } catch { valid = false }
    if (!valid && r.code !== 2) note(t, 'wrongExit', `invalid JSON gave ${r.code}`)
  }
}

function yamlFiles(n: number) {
  const t = tally('YAML: mutated scenarios and CPU models, bombs, aliases, duplicate keys')
  const cases = fs.readdirSync(new URL('../scenarios/cases/', import.meta.url)).filter(f => f.endsWith('.yaml')).map(f => fs.readFileSync(new URL(`../scenarios/cases/${f}`, import.meta.url), 'utf8'))
  const cpus = fs.readdirSync(new URL('../scenarios/cpus/', import.meta.url)).filter(f => f.endsWith('.yaml')).map(f => fs.readFileSync(new URL(`../scenarios/cpus/${f}`, import.meta.url), 'utf8'))
  const bomb = ['a: &a [x,x,x,x,x,x,x,x,x]', ...'bcdefghij'.split('').map((c, i) => `${c}: &${c} [${Array(9).fill('*' + 'abcdefghij'[i]).join(',')}]`)].join('\n')
  const special = [bomb, 'id: *undefined\n', Array.from({ length: 40000 }, (_, i) => `k${i}: ${i}`).join('\n') + '\nk1: dup\n', 'a: !!binary x\n', '%YAML 9.9\n---\na: 1\n', 'a: [' + '['.repeat(5000)]
  for (let i = 0; i < n; i++) {
    const cpu = rnd(2) === 0
    const text = i < special.length ? special[i]! : (() => { const s = pick(cpu ? cpus : cases); const k = rnd(4); return k === 0 ? s.slice(0, rnd(s.length)) : k === 1 ? s.replace(/\n/, `\n${pick(['&a ', '*a ', '<<: *a\n', 'id: dup\n', '\t', ': :'])}`) : k === 2 ? s + '\n' + s : mutateText(s) })()
    const f = put(`y${i % 3}.yaml`, text)
    const t0 = Date.now()
    try {
      const r = (cpu ? loadCpuFile : loadScenarioFile)(f)
      if (!r.ok && !r.errors.every(e => Number.isInteger(e.line) && e.line >= 1)) note(t, 'wrongExit', 'error without a line')
    } catch (e) { note(t, 'crashes', String((e as Error).stack)) }
    if (Date.now() - t0 > 5000) note(t, 'hangs', `${Date.now() - t0} ms`)
    t.tried++
  }
}

function devicesAsInputs() {
  const t = tally('devices, FIFOs, directories as inputs (real processes)')
  const fifo = join(dir, 'fifo'); spawnSync('mkfifo', [fifo])
  const zl = join(dir, 'zlink.yaml'); try { fs.symlinkSync('/dev/zero', zl) } catch { /* exists */ }
  const st = put('state-d.json', JSON.stringify(pair('reference').state)), rep = put('rep-d.json', JSON.stringify(pair('reference').report))
  const bin = new URL('../dist/virtmiti.mjs', import.meta.url).pathname
  for (const bad of ['/dev/zero', '/dev/urandom', fifo, zl, dir]) {
    for (const argv of [
      ['host', 'check', '--guest-report', bad, '--vmm-state', st], ['host', 'check', '--guest-report', rep, '--vmm-state', bad],
      ['host', 'expect', '--guest-report', bad, '--caps', 'none'], ['guest', 'probe', '--replay', bad],
      ['scenarios', 'run', '--tier', 'sim', bad],
    ]) {
      const r = spawnSync(process.execPath, [bin, ...argv], { encoding: 'utf8', timeout: 10_000 })
      t.tried++
      if (r.error || r.signal) note(t, 'hangs', `${argv.join(' ')}: ${r.error ?? r.signal}`)
      else if (/\n\s+at .+:\d+/.test(r.stderr)) note(t, 'crashes', r.stderr)
      else if (r.status !== 2) note(t, 'wrongExit', `${argv.join(' ')}: exit ${r.status} ${r.stderr.slice(0, 200)}`)
    }
  }
}

function symlinkedOutputs() {
  const t = tally('report --out through symlinks, FIFOs, devices (real processes, fake tree)')
  const gbin = new URL('../dist/virtmiti-guest.cjs', import.meta.url).pathname
  for (const [name, make] of [
    ['msr-link', (p: string) => fs.symlinkSync('/dev/cpu/0/cpuid', p)], ['zero-link', (p: string) => fs.symlinkSync('/dev/zero', p)],
    ['fifo', (p: string) => spawnSync('mkfifo', [p])], ['fifo-link', (p: string) => { spawnSync('mkfifo', [p + '.f']); fs.symlinkSync(p + '.f', p) }],
    ['file-link', (p: string) => { fs.writeFileSync(p + '.victim', 'keep'); fs.symlinkSync(p + '.victim', p) }], ['dangling', (p: string) => fs.symlinkSync(join(dir, 'nowhere'), p)],
    ['missing-dir', () => {}], ['dir', (p: string) => fs.mkdirSync(p)],
  ] as const) {
    const tree = join(dir, `tree-${name}`)
    spawnSync(process.execPath, ['-e', `import(${JSON.stringify(new URL('../bench/fake-tree.mjs', import.meta.url).pathname)}).then(m => m.buildTree(${JSON.stringify(tree)}, 2))`])
    const out = name === 'missing-dir' ? join(dir, 'no/such/r.json') : join(dir, `out-${name}`)
    make(out)
    const before = fs.readFileSync(join(tree, 'dev/cpu/0/msr'))
    const r = spawnSync(process.execPath, [gbin, 'report', '--dev-root', tree, '--out', out], { encoding: 'utf8', timeout: 10_000 })
    t.tried++
    if (r.error || r.signal) note(t, 'hangs', `${name}: ${r.error ?? r.signal}`)
    else if (r.status !== 2) note(t, 'wrongExit', `${name}: exit ${r.status}`)
    if (!fs.readFileSync(join(tree, 'dev/cpu/0/msr')).equals(before)) note(t, 'safety', `${name}: MSRs written although --out was refused`)
    if (name === 'file-link' && fs.readFileSync(out + '.victim', 'utf8') !== 'keep') note(t, 'safety', 'wrote through the symlink')
  }
}

await checkInputs(N)
if (process.env.ADV_ONLY_CHECK) { for (const [c, t] of tallies) process.stdout.write(`${c}: ${JSON.stringify(t)}\n`); process.exit(0) }
await lyingReports(Math.max(50, N / 4))
await injected(Math.max(50, N / 4))
await factsFiles(Math.max(50, N / 4))
yamlFiles(Math.max(50, N / 10))
devicesAsInputs()
symlinkedOutputs()
let total = { tried: 0, crashes: 0, hangs: 0, wrongExit: 0, safety: 0 }
for (const [cls, t] of tallies) {
  process.stdout.write(`${cls}: ${t.tried} tried, ${t.crashes} crashes, ${t.hangs} hangs, ${t.wrongExit} wrong exit codes, ${t.safety} safety violations\n${t.examples.map(e => `    ${e}\n`).join('')}`)
  total = { tried: total.tried + t.tried, crashes: total.crashes + t.crashes, hangs: total.hangs + t.hangs, wrongExit: total.wrongExit + t.wrongExit, safety: total.safety + t.safety }
}
process.stdout.write(`TOTAL: ${JSON.stringify(total)}\n`)
fs.rmSync(dir, { recursive: true, force: true })
