// The built-in VMM profiles: data files in scenarios/vmms/ (issue 13; format
// contract/vmm-definition.ts), loaded on first use through the one YAML loader. Correct
// configurations, and faulty ones that the checker must catch.
import { builtinVmmsDir } from '../runner/catalog.js'
import { formatLocated } from '../runner/yaml-file.js'
import { loadVmmCatalog } from '../runner/vmms.js'
import type { VmmProfile } from './profile.js'

let loaded: Map<string, VmmProfile> | undefined

/** The built-in catalog; a broken or missing data directory is a bug of the installation: it throws. */
function builtin(): Map<string, VmmProfile> {
  if (loaded) return loaded
  const dir = builtinVmmsDir()
  if (!dir) throw new Error('the built-in VMM definitions (scenarios/vmms) were not found next to this program')
  const c = loadVmmCatalog(dir)
  if (c.errors.length) throw new Error(`bad built-in VMM definition:\n${c.errors.map(formatLocated).join('\n')}`)
  if (c.vmms.size === 0) throw new Error(`no VMM definitions in ${dir}`)
  loaded = c.vmms
  return loaded
}

/** The built-in profiles by id (a read-only view, loaded on first use). */
export const PROFILES: ReadonlyMap<string, VmmProfile> = {
  get size() { return builtin().size },
  get: (k: string) => builtin().get(k),
  has: (k: string) => builtin().has(k),
  keys: () => builtin().keys(),
  values: () => builtin().values(),
  entries: () => builtin().entries(),
  forEach: (cb: (v: VmmProfile, k: string, m: ReadonlyMap<string, VmmProfile>) => void) => builtin().forEach(cb),
  [Symbol.iterator]: () => builtin()[Symbol.iterator](),
}

const isFaulty = (p: VmmProfile) => p.faults.size > 0 || (p.vcpuFaults?.size ?? 0) > 0
export const correctProfiles = (): string[] => [...PROFILES.values()].filter(p => !isFaulty(p)).map(p => p.name)
export const faultyProfiles = (): string[] => [...PROFILES.values()].filter(isFaulty).map(p => p.name)

export function profileByName(name: string): VmmProfile | undefined {
  return PROFILES.get(name)
}

/** The built-in ids for a --help text: help must answer even where the data directory is missing. */
export function profileIdsForHelp(): string {
  try { return [...PROFILES.keys()].join(', ') } catch (e) { return `(the built-in VMM definitions could not be read: ${(e as Error).message.split('\n')[0]})` }
}
