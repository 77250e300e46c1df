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
 * The vectors a vector-aware kernel ends with. mitigations=off clears every vector; auto (or no
 * option) leaves all on, except guest_host and guest_guest, which default to IS_ENABLED(CONFIG_KVM)
 * (`kvm`: from the kernel's config when the agent could read it, see kvmEnabled).
 * undefined: an option this agent does not know.
 */
export function attackVectors(mitigations: string | undefined, kvm = true): AttackVectors | undefined {
  const all = (on: boolean): AttackVectors => ({ userKernel: on, userUser: on, guestHost: on && kvm, guestGuest: on && kvm, crossThread: on })
  if (mitigations === undefined || mitigations === '') return all(true)
  if (mitigations === 'off') return all(false)
  const [head, ...rest] = mitigations.split(',')
  if (head !== 'auto') return undefined
  const v = all(true)
  for (const o of rest) {
    if (o === 'nosmt') continue
    const k = VECTOR_OPTS[o]
    if (!k) return undefined
    v[k] = false
  }
  return v
}

/**
 * IS_ENABLED(CONFIG_KVM) from the kernel's config options (facts.kernel.config: y or m -> true, n or
 * absent from a read config -> false); 'unknown' when the config was not read (no /boot/config-<release>).
 */
export function kvmEnabled(config: Record<string, string> | undefined): Tri {
  if (!config) return 'unknown'
  const v = config['CONFIG_KVM']
  return v === 'y' || v === 'm'
}

/** mitigations= names attack vectors (auto,no_...), which pre-vector kernels do not understand. */
export const namesVectors = (m: string | undefined): boolean => m !== undefined && m.split(',').slice(1).some(o => o !== 'nosmt')

/**
 * mitigations= as an older kernel (no vectors) takes it: off, or auto (anything it does not
 * know logs "Unsupported mitigations=" and stays auto; kernel/cpu.c 6.1/6.12).
 */
export const legacyMitigationsOff = (p: MitigationPolicy): boolean => p.mitigations === 'off'
