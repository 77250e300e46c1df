// Which presented CPUID bits a guest on this host really gets from the VMM (KVM_SET_CPUID2), proven
// with a control VM that asks for the complement (KVM-NOTES.md: on some hosts leaf 1 ECX/EDX and
// leaf 7.0/7.1 are replaced by native values; a live tier must detect this, never assume it).
import type { CpuidRegs } from '../../../guest/platform.js'
import type { PresentedCpu } from '../../../contract/cpu-model.js'
import { buildVm, type KvmVm } from './machine.js'
import { cpuidFollowed, invertPresented, leafKey, parseKey, PRESENTED_BITS, type LeafProof } from './cpuid-table.js'

/** CPUID of the contract leaves as vCPU `cpu` of `vm` executes them. */
export function executedLeaves(vm: KvmVm, cpu = 0): Record<string, CpuidRegs> {
  const v = vm.vcpus[cpu]
  if (!v) throw new RangeError(`no vCPU ${cpu}`)
  const seen: Record<string, CpuidRegs> = {}
  for (const key of Object.keys(PRESENTED_BITS)) {
    const { leaf, subleaf } = parseKey(key)
    const r = v.cpuid(leaf, subleaf)
    if (!r.fault) seen[leafKey(leaf, subleaf)] = { eax: r.out[0], ebx: r.out[1], ecx: r.out[2], edx: r.out[3] }
  }
  return seen
}

const noMsrs = () => ({ indices: [], rdmsr: () => ({ ok: false as const, reason: 'cpuid proof' }), wrmsr: () => ({ ok: false as const, reason: 'cpuid proof' }) })

/** Boot the presented table and its complement (1 vCPU each, a few ms) and compare what each vCPU executes. */
export function proveCpuid(presented: PresentedCpu): LeafProof[] {
  const a = buildVm({ vcpus: 1, presented, handler: noMsrs })
  try {
    const b = buildVm({ vcpus: 1, presented, handler: noMsrs, cpuidTransform: invertPresented })
    try {
      return cpuidFollowed(a.cpuidTable, executedLeaves(a), b.cpuidTable, executedLeaves(b))
    } finally { b.close() }
  } finally { a.close() }
}
