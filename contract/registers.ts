// Register and bit definitions, as data (contract/CONTRACT.md section 2).
// Every bit names its source so a reviewer can check it line by line.

export interface BitDef {
  readonly bit: number
  readonly name: string
  readonly meaning: string
  readonly source: string
}

export interface RegisterDef {
  readonly name: string
  /** MSR index, or CPUID leaf for CPUID words. */
  readonly index: number
  readonly subleaf?: number
  /** For CPUID words: which output register. */
  readonly word?: 'eax' | 'ebx' | 'ecx' | 'edx'
  readonly kind: 'msr' | 'cpuid'
  readonly source: string
  readonly bits: readonly BitDef[]
}

const LINUX_MSR = 'Linux arch/x86/include/asm/msr-index.h'
const XEN_MSR = 'Xen xen/arch/x86/include/asm/msr-index.h@c447b73'
const RFC_V3 = 'RFC v3 04/10, 07/10 (20240410143446.797262-5/-8-chao.gao@intel.com)'

export const MSR = {
  SPEC_CTRL: 0x48,
  ARCH_CAPABILITIES: 0x10a,
  VIRTUAL_ENUMERATION: 0x50000000,
  VIRTUAL_MITIGATION_ENUM: 0x50000001,
  VIRTUAL_MITIGATION_CTRL: 0x50000002,
} as const

export const ARCH_CAPABILITIES: RegisterDef = {
  name: 'IA32_ARCH_CAPABILITIES', index: MSR.ARCH_CAPABILITIES, kind: 'msr',
  source: 'contract/CONTRACT.md section 2; ' + LINUX_MSR,
  bits: [
    { bit: 0, name: 'RDCL_NO', meaning: 'not susceptible to Meltdown (rogue data cache load)', source: LINUX_MSR },
    { bit: 1, name: 'IBRS_ALL', meaning: 'enhanced IBRS (eIBRS) supported', source: LINUX_MSR },
    { bit: 2, name: 'RSBA', meaning: 'RET may use alternative (BTB) predictors when the RSB is empty', source: LINUX_MSR },
    { bit: 3, name: 'SKIP_VMENTRY_L1DFLUSH', meaning: 'no L1D flush needed on VM entry', source: LINUX_MSR },
    { bit: 4, name: 'SSB_NO', meaning: 'not susceptible to speculative store bypass', source: LINUX_MSR },
    { bit: 5, name: 'MDS_NO', meaning: 'not susceptible to MDS', source: LINUX_MSR },
    { bit: 6, name: 'PSCHANGE_MC_NO', meaning: 'no machine check on page size change', source: LINUX_MSR },
    { bit: 7, name: 'TSX_CTRL', meaning: 'TSX_CTRL MSR present', source: LINUX_MSR },
    { bit: 8, name: 'TAA_NO', meaning: 'not susceptible to TSX async abort', source: LINUX_MSR },
    { bit: 13, name: 'SBDR_SSDP_NO', meaning: 'not susceptible to SBDR/SSDP', source: LINUX_MSR },
    { bit: 14, name: 'FBSDP_NO', meaning: 'not susceptible to FBSDP', source: LINUX_MSR },
    { bit: 15, name: 'PSDP_NO', meaning: 'not susceptible to PSDP', source: LINUX_MSR },
    { bit: 17, name: 'FB_CLEAR', meaning: 'VERW clears fill buffers', source: LINUX_MSR },
    { bit: 19, name: 'RRSBA', meaning: 'restricted RSB alternate: RET may be predicted from the BTB on RSB underflow', source: LINUX_MSR },
    { bit: 20, name: 'BHI_NO', meaning: 'not susceptible to branch history injection', source: LINUX_MSR },
    { bit: 24, name: 'PBRSB_NO', meaning: 'not susceptible to post-barrier RSB predictions', source: LINUX_MSR },
    { bit: 26, name: 'GDS_NO', meaning: 'not susceptible to gather data sampling', source: LINUX_MSR },
    { bit: 27, name: 'RFDS_NO', meaning: 'not susceptible to register file data sampling', source: LINUX_MSR },
    { bit: 62, name: 'ITS_NO', meaning: 'not susceptible to indirect target selection', source: LINUX_MSR },
    { bit: 63, name: 'VIRTUAL_ENUM', meaning: 'MSR_VIRTUAL_ENUMERATION (0x50000000) exists', source: RFC_V3 },
  ],
}

