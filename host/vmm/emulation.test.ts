// The reference emulation against contract/CONTRACT.md sections 3 and 5, one test per rule, plus an
// exhaustive matrix checked against an independent restatement of section 5.
import t from 'tap'
import { createVmm, VmmConfigError, type VmmConfig } from './emulation.js'
import { profileByName } from './profiles.js'
import type { VmmProfile } from './profile.js'
import type { HostCaps } from '../../contract/host-caps.js'
import { MSR } from '../../contract/registers.js'

const ALL: HostCaps = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }
const AC = 0x0c000000n // some presented ARCH_CAP bits without bit 63
const B63 = 1n << 63n
const BHI_DIS_S = 1n << 10n, RRSBA_DIS_S = 1n << 6n, IBRS = 1n, STIBP = 2n, SSBD = 4n
const prof = (name: string, over: Partial<VmmProfile> = {}): VmmProfile => ({ ...profileByName(name)!, ...over })
const vmm = (over: Partial<VmmConfig> = {}) => createVmm({ archCapabilities: AC, hostCaps: ALL, profile: prof('reference'), vcpus: 2, ...over })

t.test('section 3: ARCH_CAPABILITIES shows bit 63 when the VMM advertises, not otherwise', async t => {
  t.same(vmm().vcpus[0]!.rdmsr(MSR.ARCH_CAPABILITIES), { ok: true, value: AC | B63 })
  t.same(vmm({ profile: prof('no-virtual-msrs') }).vcpus[0]!.rdmsr(MSR.ARCH_CAPABILITIES), { ok: true, value: AC })
  t.same(vmm({ profile: prof('no-virtual-msrs'), archCapabilities: AC | B63 }).vcpus[0]!.rdmsr(MSR.ARCH_CAPABILITIES), { ok: true, value: AC }, 'a VMM without the MSRs never shows bit 63')
})

t.test('section 3: no ARCH_CAPABILITIES presented -> 0x10A and 0x50000000 fault', async t => {
  const v = vmm({ archCapabilities: null }).vcpus[0]!
  t.equal(v.rdmsr(MSR.ARCH_CAPABILITIES).ok, false)
  t.equal(v.rdmsr(MSR.VIRTUAL_ENUMERATION).ok, false)
})

t.test('section 3: VIRTUAL_ENUMERATION reads bit 0 when advertised', async t => {
  t.same(vmm().vcpus[0]!.rdmsr(MSR.VIRTUAL_ENUMERATION), { ok: true, value: 1n })
})

t.test('section 3: MITI_ENUM reads the profile ENUM bits', async t => {
  t.same(vmm().vcpus[0]!.rdmsr(MSR.VIRTUAL_MITIGATION_ENUM), { ok: true, value: 3n })
  t.same(vmm({ profile: prof('bhb-only') }).vcpus[0]!.rdmsr(MSR.VIRTUAL_MITIGATION_ENUM), { ok: true, value: 1n })
})

t.test('section 3: ENUM MSRs are read-only: a write faults and changes nothing', async t => {
  const v = vmm().vcpus[0]!
  t.equal(v.wrmsr(MSR.VIRTUAL_ENUMERATION, 0n).ok, false)
  t.equal(v.wrmsr(MSR.VIRTUAL_MITIGATION_ENUM, 0n).ok, false)
  t.same(v.rdmsr(MSR.VIRTUAL_ENUMERATION), { ok: true, value: 1n })
  t.same(v.rdmsr(MSR.VIRTUAL_MITIGATION_ENUM), { ok: true, value: 3n })
  t.equal(v.wrmsr(MSR.ARCH_CAPABILITIES, 0n).ok, false, 'ARCH_CAPABILITIES read-only too')
})

t.test('section 3: a CTRL write with a bit not in MITI_ENUM faults and changes nothing', async t => {
  const v = vmm({ profile: prof('bhb-only') }).vcpus[0]!
  t.same(v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 1n), { ok: true })
  const r = v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 3n)
  t.equal(r.ok, false)
  if (!r.ok) t.match(r.reason, /RETPOLINE_S_USED/)
  t.equal(v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 1n << 5n).ok, false, 'undefined bit 5 faults')
  t.same(v.rdmsr(MSR.VIRTUAL_MITIGATION_CTRL), { ok: true, value: 1n })
  t.equal(v.state().forcedMask, BHI_DIS_S, 'response unchanged by the faulting write')
})

t.test('section 3: CTRL reads back the last value written', async t => {
  const v = vmm().vcpus[0]!
  for (const x of [1n, 2n, 3n, 0n]) {
    t.same(v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, x), { ok: true })
    t.same(v.rdmsr(MSR.VIRTUAL_MITIGATION_CTRL), { ok: true, value: x })
  }
})

