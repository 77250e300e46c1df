// Descriptors (issue 15 item 4, "Hardening" item 7): each CPU's cpuid/msr descriptors are closed
// once its work is done, so at most one CPU's are open at a time, and every command leaves none
// behind. Counted in /proc/self/fd of this process, over a fake 64-CPU tree (bench/fake-tree.mjs)
// with the real DevcpuPlatform; the spy only counts, it answers nothing itself.
import t from 'tap'
import * as fs from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildTree } from '../../bench/fake-tree.mjs'
import { DevcpuPlatform } from '../devcpu.js'
import type { Platform } from '../platform.js'
import { main as probeMain } from './probe.js'
import { main as reportMain } from './report.js'
import { main as selftestMain } from './selftest.js'

const NCPU = 64
const fdsHere = (): number => fs.readdirSync('/proc/self/fd').length
const skip = fs.existsSync('/proc/self/fd') ? false : 'no /proc/self/fd to count descriptors'
const dir = fs.mkdtempSync(join(tmpdir(), 'virtmiti-fds-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
const quiet = { out: () => {}, err: () => {} }

/** A DevcpuPlatform that records the most descriptors this process held during any device access. */
function spied(root: string): { platform: Platform & { close(): void }; peak: () => number } {
  const d = new DevcpuPlatform({ root, modprobe: false })
  let peak = 0
  const after = <T>(v: T): T => { peak = Math.max(peak, fdsHere()); return v }
  const platform = {
    kind: d.kind,
    cpus: () => d.cpus(),
    cpuid: (c: number, l: number, s: number) => after(d.cpuid(c, l, s)),
    rdmsr: (c: number, i: number) => after(d.rdmsr(c, i)),
    wrmsr: (c: number, i: number, v: bigint) => after(d.wrmsr(c, i, v)),
    readText: (p: string) => d.readText(p),
    release: (c: number) => d.release(c),
    close: () => d.close(),
  }
  return { platform, peak: () => peak }
}

t.test(`probe and report over ${NCPU} CPUs hold one CPU's descriptors at a time`, { skip }, async t => {
  const base = fdsHere()
  const p = spied(buildTree(join(dir, 'probe'), NCPU))
  t.equal(await probeMain(['--json'], { io: quiet, platform: p.platform }), 0)
  t.ok(p.peak() <= base + 2, `probe: at most ${base} + 2 open during the run (peak ${p.peak()})`)
  t.equal(fdsHere(), base, 'probe: none left open')

  const r = spied(buildTree(join(dir, 'report'), NCPU))
  const { probe } = await import('../probe.js')
  const { decide } = await import('../../contract/decide.js')
  t.equal(await reportMain(['--json'], { platform: r.platform, probe: x => probe(x), decide, now: () => new Date(0), ...quiet }), 0)
  t.ok(r.peak() <= base + 2, `report: at most ${base} + 2 open during the run (peak ${r.peak()})`)
  r.platform.close() // an injected platform is its caller's to close
  t.equal(fdsHere(), base, 'report: none left open')
})

t.test('report and selftest on their own platform (--dev-root) leave no descriptor open', { skip }, async t => {
  const base = fdsHere()
  t.equal(await reportMain(['--json', '--dev-root', buildTree(join(dir, 'report-own'), 8)], { ...quiet }), 0)
  t.equal(fdsHere(), base, 'report --dev-root: its reader is closed')
  // In this process (no supervisor: this test runner's argv names no selftest), so its own platform.
  const rc = await selftestMain(['--dev-root', buildTree(join(dir, 'selftest-own'), 4)], { ...quiet })
  t.ok([0, 1, 3, 4].includes(rc), `selftest ran (exit ${rc})`)
  t.equal(fdsHere(), base, 'selftest --dev-root: its reader is closed')
})
