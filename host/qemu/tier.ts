// The qemu tier of `virtmiti scenarios run` (issue 7, DESIGN.md test tier 4): the matrix in
// scenarios/qemu/*.yaml (CPU models x kernel command lines), one image build, then one boot
// at a time (two TCG guests at once overload a 2-core machine), each boot a TAP subtest
// "qemu: <model> <cmdline>" with the checks of host/qemu/checks.ts and its boot-to-verdict time.
// Missing QEMU, kernel or agent bundle: every boot SKIPs with the reason, never a fake pass.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { LineCounter, parseDocument } from 'yaml'
import { z } from 'zod'
import type { TapPoint } from '../../bin/lib/tap.js'
import { packageRoot } from '../runner/catalog.js'
import { bootGuest, type Accel, type BootOptions, type BootResult } from './boot.js'
import { checkBoot, type BootFacts } from './checks.js'
import { buildImage, type ImageBuild } from './image.js'
import { buildUdevImage, udevOverlayScript } from './udev-image.js'
import { QemuMatrixDoc, type PatchedBootSpec } from './matrix-doc.js'
import { catalogHostCaps, hotplugBootArgs, newUuid, patchedCpuProps, patchedHeld, patchedPoints, resolveBootVmm, type HotplugSide, type MigrationResult, type PatchedRun, type SideResult } from './patched.js'
import { hex } from '../../contract/bits.js'

export { QemuMatrixDoc, type PatchedBootSpec } from './matrix-doc.js'
export interface QemuBoot {
  name: string; cpu: string; append: string[]; ci: boolean; vcpus: number; file: string
  vmm: 'stock' | 'patched'
  /** vmm patched only. */
  patched?: PatchedBootSpec
}
export type QemuSet = 'ci' | 'full'

/** "qemu: <model> <cmdline>" (the TAP subtest name, matched by --filter). */
export const bootName = (cpu: string, append: readonly string[]): string => `qemu: ${cpu} ${append.join(' ') || '(default)'}`

/** "qemu-patched: <cpu>[,props] on <host> <cmdline>[ fault <id>][ -> <host>]". */
export function patchedBootName(b: PatchedBootSpec): string {
  const cpu = [b.cpu, ...(b.props ?? [])].join(',')
  const force = b.force ? ` force ${hex(b.force.mask)}/${hex(b.force.value)}` : ''
  return `qemu-patched: ${cpu} on ${b.host}${b.vmm ? ` vmm ${b.vmm}` : ''} ${b.append.split(' ').filter(Boolean).join(' ') || '(default)'}${b.fault ? ` fault ${b.fault}` : ''}${force}${b.migrateTo ? ` -> ${b.migrateTo}` : ''}${b.hotplug ? ` hotplug +${b.hotplug}` : ''}`
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
  for (const model of m.models ?? []) {
    for (const c of m.cmdlines ?? []) {
      const append = c.append.split(' ').filter(Boolean)
      boots.push({ name: bootName(model.cpu, append), cpu: model.cpu, append, ci: model.ci === true && c.ci === true, vcpus: m.vcpus ?? 2, file, vmm: 'stock' })
    }
  }
  const errors: string[] = []
  for (const [k, b0] of (m.boots ?? []).entries()) {
    const append = b0.append.split(' ').filter(Boolean)
    // A `vmm:` definition becomes -cpu properties now: what QEMU cannot express is an input error.
    const b = resolveBootVmm(b0, m.vcpus ?? 2)
    if ('errors' in b) {
      const p = lc.linePos((doc.getIn(['boots', k, 'vmm'], true) as { range?: [number, number, number] } | undefined)?.range?.[0] ?? 0)
      errors.push(...b.errors.map(e => `${file}:${p.line}:${p.col}: boots.${k}.vmm: ${e}`))
      continue
    }
    boots.push({ name: patchedBootName(b), cpu: b.cpu, append, ci: b.ci === true, vcpus: m.vcpus ?? 2, file, vmm: 'patched', patched: b })
  }
  return { boots: errors.length ? [] : boots, errors }
}

