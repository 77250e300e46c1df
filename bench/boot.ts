// `make bench` (issue 15 item 4): boot to verdict against a bare boot of the same kernel and CPU
// model whose /init only powers off (goal <= 1.5x), and what each speed-up buys:
//   bare        a busybox-only initramfs whose /init is `poweroff -f`, the extracted kernel
//   verdict     the tier's image and default command list (one agent process), the extracted kernel
//   verdict-3   the same with the three agent commands as three node processes (before issue 15)
//   node-floor  the tier's image whose only command is `node -e 0`: what any node-based agent pays
//               before its first line (the goal's floor under TCG)
//   *-bzimage   bare and verdict booting the vmlinuz itself (the kernel decompresses under TCG)
// One QEMU at a time (TCG on a shared 2-core machine), variants alternating per round so that load
// hits each alike; wall time is spawn to QEMU exit. Numbers, never assertions; the load average is
// printed with them. Exit 4 when QEMU, a kernel or the agent bundle is missing (the tier's skip code).
// Run: esbuild bench/boot.ts --bundle --platform=node --format=esm --packages=external
//      --outfile=.cache/boot-bench.mjs && node .cache/boot-bench.mjs [--rounds N] [--cpu MODEL]
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { bootGuest, type BootResult } from '../host/qemu/boot.js'
import { defaultCommands, type GuestCommand } from '../host/qemu/commands.js'
import { fileURLToPath } from 'node:url'
import { buildImage } from '../host/qemu/image.js'
import { bootableKernel } from '../host/qemu/kernel-extract.js'
import { cachedMatrixKernel } from '../host/qemu/tier.js'

const args = process.argv.slice(2)
const opt = (name: string, dflt: string): string => { const i = args.indexOf(name); return i >= 0 && args[i + 1] ? args[i + 1]! : dflt }
const ROUNDS = Math.max(1, Number(opt('--rounds', '3')) || 3)
const CPU = opt('--cpu', 'Skylake-Server')
const GOAL = 1.5

// One level below the repository both as bench/boot.ts and as .cache/boot-bench.mjs (make bench).
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const AGENT_BUNDLE = path.join(ROOT, 'dist', 'virtmiti-guest.cjs')
const skip = (why: string): never => { process.stdout.write(JSON.stringify({ skipped: why }) + '\n'); process.exit(4) }
const qemu = spawnSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' })
if (qemu.error || qemu.status !== 0) skip('qemu-system-x86_64 not found (apt-get install qemu-system-x86)')
if (!fs.existsSync(AGENT_BUNDLE)) skip(`${AGENT_BUNDLE} not built (make bundle)`)
// The matrix's first kernel from the kernel cache (never /boot; .ci/setup fetches it).
const mk = cachedMatrixKernel()
if (!mk.ok) skip(`${mk.error} (bash .ci/setup fetches the matrix kernels)`)
const kernel = (mk as Extract<typeof mk, { ok: true }>).kernel
const img = buildImage(AGENT_BUNDLE, kernel, path.join(ROOT, '.cache', 'qemu'), process.env, path.join(ROOT, 'host', 'qemu', 'image', 'build-initramfs.sh'))
if (!img.ok || !img.image) skip(`no guest image: ${img.error}`)
const vmlinuz = kernel.vmlinuz
const direct = bootableKernel(vmlinuz)

