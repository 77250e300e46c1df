// The qemu tier of `virtmiti scenarios run` (issue 7, DESIGN.md test tier 4): the matrix in
// scenarios/qemu/*.yaml (CPU models x kernel command lines), one image build, then one boot
// at a time (two TCG guests at once overload a 2-core machine), each boot a TAP subtest
// "qemu: linux-<kernel> <model> <cmdline>" with the checks of host/qemu/checks.ts and its boot-to-verdict time.
// Kernels are data (issue 15): each file's `kernels` list, resolved by host/qemu/kernels.ts (one
// image per kernel); every boot records the kernel's version and origin. A known death (`deaths`)
// is the expected outcome of its boots.
// Missing QEMU or agent bundle: every boot SKIPs with the reason, never a fake pass.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { LineCounter, parseDocument } from 'yaml'
import { z } from 'zod'
import type { TapPoint } from '../../bin/lib/tap.js'
import { packageRoot } from '../runner/catalog.js'
import { bootGuest, type Accel, type BootOptions, type BootResult } from './boot.js'
import { checkBoot, type BootFacts } from './checks.js'
import { deathMatches, isTcgTextPokeFlake } from './death.js'
import { buildImage, type ImageBuild, type ImageKernel } from './image.js'
import { bootKernel, originText, resolveKernel, type BootKernel, type KernelSpec, type Resolution } from './kernels.js'
import { buildUdevImage, udevOverlayScript } from './udev-image.js'
import { QemuMatrixDoc, type KernelDoc, type PatchedBootSpec } from './matrix-doc.js'
import { catalogHostCaps, hotplugBootArgs, newUuid, patchedCpuProps, patchedHeld, patchedPoints, resolveBootVmm, type HotplugSide, type MigrationResult, type PatchedRun, type SideResult } from './patched.js'
import { hex } from '../../contract/bits.js'

export { QemuMatrixDoc, type PatchedBootSpec } from './matrix-doc.js'
export interface QemuBoot {
  name: string; cpu: string; append: string[]; ci: boolean; vcpus: number; file: string
  vmm: 'stock' | 'patched'
  /** The guest kernel, as the matrix names it. */
  kernel: KernelSpec
  /** A known death (the matrix's `deaths`): the boot passes only if the kernel dies with this line. */
  death?: string
  /** vmm patched only. */
  patched?: PatchedBootSpec
}
export type QemuSet = 'ci' | 'full'

/** "qemu: linux-<kernel> <model> <cmdline>" (the TAP subtest name, matched by --filter). */
export const bootName = (kernel: string, cpu: string, append: readonly string[]): string => `qemu: linux-${kernel} ${cpu} ${append.join(' ') || '(default)'}`

/** "qemu-patched: linux-<kernel> <cpu>[,props] on <host> <cmdline>[ fault <id>][ -> <host>]". */
export function patchedBootName(b: PatchedBootSpec, kernel: string): string {
  const cpu = [b.cpu, ...(b.props ?? [])].join(',')
  const force = b.force ? ` force ${hex(b.force.mask)}/${hex(b.force.value)}` : ''
  return `qemu-patched: linux-${kernel} ${cpu} on ${b.host}${b.vmm ? ` vmm ${b.vmm}` : ''} ${b.append.split(' ').filter(Boolean).join(' ') || '(default)'}${b.fault ? ` fault ${b.fault}` : ''}${force}${b.migrateTo ? ` -> ${b.migrateTo}` : ''}${b.hotplug ? ` hotplug +${b.hotplug}` : ''}`
}

