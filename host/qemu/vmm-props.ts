// A VMM definition (contract/vmm-definition.ts, scenarios/vmms/*.yaml) as -cpu properties of the
// patched QEMU (host/qemu/patches: virt-miti, virt-miti-enum, virt-miti-ctrl-reset,
// spec-ctrl-force-mask/-value, x-virt-miti-fault), so that the catalog's VMMs also run in real
// guests (issue 13). Every knob maps to a property, or is an explicit "not expressible under
// patched QEMU: <knob>" error: never silently dropped. The host's response properties
// (virt-miti-host-*) come from the boot's host, not from the VMM. Pure.
import { hex } from '../../contract/bits.js'
import { VIRT_ENUM_MITIGATION_CTRL_SUPPORT } from '../../contract/registers.js'
import type { VmmDefinition, VmmFault } from '../../contract/vmm-definition.js'
import { QEMU_FAULTS, type QemuFault } from './checks-patched.js'

export type VmmProps =
  | { ok: true; props: string[]; fault?: QemuFault; mitiEnum: bigint }
  | { ok: false; errors: string[] }

const NOT = (knob: string, why: string) => `not expressible under patched QEMU: ${knob}: ${why}`

/** `vcpus`: the boot's vCPU count (a per-vCPU initial CTRL list is checked against it). */
export function vmmQemuProps(d: VmmDefinition, vcpus: number): VmmProps {
  const errors: string[] = []
  const props: string[] = [`virt-miti=${d.advertise ? 'on' : 'off'}`]
  // Patch 0002: virt-miti=on presents VIRTUAL_ENUMERATION = MITIGATION_CTRL_SUPPORT, nothing else.
  const ve = d.virtualEnumeration ?? (d.advertise ? VIRT_ENUM_MITIGATION_CTRL_SUPPORT : 0n)
  if (d.advertise && ve !== VIRT_ENUM_MITIGATION_CTRL_SUPPORT) {
    errors.push(NOT(`virtualEnumeration ${hex(ve)}`, `with virt-miti=on QEMU presents MSR_VIRTUAL_ENUMERATION ${hex(VIRT_ENUM_MITIGATION_CTRL_SUPPORT)} (patch 0002 x86_virt_miti_reset); no property sets another value`))
  }
  if (d.advertise) props.push(`virt-miti-enum=${d.mitiEnum}`)
  // Patch 0002: power-on, system_reset and INIT set CTRL to virt-miti-ctrl-reset.
  const reset = d.resetCtrl ?? 0n
  if (d.advertise) props.push(`virt-miti-ctrl-reset=${reset}`)
  const init = d.initialCtrl
  if (init !== undefined) {
    const values = typeof init === 'bigint' ? [init] : [...init]
    if (typeof init !== 'bigint' && init.length !== vcpus) errors.push(NOT('ctrl.initial.perVcpu', `${init.length} entries for ${vcpus} vCPUs`))
    const other = values.filter(v => v !== reset)
    if (other.length) {
      errors.push(NOT(`ctrl.initial ${typeof init === 'bigint' ? hex(init) : `perVcpu [${values.map(v => hex(v)).join(', ')}]`}`,
        `QEMU's power-on reset sets every vCPU's CTRL to virt-miti-ctrl-reset (${hex(reset)}); no property leaves an earlier boot's value, per vCPU or not`))
    }
  }
  // Patch 0003: the VMM's own force, validated by QEMU against the host's forcible bits.
  props.push(`spec-ctrl-force-mask=${d.userspaceForce.mask}`, `spec-ctrl-force-value=${d.userspaceForce.value}`)
  // Patch 0003 emulates SPEC_CTRL itself (a shadow and an effective value): the intercepted model.
  if (d.specCtrl === 'virtualized') errors.push(NOT('specCtrl virtualized', 'QEMU has no VMX "virtualize IA32_SPEC_CTRL" control; patch 0003 holds the shadow and effective value itself (intercepted)'))
  // With advertise: true every MSR the contract names (0x10A, 0x48, 0x5000000x) is implemented
  // (patches 0001-0003), and the emulation never consults unknownMsr for them either; without it
  // the virtual MSRs are unknown MSRs, which TCG reads as 0 and whose writes it drops (KVM-NOTES.md).
  if (!d.advertise && d.unknownMsr === 'fault') {
    errors.push(NOT('unknownMsr fault', 'under TCG QEMU reads unknown MSRs as 0 and ignores writes (read-zero-ignore-write); a #GP for them is KVM\'s ignore_msrs=0, a host kernel setting, not a QEMU property'))
  }
  // Patch x-virt-miti-fault: one fault id for the whole VM (every vCPU of the -cpu model).
  const whole = [...d.faults]
  for (const [v, fs] of d.vcpuFaults ?? []) for (const f of fs) errors.push(NOT(`faults ${f} on vCPU ${v}`, 'x-virt-miti-fault is a -cpu property: it applies to every vCPU'))
  const known = (f: VmmFault): f is QemuFault => (QEMU_FAULTS as readonly string[]).includes(f)
  for (const f of whole.filter(f => !known(f))) errors.push(NOT(`faults ${f}`, `x-virt-miti-fault knows ${QEMU_FAULTS.join(', ')}`))
  const q = whole.filter(known)
  if (q.length > 1) errors.push(NOT(`faults ${q.join(', ')}`, 'x-virt-miti-fault takes one fault id'))
  if (errors.length) return { ok: false, errors }
  if (q.length === 1) props.push(`x-virt-miti-fault=${q[0]}`)
  return { ok: true, props, ...(q.length === 1 ? { fault: q[0]! } : {}), mitiEnum: d.advertise ? d.mitiEnum : 0n }
}
