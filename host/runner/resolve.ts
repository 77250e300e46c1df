// From a scenario's ids to what runs (issue 13): the host CPU (a catalog id plus overrides,
// ARCH_CAPABILITIES included), the presented guest CPU, and the VMM definition (an id, or
// written inline). An unknown id is an input error naming the valid ids and where they were
// looked for (the CLI exits 2 on it, before anything runs).
import { encode } from '../../contract/bits.js'
import type { CpuModel } from '../../contract/cpu-model.js'
import { ARCH_CAPABILITIES, CPUID7_EDX_ARCH_CAPABILITIES, CPUID_7_0_EDX, CPUID_7_2_EDX } from '../../contract/registers.js'
import type { Scenario } from '../../contract/scenario.js'
import { vmmFromDoc } from '../../contract/vmm-definition.js'
import { profileMisfit } from '../vmm/emulation.js'
import type { VmmProfile } from '../vmm/profile.js'

export interface Resolved { host: CpuModel; guest: CpuModel; profile: VmmProfile }

/** Where the ids of each kind were looked for, for the error message. */
export interface SearchedDirs { cpus: readonly string[]; vmms: readonly string[] }

const listIds = (m: ReadonlyMap<string, unknown>) => [...m.keys()].sort().join(', ') || '(none)'

/** The host model with the scenario's overrides (contract/CONTRACT.md section 5 reads its caps from these registers). */
export function hostModel(base: CpuModel, o: Scenario['host']): CpuModel {
  let edx7 = o.cpuid7_0_edx !== undefined ? Number(encode(CPUID_7_0_EDX, o.cpuid7_0_edx)) >>> 0 : base.cpuid7_0_edx
  let ac = base.archCapabilities
  if (o.archCapabilities !== undefined) {
    ac = o.archCapabilities === null ? null : encode(ARCH_CAPABILITIES, o.archCapabilities)
    // IA32_ARCH_CAPABILITIES exists iff CPUID.(7,0):EDX[29] (contract/CONTRACT.md section 2): keep the two in step.
    edx7 = ac === null ? (edx7 & ~(1 << CPUID7_EDX_ARCH_CAPABILITIES)) >>> 0 : (edx7 | (1 << CPUID7_EDX_ARCH_CAPABILITIES)) >>> 0
  }
  const changed = o.archCapabilities !== undefined || o.cpuid7_0_edx !== undefined || o.cpuid7_2_edx !== undefined
  return {
    ...base,
    cpuid7_0_edx: edx7,
    cpuid7_2_edx: o.cpuid7_2_edx !== undefined ? Number(encode(CPUID_7_2_EDX, o.cpuid7_2_edx)) >>> 0 : base.cpuid7_2_edx,
    archCapabilities: ac,
    ...(changed ? { id: `${base.id}+overrides`, sources: { ...base.sources, overrides: 'scenario host overrides' } } : {}),
  }
}

export function resolveScenario(s: Scenario, cpus: ReadonlyMap<string, CpuModel>, vmms: ReadonlyMap<string, VmmProfile>, dirs?: SearchedDirs):
  { ok: true; value: Resolved } | { ok: false; error: string } {
  const where = (d: readonly string[] | undefined) => d && d.length ? ` (searched ${d.join(', ')})` : ''
  const host = cpus.get(s.host.cpu), guest = cpus.get(s.guest.cpu)
  if (!host) return { ok: false, error: `unknown host CPU "${s.host.cpu}"; valid CPU ids: ${listIds(cpus)}${where(dirs?.cpus)}` }
  if (!guest) return { ok: false, error: `unknown guest CPU "${s.guest.cpu}"; valid CPU ids: ${listIds(cpus)}${where(dirs?.cpus)}` }
  let profile: VmmProfile | undefined
  if ('profile' in s.vmm) {
    profile = vmms.get(s.vmm.profile)
    if (!profile) return { ok: false, error: `unknown VMM "${s.vmm.profile}"; valid VMM ids: ${listIds(vmms)}${where(dirs?.vmms)}` }
  } else {
    profile = vmmFromDoc(s.vmm.define, s.vmm.define.id ?? `${s.name}-inline`.slice(0, 64))
  }
  const misfit = profileMisfit(profile, s.guest.vcpus)
  if (misfit) return { ok: false, error: misfit }
  return { ok: true, value: { host: hostModel(host, s.host), guest, profile } }
}
