// A VMM profile: how one VMM configuration answers the virtual MSRs and SPEC_CTRL (issues 3, 13).
// It is data: contract/vmm-definition.ts defines the format, scenarios/vmms/*.yaml the built-in
// ones (host/vmm/profiles.ts loads them). The reference emulation (emulation.ts) reads it;
// `faults` switches on deliberate deviations from contract/CONTRACT.md so that the checker can be shown to
// catch each of them.
export { VMM_FAULTS, VM_ONLY_FAULTS, type VmmFault } from '../../contract/vmm-definition.js'
import type { VmmDefinition } from '../../contract/vmm-definition.js'

export type VmmProfile = VmmDefinition
