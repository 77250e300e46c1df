// Issue 14 item 2: signals sent to a real `guest selftest` process on a slow fake device. The
// command runs as it does from the guest bundle (supervisor + runner child + --recover child, all
// from one file: slow-child.ts bundled), on a --dev-root tree whose accesses take SLOW ms each.
// Every case checks the bytes of the virtual MSRs in the tree: back to what they were.
import t from 'tap'
import * as fs from 'node:fs'
import { join, dirname } from 'node:path'
import { tmpdir } from 'node:os'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { buildTree } from '../../bench/fake-tree.mjs'

const HERE = dirname(fileURLToPath(import.meta.url))
const tmp = fs.mkdtempSync(join(tmpdir(), 'virtmiti-supervise-'))
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }))
const entry = join(tmp, 'slow-child.mjs')
t.before(async () => {
  await build({ entryPoints: [join(HERE, 'slow-child.ts')], outfile: entry, bundle: true, platform: 'node', format: 'esm', target: 'node18', logLevel: 'warning' })
})

const VIRT = 0x50000000
/** The bytes the tree holds for 0x50000000-0x50000002 (overlapping 8-byte records, bench/fake-tree.mjs). */
const virtBytes = (root: string, cpu: number) => {
  const b = Buffer.alloc(10); const fd = fs.openSync(join(root, `dev/cpu/${cpu}/msr`), 'r'); fs.readSync(fd, b, 0, 10, VIRT); fs.closeSync(fd); return b.toString('hex')
}
const ctrlOf = (root: string, cpu: number) => { const b = Buffer.alloc(8); const fd = fs.openSync(join(root, `dev/cpu/${cpu}/msr`), 'r'); fs.readSync(fd, b, 0, 8, VIRT + 2); fs.closeSync(fd); return b.readBigUInt64LE(0) }

let seq = 0
function tree() {
  const root = buildTree(join(tmp, `tree${seq++}`), 2)
  // CTRL as a guest kernel left it: 3 on cpu 0, 1 on cpu 1 (the selftest changes both).
  for (const [cpu, v] of [[0, 3n], [1, 1n]] as const) { const b = Buffer.alloc(8); b.writeBigUInt64LE(v); const fd = fs.openSync(join(root, `dev/cpu/${cpu}/msr`), 'r+'); fs.writeSync(fd, b, 0, 8, VIRT + 2); fs.closeSync(fd) }
  const journal = join(tmp, `journal${seq}`)
  return { root, journal, before: [virtBytes(root, 0), virtBytes(root, 1)] }
}

interface Run { code: number | null; signal: string | null; out: string; err: string; ms: number }
function start(args: string[], env: Record<string, string>) {
  const t0 = Date.now()
  const p = spawn(process.execPath, [entry, 'selftest', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = '', err = ''
  p.stdout.on('data', d => { out += d }); p.stderr.on('data', d => { err += d })
  const done = new Promise<Run>(res => p.on('close', (code, signal) => res({ code, signal, out, err, ms: Date.now() - t0 })))
  return { p, done }
}
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))
async function journalAppears(dir: string, ms = 10_000) {
  const t0 = Date.now()
  while (Date.now() - t0 < ms) { if (fs.existsSync(dir) && fs.readdirSync(dir).some(n => n.endsWith('.json'))) return true; await sleep(20) }
  return false
}
const SLOW = { VIRTMITI_SLOW_MS: '150', VIRTMITI_SLOW_AFTER: '60' }

for (const [sig, num] of [['SIGTERM', 15], ['SIGHUP', 1], ['SIGQUIT', 3], ['SIGINT', 2]] as const) {
  t.test(`${sig} during a slow selftest: acted on within the deadline, Bail out!, every value restored, exit ${128 + num}`, async t => {
    const { root, journal, before } = tree()
    const { p, done } = start(['--dev-root', root, '--journal-dir', journal, '--access-deadline-ms', '1500'], SLOW)
    t.ok(await journalAppears(journal), 'journal written before the first change')
    await sleep(400)
    const t0 = Date.now()
    p.kill(sig)
    const r = await done
    const reacted = Date.now() - t0
    t.equal(r.code, 128 + num, r.err)
    t.ok(reacted < 6000, `ended ${reacted} ms after ${sig} (each access takes 150 ms; a test makes up to 248)`)
    t.match(r.out, new RegExp(`^TAP version 14\\nBail out! interrupted by ${sig}; restored`, 'm'))
    t.same([virtBytes(root, 0), virtBytes(root, 1)], before, 'MSR bytes as before the run')
    t.equal(ctrlOf(root, 0), 3n); t.equal(ctrlOf(root, 1), 1n)
    t.same(fs.readdirSync(journal), [], 'journal removed')
  })
}

