// The guest decision (contract/CONTRACT.md sections 3, 4 and 6), laid out like Linux bugs.c:
// one small select step per conclusion, each returning its value with reasons and sources.
// Facts in, Decision out; no I/O.
import { fms, vendorOf } from './cpu-model.js'
import { parseCmdline, type MitigationPolicy } from './cmdline.js'
import type { BhiMode, Decision, Reason, SpectreV2Mode, Tri, VirtEnumeration } from './decision-types.js'
import { msrKey, type CpuFacts, type Facts } from './facts.js'
import { wantedMitiCtrl, type MitiCtrlWish } from './miti-ctrl.js'
import {
  ARCH_CAP_BHI_NO, ARCH_CAP_IBRS_ALL, ARCH_CAP_RRSBA, ARCH_CAP_RSBA, ARCH_CAP_VIRTUAL_ENUM,
  CPUID1_ECX_HYPERVISOR, CPUID7_2_EDX_BHI_CTRL, CPUID7_2_EDX_RRSBA_CTRL, CPUID7_EDX_ARCH_CAPABILITIES,
  CPUID7_EDX_SPEC_CTRL, MSR, VIRT_ENUM_MITIGATION_CTRL_SUPPORT, hasBit32,
} from './registers.js'
import {
  KERNEL_CPU_C, attackVectors, defaultVectors, hasAttackVectors, kernelVersion, kvmEnabled, legacyMitigationsOff, retbleedCmd,
  spectreBhiCmd, spectreV2Cmd,
} from './kernel-generation.js'
import { BHI_MODE_TEXT, V2_MODE_TEXT, parseSpectreV2, usesRetpoline, type SpectreV2Sysfs } from './sysfs-spectre-v2.js'

const BUGS_C = 'Linux arch/x86/kernel/cpu/bugs.c'
const COMMON_C = 'Linux arch/x86/kernel/cpu/common.c'
const S3 = 'contract/CONTRACT.md section 3'
const S4 = 'contract/CONTRACT.md section 4'
const S6 = 'contract/CONTRACT.md section 6'

const why = (rule: string, text: string, source: string): Reason => ({ rule, text, source })

/** CPU facts the rules read, from one CPU's CPUID and MSR facts; undefined where not known. */
export interface CpuView {
  vendor?: string
  family?: number
  model?: number
  stepping?: number
  hypervisor?: boolean
  edx7?: number
  edx72?: number
  /** null: the MSR does not exist (CPUID.(7,0):EDX[29] clear); undefined: unknown (read failed). */
  archCap?: bigint | null
}

export function viewCpu(c: CpuFacts): CpuView {
  const regs = (k: keyof CpuFacts['cpuid']) => { const f = c.cpuid[k]; return f && 'regs' in f ? f.regs : undefined }
  const l0 = regs('0x0.0'), l1 = regs('0x1.0'), l7 = regs('0x7.0'), l72 = regs('0x7.2')
  const v: CpuView = {}
  if (l0) v.vendor = vendorOf(l0)
  if (l1) { Object.assign(v, fms(l1.eax)); v.hypervisor = hasBit32(l1.ecx, CPUID1_ECX_HYPERVISOR) }
  if (l7) v.edx7 = l7.edx
  // Leaf 7 subleaf 2 exists only when leaf 7 EAX (max subleaf) >= 2; otherwise its bits are 0.
  if (l72) v.edx72 = l7 && l7.eax >= 2 ? l72.edx : 0
  else if (l7 && l7.eax < 2) v.edx72 = 0
  if (l7 && !hasBit32(l7.edx, CPUID7_EDX_ARCH_CAPABILITIES)) v.archCap = null
  else {
    const m = c.msr[msrKey(MSR.ARCH_CAPABILITIES)]
    if (m && 'value' in m) v.archCap = m.value
  }
  return v
}

const has = (v: bigint | null | undefined, m: bigint): Tri => v === undefined ? 'unknown' : v !== null && (v & m) !== 0n
const bit32 = (w: number | undefined, n: number): Tri => w === undefined ? 'unknown' : hasBit32(w, n)

// ---- X86_BUG_BHI (contract/CONTRACT.md section 6; common.c cpu_set_bug_bits) -------------------------

/** Linux cpu_vuln_whitelist NO_BHI: AMD, Hygon, and Centaur/Zhaoxin family 7. */
function onNoBhiWhitelist(v: CpuView): Tri {
  if (v.vendor === undefined) return 'unknown'
  if (v.vendor === 'AuthenticAMD' || v.vendor === 'HygonGenuine') return true
  if ((v.vendor === 'CentaurHauls' || v.vendor === '  Shanghai  ') && v.family === 7) return true
  return false
}

