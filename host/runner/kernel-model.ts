// A small, independent model of the guest kernel's spectre_v2 / BHI choice (Linux
// arch/x86/kernel/cpu/bugs.c, x86_64: a 6.9+ kernel before the attack-vector controls, 6.1.y/6.12.y
// as Debian ships them, read in 6.1.192 / 6.12.117; and, with `gen.vectors`, one with them, read in
// Debian's linux-source-7.2 7.2.13-1, kernel/cpu.c and bugs.c, unchanged in 7.3.4), used to give generated cases of the
// exhaustive matrix a sysfs line the guest agent can parse. Written from contract/CONTRACT.md section 6
// and bugs.c directly, NOT from contract/decide.ts, so the agent is checked against something
// it did not compute. Scope: an Intel part that is not on the RETBLEED list and has no RSBA
// (so spectre_v2=auto is eIBRS or retpoline), default CONFIG options.

/** 'auto': no spectre_bhi= on the command line (the default: on before the vectors, vector-driven with them). */
export type BhiPolicy = 'on' | 'off' | 'vmexit' | 'auto'
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

/**
 * The kernel generation and the options only it reads. `mitigations`: '', 'off' or 'auto' followed by
 * ",no_<vector>" options (this model knows no others). `kvm`: IS_ENABLED(CONFIG_KVM), default true.
 */
export interface KernelGen { vectors: boolean; mitigations?: string; kvm?: boolean }

/** kernel/cpu.c 7.2.13: off clears every vector; guest_* start as IS_ENABLED(CONFIG_KVM); no_<vector> clears one. */
function vectorsOf(mitigations: string, kvm: boolean): { userKernel: boolean; guestHost: boolean } {
  if (mitigations === 'off') return { userKernel: false, guestHost: false }
  const opts = mitigations.split(',').slice(1)
  return { userKernel: !opts.includes('no_user_kernel'), guestHost: kvm && !opts.includes('no_guest_host') }
}

export function kernelState(cpu: KernelCpu, bhi: BhiPolicy, v2: V2Policy, gen: KernelGen = { vectors: false }): KernelState {
  const m = gen.mitigations ?? ''
  const vec = gen.vectors ? vectorsOf(m, gen.kvm ?? true) : undefined
  // Before the vectors spectre_v2_parse_cmdline returns NONE for mitigations=off (bugs.c 6.12.117);
  // with them spectre_v2=auto mitigates only when user_kernel or guest_host is on (should_mitigate_vuln, 7.2.13).
  const v2None = v2 === 'off' || (!vec && m === 'off') || (vec !== undefined && v2 === 'auto' && !vec.userKernel && !vec.guestHost)
  // spectre_v2_select_mitigation: auto -> eIBRS when present, else retpoline (no RETBLEED/IBRS_ENTRY here).
  const mode = v2None ? 'Vulnerable' : v2 === 'retpoline' || !cpu.ibrsAll ? 'Mitigation: Retpolines' : 'Mitigation: Enhanced / Automatic IBRS'
  // The BHI policy: explicit spectre_bhi= wins; the default is on before the vectors (CONFIG_MITIGATION_SPECTRE_BHI=y),
  // with them bhi_select_mitigation: guest_host and user_kernel -> on, guest_host only -> vmexit, else off;
  // bhi_update_mitigation: spectre_v2=off (SPECTRE_V2_CMD_NONE) -> off.
  let pol: 'on' | 'off' | 'vmexit' = bhi !== 'auto' ? bhi : !vec ? 'on' : vec.guestHost ? (vec.userKernel ? 'on' : 'vmexit') : 'off'
  if (v2 === 'off') pol = 'off'
  // cpu_set_bug_bits: X86_BUG_BHI for Intel with eIBRS or under a hypervisor; BHI_NO exempts
  // only in kernels before 9f725eec8fc0 (contract/CONTRACT.md section 6).
  const affected = (cpu.ibrsAll || cpu.hypervisor) && !(cpu.oldKernel === true && cpu.bhiNo === true)
  let seg: string
  if (!affected) seg = 'Not affected'
  // Before the vectors, spectre_v2 NONE returns before bhi_select_mitigation (and sets no retpoline
  // feature); with them only the policy counts (bhi_apply_mitigation runs on its own).
  else if (v2 === 'off' || (!vec && v2None)) seg = 'Vulnerable'
  // Step 1: retpoline covers BHI unless RRSBA remains (spec_ctrl_disable_kernel_rrsba disables it with
  // RRSBA_CTRL). spectre_bhi_state() says so whatever spectre_bhi= is: measured on Debian 6.1 under QEMU,
  // spectre_bhi=off on a retpoline kernel still prints "BHI: Retpoline".
  else if (mode === 'Mitigation: Retpolines' && (!cpu.rrsba || cpu.rrsbaCtrl)) seg = 'Retpoline'
  // Policy off selects nothing else.
  else if (pol === 'off') seg = 'Vulnerable'
  // Step 2: the hardware control.
  else if (cpu.bhiCtrl) seg = 'BHI_DIS_S'
  // Step 3: the loop, on VM exit only for spectre_bhi=vmexit.
  else if (pol === 'vmexit') seg = 'Vulnerable, KVM: SW loop'
  else seg = 'SW loop, KVM: SW loop'
  const ibpb = v2None ? 'IBPB: disabled' : 'IBPB: conditional'
  return {
    cmdline: `console=ttyS0${bhi === 'auto' ? '' : ` spectre_bhi=${bhi}`} spectre_v2=${v2}${m ? ` mitigations=${m}` : ''}`,
    spectreV2: `${mode}; ${ibpb}; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: ${seg}`,
    usesSwLoop: seg === 'SW loop, KVM: SW loop',
    usesRetpoline: mode === 'Mitigation: Retpolines',
  }
}
