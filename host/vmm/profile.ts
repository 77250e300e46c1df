// A VMM profile: how one VMM configuration answers the virtual MSRs and SPEC_CTRL
// (issue 3). The reference emulation (emulation.ts) is parameterised by it; `faults`
// switches on deliberate deviations from contract/CONTRACT.md so that the checker can be shown
// to catch each of them.
import type { UserspaceForce } from '../../contract/vmm-response.js'

/** Deliberate deviations from contract/CONTRACT.md sections 3 and 5 (faulty VMMs for testing the checker). */
export const VMM_FAULTS = [
  /** CTRL writes succeed but are dropped: read-back stale, no response (section 3 read-back). */
  'ignores-ctrl-writes',
  /** CTRL is stored, but nothing is ever derived from it (section 5 derived bits). */
  'forces-nothing',
  /** BHI_DIS_S derived from CTRL bit 0 without looking at host BHI_CTRL / BHI_NO (section 5). */
  'forces-bhi-regardless-of-caps',
  /** A guest SPEC_CTRL write replaces the effective value, forced bits included (section 5 effective). */
  'guest-can-clear-forced',
  /** Derived bits are not masked by userspace's mask (section 5 userspace precedence). */
  'guest-overrides-userspace',
  /** A guest read of SPEC_CTRL returns the effective value instead of the shadow (section 5). */
  'leaks-forced-into-shadow',
  /** One CTRL and one forced state for the whole VM instead of per vCPU (section 3 per-vCPU scope). */
  'ctrl-not-per-vcpu',
  /** Writes to the read-only ENUM MSRs succeed and change them (section 3 read-only). */
  'enum-writable',
  /** CTRL writes with bits not in MITI_ENUM are accepted (section 3 reserved bits fault). */
  'reserved-ctrl-bits-accepted',
  /** vCPU reset keeps CTRL (section 3: 0 after reset). */
  'ctrl-not-reset',
] as const
export type VmmFault = (typeof VMM_FAULTS)[number]

export interface VmmProfile {
  name: string
  description: string
  /**
   * Whether the VMM implements and advertises the virtual MSRs: ARCH_CAPABILITIES bit 63 shown
   * to the guest and MSR_VIRTUAL_ENUMERATION bit 0 set (contract/CONTRACT.md section 3). When false, the
   * virtual MSRs are unknown MSRs and answer per `unknownMsr`.
   */
  advertise: boolean
  /** MSR_VIRTUAL_MITIGATION_ENUM value (bit 0 BHB_CLEAR_SEQ_S_SUPPORT, bit 1 RETPOLINE_S_SUPPORT). */
  mitiEnum: bigint
  /** KVM_CAP_FORCE_SPEC_CTRL-style userspace force (v3 01/10); validated against host caps. */
  userspaceForce: UserspaceForce
  /**
   * 'virtualized': the VMX "virtualize IA32_SPEC_CTRL" control holds mask/value in hardware;
   * 'intercepted': the VMM traps SPEC_CTRL reads/writes (contract/CONTRACT.md section 5). The observable
   * result must be the same; the state records which one was used.
   */
  specCtrl: 'virtualized' | 'intercepted'
  /**
   * MSRs the VMM does not implement: 'fault' (#GP: KVM with ignore_msrs=0) or
   * 'read-zero-ignore-write' (KVM ignore_msrs=1, QEMU TCG) (contract/CONTRACT.md section 3, KVM-NOTES.md).
   */
  unknownMsr: 'fault' | 'read-zero-ignore-write'
  faults: ReadonlySet<VmmFault>
}
