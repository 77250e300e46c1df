// What the VMM must force in SPEC_CTRL for what a vCPU reported (contract/CONTRACT.md section 5).
// Pure: one function per rule, each citing its source, so the emulation, the checker and
// `host expect` share one statement of the rules.
import type { HostCaps } from './host-caps.js'
import { decode, hex } from './bits.js'
import {
  MITI_CTRL_BHB_CLEAR_SEQ_S_USED, MITI_CTRL_RETPOLINE_S_USED, SPEC_CTRL,
  SPEC_CTRL_BHI_DIS_S, SPEC_CTRL_IBRS, SPEC_CTRL_RRSBA_DIS_S, SPEC_CTRL_SSBD, SPEC_CTRL_STIBP,
} from './registers.js'

const V3_01 = 'contract/CONTRACT.md section 5; RFC v3 01/10 (20240410143446.797262-2-chao.gao@intel.com)'
const V3_09 = 'contract/CONTRACT.md section 5; RFC v3 09/10, 10/10 (20240410143446.797262-10/-11-chao.gao@intel.com)'

export interface ForceReason {
  /** SPEC_CTRL bit name this reason is about (BHI_DIS_S, RRSBA_DIS_S, or a userspace-forced bit). */
  bit: string
  /** Whether the rule forces the bit (on, for derived bits). */
  forced: boolean
  rule: string
  source: string
}

export interface UserspaceForce { mask: bigint; value: bigint }

/**
 * The bits derived from CTRL and the host caps (contract/CONTRACT.md section 5, v3 09/10):
 * BHB_CLEAR_SEQ_S_USED and host_bhi_ctrl and not host_bhi_no -> BHI_DIS_S;
 * RETPOLINE_S_USED and host_rrsba_ctrl and host_rrsba -> RRSBA_DIS_S.
 * Every CTRL bit the contract defines gets one reason, forced or not.
 */
export function derivedForce(ctrl: bigint, caps: HostCaps): { bits: bigint; reasons: ForceReason[] } {
  let bits = 0n
  const reasons: ForceReason[] = []
  const bhb = (ctrl & MITI_CTRL_BHB_CLEAR_SEQ_S_USED) !== 0n
  if (!bhb) reasons.push({ bit: 'BHI_DIS_S', forced: false, rule: 'CTRL.BHB_CLEAR_SEQ_S_USED clear: guest does not rely on the short BHB sequence, nothing derived', source: V3_09 })
  else if (!caps.bhiCtrl) reasons.push({ bit: 'BHI_DIS_S', forced: false, rule: 'CTRL.BHB_CLEAR_SEQ_S_USED set but host lacks BHI_CTRL (CPUID.(7,2):EDX[4]): BHI_DIS_S cannot be set', source: V3_09 })
  else if (caps.bhiNo) reasons.push({ bit: 'BHI_DIS_S', forced: false, rule: 'CTRL.BHB_CLEAR_SEQ_S_USED set but host has BHI_NO (ARCH_CAP bit 20): not needed', source: V3_09 })
  else {
    bits |= SPEC_CTRL_BHI_DIS_S
    reasons.push({ bit: 'BHI_DIS_S', forced: true, rule: 'CTRL.BHB_CLEAR_SEQ_S_USED set, host has BHI_CTRL and not BHI_NO: force BHI_DIS_S on', source: V3_09 })
  }
  const ret = (ctrl & MITI_CTRL_RETPOLINE_S_USED) !== 0n
  if (!ret) reasons.push({ bit: 'RRSBA_DIS_S', forced: false, rule: 'CTRL.RETPOLINE_S_USED clear: guest does not use retpoline, nothing derived', source: V3_09 })
  else if (!caps.rrsbaCtrl) reasons.push({ bit: 'RRSBA_DIS_S', forced: false, rule: 'CTRL.RETPOLINE_S_USED set but host lacks RRSBA_CTRL (CPUID.(7,2):EDX[2]): RRSBA_DIS_S cannot be set', source: V3_09 })
  else if (!caps.rrsba) reasons.push({ bit: 'RRSBA_DIS_S', forced: false, rule: 'CTRL.RETPOLINE_S_USED set but host lacks RRSBA behaviour (ARCH_CAP bit 19): not needed', source: V3_09 })
  else {
    bits |= SPEC_CTRL_RRSBA_DIS_S
    reasons.push({ bit: 'RRSBA_DIS_S', forced: true, rule: 'CTRL.RETPOLINE_S_USED set, host has RRSBA_CTRL and RRSBA: force RRSBA_DIS_S on', source: V3_09 })
  }
  return { bits, reasons }
}

