// The guest decision (contract/decide.ts) against contract/CONTRACT.md sections 3, 4 and 6 and Linux
// arch/x86/kernel/cpu/bugs.c / common.c. Every expected value here is written from the contract,
// not read back from the code.
import t from 'tap'
import { decide, selectVirt } from './decide.js'
import { wantedMitiCtrl } from './miti-ctrl.js'
import { msrKey, type CpuFacts, type Facts, type MsrFact } from './facts.js'
import {
  ARCH_CAP_BHI_NO, ARCH_CAP_IBRS_ALL, ARCH_CAP_RRSBA, ARCH_CAP_VIRTUAL_ENUM, MSR,
} from './registers.js'
import { verdict } from '../guest/verdict.js'

// ---- builders ---------------------------------------------------------------------------------

const INTEL = { ebx: 0x756e6547, edx: 0x49656e69, ecx: 0x6c65746e } // "GenuineIntel"
const AMD = { ebx: 0x68747541, edx: 0x69746e65, ecx: 0x444d4163 } // "AuthenticAMD"
// CPUID.1:EAX signatures (Linux intel-family.h / AMD family 19h).
const SKX = 0x50654 // family 6 model 0x55 Skylake-X (RETBLEED list)
const CLX = 0x50657 // Cascade Lake: model 0x55 too
const SPR = 0x806f8 // family 6 model 0x8f
const ICX = 0x606a6 // family 6 model 0x6a Ice Lake-X
const MILAN = 0xa00f11 // family 0x19

const E7_SPEC_CTRL = 1 << 26
const E7_ARCH_CAP = 1 << 29
const E72_RRSBA_CTRL = 1 << 2
const E72_BHI_CTRL = 1 << 4

interface CpuOpts {
  cpu?: number
  vendor?: typeof INTEL
  eax1?: number
  hv?: boolean
  /** CPUID.(7,0):EDX; default SPEC_CTRL | ARCH_CAPABILITIES. */
  e7?: number
  e72?: number
  /** ARCH_CAPABILITIES value, or a fault; omitted when CPUID.(7,0):EDX[29] is clear. */
  archCap?: bigint | 'EIO'
  ve?: bigint | 'EIO'
  me?: bigint | 'EIO'
  ctrl?: bigint | 'EIO'
}

const fact = (v: bigint | 'EIO' | undefined): MsrFact | undefined =>
  v === undefined ? undefined : v === 'EIO' ? { fault: { errno: 'EIO', message: 'the instruction faulted (#GP)' } } : { value: v }

function cpu(o: CpuOpts = {}): CpuFacts {
  const vendor = o.vendor ?? INTEL
  const e7 = o.e7 ?? (E7_SPEC_CTRL | E7_ARCH_CAP)
  const c: CpuFacts = {
    cpu: o.cpu ?? 0,
    cpuid: {
      '0x0.0': { regs: { eax: 0x20, ...vendor } },
      '0x1.0': { regs: { eax: o.eax1 ?? SPR, ebx: 0, ecx: o.hv ? 0x80000000 : 0, edx: 0 } },
      '0x7.0': { regs: { eax: 2, ebx: 0, ecx: 0, edx: e7 } },
      '0x7.2': { regs: { eax: 0, ebx: 0, ecx: 0, edx: o.e72 ?? 0 } },
    },
    msr: {},
  }
  const put = (i: number, v: bigint | 'EIO' | undefined) => { const f = fact(v); if (f) c.msr[msrKey(i)] = f }
  put(MSR.ARCH_CAPABILITIES, o.archCap)
  put(MSR.VIRTUAL_ENUMERATION, o.ve)
  put(MSR.VIRTUAL_MITIGATION_ENUM, o.me)
  put(MSR.VIRTUAL_MITIGATION_CTRL, o.ctrl)
  return c
}

const facts = (cpus: CpuFacts[], sysfs: string | undefined, cmdline = 'ro quiet'): Facts => ({
  platform: 'test',
  kernel: { cmdline, vulnerabilities: sysfs === undefined ? {} : { spectre_v2: sysfs } },
  cpus,
})

const L = (mode: string, bhi: string) => `${mode}; IBPB: conditional; RSB filling; ${bhi}`
const EIBRS = 'Mitigation: Enhanced / Automatic IBRS'
const RETP = 'Mitigation: Retpolines'
// Virtual MSRs fully enumerated, CTRL at reset (RFC v3 07/10).
const VIRT = { ve: 1n, me: 3n, ctrl: 0n }
const GUEST_EIBRS = ARCH_CAP_IBRS_ALL | ARCH_CAP_VIRTUAL_ENUM

// ---- bugs.c selection order (contract/CONTRACT.md section 6) --------------------------------------------

t.test('6 (1): retpoline in use without RRSBA -> "BHI: Retpoline"', async t => {
  // Skylake-X guest booted with spectre_v2=retpoline; ARCH_CAP without RRSBA.
  const d = decide(facts([cpu({ eax1: SKX, hv: true, archCap: 0n })], L(RETP, 'BHI: Retpoline'), 'spectre_v2=retpoline'))
  t.equal(d.expected.spectreV2, 'retpoline')
  t.equal(d.expected.bhi, 'retpoline')
  t.same(d.mismatches, [])
})

t.test('6 (1): no ARCH_CAPABILITIES at all counts as RRSBA absent -> Retpoline', async t => {
  const d = decide(facts([cpu({ eax1: SKX, hv: true, e7: E7_SPEC_CTRL })], L(RETP, 'BHI: Retpoline'), 'spectre_v2=retpoline'))
  t.equal(d.expected.bhi, 'retpoline')
})

