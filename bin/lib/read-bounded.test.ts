// bin/lib/read-bounded.ts (issue 14 item 4): every input is bounded, only regular files are read,
// FIFOs and devices are refused at once, and standard input has a deadline without spinning.
import t from 'tap'
import * as fs from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { readBounded, readBoundedSync } from './read-bounded.js'
import { InputError } from './cli.js'

const dir = fs.mkdtempSync(join(tmpdir(), 'virtmiti-rb-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

t.test('a regular file within the limit is read; over the limit, refused without reading it all', async t => {
  const f = join(dir, 'a.json'); fs.writeFileSync(f, 'x'.repeat(1000))
  t.same(readBoundedSync(f, { maxBytes: 1000, what: 'input' }), { ok: true, text: 'x'.repeat(1000) })
  t.match(readBoundedSync(f, { maxBytes: 999, what: 'input' }), { ok: false, error: /1000 bytes is larger than the 999-byte limit/ })
  let thrown: unknown
  try { readBounded(f, { maxBytes: 10, what: 'input' }) } catch (e) { thrown = e }
  t.ok(thrown instanceof InputError, 'readBounded throws an InputError (exit 2)')
})

t.test('devices, FIFOs, directories and symlinks to them are refused at once', async t => {
  const fifo = join(dir, 'fifo'); spawnSync('mkfifo', [fifo])
  const link = join(dir, 'zero'); fs.symlinkSync('/dev/zero', link)
  for (const [p, re] of [['/dev/zero', /character device/], ['/dev/urandom', /character device/], [link, /character device/], [fifo, /FIFO/], [dir, /directory/], [join(dir, 'none'), /cannot open \(ENOENT\)/]] as const) {
    const start = Date.now()
    const r = readBoundedSync(p, { maxBytes: 1 << 20, what: 'input' })
    t.match(r, { ok: false, error: re }, p)
    t.ok(Date.now() - start < 500, `${p}: no wait`)
  }
  t.match(readBoundedSync('-', { maxBytes: 10, what: 'input' }), { ok: false, error: /cannot open/ }, '"-" is a file name unless stdin is allowed')
})

// A child reads its standard input, which is a pipe kept open and never written: it must give up
// at the deadline, sleeping rather than spinning on EAGAIN.
const CHILD = `
import { readBoundedSync } from ${JSON.stringify(new URL('./read-bounded.ts', import.meta.url).pathname)}
const c0 = process.cpuUsage(), t0 = Date.now()
const r = readBoundedSync('-', { maxBytes: 1000, what: 'stdin', allowStdin: true, deadlineMs: Number(process.argv[2]) })
const c = process.cpuUsage(c0)
process.stdout.write(JSON.stringify({ r, ms: Date.now() - t0, cpuMs: (c.user + c.system) / 1000 }))
`
function child(deadline: number, feed?: (w: NodeJS.WritableStream) => void) {
  const f = join(dir, `child${deadline}.mts`); fs.writeFileSync(f, CHILD)
  const p = spawn(process.execPath, [...process.execArgv, f, String(deadline)], { stdio: ['pipe', 'pipe', 'inherit'] })
  let out = ''
  p.stdout.on('data', d => { out += d })
  feed?.(p.stdin)
  return new Promise<{ r: { ok: boolean; text?: string; error?: string }; ms: number; cpuMs: number }>(res => p.on('close', () => { p.stdin.destroy(); res(JSON.parse(out)) }))
}

t.test('standard input that never ends: refused at the deadline, without spinning', async t => {
  const { r, ms, cpuMs } = await child(600)
  t.match(r, { ok: false, error: /deadline/ })
  t.ok(ms >= 550 && ms < 3000, `gave up after ${ms} ms`)
  t.ok(cpuMs < 300, `${cpuMs} ms of CPU while waiting 600 ms (a spin on EAGAIN would use all of it)`)
})

t.test('standard input that is written and closed is read whole', async t => {
  const { r } = await child(5000, w => { w.write('{"a":'); setTimeout(() => w.end('1}'), 100) })
  t.same(r, { ok: true, text: '{"a":1}' })
})

t.test('standard input over the limit is refused while reading', async t => {
  const { r } = await child(5000, w => { w.end('y'.repeat(5000)) })
  t.match(r, { ok: false, error: /larger than the 1000-byte limit/ })
})
