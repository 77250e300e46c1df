// planCpuid (pure): the CPUID-origin and filter-exit points and the skip rule, from injected proof
// results for each kind of host (KVM-NOTES.md "Two hosts"): honours, pins CPUID.(7,0) to 0, pins it to 1.
import t from 'tap'
import type { PresentedCpu } from '../../../contract/cpu-model.js'
import type { CpuidRegs } from '../../../guest/platform.js'
import type { LeafOrigin, LeafProof } from '../kvm/cpuid-table.js'
import type { FilterExitProbe } from '../kvm/cpuid-proof.js'
import { planCpuid } from './cpuid-plan.js'

const Z: CpuidRegs = { eax: 0, ebx: 0, ecx: 0, edx: 0 }
const SPEC_CTRL = 1 << 26, ARCH_CAP = 1 << 29
/** A model with SPEC_CTRL and ARCH_CAPABILITIES (cascade-lake-like). */
const presented: PresentedCpu = {
  model: { id: 'm', name: 'm', vendor: 'GenuineIntel', family: 6, model: 0x55, stepping: 7, cpuid7_0_edx: (SPEC_CTRL | ARCH_CAP) >>> 0, cpuid7_2_edx: 0, archCapabilities: 0x2bn, sources: {} },
  hypervisor: true, archCapabilities: 0x2bn,
}
const want7: CpuidRegs = { eax: 2, ebx: 0, ecx: 0, edx: (SPEC_CTRL | ARCH_CAP) >>> 0 }

function host(kind: 'honours' | 'pins-0' | 'pins-1') {
  const seen7 = kind === 'honours' ? want7 : kind === 'pins-0' ? { ...Z, eax: 1, edx: 0x110 } : { ...Z, eax: 2, edx: 0xbc814410 }
  const differs = { eax: (seen7.eax ^ want7.eax) >>> 0, ebx: 0, ecx: 0, edx: (seen7.edx ^ want7.edx) >>> 0 }
  const origins: LeafOrigin[] = [
    { leaf: '0x0.0', fromVcpu: true, requested: Z, seen: Z, differs: Z },
    { leaf: '0x7.0', fromVcpu: differs.eax === 0 && differs.edx === 0, requested: want7, seen: seen7, differs },
  ]
  const pinned = kind !== 'honours'
  const proof: LeafProof[] = [
    { leaf: '0x0.0', fromTable: true, followed: { ...Z, ebx: 0xffffffff, ecx: 0xffffffff, edx: 0xffffffff }, hostBits: Z },
    { leaf: '0x7.0', fromTable: !pinned, followed: pinned ? Z : { ...Z, eax: 0xffffffff, edx: 0xffffffff }, hostBits: pinned ? { ...Z, eax: 0xffffffff, edx: 0xffffffff } : Z },
  ]
  return { origins, proof, rawEdx7: seen7.edx }
}
const exits = (exited: boolean, lacks = true): FilterExitProbe[] => [
  { access: 'RDMSR 0x10a', msr: 0x10a, bit: 29, bitName: 'ARCH_CAPABILITIES', vcpuLacksBit: lacks, exited },
  { access: 'WRMSR 0x48', msr: 0x48, bit: 26, bitName: 'SPEC_CTRL', vcpuLacksBit: lacks, exited: true },
  { access: 'RDMSR 0x48', msr: 0x48, bit: 26, bitName: 'SPEC_CTRL', vcpuLacksBit: lacks, exited: true },
]

t.test('honours: CPUID origin ok, nothing overlaid, nothing skipped', async t => {
  const p = planCpuid({ presented, mode: 'overlay', ...host('honours'), exits: exits(true, false) })
  t.equal(p.points[0]!.skip, undefined)
  t.same(p.overlay, {})
  t.equal(p.skip, undefined)
})

