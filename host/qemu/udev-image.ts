// Host side of the udev image (image/build-udev-overlay.sh): the default initramfs plus systemd-udevd,
// the installed virtmiti rule and units, the systemctl shim and the /init hook; built (cached) only
// for a boot that hot-plugs a vCPU, so every other boot keeps the small default image.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import type { ImageBuild } from './image.js'

/** The overlay script beside build-initramfs.sh (the tier knows that one's path, checkout or package). */
export const udevOverlayScript = (initramfsScript: string): string => path.join(path.dirname(initramfsScript), 'build-udev-overlay.sh')

export function buildUdevImage(agentBundle: string, baseImage: string, cacheDir: string, script: string, env: NodeJS.ProcessEnv = process.env): ImageBuild {
  const t0 = performance.now()
  const r = spawnSync('sh', [script, cacheDir, agentBundle, baseImage], { encoding: 'utf8', env, maxBuffer: 1 << 20 })
  const ms = performance.now() - t0
  const log = r.stderr ?? ''
  const key = /key=([0-9a-f]+)/.exec(log)?.[1]
  const base: ImageBuild = { ok: false, ms, log, ...(key ? { key } : {}) }
  if (r.error) return { ...base, error: `cannot run ${script}: ${r.error.message}` }
  if (r.status !== 0) return { ...base, error: `build-udev-overlay.sh exited ${r.status}: ${log.trim().split('\n').pop() ?? ''}` }
  const image = (r.stdout ?? '').trim().split('\n').pop()
  if (!image) return { ...base, error: `build-udev-overlay.sh printed no image path: ${JSON.stringify(r.stdout)}` }
  return { ...base, ok: true, image, cacheHit: /cache hit/.test(log) }
}
