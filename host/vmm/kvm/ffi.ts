// koffi, loaded on first use. A static `import koffi from 'koffi'` would be hoisted to the top of
// the bundled CLI (esbuild keeps external imports at module scope), so every command, even
// `guest probe`, would load the native addon at start-up and fail where it is not installed.
import { createRequire } from 'node:module'
import type * as KoffiNs from 'koffi'

type Koffi = typeof KoffiNs
let cached: Koffi | undefined
export function koffi(): Koffi {
  cached ??= createRequire(import.meta.url)('koffi') as Koffi
  return cached
}
