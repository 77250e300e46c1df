// Every faulty VMM profile of scenarios/vmms is caught by host check or by the section 3 conformance
// probe, and every correct profile passes both: a new profile cannot be added without detection.
import t from 'tap'
import { check } from './check.js'
import { conformance } from './conformance.js'
import { miniGuestReport, TEST_UUID } from './fixtures.js'
import { simulatedPlatform } from '../vmm/simulated.js'
import { correctProfiles, faultyProfiles, profileByName } from '../vmm/profiles.js'
import { vmmStateJson } from '../vmm/state.js'
import type { CpuModel } from '../../contract/cpu-model.js'
import type { HostCaps } from '../../contract/host-caps.js'

const MODEL: CpuModel = {
  id: 't', name: 'test', vendor: 'GenuineIntel', family: 6, model: 0x55, stepping: 4,
  cpuid7_0_edx: ((1 << 26) | (1 << 27) | (1 << 29) | (1 << 31)) >>> 0, cpuid7_2_edx: 0, archCapabilities: 0n, sources: {},
}
const SPR: HostCaps = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }
const HOSTS: HostCaps[] = [SPR, { ...SPR, bhiNo: true }, { ...SPR, bhiCtrl: false }]

function failures(profile: string): string[] {
  const out: string[] = []
  for (const hostCaps of HOSTS) {
    const p = profileByName(profile)!
    const sim = () => simulatedPlatform({ presented: { model: MODEL, hypervisor: true, archCapabilities: 0n }, hostCaps, profile: p, vcpus: 2, sysfs: {} })
    let s
    try { s = sim() } catch { continue } // a userspace force this host cannot apply
    // A guest whose CPUs report different CTRL values, and that writes and reads SPEC_CTRL.
    const report = miniGuestReport(s.platform, { ctrl: c => (c === 0 ? 3n : 1n), specCtrl: 1n })
    out.push(...check(report, vmmStateJson(s.vmm, TEST_UUID)).failures.map(f => `check: ${f}`))
    out.push(...conformance(sim().vmm).filter(i => !i.ok).map(i => `conformance: ${i.message}`))
  }
  return out
}

for (const p of faultyProfiles()) {
  t.test(`faulty profile ${p} is caught by host check or conformance`, async t => {
    const f = failures(p)
    t.ok(f.length > 0, `caught: ${f[0] ?? 'NOT CAUGHT'}`)
    // The message names a register bit (or the MSR whose rule was broken).
    t.ok(f.some(m => /BHI_DIS_S|RRSBA_DIS_S|BHB_CLEAR_SEQ_S_USED|RETPOLINE_S_USED|bit \d+|MSR_VIRTUAL_/.test(m)), f.join('\n'))
  })
}

for (const p of correctProfiles()) {
  t.test(`correct profile ${p} passes host check and conformance on every host`, async t => {
    t.same(failures(p), [])
  })
}