t.test('6 (1): retpoline with RRSBA but RRSBA_CTRL (RRSBA_DIS_S applied) -> Retpoline', async t => {
  const ac = ARCH_CAP_IBRS_ALL | ARCH_CAP_RRSBA
  const d = decide(facts([cpu({ hv: true, archCap: ac, e72: E72_RRSBA_CTRL | E72_BHI_CTRL })],
    L(EIBRS + ' + Retpolines', 'BHI: Retpoline'), 'spectre_v2=eibrs,retpoline'))
  t.equal(d.expected.spectreV2, 'eibrs-retpoline')
  t.equal(d.expected.bhi, 'retpoline', 'Retpoline wins over BHI_CTRL in the selection order')
  t.same(d.mismatches, [])
})

t.test('6 (1)->(2)/(3): retpoline with RRSBA and no RRSBA_CTRL is not enough', async t => {
  const ac = ARCH_CAP_IBRS_ALL | ARCH_CAP_RRSBA
  const noCtrl = decide(facts([cpu({ hv: true, archCap: ac, e72: 0 })], undefined, 'spectre_v2=eibrs,retpoline'))
  t.equal(noCtrl.expected.bhi, 'sw-loop', 'falls through to the SW loop without BHI_CTRL')
  const bhiCtrl = decide(facts([cpu({ hv: true, archCap: ac, e72: E72_BHI_CTRL })], undefined, 'spectre_v2=eibrs,retpoline'))
  t.equal(bhiCtrl.expected.bhi, 'bhi-dis-s', 'falls through to BHI_DIS_S with BHI_CTRL')
})

t.test('6 (2): BHI_CTRL (CPUID.(7,2):EDX[4], not bit 2) -> BHI_DIS_S', async t => {
  const d = decide(facts([cpu({ hv: true, archCap: ARCH_CAP_IBRS_ALL, e72: E72_BHI_CTRL })], L(EIBRS, 'BHI: BHI_DIS_S')))
  t.equal(d.expected.spectreV2, 'eibrs')
  t.equal(d.expected.bhi, 'bhi-dis-s')
  t.same(d.mismatches, [])
  // spectre-meltdown-checker's bug (contract/CONTRACT.md section 2): bit 2 is RRSBA_CTRL, not BHI_CTRL.
  const bit2 = decide(facts([cpu({ hv: true, archCap: ARCH_CAP_IBRS_ALL, e72: E72_RRSBA_CTRL })], undefined))
  t.equal(bit2.expected.bhi, 'sw-loop', 'RRSBA_CTRL alone does not give BHI_DIS_S')
})

t.test('6 (2): leaf 7 max subleaf < 2 means CPUID.(7,2) bits are 0', async t => {
  const c = cpu({ hv: true, archCap: ARCH_CAP_IBRS_ALL, e72: E72_BHI_CTRL })
  ;(c.cpuid['0x7.0'] as { regs: { eax: number } }).regs.eax = 0
  t.equal(decide(facts([c], undefined)).expected.bhi, 'sw-loop', 'stale subleaf 2 data is ignored')
})

t.test('6 (3): spectre_bhi=vmexit -> "BHI: Vulnerable, KVM: SW loop"', async t => {
  const d = decide(facts([cpu({ eax1: CLX, hv: true, archCap: ARCH_CAP_IBRS_ALL })], L(EIBRS, 'BHI: Vulnerable, KVM: SW loop'), 'spectre_bhi=vmexit'))
  t.equal(d.expected.bhi, 'vmexit-sw-loop')
  t.same(d.mismatches, [])
  t.equal(d.wish.bhbClearSeqSUsed, false, 'the loop runs on VM exit only, not on syscall: bit 0 clear (section 4)')
})

t.test('6 (3): otherwise the SW loop on syscall and VM exit', async t => {
  const d = decide(facts([cpu({ eax1: CLX, hv: true, archCap: ARCH_CAP_IBRS_ALL })], L(EIBRS, 'BHI: SW loop, KVM: SW loop')))
  t.equal(d.bhiAffected.value, true)
  t.equal(d.expected.bhi, 'sw-loop')
  t.same(d.mismatches, [])
})

t.test('6: spectre_bhi=off, spectre_v2=off and mitigations=off -> "BHI: Vulnerable"', async t => {
  const c = cpu({ eax1: CLX, hv: true, archCap: ARCH_CAP_IBRS_ALL })
  const bhiOff = decide(facts([c], L(EIBRS, 'BHI: Vulnerable'), 'spectre_bhi=off'))
  t.equal(bhiOff.expected.bhi, 'vulnerable')
  t.equal(bhiOff.expected.spectreV2, 'eibrs', 'spectre_bhi=off leaves spectre_v2 alone')
  t.same(bhiOff.mismatches, [])
  const v2Off = decide(facts([c], 'Vulnerable; IBPB: disabled; STIBP: disabled; PBRSB-eIBRS: Not affected; BHI: Vulnerable', 'spectre_v2=off'))
  t.equal(v2Off.expected.spectreV2, 'none')
  t.equal(v2Off.expected.bhi, 'vulnerable')
  t.same(v2Off.mismatches, [])
  const all = decide(facts([c], undefined, 'mitigations=off'))
  t.equal(all.expected.spectreV2, 'none')
  t.equal(all.expected.bhi, 'vulnerable')
  const nosp = decide(facts([c], undefined, 'nospectre_v2'))
  t.equal(nosp.expected.bhi, 'vulnerable')
})