export const SPEC_CTRL: RegisterDef = {
  name: 'IA32_SPEC_CTRL', index: MSR.SPEC_CTRL, kind: 'msr',
  source: 'contract/CONTRACT.md section 2; ' + XEN_MSR,
  bits: [
    { bit: 0, name: 'IBRS', meaning: 'indirect branch restricted speculation', source: LINUX_MSR },
    { bit: 1, name: 'STIBP', meaning: 'single thread indirect branch predictors', source: LINUX_MSR },
    { bit: 2, name: 'SSBD', meaning: 'speculative store bypass disable', source: LINUX_MSR },
    { bit: 3, name: 'IPRED_DIS_U', meaning: 'indirect predictor disable, user', source: XEN_MSR },
    { bit: 4, name: 'IPRED_DIS_S', meaning: 'indirect predictor disable, supervisor', source: XEN_MSR },
    { bit: 5, name: 'RRSBA_DIS_U', meaning: 'RRSBA disable, user', source: XEN_MSR },
    { bit: 6, name: 'RRSBA_DIS_S', meaning: 'RRSBA disable, supervisor', source: LINUX_MSR },
    { bit: 7, name: 'PSFD', meaning: 'predictive store forwarding disable', source: XEN_MSR },
    { bit: 8, name: 'DDPD_U', meaning: 'data dependent prefetcher disable, user (Xen: DDP_DIS_U)', source: XEN_MSR },
    { bit: 10, name: 'BHI_DIS_S', meaning: 'branch history injection disable, supervisor', source: LINUX_MSR },
  ],
}

export const VIRTUAL_ENUMERATION: RegisterDef = {
  name: 'MSR_VIRTUAL_ENUMERATION', index: MSR.VIRTUAL_ENUMERATION, kind: 'msr',
  source: 'contract/CONTRACT.md section 2; ' + RFC_V3,
  bits: [
    { bit: 0, name: 'MITIGATION_CTRL_SUPPORT', meaning: 'MSR_VIRTUAL_MITIGATION_ENUM and _CTRL exist', source: RFC_V3 },
  ],
}

export const VIRTUAL_MITIGATION_ENUM: RegisterDef = {
  name: 'MSR_VIRTUAL_MITIGATION_ENUM', index: MSR.VIRTUAL_MITIGATION_ENUM, kind: 'msr',
  source: 'contract/CONTRACT.md section 2; RFC v3 05/10, 08/10',
  bits: [
    { bit: 0, name: 'BHB_CLEAR_SEQ_S_SUPPORT', meaning: 'VMM can deploy BHI_DIS_S for a guest using the short BHB clearing sequence', source: 'RFC v3 04/10' },
    { bit: 1, name: 'RETPOLINE_S_SUPPORT', meaning: 'VMM can deploy RRSBA_DIS_S for a retpoline guest', source: 'RFC v3 05/10' },
  ],
}

export const VIRTUAL_MITIGATION_CTRL: RegisterDef = {
  name: 'MSR_VIRTUAL_MITIGATION_CTRL', index: MSR.VIRTUAL_MITIGATION_CTRL, kind: 'msr',
  source: 'contract/CONTRACT.md section 2; RFC v3 04/10, 05/10',
  bits: [
    { bit: 0, name: 'BHB_CLEAR_SEQ_S_USED', meaning: 'guest uses the short BHB clearing sequence in supervisor mode', source: 'RFC v3 04/10' },
    { bit: 1, name: 'RETPOLINE_S_USED', meaning: 'guest uses retpoline in supervisor mode', source: 'RFC v3 05/10' },
  ],
}

const SCATTERED = 'Linux arch/x86/kernel/cpu/scattered.c, arch/x86/include/asm/cpufeatures.h'

export const CPUID_1_ECX: RegisterDef = {
  name: 'CPUID.1:ECX', index: 1, subleaf: 0, word: 'ecx', kind: 'cpuid', source: 'Linux cpufeatures.h',
  bits: [{ bit: 31, name: 'HYPERVISOR', meaning: 'running under a VMM', source: 'Linux cpufeatures.h X86_FEATURE_HYPERVISOR' }],
}

export const CPUID_7_0_EDX: RegisterDef = {
  name: 'CPUID.(7,0):EDX', index: 7, subleaf: 0, word: 'edx', kind: 'cpuid', source: 'Linux cpufeatures.h',
  bits: [
    { bit: 26, name: 'SPEC_CTRL', meaning: 'IBRS/IBPB; IA32_SPEC_CTRL exists', source: 'Linux cpufeatures.h' },
    { bit: 27, name: 'STIBP', meaning: 'single thread indirect branch predictors', source: 'Linux cpufeatures.h' },
    { bit: 29, name: 'ARCH_CAPABILITIES', meaning: 'IA32_ARCH_CAPABILITIES exists', source: 'Linux cpufeatures.h' },
    { bit: 31, name: 'SSBD', meaning: 'speculative store bypass disable', source: 'Linux cpufeatures.h' },
  ],
}