t.test('a device access past the deadline: the runner is killed, values restored from the journal, Bail out!, exit 3', async t => {
  const { root, journal, before } = tree()
  const { done } = start(['--dev-root', root, '--journal-dir', journal, '--access-deadline-ms', '800'], { VIRTMITI_SLOW_MS: '5000', VIRTMITI_SLOW_AFTER: '150' })
  const r = await done
  t.equal(r.code, 3, r.err)
  t.ok(r.ms < 8000, `ended after ${r.ms} ms (an access takes 5 s)`)
  t.match(r.out, /^Bail out! a device access took longer than the 800 ms deadline; restored \(guest selftest --recover: restored \d+ value/m, 'restored from the journal by the --recover child')
  t.same([virtBytes(root, 0), virtBytes(root, 1)], before)
  t.same(fs.readdirSync(journal), [], 'journal used and removed')
})

t.test('SIGKILL of supervisor and runner leaves a journal; --recover puts every value back, then the journal is gone', async t => {
  const { root, journal, before } = tree()
  const { p, done } = start(['--dev-root', root, '--journal-dir', journal], SLOW)
  t.ok(await journalAppears(journal))
  // Kill both the moment the runner has changed a value (each access takes 150 ms from here).
  const t0 = Date.now()
  while (Date.now() - t0 < 20_000 && virtBytes(root, 0) === before[0] && virtBytes(root, 1) === before[1]) await sleep(5)
  const doc = JSON.parse(fs.readFileSync(join(journal, fs.readdirSync(journal)[0]!), 'utf8'))
  process.kill(doc.pid, 'SIGKILL'); p.kill('SIGKILL')
  await done
  t.notSame([virtBytes(root, 0), virtBytes(root, 1)], before, 'values were left changed')
  t.equal(doc.originals.length, 6, 'originals of CTRL, VIRTUAL_ENUMERATION and MITI_ENUM on 2 CPUs (SPEC_CTRL not opted in)')
  const rec = spawnSync(process.execPath, [entry, 'selftest', '--recover', '--dev-root', root, '--journal-dir', journal], { encoding: 'utf8', timeout: 20_000 })
  t.equal(rec.status, 0, rec.stderr)
  t.match(rec.stdout, /restored \d+ value\(s\)/)
  t.same([virtBytes(root, 0), virtBytes(root, 1)], before)
  t.same(fs.readdirSync(journal), [])
  const again = spawnSync(process.execPath, [entry, 'selftest', '--recover', '--dev-root', root, '--journal-dir', journal], { encoding: 'utf8', timeout: 20_000 })
  t.equal(again.status, 0)
  t.match(again.stdout, /nothing to restore/)
})

t.test('the next run restores first from a journal a killed run left', async t => {
  const { root, journal, before } = tree()
  fs.mkdirSync(journal, { mode: 0o700 })
  const { journalPath } = await import('./journal.js')
  // A journal as a killed run leaves it, with CTRL changed on cpu 0.
  fs.writeFileSync(journalPath(journal, root), JSON.stringify({ schema: 'virtmiti/selftest-journal/v1', devRoot: fs.realpathSync(root), pid: 1, originals: [{ cpu: 0, index: VIRT + 2, value: '0x3' }] }))
  const b = Buffer.alloc(8); const fd = fs.openSync(join(root, 'dev/cpu/0/msr'), 'r+'); fs.writeSync(fd, b, 0, 8, VIRT + 2); fs.closeSync(fd)
  const r = await start(['--dev-root', root, '--journal-dir', journal], {}).done
  t.match(r.err, /restored what an earlier, interrupted run changed/)
  t.same([virtBytes(root, 0), virtBytes(root, 1)], before)
  t.match(r.out, /^TAP version 14\n1\.\.10/, 'then the run itself')
})

t.test('a journal that names an MSR off the rule table, or another tree, is refused: nothing written, exit 2', async t => {
  const { root, journal, before } = tree()
  fs.mkdirSync(journal, { mode: 0o700 })
  const { journalPath } = await import('./journal.js')
  for (const bad of [{ cpu: 0, index: 0x10a, value: '0x0' }, { cpu: 0, index: 0x48, value: '0x1ffffffffffffffff' }]) {
    fs.writeFileSync(journalPath(journal, root), JSON.stringify({ schema: 'virtmiti/selftest-journal/v1', devRoot: fs.realpathSync(root), pid: 1, originals: [bad] }))
    const r = spawnSync(process.execPath, [entry, 'selftest', '--recover', '--dev-root', root, '--journal-dir', journal], { encoding: 'utf8', timeout: 20_000 })
    t.equal(r.status, 2, r.stderr)
    t.match(r.stderr, /journal kept, not used/)
  }
  fs.writeFileSync(journalPath(journal, root), JSON.stringify({ schema: 'virtmiti/selftest-journal/v1', devRoot: '/', pid: 1, originals: [] }))
  t.equal(spawnSync(process.execPath, [entry, 'selftest', '--recover', '--dev-root', root, '--journal-dir', journal], { encoding: 'utf8' }).status, 2, 'a journal of another device tree')
  t.same([virtBytes(root, 0), virtBytes(root, 1)], before)
})

t.test('SIGUSR1 never opens the inspector in the root process; the run goes on', async t => {
  const { root, journal } = tree()
  const { p, done } = start(['--dev-root', root, '--journal-dir', journal], { VIRTMITI_SLOW_MS: '3', VIRTMITI_SLOW_AFTER: '60' })
  t.ok(await journalAppears(journal))
  p.kill('SIGUSR1')
  await sleep(300)
  // 9229 = 0x240D: no socket in LISTEN (state 0A) on it.
  const tcp = ['/proc/net/tcp', '/proc/net/tcp6'].map(f => { try { return fs.readFileSync(f, 'utf8') } catch { return '' } }).join('')
  t.notMatch(tcp, /:240D [0-9A-F:]+ 0A /, 'nothing listens on 127.0.0.1:9229')
  const r = await done
  t.equal(r.code, 1, 'the run finished normally (the fake tree accepts writes the VMM must fault)')
  t.match(r.err, /SIGUSR1 ignored/)
  t.match(r.out, /^ok 10 - restore: /m)
})
