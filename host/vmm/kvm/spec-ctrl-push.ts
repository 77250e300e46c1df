// The effective IA32_SPEC_CTRL pushed into the vCPU, as a VMM without a KVM force mechanism must
// do it (issue 11 item 6; contract/CONTRACT.md section 5: effective = (shadow & ~mask) | (value & mask),
// with no KVM change: KVM_SET_MSRS after every change, KVM_GET_MSRS to see what KVM holds).
// KVM-NOTES.md: a nested, software-assisted KVM accepted every KVM_SET_MSRS of 0x48 and read 0
// back, so whether a host holds the guest's SPEC_CTRL is measured per run, never assumed.
import { MSR, SPEC_CTRL_IBRS } from '../../../contract/registers.js'
import { getMsrs, setMsrs } from './vcpu.js'

export interface SpecCtrlPush {
  /** KVM_SET_MSRS accepted the value. */
  accepted: boolean
  /** What KVM_GET_MSRS read back; undefined when it could not read 0x48. */
  readBack?: bigint
}

export function pushSpecCtrl(vcpuFd: number, value: bigint): SpecCtrlPush {
  const accepted = setMsrs(vcpuFd, [{ index: MSR.SPEC_CTRL, data: value }]) === 1
  const r = getMsrs(vcpuFd, [MSR.SPEC_CTRL])
  return { accepted, ...(r.length === 1 ? { readBack: r[0]!.data } : {}) }
}

/** Whether this host's KVM holds a guest SPEC_CTRL: push IBRS, read it back, push 0 again. */
export interface SpecCtrlHold { held: boolean; wrote: bigint; readBack?: bigint }

export function probeSpecCtrlHold(vcpuFd: number): SpecCtrlHold {
  const wrote = SPEC_CTRL_IBRS
  const p = pushSpecCtrl(vcpuFd, wrote)
  pushSpecCtrl(vcpuFd, 0n)
  return { held: p.accepted && p.readBack === wrote, wrote, ...(p.readBack !== undefined ? { readBack: p.readBack } : {}) }
}