export function parseQemuMatrix(text: string, file: string): { boots: QemuBoot[]; errors: string[] } {
  const lc = new LineCounter()
  const doc = parseDocument(text, { intAsBigInt: true, lineCounter: lc, uniqueKeys: true })
  if (doc.errors.length) return { boots: [], errors: doc.errors.map(e => { const p = lc.linePos(e.pos[0]); return `${file}:${p.line}:${p.col}: YAML: ${e.message.split('\n')[0]}` }) }
  const r = QemuMatrixDoc.safeParse(doc.toJS())
  if (!r.success) {
    return {
      boots: [], errors: r.error.issues.map(i => {
        const node = doc.getIn(i.path as (string | number)[], true) as { range?: [number, number, number] } | undefined
        const p = lc.linePos(node?.range?.[0] ?? 0)
        return `${file}:${p.line}:${p.col}: ${i.path.join('.') || '(document)'}: ${i.message}`
      }),
    }
  }
  const m = r.data
  const boots: QemuBoot[] = []
  const death = (k: string, append: string[]): { death?: string } => {
    const d = (m.deaths ?? []).find(x => x.kernel === k && x.append.split(' ').filter(Boolean).every(w => append.includes(w)))
    return d ? { death: d.line } : {}
  }
  for (const k of m.kernels) {
    for (const model of m.models ?? []) {
      for (const c of m.cmdlines ?? []) {
        const append = c.append.split(' ').filter(Boolean)
        const ci = model.ci === true && (Array.isArray(c.ci) ? c.ci.includes(k.id) : c.ci === true && k.ci === true)
        boots.push({ name: bootName(k.id, model.cpu, append), cpu: model.cpu, append, ci, vcpus: m.vcpus ?? 2, file, vmm: 'stock', kernel: kernelSpec(k), ...death(k.id, append) })
      }
    }
  }
  const errors: string[] = []
  for (const [i, b0] of (m.boots ?? []).entries()) {
    const append = b0.append.split(' ').filter(Boolean)
    // A `vmm:` definition becomes -cpu properties now: what QEMU cannot express is an input error.
    const b = resolveBootVmm(b0, m.vcpus ?? 2)
    if ('errors' in b) {
      const p = lc.linePos((doc.getIn(['boots', i, 'vmm'], true) as { range?: [number, number, number] } | undefined)?.range?.[0] ?? 0)
      errors.push(...b.errors.map(e => `${file}:${p.line}:${p.col}: boots.${i}.vmm: ${e}`))
      continue
    }
    const k = m.kernels.find(x => x.id === (b.kernel ?? m.kernels[0]!.id))!
    boots.push({ name: patchedBootName(b, k.id), cpu: b.cpu, append, ci: b.ci === true, vcpus: m.vcpus ?? 2, file, vmm: 'patched', patched: b, kernel: kernelSpec(k), ...death(k.id, append) })
  }
  return { boots: errors.length ? [] : boots, errors }
}

/** The matrix's kernel entry without its matrix-only fields (ci, note). */
export function kernelSpec(k: KernelDoc): KernelSpec {
  if ('file' in k) return { id: k.id, file: k.file }
  return { id: k.id, suite: k.suite, package: k.package, ...(k.version ? { version: k.version } : {}) }
}

/** Every *.yaml in the directories (sorted), boots in file order; duplicate boot names are errors. */
export function loadQemuMatrix(dirs: readonly string[]): { boots: QemuBoot[]; errors: string[] } {
  const boots: QemuBoot[] = []
  const errors: string[] = []
  const seen = new Map<string, string>()
  const kernels = new Map<string, { spec: string; file: string }>()
  for (const d of dirs) {
    const files = fs.statSync(d).isDirectory() ? fs.readdirSync(d).filter(f => /\.ya?ml$/.test(f)).sort().map(f => path.join(d, f)) : [d]
    for (const f of files) {
      const r = parseQemuMatrix(fs.readFileSync(f, 'utf8'), f)
      errors.push(...r.errors)
      for (const b of r.boots) {
        // One kernel id names one kernel across files (the tier resolves and images it once).
        const spec = JSON.stringify(b.kernel), k = kernels.get(b.kernel.id)
        if (k && k.spec !== spec) { errors.push(`${f}: kernel ${b.kernel.id} is ${spec} here but ${k.spec} in ${k.file}`); continue }
        if (!k) kernels.set(b.kernel.id, { spec, file: f })
        const other = seen.get(b.name)
        if (other) { errors.push(`${f}: boot "${b.name}" is also in ${other}`); continue }
        seen.set(b.name, f)
        boots.push(b)
      }
    }
  }
  return { boots, errors }
}

