// Property/fuzz test: random and malformed guest reports (and VMM states) fed to host check
// from text. It must always return a verdict or a clean error, never throw (issue 3).
import t from 'tap'
import { checkFromText } from './from-text.js'
import { miniGuestReport, TEST_UUID } from './fixtures.js'
import { simulatedPlatform } from '../vmm/simulated.js'
import { profileByName } from '../vmm/profiles.js'
import { vmmStateJson } from '../vmm/state.js'
import type { CpuModel } from '../../contract/cpu-model.js'

export const FUZZ_INPUTS = 20000
const SEED = 0x5eed1234

/** mulberry32: small, seeded, reproducible. */
function prng(seed: number) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const MODEL: CpuModel = {
  id: 't', name: 'test', vendor: 'GenuineIntel', family: 6, model: 0x55, stepping: 4,
  cpuid7_0_edx: ((1 << 26) | (1 << 27) | (1 << 29) | (1 << 31)) >>> 0, cpuid7_2_edx: 0, archCapabilities: 0n, sources: {},
}
const { platform, vmm } = simulatedPlatform({
  presented: { model: MODEL, hypervisor: true, archCapabilities: 0n },
  hostCaps: { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true },
  profile: profileByName('reference')!, vcpus: 4, sysfs: {},
})
const VALID_REPORT = miniGuestReport(platform, { ctrl: c => BigInt(c & 3), specCtrl: 1n })
const VALID_STATE = vmmStateJson(vmm, TEST_UUID)

const KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'schema', 'cpus', 'cpu', 'vcpus', 'index', 'outcome', 'readBack', 'mitiCtrl', '', 'x'.repeat(300)]

function run(rnd: () => number) {
  const int = (n: number) => Math.floor(rnd() * n)
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!
  const randomScalar = (): unknown => pick([
    () => null, () => true, () => false, () => int(1 << 30) - (1 << 29), () => rnd() * 1e300, () => -0, () => 2 ** 64,
    () => '0x' + int(1 << 30).toString(16), () => '0X1', () => '0x' + 'f'.repeat(17), () => '', () => 'x'.repeat(int(5000)),
    () => '\u0000\ud800', () => pick(['written', 'unchanged', 'fault', 'offline', 'bogus']), () => TEST_UUID, () => TEST_UUID.toUpperCase(),
    () => '2026-01-01T00:00:00Z', () => 'virtmiti/guest-report/v1', () => 'virtmiti/vmm-state/v1',
  ])()
  const randomJson = (depth: number): unknown => {
    if (depth <= 0 || rnd() < 0.4) return randomScalar()
    if (rnd() < 0.5) return Array.from({ length: int(5) }, () => randomJson(depth - 1))
    const o: Record<string, unknown> = {}
    for (let i = int(5); i > 0; i--) o[pick(KEYS)] = randomJson(depth - 1)
    return o
  }
  /** Mutate one random spot of a JSON tree (copy). */
  const mutate = (v: unknown, depth = 0): unknown => {
    if (v === null || typeof v !== 'object' || rnd() < 0.15 * depth) {
      return pick([() => randomScalar(), () => randomJson(3), () => undefined, () => [v], () => ({ v })])()
    }
    if (Array.isArray(v)) {
      const a = [...v]
      const op = int(4)
      if (op === 0 && a.length) a.splice(int(a.length), 1)
      else if (op === 1 && a.length) a.push(structuredClone(a[int(a.length)]))
      else if (a.length) { const i = int(a.length); a[i] = mutate(a[i], depth + 1) }
      else a.push(randomJson(2))
      return a
    }
    const o: Record<string, unknown> = { ...(v as Record<string, unknown>) }
    const keys = Object.keys(o)
    const op = int(4)
    if (op === 0 && keys.length) delete o[pick(keys)]
    else if (op === 1) Object.defineProperty(o, pick(KEYS), { value: randomJson(2), enumerable: true, configurable: true, writable: true })
    else if (keys.length) { const k = pick(keys); o[k] = mutate(o[k], depth + 1) }
    return o
  }
  const textMutate = (s: string): string => pick([
    () => s.slice(0, int(s.length)),
    () => { const i = int(s.length); return s.slice(0, i) + String.fromCharCode(int(0x10000)) + s.slice(i + 1) },
    () => s.replace(/"cpu":/, '"__proto__":{"polluted":1},"cpu":'),
    () => s.replace(/}\s*$/, ',"__proto__":{"polluted":1}}'),
    () => s.replace(/"schema"/, '"schema":"x","schema"'),
    () => '\ufeff' + s,
    () => s + 'garbage',
  ])()

  const kind = int(10)
  let report: string
  if (kind === 0) report = JSON.stringify(randomJson(6)) ?? 'undefined'
  else if (kind === 1) report = textMutate(JSON.stringify(VALID_REPORT))
  else if (kind === 2) report = pick(['[', ']', '{', '"', '', ' ', 'null', '0', '1e999', '{"a":' + '['.repeat(int(50000)), '['.repeat(int(20000)) + ']'.repeat(int(20000))])
  else if (kind === 3) report = JSON.stringify(VALID_REPORT)
  else { let m: unknown = VALID_REPORT; for (let i = 1 + int(3); i > 0; i--) m = mutate(m); report = JSON.stringify(m) ?? 'undefined' }
  const stateKind = rnd()
  const state = stateKind < 0.7 ? JSON.stringify(VALID_STATE) : stateKind < 0.85 ? JSON.stringify(mutate(VALID_STATE)) ?? '' : textMutate(JSON.stringify(VALID_STATE))
  // Sometimes a host caps file too: valid, mutated or random.
  const capsKind = rnd()
  const VALID_CAPS = { schema: 'virtmiti/host-caps/v1', caps: VALID_STATE.hostCaps }
  const hostCaps = capsKind < 0.8 ? undefined : capsKind < 0.9 ? JSON.stringify(VALID_CAPS) : capsKind < 0.95 ? JSON.stringify(mutate(VALID_CAPS)) ?? '' : textMutate(JSON.stringify(VALID_CAPS))
  return { report, state, hostCaps, pristine: kind === 3 && stateKind < 0.7 && capsKind < 0.9 }
}