t.test('6: mitigations= attack vectors: predicted per kernel generation, unknown where the generation is not known', async t => {
  const c = [cpu({ hv: true, archCap: ARCH_CAP_IBRS_ALL })]
  const d = decide(facts(c, undefined, 'mitigations=auto,no_user_kernel'))
  t.equal(d.expected.bhi, 'unknown', 'no release: not guessed')
  t.match(d.expected.reasons.at(-1)!.text, /attack vectors decide on kernels that have them/)
  // 6.1 / 6.12: "Unsupported mitigations=", behaves as auto (contract/CONTRACT.md section 6).
  const old = decide({ ...facts(c, undefined, 'mitigations=auto,no_user_kernel'), kernel: { release: '6.1.0-42-amd64', cmdline: 'mitigations=auto,no_user_kernel', vulnerabilities: {} } })
  t.equal(old.expected.spectreV2, 'eibrs')
  t.equal(old.expected.bhi, 'sw-loop')
  // 7.x: user_kernel off, guest_host on -> BHI on VM exit only; spectre_v2 still mitigated (guest_host).
  const neu = decide({ ...facts(c, undefined), kernel: { release: '7.2.13+deb14-amd64', cmdline: 'mitigations=auto,no_user_kernel', vulnerabilities: {} } })
  t.equal(neu.expected.spectreV2, 'eibrs')
  t.equal(neu.expected.bhi, 'vmexit-sw-loop')
})

t.test('6: AMD is on the NO_BHI whitelist, even as a guest', async t => {
  const d = decide(facts([cpu({ vendor: AMD, eax1: MILAN, hv: true, e7: E7_ARCH_CAP, archCap: ARCH_CAP_VIRTUAL_ENUM, ...VIRT })],
    L(RETP, 'BHI: Not affected')))
  t.equal(d.bhiAffected.value, false)
  t.equal(d.bhiAffected.reasons[0]!.rule, 'bhi.whitelist')
  t.equal(d.expected.bhi, 'not-affected')
  t.same(d.mismatches, [])
  t.equal(d.cpu.vendor, 'AuthenticAMD')
  t.equal(d.cpu.family, 0x19)
})

t.test('6: no eIBRS and no hypervisor -> not affected', async t => {
  const d = decide(facts([cpu({ eax1: SKX, hv: false, archCap: 0n })], 'Mitigation: IBRS; IBPB: conditional; BHI: Not affected'))
  t.equal(d.bhiAffected.value, false)
  t.equal(d.expected.bhi, 'not-affected')
  t.equal(d.expected.spectreV2, 'ibrs', 'Skylake-X is on the RETBLEED list: auto picks IBRS')
  t.same(d.mismatches, [])
  // Same CPU as a guest: "eIBRS could be hidden", so affected.
  const g = decide(facts([cpu({ eax1: SKX, hv: true, archCap: 0n })], 'Mitigation: IBRS; IBPB: conditional; BHI: SW loop, KVM: SW loop'))
  t.equal(g.bhiAffected.value, true)
  t.equal(g.expected.bhi, 'sw-loop')
})

t.test('6: BHI_NO exemption is kernel-dependent and learnt from sysfs (commit 9f725eec8fc0)', async t => {
  const ac = ARCH_CAP_IBRS_ALL | ARCH_CAP_BHI_NO
  const old = decide(facts([cpu({ eax1: ICX, archCap: ac, e72: E72_BHI_CTRL })], L(EIBRS, 'BHI: Not affected')))
  t.equal(old.bhiAffected.value, false, 'pre-May-2025 kernel says "Not affected": exempt')
  t.equal(old.bhiAffected.reasons[0]!.rule, 'bhi.bhi-no-exempt')
  t.same(old.mismatches, [])
  const neu = decide(facts([cpu({ eax1: ICX, archCap: ac, e72: E72_BHI_CTRL })], L(EIBRS, 'BHI: BHI_DIS_S')))
  t.equal(neu.bhiAffected.value, true, 'newer kernel reports a BHI mitigation: not exempt')
  t.equal(neu.expected.bhi, 'bhi-dis-s')
  t.same(neu.mismatches, [])
  const silent = decide(facts([cpu({ eax1: ICX, archCap: ac })], EIBRS + '; IBPB: conditional'))
  t.equal(silent.bhiAffected.value, 'unknown', 'no BHI segment: cannot tell which rule the kernel follows')
  t.same(silent.mismatches, [])
  const none = decide(facts([cpu({ eax1: ICX, archCap: ac })], undefined))
  t.equal(none.bhiAffected.value, 'unknown', 'no sysfs at all: unknown')
})

t.test('6: ARCH_CAPABILITIES unreadable on a guest -> unknown, never a guess', async t => {
  const d = decide(facts([cpu({ hv: true, archCap: 'EIO' })], L(EIBRS, 'BHI: Vulnerable')))
  t.equal(d.bhiAffected.value, 'unknown')
  t.equal(d.expected.bhi, 'unknown')
  t.same(d.mismatches, [], 'no mismatch claimed against an unknown expectation')
})

// ---- mismatch detection --------------------------------------------------------------------------

t.test('mismatch: SW loop on a CPU with BHI_CTRL is flagged with both sides, as a note (issue 12)', async t => {
  const f = facts([cpu({ hv: true, archCap: ARCH_CAP_IBRS_ALL, e72: E72_BHI_CTRL })], L(EIBRS, 'BHI: SW loop, KVM: SW loop'))
  const d = decide(f)
  t.equal(d.mismatches.length, 1)
  t.match(d.mismatches[0], { what: 'bhi', kernel: 'BHI: SW loop, KVM: SW loop', expected: 'BHI: BHI_DIS_S' })
  t.match(d.mismatches[0]!.reason.source, /bugs\.c/)
  const v = verdict(f, d)
  const m = v.findings.find(x => x.id === 'kernel.prediction-mismatch')!
  t.equal(m.effect, 'note', 'a prediction mismatch never sets the verdict')
  t.match(m.detail, /^bhi: the kernel chose "BHI: SW loop, KVM: SW loop", the agent predicts "BHI: BHI_DIS_S"/)
  // Exit 1 here comes from the VMM's part (no virtual MSRs behind a SW-loop guest), not from the mismatch.
  t.equal(v.exitCode, 1)
  t.same(v.judged.concerns.find(c => c.concern === 'bhi')!.findings, ['vmm.not-enumerated'])
})

