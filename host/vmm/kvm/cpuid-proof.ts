// Which presented CPUID bits a guest on this host really gets from the VMM (KVM_SET_CPUID2), proven
// with a control VM that asks for the complement (KVM-NOTES.md: on some hosts leaf 1 ECX/EDX and
// leaf 7.0/7.1 are replaced by native values; a live tier must detect this, never assume it), and
// whether the MSR filter still routes 0x10A / 0x48 to the VMM when the vCPU's own CPUID lacks them.
import type { CpuidRegs } from '../../../guest/platform.js'
import type { PresentedCpu } from '../../../contract/cpu-model.js'
import { CPUID7_EDX_ARCH_CAPABILITIES, CPUID7_EDX_SPEC_CTRL, MSR, hasBit32 } from '../../../contract/registers.js'
import type { VcpuMsrHandler } from '../msr-handler.js'
import { buildVm, type BuildVmOptions, type KvmVm } from './machine.js'
import { cpuidFollowed, invertPresented, leafKey, parseKey, PRESENTED_BITS, type LeafProof } from './cpuid-table.js'
import type { CpuidEntry } from './sys.js'

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

const noMsrs = (): VcpuMsrHandler => ({ indices: [], rdmsr: () => ({ ok: false, reason: 'cpuid proof' }), wrmsr: () => ({ ok: false, reason: 'cpuid proof' }) })

type HostCpuid = Pick<BuildVmOptions, 'hostCpuid'>

/** Boot the presented table and its complement (1 vCPU each, a few ms) and compare what each vCPU executes. */
export function proveCpuid(presented: PresentedCpu, o: HostCpuid = {}): LeafProof[] {
  const a = buildVm({ vcpus: 1, presented, handler: noMsrs, ...o })
  try {
    const b = buildVm({ vcpus: 1, presented, handler: noMsrs, cpuidTransform: invertPresented, ...o })
    try {
      return cpuidFollowed(a.cpuidTable, executedLeaves(a), b.cpuidTable, executedLeaves(b))
    } finally { b.close() }
  } finally { a.close() }
}

/** One filtered MSR access made with the MSR's CPUID bit cleared in the table. */
export interface FilterExitProbe {
  access: 'RDMSR 0x10a' | 'RDMSR 0x48' | 'WRMSR 0x48'
  msr: number
  /** The CPUID.(7,0):EDX bit that enumerates the MSR (contract/CONTRACT.md section 2). */
  bit: number
  bitName: 'ARCH_CAPABILITIES' | 'SPEC_CTRL'
  /** The vCPU's own CPUID (as this host's KVM really answers it) had the bit clear during the access. */
  vcpuLacksBit: boolean
  /** The access exited to the VMM (KVM_EXIT_X86_RDMSR/WRMSR, reason FILTER). */
  exited: boolean
}

const clearEnumBits = (table: CpuidEntry[]): CpuidEntry[] => table.map(e => (e.function === 7 && e.index === 0
  ? { ...e, edx: (e.edx & ~((1 << CPUID7_EDX_ARCH_CAPABILITIES) | (1 << CPUID7_EDX_SPEC_CTRL))) >>> 0 }
  : { ...e }))

/**
 * Measure whether the filter routes 0x10A and 0x48 to userspace although the vCPU's CPUID lacks
 * their bits (KVM checks the filter before the guest's CPUID: arch/x86/kvm/x86.c
 * kvm_msr_allowed in kvm_get_msr_with_filter / kvm_set_msr_with_filter; measured, not assumed).
 * The tier relies on it where a host pins those bits to 0. One 1-vCPU VM, a few ms. The access
 * is made on the real vCPU; the host's true CPUID is read with rawCpuid (no injected lens).
 */
export function measureFilterExits(presented: PresentedCpu): FilterExitProbe[] {
  const seen: number[] = []
  const handler = (): VcpuMsrHandler => ({
    indices: [MSR.ARCH_CAPABILITIES, MSR.SPEC_CTRL],
    rdmsr(index) { seen.push(index); return { ok: true, value: 0n } },
    wrmsr(index) { seen.push(index); return { ok: true } },
  })
  const vm = buildVm({ vcpus: 1, presented, handler, cpuidTransform: clearEnumBits })
  try {
    const v = vm.vcpus[0]!
    const l7 = v.rawCpuid(7, 0)
    const edx = l7.fault ? 0 : l7.out[3]
    const probe = (access: FilterExitProbe['access'], msr: number, bit: number, bitName: FilterExitProbe['bitName'], op: () => void): FilterExitProbe => {
      const before = v.stats.rdmsrExits + v.stats.wrmsrExits
      seen.length = 0
      op()
      const exited = v.stats.rdmsrExits + v.stats.wrmsrExits > before && seen.includes(msr)
      return { access, msr, bit, bitName, vcpuLacksBit: !l7.fault && !hasBit32(edx, bit), exited }
    }
    return [
      probe('RDMSR 0x10a', MSR.ARCH_CAPABILITIES, CPUID7_EDX_ARCH_CAPABILITIES, 'ARCH_CAPABILITIES', () => v.rdmsr(MSR.ARCH_CAPABILITIES)),
      probe('WRMSR 0x48', MSR.SPEC_CTRL, CPUID7_EDX_SPEC_CTRL, 'SPEC_CTRL', () => v.wrmsr(MSR.SPEC_CTRL, 0n)),
      probe('RDMSR 0x48', MSR.SPEC_CTRL, CPUID7_EDX_SPEC_CTRL, 'SPEC_CTRL', () => v.rdmsr(MSR.SPEC_CTRL)),
    ]
  } finally { vm.close() }
}
