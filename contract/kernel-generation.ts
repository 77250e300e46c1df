// Kernel generations differ in how mitigations= selects (contract/CONTRACT.md section 6, read from Debian's
// linux-source 6.1.192, 6.12.117 and 7.2.13: arch/x86/kernel/cpu/bugs.c, kernel/cpu.c). Kernels
// with attack-vector controls (7.x here) turn mitigations= into per-vector switches; older ones
// know only off / auto / auto,nosmt and treat anything else as auto ("Unsupported mitigations=").
// Pure; the kernel's release string is the only input about the kernel itself.
import type { Tri } from './decision-types.js'
import type { MitigationPolicy } from './cmdline.js'

export const KERNEL_CPU_C = 'Linux kernel/cpu.c mitigations_parse_cmdline'

/** "6.1.0-26-amd64" -> [6, 1]; undefined when the release does not start with a version. */
export function kernelVersion(release: string | undefined): [number, number] | undefined {
  const m = release ? /^(\d+)\.(\d+)/.exec(release) : null
  return m ? [Number(m[1]), Number(m[2])] : undefined
}

/**
 * Whether the kernel has attack-vector controls. A stated assumption, not a measurement: 6.1.y and
 * 6.12.y (measured: Debian 6.1.192 and 6.12.117) have none, 7.x (measured: 7.2.13, 7.3.4) has them;
 * releases in between (6.13 .. 6.x) are not classified here (the upstream merge release was not
 * confirmed from a source this project read), so predictions that depend on it say "unknown".
 */
export function hasAttackVectors(release: string | undefined): Tri {
  const v = kernelVersion(release)
  if (!v) return 'unknown'
  if (v[0] >= 7) return true
  if (v[0] < 6 || (v[0] === 6 && v[1] <= 12)) return false
  return 'unknown'
}

/** The attack vectors of kernel/cpu.c (mitigations=auto,no_<vector>,...). */
export interface AttackVectors { userKernel: boolean; userUser: boolean; guestHost: boolean; guestGuest: boolean; crossThread: boolean }

const VECTOR_OPTS: Record<string, keyof AttackVectors> = {
  no_user_kernel: 'userKernel', no_user_user: 'userUser', no_guest_host: 'guestHost', no_guest_guest: 'guestGuest', no_cross_thread: 'crossThread',
}

/**
 * The vectors a vector-aware kernel ends with, replaying every mitigations= occurrence as
 * kernel/cpu.c (Linux 7.2.13) mitigations_parse_cmdline does: the global option is matched as a
 * prefix ("auto,nosmt", "auto", "off"; none: the previous one stays); off clears every vector; after
 * a "," each no_<vector> clears one, and the first unknown option ("Unsupported mitigations
 * options") ends the parse, so later ones are not applied; auto never sets a vector back on.
 * guest_host and guest_guest start as IS_ENABLED(CONFIG_KVM) (`kvm`, see kvmEnabled).
 */
export function attackVectors(occurrences: readonly string[], kvm = true): AttackVectors {
  const v: AttackVectors = { userKernel: true, userUser: true, guestHost: kvm, guestGuest: kvm, crossThread: true }
  let off = false
  for (const arg of occurrences) {
    const g = ['auto,nosmt', 'auto', 'off'].find(x => arg.startsWith(x))
    if (g) off = g === 'off'
    if (off) for (const k of Object.keys(v) as (keyof AttackVectors)[]) v[k] = false
    const rest = arg.slice(g?.length ?? 0)
    if (!rest.startsWith(',')) continue
    for (const o of rest.slice(1).split(',')) {
      const k = VECTOR_OPTS[o]
      if (!k) break
      v[k] = false
    }
  }
  return v
}

/** True when the vectors are the defaults (no option cleared one). */
export const defaultVectors = (v: AttackVectors, kvm: boolean): boolean =>
  v.userKernel && v.userUser && v.crossThread && v.guestHost === kvm && v.guestGuest === kvm

/**
 * IS_ENABLED(CONFIG_KVM) from the kernel's config options (facts.kernel.config: y or m -> true, n or
 * absent from a read config -> false); 'unknown' when the config was not read (no /boot/config-<release>).
 */
export function kvmEnabled(config: Record<string, string> | undefined): Tri {
  if (!config) return 'unknown'
  const v = config['CONFIG_KVM']
  return v === 'y' || v === 'm'
}

/**
 * mitigations= as an older kernel (no vectors) takes it (kernel/cpu.c 6.1.192 / 6.12.117): only
 * exactly off, auto or auto,nosmt set it; anything else logs "Unsupported mitigations=" and keeps the
 * previous value (auto by default).
 */
export function legacyMitigationsOff(p: MitigationPolicy): boolean {
  return p.all.mitigations.filter(m => m === 'off' || m === 'auto' || m === 'auto,nosmt').at(-1) === 'off'
}

/** spectre_v2= values the parsers know (bugs.c 6.1.192, 6.12.117, 7.2.13). */
const V2_CMDS = new Set(['off', 'on', 'retpoline', 'retpoline,amd', 'retpoline,lfence', 'retpoline,generic', 'eibrs', 'eibrs,lfence', 'eibrs,retpoline', 'auto', 'ibrs'])

/**
 * The spectre_v2 command the kernel ends with. nospectre_v2 wins everywhere. Before the vectors
 * (6.1.192 / 6.12.117) spectre_v2_parse_cmdline reads the last occurrence on the whole line
 * (cmdline_find_option, which does not stop at "--") and an unknown value is AUTO; with them (7.2.13) it is an early param that ignores an unknown value,
 * so the last known one stays.
 */
export function spectreV2Cmd(p: MitigationPolicy, vectors: boolean): string {
  if (vectors) return p.nospectreV2 ? 'off' : p.all.spectreV2.filter(x => V2_CMDS.has(x)).at(-1) ?? 'auto'
  // cmdline_find_option reads the whole line, past "--" too (see MitigationPolicy.wholeLine).
  if (p.wholeLine.nospectreV2) return 'off'
  const last = p.wholeLine.spectreV2.at(-1)
  return last !== undefined && V2_CMDS.has(last) ? last : 'auto'
}

const before = (release: string | undefined, major: number, minor: number): boolean => {
  const v = kernelVersion(release)
  return v !== undefined && (v[0] < major || (v[0] === major && v[1] < minor))
}

/**
 * spectre_bhi= as spectre_bhi_parse_cmdline takes it (6.1.192, 6.12.117, 7.2.13): on, off and (6.11+)
 * vmexit set the policy, anything else (auto included) is ignored; undefined: the default.
 */
export function spectreBhiCmd(p: MitigationPolicy, release: string | undefined): 'on' | 'off' | 'vmexit' | undefined {
  const known = (x: string) => x === 'on' || x === 'off' || (x === 'vmexit' && !before(release, 6, 11))
  return p.all.spectreBhi.filter(known).at(-1) as 'on' | 'off' | 'vmexit' | undefined
}

/**
 * The retbleed= command: retbleed_parse_cmdline (6.1.192, 6.12.117, 7.2.13) walks a ","-list in
 * every occurrence; off/auto/unret/ibpb/stuff each replace the previous one (stuff from 6.2: 6.1.192
 * ignores it), nosmt and force do not.
 */
export function retbleedCmd(p: MitigationPolicy, release: string | undefined): string {
  const known = new Set(['off', 'auto', 'unret', 'ibpb', ...(before(release, 6, 2) ? [] : ['stuff'])])
  return p.all.retbleed.flatMap(r => r.split(',')).filter(x => known.has(x)).at(-1) ?? 'auto'
}