t.test('mismatch: retpoline on an eIBRS CPU without a command-line choice is a spectre_v2 mismatch', async t => {
  const d = decide(facts([cpu({ hv: true, archCap: ARCH_CAP_IBRS_ALL, e72: E72_BHI_CTRL })], L(RETP, 'BHI: Retpoline')))
  const m = d.mismatches.find(x => x.what === 'spectre_v2')
  t.ok(m, 'spectre_v2 mismatch present')
  t.equal(m?.kernel, RETP)
  t.equal(m?.expected, EIBRS)
  // The BHI prediction follows the kernel's real mode (retpoline, no RRSBA) so it does not cascade.
  t.notOk(d.mismatches.find(x => x.what === 'bhi'), 'no cascading BHI mismatch')
})

t.test('mismatch: a kernel that predates BHI reporting cannot mismatch on BHI', async t => {
  const d = decide(facts([cpu({ hv: true, archCap: ARCH_CAP_IBRS_ALL, e72: E72_BHI_CTRL })], EIBRS + ', IBPB: conditional, RSB filling'))
  t.equal(d.kernel.bhi, 'not-reported')
  t.same(d.mismatches, [])
})

// ---- the wish (contract/CONTRACT.md section 4) ------------------------------------------------------------

t.test('4: CTRL bit 0 set only for "BHI: SW loop, KVM: SW loop"; bit 1 only for retpoline modes', async t => {
  const c = cpu({ hv: true, archCap: GUEST_EIBRS, ...VIRT })
  const cases: [string, boolean | 'unknown', boolean | 'unknown', bigint | undefined][] = [
    [L(EIBRS, 'BHI: SW loop, KVM: SW loop'), true, false, 0x1n],
    [L(EIBRS, 'BHI: BHI_DIS_S'), false, false, 0x0n],
    [L(EIBRS, 'BHI: Vulnerable, KVM: SW loop'), false, false, 0x0n],
    [L(EIBRS, 'BHI: Vulnerable'), false, false, 0x0n],
    [L(EIBRS, 'BHI: Not affected'), false, false, 0x0n],
    [L(RETP, 'BHI: Retpoline'), false, true, 0x2n],
    [L(RETP, 'BHI: SW loop, KVM: SW loop'), true, true, 0x3n],
    [L(EIBRS + ' + Retpolines', 'BHI: SW loop, KVM: SW loop'), true, true, 0x3n],
    [L(EIBRS + ' + LFENCE', 'BHI: SW loop, KVM: SW loop'), true, false, 0x1n],
    // Pre-6.9 comma line: the BHI segment must be read whole to give bit 0.
    ['Mitigation: Retpolines, IBPB: conditional, RSB filling, BHI: SW loop, KVM: SW loop', true, true, 0x3n],
    // Unknown BHI text: bit 0 left as it is (CTRL reads 0 here, so stays 0).
    [L(EIBRS, 'BHI: Long loop'), 'unknown', false, 0x0n],
    ['Mitigation: Something new; BHI: SW loop, KVM: SW loop', true, 'unknown', 0x1n],
  ]
  for (const [line, bhb, ret, wanted] of cases) {
    const d = decide(facts([c], line))
    t.same(d.wish, { bhbClearSeqSUsed: bhb, retpolineSUsed: ret }, line)
    t.equal(d.virt[0]!.wanted, wanted, `${line}: would write ${wanted}`)
  }
  const none = decide(facts([c], undefined))
  t.same(none.wish, { bhbClearSeqSUsed: 'unknown', retpolineSUsed: 'unknown' }, 'no sysfs: leave both bits as they are')
  t.equal(none.virt[0]!.wanted, 0n)
})

t.test('4: read-modify-write keeps bits MITI_ENUM does not enumerate and bits the agent does not know', async t => {
  const wish = { bhbClearSeqSUsed: true, retpolineSUsed: true } as const
  t.equal(wantedMitiCtrl(0n, 0x1n, wish), 0x1n, 'only BHB_CLEAR_SEQ_S_SUPPORT: bit 1 not set (writing it would fault)')
  t.equal(wantedMitiCtrl(0n, 0x2n, wish), 0x2n, 'only RETPOLINE_S_SUPPORT: bit 0 not set')
  t.equal(wantedMitiCtrl(0n, 0n, wish), 0n, 'nothing enumerated: nothing set')
  const clear = { bhbClearSeqSUsed: false, retpolineSUsed: false } as const
  t.equal(wantedMitiCtrl(0x3n, 0x1n, clear), 0x2n, 'bit 1 not enumerated: kept although the wish is "clear"')
  t.equal(wantedMitiCtrl(0x3n, 0x3n, clear), 0x0n, 'both enumerated: both cleared')
  // An ENUM bit the contract does not define (bit 2) and a stray high CTRL bit stay untouched.
  t.equal(wantedMitiCtrl(0x8000000000000004n, 0x7n, wish), 0x8000000000000007n)
  t.equal(wantedMitiCtrl(0x8000000000000004n, 0x7n, clear), 0x8000000000000004n)
  t.equal(wantedMitiCtrl(0x1n, 0x3n, { bhbClearSeqSUsed: 'unknown', retpolineSUsed: true }), 0x3n, '"unknown" leaves bit 0 as read')
  t.equal(wantedMitiCtrl(0x0n, 0x3n, { bhbClearSeqSUsed: 'unknown', retpolineSUsed: 'unknown' }), 0x0n)
})

// ---- discovery chain, per CPU (contract/CONTRACT.md section 3) --------------------------------------------

const wish0 = { bhbClearSeqSUsed: true, retpolineSUsed: false } as const

t.test('3: no IA32_ARCH_CAPABILITIES (CPUID.(7,0):EDX[29] clear) -> never probed, not enumerated', async t => {
  const v = selectVirt(cpu({ e7: E7_SPEC_CTRL, hv: true }), wish0)
  t.match(v, { reached: 'none', enumerated: false })
  t.equal(v.wanted, undefined)
  t.match(v.reason.text, /EDX\[29\] clear/)
})