t.test(`fuzz: ${FUZZ_INPUTS} random and malformed guest reports never make host check throw (seed ${SEED.toString(16)})`, async t => {
  const rnd = prng(SEED)
  let verdicts = 0, errors = 0, passes = 0, thrown = 0
  const badErrors: string[] = []
  for (let i = 0; i < FUZZ_INPUTS; i++) {
    const { report, state, hostCaps, pristine } = run(rnd)
    let r
    try { r = checkFromText({ report, state, ...(hostCaps !== undefined ? { hostCaps } : {}) }) } catch (e) { thrown++; if (thrown < 5) t.fail(`threw on input ${i}: ${(e as Error).message}`); continue }
    if (r.ok) { verdicts++; if (r.result.ok) passes++; if (typeof r.result.ok !== 'boolean') badErrors.push(`input ${i}: verdict without ok`) }
    else {
      errors++
      if (r.errors.length === 0 || r.errors.some(e => typeof e !== 'string' || e.length === 0 || e.length > 2000)) badErrors.push(`input ${i}: unclean errors ${JSON.stringify(r.errors).slice(0, 200)}`)
    }
    if (pristine && !(r.ok)) badErrors.push(`input ${i}: a valid report was refused`)
  }
  t.equal(thrown, 0, 'no exception')
  t.same(badErrors.slice(0, 5), [], 'every error is a non-empty message; valid reports give a verdict')
  t.equal(verdicts + errors, FUZZ_INPUTS)
  t.ok(verdicts > 1000 && errors > 1000, `both verdicts (${verdicts}, ${passes} passing) and clean errors (${errors}) were exercised`)
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype not polluted')
})

t.test('fuzz: huge inputs are refused by size before parsing', async t => {
  const huge = '{"schema":"' + 'x'.repeat(5 * 1024 * 1024) + '"}'
  const r = checkFromText({ report: huge, state: JSON.stringify(VALID_STATE) })
  t.equal(r.ok, false)
  if (!r.ok) t.match(r.errors[0], /guest report: larger than the 4194304-byte limit/)
  const multi = '\u4e00'.repeat(1.5 * 1024 * 1024) // 1.5 M chars, 4.5 MB of UTF-8
  const r2 = checkFromText({ report: multi, state: JSON.stringify(VALID_STATE) })
  t.ok(!r2.ok && /larger than/.test(r2.errors[0]!), 'counted in UTF-8 bytes')
})

t.test('parse errors name the field path and the expectation', async t => {
  const bad = structuredClone(VALID_REPORT) as any
  bad.cpus[1].outcome = 'bogus'
  bad.cpus[2].extra = 1
  bad.vmUuid = 'NOT-A-UUID'
  const r = checkFromText({ report: JSON.stringify(bad), state: JSON.stringify(VALID_STATE) })
  t.equal(r.ok, false)
  if (r.ok) return
  t.ok(r.errors.some(e => /^guest report: cpus\[1\]\.outcome: /.test(e)), r.errors.join('\n'))
  t.ok(r.errors.some(e => /^guest report: cpus\[2\]: unknown field "extra"/.test(e)), r.errors.join('\n'))
  t.ok(r.errors.some(e => /^guest report: vmUuid: a lower-case UUID/.test(e)), r.errors.join('\n'))
  const r2 = checkFromText({ report: '{"schema": ', state: JSON.stringify(VALID_STATE) })
  t.ok(!r2.ok && /guest report: not valid JSON/.test(r2.errors[0]!))
  const r3 = checkFromText({ report: JSON.stringify({ ...VALID_REPORT, ['__proto__']: 1 }).replace('"schema"', '"__proto__":{"x":1},"schema"'), state: JSON.stringify(VALID_STATE) })
  t.ok(!r3.ok && r3.errors.some(e => /unknown field "__proto__"/.test(e)), !r3.ok ? r3.errors.join('\n') : 'accepted')
})
