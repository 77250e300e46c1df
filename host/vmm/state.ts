// The reference emulation's state as the published VMM state JSON (contract/vmm-state-json.ts).
import { hex } from '../../contract/bits.js'
import { VMM_STATE_SCHEMA_ID, type VmmState } from '../../contract/vmm-state-json.js'
import type { VmmEmulation } from './emulation.js'
import { VIRT_ENUM_MITIGATION_CTRL_SUPPORT } from '../../contract/registers.js'

/** What the hypervisor holds for each vCPU's SPEC_CTRL, where the VMM pushes it (host/vmm/kvm/spec-ctrl-push.ts). */
export interface SpecCtrlHardware { held: boolean; perVcpu: readonly (bigint | undefined)[] }

export function vmmStateJson(vmm: VmmEmulation, vmUuid: string, hardware?: SpecCtrlHardware, name = 'virtmiti-reference'): VmmState {
  const p = vmm.config.profile
  return {
    schema: VMM_STATE_SCHEMA_ID,
    vmUuid,
    vmm: { name, profile: p.name },
    hostCaps: { ...vmm.config.hostCaps },
    // Advertised = ARCH_CAPABILITIES carries bit 63 and VIRTUAL_ENUMERATION bit 0 (contract/CONTRACT.md
    // section 3 steps 1-2; the vmm-state schema's definition): a VMM showing bit 63 with
    // VIRTUAL_ENUMERATION 0 does not advertise the MITIGATION MSRs.
    advertised: p.advertise && vmm.guestArchCapabilities !== null && (vmm.virtualEnumeration() & VIRT_ENUM_MITIGATION_CTRL_SUPPORT) !== 0n,
    mitiEnum: hex(vmm.mitiEnum()),
    userspaceForce: { mask: hex(p.userspaceForce.mask), value: hex(p.userspaceForce.value) },
    specCtrl: p.specCtrl,
    ...(hardware ? { specCtrlHardwareHeld: hardware.held } : {}),
    vcpus: vmm.states().map(s => ({
      index: s.index,
      mitiCtrl: hex(s.mitiCtrl),
      forcedMask: hex(s.forcedMask),
      forcedValue: hex(s.forcedValue),
      specCtrlShadow: hex(s.specCtrlShadow),
      specCtrlEffective: hex(s.specCtrlEffective),
      ...(s.specCtrlGuestRead !== undefined ? { specCtrlGuestRead: hex(s.specCtrlGuestRead) } : {}),
      ...(hardware?.perVcpu[s.index] !== undefined ? { specCtrlHardware: hex(hardware.perVcpu[s.index]!) } : {}),
    })),
  }
}