export function selectBhiAffected(v: CpuView, kernelBhi: BhiMode): { value: Tri; reasons: Reason[] } {
  const wl = onNoBhiWhitelist(v)
  if (wl === true) return { value: false, reasons: [why('bhi.whitelist', `${v.vendor} family ${v.family} is on the NO_BHI whitelist`, COMMON_C + ' cpu_vuln_whitelist NO_BHI; ' + S6)] }
  const eibrs = has(v.archCap, ARCH_CAP_IBRS_ALL)
  const hv = v.hypervisor ?? 'unknown'
  if (wl === 'unknown' || (eibrs !== true && hv !== true && (eibrs === 'unknown' || hv === 'unknown'))) {
    return { value: 'unknown', reasons: [why('bhi.affected', 'CPUID or ARCH_CAPABILITIES could not be read', S6)] }
  }
  if (eibrs !== true && hv !== true) {
    return { value: false, reasons: [why('bhi.eibrs-or-hypervisor', 'neither eIBRS (ARCH_CAP IBRS_ALL) nor a hypervisor: BHI is not flagged', COMMON_C + ' cpu_set_bug_bits; ' + S6)] }
  }
  const basis = eibrs === true ? 'eIBRS present' : 'running under a hypervisor (eIBRS could be hidden)'
  const bhiNo = has(v.archCap, ARCH_CAP_BHI_NO)
  if (bhiNo === 'unknown') {
    return { value: 'unknown', reasons: [why('bhi.bhi-no-unknown', `${basis}, but ARCH_CAPABILITIES (BHI_NO) could not be read`, COMMON_C + ' cpu_set_bug_bits; ' + S6)] }
  }
  if (bhiNo === true) {
    // Kernels before 9f725eec8fc0 (May 2025) exempt BHI_NO parts; later ones do not. Learn which from sysfs.
    const src = 'commit 9f725eec8fc0; ' + S6
    if (kernelBhi === 'not-affected') return { value: false, reasons: [why('bhi.bhi-no-exempt', `${basis}, ARCH_CAP BHI_NO set, and the kernel says "Not affected": it follows the pre-May-2025 BHI_NO exemption`, src)] }
    if (kernelBhi !== 'unknown' && kernelBhi !== 'not-reported') return { value: true, reasons: [why('bhi.bhi-no-not-exempt', `${basis}; ARCH_CAP BHI_NO set but the kernel reports a BHI state: it follows the rule without the BHI_NO exemption`, src)] }
    return { value: 'unknown', reasons: [why('bhi.bhi-no-kernel-dependent', `${basis}; ARCH_CAP BHI_NO set: affected or not depends on the kernel version, and its sysfs line does not say`, src)] }
  }
  return { value: true, reasons: [why('bhi.affected', `${basis}, not on the NO_BHI whitelist, no BHI_NO`, COMMON_C + ' cpu_set_bug_bits; ' + S6)] }
}

// ---- spectre_v2 mode (bugs.c spectre_v2_select_mitigation / spectre_v2_parse_cmdline) -----

/**
 * Intel models on cpu_vuln_blacklist with RETBLEED (Linux common.c, 5.19+): Skylake, Kaby Lake,
 * Cannon Lake, Ice Lake client, Comet Lake, Lakefield, Rocket Lake. Any Intel part with ARCH_CAP RSBA too.
 */
const RETBLEED_INTEL_MODELS = new Set([0x4e, 0x5e, 0x55, 0x8e, 0x9e, 0x66, 0x7e, 0xa5, 0xa6, 0x8a, 0xa7])

function retbleedIntel(v: CpuView): Tri {
  if (v.vendor !== 'GenuineIntel' || v.family !== 6) return false
  if (v.model !== undefined && RETBLEED_INTEL_MODELS.has(v.model)) return true
  return has(v.archCap, ARCH_CAP_RSBA)
}

const CFG_OFF = (config: Record<string, string> | undefined, ...names: string[]): boolean => names.some(n => config?.[n] === 'n')

/**
 * spectre_v2 as one kernel generation selects it (contract/CONTRACT.md section 6). Before the attack
 * vectors (bugs.c 6.1.192 / 6.12.117) mitigations=off makes the command NONE, and auto and on
 * (FORCE) both pick eIBRS, else IBRS on retbleed Intel parts, else retpoline. With them (bugs.c
 * Linux 7.2.13) mitigations= only clears vectors: auto mitigates only if user_kernel or guest_host
 * is on, on (FORCE) always does, and IBRS for retbleed is a later update for auto alone
 * (spectre_v2_update_mitigation), judged by the retbleed mitigation already selected.
 */