export const selectSet = (boots: readonly QemuBoot[], set: QemuSet): QemuBoot[] => (set === 'ci' ? boots.filter(b => b.ci) : [...boots])

/** The set when none is asked for: the CI set on CI (CI=true), else the full matrix. */
export const defaultSet = (env: NodeJS.ProcessEnv = process.env): QemuSet => (env['CI'] === 'true' || env['CI'] === '1' ? 'ci' : 'full')

export function builtinQemuDir(): string | undefined {
  const r = packageRoot()
  return r && path.join(r, 'scenarios', 'qemu')
}

// --- what the tier needs ---------------------------------------------------------------------
export interface TierPaths { agent: string; script: string; cacheDir: string; patchedScript?: string; fetchScript?: string }

export function tierPaths(root = packageRoot()): TierPaths | undefined {
  if (!root) return undefined
  return {
    agent: path.join(root, 'dist', 'virtmiti-guest.cjs'), script: path.join(root, 'host', 'qemu', 'image', 'build-initramfs.sh'), cacheDir: path.join(root, '.cache', 'qemu'),
    patchedScript: path.join(root, 'host', 'qemu', 'build-patched.sh'), fetchScript: path.join(root, 'host', 'qemu', 'fetch-kernel.sh'),
  }
}

/**
 * The first kernel of the built-in matrix, from the kernel cache only (no network): what tests
 * that boot one real kernel use; they SKIP with the error when `.ci/setup` has not fetched it.
 */
export function cachedMatrixKernel(): Resolution {
  const dir = builtinQemuDir()
  const m = dir ? loadQemuMatrix([path.join(dir, 'matrix.yaml')]) : { boots: [], errors: ['scenarios/qemu not found'] }
  const b = m.boots[0]
  if (!b) return { ok: false, kind: 'input', error: m.errors[0] ?? 'no boots in scenarios/qemu/matrix.yaml' }
  // The script by the checkout's path, not import.meta.url: a bundle under .cache/ or dist/ (the
  // boot bench) has no fetch-kernel.sh beside it, and that skipped the bench as "exit 127".
  const fetchScript = tierPaths()?.fetchScript
  return resolveKernel(b.kernel, { cachedOnly: true, ...(fetchScript ? { script: fetchScript } : {}) })
}

/** The patched QEMU built for the current patch series (never builds: `.ci/setup` does), or why not. */
export function findPatchedQemu(script: string | undefined, env: NodeJS.ProcessEnv = process.env): { path: string } | { unavailable: string } {
  if (env['VIRTMITI_PATCHED_QEMU']) return { path: env['VIRTMITI_PATCHED_QEMU'] }
  if (!script || !fs.existsSync(script)) return { unavailable: 'host/qemu/build-patched.sh not found (run from a checkout)' }
  const r = spawnSync('bash', [script, '--cached-only'], { encoding: 'utf8', timeout: 30_000 })
  const p = r.stdout?.trim().split('\n').pop()
  if (r.status === 0 && p && fs.existsSync(p)) return { path: p }
  return { unavailable: `patched QEMU not built for these patches: run bash host/qemu/build-patched.sh (${(r.stderr ?? '').trim().split('\n').pop() ?? ''})` }
}

/** `qemu --version`'s first line, e.g. "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)". */
export function qemuVersion(qemu: string): string | undefined {
  const r = spawnSync(qemu, ['--version'], { encoding: 'utf8', timeout: 10_000 })
  return r.status === 0 ? r.stdout.split('\n')[0]?.replace(/^QEMU emulator version /, '').slice(0, 64) : undefined
}