for (const kind of ['pins-0', 'pins-1'] as const) {
  t.test(`${kind}, overlay: CPUID origin SKIPs naming leaf, register and bits; pinned bits answered from the table; the run goes on`, async t => {
    const p = planCpuid({ presented, mode: 'overlay', ...host(kind), exits: exits(true, kind === 'pins-0') })
    t.match(p.points[0]!.skip ?? '', /^CPUID\.\(7,0\):EAX, EDX\[26\] SPEC_CTRL, EDX\[29\] ARCH_CAPABILITIES: this host's KVM pins it/)
    t.same(p.overlay, { '0x7.0': { eax: 0xffffffff, ebx: 0, ecx: 0, edx: 0xffffffff } }, 'every host-pinned presented bit of the leaf')
    t.same(p.pinned, { '0x7.0': { eax: 0xffffffff, ebx: 0, ecx: 0, edx: (SPEC_CTRL | ARCH_CAP) >>> 0 } }, 'contract bits only')
    t.equal(p.skip, undefined)
  })
}

t.test('pins-0, strict: the model\'s SPEC_CTRL and ARCH_CAPABILITIES cannot be shown: the whole run SKIPs naming them', async t => {
  const p = planCpuid({ presented, mode: 'strict', ...host('pins-0'), exits: exits(true) })
  t.match(p.skip ?? '', /--cpuid strict: this host cannot present m to a guest: .*EDX\[26\] SPEC_CTRL is 0 in the guest, the presented model says 1.*EDX\[29\] ARCH_CAPABILITIES is 0/)
  t.same(p.overlay, {}, 'strict overlays nothing')
})

t.test('pins-1, strict, a model that has both bits: pinned to the model\'s own values, so the run goes on; the origin point still SKIPs', async t => {
  const p = planCpuid({ presented, mode: 'strict', ...host('pins-1'), exits: exits(true, false) })
  t.equal(p.skip, undefined)
  t.match(p.points[0]!.skip ?? '', /this host's KVM pins it .*the pinned values equal the model's, so the guest sees the model \(--cpuid strict\)/)
  // A model without ARCH_CAPABILITIES on this host: host/vmm/live/run-live.test.ts ("live strict: skylake-sp").
})

t.test('no proof: compared only, not proven; a differing contract bit SKIPs the run', async t => {
  const ok = planCpuid({ presented, mode: 'strict', origins: host('honours').origins, exits: exits(true, false), rawEdx7: want7.edx })
  t.match(ok.points[0]!.skip ?? '', /^not proven \(--no-cpuid-proof\)/)
  t.equal(ok.skip, undefined)
  const bad = planCpuid({ presented, mode: 'strict', origins: host('pins-0').origins, exits: exits(true) })
  t.match(bad.skip ?? '', /this host cannot present m/)
})

t.test('filter exits: a needed access that does not exit without its CPUID bit SKIPs the run naming it; not needed, it does not', async t => {
  const broken = planCpuid({ presented, mode: 'overlay', ...host('pins-0'), exits: exits(false) })
  t.match(broken.skip ?? '', /^RDMSR 0x10a did not reach the VMM with the bit clear in the vCPU's CPUID/)
  t.equal(broken.points[1]!.skip, broken.skip)
  // The model has no ARCH_CAPABILITIES: nothing reads 0x10A, so a missing exit does not matter.
  const noArch = { ...presented, archCapabilities: null, model: { ...presented.model, cpuid7_0_edx: SPEC_CTRL } }
  const fine = planCpuid({ presented: noArch, mode: 'overlay', ...host('pins-0'), exits: exits(false) })
  t.equal(fine.skip, undefined)
  t.equal(fine.points[1]!.skip, undefined)
  // A host whose vCPUs always show the bit cannot measure it; the run's vCPU has it: not needed.
  const pins1 = planCpuid({ presented, mode: 'overlay', ...host('pins-1'), exits: exits(false, false) })
  t.equal(pins1.skip, undefined)
  t.match(JSON.stringify(pins1.points[1]!.diag), /not measurable here, this host's vCPUs show EDX\[29\]/)
})