function spectreV2For(v: CpuView, p: MitigationPolicy, vectors: boolean, release: string | undefined, config?: Record<string, string>): { value: SpectreV2Mode; reasons: Reason[] } {
  const src = BUGS_C + ' spectre_v2_select_mitigation'
  const srcGen = BUGS_C + ' spectre_v2_parse_cmdline; ' + KERNEL_CPU_C + '; ' + S6
  let cmd = spectreV2Cmd(p, vectors)
  if (!vectors && cmd !== 'off' && legacyMitigationsOff(p)) {
    return { value: 'none', reasons: [why('v2.mitigations-off', `mitigations=off (kernel ${release ?? '(release unknown)'}, before the attack-vector controls: overrides ${cmd !== 'auto' ? `spectre_v2=${cmd}` : 'every spectre_v2= choice'})`, srcGen)] }
  }
  const eibrs = has(v.archCap, ARCH_CAP_IBRS_ALL)
  const notes: Reason[] = []
  const eibrsCmds: Record<string, SpectreV2Mode> = { 'eibrs': 'eibrs', 'eibrs,lfence': 'eibrs-lfence', 'eibrs,retpoline': 'eibrs-retpoline' }
  if (eibrsCmds[cmd]) {
    if (eibrs === 'unknown') return { value: 'unknown', reasons: [why('v2.cmdline', `spectre_v2=${cmd}, eIBRS unknown`, src)] }
    if (eibrs === true) return { value: eibrsCmds[cmd]!, reasons: [why('v2.cmdline', `spectre_v2=${cmd} on an eIBRS CPU`, src)] }
    notes.push(why('v2.cmdline-fallback', `spectre_v2=${cmd} without eIBRS: "Switching to AUTO select"`, src))
    cmd = 'auto'
  }
  if (cmd === 'ibrs') {
    const ok = v.vendor === 'GenuineIntel' ? bit32(v.edx7, CPUID7_EDX_SPEC_CTRL) : false
    if (ok === 'unknown') return { value: 'unknown', reasons: [why('v2.cmdline', 'spectre_v2=ibrs, IBRS unknown', src)] }
    if (ok && !CFG_OFF(config, 'CONFIG_MITIGATION_IBRS_ENTRY', 'CONFIG_CPU_IBRS_ENTRY')) return { value: 'ibrs', reasons: [why('v2.cmdline', 'spectre_v2=ibrs on an Intel CPU with IBRS', src)] }
    notes.push(why('v2.cmdline-fallback', 'spectre_v2=ibrs without an Intel CPU with IBRS (or without IBRS_ENTRY): "Switching to AUTO select"', src))
    cmd = 'auto'
  }
  const explicit: Record<string, SpectreV2Mode> = {
    'off': 'none', 'retpoline': 'retpoline', 'retpoline,generic': 'retpoline',
    'retpoline,lfence': 'lfence', 'retpoline,amd': 'lfence',
  }
  if (explicit[cmd]) return { value: explicit[cmd]!, reasons: [why('v2.cmdline', cmd === 'off' && p.nospectreV2 ? 'nospectre_v2 (it overrides every spectre_v2=)' : `spectre_v2=${cmd}`, src)] }
  // cmd is auto or on (FORCE).
  const vec = vectors ? attackVectors(p.all.mitigations, kvmEnabled(config) !== false) : undefined
  const mitigate = cmd === 'on' || !vec || vec.userKernel || vec.guestHost
  const rb = retbleedIntel(v)
  const ibrs = bit32(v.edx7, CPUID7_EDX_SPEC_CTRL)
  const rbCmd = retbleedCmd(p, release)
  // Whether IBRS for retbleed applies after the base choice (bugs.c, see above).
  let ibrsRule: boolean, ibrsWhy: string
  if (!vectors) { ibrsRule = rbCmd !== 'off' && rbCmd !== 'stuff'; ibrsWhy = `retbleed=${rbCmd}` }
  else if (cmd === 'on') { ibrsRule = false; ibrsWhy = 'spectre_v2=on: spectre_v2_update_mitigation picks IBRS for auto only' }
  else {
    // retbleed_select_mitigation 7.2.13: off -> NONE; stuff stays STUFF (CALL_DEPTH_TRACKING, Intel);
    // unret/ibpb stay; auto -> IBRS only if RETBLEED is to be mitigated (the same vectors as spectre_v2).
    const stuff = rbCmd === 'stuff' && !CFG_OFF(config, 'CONFIG_MITIGATION_CALL_DEPTH_TRACKING')
    ibrsRule = rbCmd === 'auto' ? mitigate && !CFG_OFF(config, 'CONFIG_MITIGATION_RETBLEED') : rbCmd !== 'off' && !stuff
    ibrsWhy = `retbleed=${rbCmd}${rbCmd === 'auto' && !mitigate ? ' with neither user_kernel nor guest_host on: retbleed mitigation NONE' : ''}`
  }
  ibrsRule = ibrsRule && !CFG_OFF(config, 'CONFIG_MITIGATION_IBRS_ENTRY', 'CONFIG_CPU_IBRS_ENTRY')
  const ret = (value: SpectreV2Mode, r: Reason) => ({ value, reasons: [...notes, r] })
  let base: SpectreV2Mode
  if (!mitigate) base = 'none'
  else if (eibrs === true) return ret('eibrs', why('v2.auto-eibrs', `${cmd}: the CPU has eIBRS (ARCH_CAP IBRS_ALL)`, src))
  else if (v.vendor === 'AuthenticAMD' && (v.family ?? 0) >= 0x19) return ret('unknown', why('v2.auto-amd-autoibrs', `${cmd} on AMD family 19h+: Automatic IBRS (CPUID 0x80000021) decides, and the probe does not read that leaf`, src))
  else if (eibrs === 'unknown' && v.archCap === undefined) return ret('unknown', why('v2.auto', 'ARCH_CAPABILITIES could not be read', src))
  else base = 'retpoline'
  if (ibrsRule && rb !== false && ibrs !== false) {
    if (rb === 'unknown' || ibrs === 'unknown') return ret('unknown', why('v2.auto', 'RETBLEED or IBRS state unknown', src))
    return ret('ibrs', why('v2.auto-ibrs', `${cmd}: Intel part affected by RETBLEED with IBRS available (${ibrsWhy}; assumes CONFIG_MITIGATION_IBRS_ENTRY=y unless the config says otherwise)`, src + '; ' + COMMON_C + ' cpu_vuln_blacklist RETBLEED; ' + S6))
  }
  if (rb === true && ibrs === true && base !== 'none') return ret(base, why('v2.auto-retbleed', `${cmd}: Intel part affected by RETBLEED, but ${ibrsWhy} keeps spectre_v2 from choosing IBRS: retpoline`, src + '; ' + S6))
  if (base === 'none') {
    if (p.mitigations?.startsWith('off')) return ret('none', why('v2.mitigations-off', 'mitigations=off: spectre_v2 auto selects nothing', srcGen))
    return ret('none', why('v2.vectors-off', `mitigations=${p.mitigations}: neither the user_kernel nor the guest_host attack vector is on, so spectre_v2 auto mitigates nothing (kernel ${release})`, srcGen))
  }
  return ret('retpoline', why('v2.auto-retpoline', `${cmd}: no eIBRS and no IBRS-for-retbleed: retpoline`, src + ' spectre_v2_select_retpoline'))
}