/** Every *.yaml in the directories (sorted), boots in file order; duplicate boot names are errors. */
export function loadQemuMatrix(dirs: readonly string[]): { boots: QemuBoot[]; errors: string[] } {
  const boots: QemuBoot[] = []
  const errors: string[] = []
  const seen = new Map<string, string>()
  for (const d of dirs) {
    const files = fs.statSync(d).isDirectory() ? fs.readdirSync(d).filter(f => /\.ya?ml$/.test(f)).sort().map(f => path.join(d, f)) : [d]
    for (const f of files) {
      const r = parseQemuMatrix(fs.readFileSync(f, 'utf8'), f)
      errors.push(...r.errors)
      for (const b of r.boots) {
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
export interface TierPaths { agent: string; script: string; cacheDir: string; patchedScript?: string }

export function tierPaths(root = packageRoot()): TierPaths | undefined {
  if (!root) return undefined
  return {
    agent: path.join(root, 'dist', 'virtmiti-guest.mjs'), script: path.join(root, 'host', 'qemu', 'image', 'build-initramfs.sh'), cacheDir: path.join(root, '.cache', 'qemu'),
    patchedScript: path.join(root, 'host', 'qemu', 'build-patched.sh'),
  }
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
  const kernels = fs.existsSync('/boot') ? fs.readdirSync('/boot').filter(f => f.startsWith('vmlinuz-')) : []
  if (kernels.length === 0) return 'no /boot/vmlinuz-* (apt-get install linux-image-amd64)'
  const unreadable = kernels.filter(k => { try { fs.accessSync(`/boot/${k}`, fs.constants.R_OK); return false } catch { return true } })
  if (unreadable.length === kernels.length) return `/boot/${unreadable[0]} not readable (run as root)`
  if (!p) return 'package root (scenarios/cases) not found next to this program'
  if (!fs.existsSync(p.script)) return `${p.script} not found (run from a checkout)`
  if (!fs.existsSync(p.agent)) return `${p.agent} not built (make bundle)`
  return undefined
}

// --- running it ------------------------------------------------------------------------------
export interface BootRow {
  name: string; cpu: string; append: string[]; status: 'pass' | 'fail' | 'skip'
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
  build: (agent: string, cacheDir: string, script: string) => ImageBuild
  boot: (o: BootOptions) => Promise<BootResult>
  findPatched?: (script: string | undefined) => { path: string } | { unavailable: string }
  /** The udev image of hot-plug boots (host/qemu/udev-image.ts). */
  buildUdev?: (agent: string, baseImage: string, cacheDir: string, script: string) => ImageBuild
}
const realDeps: TierDeps = { build: (a, c, s) => buildImage(a, c, process.env, s), boot: bootGuest, findPatched: s => findPatchedQemu(s), buildUdev: (a, b, c, s) => buildUdevImage(a, b, c, s) }

export interface TierOptions {
  boots: readonly QemuBoot[]
  /** Reason the tier cannot run (every boot SKIPs with it). */
  unavailable?: string
  paths?: TierPaths
  accel?: Accel
  timeoutMs?: number
  /** Keep console/frames logs of every boot under this directory (failed boots are always kept). */
  keepDir?: string
  progress?: (done: number, total: number, name: string) => void
  deps?: TierDeps
}

export interface TierResult { points: TapPoint[]; rows: BootRow[]; image?: { path?: string; key?: string; cacheHit?: boolean; ms: number } }

const sec1 = (ms: number) => Math.round(ms / 100) / 10

export async function runQemuTier(o: TierOptions): Promise<TierResult> {
  const deps = o.deps ?? realDeps
  const skipAll = (why: string): TierResult => ({
    points: o.boots.map(b => ({ ok: true, name: b.name, skip: why })),
    rows: o.boots.map(b => ({ name: b.name, cpu: b.cpu, append: b.append, status: 'skip', skip: why })),
  })
  if (o.boots.length === 0) return { points: [], rows: [] }
  if (o.unavailable) return skipAll(`qemu tier unavailable here: ${o.unavailable}`)
  if (!o.paths) return skipAll('qemu tier unavailable here: package root not found')
  const img = deps.build(o.paths.agent, o.paths.cacheDir, o.paths.script)
  const image = { ...(img.image ? { path: img.image } : {}), ...(img.key ? { key: img.key } : {}), ...(img.cacheHit !== undefined ? { cacheHit: img.cacheHit } : {}), ms: Math.round(img.ms) }
  if (!img.ok || !img.image || !img.kernel) {
    const diag = { error: img.error ?? 'no image', log: img.log.trim().split('\n').slice(-6) }
    return {
      image,
      points: o.boots.map(b => ({ ok: false, name: b.name, diag })),
      rows: o.boots.map(b => ({ name: b.name, cpu: b.cpu, append: b.append, status: 'fail', error: `image build: ${diag.error}` })),
    }
  }
  const points: TapPoint[] = []
  const rows: BootRow[] = []
  const accel = o.accel ?? 'tcg'
  const stockVersion = o.boots.some(b => b.vmm === 'stock') ? qemuVersion('qemu-system-x86_64') : undefined
  const patchedBin = o.boots.some(b => b.vmm === 'patched') ? (deps.findPatched ?? (() => ({ unavailable: 'no patched-QEMU finder' })))(o.paths.patchedScript) : undefined
  for (const [k, b] of o.boots.entries()) {
    const workDir = o.keepDir ? path.join(o.keepDir, b.name.replace(/^qemu(-patched)?: /, '').replace(/[^A-Za-z0-9_.,=-]+/g, '_')) : undefined
    if (b.vmm === 'patched') {
      const r = await runPatchedBoot(b, { image: img.image, kernel: img.kernel }, patchedBin, deps, o, workDir)
      points.push(r.point); rows.push(r.row)
      o.progress?.(k + 1, o.boots.length, b.name)
      continue
    }
    const r = await deps.boot({ image: img.image, kernel: img.kernel, cpu: b.cpu, append: b.append, smp: b.vcpus, accel, timeoutMs: o.timeoutMs ?? 180_000, ...(workDir ? { workDir } : {}) })
    const seconds = sec1(r.wallMs)
    const bootPoint: TapPoint = {
      ok: r.ok, name: `QEMU boots, /init sends every section and powers off (${r.accel})`,
      ...(r.ok ? {} : { diag: { error: r.error ?? 'boot failed', console: r.consoleLog, frames: r.framesLog, qemuStderr: r.qemuStderr.trim().split('\n').slice(-4) } }),
    }
    const c = checkBoot(r.sections, { cpu: b.cpu, append: b.append, accel: r.accel, vcpus: b.vcpus })
    const sub = [bootPoint, ...c.points]
    const ok = sub.every(p => p.ok || p.skip !== undefined)
    const comments = [`boot-to-verdict ${seconds.toFixed(1)} s (QEMU start to exit${r.frames.done?.uptimeS !== undefined ? `; guest uptime at its last section ${r.frames.done.uptimeS} s` : ''})`, ...r.notes]
    if (!ok) comments.push(`logs kept: ${path.dirname(r.consoleLog)}`)
    points.push({ ok, name: b.name, sub, comments })
    const failed = sub.filter(p => !p.ok && p.skip === undefined).map(p => p.name)
    rows.push({
      name: b.name, cpu: b.cpu, append: b.append, status: ok ? 'pass' : 'fail', seconds, ...(r.frames.done?.uptimeS !== undefined ? { guestDoneS: r.frames.done.uptimeS } : {}),
      facts: c.facts, vmm: { kind: 'stock', ...(stockVersion ? { version: stockVersion } : {}) }, ...(failed.length ? { failed } : {}), ...(r.error ? { error: r.error } : {}),
    })
    // Logs of passing boots go unless asked to keep them (a boot writes ~100 kB).
    if (ok && !o.keepDir && !workDir) fs.rmSync(path.dirname(r.consoleLog), { recursive: true, force: true })
    o.progress?.(k + 1, o.boots.length, b.name)
  }
  return { points, rows, image }
}

/** Firmware for the patched build: Debian's qemu-system-data and seabios (KVM-NOTES.md "Building QEMU"). */
export const PATCHED_DATA_DIRS = ['/usr/share/qemu', '/usr/share/seabios']

/** One boot under the patched QEMU: boot with the guest held, QMP state + host check (+ migration). */
async function runPatchedBoot(b: QemuBoot, img: { image: string; kernel: string }, bin: { path: string } | { unavailable: string } | undefined, deps: TierDeps, o: TierOptions, workDir: string | undefined): Promise<{ point: TapPoint; row: BootRow }> {
  const spec = b.patched!
  const base = { name: b.name, cpu: b.cpu, append: b.append }
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
    image, kernel: img.kernel, cpu: b.cpu, cpuProps: patchedCpuProps(spec, caps), append: b.append, smp: b.vcpus,
    accel: 'tcg', timeoutMs: o.timeoutMs ?? 240_000, qemu: bin.path, dataDirs: PATCHED_DATA_DIRS, uuid: newUuid(), ...(workDir ? { workDir } : {}),
    ...(hot ? { maxCpus: hot.maxCpus, extraArgs: hot.extraArgs } : {}),
  }
  opts.held = patchedHeld(spec, bin.path, () => opts, caps, destCaps, sides, hot?.eventsLog)
  const r = await deps.boot(opts)
  const seconds = sec1(r.wallMs)
  const bootPoint: TapPoint = {
    ok: r.ok, name: `patched QEMU boots, /init sends every section, holds for QMP, quits (${r.accel})`,
    ...(r.ok ? {} : { diag: { error: r.error ?? 'boot failed', console: r.consoleLog, frames: r.framesLog, qemuStderr: r.qemuStderr.trim().split('\n').slice(-4) } }),
  }
  const pr = patchedPoints(spec, r, b.vcpus, b.append, sides, bin.path)
  const sub = [bootPoint, ...pr.points]
  const ok = sub.every(p => p.ok || p.skip !== undefined)
  const hm = sides.hot?.result.ms
  const comments = [`boot-to-verdict ${seconds.toFixed(1)} s (QEMU start to quit, QMP reads${spec.migrateTo ? ', migration' : ''}${spec.hotplug ? ', hot-plug' : ''} and host check included${sides.mig?.ms !== undefined ? `; migration ${sides.mig.ms} ms` : ''}${hm ? `; device_add to: QEMU lists the vCPU ${hm.qemu ?? '-'} ms, QOM CTRL written ${hm.ctrl ?? '-'} ms, guest unit result ${hm.unit ?? '-'} ms` : ''})`, ...r.notes]
  if (!ok) comments.push(`logs kept: ${path.dirname(r.consoleLog)}`)
  const failed = sub.filter(p => !p.ok && p.skip === undefined).map(p => p.name)
  const { vmm, ...extra } = pr.extra
  if (ok && !o.keepDir && !workDir) fs.rmSync(path.dirname(r.consoleLog), { recursive: true, force: true })
  return {
    point: { ok, name: b.name, sub, comments },
    row: {
      ...base, status: ok ? 'pass' : 'fail', seconds, ...(r.frames.done?.uptimeS !== undefined ? { guestDoneS: r.frames.done.uptimeS } : {}),
      facts: pr.facts, vmm, patched: extra, ...(failed.length ? { failed } : {}), ...(r.error ? { error: r.error } : {}),
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
    return `${st.padEnd(4)} ${r.seconds !== undefined ? `${r.seconds.toFixed(1)}s`.padStart(6) : '     -'}  ${r.name}  | ${f?.kernelLine ?? r.skip ?? r.error ?? '-'} | ${agent} | ${pred}${vmm}`
  })
  const n = (s: BootRow['status']) => rows.filter(r => r.status === s).length
  const secs = rows.filter(r => r.seconds !== undefined).map(r => r.seconds!)
  const time = secs.length ? `, boot-to-verdict ${Math.min(...secs).toFixed(1)}-${Math.max(...secs).toFixed(1)} s (total ${secs.reduce((a, b) => a + b, 0).toFixed(0)} s)` : ''
  return `qemu tier:\n${lines.join('\n')}\n${rows.length} boots: ${n('pass')} pass, ${n('fail')} fail, ${n('skip')} skip${time}\n`
}
