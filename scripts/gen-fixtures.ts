// Generate the replay fixtures (guest/fixtures/*.json, issue 2) from the CPU catalog
// (scenarios/cpus/*.yaml). Each fixture is a Facts JSON document (contract/facts-json.ts) of a
// 2-CPU machine: the model on bare metal, and as a KVM guest with and without the virtual MSRs.
//
// The kernel's spectre_v2 line is derived here, independently of the guest decision code, from
// Linux 6.12 arch/x86/kernel/cpu/bugs.c and common.c as cited next to each rule, so the fixtures
// can serve as an oracle for it. Linux 6.12.9 predates commit 9f725eec8fc0 (May 2025), so
// BHI_NO still exempts a CPU from X86_BUG_BHI (contract/CONTRACT.md section 6).
//
// Run: npx esbuild scripts/gen-fixtures.ts --bundle --platform=node --format=esm \
//        --packages=external --outfile=.cache/gen-fixtures.mjs && node .cache/gen-fixtures.mjs
// contract/cpu-model-json.test.ts regenerates in memory and fails when a committed file differs.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cpuidLeaves, type CpuModel, type PresentedCpu } from '../contract/cpu-model.js'
import { factsToJson } from '../contract/facts-json.js'
import { FactsJson } from '../contract/facts-schema.js'
import { msrKey, type CpuFacts, type CpuidKey, type Facts, type MsrFact } from '../contract/facts.js'
import { hex } from '../contract/bits.js'
import {
  ARCH_CAP_BHI_NO, ARCH_CAP_IBRS_ALL, ARCH_CAP_RRSBA, ARCH_CAP_VIRTUAL_ENUM, ARCH_CAPABILITIES, MSR,
  CPUID7_EDX_SPEC_CTRL, CPUID7_EDX_STIBP, CPUID7_2_EDX_BHI_CTRL, CPUID7_2_EDX_RRSBA_CTRL, hasBit32, mask,
  MITI_CTRL_BHB_CLEAR_SEQ_S_USED, MITI_CTRL_RETPOLINE_S_USED,
} from '../contract/registers.js'
import { loadCpuCatalog, formatCatalogError } from '../host/runner/cpus.js'

export const KERNEL_RELEASE = '6.12.9'
const ARCH_CAP_PBRSB_NO = mask(ARCH_CAPABILITIES, 'PBRSB_NO')

/** Models with fixtures (issue 2 asks for these six; clearwater-forest adds a BHI_NO part). */
export const FIXTURE_MODELS = ['skylake-sp', 'cascade-lake', 'ice-lake-sp', 'sapphire-rapids', 'granite-rapids', 'zen3-milan', 'clearwater-forest'] as const

/**
 * AMD speculation controls live in CPUID 0x80000008 EBX / 0x80000021 EAX, which the catalog
 * does not carry (contract/cpu-model.ts models leaves 0, 1, 7.0, 7.2 only).
 * Milan: IBPB, IBRS, STIBP per QEMU EPYC-Milan FEAT_8000_0008_EBX; STIBP_ALWAYS_ON (EBX[17])
 * assumed set on real Zen 3 parts: not confirmed from a public dump (QEMU's model omits it).
 */
const AMD_EXTRAS: Record<string, { ibpb: boolean; ibrs: boolean; stibp: boolean; stibpAlwaysOn: boolean; autoIbrs: boolean }> = {
  'zen3-milan': { ibpb: true, ibrs: true, stibp: true, stibpAlwaysOn: true, autoIbrs: false },
  'zen4-genoa': { ibpb: true, ibrs: true, stibp: true, stibpAlwaysOn: true, autoIbrs: true },
}

export interface KernelInput {
  model: CpuModel
  hypervisor: boolean
  /** ARCH_CAPABILITIES as the kernel reads it; null when CPUID.(7,0):EDX[29] is clear (reads as 0). */
  archCap: bigint | null
  /** spectre_v2= on the command line; undefined = auto. */
  spectreV2?: 'retpoline'
  /** More than one thread per core, all online (sched_smt_active()). */
  smt: boolean
}

