// The VMM state format (issue 3): what a VMM observed per vCPU, for `virtmiti host check`.
// Versioned and published as JSON Schema (descriptions included) so that any VMM can emit it.
// 64-bit values are "0x" lower-case hex strings (DESIGN.md conventions).
import { z } from 'zod'

export const VMM_STATE_SCHEMA_ID = 'virtmiti/vmm-state/v1'
/** Largest state file the host accepts, in bytes (8192 vCPUs x ~300 bytes, with headroom). */
export const VMM_STATE_MAX_BYTES = 4 * 1024 * 1024

const hex64 = z.string().regex(/^0x[0-9a-f]{1,16}$/, 'a 64-bit value as "0x" lower-case hex')

export const VmmStateVcpu = z.strictObject({
  index: z.number().int().min(0).max(65535).describe('vCPU index; pairs with the guest CPU number N of /dev/cpu/N'),
  mitiCtrl: hex64.describe('MSR_VIRTUAL_MITIGATION_CTRL (0x50000002) as the VMM holds it: the last value the guest wrote, 0 after vCPU reset'),
  forcedMask: hex64.describe('IA32_SPEC_CTRL bits the VMM forces for this vCPU: userspace mask | derived bits (contract/CONTRACT.md section 5)'),
  forcedValue: hex64.describe('Values of the forced bits: userspace value | derived bits'),
  specCtrlShadow: hex64.describe('IA32_SPEC_CTRL as the guest last wrote it; what guest reads of 0x48 must return'),
  specCtrlEffective: hex64.describe('IA32_SPEC_CTRL the vCPU runs with: (shadow & ~forcedMask) | (forcedValue & forcedMask)'),
  specCtrlGuestRead: hex64.optional().describe('The value the VMM last returned to a guest RDMSR of 0x48, if the guest read it (must equal the shadow)'),
  specCtrlHardware: hex64.optional().describe('IA32_SPEC_CTRL as the hypervisor holds it for the vCPU (e.g. KVM_GET_MSRS after the VMM pushed the effective value with KVM_SET_MSRS); checked against the effective value where specCtrlHardwareHeld is true'),
})

export const VmmState = z.strictObject({
  schema: z.literal(VMM_STATE_SCHEMA_ID),
  vmUuid: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'a lower-case UUID')
    .describe('The VM\'s SMBIOS system UUID, lower case (what the guest reads as /sys/class/dmi/id/product_uuid)'),
  vmm: z.strictObject({
    name: z.string().max(64),
    version: z.string().max(64).optional(),
    profile: z.string().max(64).optional().describe('Configuration name, when the VMM has one'),
  }).describe('Which VMM emitted this state'),
  hostCaps: z.strictObject({
    bhiCtrl: z.boolean().describe('host CPUID.(7,2):EDX[4]'),
    bhiNo: z.boolean().describe('host IA32_ARCH_CAPABILITIES bit 20'),
    rrsbaCtrl: z.boolean().describe('host CPUID.(7,2):EDX[2]'),
    rrsba: z.boolean().describe('host IA32_ARCH_CAPABILITIES bit 19'),
    stibp: z.boolean().describe('host CPUID.(7,0):EDX[27]'),
    ssbd: z.boolean().describe('host CPUID.(7,0):EDX[31]'),
  }).describe('The host capabilities the VMM derived its response from (contract/CONTRACT.md section 5)'),
  advertised: z.boolean().describe('Whether the guest is shown the virtual MSRs: ARCH_CAPABILITIES bit 63 and MSR_VIRTUAL_ENUMERATION bit 0'),
  mitiEnum: hex64.describe('MSR_VIRTUAL_MITIGATION_ENUM (0x50000001) as the guest reads it'),
  userspaceForce: z.strictObject({ mask: hex64, value: hex64 })
    .describe('Userspace\'s own SPEC_CTRL force (KVM_CAP_FORCE_SPEC_CTRL args mask, value; RFC v3 01/10); takes precedence over derived bits'),
  specCtrl: z.enum(['virtualized', 'intercepted']).describe('How SPEC_CTRL is held: VMX "virtualize IA32_SPEC_CTRL" control, or intercepted reads/writes'),
  specCtrlHardwareHeld: z.boolean().optional().describe('Whether this host\'s hypervisor holds a guest IA32_SPEC_CTRL at all, measured by the VMM (a probe value written and read back); false: vcpus[].specCtrlHardware cannot be verified'),
  vcpus: z.array(VmmStateVcpu).min(1).max(8192),
})
export type VmmState = z.infer<typeof VmmState>
export type VmmStateVcpu = z.infer<typeof VmmStateVcpu>

/** The JSON Schema of the VMM state format (draft 2020-12), for VMM authors. */
export function vmmStateJsonSchema(): Record<string, unknown> {
  return {
    $id: 'https://virtmiti.invalid/schema/vmm-state/v1.json',
    title: 'virtmiti VMM state v1',
    description: 'Per-vCPU virtual mitigation MSR and SPEC_CTRL state observed by a VMM, checked by `virtmiti host check`.',
    ...z.toJSONSchema(VmmState),
  }
}
