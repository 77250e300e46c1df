// The value the agent writes to MSR_VIRTUAL_MITIGATION_CTRL (contract/CONTRACT.md section 4).
import { MITI_CTRL_BHB_CLEAR_SEQ_S_USED, MITI_CTRL_RETPOLINE_S_USED, VIRTUAL_MITIGATION_CTRL, bit } from './registers.js'

/** CTRL bits this agent knows how to set: the contract defines bits 0 and 1 only. */
export const KNOWN_CTRL_BITS = VIRTUAL_MITIGATION_CTRL.bits.reduce((m, b) => m | bit(b.bit), 0n)

export interface MitiCtrlWish {
  /** Set CTRL bit 0 (true), clear it (false), or leave it as it is ('unknown'). */
  bhbClearSeqSUsed: boolean | 'unknown'
  retpolineSUsed: boolean | 'unknown'
}

/**
 * Read-modify-write of enumerated bits only (contract/CONTRACT.md section 4): bits that MITI_ENUM does not
 * enumerate, and bits this agent does not know, keep their current value; writing them would fault
 * (section 3). An 'unknown' wish leaves its bit alone rather than guess.
 */
export function wantedMitiCtrl(current: bigint, mitiEnum: bigint, wish: MitiCtrlWish): bigint {
  const writable = mitiEnum & KNOWN_CTRL_BITS
  let v = current
  const put = (m: bigint, on: boolean | 'unknown') => {
    if (on === 'unknown' || (writable & m) === 0n) return
    v = on ? v | m : v & ~m
  }
  // ENUM bit 0 BHB_CLEAR_SEQ_S_SUPPORT gates CTRL bit 0; ENUM bit 1 RETPOLINE_S_SUPPORT gates CTRL bit 1.
  put(MITI_CTRL_BHB_CLEAR_SEQ_S_USED, wish.bhbClearSeqSUsed)
  put(MITI_CTRL_RETPOLINE_S_USED, wish.retpolineSUsed)
  return v
}