export interface KernelVerdict {
  line: string
  mode: 'IBRS' | 'EIBRS' | 'RETPOLINE'
  bhi: 'Not affected' | 'BHI_DIS_S' | 'SW loop, KVM: SW loop' | 'Retpoline'
  why: string[]
}

/** /sys/devices/system/cpu/vulnerabilities/spectre_v2 on Linux 6.12 (default Kconfig of a distro kernel). */
export function spectreV2Line(k: KernelInput): KernelVerdict {
  const m = k.model
  const intel = m.vendor === 'GenuineIntel'
  const amd = m.vendor === 'AuthenticAMD' || m.vendor === 'HygonGenuine'
  const cap = k.archCap ?? 0n // x86_read_arch_cap_msr(): 0 without the MSR (common.c)
  const extra = AMD_EXTRAS[m.id]
  const why: string[] = []
  // Feature bits (cpufeatures.h; Intel leaf 7 EDX, AMD 0x80000008 EBX via init_speculation_control).
  const ibrs = intel ? hasBit32(m.cpuid7_0_edx, CPUID7_EDX_SPEC_CTRL) : !!extra?.ibrs
  const ibpb = intel ? hasBit32(m.cpuid7_0_edx, CPUID7_EDX_SPEC_CTRL) : !!extra?.ibpb
  const stibp = intel ? hasBit32(m.cpuid7_0_edx, CPUID7_EDX_STIBP) : !!extra?.stibp
  const autoIbrs = !!extra?.autoIbrs
  // common.c cpu_set_bug_bits: IBRS_ALL or AutoIBRS -> X86_FEATURE_IBRS_ENHANCED.
  const eibrs = (cap & ARCH_CAP_IBRS_ALL) !== 0n || autoIbrs
  // EIBRS_PBRSB unless whitelisted (AMD/Hygon: NO_EIBRS_PBRSB) or ARCH_CAP PBRSB_NO.
  const pbrsbBug = eibrs && !amd && (cap & ARCH_CAP_PBRSB_NO) === 0n
  // RETBLEED: cpu_vuln_blacklist (Intel SKYLAKE_X 0x55 any stepping, ...; AMD 0x15-0x17) or ARCH_CAP RSBA.
  const retbleed = (intel && m.family === 6 && m.model === 0x55) || (amd && m.family >= 0x15 && m.family <= 0x17) ||
    (cap & mask(ARCH_CAPABILITIES, 'RSBA')) !== 0n
  // BHI: not BHI_NO (6.12, before 9f725eec8fc0), not NO_BHI (AMD/Hygon any family), and eIBRS or hypervisor.
  const bhiBug = (cap & ARCH_CAP_BHI_NO) === 0n && !amd && (eibrs || k.hypervisor)
  why.push(`X86_BUG_BHI ${bhiBug ? 'set' : 'clear'} (common.c: BHI_NO=${(cap & ARCH_CAP_BHI_NO) !== 0n}, NO_BHI whitelist=${amd}, eIBRS=${eibrs}, hypervisor=${k.hypervisor})`)

  // bugs.c spectre_v2_select_mitigation, SPECTRE_V2_CMD_AUTO: eIBRS, else IBRS on retbleed-affected
  // Intel with IBRS (CONFIG_MITIGATION_IBRS_ENTRY=y), else retpoline.
  let mode: KernelVerdict['mode']
  if (k.spectreV2 === 'retpoline') { mode = 'RETPOLINE'; why.push('spectre_v2=retpoline on the command line') }
  else if (eibrs) { mode = 'EIBRS'; why.push('auto: X86_FEATURE_IBRS_ENHANCED -> eIBRS') }
  else if (retbleed && ibrs && intel) { mode = 'IBRS'; why.push('auto: X86_BUG_RETBLEED + IBRS on Intel -> IBRS') }
  else { mode = 'RETPOLINE'; why.push('auto: no eIBRS, no IBRS-for-retbleed -> retpoline') }
  const ibrsMode = mode === 'IBRS' || mode === 'EIBRS'

  // bhi_select_mitigation (6.12, spectre_bhi=on by CONFIG_MITIGATION_SPECTRE_BHI=y), only when X86_BUG_BHI:
  // retpoline with RRSBA absent or disabled (spec_ctrl_disable_kernel_rrsba: RRSBA clear, or RRSBA_CTRL
  // sets RRSBA_DIS_S) -> nothing more, sysfs "Retpoline"; else BHI_CTRL -> BHI_DIS_S; else SW loop.
  let bhi: KernelVerdict['bhi']
  const rrsbaDisabled = (cap & ARCH_CAP_RRSBA) === 0n || hasBit32(m.cpuid7_2_edx, CPUID7_2_EDX_RRSBA_CTRL)
  if (!bhiBug) bhi = 'Not affected'
  else if (mode === 'RETPOLINE' && rrsbaDisabled) bhi = 'Retpoline'
  else if (hasBit32(m.cpuid7_2_edx, CPUID7_2_EDX_BHI_CTRL)) bhi = 'BHI_DIS_S'
  else bhi = 'SW loop, KVM: SW loop'

  const modeStr = { IBRS: 'Mitigation: IBRS', EIBRS: 'Mitigation: Enhanced / Automatic IBRS', RETPOLINE: 'Mitigation: Retpolines' }[mode]
  // ibpb_state(): spectre_v2_user=auto -> prctl -> switch_mm_cond_ibpb.
  const ibpbStr = ibpb ? '; IBPB: conditional' : ''
  // IBRS_FW: retbleed AMD with IBPB uses IBPB_FW (no text); else IBRS and not an IBRS mode.
  const ibrsFw = !(retbleed && ibpb && amd) && ibrs && !ibrsMode ? '; IBRS_FW' : ''
  // stibp_state(): nothing in eIBRS mode without AutoIBRS; spectre_v2_user_select_mitigation leaves
  // STIBP "disabled" without the feature or without SMT; AMD STIBP_ALWAYS_ON -> always-on;
  // prctl -> "conditional" when SMT is active.
  let stibpStr: string
  if (mode === 'EIBRS' && !autoIbrs) stibpStr = ''
  else if (!stibp || !k.smt) stibpStr = '; STIBP: disabled'
  else if (extra?.stibpAlwaysOn) stibpStr = '; STIBP: always-on'
  else stibpStr = '; STIBP: conditional'
  // RSB_CTXSW is set for every mode but NONE in 6.12 (unconditional after selection).
  const rsb = '; RSB filling'
  // pbrsb_eibrs_state(): X86_BUG_EIBRS_PBRSB -> RSB_VMEXIT(_LITE) is set -> "SW sequence".
  const pbrsb = pbrsbBug ? '; PBRSB-eIBRS: SW sequence' : '; PBRSB-eIBRS: Not affected'
  const line = `${modeStr}${ibpbStr}${ibrsFw}${stibpStr}${rsb}${pbrsb}; BHI: ${bhi}`
  return { line, mode, bhi, why }
}