t.test('section 3: CTRL is 0 after vCPU reset, and the response goes with it', async t => {
  const v = vmm().vcpus[0]!
  t.same(v.rdmsr(MSR.VIRTUAL_MITIGATION_CTRL), { ok: true, value: 0n }, '0 at creation')
  v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 3n)
  v.wrmsr(MSR.SPEC_CTRL, IBRS)
  v.reset()
  t.same(v.state(), { index: 0, mitiCtrl: 0n, forcedMask: 0n, forcedValue: 0n, specCtrlShadow: 0n, specCtrlEffective: 0n })
})

t.test('section 3: MITI_ENUM/CTRL fault when VIRTUAL_ENUMERATION bit 0 is clear', async t => {
  // Only the faulty enum-writable VMM can get there: it lets the guest clear bit 0.
  const v = vmm({ profile: prof('enum-writable') }).vcpus[0]!
  t.same(v.wrmsr(MSR.VIRTUAL_ENUMERATION, 0n), { ok: true })
  t.equal(v.rdmsr(MSR.VIRTUAL_MITIGATION_ENUM).ok, false)
  t.equal(v.rdmsr(MSR.VIRTUAL_MITIGATION_CTRL).ok, false)
  t.equal(v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 1n).ok, false)
})

t.test('section 3: the MSRs are per vCPU (per-vCPU independence)', async t => {
  const m = vmm({ vcpus: 3 })
  m.vcpus[0]!.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 1n)
  m.vcpus[2]!.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 2n)
  t.same(m.states().map(s => [s.mitiCtrl, s.forcedMask]), [[1n, BHI_DIS_S], [0n, 0n], [2n, RRSBA_DIS_S]])
  m.vcpus[0]!.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 0n)
  t.same(m.states().map(s => s.forcedMask), [0n, 0n, RRSBA_DIS_S], 'clearing vCPU 0 leaves vCPU 2 alone')
})

t.test('section 3: not advertised + unknownMsr fault -> virtual MSRs fault', async t => {
  const v = vmm({ profile: prof('no-virtual-msrs') }).vcpus[0]!
  for (const i of [MSR.VIRTUAL_ENUMERATION, MSR.VIRTUAL_MITIGATION_ENUM, MSR.VIRTUAL_MITIGATION_CTRL]) {
    t.equal(v.rdmsr(i).ok, false, `read ${i.toString(16)} faults`)
    t.equal(v.wrmsr(i, 1n).ok, false, `write ${i.toString(16)} faults`)
  }
})

t.test('section 3: not advertised + read-zero -> virtual MSRs read 0, writes ignored', async t => {
  const m = vmm({ profile: prof('read-zero') })
  const v = m.vcpus[0]!
  t.same(v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 1n), { ok: true })
  t.same(v.rdmsr(MSR.VIRTUAL_MITIGATION_CTRL), { ok: true, value: 0n })
  t.equal(v.state().forcedMask, 0n, 'an ignored write forces nothing')
  t.same(m.unknownRead(0x1234), { ok: true, value: 0n })
})

t.test('section 5: the guest reads its SPEC_CTRL shadow, never the forced bits', async t => {
  const v = vmm().vcpus[0]!
  v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 1n)
  v.wrmsr(MSR.SPEC_CTRL, IBRS)
  t.same(v.rdmsr(MSR.SPEC_CTRL), { ok: true, value: IBRS })
  t.equal(v.state().specCtrlEffective, IBRS | BHI_DIS_S)
  t.equal(v.state().specCtrlGuestRead, IBRS)
})

t.test('section 5: a guest SPEC_CTRL write cannot clear a forced bit', async t => {
  const v = vmm().vcpus[0]!
  v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 3n)
  v.wrmsr(MSR.SPEC_CTRL, 0n)
  t.equal(v.state().specCtrlEffective, BHI_DIS_S | RRSBA_DIS_S)
})

t.test('section 5: clearing CTRL removes the derived bit from the effective value', async t => {
  const v = vmm().vcpus[0]!
  v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 1n)
  t.equal(v.state().specCtrlEffective, BHI_DIS_S)
  v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 0n)
  t.equal(v.state().specCtrlEffective, 0n)
  t.equal(v.state().forcedMask, 0n)
})

t.test('section 5: a guest that writes BHI_DIS_S itself keeps it after CTRL is cleared', async t => {
  const v = vmm().vcpus[0]!
  v.wrmsr(MSR.SPEC_CTRL, BHI_DIS_S)
  v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 1n)
  v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 0n)
  t.equal(v.state().specCtrlEffective, BHI_DIS_S)
})

t.test('SPEC_CTRL: reserved bit 9 and bits above 10 fault (contract/CONTRACT.md section 2)', async t => {
  const v = vmm().vcpus[0]!
  t.equal(v.wrmsr(MSR.SPEC_CTRL, 1n << 9n).ok, false)
  t.equal(v.wrmsr(MSR.SPEC_CTRL, 1n << 11n).ok, false)
  t.same(v.wrmsr(MSR.SPEC_CTRL, 0x5ffn), { ok: true })
  t.equal(vmm({ guestSpecCtrl: false }).vcpus[0]!.rdmsr(MSR.SPEC_CTRL).ok, false, 'no SPEC_CTRL without CPUID.(7,0):EDX[26]')
})

