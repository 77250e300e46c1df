// The one live-KVM path across every kind of host (issue 10). Machines of this kind differ: one KVM
// honours KVM_SET_CPUID2, one pins CPUID.(7,0) to values without SPEC_CTRL/ARCH_CAPABILITIES, one
// to values with both (KVM-NOTES.md "Two hosts"). Each behaviour is injected over the real vCPUs
// (host-cpuid.ts), so all three run on any machine, and the machine's own KVM runs too, its
// behaviour measured first (the complement-VM proof) and the expectation derived from it.
// Expectations: the catalog's hand-written ones (scenarios/cases, contract/CONTRACT.md sections 3-5).
import t from 'tap'
import fs from 'node:fs'
import type { TapPoint } from '../../../bin/lib/tap.js'
import { loadCpuCatalog } from '../../runner/cpus.js'
import { builtinCasesDir, builtinCpusDir } from '../../runner/catalog.js'
import { loadScenarios } from '../../runner/scenario-file.js'
import { makeUnits, runUnits, type RunContext } from '../../runner/run.js'
import { chainSetup } from '../../runner/chain.js'
import { PROFILES } from '../profiles.js'
import { resolveScenario } from '../../runner/resolve.js'
import { liveTierUnavailable } from '../kvm/machine.js'
import { measureFilterExits, proveCpuid } from '../kvm/cpuid-proof.js'
import { CONTRACT_BITS } from './cpuid-fidelity.js'
import { liveMachine, type LiveTierOptions } from './machine.js'

const skip = liveTierUnavailable()
const cpus = loadCpuCatalog(builtinCpusDir()!).models
const catalog = loadScenarios([builtinCasesDir()!]).scenarios
const units = makeUnits(catalog, ['kvm'])

async function runCatalog(o: LiveTierOptions) {
  const ctx: RunContext = { cpus, machines: { kvm: liveMachine(o) } }
  return runUnits(units, ctx, 1)
}

const originOf = (p: TapPoint) => p.sub?.find(x => x.name.startsWith('CPUID origin:'))
const exitsOf = (p: TapPoint) => p.sub?.find(x => x.name.startsWith('filtered MSRs exit to the VMM'))
/** Every failed point of a run, with its diagnostics: what a reader needs when this goes red. */
const failed = (p: TapPoint): string[] => (p.sub ?? [p]).filter(x => !x.ok && x.skip === undefined).map(x => `${x.name} ${JSON.stringify(x.diag ?? {})}`)

t.test('every catalog scenario file is loaded, each with a kvm run', async t => {
  const files = fs.readdirSync(builtinCasesDir()!).filter(f => f.endsWith('.yaml'))
  t.ok(files.length >= 30, `${files.length} scenario files`)
  t.equal(catalog.length, files.length)
  t.equal(units.length, files.length)
})

for (const hostCpuid of ['honours', 'pins-0', 'pins-1'] as const) {
  t.test(`overlay, host KVM injected as "${hostCpuid}": 0 VMM failures across the catalog, every MSR point on real vCPUs`, { skip }, async t => {
    const results = await runCatalog({ hostCpuid })
    for (const r of results) {
      t.equal(r.status, 'pass', `${r.unit.name}: ${failed(r.point).join('; ')}`)
      const origin = originOf(r.point)
      t.ok(origin, `${r.unit.name}: has a CPUID-origin point of its own`)
      if (hostCpuid === 'honours') t.equal(origin?.skip, undefined, `${r.unit.name}: CPUID origin ok (proven from the vCPU)`)
      else t.match(origin?.skip ?? '', /CPUID\.\(7,0\):EAX, EDX\[26\] SPEC_CTRL, EDX\[29\] ARCH_CAPABILITIES: this host's KVM pins it/, `${r.unit.name}: CPUID origin SKIPs naming leaf, register and bits`)
      t.ok(exitsOf(r.point), `${r.unit.name}: has a filter-exit point`)
      // Only the two tier points may SKIP; the chain's own points all ran.
      t.same((r.point.sub ?? []).filter(x => x.skip !== undefined && x !== origin && x !== exitsOf(r.point)).map(x => x.name), [], `${r.unit.name}: no chain point skipped`)
    }
  })
}

t.test('strict, host KVM injected as "pins-0": runs whose model needs SPEC_CTRL or ARCH_CAPABILITIES SKIP whole, naming the bits; the rest pass', { skip }, async t => {
  const results = await runCatalog({ hostCpuid: 'pins-0', cpuid: 'strict' })
  let skipped = 0
  for (const r of results) {
    if (r.status === 'skip') {
      skipped++
      t.match(r.point.skip ?? '', /--cpuid strict: this host cannot present [a-z0-9-]+ to a guest: CPUID\.\(7,0\)/, `${r.unit.name}: skip names the bits`)
    } else t.equal(r.status, 'pass', `${r.unit.name}: ${failed(r.point).join('; ')}`)
  }
  t.ok(skipped > 0 && skipped <= results.length, `${skipped} of ${results.length} runs skipped`)
})

// This machine's own KVM, default mode: measure the behaviour first (proof per presented model),
// then expect: every run passes with its MSR points on real vCPUs, and the CPUID-origin point SKIPs
// exactly when the proof found a contract bit host-pinned.
t.test("this machine's real KVM, overlay: every catalog run passes; only CPUID-origin points SKIP, where the proof found pinned bits", { skip }, async t => {
  const results = await runCatalog({})
  for (const r of results) {
    const s = r.unit.scenario
    const rs = resolveScenario(s, cpus, PROFILES)
    if (!rs.ok) throw new Error(rs.error)
    const setup = chainSetup(s, rs.value.host, rs.value.guest, rs.value.profile)
    // A host whose filter does not route 0x10A / 0x48 without their CPUID bits cannot run these points.
    if (measureFilterExits(setup.presented).some(e => e.vcpuLacksBit && !e.exited)) {
      t.ok(r.status === 'pass' || /did not reach the VMM/.test(r.point.skip ?? ''), `${r.unit.name}: passes, or skips naming the access that did not exit`)
      continue
    }
    t.equal(r.status, 'pass', `${r.unit.name}: ${failed(r.point).join('; ')}`)
    const proof = proveCpuid(setup.presented)
    const pinsContractBit = proof.some(p => (['eax', 'ebx', 'ecx', 'edx'] as const).some(reg => (p.hostBits[reg] & (CONTRACT_BITS[p.leaf]?.[reg] ?? 0)) !== 0))
    const origin = originOf(r.point)
    t.equal(origin?.skip !== undefined, pinsContractBit, `${r.unit.name}: CPUID origin ${pinsContractBit ? 'SKIPs' : 'ok'} (measured: ${pinsContractBit ? 'pinned' : 'honoured'})`)
    if (origin?.skip) t.match(origin.skip, /this host's KVM pins it/)
    t.equal(exitsOf(r.point)?.skip, undefined, `${r.unit.name}: filtered MSRs exit here`)
  }
  t.comment(`origin points: ${results.map(r => originOf(r.point)?.skip).filter(Boolean)[0] ?? 'all ok'}`)
})