export type Variant = 'baremetal' | 'guest-enum' | 'guest-noenum' | 'guest-enum-retpoline'

export interface Expected {
  model: string
  variant: Variant
  hypervisor: boolean
  /** ARCH_CAP bit 63 -> 0x50000000 bit 0 -> 0x50000001 readable (contract/CONTRACT.md section 3). */
  enumerated: boolean
  spectreV2Mode: KernelVerdict['mode']
  bhi: KernelVerdict['bhi']
  /** What the agent writes to MSR_VIRTUAL_MITIGATION_CTRL (contract/CONTRACT.md section 4), or null: no write. */
  mitiCtrl: string | null
  why: string[]
}

export interface Fixture { file: string; json: FactsJson; expected: Expected }

const NOT_PROBED = 'IA32_ARCH_CAPABILITIES bit 63 (VIRTUAL_ENUM) clear: not probed (contract/CONTRACT.md section 3)'
const NO_ARCH_CAP = 'CPUID.(7,0):EDX[29] clear: IA32_ARCH_CAPABILITIES does not exist (contract/CONTRACT.md section 2)'
const VIRT_ENUM = 0x1n
const VIRT_MITI_ENUM = 0x3n
const VIRT_MITI_CTRL_RESET = 0x0n

/** One machine: the same CPU twice (2 logical CPUs, SMT siblings). */
function machine(p: PresentedCpu, enumerated: boolean): CpuFacts[] {
  const leaves = cpuidLeaves(p)
  const msr: Record<string, MsrFact> = {}
  msr[msrKey(MSR.ARCH_CAPABILITIES)] = p.archCapabilities === null ? { skipped: NO_ARCH_CAP } : { value: p.archCapabilities }
  const virt = (v: bigint): MsrFact => enumerated ? { value: v } : { skipped: p.archCapabilities === null ? NO_ARCH_CAP : NOT_PROBED }
  msr[msrKey(MSR.VIRTUAL_ENUMERATION)] = virt(VIRT_ENUM)
  msr[msrKey(MSR.VIRTUAL_MITIGATION_ENUM)] = virt(VIRT_MITI_ENUM)
  msr[msrKey(MSR.VIRTUAL_MITIGATION_CTRL)] = virt(VIRT_MITI_CTRL_RESET)
  return [0, 1].map(cpu => ({
    cpu,
    cpuid: Object.fromEntries(Object.entries(leaves).map(([k, regs]) => [k as CpuidKey, { regs }])),
    msr: { ...msr },
  }))
}