export const CPUID_7_2_EDX: RegisterDef = {
  name: 'CPUID.(7,2):EDX', index: 7, subleaf: 2, word: 'edx', kind: 'cpuid', source: SCATTERED,
  bits: [
    { bit: 0, name: 'PSFD', meaning: 'predictive store forwarding disable', source: SCATTERED },
    { bit: 1, name: 'IPRED_CTRL', meaning: 'IPRED_DIS_U/S available', source: SCATTERED },
    // spectre-meltdown-checker reads BHI_CTRL from bit 2: that is RRSBA_CTRL (contract/CONTRACT.md section 2).
    { bit: 2, name: 'RRSBA_CTRL', meaning: 'RRSBA_DIS_U/S available', source: SCATTERED + ' {EDX,2,7,2}' },
    { bit: 3, name: 'DDPD_U', meaning: 'DDPD_U available', source: SCATTERED },
    { bit: 4, name: 'BHI_CTRL', meaning: 'BHI_DIS_S available', source: SCATTERED + ' {EDX,4,7,2}' },
    { bit: 5, name: 'MCDT_NO', meaning: 'no MXCSR configuration dependent timing', source: SCATTERED },
  ],
}

export const REGISTERS: readonly RegisterDef[] = [
  ARCH_CAPABILITIES, SPEC_CTRL, VIRTUAL_ENUMERATION, VIRTUAL_MITIGATION_ENUM, VIRTUAL_MITIGATION_CTRL,
  CPUID_1_ECX, CPUID_7_0_EDX, CPUID_7_2_EDX,
]

/** A single bit as a 64-bit mask. */
export const bit = (n: number): bigint => 1n << BigInt(n)

/** Bit named `name` in `reg`, as a mask; throws on an unknown name (a programming error). */
export function mask(reg: RegisterDef, name: string): bigint {
  const d = reg.bits.find(b => b.name === name)
  if (!d) throw new Error(`${reg.name} has no bit named ${name}`)
  return bit(d.bit)
}

// Named masks used by the decision and the VMM response, spelt as in the contract.
export const ARCH_CAP_IBRS_ALL = mask(ARCH_CAPABILITIES, 'IBRS_ALL')
export const ARCH_CAP_RSBA = mask(ARCH_CAPABILITIES, 'RSBA')
export const ARCH_CAP_RRSBA = mask(ARCH_CAPABILITIES, 'RRSBA')
export const ARCH_CAP_BHI_NO = mask(ARCH_CAPABILITIES, 'BHI_NO')
export const ARCH_CAP_VIRTUAL_ENUM = mask(ARCH_CAPABILITIES, 'VIRTUAL_ENUM')
export const SPEC_CTRL_IBRS = mask(SPEC_CTRL, 'IBRS')
export const SPEC_CTRL_STIBP = mask(SPEC_CTRL, 'STIBP')
export const SPEC_CTRL_SSBD = mask(SPEC_CTRL, 'SSBD')
export const SPEC_CTRL_RRSBA_DIS_S = mask(SPEC_CTRL, 'RRSBA_DIS_S')
export const SPEC_CTRL_BHI_DIS_S = mask(SPEC_CTRL, 'BHI_DIS_S')
export const VIRT_ENUM_MITIGATION_CTRL_SUPPORT = mask(VIRTUAL_ENUMERATION, 'MITIGATION_CTRL_SUPPORT')
export const MITI_ENUM_BHB_CLEAR_SEQ_S_SUPPORT = mask(VIRTUAL_MITIGATION_ENUM, 'BHB_CLEAR_SEQ_S_SUPPORT')
export const MITI_ENUM_RETPOLINE_S_SUPPORT = mask(VIRTUAL_MITIGATION_ENUM, 'RETPOLINE_S_SUPPORT')
export const MITI_CTRL_BHB_CLEAR_SEQ_S_USED = mask(VIRTUAL_MITIGATION_CTRL, 'BHB_CLEAR_SEQ_S_USED')
export const MITI_CTRL_RETPOLINE_S_USED = mask(VIRTUAL_MITIGATION_CTRL, 'RETPOLINE_S_USED')

// CPUID feature bits as 32-bit masks (Numbers are fine below bit 31 only; use >>> for bit 31).
export const CPUID1_ECX_HYPERVISOR = 31
export const CPUID7_EDX_SPEC_CTRL = 26
export const CPUID7_EDX_STIBP = 27
export const CPUID7_EDX_ARCH_CAPABILITIES = 29
export const CPUID7_EDX_SSBD = 31
export const CPUID7_2_EDX_RRSBA_CTRL = 2
export const CPUID7_2_EDX_BHI_CTRL = 4

/** Test bit `n` of a 32-bit CPUID word held as a Number (safe for bit 31). */
export const hasBit32 = (word: number, n: number): boolean => ((word >>> n) & 1) === 1

/** Register definition for an MSR index, if the contract defines it. */
export function msrDef(index: number): RegisterDef | undefined {
  return REGISTERS.find(r => r.kind === 'msr' && r.index === index)
}