export function selectSpectreV2(v: CpuView, p: MitigationPolicy, release?: string, config?: Record<string, string>): { value: SpectreV2Mode; reasons: Reason[] } {
  const gen = hasAttackVectors(release)
  if (gen !== 'unknown') return spectreV2For(v, p, gen, release, config)
  const old = spectreV2For(v, p, false, release, config), neu = spectreV2For(v, p, true, release, config)
  if (old.value === neu.value) return old
  const src = BUGS_C + ' spectre_v2_select_mitigation; ' + KERNEL_CPU_C + '; ' + S6
  return { value: 'unknown', reasons: [why('v2.generation', `kernels before the attack vectors select ${old.value} here, kernels with them ${neu.value}, and kernel ${release ?? '(release unknown)'} is not classified`, src)] }
}

// ---- BHI mitigation (bugs.c bhi_select_mitigation / bhi_apply_mitigation, contract/CONTRACT.md section 6) -----

type BhiPolicy = 'on' | 'off' | 'vmexit' | 'unknown'

export function bhiPolicy(p: MitigationPolicy, release?: string, config?: Record<string, string>): { value: BhiPolicy; reason: Reason } {
  const gen = hasAttackVectors(release)
  if (gen !== 'unknown') return bhiPolicyFor(p, gen, release, config)
  const old = bhiPolicyFor(p, false, release, config), neu = bhiPolicyFor(p, true, release, config)
  if (old.value === neu.value) return old
  return { value: 'unknown', reason: why('bhi.policy-generation', `mitigations=${p.mitigations}: attack vectors decide on kernels that have them, auto applies on older ones, and kernel ${release ?? '(release unknown)'} is not classified`, BUGS_C + ' spectre_bhi_parse_cmdline; ' + S6) }
}