/** Why the tier cannot run here (the first missing piece), or undefined. */
export function qemuTierUnavailable(p: TierPaths | undefined, qemu = 'qemu-system-x86_64'): string | undefined {
  const v = spawnSync(qemu, ['--version'], { stdio: 'ignore' })
  if (v.error || v.status !== 0) return `${qemu} not found (apt-get install qemu-system-x86)`
  // Kernels are the matrix's (host/qemu/kernels.ts): one that cannot be had fails its boots, loudly.
  if (!p) return 'package root (scenarios/cases) not found next to this program'
  if (!fs.existsSync(p.script)) return `${p.script} not found (run from a checkout)`
  if (!fs.existsSync(p.agent)) return `${p.agent} not built (make bundle)`
  return undefined
}

// --- running it ------------------------------------------------------------------------------
export interface BootRow {
  name: string; cpu: string; append: string[]; status: 'pass' | 'fail' | 'skip'
  /** The guest kernel: its release and where it came from (host/qemu/kernels.ts). */
  kernel?: BootKernel
  /** A kernel that died before /init: the console's last WARNING/panic/Oops line, and whether the matrix expected it. */
  death?: { line: string; expected?: string }
  /** Spawn to QEMU exit: the guest powers off after its last section, so this is boot to verdict. */
  seconds?: number
  guestDoneS?: number
  facts?: BootFacts
  /** Which QEMU: Debian's (stock, the VMM that knows nothing) or host/qemu/patches applied. */
  vmm?: { kind: 'stock' | 'patched'; version?: string; binary?: string }
  /** Patched boots: host/qemu/patched.ts PatchedRun.extra (kernel, cmdline, host, mitiCtrl, forced, hostCheck, migration). */
  patched?: Omit<PatchedRun['extra'], 'vmm'>
  failed?: string[]
  error?: string
  skip?: string
}

export interface TierDeps {
  build: (agent: string, kernel: ImageKernel, cacheDir: string, script: string) => ImageBuild
  boot: (o: BootOptions) => Promise<BootResult>
  findPatched?: (script: string | undefined) => { path: string } | { unavailable: string }
  resolveKernel?: (k: KernelSpec) => Resolution
  /** The udev image of hot-plug boots (host/qemu/udev-image.ts). */
  buildUdev?: (agent: string, baseImage: string, cacheDir: string, script: string) => ImageBuild
}
const realDeps: TierDeps = { build: (a, k, c, s) => buildImage(a, k, c, process.env, s), boot: bootGuest, findPatched: s => findPatchedQemu(s), buildUdev: (a, b, c, s) => buildUdevImage(a, b, c, s) }

export interface TierOptions {
  boots: readonly QemuBoot[]
  /** Reason the tier cannot run (every boot SKIPs with it). */
  unavailable?: string
  paths?: TierPaths
  accel?: Accel
  timeoutMs?: number
  /** Keep console/frames logs of every boot under this directory (failed boots are always kept). */
  keepDir?: string
  /** After each boot, with its row (status, seconds): the CLI shows a line per boot on a non-TTY. */
  progress?: (done: number, total: number, name: string, row?: BootRow) => void
  /** Each boot's TAP point as soon as it is judged (the points are also returned). */
  onPoint?: (p: TapPoint) => void
  deps?: TierDeps
}

export interface TierImage { kernel: string; path?: string; key?: string; cacheHit?: boolean; ms: number }
export interface TierResult { points: TapPoint[]; rows: BootRow[]; image?: TierImage[] }

const sec1 = (ms: number) => Math.round(ms / 100) / 10

/** One kernel's image for the tier: resolved + built once per kernel id, or why not. */
type KernelImage = { ok: true; kernel: BootKernel; image: string; vmlinuz: string } | { ok: false; error: string; log?: string[] }