export function buildFixture(model: CpuModel, variant: Variant): Fixture {
  const guest = variant !== 'baremetal'
  const enumerated = variant === 'guest-enum' || variant === 'guest-enum-retpoline'
  // Guests: the VMM passes the model's ARCH_CAPABILITIES through and adds VIRTUAL_ENUM when it
  // implements the virtual MSRs (creating the MSR when the model has none).
  const archCap = enumerated ? (model.archCapabilities ?? 0n) | ARCH_CAP_VIRTUAL_ENUM : model.archCapabilities
  const p: PresentedCpu = { model, hypervisor: guest, archCapabilities: archCap, ...(guest ? { hypervisorVendor: 'KVMKVMKVM\0\0\0' } : {}) }
  const retpolineCmd = variant === 'guest-enum-retpoline'
  const k = spectreV2Line({ model, hypervisor: guest, archCap, smt: true, ...(retpolineCmd ? { spectreV2: 'retpoline' as const } : {}) })
  const cmdline = `BOOT_IMAGE=/boot/vmlinuz-${KERNEL_RELEASE} root=/dev/${guest ? 'vda1' : 'sda1'} ro quiet${retpolineCmd ? ' spectre_v2=retpoline' : ''}`
  const facts: Facts = {
    platform: 'synthetic',
    kernel: { release: KERNEL_RELEASE, cmdline, vulnerabilities: { spectre_v2: k.line } },
    cpus: machine(p, enumerated),
  }
  // contract/CONTRACT.md section 4: bit 0 when the kernel runs the SW BHB loop on syscall, bit 1 when it
  // uses retpoline; only enumerated bits (ENUM = 0x3 here).
  let ctrl: bigint | null = null
  if (enumerated) {
    ctrl = 0n
    if (k.bhi === 'SW loop, KVM: SW loop') ctrl |= MITI_CTRL_BHB_CLEAR_SEQ_S_USED
    if (k.mode === 'RETPOLINE') ctrl |= MITI_CTRL_RETPOLINE_S_USED
  }
  const s = model.sources
  const source = [
    `Synthetic ${variant} fixture for catalog model ${model.id} (scenarios/cpus/${model.id}.yaml), generated by scripts/gen-fixtures.ts; not recorded on hardware.`,
    `CPUID: family/model ${s.family_model}. (7,0):EDX ${s.cpuid7_0_edx}. (7,2):EDX ${s.cpuid7_2_edx}.`,
    `ARCH_CAPABILITIES: ${s.arch_capabilities}.`,
    guest ? `Guest: KVM signature at 0x40000000, CPUID.1:ECX[31] set, 2 vCPUs as 1 core x 2 threads; ${enumerated ? `VMM adds ARCH_CAP bit 63, 0x50000000=${hex(VIRT_ENUM)}, 0x50000001=${hex(VIRT_MITI_ENUM)}, 0x50000002=${hex(VIRT_MITI_CTRL_RESET)} (reset value, RFC v3 07/10)` : 'VMM without the virtual MSRs: ARCH_CAP bit 63 clear, 0x5000000x not probed'}.`
      : 'Bare metal: CPUID.1:ECX[31] clear (leaf 0x40000000 shown as zeros), 2 CPUs as SMT siblings; ARCH_CAP bit 63 clear so 0x5000000x are not probed.',
    `Kernel ${KERNEL_RELEASE}, distro defaults (CONFIG_MITIGATION_SPECTRE_BHI=y, IBRS_ENTRY=y, RETPOLINE=y, unprivileged eBPF off); spectre_v2 derived from Linux 6.12 bugs.c/common.c: ${k.why.join('; ')}; line built by spectre_v2_show_state().`,
  ].join(' ')
  // FactsJson caps `source` at 4000 characters: fail loudly rather than cut a citation short.
  if (source.length > 4000) throw new Error(`${model.id}-${variant}: source is ${source.length} characters, over the 4000 FactsJson allows`)
  const json = factsToJson(facts, source)
  return {
    file: `${model.id}-${variant}.json`,
    json,
    expected: { model: model.id, variant, hypervisor: guest, enumerated, spectreV2Mode: k.mode, bhi: k.bhi, mitiCtrl: ctrl === null ? null : hex(ctrl), why: k.why },
  }
}