function bhiPolicyFor(p: MitigationPolicy, vectors: boolean, release: string | undefined, config?: Record<string, string>): { value: BhiPolicy; reason: Reason } {
  const src = BUGS_C + ' spectre_bhi_parse_cmdline; ' + S6
  const kvm = kvmEnabled(config)
  const kvmText = kvm === 'unknown' ? 'assumes CONFIG_KVM enabled (Debian: =m; no /boot/config-<release> was read)' : `CONFIG_KVM=${config?.['CONFIG_KVM'] ?? 'n'} in the kernel's config`
  const cmd = spectreBhiCmd(p, release)
  // An explicit spectre_bhi= is honoured on every generation (before the vectors, mitigations=off
  // turns spectre_v2 off, and selectBhi then never reaches BHI selection).
  if (cmd) return { value: cmd, reason: why('bhi.policy', `spectre_bhi=${cmd}`, src) }
  // Values the parser does not know are ignored ("Ignoring unknown spectre_bhi option"): vmexit
  // before 6.11 (Debian 12's 6.1.y, measured under QEMU), auto everywhere (bugs.c 7.2.13 knows only on/off/vmexit).
  const ignored = p.all.spectreBhi.filter(x => x !== 'auto')
  const ign = ignored.length ? `; spectre_bhi=${ignored.at(-1)} is ignored by kernel ${release ?? '(release unknown)'}${ignored.at(-1) === 'vmexit' ? ' (vmexit was added in 6.11)' : ''}` : ''
  const m = p.mitigations
  const dflt = `${p.spectreBhi !== undefined ? `spectre_bhi=${p.spectreBhi}` : 'no spectre_bhi='}${m !== undefined ? `, mitigations=${m}` : ''}${ign}`
  // CONFIG_MITIGATION_SPECTRE_BHI=n makes the default off (bugs.c: bhi_mitigation's initial value).
  if (config?.['CONFIG_MITIGATION_SPECTRE_BHI'] === 'n') return { value: 'off', reason: why('bhi.policy-config', `${dflt}: off (CONFIG_MITIGATION_SPECTRE_BHI is not set in the kernel's config)`, src) }
  if (!vectors) {
    if (legacyMitigationsOff(p)) return { value: 'off', reason: why('bhi.policy', 'mitigations=off', src) }
    // kernel/cpu.c before the vectors: "Unsupported mitigations=..." and auto stays.
    if (p.all.mitigations.some(x => x !== 'off' && x !== 'auto' && x !== 'auto,nosmt')) {
      return { value: 'on', reason: why('bhi.policy-legacy-auto', `${dflt}: kernel ${release} has no attack-vector controls, logs "Unsupported mitigations=" and behaves as auto: on`, src + '; ' + KERNEL_CPU_C) }
    }
    return { value: 'on', reason: why('bhi.policy-default', `${dflt}: on (assumes the default CONFIG_MITIGATION_SPECTRE_BHI=y)`, src) }
  }
  const vec = attackVectors(p.all.mitigations, kvm !== false)
  // 7.x bhi_select_mitigation (bugs.c Linux 7.2.13), auto: user_kernel and guest_host -> on; guest_host only -> VM exit only; else off.
  const value: BhiPolicy = vec.guestHost ? (vec.userKernel ? 'on' : 'vmexit') : 'off'
  if (defaultVectors(vec, kvm !== false) && kvm !== false) {
    return { value, reason: why('bhi.policy-default', `${dflt}: on (assumes the default CONFIG_MITIGATION_SPECTRE_BHI=y; the guest_host vector follows CONFIG_KVM: ${kvmText})`, src) }
  }
  if (m?.startsWith('off') && !p.all.mitigations.some(x => x.startsWith('auto'))) return { value: 'off', reason: why('bhi.policy', 'mitigations=off', src) }
  return { value, reason: why('bhi.policy-vectors', `${dflt}: attack vectors user_kernel ${vec.userKernel ? 'on' : 'off'}, guest_host ${vec.guestHost ? `on (${kvmText})` : `off${kvm === false && !(m ?? '').includes('no_guest_host') ? ` (${kvmText}: its default)` : ''}`}: BHI ${value === 'vmexit' ? 'on VM exit only' : value}`, BUGS_C + ' bhi_select_mitigation; ' + KERNEL_CPU_C + '; ' + S6) }
}

/**
 * rrsba_disabled in bugs.c: spectre_v2_select_mitigation calls spec_ctrl_disable_kernel_rrsba() for
 * the retpoline, eIBRS+retpoline and eIBRS+LFENCE modes, whatever spectre_bhi= says; it holds when
 * the CPU has no RRSBA (ARCH_CAP bit 19 clear, or no ARCH_CAPABILITIES) or can disable it (RRSBA_CTRL).
 */
function rrsbaDisabled(v: CpuView, v2: SpectreV2Mode): Tri {
  if (v2 !== 'retpoline' && v2 !== 'eibrs-retpoline' && v2 !== 'eibrs-lfence') return false
  const rrsba = has(v.archCap, ARCH_CAP_RRSBA)
  if (rrsba === false) return true
  const ctrl = bit32(v.edx72, CPUID7_2_EDX_RRSBA_CTRL)
  if (rrsba === true && ctrl === true) return true
  return rrsba === 'unknown' || ctrl === 'unknown' ? 'unknown' : false
}

/**
 * The BHI state the kernel reports, in two steps as bugs.c has them: bhi_select/apply_mitigation sets
 * a feature (BHI_DIS_S, the SW loop on syscall+VM exit, or on VM exit only) unless the policy is off
 * or retpoline already covers BHI; then spectre_bhi_state() reports the first that holds of: not
 * affected, BHI_DIS_S, SW loop, "Retpoline" (RETPOLINE && rrsba_disabled: policy-independent), VM-exit
 * loop, vulnerable.
 */