t.test('3: ARCH_CAP bit 63 clear -> not enumerated, even if a VMM answered the virtual MSRs', async t => {
  // A VMM with ignore_msrs=1 reads 0 (or anything) for unknown MSRs: must not be trusted without bit 63.
  for (const junk of [{ ve: 0n, me: 0n, ctrl: 0n }, { ve: 1n, me: 3n, ctrl: 0n }]) {
    const v = selectVirt(cpu({ hv: true, archCap: ARCH_CAP_IBRS_ALL, ...junk }), wish0)
    t.match(v, { reached: 'none', enumerated: false }, `VIRTUAL_ENUMERATION=${junk.ve}`)
    t.equal(v.wanted, undefined, 'nothing would be written')
    t.match(v.reason.text, /bit 63 .* clear/)
  }
})

t.test('3: bit 63 set, VIRTUAL_ENUMERATION bit 0 clear -> not enumerated (stops at arch-cap)', async t => {
  const v = selectVirt(cpu({ hv: true, archCap: ARCH_CAP_VIRTUAL_ENUM, ve: 0n, me: 3n, ctrl: 0n }), wish0)
  t.match(v, { reached: 'arch-cap', enumerated: false })
  t.equal(v.mitiEnum, undefined, 'MITI_ENUM not used')
  t.match(v.reason.text, /bit 0 .* clear/)
})

t.test('3: bit 63 set but VIRTUAL_ENUMERATION faults (EIO) -> not enumerated, errno in the reason', async t => {
  const v = selectVirt(cpu({ hv: true, archCap: ARCH_CAP_VIRTUAL_ENUM, ve: 'EIO' }), wish0)
  t.match(v, { reached: 'arch-cap', enumerated: false })
  t.match(v.reason.text, /EIO/)
  const me = selectVirt(cpu({ hv: true, archCap: ARCH_CAP_VIRTUAL_ENUM, ve: 1n, me: 'EIO' }), wish0)
  t.match(me, { reached: 'virtual-enum', enumerated: false })
})

t.test('3: ARCH_CAPABILITIES unreadable -> "cannot tell", not "not enumerated"', async t => {
  const v = selectVirt(cpu({ hv: true, archCap: 'EIO' }), wish0)
  t.match(v, { reached: 'none', enumerated: false })
  t.match(v.reason.text, /unreadable \(EIO: .*\): cannot tell/)
})

t.test('3: the whole chain -> enumerated, with MITI_ENUM, CTRL and the value to write', async t => {
  const v = selectVirt(cpu({ hv: true, archCap: GUEST_EIBRS, ve: 1n, me: 1n, ctrl: 0x2n }), wish0)
  t.match(v, { reached: 'miti-enum', enumerated: true, mitiEnum: 1n, mitiCtrl: 2n })
  t.equal(v.wanted, 0x3n, 'bit 0 set by the wish, bit 1 (not enumerated) kept')
  const noCtrl = selectVirt(cpu({ hv: true, archCap: GUEST_EIBRS, ve: 1n, me: 3n, ctrl: 'EIO' }), wish0)
  t.equal(noCtrl.enumerated, true)
  t.equal(noCtrl.wanted, undefined, 'CTRL unreadable: no read-modify-write value')
})

// ---- CPUs that disagree -------------------------------------------------------------------------

t.test('CPUs that disagree: different ARCH_CAP / enumeration on CPU 1 are flagged (exit 1)', async t => {
  const f = facts([
    cpu({ cpu: 0, hv: true, archCap: GUEST_EIBRS, ...VIRT }),
    cpu({ cpu: 1, hv: true, archCap: ARCH_CAP_IBRS_ALL }),
    cpu({ cpu: 2, hv: true, archCap: GUEST_EIBRS, ...VIRT }),
  ], L(EIBRS, 'BHI: SW loop, KVM: SW loop'))
  const d = decide(f)
  t.equal(d.enumerated, false, 'not every CPU enumerates the virtual MSRs')
  t.same(d.virt.map(v => v.enumerated), [true, false, true])
  t.ok(d.disagreements.some(x => x.cpu === 1 && x.what === 'IA32_ARCH_CAPABILITIES differs from CPU 0'))
  t.notOk(d.disagreements.some(x => x.cpu === 2), 'CPU 2 matches CPU 0')
  const v = verdict(f, d)
  t.equal(v.exitCode, 1)
  t.ok(v.findings.some(x => x.id === 'cpus.disagree' && x.effect === 'at-risk' && x.cpus === '1' && x.detail === 'IA32_ARCH_CAPABILITIES differs from CPU 0'))
})

t.test('CPUs that disagree: a different CPUID signature and CTRL value are named', async t => {
  const d = decide(facts([
    cpu({ cpu: 0, hv: true, archCap: GUEST_EIBRS, ...VIRT }),
    cpu({ cpu: 1, hv: true, archCap: GUEST_EIBRS, ...VIRT, eax1: ICX, ctrl: 1n }),
  ], undefined))
  t.same(d.disagreements.map(x => x.what).sort(), ['MSR_VIRTUAL_MITIGATION_CTRL differs from CPU 0', 'family/model/stepping differs from CPU 0'])
})

t.test('identical CPUs: no disagreement, enumerated; at risk until the report sets CTRL bit 0 (issue 12)', async t => {
  const f = facts([0, 1, 2, 3].map(n => cpu({ cpu: n, eax1: CLX, hv: true, archCap: GUEST_EIBRS, ...VIRT })), L(EIBRS, 'BHI: SW loop, KVM: SW loop'))
  const d = decide(f)
  t.same(d.disagreements, [])
  t.equal(d.enumerated, true)
  t.same(d.virt.map(v => v.wanted), [1n, 1n, 1n, 1n])
  t.equal(verdict(f, d).exitCode, 1, 'CTRL is 0: the VMM has not been told yet')
  t.equal(verdict(f, d, { ctrlNow: new Map([0, 1, 2, 3].map(c => [c, 1n])) }).exitCode, 0, 'once every CPU holds bit 0: protected')
})