export async function runQemuTier(o: TierOptions): Promise<TierResult> {
  const deps = o.deps ?? realDeps
  const skipAll = (why: string): TierResult => {
    const points: TapPoint[] = o.boots.map(b => ({ ok: true, name: b.name, skip: why }))
    for (const p of points) o.onPoint?.(p)
    return { points, rows: o.boots.map(b => ({ name: b.name, cpu: b.cpu, append: b.append, status: 'skip', skip: why })) }
  }
  if (o.boots.length === 0) return { points: [], rows: [] }
  if (o.unavailable) return skipAll(`qemu tier unavailable here: ${o.unavailable}`)
  if (!o.paths) return skipAll('qemu tier unavailable here: package root not found')
  const paths = o.paths
  const images: TierImage[] = []
  const byKernel = new Map<string, KernelImage>()
  const imageFor = (spec: KernelSpec): KernelImage => {
    const have = byKernel.get(spec.id)
    if (have) return have
    // The bundled CLI (dist/chunks/) finds the repository's fetch-kernel.sh from the package root.
    const res = deps.resolveKernel ? deps.resolveKernel(spec) : resolveKernel(spec, paths.fetchScript ? { script: paths.fetchScript } : {})
    let ki: KernelImage
    if (!res.ok) ki = { ok: false, error: `kernel ${res.kind === 'input' ? 'input' : 'infrastructure'} error: ${res.error}` }
    else {
      const img = deps.build(paths.agent, res.kernel, paths.cacheDir, paths.script)
      images.push({ kernel: spec.id, ...(img.image ? { path: img.image } : {}), ...(img.key ? { key: img.key } : {}), ...(img.cacheHit !== undefined ? { cacheHit: img.cacheHit } : {}), ms: Math.round(img.ms) })
      ki = img.ok && img.image ? { ok: true, kernel: bootKernel(res.kernel), image: img.image, vmlinuz: res.kernel.vmlinuz }
        : { ok: false, error: `image build: ${img.error ?? 'no image'}`, log: img.log.trim().split('\n').slice(-6) }
    }
    byKernel.set(spec.id, ki)
    return ki
  }
  const points: TapPoint[] = []
  const emit = (p: TapPoint) => { points.push(p); o.onPoint?.(p) }
  const rows: BootRow[] = []
  const accel = o.accel ?? 'tcg'
  const stockVersion = o.boots.some(b => b.vmm === 'stock') ? qemuVersion('qemu-system-x86_64') : undefined
  const patchedBin = o.boots.some(b => b.vmm === 'patched') ? (deps.findPatched ?? (() => ({ unavailable: 'no patched-QEMU finder' })))(o.paths.patchedScript) : undefined
  for (const [k, b] of o.boots.entries()) {
    const ki = imageFor(b.kernel)
    if (!ki.ok) {
      emit({ ok: false, name: b.name, diag: { error: ki.error, ...(ki.log ? { log: ki.log } : {}) } })
      rows.push({ name: b.name, cpu: b.cpu, append: b.append, status: 'fail', error: ki.error })
      o.progress?.(k + 1, o.boots.length, b.name, rows.at(-1))
      continue
    }
    const workDir = o.keepDir ? path.join(o.keepDir, b.name.replace(/^qemu(-patched)?: /, '').replace(/[^A-Za-z0-9_.,=-]+/g, '_')) : undefined
    if (b.vmm === 'patched') {
      const r = await runPatchedBoot(b, ki, patchedBin, deps, o, workDir)
      rows.push(r.row); emit(r.point)
      o.progress?.(k + 1, o.boots.length, b.name, rows.at(-1))
      continue
    }
    const r = await bootOnceMore(deps.boot, { image: ki.image, kernel: ki.vmlinuz, cpu: b.cpu, append: b.append, smp: b.vcpus, accel, timeoutMs: o.timeoutMs ?? 180_000, ...(workDir ? { workDir } : {}) }, b.death !== undefined)
    const seconds = sec1(r.wallMs)
    const died = deathOutcome(b, r)
    const c = died ? undefined : checkBoot(r.sections, { cpu: b.cpu, append: b.append, accel: r.accel, vcpus: b.vcpus })
    const bootPoint: TapPoint = {
      ok: r.ok, name: `QEMU boots, /init sends every section and powers off (${r.accel})`,
      ...(r.ok ? {} : { diag: { error: r.error ?? 'boot failed', console: r.consoleLog, frames: r.framesLog, qemuStderr: r.qemuStderr.trim().split('\n').slice(-4) } }),
    }
    const sub = died ? [died.point] : [bootPoint, ...c!.points]
    const ok = sub.every(p => p.ok || p.skip !== undefined)
    const comments = [`kernel ${originText(ki.kernel)}`, `boot-to-verdict ${seconds.toFixed(1)} s (QEMU start to exit${r.frames.done?.uptimeS !== undefined ? `; guest uptime at its last section ${r.frames.done.uptimeS} s` : ''})`, ...r.notes]
    if (!ok) comments.push(`logs kept: ${path.dirname(r.consoleLog)}`)
    emit({ ok, name: b.name, sub, comments })
    const failed = sub.filter(p => !p.ok && p.skip === undefined).map(p => p.name)
    rows.push({
      name: b.name, cpu: b.cpu, append: b.append, status: ok ? 'pass' : 'fail', kernel: ki.kernel, seconds, ...(r.frames.done?.uptimeS !== undefined ? { guestDoneS: r.frames.done.uptimeS } : {}),
      ...(c ? { facts: c.facts } : {}), ...(r.death || b.death ? { death: { line: r.death?.line ?? '(none: the kernel reached /init)', ...(b.death ? { expected: b.death } : {}) } } : {}),
      vmm: { kind: 'stock', ...(stockVersion ? { version: stockVersion } : {}) }, ...(failed.length ? { failed } : {}), ...(r.error ? { error: r.error } : {}),
    })
    // Logs of passing boots go unless asked to keep them (a boot writes ~100 kB).
    if (ok && !o.keepDir && !workDir) fs.rmSync(path.dirname(r.consoleLog), { recursive: true, force: true })
    o.progress?.(k + 1, o.boots.length, b.name, rows.at(-1))
  }
  return { points, rows, ...(images.length ? { image: images } : {}) }
}

