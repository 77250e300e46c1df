// In-process timing of `guest probe --dev-root TREE` (bench/probe.mjs bundles this with esbuild and
// runs it): the whole command (probe, decide, verdict, render) without process start-up, so the
// per-CPU cost is not drowned by start-up noise on a loaded machine.
// argv: TREE_1CPU TREE_256CPU ROUNDS [--json]
import { main } from '../guest/cli/probe.js'

const [t1, tN, roundsArg, ...rest] = process.argv.slice(2)
if (!t1 || !tN) { process.stderr.write('usage: per-cpu TREE_1 TREE_N ROUNDS [--json]\n'); process.exit(2) }
const rounds = Number(roundsArg) || 15
const sink = { out: () => {}, err: () => {} }

/** Wall and CPU (user + sys of this process, process.cpuUsage) microseconds of one command. */
async function once(root: string): Promise<[number, number]> {
  const c0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  await main(['--dev-root', root, ...rest], { io: sink })
  const wall = Number(process.hrtime.bigint() - t0) / 1e3
  const c = process.cpuUsage(c0)
  return [wall, c.user + c.system]
}

const one: number[] = [], many: number[] = [], oneCpu: number[] = [], manyCpu: number[] = []
const take = async (root: string, w: number[], c: number[]) => { const [a, b] = await once(root); w.push(a); c.push(b) }
for (let i = 0; i < 3; i++) { await once(t1); await once(tN) } // warm-up: JIT and page cache
for (let r = 0; r < rounds; r++) {
  if (r % 2) { await take(t1, one, oneCpu); await take(tN, many, manyCpu) } else { await take(tN, many, manyCpu); await take(t1, one, oneCpu) }
}
process.stdout.write(JSON.stringify({ oneUs: one, manyUs: many, oneCpuUs: oneCpu, manyCpuUs: manyCpu }) + '\n')