export function selectBhi(v: CpuView, affected: Tri, v2: SpectreV2Mode, p: MitigationPolicy, release?: string, config?: Record<string, string>): { value: BhiMode; reasons: Reason[] } {
  const src = BUGS_C + ' bhi_select_mitigation, spectre_bhi_state; ' + S6
  if (affected === false) return { value: 'not-affected', reasons: [why('bhi.select', 'not affected', src)] }
  if (affected === 'unknown') return { value: 'unknown', reasons: [why('bhi.select', 'whether BHI applies is unknown', src)] }
  if (v2 === 'unknown') return { value: 'unknown', reasons: [why('bhi.select', 'the spectre_v2 mode is unknown', src)] }
  const pol = bhiPolicy(p, release, config)
  // spectre_v2=off / nospectre_v2 (SPECTRE_V2_CMD_NONE) turns BHI off on every generation
  // (7.x bhi_update_mitigation; before, spectre_v2 NONE returns before BHI is selected).
  const gen = hasAttackVectors(release)
  const v2Off = gen === 'unknown' ? spectreV2Cmd(p, false) === 'off' && spectreV2Cmd(p, true) === 'off' : spectreV2Cmd(p, gen) === 'off'
  if (v2Off) return { value: 'vulnerable', reasons: [why('bhi.v2-off', `${p.nospectreV2 ? 'nospectre_v2' : 'spectre_v2=off'}: no BHI mitigation is selected`, src + ' bhi_update_mitigation')] }
  if (v2 === 'none' || v2 === 'not-affected') {
    // Before the attack vectors, spectre_v2 NONE (mitigations=off) returns before BHI is selected.
    // With them BHI is selected on its own (measured on 7.2.13: mitigations=off spectre_bhi=on ->
    // "Vulnerable; ...; BHI: SW loop, KVM: SW loop").
    if (gen === false || pol.value === 'off') return { value: 'vulnerable', reasons: [pol.reason, why('bhi.v2-off', `spectre_v2 mitigation off${gen === false ? ` on kernel ${release} (before the attack vectors): BHI is never selected` : ' and BHI policy off'}`, src)] }
    if (gen === 'unknown') return { value: 'unknown', reasons: [pol.reason, why('bhi.generation', `spectre_v2 off: older kernels then select no BHI mitigation, kernels with attack vectors still do; kernel ${release ?? '(release unknown)'} is not classified`, src)] }
  }
  if (pol.value === 'unknown') return { value: 'unknown', reasons: [pol.reason] }
  const reasons = [pol.reason]
  // X86_FEATURE_RETPOLINE is set by every retpoline and LFENCE mode; RETPOLINE_LFENCE by the LFENCE ones.
  const retpoline = v2 === 'retpoline' || v2 === 'eibrs-retpoline'
  const lfence = v2 === 'lfence' || v2 === 'eibrs-lfence'
  const rrsbaOff = rrsbaDisabled(v, v2)
  const rrsbaText = 'no RRSBA (ARCH_CAP bit 19 clear or no ARCH_CAPABILITIES), or RRSBA disabled with RRSBA_DIS_S (RRSBA_CTRL)'
  if (pol.value !== 'off') {
    // (1) Retpoline (not the LFENCE flavour) mitigates BHI unless RRSBA behaviour remains.
    if (retpoline && rrsbaOff === true) return { value: 'retpoline', reasons: [...reasons, why('bhi.retpoline', `retpoline in use and ${rrsbaText}`, src + ' spec_ctrl_disable_kernel_rrsba')] }
    if (retpoline && rrsbaOff === 'unknown') return { value: 'unknown', reasons: [...reasons, why('bhi.retpoline', 'retpoline in use; RRSBA state unknown', src)] }
    // (2) Hardware control.
    const bhiCtrl = bit32(v.edx72, CPUID7_2_EDX_BHI_CTRL)
    if (bhiCtrl === 'unknown') return { value: 'unknown', reasons: [...reasons, why('bhi.bhi-ctrl', 'CPUID.(7,2) unknown', src)] }
    if (bhiCtrl) return { value: 'bhi-dis-s', reasons: [...reasons, why('bhi.bhi-dis-s', 'CPUID.(7,2):EDX[4] BHI_CTRL: the kernel sets BHI_DIS_S', src + ' spec_ctrl_bhi_dis')] }
    // (3) Software loop (64-bit kernels; this agent targets x86_64).
    if (pol.value === 'vmexit') return { value: 'vmexit-sw-loop', reasons: [...reasons, why('bhi.vmexit', 'spectre_bhi=vmexit: SW loop on VM exit only', src)] }
    return { value: 'sw-loop', reasons: [...reasons, why('bhi.sw-loop', 'no BHI_CTRL: SW BHB clearing loop on syscall and VM exit', src)] }
  }
  // Policy off: no BHI feature is set, but spectre_bhi_state() still says "Retpoline" when the
  // retpoline feature is on and rrsba_disabled (measured: Debian 6.1 under QEMU, spectre_bhi=off).
  if (rrsbaOff === 'unknown') return { value: 'unknown', reasons: [...reasons, why('bhi.state-retpoline', 'policy off; whether RRSBA is disabled is unknown', src)] }
  if (rrsbaOff === true && retpoline) return { value: 'retpoline', reasons: [...reasons, why('bhi.state-retpoline', `policy off, but spectre_bhi_state() reports "Retpoline" whenever retpoline is in use and ${rrsbaText}`, src)] }
  if (rrsbaOff === true && lfence) {
    // retpoline_seq_enabled() excludes RETPOLINE_LFENCE in bugs.c 6.1.192, 6.12.117 and Linux 7.2.13
    // (spectre_bhi_state): "Vulnerable". Older stable kernels lack the check; only 7.2+ is taken as read.
    const ver = kernelVersion(release)
    if (ver && (ver[0] > 7 || (ver[0] === 7 && ver[1] >= 2))) return { value: 'vulnerable', reasons: [...reasons, why('bhi.state-retpoline-lfence', `policy off with eIBRS+LFENCE: spectre_bhi_state() counts only the retpoline sequence, not LFENCE (kernel ${release}): "Vulnerable"`, src + ' retpoline_seq_enabled')] }
    return { value: 'unknown', reasons: [...reasons, why('bhi.state-retpoline-lfence', 'policy off with eIBRS+LFENCE: kernels before the RETPOLINE_LFENCE check in spectre_bhi_state() say "Retpoline", newer ones "Vulnerable"', src)] }
  }
  return { value: 'vulnerable', reasons: [...reasons, why('bhi.off', 'spectre_bhi=off (or mitigations=off): no BHI mitigation', src)] }
}