export function buildFixtures(models: ReadonlyMap<string, CpuModel>): Fixture[] {
  const out: Fixture[] = []
  for (const id of FIXTURE_MODELS) {
    const m = models.get(id)
    if (!m) throw new Error(`catalog has no model ${id}`)
    for (const v of ['baremetal', 'guest-enum', 'guest-noenum'] as const) out.push(buildFixture(m, v))
    // The retpoline guest (spectre_v2=retpoline) on a pre-eIBRS part: the RETPOLINE_S_USED case.
    if (id === 'skylake-sp') out.push(buildFixture(m, 'guest-enum-retpoline'))
  }
  for (const f of out) {
    const r = FactsJson.safeParse(f.json)
    if (!r.success) throw new Error(`${f.file}: ${r.error.message}`)
  }
  return out
}

/** File text exactly as committed: 2-space JSON plus a newline. */
export const fixtureText = (v: unknown): string => JSON.stringify(v, null, 2) + '\n'

export function expectedText(fixtures: readonly Fixture[]): string {
  return fixtureText(Object.fromEntries(fixtures.map(f => [f.file, f.expected])))
}

/** Load the catalog under `root` and write every fixture and expected.json into `outDir`; returns the file count. */
export function generate(root: string, outDir: string): { written: number; errors: string[] } {
  const cat = loadCpuCatalog(join(root, 'scenarios', 'cpus'))
  if (cat.errors.length) return { written: 0, errors: cat.errors.map(formatCatalogError) }
  const fixtures = buildFixtures(cat.models)
  for (const f of fixtures) writeFileSync(join(outDir, f.file), fixtureText(f.json))
  writeFileSync(join(outDir, 'expected.json'), expectedText(fixtures))
  return { written: fixtures.length + 1, errors: [] }
}

/* c8 ignore start */ // command-line entry: exercised by running the script, not by the tests
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  // Run from the repository root (the bundled script lives elsewhere, so import.meta.url cannot tell).
  const root = process.argv[2] ?? process.cwd()
  const r = generate(root, join(root, 'guest', 'fixtures'))
  for (const e of r.errors) console.error(e)
  if (r.errors.length) process.exit(2)
  console.log(`wrote ${r.written} files to ${join(root, 'guest', 'fixtures')}`)
}
/* c8 ignore stop */
