// Colour (issue 12): chalk's semantics with NO_COLOR, FORCE_COLOR and TERM=dumb, in the precedence
// bin/lib/color.ts documents; every one of the 9 commands accepts --no-color; and the real CLI on a
// real pseudo-terminal (script(1)) colours only when it should.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildSync } from 'esbuild'
import { fileURLToPath } from 'node:url'
import { colorLevel, makeColor } from './color.js'
import { takeNoColor } from '../dispatch.js'
import { TABLE } from '../commands.js'

const repo = join(fileURLToPath(import.meta.url), '..', '..', '..')
const fixture = join(repo, 'guest', 'fixtures', 'ice-lake-sp-guest-noenum.json')
const ESC = /\u001b\[/

t.test('the NO_COLOR / FORCE_COLOR / TERM matrix, on a TTY and not', async t => {
  // [env, on a TTY, not a TTY]
  const rows: [Record<string, string>, number, number][] = [
    [{}, 1, 0],
    [{ NO_COLOR: '1' }, 0, 0],
    [{ NO_COLOR: '' }, 1, 0], // no-color.org: present and not empty
    [{ FORCE_COLOR: '0' }, 0, 0],
    [{ FORCE_COLOR: 'false' }, 0, 0],
    [{ FORCE_COLOR: '1' }, 1, 1],
    [{ FORCE_COLOR: '2' }, 2, 2],
    [{ FORCE_COLOR: '3' }, 3, 3],
    [{ FORCE_COLOR: '' }, 1, 1],
    [{ FORCE_COLOR: 'true' }, 1, 1],
    [{ TERM: 'dumb' }, 0, 0],
    [{ TERM: 'xterm-256color' }, 1, 0],
    [{ TERM: 'dumb', FORCE_COLOR: '1' }, 1, 1], // FORCE_COLOR beats TERM=dumb (supports-color)
    [{ NO_COLOR: '1', FORCE_COLOR: '3' }, 0, 0], // NO_COLOR beats FORCE_COLOR
    [{ FORCE_COLOR: '0', TERM: 'xterm' }, 0, 0],
  ]
  for (const [env, tty, pipe] of rows) {
    const name = JSON.stringify(env)
    t.equal(colorLevel({ env, isTTY: true }), tty, `${name} on a TTY`)
    t.equal(colorLevel({ env, isTTY: false }), pipe, `${name} not a TTY`)
    t.equal(colorLevel({ env: { ...env, FORCE_COLOR: env.FORCE_COLOR ?? '3' }, isTTY: true, noColor: true }), 0, `${name}: --no-color wins`)
  }
  t.equal(makeColor({ env: { FORCE_COLOR: '1' }, stream: { isTTY: false } }).red('x'), '\u001b[31mx\u001b[39m')
  t.equal(makeColor({ env: {}, stream: { isTTY: true }, noColor: true }).red('x'), 'x')
})

t.test('--no-color is taken before the command sees its options, up to "--"', async t => {
  const saved = process.env.NO_COLOR
  t.teardown(() => { if (saved === undefined) delete process.env.NO_COLOR; else process.env.NO_COLOR = saved })
  delete process.env.NO_COLOR
  t.same(takeNoColor(['--json']), ['--json'])
  t.equal(process.env.NO_COLOR, undefined)
  t.same(takeNoColor(['--no-color', '--json', '--', '--no-color']), ['--json', '--', '--no-color'])
  t.equal(process.env.NO_COLOR, '1')
})

// The CLI from source, bundled once here (as make bundle does; koffi stays external): a child
// process per case with node-tap's TypeScript loader costs seconds each.
const bundleDir = fs.mkdtempSync(join(tmpdir(), 'virtmiti-color-'))
t.teardown(() => fs.rmSync(bundleDir, { recursive: true, force: true }))
const bundle = join(bundleDir, 'virtmiti.mjs')
buildSync({
  entryPoints: [join(repo, 'bin', 'virtmiti.ts')], bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'warning',
  external: ['koffi'], banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
})
const BASE_ENV = { NO_COLOR: undefined, FORCE_COLOR: undefined, TERM: 'xterm' }
function cli(args: string[], env: Record<string, string | undefined> = {}) {
  const e: Record<string, string> = {}
  for (const [k, v] of Object.entries({ ...process.env, ...BASE_ENV, ...env })) if (v !== undefined) e[k] = v
  return spawnSync(process.execPath, [bundle, ...args], { encoding: 'utf8', env: e, timeout: 60_000 })
}

t.test('all 10 commands accept --no-color', async t => {
  const cmds = Object.entries(TABLE).flatMap(([g, c]) => Object.keys(c).map(n => [g, n]))
  t.equal(cmds.length, 10, 'guest probe/report/selftest/batch/install-service, host caps/expect/vmm/check, scenarios run')
  for (const [g, n] of cmds) {
    const args = g === 'host' && n === 'vmm' ? ['host', 'vmm', 'run', '--no-color', '--help'] : [g!, n!, '--no-color', '--help']
    const r = cli(args)
    t.equal(r.status, 0, `${args.join(' ')}: exit 0 (${r.stderr.trim().split('\n')[0] ?? ''})`)
    t.notMatch(r.stdout, ESC, `${g} ${n}: no colour`)
  }
})

t.test('guest probe on a pseudo-terminal: colour by default, none with NO_COLOR, FORCE_COLOR=0, TERM=dumb, --no-color', async t => {
  const script = spawnSync('script', ['--version'], { encoding: 'utf8' })
  if (script.status !== 0) { t.pass('no pty', { skip: 'script(1) not available' }); return }
  const onPty = (env: Record<string, string | undefined>, extra: string[] = []) => {
    const cmd = [process.execPath, bundle, 'guest', 'probe', '--replay', fixture, ...extra].map(a => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
    const e: Record<string, string> = {}
    for (const [k, v] of Object.entries({ ...process.env, ...BASE_ENV, ...env })) if (v !== undefined) e[k] = v
    return spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: e, timeout: 60_000 }).stdout
  }
  t.match(onPty({}), ESC, 'a TTY: colour')
  t.notMatch(onPty({ NO_COLOR: '1' }), ESC, 'NO_COLOR=1')
  t.notMatch(onPty({ FORCE_COLOR: '0' }), ESC, 'FORCE_COLOR=0')
  t.notMatch(onPty({ TERM: 'dumb' }), ESC, 'TERM=dumb')
  t.notMatch(onPty({}, ['--no-color']), ESC, '--no-color')
  t.match(onPty({ TERM: 'dumb', FORCE_COLOR: '1' }), ESC, 'FORCE_COLOR=1 beats TERM=dumb')
  // Not a TTY: no colour, and no wrapping (lines longer than 80 columns stay whole).
  const piped = cli(['guest', 'probe', '--replay', fixture])
  t.notMatch(piped.stdout, ESC)
  t.ok(piped.stdout.split('\n').some(l => l.length > 120), 'a pipe gets unwrapped lines')
  t.match(cli(['guest', 'probe', '--replay', fixture], { FORCE_COLOR: '1' }).stdout, ESC, 'FORCE_COLOR=1 through a pipe')
})
