// Named VMM profiles: correct configurations, and faulty ones that the checker must catch.
import { MITI_ENUM_BHB_CLEAR_SEQ_S_SUPPORT, MITI_ENUM_RETPOLINE_S_SUPPORT, SPEC_CTRL_BHI_DIS_S } from '../../contract/registers.js'
import type { VmmFault, VmmProfile } from './profile.js'

const BOTH = MITI_ENUM_BHB_CLEAR_SEQ_S_SUPPORT | MITI_ENUM_RETPOLINE_S_SUPPORT
const NONE = { mask: 0n, value: 0n }

const base: Omit<VmmProfile, 'name' | 'description'> = {
  advertise: true, mitiEnum: BOTH, userspaceForce: NONE, specCtrl: 'intercepted', unknownMsr: 'fault', faults: new Set(),
}

const faulty = (fault: VmmFault, description: string, extra: Partial<VmmProfile> = {}): VmmProfile =>
  ({ ...base, name: fault, description, ...extra, faults: new Set([fault]) })

const list: VmmProfile[] = [
  { ...base, name: 'reference', description: 'advertises the virtual MSRs, both ENUM bits, no userspace force; SPEC_CTRL intercepted (contract/CONTRACT.md sections 3 and 5)' },
  { ...base, name: 'reference-virtualized', description: 'reference, with SPEC_CTRL held by the VMX "virtualize IA32_SPEC_CTRL" control', specCtrl: 'virtualized' },
  { ...base, name: 'bhb-only', description: 'advertises only BHB_CLEAR_SEQ_S_SUPPORT (ENUM bit 0)', mitiEnum: MITI_ENUM_BHB_CLEAR_SEQ_S_SUPPORT },
  { ...base, name: 'no-virtual-msrs', description: 'does not advertise the virtual MSRs; unknown MSRs fault (mainline KVM, ignore_msrs=0)', advertise: false, mitiEnum: 0n },
  { ...base, name: 'read-zero', description: 'does not advertise; unknown MSRs read 0 and writes are ignored (QEMU TCG, KVM ignore_msrs=1)', advertise: false, mitiEnum: 0n, unknownMsr: 'read-zero-ignore-write' },
  { ...base, name: 'userspace-force-bhi', description: 'userspace forces BHI_DIS_S on for every vCPU (needs host BHI_CTRL)', userspaceForce: { mask: SPEC_CTRL_BHI_DIS_S, value: SPEC_CTRL_BHI_DIS_S } },
  { ...base, name: 'userspace-force-bhi-off', description: 'userspace holds BHI_DIS_S off for every vCPU: the guest\'s report must not turn it on (precedence)', userspaceForce: { mask: SPEC_CTRL_BHI_DIS_S, value: 0n } },
  faulty('ignores-ctrl-writes', 'accepts CTRL writes but drops them: read-back stale, nothing forced'),
  faulty('forces-nothing', 'stores CTRL but never derives a forced bit'),
  faulty('forces-bhi-regardless-of-caps', 'forces BHI_DIS_S for CTRL bit 0 even on hosts without BHI_CTRL or with BHI_NO'),
  faulty('guest-can-clear-forced', 'a guest SPEC_CTRL write replaces the effective value, clearing forced bits'),
  faulty('guest-overrides-userspace', 'derived bits override userspace\'s force (userspace holds BHI_DIS_S off)', { userspaceForce: { mask: SPEC_CTRL_BHI_DIS_S, value: 0n } }),
  faulty('leaks-forced-into-shadow', 'a guest read of SPEC_CTRL returns the effective value, forced bits included'),
  faulty('ctrl-not-per-vcpu', 'one CTRL and one forced state shared by all vCPUs (last write wins)'),
  faulty('enum-writable', 'writes to MSR_VIRTUAL_ENUMERATION / MITIGATION_ENUM succeed and change them'),
  faulty('reserved-ctrl-bits-accepted', 'CTRL writes with bits not in MITI_ENUM are accepted'),
  faulty('ctrl-not-reset', 'vCPU reset keeps the previous CTRL value'),
]

export const PROFILES: ReadonlyMap<string, VmmProfile> = new Map(list.map(p => [p.name, p]))
export const CORRECT_PROFILES = list.filter(p => p.faults.size === 0).map(p => p.name)
export const FAULTY_PROFILES = list.filter(p => p.faults.size > 0).map(p => p.name)

export function profileByName(name: string): VmmProfile | undefined {
  return PROFILES.get(name)
}
