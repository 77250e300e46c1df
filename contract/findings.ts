// The findings table (issue 12): every problem the verdict can name, with a stable id, its effect
// on the verdict, the remedy an operator can act on, and the sources of the rule. Ids are part of
// the output contract (JSON, Prometheus labels, NRPE text, scenario expectations): never rename
// one; add a new id instead. Pure data.
import type { Concern, Effect, Verdict } from './verdict-types.js'

/** 'note': shown, never changes the verdict or the exit code. */
export type { Effect }

export interface FindingDef {
  id: string
  effect: Effect
  /** One line, operator words. */
  title: string
  /** What to do; per concern where the remedy differs (the SW loop vs retpoline). */
  remedy: Partial<Record<Concern | 'any', string>>
  sources: string[]
}

const S = (n: number) => `contract/CONTRACT.md section ${n}`
const BUGS_C = 'Linux arch/x86/kernel/cpu/bugs.c'
const MSR_C = 'Linux arch/x86/kernel/msr.c'

const ASK_VMM_BHI = 'ask the VMM operator to advertise the virtual mitigation MSRs (IA32_ARCH_CAPABILITIES bit 63, MSR_VIRTUAL_ENUMERATION bit 0) with MSR_VIRTUAL_MITIGATION_ENUM bit 0 BHB_CLEAR_SEQ_S_SUPPORT, so that it forces BHI_DIS_S on hosts where the short loop does not work'
const ASK_VMM_RET = 'ask the VMM operator to advertise the virtual mitigation MSRs with MSR_VIRTUAL_MITIGATION_ENUM bit 1 RETPOLINE_S_SUPPORT, so that it forces RRSBA_DIS_S on hosts with RRSBA behaviour'
const SW_LOOP_GENERATIONS = 'The short SW loop protects on CPUs before Alder Lake / Sapphire Rapids and not on those or later parts (Granite Rapids, Sierra Forest, ...), which need BHI_DIS_S'
const ALT_BHI = `${SW_LOOP_GENERATIONS}. Alternatives: give the guest a CPU model with CPUID.(7,2):EDX[4] BHI_CTRL when every host in the pool has it (the kernel then sets BHI_DIS_S itself), or keep the guest on hardware older than Alder Lake / Sapphire Rapids`
const ALT_RET = 'RRSBA behaviour (a RET that underflows the RSB predicted from the BTB) exists on newer hosts the guest cannot see. Alternatives: spectre_v2=eibrs on the kernel command line when the guest CPU model shows eIBRS (ARCH_CAP IBRS_ALL), or a CPU model with CPUID.(7,2):EDX[2] RRSBA_CTRL and ARCH_CAP RRSBA when every host has them (the kernel then sets RRSBA_DIS_S itself)'

