// One test per rule of contract/CONTRACT.md section 5, named after the rule.
import t from 'tap'
import { forcedFor, derivedForce, effectiveSpecCtrl, supportedForceBits, validateUserspaceForce } from './vmm-response.js'
import type { HostCaps } from './host-caps.js'
import {
  MITI_CTRL_BHB_CLEAR_SEQ_S_USED as BHB, MITI_CTRL_RETPOLINE_S_USED as RET,
  SPEC_CTRL_BHI_DIS_S as BHI_DIS_S, SPEC_CTRL_RRSBA_DIS_S as RRSBA_DIS_S, SPEC_CTRL_IBRS as IBRS,
  SPEC_CTRL_STIBP as STIBP, SPEC_CTRL_SSBD as SSBD,
} from './registers.js'

const ALL: HostCaps = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }
const NONE = { mask: 0n, value: 0n }

t.test('section 5: CTRL 0 derives nothing', async t => {
  t.equal(derivedForce(0n, ALL).bits, 0n)
  t.same(forcedFor(0n, ALL, NONE), { mask: 0n, value: 0n, rules: forcedFor(0n, ALL, NONE).rules })
})

t.test('section 5: BHB_CLEAR_SEQ_S_USED on a BHI_CTRL host without BHI_NO forces BHI_DIS_S on', async t => {
  const f = forcedFor(BHB, ALL, NONE)
  t.equal(f.mask, BHI_DIS_S)
  t.equal(f.value, BHI_DIS_S)
  t.ok(f.rules.some(r => r.bit === 'BHI_DIS_S' && r.forced))
})

t.test('section 5: BHI_NO host derives no BHI_DIS_S', async t => {
  const f = forcedFor(BHB, { ...ALL, bhiNo: true }, NONE)
  t.equal(f.mask, 0n)
  t.match(f.rules.find(r => r.bit === 'BHI_DIS_S')!.rule, /BHI_NO/)
})

t.test('section 5: host without BHI_CTRL derives no BHI_DIS_S', async t => {
  const f = forcedFor(BHB, { ...ALL, bhiCtrl: false }, NONE)
  t.equal(f.mask, 0n)
  t.match(f.rules.find(r => r.bit === 'BHI_DIS_S')!.rule, /lacks BHI_CTRL/)
})

t.test('section 5: RETPOLINE_S_USED on a RRSBA_CTRL + RRSBA host forces RRSBA_DIS_S on', async t => {
  const f = forcedFor(RET, ALL, NONE)
  t.equal(f.mask, RRSBA_DIS_S)
  t.equal(f.value, RRSBA_DIS_S)
})

t.test('section 5: RRSBA absent on the host derives no RRSBA_DIS_S', async t => {
  t.equal(forcedFor(RET, { ...ALL, rrsba: false }, NONE).mask, 0n)
})

t.test('section 5: host without RRSBA_CTRL derives no RRSBA_DIS_S', async t => {
  t.equal(forcedFor(RET, { ...ALL, rrsbaCtrl: false }, NONE).mask, 0n)
})

t.test('section 5: both CTRL bits derive both SPEC_CTRL bits', async t => {
  const f = forcedFor(BHB | RET, ALL, NONE)
  t.equal(f.mask, BHI_DIS_S | RRSBA_DIS_S)
  t.equal(f.value, BHI_DIS_S | RRSBA_DIS_S)
})

t.test('section 5: userspace precedence: a userspace mask bit drops the derived bit (userspace holds it off)', async t => {
  const f = forcedFor(BHB, ALL, { mask: BHI_DIS_S, value: 0n })
  t.equal(f.mask, BHI_DIS_S, 'BHI_DIS_S still masked, by userspace')
  t.equal(f.value, 0n, 'userspace value 0 wins over the derived 1')
  const r = f.rules.filter(x => x.bit === 'BHI_DIS_S')
  t.same(r.map(x => x.forced), [false, true], 'derived reason marked not forced, userspace reason forced')
  t.match(r[0]!.rule, /userspace's force names BHI_DIS_S in its mask/)
  t.match(r[1]!.rule, /userspace force: BHI_DIS_S held off/)
})

t.test('section 5: mask = userspace mask | derived, value = userspace value | derived', async t => {
  const f = forcedFor(BHB | RET, ALL, { mask: IBRS | SSBD, value: IBRS })
  t.equal(f.mask, IBRS | SSBD | BHI_DIS_S | RRSBA_DIS_S)
  t.equal(f.value, IBRS | BHI_DIS_S | RRSBA_DIS_S)
})

t.test('section 5: clearing CTRL removes the derived bit (recomputed from the written value)', async t => {
  t.equal(forcedFor(BHB, ALL, NONE).mask, BHI_DIS_S)
  t.equal(forcedFor(0n, ALL, NONE).mask, 0n)
  t.equal(forcedFor(0n, ALL, { mask: IBRS, value: IBRS }).mask, IBRS, 'userspace force stays')
})

t.test('section 5: effective = (guest & ~mask) | (value & mask)', async t => {
  t.equal(effectiveSpecCtrl(0n, BHI_DIS_S, BHI_DIS_S), BHI_DIS_S, 'forced on')
  t.equal(effectiveSpecCtrl(BHI_DIS_S | IBRS, BHI_DIS_S, 0n), IBRS, 'forced off')
  t.equal(effectiveSpecCtrl(IBRS | STIBP, 0n, 0n), IBRS | STIBP, 'nothing forced: guest value')
})

t.test('v3 01/10: supported forcible bits follow the host caps', async t => {
  t.equal(supportedForceBits(ALL), IBRS | STIBP | SSBD | RRSBA_DIS_S | BHI_DIS_S)
  t.equal(supportedForceBits({ bhiCtrl: false, bhiNo: false, rrsbaCtrl: false, rrsba: false, stibp: false, ssbd: false }), IBRS, 'IBRS always')
  t.equal(supportedForceBits({ ...ALL, rrsba: false }) & RRSBA_DIS_S, 0n, 'RRSBA_DIS_S needs RRSBA_CTRL and RRSBA')
})

t.test('v3 01/10: userspace force value not a subset of the mask is a config error', async t => {
  const r = validateUserspaceForce({ mask: 0n, value: BHI_DIS_S }, ALL)
  t.equal(r.ok, false)
  if (!r.ok) t.match(r.error, /BHI_DIS_S outside the mask/)
})

t.test('v3 01/10: userspace force value with an unsupported bit is a config error', async t => {
  const r = validateUserspaceForce({ mask: BHI_DIS_S, value: BHI_DIS_S }, { ...ALL, bhiCtrl: false })
  t.equal(r.ok, false)
  if (!r.ok) t.match(r.error, /BHI_DIS_S, which this host cannot set/)
})

t.test('v3 01/10: the mask may name an unsupported bit (forcing it to 0)', async t => {
  t.same(validateUserspaceForce({ mask: BHI_DIS_S | (1n << 40n), value: 0n }, { ...ALL, bhiCtrl: false }), { ok: true })
})

t.test('v3 01/10: values beyond 64 bits are refused', async t => {
  t.equal(validateUserspaceForce({ mask: 1n << 64n, value: 0n }, ALL).ok, false)
})