// ---- Found on real kernels under QEMU (issue 7, Debian 6.1.y, TCG) ------------------------------

t.test('bugs.c spectre_bhi_state(): spectre_bhi=off on a retpoline kernel without RRSBA still reads "BHI: Retpoline"', async t => {
  // Measured: -cpu Skylake-Server (no ARCH_CAPABILITIES under TCG), spectre_bhi=off ->
  // "Mitigation: Retpolines; ...; BHI: Retpoline". spectre_bhi_state() ignores the policy and
  // rrsba_disabled is set by spectre_v2_select_mitigation for retpoline.
  const line = 'Mitigation: Retpolines; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Retpoline'
  const d = decide({ ...facts([cpu({ eax1: SKX, hv: true, e7: 0 })], line, 'console=ttyS0 spectre_bhi=off'), kernel: { release: '6.1.0-26-amd64', cmdline: 'console=ttyS0 spectre_bhi=off', vulnerabilities: { spectre_v2: line } } })
  t.equal(d.expected.bhi, 'retpoline')
  t.same(d.mismatches, [], 'the agent agrees with the kernel')
  t.equal(d.wish.bhbClearSeqSUsed, false)
  t.equal(d.wish.retpolineSUsed, true)
})

t.test('bugs.c: spectre_bhi=off with eIBRS (no retpoline) -> "BHI: Vulnerable"', async t => {
  const d = decide(facts([cpu({ hv: true, archCap: ARCH_CAP_IBRS_ALL, e72: E72_BHI_CTRL })], L(EIBRS, 'BHI: Vulnerable'), 'spectre_bhi=off'))
  t.equal(d.expected.bhi, 'vulnerable')
  t.same(d.mismatches, [])
})

t.test('spectre_bhi=vmexit is unknown to kernels before 6.11: the default (on) applies', async t => {
  // Measured: Debian 6.1.y logs "Ignoring unknown spectre_bhi option (vmexit)".
  const old = decide({ ...facts([cpu({ eax1: CLX, hv: true, archCap: ARCH_CAP_IBRS_ALL })], undefined), kernel: { release: '6.1.0-26-amd64', cmdline: 'spectre_bhi=vmexit', vulnerabilities: {} } })
  t.equal(old.expected.bhi, 'sw-loop')
  const recent = decide({ ...facts([cpu({ eax1: CLX, hv: true, archCap: ARCH_CAP_IBRS_ALL })], undefined), kernel: { release: '6.12.9', cmdline: 'spectre_bhi=vmexit', vulnerabilities: {} } })
  t.equal(recent.expected.bhi, 'vmexit-sw-loop')
})

t.test('6.1 stable backports join segments with "; " too (contract/CONTRACT.md section 6 says ", " before 6.9)', async t => {
  const line = 'Vulnerable: LFENCE; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: SW loop, KVM: SW loop'
  const d = decide({ ...facts([cpu({ eax1: SKX, hv: true, e7: 0 })], line), kernel: { release: '6.1.0-26-amd64', cmdline: 'spectre_v2=retpoline,lfence spectre_bhi=on', vulnerabilities: { spectre_v2: line } } })
  t.equal(d.kernel.spectreV2, 'lfence')
  t.equal(d.kernel.bhi, 'sw-loop')
  t.equal(d.expected.bhi, 'sw-loop', 'LFENCE retpoline does not cover BHI: the loop is selected')
  t.same(d.mismatches, [])
  t.equal(d.wish.retpolineSUsed, false, 'LFENCE is not "Retpolines" (contract/CONTRACT.md section 4)')
})

// Kernel generations (contract/CONTRACT.md section 6, from Debian's 6.1.192 / 6.12.117 / 7.2.13 bugs.c and
// kernel/cpu.c). The 7.2 cases are the five boots "Kernel generations" measured under QEMU TCG
// (Skylake-Server, Cascadelake-Server, EPYC; spectre_v2 as the kernel printed it), where the agent
// used to predict otherwise.
const K61 = '6.1.0-42-amd64', K612 = '6.12.117+deb13-amd64', K72 = '7.2.13+deb14-amd64'
const CLX_SIG = 0x50657
const withKernel = (c: CpuFacts[], release: string, cmdline: string, sysfs?: string): Facts =>
  ({ platform: 'test', kernel: { release, cmdline, vulnerabilities: sysfs === undefined ? {} : { spectre_v2: sysfs } }, cpus: c })
// TCG hides SPEC_CTRL and ARCH_CAPABILITIES (KVM-NOTES.md): no eIBRS, no IBRS, no RRSBA.
const tcgIntel = (eax1: number) => [cpu({ eax1, hv: true, e7: 0 })]
const cfgOf = (config: Record<string, string>) => (f: Facts): Facts => ({ ...f, kernel: { ...f.kernel, config } })

t.test('6, 7.x: mitigations=off spectre_v2=retpoline -> retpoline is still honoured, "BHI: Retpoline"', async t => {
  const d = decide(withKernel(tcgIntel(SKX), K72, 'mitigations=off spectre_v2=retpoline', 'Mitigation: Retpolines; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Retpoline'))
  t.equal(d.expected.spectreV2, 'retpoline')
  t.equal(d.expected.bhi, 'retpoline')
  t.same(d.mismatches, [])
  const old = decide(withKernel(tcgIntel(SKX), K612, 'mitigations=off spectre_v2=retpoline'))
  t.equal(old.expected.spectreV2, 'none', '6.12: mitigations=off overrides spectre_v2=')
  t.equal(old.expected.bhi, 'vulnerable')
})

