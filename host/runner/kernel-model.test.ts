// The kernel model (host/runner/kernel-model.ts) and the agent's prediction (contract/decide.ts)
// must agree (issue 15 item 3): both are written from bugs.c / kernel/cpu.c (6.12.117 before the
// attack vectors, Linux 7.2.13 with them), independently. Every CPU the model covers x BHI and
// spectre_v2 policy x mitigations= x CONFIG_KVM, on both generations.
import t from 'tap'
import { decide } from '../../contract/decide.js'
import type { Facts } from '../../contract/facts.js'
import { parseSpectreV2 } from '../../contract/sysfs-spectre-v2.js'
import { kernelState, type BhiPolicy, type KernelCpu, type V2Policy } from './kernel-model.js'

const INTEL = { ebx: 0x756e6547, edx: 0x49656e69, ecx: 0x6c65746e }
const B = (n: number) => 1n << BigInt(n)

// Sapphire Rapids signature (family 6 model 0x8f: not on the RETBLEED list), the model's scope.
function factsOf(c: KernelCpu, release: string, cmdline: string, sysfs: string, kvm: boolean): Facts {
  return {
    platform: 'test',
    kernel: { release, cmdline, vulnerabilities: { spectre_v2: sysfs }, config: { CONFIG_KVM: kvm ? 'm' : 'n' } },
    cpus: [{
      cpu: 0,
      cpuid: {
        '0x0.0': { regs: { eax: 0x20, ...INTEL } },
        '0x1.0': { regs: { eax: 0x806f8, ebx: 0, ecx: c.hypervisor ? 0x80000000 : 0, edx: 0 } },
        '0x7.0': { regs: { eax: 2, ebx: 0, ecx: 0, edx: ((1 << 26) | (1 << 29)) >>> 0 } },
        '0x7.2': { regs: { eax: 0, ebx: 0, ecx: 0, edx: (c.bhiCtrl ? 1 << 4 : 0) | (c.rrsbaCtrl ? 1 << 2 : 0) } },
      },
      msr: { '0x10a': { value: (c.ibrsAll ? B(1) : 0n) | (c.rrsba ? B(19) : 0n) | (c.bhiNo ? B(20) : 0n) } },
    }],
  }
}

const bools = [false, true]
const MITIGATIONS = ['', 'off', 'auto', 'auto,no_user_kernel', 'auto,no_guest_host', 'auto,no_user_kernel,no_guest_host']

t.test('the model and the prediction agree on both generations', async t => {
  const bad: string[] = []
  let n = 0
  for (const vectors of bools) for (const kvm of bools) for (const mitigations of MITIGATIONS)
    for (const bhi of ['auto', 'on', 'off', 'vmexit'] as BhiPolicy[]) for (const v2 of ['auto', 'retpoline', 'off'] as V2Policy[])
      for (const ibrsAll of bools) for (const rrsba of bools) for (const rrsbaCtrl of bools) for (const bhiCtrl of bools) for (const hypervisor of bools) {
        const c: KernelCpu = { ibrsAll, rrsba, rrsbaCtrl, bhiCtrl, hypervisor }
        const k = kernelState(c, bhi, v2, { vectors, mitigations, kvm })
        const release = vectors ? '7.2.13+deb14-amd64' : '6.12.117+deb13-amd64'
        const d = decide(factsOf(c, release, k.cmdline, k.spectreV2, kvm))
        const line = parseSpectreV2(k.spectreV2)
        n++
        if (d.expected.spectreV2 !== line.mode || d.expected.bhi !== line.bhi) {
          bad.push(`${release} ${k.cmdline} kvm=${kvm} ${JSON.stringify(c)}: model ${line.mode}/${line.bhi}, agent ${d.expected.spectreV2}/${d.expected.bhi}`)
        }
      }
  t.same(bad.slice(0, 10), [], `${bad.length} of ${n} disagree`)
})

t.test('the 7.x model reproduces the boots measured on Debian 7.2.13 (issue 15)', async t => {
  const tcg: KernelCpu = { ibrsAll: false, rrsba: false, rrsbaCtrl: false, bhiCtrl: false, hypervisor: true }
  const seg = (bhi: BhiPolicy, v2: V2Policy, mitigations: string) => kernelState(tcg, bhi, v2, { vectors: true, mitigations }).spectreV2.replace(/.*BHI: /, '')
  t.equal(seg('auto', 'retpoline', 'off'), 'Retpoline', 'mitigations=off spectre_v2=retpoline')
  t.equal(seg('on', 'auto', 'off'), 'SW loop, KVM: SW loop', 'mitigations=off spectre_bhi=on')
  t.equal(seg('vmexit', 'auto', 'off'), 'Vulnerable, KVM: SW loop', 'mitigations=off spectre_bhi=vmexit')
  const both = kernelState(tcg, 'auto', 'auto', { vectors: true, mitigations: 'auto,no_user_kernel,no_guest_host' }).spectreV2
  t.match(both, /^Vulnerable; .*BHI: Vulnerable$/, 'mitigations=auto,no_user_kernel,no_guest_host')
  t.match(kernelState(tcg, 'on', 'auto', { vectors: false, mitigations: 'off' }).spectreV2, /^Vulnerable; .*BHI: Vulnerable$/, '6.x: mitigations=off spectre_bhi=on')
})