// ---- What the guest reports (contract/CONTRACT.md section 4) ----------------------------------------

export function selectWish(kernel: { bhi: BhiMode; retpoline: Tri; sysfs: boolean }): { wish: MitiCtrlWish; reasons: Reason[] } {
  const reasons: Reason[] = []
  let bhb: Tri
  if (!kernel.sysfs) { bhb = 'unknown'; reasons.push(why('ctrl.bhb', 'no spectre_v2 sysfs line: cannot tell which BHI mitigation the kernel uses; CTRL bit 0 left as it is', S4)) }
  else if (kernel.bhi === 'sw-loop') { bhb = true; reasons.push(why('ctrl.bhb', 'the kernel clears the BHB with the short SW loop on syscall entry ("BHI: SW loop, KVM: SW loop"): set BHB_CLEAR_SEQ_S_USED', S4)) }
  else if (kernel.bhi === 'unknown') { bhb = 'unknown'; reasons.push(why('ctrl.bhb', 'the BHI segment of the sysfs line is not one this agent knows: CTRL bit 0 left as it is', S4)) }
  else { bhb = false; reasons.push(why('ctrl.bhb', `the kernel does not rely on the short SW loop in supervisor mode (${BHI_MODE_TEXT[kernel.bhi]}): clear BHB_CLEAR_SEQ_S_USED`, S4)) }
  const ret = kernel.retpoline
  if (ret === 'unknown') reasons.push(why('ctrl.retpoline', 'the spectre_v2 mode is unknown: CTRL bit 1 left as it is', S4))
  else reasons.push(why('ctrl.retpoline', ret ? 'the kernel uses retpoline in supervisor mode: set RETPOLINE_S_USED' : 'the kernel does not use retpoline: clear RETPOLINE_S_USED', S4))
  return { wish: { bhbClearSeqSUsed: bhb, retpolineSUsed: ret }, reasons }
}

// ---- Discovery chain, per CPU (contract/CONTRACT.md section 3) ---------------------------------------

export function selectVirt(c: CpuFacts, wish: MitiCtrlWish, v: CpuView = viewCpu(c)): VirtEnumeration {
  const m = (i: number) => c.msr[msrKey(i)]
  const not = (reached: VirtEnumeration['reached'], text: string): VirtEnumeration =>
    ({ cpu: c.cpu, reached, enumerated: false, reason: why('virt.chain', text, S3) })
  if (v.archCap === null) return not('none', 'no IA32_ARCH_CAPABILITIES (CPUID.(7,0):EDX[29] clear): virtual MSRs not enumerated')
  if (v.archCap === undefined) {
    const f = m(MSR.ARCH_CAPABILITIES)
    return not('none', `IA32_ARCH_CAPABILITIES unreadable${f && 'fault' in f ? ` (${f.fault.errno}: ${f.fault.message})` : ''}: cannot tell`)
  }
  if ((v.archCap & ARCH_CAP_VIRTUAL_ENUM) === 0n) return not('none', 'ARCH_CAPABILITIES bit 63 (VIRTUAL_ENUM) clear: the VMM does not advertise the virtual MSRs; 0x5000000x not probed')
  const ve = m(MSR.VIRTUAL_ENUMERATION)
  if (!ve || !('value' in ve)) return not('arch-cap', `MSR_VIRTUAL_ENUMERATION not read${ve && 'fault' in ve ? ` (${ve.fault.errno}: ${ve.fault.message})` : ''} although ARCH_CAP bit 63 is set`)
  if ((ve.value & VIRT_ENUM_MITIGATION_CTRL_SUPPORT) === 0n) return not('arch-cap', 'MSR_VIRTUAL_ENUMERATION bit 0 (MITIGATION_CTRL_SUPPORT) clear')
  const me = m(MSR.VIRTUAL_MITIGATION_ENUM)
  if (!me || !('value' in me)) return not('virtual-enum', `MSR_VIRTUAL_MITIGATION_ENUM not read${me && 'fault' in me ? ` (${me.fault.errno}: ${me.fault.message})` : ''}`)
  const out: VirtEnumeration = { cpu: c.cpu, reached: 'miti-enum', enumerated: true, mitiEnum: me.value, reason: why('virt.chain', 'ARCH_CAP bit 63, VIRTUAL_ENUMERATION bit 0 and MITIGATION_ENUM read: virtual MSRs enumerated', S3) }
  const ctrl = m(MSR.VIRTUAL_MITIGATION_CTRL)
  if (ctrl && 'value' in ctrl) { out.mitiCtrl = ctrl.value; out.wanted = wantedMitiCtrl(ctrl.value, me.value, wish) }
  return out
}