export const FINDINGS: readonly FindingDef[] = [
  // ---- the kernel's own state --------------------------------------------------------------
  { id: 'kernel.bhi-vulnerable', effect: 'vulnerable', title: 'the kernel reports BHI: Vulnerable (no BHI mitigation)',
    remedy: { bhi: 'remove spectre_bhi=off (or mitigations=off) from the kernel command line; spectre_bhi=on is the default on 6.9 and later. On attack-vector kernels (7.x) automatic BHI needs the guest_host vector: it is off after mitigations=off or mitigations=auto,no_guest_host, and by default in a kernel built without CONFIG_KVM; spectre_bhi=on still applies then' },
    sources: [S(6), `${BUGS_C} spectre_bhi_state(), bhi_select_mitigation()`] },
  { id: 'kernel.bhi-vmexit-only', effect: 'vulnerable', title: 'the kernel clears the BHB on VM exit only ("BHI: Vulnerable, KVM: SW loop"): system calls from user space are not mitigated',
    remedy: { bhi: 'use spectre_bhi=on instead of spectre_bhi=vmexit (on attack-vector kernels: keep the user_kernel vector on)' },
    sources: [S(6), `${BUGS_C} spectre_bhi_state(): X86_FEATURE_CLEAR_BHB_VMEXIT`] },
  { id: 'kernel.bhi-not-reported', effect: 'unknown', title: 'the kernel predates BHI reporting (no "BHI:" segment in spectre_v2) on a CPU that is affected',
    remedy: { bhi: 'run a kernel with the BHI mitigation (mainline 6.9 or later, or a stable kernel with the April 2024 backport)' },
    sources: [S(6)] },
  { id: 'kernel.mitigations-off', effect: 'vulnerable', title: 'the kernel runs without a Spectre v2 mitigation (spectre_v2 "Vulnerable": mitigations=off, spectre_v2=off, or on 7.x neither the user_kernel nor the guest_host attack vector)',
    remedy: { any: 'remove mitigations=off, spectre_v2=off and nospectre_v2 (anywhere on the line: it overrides every spectre_v2=) from the kernel command line; on attack-vector kernels (7.x) keep user_kernel or guest_host on (no mitigations=auto,no_user_kernel,no_guest_host), or give spectre_v2=on, which ignores the vectors' },
    sources: [S(6), `${BUGS_C} spectre_v2_strings[SPECTRE_V2_NONE], should_mitigate_vuln() (Linux 7.2.13)`] },
  { id: 'kernel.v2-vulnerable', effect: 'vulnerable', title: 'the kernel says its Spectre v2 mode is vulnerable (e.g. "Vulnerable: LFENCE", or eIBRS with unprivileged eBPF)',
    remedy: { retpoline: 'choose spectre_v2=retpoline (or spectre_v2=eibrs where the CPU has eIBRS) instead of spectre_v2=lfence; for the eBPF variants set kernel.unprivileged_bpf_disabled=1' },
    sources: [S(6), `${BUGS_C} spectre_v2_strings[SPECTRE_V2_LFENCE] (renamed from "Mitigation: LFENCE" to "Vulnerable: LFENCE"), spectre_v2_show_state()`] },
  { id: 'kernel.sysfs-missing', effect: 'unknown', title: 'no /sys/devices/system/cpu/vulnerabilities/spectre_v2: which mitigation the kernel uses is unknown',
    remedy: { any: 'mount sysfs (or give --dev-root a tree with sys/), or use a kernel that reports CPU vulnerabilities' },
    sources: [S(6)] },
  { id: 'kernel.sysfs-unknown', effect: 'unknown', title: 'the spectre_v2 sysfs line is not one this agent knows',
    remedy: { any: 'report the line (it is printed as is) so the table in contract/sysfs-spectre-v2.ts can learn it' },
    sources: [S(6), `${BUGS_C} spectre_v2_show_state()`] },
  { id: 'kernel.prediction-mismatch', effect: 'note', title: "the kernel's choice differs from what this agent predicts for this CPU and command line",
    remedy: { any: 'informational: the verdict follows what the kernel actually does. Kernel generations select differently (6.1/6.12 vs 7.x attack vectors); report the facts file (--record) if the kernel looks wrong' },
    sources: [S(6)] },
  { id: 'kernel.no-prediction', effect: 'note', title: "no prediction of the kernel's choice to compare with",
    remedy: { any: 'informational: the verdict follows what the kernel reports' },
    sources: [S(6)] },
  // ---- bare metal, judged by its own hardware -----------------------------------------------
  { id: 'baremetal.sw-loop-on-bhi-ctrl', effect: 'at-risk', title: 'bare metal: the kernel uses the SW loop although this CPU has BHI_CTRL, where the short loop is not effective',
    remedy: { bhi: 'run a kernel that sets BHI_DIS_S when CPUID.(7,2):EDX[4] BHI_CTRL is present (mainline 6.9 or later with spectre_bhi=on)' },
    sources: [S(1), S(6)] },
  { id: 'baremetal.rrsba', effect: 'at-risk', title: 'bare metal: retpoline on a CPU with RRSBA behaviour that the kernel cannot disable (no RRSBA_CTRL)',
    remedy: { retpoline: 'use spectre_v2=eibrs or spectre_v2=ibrs where the CPU has them' },
    sources: [S(1), `${BUGS_C} spec_ctrl_disable_kernel_rrsba()`] },
  // ---- the VMM's part ------------------------------------------------------------------------
  { id: 'vmm.not-enumerated', effect: 'at-risk', title: 'the VMM does not advertise the virtual mitigation MSRs: it cannot be told what this guest relies on',
    remedy: { bhi: `${ASK_VMM_BHI}. ${ALT_BHI}`, retpoline: `${ASK_VMM_RET}. ${ALT_RET}` },
    sources: [S(1), S(3), S(5)] },
  { id: 'vmm.enum-lacks-bit', effect: 'at-risk', title: 'the VMM advertises the virtual MSRs but MSR_VIRTUAL_MITIGATION_ENUM lacks the bit this guest needs',
    remedy: { bhi: `the VMM must set MSR_VIRTUAL_MITIGATION_ENUM bit 0 BHB_CLEAR_SEQ_S_SUPPORT (it needs a host with BHI_CTRL to back it). ${ALT_BHI}`, retpoline: `the VMM must set MSR_VIRTUAL_MITIGATION_ENUM bit 1 RETPOLINE_S_SUPPORT (it needs a host with RRSBA_CTRL to back it). ${ALT_RET}` },
    sources: [S(2), S(4), S(5)] },
  { id: 'vmm.cannot-tell', effect: 'unknown', title: 'whether the VMM advertises the virtual MSRs could not be read (IA32_ARCH_CAPABILITIES unreadable)',
    remedy: { any: 'load the msr driver (modprobe msr) and run as root; a VMM that faults on IA32_ARCH_CAPABILITIES although CPUID.(7,0):EDX[29] is set breaks the CPUID contract' },
    sources: [S(3)] },
  // ---- the agent's report --------------------------------------------------------------------
  { id: 'report.not-reported', effect: 'at-risk', title: 'the VMM can back this guest but has not been told: MSR_VIRTUAL_MITIGATION_CTRL does not hold the bit yet',
    remedy: { any: 'run `virtmiti guest report` as root, and `virtmiti guest install-service` so that it runs at every boot and whenever a CPU comes online (the MSRs are per vCPU)' },
    sources: [S(3), S(4)] },
  { id: 'report.failed', effect: 'at-risk', title: "the agent's report did not reach every CPU (a fault, a read-back that differs, or a CPU that went offline)",
    remedy: { any: 'see the per-CPU outcome in the report (/run/virtmiti/report.json, or guest report --format json); a faulting write of an enumerated bit, or a read-back that differs, is the VMM breaking the contract: report it to the VMM operator' },
    sources: [S(3)] },
  { id: 'report.lockdown', effect: 'at-risk', title: 'writes to MSR_VIRTUAL_MITIGATION_CTRL are refused (EPERM): kernel lockdown or msr.allow_writes=off',
    remedy: { any: 'the msr driver refuses writes under kernel lockdown (integrity or confidentiality: Secure Boot often enables it) and with msr.allow_writes=off. Boot with msr.allow_writes=on; under lockdown no user-space agent can report, so the kernel itself must write the MSR (the RFC guest patches), or the VMM must force BHI_DIS_S / RRSBA_DIS_S for this guest unconditionally (KVM_CAP_FORCE_SPEC_CTRL userspace force)' },
    sources: [S(3), `${MSR_C} msr_write(): security_locked_down(LOCKDOWN_MSR), filter_write(): allow_writes`, S(5)] },
  { id: 'report.ctrl-unreadable', effect: 'unknown', title: 'MSR_VIRTUAL_MITIGATION_CTRL could not be read, so whether the VMM was told is unknown',
    remedy: { any: 'load the msr driver and run as root; a VMM that enumerates the MSRs must let CTRL be read' },
    sources: [S(3)] },
  // ---- the facts themselves ------------------------------------------------------------------
  { id: 'cpus.disagree', effect: 'at-risk', title: 'CPUs show different CPUID or MSR values: the kernel chose its mitigation from the boot CPU',
    remedy: { any: 'the VMM must present the same CPU model and virtual MSRs on every vCPU; the list of differences names the registers' },
    sources: [S(3), S(6)] },
  // A note: a read that faulted matters only through the concern that needed it (which then says unknown).
  { id: 'facts.read-fault', effect: 'note', title: 'some CPUID leaves or MSRs could not be read',
    remedy: { any: 'load the cpuid and msr drivers (modprobe cpuid msr) and run as root; the fault of each read is printed' },
    sources: [S(3)] },
]

export const FINDING_BY_ID: ReadonlyMap<string, FindingDef> = new Map(FINDINGS.map(f => [f.id, f]))

export function findingDef(id: string): FindingDef {
  const d = FINDING_BY_ID.get(id)
  if (!d) throw new Error(`unknown finding id ${id}`)
  return d
}

/** The remedy for one concern (or the generic one). */
export function remedyFor(d: FindingDef, concern?: Concern): string {
  return (concern ? d.remedy[concern] : undefined) ?? d.remedy.any ?? Object.values(d.remedy).join(' / ')
}