/**
 * Boot; when the kernel died before /init of the TCG text-patching race (death.ts
 * TCG_TEXT_POKE_FLAKE) and the matrix expects no death, boot once more. The result carries a note
 * naming the first attempt's line and console (kept), so a retried pass is never silent.
 */
export async function bootOnceMore(boot: TierDeps['boot'], opts: BootOptions, deathExpected: boolean): Promise<BootResult> {
  const first = await boot(opts)
  if (deathExpected || !isTcgTextPokeFlake(first.death)) return first
  const again = await boot(opts.workDir ? { ...opts, workDir: `${opts.workDir}.retry` } : opts)
  return { ...again, notes: [...again.notes, `booted twice: the first attempt died before /init with "${first.death!.line}" (TCG text-patching race, host/qemu/death.ts; console ${first.consoleLog})`] }
}

/**
 * A boot with a known death in the matrix passes only if the kernel died with that line; a boot
 * without one that died fails with the console's line (never "no @@virtmiti-done line").
 * undefined: the boot has no expected death and the kernel reached /init (the usual checks apply).
 */
export function deathOutcome(b: Pick<QemuBoot, 'death'>, r: Pick<BootResult, 'death' | 'error' | 'consoleLog'>): { point: TapPoint } | undefined {
  if (b.death !== undefined) {
    const ok = deathMatches(r.death, b.death)
    return { point: { ok, name: `known death: the kernel dies before /init with "${b.death}"`, ...(ok ? {} : { diag: { expected: b.death, observed: r.death?.lines ?? (r.error ? `no death: ${r.error}` : 'no death: the kernel reached /init'), console: r.consoleLog } }) } }
  }
  if (r.death) return { point: { ok: false, name: 'the kernel reaches /init', diag: { error: r.error, deathLines: r.death.lines, console: r.consoleLog } } }
  return undefined
}

