// Evidence `host check` cannot get from one state snapshot (issue 13): faults that only show when
// the MSRs are exercised (the guest's selftest: per-vCPU scope, read-only ENUMs, reserved CTRL
// bits) or when a vCPU is reset (CTRL is 0 after reset, contract/CONTRACT.md section 3). The scenario
// runner judges its own runs with these same functions, so `host check` on the files a run emits
// names the failure the run named. Pure.
import { decode, hex, parseU64 } from '../../contract/bits.js'
import type { HostCaps } from '../../contract/host-caps.js'
import { SPEC_CTRL, VIRTUAL_MITIGATION_CTRL, type RegisterDef } from '../../contract/registers.js'
import { forcedFor } from '../../contract/vmm-response.js'
import type { VmmState } from '../../contract/vmm-state-json.js'
import { RULES } from '../../guest/selftest/run.js'
import type { CheckItem, CheckResult, VcpuCheck } from './check.js'

/** One point of the selftest's output (guest/selftest/run.ts), as run or as read back from its TAP. */
export interface SelftestPoint { ok: boolean; name: string; skip?: string; diag?: Record<string, unknown> }

const RULE_BY_NAME = new Map<string, string>(Object.entries(RULES).map(([k, v]) => [v, k]))

/**
 * The selftest's points as check items, one per rule: id = the RULES key (scenario ids
 * `selftest.<key>`); a point this checker does not know is `unknown` (a failing one still fails).
 */
export function selftestItems(points: readonly SelftestPoint[]): CheckItem[] {
  return points.map(p => {
    const id = RULE_BY_NAME.get(p.name) ?? 'unknown'
    const known = id !== 'unknown' ? '' : ' (a rule this checker does not know)'
    return {
      id, ok: p.ok || p.skip !== undefined,
      message: `${p.ok || p.skip !== undefined ? '' : 'guest selftest fails: '}${p.name}${known}`,
      ...(p.skip !== undefined ? { skip: p.skip } : {}),
      ...(p.diag && !p.ok ? { diag: { ...p.diag } } : {}),
    }
  })
}

const u = (s: string): bigint => parseU64(s) ?? 0n

function cmp(id: string, what: string, reg: RegisterDef, exp: bigint, obs: bigint, why: string): CheckItem {
  if (exp === obs) return { id, ok: true, message: `${what} after vCPU reset is ${hex(obs)}` }
  const missing = decode(reg, exp & ~obs), extra = decode(reg, obs & ~exp)
  return {
    id, ok: false,
    message: `${what} after vCPU reset:${missing.length ? ` missing ${missing.join(', ')}` : ''}${extra.length ? ` extra ${extra.join(', ')}` : ''} (expected ${hex(exp)}, observed ${hex(obs)}; ${why})`,
    diag: { expected: decode(reg, exp), observed: decode(reg, obs), missing, extra },
  }
}

/**
 * A VMM state taken after every vCPU was reset (and before the guest wrote CTRL again): CTRL must
 * be the reset value (contract/CONTRACT.md section 3: 0; section 7: Intel's value is unconfirmed, so a VMM
 * may declare another) and the forced bits only what that value and userspace's force give
 * (section 5). Item ids: miti-ctrl, forced-mask, forced-value (scenario ids `reset.<id>`).
 */
export function resetChecks(after: VmmState, caps: HostCaps, resetCtrl = 0n): VcpuCheck[] {
  const force = { mask: u(after.userspaceForce.mask), value: u(after.userspaceForce.value) }
  const why = `contract/CONTRACT.md section 3: ${resetCtrl ? `the declared reset value ${hex(resetCtrl)}` : '0'} after vCPU reset`
  const exp = forcedFor(after.advertised ? resetCtrl : 0n, caps, force)
  return [...after.vcpus].sort((a, b) => a.index - b.index).map(v => {
    const items = [
      cmp('miti-ctrl', 'MITI_CTRL', VIRTUAL_MITIGATION_CTRL, after.advertised ? resetCtrl : 0n, u(v.mitiCtrl), why),
      cmp('forced-mask', 'forced mask', SPEC_CTRL, exp.mask, u(v.forcedMask), why),
      cmp('forced-value', 'forced value', SPEC_CTRL, exp.value, u(v.forcedValue), why),
    ]
    return { index: v.index, ok: items.every(i => i.ok), items, notes: [], basis: 'vmm-only' }
  })
}

export interface Evidence {
  /** The guest selftest's points (its TAP output read back, or the run's own). */
  selftest?: readonly SelftestPoint[]
  /** The VMM state after a vCPU reset, and the reset CTRL the VMM declares (default 0). */
  afterReset?: { state: VmmState; resetCtrl?: bigint }
}

/**
 * `host check`'s result with the extra evidence judged too: `selftest` (one item per rule) and
 * `afterReset` (per vCPU) join the result, their failures join `failures` ("selftest: ...",
 * "vCPU N: ... after vCPU reset ...") and make the verdict fail. `caps` as the state check used them;
 * `first` is the state it checked (userspace's force is fixed once a vCPU exists, RFC v3 01/10, so a
 * reset keeps it).
 */
export function withEvidence(r: CheckResult, e: Evidence, caps: HostCaps, first: VmmState): CheckResult {
  const out: CheckResult = { ...r, vm: [...r.vm], failures: [...r.failures] }
  if (e.selftest) {
    out.selftest = selftestItems(e.selftest)
    out.failures.push(...out.selftest.filter(i => !i.ok).map(i => `selftest: ${i.message}`))
  }
  if (e.afterReset) {
    const s = e.afterReset.state
    if (s.vmUuid !== r.vmUuid) {
      const item: CheckItem = { id: 'reset-vm-uuid', ok: false, message: `the after-reset VMM state is from VM ${s.vmUuid}, the checked state from VM ${r.vmUuid}: not the same VM` }
      out.vm.push(item)
      out.failures.push(`VM: ${item.message}`)
    } else {
      const f0 = first.userspaceForce, f1 = s.userspaceForce
      if (f0.mask !== f1.mask || f0.value !== f1.value) {
        const item: CheckItem = { id: 'reset-userspace-force', ok: false, message: `the after-reset VMM state has userspace force mask ${f1.mask} value ${f1.value}, the checked state mask ${f0.mask} value ${f0.value}: the force is fixed once a vCPU exists (RFC v3 01/10)` }
        out.vm.push(item)
        out.failures.push(`VM: ${item.message}`)
      }
      out.afterReset = resetChecks(s, caps, e.afterReset.resetCtrl)
      out.failures.push(...out.afterReset.flatMap(c => c.items.filter(i => !i.ok).map(i => `vCPU ${c.index}: ${i.message}`)))
    }
  }
  if (out.failures.length > r.failures.length) {
    out.verdict = 'fail'
    out.ok = false
    // A "could not tell" marker stands for the state check alone; a failure found here outranks it.
    out.vm = out.vm.filter(i => i.id !== 'guest-data')
  }
  return out
}