t.test('v3 01/10: a userspace force value outside the mask is refused before any vCPU exists', async t => {
  t.throws(() => vmm({ profile: prof('reference', { userspaceForce: { mask: 0n, value: IBRS } }) }), VmmConfigError)
  t.throws(() => vmm({ profile: prof('userspace-force-bhi'), hostCaps: { ...ALL, bhiCtrl: false } }), /cannot set/)
  t.throws(() => vmm({ vcpus: 0 }), /vcpus/)
})

t.test('section 5: userspace force holds on every vCPU from creation', async t => {
  const m = vmm({ profile: prof('userspace-force-bhi') })
  t.same(m.states().map(s => [s.forcedMask, s.specCtrlEffective]), [[BHI_DIS_S, BHI_DIS_S], [BHI_DIS_S, BHI_DIS_S]])
})

// ---- Exhaustive: CTRL (4) x host caps (64) x userspace mask/value over {IBRS, RRSBA_DIS_S, BHI_DIS_S}.
// Independent restatement of contract/CONTRACT.md section 5, deliberately written differently from contract/.
function restated(ctrl: number, c: HostCaps, um: bigint, uv: bigint) {
  const bhi = (ctrl & 1) === 1 && c.bhiCtrl && !c.bhiNo && (um & BHI_DIS_S) === 0n
  const rrs = (ctrl & 2) === 2 && c.rrsbaCtrl && c.rrsba && (um & RRSBA_DIS_S) === 0n
  const derived = (bhi ? BHI_DIS_S : 0n) + (rrs ? RRSBA_DIS_S : 0n)
  return { mask: um + derived, value: uv + derived } // disjoint: derived bits are outside um
}
function validRestated(c: HostCaps, um: bigint, uv: bigint): boolean {
  if ((uv & ~um) !== 0n) return false
  if ((uv & BHI_DIS_S) && !c.bhiCtrl) return false
  if ((uv & RRSBA_DIS_S) && !(c.rrsbaCtrl && c.rrsba)) return false
  return true
}

t.test('exhaustive: emulation forced state equals the restated section 5 for every CTRL x caps x userspace force', async t => {
  const U = [IBRS, RRSBA_DIS_S, BHI_DIS_S]
  const subsets = (xs: bigint[]) => xs.reduce<bigint[]>((acc, x) => acc.concat(acc.map(a => a | x)), [0n])
  let cases = 0, refused = 0, bad: string[] = []
  for (let capBits = 0; capBits < 64; capBits++) {
    const c: HostCaps = { bhiCtrl: !!(capBits & 1), bhiNo: !!(capBits & 2), rrsbaCtrl: !!(capBits & 4), rrsba: !!(capBits & 8), stibp: !!(capBits & 16), ssbd: !!(capBits & 32) }
    for (const um of subsets(U)) for (const uv of subsets(U)) {
      const profile = prof('reference', { userspaceForce: { mask: um, value: uv } })
      const valid = validRestated(c, um, uv)
      let m
      try { m = createVmm({ archCapabilities: AC, hostCaps: c, profile, vcpus: 1 }) } catch (e) {
        if (valid) bad.push(`valid force mask ${um} value ${uv} refused: ${(e as Error).message}`)
        refused++
        continue
      }
      if (!valid) { bad.push(`invalid force mask ${um} value ${uv} accepted on caps ${capBits}`); continue }
      const v = m.vcpus[0]!
      for (const guestSpec of [0n, BHI_DIS_S | RRSBA_DIS_S | IBRS | STIBP | SSBD]) {
        v.wrmsr(MSR.SPEC_CTRL, guestSpec)
        for (const ctrl of [0, 1, 2, 3, 1, 0]) { // repeated values exercise clear-after-set
          cases++
          v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, BigInt(ctrl))
          const want = restated(ctrl, c, um, uv)
          const s = v.state()
          const eff = (guestSpec & ~want.mask) | (want.value & want.mask)
          if (s.forcedMask !== want.mask || s.forcedValue !== want.value || s.specCtrlEffective !== eff || s.specCtrlShadow !== guestSpec || s.mitiCtrl !== BigInt(ctrl)) {
            bad.push(`caps ${capBits} um ${um} uv ${uv} ctrl ${ctrl} spec ${guestSpec}: got ${s.forcedMask}/${s.forcedValue}/${s.specCtrlEffective}, want ${want.mask}/${want.value}/${eff}`)
          }
        }
      }
    }
  }
  t.same(bad.slice(0, 10), [], 'no disagreement')
  // 64 caps x 8 masks x 8 values = 4096 configs; 1080 valid ones x 2 guest SPEC_CTRL x 6 CTRL writes.
  t.equal(cases, 12960, `${cases} cases checked`)
  t.equal(refused, 4096 - 1080, `${refused} invalid userspace forces refused`)
})