t.test('6, 7.x: mitigations=off spectre_bhi=on -> spectre_v2 Vulnerable, BHI still SW loop', async t => {
  const d = decide(withKernel(tcgIntel(SKX), K72, 'mitigations=off spectre_bhi=on', 'Vulnerable; IBPB: disabled; STIBP: disabled; PBRSB-eIBRS: Not affected; BHI: SW loop, KVM: SW loop'))
  t.equal(d.expected.spectreV2, 'none')
  t.equal(d.expected.bhi, 'sw-loop')
  t.same(d.mismatches, [])
  t.equal(decide(withKernel(tcgIntel(SKX), K61, 'mitigations=off spectre_bhi=on')).expected.bhi, 'vulnerable', '6.1: BHI is never selected with spectre_v2 off')
})

t.test('6, 7.x: mitigations=off spectre_bhi=vmexit -> "BHI: Vulnerable, KVM: SW loop"', async t => {
  const d = decide(withKernel(tcgIntel(CLX_SIG), K72, 'mitigations=off spectre_bhi=vmexit', 'Vulnerable; IBPB: disabled; STIBP: disabled; PBRSB-eIBRS: Not affected; BHI: Vulnerable, KVM: SW loop'))
  t.equal(d.expected.bhi, 'vmexit-sw-loop')
  t.same(d.mismatches, [])
})

t.test('6, 7.x: mitigations=auto,no_user_kernel,no_guest_host -> spectre_v2 Vulnerable, BHI off', async t => {
  const d = decide(withKernel(tcgIntel(SKX), K72, 'mitigations=auto,no_user_kernel,no_guest_host', 'Vulnerable; IBPB: disabled; STIBP: disabled; PBRSB-eIBRS: Not affected; BHI: Vulnerable'))
  t.equal(d.expected.spectreV2, 'none')
  t.equal(d.expected.bhi, 'vulnerable')
  t.same(d.mismatches, [])
  const old = decide(withKernel(tcgIntel(SKX), K61, 'mitigations=auto,no_user_kernel,no_guest_host'))
  t.equal(old.expected.spectreV2, 'retpoline', '6.1: "Unsupported mitigations=", auto')
  t.match(old.expected.reasons.find(r => r.rule === 'bhi.policy-legacy-auto')?.text ?? '', /Unsupported mitigations=/)
})

t.test('6: spectre_v2=off turns BHI off on every generation (7.x bhi_update_mitigation: SPECTRE_V2_CMD_NONE)', async t => {
  for (const k of [K61, K612, K72]) t.equal(decide(withKernel(tcgIntel(SKX), k, 'spectre_v2=off spectre_bhi=on')).expected.bhi, 'vulnerable', k)
})

t.test('6: retbleed=off or stuff keeps auto spectre_v2 from IBRS on a retbleed-affected Intel part', async t => {
  // Skylake-SP (model 0x55) is on the RETBLEED list; IBRS available (CPUID.(7,0):EDX[26]); no eIBRS.
  const skx = [cpu({ eax1: SKX, hv: true, archCap: 0n })]
  t.equal(decide(withKernel(skx, K61, '')).expected.spectreV2, 'ibrs')
  for (const rb of ['off', 'stuff']) t.equal(decide(withKernel(skx, K72, `retbleed=${rb}`)).expected.spectreV2, 'retpoline', `retbleed=${rb}`)
  t.equal(decide(withKernel(skx, K72, 'retbleed=ibpb')).expected.spectreV2, 'ibrs')
})

t.test('6: the generation is a stated assumption: 6.13-6.x and unparsable releases are not classified', async t => {
  const c = tcgIntel(SKX)
  t.equal(decide(withKernel(c, '6.14.0-1-amd64', 'mitigations=off spectre_v2=retpoline')).expected.spectreV2, 'unknown')
  t.equal(decide(withKernel(c, 'weird', 'mitigations=off spectre_bhi=on')).expected.bhi, 'unknown')
})

