// Guest kernels as data (issue 15 item 1): the qemu matrix names each kernel by Debian suite +
// package (fetched by host/qemu/fetch-kernel.sh into a content-keyed cache outside the clone) or by
// file. Never /boot implicitly: the installed kernel is used only when a matrix names its file.
// Resolving gives what the image build and the boot need ({release, vmlinuz, modulesDir, config})
// and what every boot records (origin).
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const FETCH_SCRIPT = fileURLToPath(new URL('./fetch-kernel.sh', import.meta.url))

/** A kernel as a matrix names it. */
export type KernelSpec =
  | { id: string; suite: string; package: string; version?: string }
  | { id: string; file: string }

/** Where a kernel came from: a Debian package (with every .deb's sha256), or a file. */
export type KernelOrigin =
  | { suite: string; package: string; version: string; debs: { package: string; version: string; sha256: string }[] }
  | { file: string; sha256: string }

export interface ResolvedKernel {
  id: string
  /** `uname -r` of the guest, e.g. "6.12.117+deb13-amd64". */
  release: string
  vmlinuz: string
  /** lib/modules/<release> (or usr/lib/modules/<release>): kernel/arch/x86/kernel/{msr,cpuid}.ko[.xz|.zst]. */
  modulesDir: string
  /** config-<release> (Debian 7.x: usr/lib/modules/<release>/config). */
  config: string
  origin: KernelOrigin
}

/** What every boot's TAP comment and JSON row carry. */
export interface BootKernel { id: string; version: string; origin: KernelOrigin }
export const bootKernel = (k: ResolvedKernel): BootKernel => ({ id: k.id, version: k.release, origin: k.origin })

/** "6.12.117+deb13-amd64 (trixie linux-image-amd64 6.12.117-1)" or "... (file /boot/vmlinuz-...)". */
export function originText(k: { version: string; origin: KernelOrigin }): string {
  const o = k.origin
  return 'file' in o ? `${k.version} (file ${o.file}, sha256 ${o.sha256.slice(0, 12)})` : `${k.version} (${o.suite} ${o.package} ${o.version})`
}

export type Resolution = { ok: true; kernel: ResolvedKernel } | { ok: false; kind: 'input' | 'infra' | 'not-cached'; error: string }

/** Parse fetch-kernel.sh's ROOT/kernel.env (KEY='value' lines; values never hold a quote). */
export function parseKernelEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const l of text.split('\n')) {
    const m = /^([A-Z]+)='([^']*)'$/.exec(l)
    if (m) out[m[1]!] = m[2]!
  }
  return out
}

/** A fetched root (fetch-kernel.sh's stdout) as a ResolvedKernel; undefined fields are errors. */
export function kernelFromRoot(id: string, root: string): Resolution {
  let env: Record<string, string>
  try { env = parseKernelEnv(fs.readFileSync(path.join(root, 'kernel.env'), 'utf8')) } catch (e) { return { ok: false, kind: 'infra', error: `${root}/kernel.env: ${(e as Error).message}` } }
  const need = ['RELEASE', 'VMLINUZ', 'MODULES', 'CONFIG', 'SUITE', 'PACKAGE', 'VERSION', 'DEBS'] as const
  const missing = need.filter(k => env[k] === undefined)
  if (missing.length) return { ok: false, kind: 'infra', error: `${root}/kernel.env lacks ${missing.join(', ')}` }
  const debs = env['DEBS']!.split(' ').filter(Boolean).map(d => { const [p, v, s] = d.split('='); return { package: p ?? '', version: v ?? '', sha256: s ?? '' } })
  return {
    ok: true,
    kernel: {
      id, release: env['RELEASE']!, vmlinuz: path.join(root, env['VMLINUZ']!), modulesDir: path.join(root, env['MODULES']!), config: path.join(root, env['CONFIG']!),
      origin: { suite: env['SUITE']!, package: env['PACKAGE']!, version: env['VERSION']!, debs },
    },
  }
}

/**
 * A kernel named by file: /boot/vmlinuz-<release> (modules in /lib/modules/<release>, config
 * /boot/config-<release>) or <root>/usr/lib/modules/<release>/vmlinuz (config beside it).
 */
export function kernelFromFile(id: string, file: string): Resolution {
  const abs = path.resolve(file)
  let bytes: Buffer
  try { bytes = fs.readFileSync(abs) } catch (e) { return { ok: false, kind: 'input', error: `kernel ${id}: ${abs}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` } }
  const base = path.basename(abs)
  let release: string, top: string, candidates: string[]
  if (base.startsWith('vmlinuz-')) {
    release = base.slice('vmlinuz-'.length)
    top = path.dirname(path.dirname(abs)) // <top>/boot/vmlinuz-<release>
    candidates = [path.join(top, 'lib', 'modules', release), path.join(top, 'usr', 'lib', 'modules', release)]
  } else if (base === 'vmlinuz') {
    release = path.basename(path.dirname(abs))
    top = path.dirname(abs)
    candidates = [top]
  } else return { ok: false, kind: 'input', error: `kernel ${id}: ${abs}: expected .../boot/vmlinuz-<release> or .../modules/<release>/vmlinuz` }
  const modulesDir = candidates.find(d => fs.existsSync(path.join(d, 'kernel')))
  if (!modulesDir) return { ok: false, kind: 'input', error: `kernel ${id}: no modules for ${release} (looked in ${candidates.join(', ')})` }
  const config = [path.join(path.dirname(abs), `config-${release}`), path.join(modulesDir, 'config')].find(f => fs.existsSync(f))
  if (!config) return { ok: false, kind: 'input', error: `kernel ${id}: no config-${release} beside ${abs} or in ${modulesDir}` }
  return { ok: true, kernel: { id, release, vmlinuz: abs, modulesDir, config, origin: { file: abs, sha256: crypto.createHash('sha256').update(bytes).digest('hex') } } }
}

export interface ResolveOptions { script?: string; env?: NodeJS.ProcessEnv; cachedOnly?: boolean; timeoutMs?: number }

/** Resolve one kernel: fetch (or find in the cache) a Debian package, or take a named file. */
export function resolveKernel(spec: KernelSpec, o: ResolveOptions = {}): Resolution {
  if ('file' in spec) return kernelFromFile(spec.id, spec.file)
  const script = o.script ?? FETCH_SCRIPT
  const pkg = spec.version ? `${spec.package}=${spec.version}` : spec.package
  const r = spawnSync('bash', [script, ...(o.cachedOnly ? ['--cached-only'] : []), spec.suite, pkg], { encoding: 'utf8', env: o.env ?? process.env, timeout: o.timeoutMs ?? 600_000, maxBuffer: 1 << 20 })
  const why = (r.stderr ?? '').trim().split('\n').filter(l => l.includes('error:')).pop() ?? (r.stderr ?? '').trim().split('\n').pop() ?? ''
  if (r.error) return { ok: false, kind: 'infra', error: `kernel ${spec.id}: cannot run ${script}: ${r.error.message}` }
  if (r.status === 3) return { ok: false, kind: 'not-cached', error: `kernel ${spec.id}: ${why}` }
  if (r.status === 2) return { ok: false, kind: 'input', error: `kernel ${spec.id} (${spec.suite} ${pkg}): ${why}` }
  if (r.status !== 0) return { ok: false, kind: 'infra', error: `kernel ${spec.id} (${spec.suite} ${pkg}): fetch-kernel.sh exited ${r.status ?? r.signal}: ${why}` }
  const root = (r.stdout ?? '').trim().split('\n').pop() ?? ''
  return kernelFromRoot(spec.id, root)
}