/**
 * Per-vCPU forced mask/value (contract/CONTRACT.md section 5): userspace's force takes precedence
 * (derived &= ~userspace_mask); mask = um | derived; value = uv | derived (derived bits forced on).
 */
export function forcedFor(ctrl: bigint, caps: HostCaps, userspace: UserspaceForce): { mask: bigint; value: bigint; rules: ForceReason[] } {
  const d = derivedForce(ctrl, caps)
  // Userspace precedence (v3 01/10 KVM_CAP_FORCE_SPEC_CTRL; Sean `ZmepkZfLIvj_st5W@google.com`):
  // a derived bit that userspace's mask names is dropped, and its reason says so.
  const rules: ForceReason[] = d.reasons.map(r => {
    const overridden = r.forced && decode(SPEC_CTRL, d.bits & userspace.mask).includes(r.bit)
    return overridden ? { ...r, forced: false, rule: `${r.rule}; but userspace's force names ${r.bit} in its mask, so userspace's value decides it (precedence)`, source: `${r.source}; RFC v3 01/10 (userspace precedence)` } : r
  })
  const derived = d.bits & ~userspace.mask
  for (let n = 0; n < 64; n++) {
    const m = 1n << BigInt(n)
    if ((userspace.mask & m) === 0n) continue
    const name = decode(SPEC_CTRL, m)[0]!
    const on = (userspace.value & m) !== 0n
    rules.push({ bit: name, forced: true, rule: `userspace force: ${name} held ${on ? 'on' : 'off'} (mask ${hex(userspace.mask)}, value ${hex(userspace.value)})`, source: V3_01 })
  }
  return { mask: userspace.mask | derived, value: userspace.value | derived, rules }
}

/** Hardware SPEC_CTRL while the guest runs (contract/CONTRACT.md section 5): (guest & ~mask) | (value & mask). */
export function effectiveSpecCtrl(guestWritten: bigint, mask: bigint, value: bigint): bigint {
  return (guestWritten & ~mask) | (value & mask)
}

/**
 * Bits userspace may force on (v3 01/10): IBRS; STIBP if host STIBP; SSBD if host SSBD;
 * RRSBA_DIS_S if host RRSBA_CTRL and RRSBA; BHI_DIS_S if host BHI_CTRL.
 */
export function supportedForceBits(caps: HostCaps): bigint {
  let s = SPEC_CTRL_IBRS
  if (caps.stibp) s |= SPEC_CTRL_STIBP
  if (caps.ssbd) s |= SPEC_CTRL_SSBD
  if (caps.rrsbaCtrl && caps.rrsba) s |= SPEC_CTRL_RRSBA_DIS_S
  if (caps.bhiCtrl) s |= SPEC_CTRL_BHI_DIS_S
  return s
}

/**
 * Userspace force validation (v3 01/10 ABI text): value must be a subset of the mask and of
 * the supported bits; the mask may name any bit (forcing an unsupported bit to 0 is allowed).
 */
export function validateUserspaceForce(force: UserspaceForce, caps: HostCaps): { ok: true } | { ok: false; error: string } {
  const u64 = (v: bigint) => v >= 0n && v < (1n << 64n)
  if (!u64(force.mask) || !u64(force.value)) return { ok: false, error: 'userspace force mask and value must be 64-bit unsigned values' }
  const outsideMask = force.value & ~force.mask
  if (outsideMask !== 0n) {
    return { ok: false, error: `userspace force value ${hex(force.value)} sets ${decode(SPEC_CTRL, outsideMask).join(', ')} outside the mask ${hex(force.mask)}: the value must be a subset of the mask (v3 01/10)` }
  }
  const unsupported = force.value & ~supportedForceBits(caps)
  if (unsupported !== 0n) {
    return { ok: false, error: `userspace force value ${hex(force.value)} forces on ${decode(SPEC_CTRL, unsupported).join(', ')}, which this host cannot set (supported: ${decode(SPEC_CTRL, supportedForceBits(caps)).join(', ')}) (v3 01/10)` }
  }
  return { ok: true }
}
