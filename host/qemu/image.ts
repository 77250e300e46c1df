// Host side of the guest image: runs host/qemu/image/build-initramfs.sh (which owns the
// cache under .cache/qemu, keyed by a hash of every input) for one resolved guest kernel
// (host/qemu/kernels.ts: its modules and config go into the image) and reports what it did.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import type { ResolvedKernel } from './kernels.js'

export const BUILD_SCRIPT = fileURLToPath(new URL('./image/build-initramfs.sh', import.meta.url))
/** The stand-in agent used until dist/virtmiti-guest.cjs exists (issue 7 brief, step 4). */
export const STAND_IN_AGENT = fileURLToPath(new URL('./testdata/stand-in-guest.cjs', import.meta.url))
/** Repository root (host/qemu/ is two levels down). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const DEFAULT_CACHE_DIR = path.join(REPO_ROOT, '.cache', 'qemu')
/** The real agent bundle (esbuild output of the guest CLI). */
export const AGENT_BUNDLE = path.join(REPO_ROOT, 'dist', 'virtmiti-guest.cjs')

/** The real bundle when it has been built, else the stand-in. */
export const defaultAgent = (): string => (fs.existsSync(AGENT_BUNDLE) ? AGENT_BUNDLE : STAND_IN_AGENT)

export interface ImageBuild {
  ok: boolean
  /** initramfs path (cache entry) and the kernel it was made for (its vmlinuz). */
  image?: string
  kernel?: string
  /** Cache key printed by the script, and whether it reused an image. */
  key?: string
  cacheHit?: boolean
  ms: number
  /** The script's progress lines (stderr). */
  log: string
  error?: string
}

/** The kernel parts an image is built for. */
export type ImageKernel = Pick<ResolvedKernel, 'vmlinuz' | 'modulesDir' | 'config'>

/** `script`: the bundled CLI (dist/chunks/) passes the repository's copy, found from the package root. */
export function buildImage(agentBundle: string, kernel: ImageKernel, cacheDir = DEFAULT_CACHE_DIR, env: NodeJS.ProcessEnv = process.env, script = BUILD_SCRIPT): ImageBuild {
  const t0 = performance.now()
  const r = spawnSync('sh', [script, cacheDir, agentBundle, kernel.modulesDir, kernel.config], { encoding: 'utf8', env, maxBuffer: 1 << 20 })
  const ms = performance.now() - t0
  const log = r.stderr ?? ''
  const key = /key=([0-9a-f]+)/.exec(log)?.[1]
  const base: ImageBuild = { ok: false, ms, log }
  if (key !== undefined) base.key = key
  if (r.error) return { ...base, error: `cannot run ${script}: ${r.error.message}` }
  if (r.status !== 0) return { ...base, error: `build-initramfs.sh exited ${r.status}: ${log.trim().split('\n').pop() ?? ''}` }
  const image = (r.stdout ?? '').trim().split('\n').pop()
  if (!image) return { ...base, error: `build-initramfs.sh printed no image path: ${JSON.stringify(r.stdout)}` }
  return { ...base, ok: true, image, kernel: kernel.vmlinuz, cacheHit: /cache hit/.test(log) }
}
