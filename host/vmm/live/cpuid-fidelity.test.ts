// cpuidFidelity (pure): which contract CPUID bits block a live run, and the origin statement.
import t from 'tap'
import { cpuidFidelity } from './cpuid-fidelity.js'
import type { LeafOrigin, LeafProof } from '../kvm/cpuid-table.js'

const z = { eax: 0, ebx: 0, ecx: 0, edx: 0 }
const origin = (leaf: string, requested: Partial<typeof z>, seen: Partial<typeof z>, differs: Partial<typeof z>): LeafOrigin => {
  const d = { ...z, ...differs }
  return { leaf, requested: { ...z, ...requested }, seen: { ...z, ...seen }, differs: d, fromVcpu: Object.values(d).every(v => v === 0) }
}

t.test('a host-imposed ARCH_CAPABILITIES bit (CPUID.(7,0):EDX[29]) blocks the run; other 7.0 bits do not', async t => {
  const arch = cpuidFidelity([origin('0x0.0', {}, {}, {}), origin('0x7.0', { edx: 0x0c000000 }, { edx: 0x2c000010 }, { edx: 0x20000010 })])
  t.same(arch.blocking, ['CPUID.(7,0):EDX[29] ARCH_CAPABILITIES is 1 in the guest, the presented model says 0'])
  t.same(arch.asPresented, ['0x0.0'])
  t.same(arch.notAsPresented, [{ leaf: '0x7.0', differs: { edx: '0x20000010' } }])
  t.match(arch.statement, /compared, not proven/)
  const fsrmOnly = cpuidFidelity([origin('0x7.0', { edx: 0x2c000000 }, { edx: 0x2c000010 }, { edx: 0x10 })])
  t.same(fsrmOnly.blocking, [], 'EDX[4] is not a contract bit')
})

t.test('SPEC_CTRL, BHI_CTRL and the hypervisor bit are contract bits', async t => {
  const f = cpuidFidelity([
    origin('0x7.0', { edx: 0x04000000 }, { edx: 0 }, { edx: 0x04000000 }),
    origin('0x7.2', { edx: 0x10 }, { edx: 0 }, { edx: 0x10 }),
    origin('0x1.0', { ecx: 0x80000000 }, { ecx: 0 }, { ecx: 0x80000000 }),
  ])
  t.same(f.blocking, [
    'CPUID.(7,0):EDX[26] SPEC_CTRL is 0 in the guest, the presented model says 1',
    'CPUID.(7,2):EDX[4] BHI_CTRL is 0 in the guest, the presented model says 1',
    'CPUID.(1,0):ECX[31] HYPERVISOR is 0 in the guest, the presented model says 1',
  ])
})

t.test('with a proof, host-pinned leaves are stated as the host\'s', async t => {
  const proof: LeafProof[] = [
    { leaf: '0x0.0', fromTable: true, followed: { ...z, ebx: 0xffffffff }, hostBits: z },
    { leaf: '0x7.2', fromTable: true, followed: { ...z, edx: 0xffffffff }, hostBits: z },
    { leaf: '0x7.0', fromTable: false, followed: z, hostBits: { ...z, eax: 0xffffffff, edx: 0xffffffff } },
  ]
  const f = cpuidFidelity([origin('0x0.0', {}, {}, {})], proof)
  t.equal(f.statement, 'CPUID.(0,0) CPUID.(7,2) come from the vCPU as the VMM set them (KVM_SET_CPUID2, proven with a complement VM); CPUID.(7,0) EAX/EDX is this host\'s, not the presented model\'s (eax 0xffffffff, edx 0xffffffff)')
  t.same(f.hostPinned, [{ leaf: '0x7.0', bits: { eax: '0xffffffff', edx: '0xffffffff' } }])
})
