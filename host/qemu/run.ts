// Measurement runner for the live-guest tier: build (or reuse) the image, boot a matrix of
// CPU models x kernel command lines, print one JSON summary line per boot.
//   node --import @tapjs/typescript/import host/qemu/run.ts [--agent F (default dist/virtmiti-guest.cjs, else the stand-in)] [--cpu A,B] [--append 'x y'|--append ...]
//        [--kernel ID (a kernels id of scenarios/qemu/*.yaml; default the first) | --kernel-file F] [--accel tcg|kvm] [--timeout S] [--parallel N] [--keep DIR]
//   node --import @tapjs/typescript/import host/qemu/run.ts --show DIR/frames.log [SECTION...]   (decode a kept frames log)
// The scenario runner (`virtmiti scenarios run --tier qemu`) is meant to call bootGuest() itself.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { bootGuest, type Accel } from './boot.js'
import { parseFrames } from './frames.js'
import { buildImage, defaultAgent } from './image.js'
import { bootKernel, kernelFromFile, resolveKernel, type Resolution } from './kernels.js'
import { summarize } from './summary.js'
import { builtinQemuDir, loadQemuMatrix } from './tier.js'

/** A kernel of the built-in matrix by id (default: the first), fetched if need be. */
function matrixKernel(id: string | undefined): Resolution {
  const m = loadQemuMatrix([builtinQemuDir()!])
  const b = m.boots.find(x => id === undefined || x.kernel.id === id)
  return b ? resolveKernel(b.kernel) : { ok: false, kind: 'input', error: `no kernel ${id} in scenarios/qemu/*.yaml (${[...new Set(m.boots.map(x => x.kernel.id))].join(', ')})` }
}

export const DEFAULT_MODELS = ['Skylake-Server', 'Cascadelake-Server', 'Icelake-Server', 'EPYC']
export const DEFAULT_APPENDS = [['spectre_bhi=on'], ['spectre_bhi=off']]

function show(file: string, only: string[]): number {
  const p = parseFrames(fs.readFileSync(file, 'utf8'))
  for (const e of p.errors) console.log(`# framing error (${e.kind}, line ${e.line}): ${e.message}`)
  for (const [name, s] of p.sections) {
    if (only.length > 0 && !only.includes(name)) continue
    console.log(`## ${name} exit=${s.exit} bytes=${s.raw.length}${s.uptimeS !== undefined ? ` t=${s.uptimeS}s` : ''}`)
    process.stdout.write(s.output.endsWith('\n') || s.output === '' ? s.output : s.output + '\n')
    if (s.stderr) process.stdout.write(`## ${name} stderr\n${s.stderr}`)
  }
  return p.errors.length > 0 ? 1 : 0
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === '--show' && argv[1]) return show(argv[1], argv.slice(2))
  let agent = defaultAgent()
  let models = DEFAULT_MODELS
  const appends: string[][] = []
  let accel: Accel = 'tcg'
  let timeoutMs = 120_000
  let parallel = 1
  let keep: string | undefined
  let kernelId: string | undefined, kernelFile: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!, v = argv[i + 1]
    const need = (): string => { if (v === undefined) throw new Error(`${a} needs a value`); i++; return v }
    if (a === '--agent') agent = need()
    else if (a === '--cpu') models = need().split(',')
    else if (a === '--append') appends.push(need().split(' ').filter(Boolean))
    else if (a === '--accel') { const x = need(); if (x !== 'tcg' && x !== 'kvm') throw new Error('--accel tcg|kvm'); accel = x }
    else if (a === '--timeout') timeoutMs = Number(need()) * 1000
    else if (a === '--parallel') parallel = Math.max(1, Number(need()))
    else if (a === '--keep') keep = need()
    else if (a === '--kernel') kernelId = need()
    else if (a === '--kernel-file') kernelFile = need()
    else throw new Error(`unknown argument ${a}`)
  }
  const k = kernelFile ? kernelFromFile('file', kernelFile) : matrixKernel(kernelId)
  if (!k.ok) { console.error(k.error); return k.kind === 'input' ? 2 : 3 }
  const img = buildImage(agent, k.kernel)
  process.stderr.write(img.log)
  console.log(JSON.stringify({ image: img.image, kernel: bootKernel(k.kernel), key: img.key, cacheHit: img.cacheHit, buildMs: Math.round(img.ms), ok: img.ok, error: img.error }))
  if (!img.ok || !img.image || !img.kernel) return 3
  const jobs = models.flatMap(cpu => (appends.length ? appends : DEFAULT_APPENDS).map(append => ({ cpu, append })))
  let failures = 0
  const worker = async (): Promise<void> => {
    for (let job = jobs.shift(); job; job = jobs.shift()) {
      const workDir = keep ? path.join(keep, `${job.cpu}_${job.append.join('_') || 'default'}`) : undefined
      const r = await bootGuest({ image: img.image!, kernel: img.kernel!, cpu: job.cpu, append: job.append, accel, timeoutMs, ...(workDir ? { workDir } : {}) })
      const s = summarize(r, job.cpu, job.append)
      if (!r.ok) { failures++; s.error = `${r.error} console=${r.consoleLog}` }
      else if (!keep) fs.rmSync(path.dirname(r.consoleLog), { recursive: true, force: true })
      console.log(JSON.stringify({ ...s, notes: r.notes }))
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  return failures > 0 ? 1 : 0
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(code => { process.exitCode = code }, e => { console.error(String(e)); process.exitCode = 2 })
}