/** A busybox-only initramfs whose /init powers off at once (the bare boot). */
function bareImage(dir: string): string {
  const stage = path.join(dir, 'stage')
  fs.mkdirSync(path.join(stage, 'bin'), { recursive: true })
  const bb = spawnSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' }).stdout.trim()
  if (!bb) skip('busybox not found (apt-get install busybox-static)')
  fs.copyFileSync(bb, path.join(stage, 'bin/busybox'))
  fs.chmodSync(path.join(stage, 'bin/busybox'), 0o755)
  fs.writeFileSync(path.join(stage, 'init'), '#!/bin/busybox sh\n/bin/busybox poweroff -f\n', { mode: 0o755 })
  const out = path.join(dir, 'bare.cpio') // uncompressed, as the tier's image
  const r = spawnSync('sh', ['-c', 'cd "$1" && find . -mindepth 1 | sort | cpio --create --format=newc --quiet --owner=0:0 > "$2"', 'sh', stage, out])
  if (r.status !== 0) skip(`bare image: ${r.stderr}`)
  return out
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-boot-bench-'))
const bare = bareImage(work)
type Variant = { image: string; kernel: string; verdict: boolean; separate?: boolean; commands?: GuestCommand[] }
const variants: Record<string, Variant> = {
  bare: { image: bare, kernel: direct.path, verdict: false },
  verdict: { image: img.image!, kernel: direct.path, verdict: true },
  'verdict-3': { image: img.image!, kernel: direct.path, verdict: true, separate: true },
  'node-floor': { image: img.image!, kernel: direct.path, verdict: false, commands: [{ name: 'node', command: 'node -e 0' }] },
  'bare-bzimage': { image: bare, kernel: vmlinuz, verdict: false },
  'verdict-bzimage': { image: img.image!, kernel: vmlinuz, verdict: true },
}
if (direct.kind === 'as-given') { delete variants['bare-bzimage']; delete variants['verdict-bzimage'] } // the same boots twice

interface Sample { wallS: number; guestDoneS?: number; agentS?: number }
/** The uptime at which the first agent section ended minus the one before it: the agent's part. */
function agentSeconds(r: BootResult): number | undefined {
  const secs = [...r.sections.values()]
  const before = secs.find(s => s.name === 'cpuinfo.bugs')?.uptimeS
  const after = r.sections.get('selftest')?.uptimeS
  return before !== undefined && after !== undefined ? after - before : undefined
}

async function once(name: string, v: Variant): Promise<Sample> {
  const r = await bootGuest({
    image: v.image, kernel: v.kernel, cpu: CPU, smp: 2, timeoutMs: 300_000, workDir: path.join(work, name), kernelAsGiven: true,
    ...(v.separate ? { commands: defaultCommands(undefined, { separate: true }) } : v.commands ? { commands: v.commands } : {}),
  })
  if (r.timedOut || r.exitCode !== 0) throw new Error(`${name}: ${r.error ?? 'failed'}`)
  // A verdict boot that did not deliver every agent section measures nothing.
  if (v.verdict && (!r.ok || !['probe', 'report', 'selftest'].every(n => r.sections.has(n)))) throw new Error(`${name}: ${r.error ?? 'agent sections missing'} (console ${r.consoleLog})`)
  const s: Sample = { wallS: r.wallMs / 1000 }
  if (r.frames.done?.uptimeS !== undefined) s.guestDoneS = r.frames.done.uptimeS
  const a = agentSeconds(r)
  if (a !== undefined) s.agentS = a
  return s
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2 }
const load = (): number[] => os.loadavg().map(x => +x.toFixed(2))
const samples: Record<string, Sample[]> = Object.fromEntries(Object.keys(variants).map(k => [k, []]))
const loadBefore = load()
try {
  const names = Object.keys(variants)
  for (let r = 0; r < ROUNDS; r++) {
    for (let j = 0; j < names.length; j++) {
      const n = names[(r + j) % names.length]!
      samples[n]!.push(await once(n, variants[n]!))
    }
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true })
}
const med = (k: string, f: keyof Sample): number | undefined => {
  const xs = (samples[k] ?? []).map(s => s[f]).filter((x): x is number => x !== undefined)
  return xs.length ? median(xs) : undefined
}
const ratio = (a: string, b: string): number | undefined => { const x = med(a, 'wallS'), y = med(b, 'wallS'); return x !== undefined && y !== undefined ? x / y : undefined }
const result = {
  machine: { node: process.version, cpus: os.cpus().length, loadBefore, loadAfter: load() },
  cpu: CPU, rounds: ROUNDS, vmlinuz, bootKernel: { kind: direct.kind, path: direct.path, reason: direct.reason },
  wallS: Object.fromEntries(Object.keys(samples).map(k => [k, samples[k]!.map(s => +s.wallS.toFixed(2))])),
  medianS: Object.fromEntries(Object.keys(samples).map(k => [k, { wall: med(k, 'wallS'), guestDone: med(k, 'guestDoneS'), agent: med(k, 'agentS') }])),
  ratio: {
    goal: GOAL,
    verdictVsBare: ratio('verdict', 'bare'),
    verdictBzimageVsBareBzimage: ratio('verdict-bzimage', 'bare-bzimage'),
    extractedVsBzimageVerdict: ratio('verdict', 'verdict-bzimage'),
    extractedVsBzimageBare: ratio('bare', 'bare-bzimage'),
    oneVsThreeAgentProcesses: ratio('verdict', 'verdict-3'),
    nodeFloorVsBare: ratio('node-floor', 'bare'),
  },
}
const x = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(2)}x`)
const s = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(2)} s`)
const R = result.ratio
process.stdout.write([
  `virtmiti boot bench: ${ROUNDS} round(s), -cpu ${CPU}, ${vmlinuz} booted as ${direct.kind} (${direct.reason}); load before ${loadBefore.join(' ')}, after ${result.machine.loadAfter.join(' ')}`,
  ...Object.keys(samples).map(k => `  ${k.padEnd(16)} wall ${s(med(k, 'wallS'))} (${result.wallS[k]!.join(', ')})  guest done at ${s(med(k, 'guestDoneS'))}  agent ${s(med(k, 'agentS'))}`),
  `  boot to verdict / bare boot: ${x(R.verdictVsBare)} (goal <= ${GOAL}x${R.verdictVsBare === undefined ? '' : R.verdictVsBare <= GOAL ? ': met' : ': MISSED'}); with the bzImage ${x(R.verdictBzimageVsBareBzimage)}`,
  `  extracted / bzImage: verdict ${x(R.extractedVsBzimageVerdict)}, bare ${x(R.extractedVsBzimageBare)}; one agent process / three: ${x(R.oneVsThreeAgentProcesses)}`,
  `  floor: the same image running only \`node -e 0\` / bare boot: ${x(R.nodeFloorVsBare)} (any node-based agent pays this much)`,
  JSON.stringify(result),
].join('\n') + '\n')