// ---- CPUs that disagree -----------------------------------------------------------------------

function signatureOf(c: CpuFacts, v: CpuView): Record<string, string> {
  const val = (i: number) => { const f = c.msr[msrKey(i)]; return !f ? '-' : 'value' in f ? f.value.toString(16) : 'fault' in f ? f.fault.errno : 'skipped' }
  return {
    'vendor': String(v.vendor), 'family/model/stepping': `${v.family}/${v.model}/${v.stepping}`, 'hypervisor bit': String(v.hypervisor),
    'CPUID.(7,0):EDX': String(v.edx7), 'CPUID.(7,2):EDX': String(v.edx72),
    'IA32_ARCH_CAPABILITIES': val(MSR.ARCH_CAPABILITIES), 'MSR_VIRTUAL_ENUMERATION': val(MSR.VIRTUAL_ENUMERATION),
    'MSR_VIRTUAL_MITIGATION_ENUM': val(MSR.VIRTUAL_MITIGATION_ENUM), 'MSR_VIRTUAL_MITIGATION_CTRL': val(MSR.VIRTUAL_MITIGATION_CTRL),
  }
}

/** `views[i]` is viewCpu(cpus[i]), computed once by the caller (decide) for all steps. */
export function findDisagreements(cpus: CpuFacts[], views: CpuView[] = cpus.map(viewCpu)): { cpu: number; what: string }[] {
  if (cpus.length < 2) return []
  const ref = signatureOf(cpus[0]!, views[0]!)
  const out: { cpu: number; what: string }[] = []
  for (let i = 1; i < cpus.length; i++) {
    const c = cpus[i]!
    const s = signatureOf(c, views[i]!)
    for (const k of Object.keys(ref)) if (s[k] !== ref[k]) out.push({ cpu: c.cpu, what: `${k} differs from CPU ${cpus[0]!.cpu}` })
  }
  return out
}

// ---- The whole decision -------------------------------------------------------------------------

export function decide(facts: Facts): Decision {
  // One view per CPU, shared by every step below (the probe's per-CPU cost is on this path).
  const views = facts.cpus.map(viewCpu)
  const v = views[0]!
  const policy = parseCmdline(facts.kernel.cmdline ?? '')
  const line = facts.kernel.vulnerabilities['spectre_v2']
  const sys: SpectreV2Sysfs | undefined = line !== undefined ? parseSpectreV2(line) : undefined
  const kernel = {
    spectreV2: sys?.mode ?? 'unknown' as SpectreV2Mode,
    bhi: sys?.bhi ?? 'unknown' as BhiMode,
    retpoline: sys ? usesRetpoline(sys.mode) : 'unknown' as Tri,
    ...(sys ? { raw: sys.raw } : {}),
  }
  const affected = selectBhiAffected(v, kernel.bhi)
  const v2 = selectSpectreV2(v, policy, facts.kernel.release, facts.kernel.config)
  // Predict BHI from the kernel's actual spectre_v2 mode where known, so one mismatch does not cascade.
  const bhi = selectBhi(v, affected.value, kernel.spectreV2 !== 'unknown' ? kernel.spectreV2 : v2.value, policy, facts.kernel.release, facts.kernel.config)
  const mismatches: Decision['mismatches'] = []
  if (sys && kernel.spectreV2 !== 'unknown' && v2.value !== 'unknown' && kernel.spectreV2 !== v2.value && kernel.spectreV2 !== 'not-affected') {
    mismatches.push({ what: 'spectre_v2', kernel: sys.modeText, expected: V2_MODE_TEXT[v2.value], reason: v2.reasons[v2.reasons.length - 1]! })
  }
  // A kernel that predates BHI reporting cannot mismatch; the rest compare directly.
  if (sys && kernel.bhi !== 'unknown' && kernel.bhi !== 'not-reported' && bhi.value !== 'unknown' && kernel.bhi !== bhi.value) {
    mismatches.push({ what: 'bhi', kernel: sys.bhiText ?? BHI_MODE_TEXT[kernel.bhi], expected: BHI_MODE_TEXT[bhi.value], reason: bhi.reasons[bhi.reasons.length - 1]! })
  }
  const { wish, reasons: wishReasons } = selectWish({ bhi: kernel.bhi, retpoline: kernel.retpoline, sysfs: sys !== undefined })
  const virt = facts.cpus.map((c, i) => selectVirt(c, wish, views[i]))
  return {
    cpu: { vendor: v.vendor ?? 'unknown', family: v.family ?? -1, model: v.model ?? -1, stepping: v.stepping ?? -1, hypervisor: v.hypervisor ?? false },
    bhiAffected: affected,
    kernel,
    expected: { spectreV2: v2.value, bhi: bhi.value, retpoline: usesRetpoline(v2.value), reasons: [...v2.reasons, ...bhi.reasons] },
    mismatches,
    wish,
    wishReasons,
    virt,
    enumerated: virt.length > 0 && virt.every(x => x.enumerated),
    disagreements: findDisagreements(facts.cpus, views),
  }
}

export { kernelVersion }