t.test('6, 7.x: guest_host follows CONFIG_KVM from the kernel config the agent read; 6.x ignores it', async t => {
  const c = tcgIntel(CLX_SIG)
  const cfg = (kvm: string) => (f: Facts): Facts => ({ ...f, kernel: { ...f.kernel, config: { CONFIG_KVM: kvm } } })
  // CONFIG_KVM=n: guest_host off by default -> BHI policy off; spectre_v2 auto still mitigates (user_kernel on).
  const noKvm = decide(cfg('n')(withKernel(c, K72, '')))
  t.equal(noKvm.expected.bhi, 'retpoline', 'TCG: retpoline without RRSBA is reported as "BHI: Retpoline" whatever the policy')
  t.match(noKvm.expected.reasons.find(r => r.rule === 'bhi.policy-vectors')?.text ?? '', /guest_host off \(CONFIG_KVM=n in the kernel's config: its default\)/)
  const lf = decide(cfg('n')(withKernel(c, K72, 'spectre_v2=retpoline,lfence')))
  t.equal(lf.expected.bhi, 'vulnerable', 'LFENCE (no Retpoline segment): BHI off without CONFIG_KVM')
  t.equal(decide(cfg('m')(withKernel(c, K72, 'spectre_v2=retpoline,lfence'))).expected.bhi, 'sw-loop', 'CONFIG_KVM=m: on')
  t.equal(decide(withKernel(c, K72, 'spectre_v2=retpoline,lfence')).expected.bhi, 'sw-loop', 'no config read: CONFIG_KVM assumed (stated)')
  t.equal(decide(cfg('n')(withKernel(c, K612, 'spectre_v2=retpoline,lfence'))).expected.bhi, 'sw-loop', '6.12: no vectors, CONFIG_KVM does not matter')
  t.equal(decide(cfg('n')(withKernel(c, K72, 'mitigations=auto,no_user_kernel'))).expected.spectreV2, 'none', 'no user_kernel and (no KVM) no guest_host: spectre_v2 Vulnerable')
})

t.test('configOptions keeps only the options the choices depend on, y/m/n', async t => {
  const { configOptions } = await import('./facts.js')
  t.same(configOptions('CONFIG_KVM=m\n# CONFIG_MITIGATION_SPECTRE_BHI is not set\nCONFIG_X86=y\nCONFIG_MITIGATION_RETPOLINE=y\n'), { CONFIG_KVM: 'm', CONFIG_MITIGATION_SPECTRE_BHI: 'n', CONFIG_MITIGATION_RETPOLINE: 'y' })
})

// bugs.c (Linux 7.2.13) read from Debian's linux-source-7.2 7.2.13-1; 6.x rules from linux-source
// 6.1.192-3 and 6.12.117-1 (contract/CONTRACT.md section 6).
t.test('6, 7.x: spectre_v2=on (FORCE) ignores the vectors and gets no IBRS for retbleed (bugs.c Linux 7.2.13); on 6.x it is auto', async t => {
  const skx = [cpu({ eax1: SKX, hv: true, archCap: 0n })]
  t.equal(decide(withKernel(tcgIntel(SKX), K72, 'mitigations=off spectre_v2=on')).expected.spectreV2, 'retpoline', '7.2: FORCE mitigates with every vector off')
  t.equal(decide(withKernel(tcgIntel(SKX), K612, 'mitigations=off spectre_v2=on')).expected.spectreV2, 'none', '6.12: mitigations=off wins')
  t.equal(decide(withKernel(skx, K72, 'spectre_v2=on')).expected.spectreV2, 'retpoline', '7.2: spectre_v2_update_mitigation picks IBRS for CMD_AUTO only')
  t.equal(decide(withKernel(skx, K612, 'spectre_v2=on')).expected.spectreV2, 'ibrs', '6.12: FORCE and AUTO share the IBRS rule')
})

t.test('7.x: spectre_v2=eibrs without eIBRS falls back to AUTO, which the vectors then turn off (bugs.c Linux 7.2.13)', async t => {
  const d = decide(withKernel(tcgIntel(SKX), K72, 'mitigations=off spectre_v2=eibrs'))
  t.equal(d.expected.spectreV2, 'none')
  t.ok(d.expected.reasons.some(r => r.rule === 'v2.cmdline-fallback'))
  t.equal(decide(withKernel(tcgIntel(SKX), K72, 'spectre_v2=eibrs')).expected.spectreV2, 'retpoline', 'vectors on: auto')
})

t.test('6, 7.x: retbleed= is a list and differs per generation (bugs.c 6.1.192 / 6.12.117 / Linux 7.2.13)', async t => {
  const skx = [cpu({ eax1: SKX, hv: true, archCap: 0n })]
  t.equal(decide(withKernel(skx, K72, 'retbleed=off,nosmt')).expected.spectreV2, 'retpoline', 'off,nosmt is off')
  t.equal(decide(withKernel(skx, K61, 'retbleed=stuff')).expected.spectreV2, 'ibrs', '6.1: stuff is unknown, retbleed stays auto')
  t.equal(decide(withKernel(skx, K612, 'retbleed=stuff')).expected.spectreV2, 'retpoline', '6.12: retbleed_cmd != STUFF')
  // Vectors off: retbleed=ibpb keeps RETBLEED_MITIGATION_IBPB (not AUTO), and spectre_v2_update_mitigation
  // then picks IBRS for CMD_AUTO although spectre_v2 selected nothing.
  t.equal(decide(withKernel(skx, K72, 'mitigations=off retbleed=ibpb')).expected.spectreV2, 'ibrs')
  t.equal(decide(withKernel(skx, K72, 'mitigations=off')).expected.spectreV2, 'none', 'retbleed=auto with vectors off: NONE, no IBRS')
  t.equal(decide(cfgOf({ CONFIG_MITIGATION_IBRS_ENTRY: 'n' })(withKernel(skx, K72, ''))).expected.spectreV2, 'retpoline', 'IBRS_ENTRY not built: retpoline')
})

t.test('7.2: eIBRS+LFENCE with BHI off is "BHI: Vulnerable" (retpoline_seq_enabled excludes LFENCE, bugs.c Linux 7.2.13)', async t => {
  const c = [cpu({ hv: true, archCap: ARCH_CAP_IBRS_ALL })]
  t.equal(decide(withKernel(c, K72, 'spectre_v2=eibrs,lfence spectre_bhi=off')).expected.bhi, 'vulnerable')
  t.equal(decide(withKernel(c, '6.9.0-1-amd64', 'spectre_v2=eibrs,lfence spectre_bhi=off')).expected.bhi, 'unknown', 'older kernels: not read')
})

t.test('6, 7.x: unknown spectre_bhi= values are ignored, not "no prediction" (bugs.c spectre_bhi_parse_cmdline)', async t => {
  const d = decide(withKernel(tcgIntel(CLX_SIG), K72, 'spectre_v2=retpoline,lfence spectre_bhi=bogus'))
  t.equal(d.expected.bhi, 'sw-loop')
  t.match(d.expected.reasons.find(r => r.rule === 'bhi.policy-default')?.text ?? '', /spectre_bhi=bogus is ignored/)
  t.equal(decide(withKernel(tcgIntel(CLX_SIG), K61, 'spectre_v2=retpoline,lfence spectre_bhi=off spectre_bhi=vmexit')).expected.bhi, 'vulnerable', '6.1: vmexit ignored, off stays')
})

t.test('7.x: mitigations= with an unsupported option still predicts (kernel/cpu.c Linux 7.2.13 stops parsing there)', async t => {
  const d = decide(withKernel(tcgIntel(SKX), K72, 'mitigations=auto,no_user_kernel,bogus,no_guest_host spectre_v2=retpoline,lfence'))
  t.equal(d.expected.bhi, 'vmexit-sw-loop', 'guest_host stays on, user_kernel off: VM exit only')
})