/** Firmware for the patched build: Debian's qemu-system-data and seabios (KVM-NOTES.md "Building QEMU"). */
export const PATCHED_DATA_DIRS = ['/usr/share/qemu', '/usr/share/seabios']

/** One boot under the patched QEMU: boot with the guest held, QMP state + host check (+ migration). */
async function runPatchedBoot(b: QemuBoot, img: Extract<KernelImage, { ok: true }>, bin: { path: string } | { unavailable: string } | undefined, deps: TierDeps, o: TierOptions, workDir: string | undefined): Promise<{ point: TapPoint; row: BootRow }> {
  const spec = b.patched!
  const base = { name: b.name, cpu: b.cpu, append: b.append, kernel: img.kernel }
  if (!bin || 'unavailable' in bin) {
    const why = bin && 'unavailable' in bin ? bin.unavailable : 'patched QEMU not found'
    return { point: { ok: true, name: b.name, skip: why }, row: { ...base, status: 'skip', skip: why, vmm: { kind: 'patched' } } }
  }
  const caps = catalogHostCaps(spec.host)
  const destCaps = spec.migrateTo ? catalogHostCaps(spec.migrateTo) : undefined
  const bad = [caps, destCaps].find((c): c is string => typeof c === 'string')
  if (bad || typeof caps === 'string' || typeof destCaps === 'string') {
    return { point: { ok: false, name: b.name, diag: { error: bad } }, row: { ...base, status: 'fail', error: bad ?? 'bad host' } }
  }
  const sides: { src?: SideResult; mig?: MigrationResult; hot?: HotplugSide } = {}
  let image = img.image
  let hot: ReturnType<typeof hotplugBootArgs> | undefined
  if (spec.hotplug) {
    // The udev image (cached; built on the first hot-plug boot) and room for the new vCPU.
    const u = deps.buildUdev && o.paths ? deps.buildUdev(o.paths.agent, img.image, o.paths.cacheDir, udevOverlayScript(o.paths.script)) : undefined
    if (!u?.ok || !u.image) {
      const error = `udev image: ${u?.error ?? 'no udev image builder'}`
      return { point: { ok: false, name: b.name, diag: { error, log: u?.log.trim().split('\n').slice(-6) ?? [] } }, row: { ...base, status: 'fail', error } }
    }
    image = u.image
    hot = hotplugBootArgs(b.vcpus, spec.hotplug)
  }
  const opts: BootOptions = {
    image, kernel: img.vmlinuz, cpu: b.cpu, cpuProps: patchedCpuProps(spec, caps), append: b.append, smp: b.vcpus,
    accel: 'tcg', timeoutMs: o.timeoutMs ?? 240_000, qemu: bin.path, dataDirs: PATCHED_DATA_DIRS, uuid: newUuid(), ...(workDir ? { workDir } : {}),
    ...(hot ? { maxCpus: hot.maxCpus, extraArgs: hot.extraArgs } : {}),
  }
  opts.held = patchedHeld(spec, bin.path, () => opts, caps, destCaps, sides, hot?.eventsLog)
  // The held callback runs only after /init's sections, so a boot that died before /init ran none of it.
  const r = await bootOnceMore(deps.boot, opts, b.death !== undefined)
  const seconds = sec1(r.wallMs)
  const died = deathOutcome(b, r)
  const bootPoint: TapPoint = {
    ok: r.ok, name: `patched QEMU boots, /init sends every section, holds for QMP, quits (${r.accel})`,
    ...(r.ok ? {} : { diag: { error: r.error ?? 'boot failed', console: r.consoleLog, frames: r.framesLog, qemuStderr: r.qemuStderr.trim().split('\n').slice(-4) } }),
  }
  const pr = patchedPoints(spec, r, b.vcpus, b.append, sides, bin.path)
  const sub = died ? [died.point] : [bootPoint, ...pr.points]
  const ok = sub.every(p => p.ok || p.skip !== undefined)
  const hm = sides.hot?.result.ms
  const comments = [`kernel ${originText(img.kernel)}`, `boot-to-verdict ${seconds.toFixed(1)} s (QEMU start to quit, QMP reads${spec.migrateTo ? ', migration' : ''}${spec.hotplug ? ', hot-plug' : ''} and host check included${sides.mig?.ms !== undefined ? `; migration ${sides.mig.ms} ms` : ''}${hm ? `; device_add to: QEMU lists the vCPU ${hm.qemu ?? '-'} ms, QOM CTRL written ${hm.ctrl ?? '-'} ms, guest unit result ${hm.unit ?? '-'} ms` : ''})`, ...r.notes]
  if (!ok) comments.push(`logs kept: ${path.dirname(r.consoleLog)}`)
  const failed = sub.filter(p => !p.ok && p.skip === undefined).map(p => p.name)
  const { vmm, ...extra } = pr.extra
  if (ok && !o.keepDir && !workDir) fs.rmSync(path.dirname(r.consoleLog), { recursive: true, force: true })
  return {
    point: { ok, name: b.name, sub, comments },
    row: {
      ...base, status: ok ? 'pass' : 'fail', seconds, ...(r.frames.done?.uptimeS !== undefined ? { guestDoneS: r.frames.done.uptimeS } : {}),
      facts: pr.facts, vmm, patched: extra, ...(r.death || b.death ? { death: { line: r.death?.line ?? '(none: the kernel reached /init)', ...(b.death ? { expected: b.death } : {}) } } : {}),
      ...(failed.length ? { failed } : {}), ...(r.error ? { error: r.error } : {}),
    },
  }
}

