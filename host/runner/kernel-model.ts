// A small, independent model of the guest kernel's spectre_v2 / BHI choice (Linux
// arch/x86/kernel/cpu/bugs.c, x86_64, a 6.9+ kernel before the attack-vector controls: 6.1.y/6.12.y
// as Debian ships them), used only to give generated cases of the
// exhaustive matrix a sysfs line the guest agent can parse. Written from contract/CONTRACT.md section 6
// and bugs.c directly, NOT from contract/decide.ts, so the agent is checked against something
// it did not compute. Scope: an Intel part that is not on the RETBLEED list and has no RSBA
// (so spectre_v2=auto is eIBRS or retpoline), default CONFIG options.

export type BhiPolicy = 'on' | 'off' | 'vmexit'
export type V2Policy = 'auto' | 'retpoline' | 'off'

export interface KernelCpu {
  /** ARCH_CAP IBRS_ALL (eIBRS). */
  ibrsAll: boolean
  /** ARCH_CAP RRSBA. */
  rrsba: boolean
  /** CPUID.(7,2):EDX RRSBA_CTRL. */
  rrsbaCtrl: boolean
  /** CPUID.(7,2):EDX BHI_CTRL. */
  bhiCtrl: boolean
  /** CPUID.1:ECX HYPERVISOR. */
  hypervisor: boolean
  /** ARCH_CAP BHI_NO. */
  bhiNo?: boolean
  /**
   * A kernel without 9f725eec8fc0 (mainline 6.15, May 2025) or its stable backport, which still
   * exempts BHI_NO parts from X86_BUG_BHI. Not a version range: Debian's 6.1.192 and 6.12.117
   * already carry the backport (contract/CONTRACT.md section 6); the agent learns the rule from sysfs.
   */
  oldKernel?: boolean
}

export interface KernelState { cmdline: string; spectreV2: string; usesSwLoop: boolean; usesRetpoline: boolean }

export function kernelState(cpu: KernelCpu, bhi: BhiPolicy, v2: V2Policy): KernelState {
  // spectre_v2_select_mitigation: auto -> eIBRS when present, else retpoline (no RETBLEED/IBRS_ENTRY here).
  const mode = v2 === 'off' ? 'Vulnerable' : v2 === 'retpoline' || !cpu.ibrsAll ? 'Mitigation: Retpolines' : 'Mitigation: Enhanced / Automatic IBRS'
  // cpu_set_bug_bits: X86_BUG_BHI for Intel with eIBRS or under a hypervisor; BHI_NO exempts
  // only in kernels before 9f725eec8fc0 (contract/CONTRACT.md section 6).
  const affected = (cpu.ibrsAll || cpu.hypervisor) && !(cpu.oldKernel === true && cpu.bhiNo === true)
  let seg: string
  if (!affected) seg = 'Not affected'
  // spectre_v2=off returns before bhi_select_mitigation (and sets no retpoline feature).
  else if (v2 === 'off') seg = 'Vulnerable'
  // Step 1: retpoline covers BHI unless RRSBA remains (spec_ctrl_disable_kernel_rrsba disables it with
  // RRSBA_CTRL). spectre_bhi_state() says so whatever spectre_bhi= is: measured on Debian 6.1 under QEMU,
  // spectre_bhi=off on a retpoline kernel still prints "BHI: Retpoline".
  else if (mode === 'Mitigation: Retpolines' && (!cpu.rrsba || cpu.rrsbaCtrl)) seg = 'Retpoline'
  // spectre_bhi=off selects nothing else.
  else if (bhi === 'off') seg = 'Vulnerable'
  // Step 2: the hardware control.
  else if (cpu.bhiCtrl) seg = 'BHI_DIS_S'
  // Step 3: the loop, on VM exit only for spectre_bhi=vmexit.
  else if (bhi === 'vmexit') seg = 'Vulnerable, KVM: SW loop'
  else seg = 'SW loop, KVM: SW loop'
  const ibpb = v2 === 'off' ? 'IBPB: disabled' : 'IBPB: conditional'
  return {
    cmdline: `console=ttyS0 spectre_bhi=${bhi} spectre_v2=${v2}`,
    spectreV2: `${mode}; ${ibpb}; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: ${seg}`,
    usesSwLoop: seg === 'SW loop, KVM: SW loop',
    usesRetpoline: mode === 'Mitigation: Retpolines',
  }
}