/** One line per boot for stderr: the numbers issue 7 asks for. */
export function qemuTable(rows: readonly BootRow[]): string {
  if (rows.length === 0) return ''
  const lines = rows.map(r => {
    const f = r.facts
    const agent = f?.agentKernel ? `agent ${f.agentKernel.spectreV2}/${f.agentKernel.bhi}` : 'agent -'
    const pred = f?.agentExpected ? `predicted ${f.agentExpected.spectreV2}/${f.agentExpected.bhi}` : 'predicted -'
    const st = r.status === 'fail' ? 'FAIL' : r.status
    const p = r.patched
    const vmm = p ? ` | CTRL ${p.mitiCtrl?.join(',') ?? '-'} forced ${p.forced?.map(x => x.mask).join(',') ?? '-'} host check ${p.hostCheck?.verdict ?? '-'}${p.migration ? ` | -> ${p.migration.to}: forced ${p.migration.forced?.map(x => x.mask).join(',') ?? '-'} host check ${p.migration.hostCheck?.verdict ?? p.migration.error ?? '-'}` : ''}` : ''
    const line = r.death ? `died: ${r.death.line}${r.death.expected ? ` (expected: ${r.death.expected})` : ''}` : f?.kernelLine ?? r.skip ?? r.error ?? '-'
    return `${st.padEnd(4)} ${r.seconds !== undefined ? `${r.seconds.toFixed(1)}s`.padStart(6) : '     -'}  ${r.name}  | ${r.kernel?.version ?? '-'} | ${line} | ${agent} | ${pred}${vmm}`
  })
  const n = (s: BootRow['status']) => rows.filter(r => r.status === s).length
  const secs = rows.filter(r => r.seconds !== undefined).map(r => r.seconds!)
  const time = secs.length ? `, boot-to-verdict ${Math.min(...secs).toFixed(1)}-${Math.max(...secs).toFixed(1)} s (total ${secs.reduce((a, b) => a + b, 0).toFixed(0)} s)` : ''
  return `qemu tier:\n${lines.join('\n')}\n${rows.length} boots: ${n('pass')} pass, ${n('fail')} fail, ${n('skip')} skip${time}\n`
}
