// The guest Platform "kvm": cpuid/rdmsr/wrmsr execute as real instructions in the payload of
// that vCPU (host/vmm/kvm/payload.ts), so CPUID comes from KVM and routed MSRs from the VMM's
// handler through the MSR filter. A payload has no kernel: readText answers from the files the
// caller supplies (fake sysfs/proc), undefined otherwise.
import type { CpuidRegs, CpuidResult, MsrRead, MsrWrite, Platform } from '../../../guest/platform.js'
import { hex } from '../../../contract/bits.js'
import { buildVm, type BuildVmOptions, type KvmVm } from './machine.js'
import { cpuidOrigins, leafKey, overlayRegs, tableRegs, type LeafOrigin } from './cpuid-table.js'
import { executedLeaves } from './cpuid-proof.js'

export interface KvmPlatformOptions extends BuildVmOptions {
  /** Guest text files (path -> content) readText returns; the payload has no sysfs. */
  files?: Readonly<Record<string, string>>
  /**
   * Presented CPUID bits answered from the VMM's KVM_SET_CPUID2 table instead of the vCPU, per
   * leaf key: the bits this host's KVM pins (host/vmm/live/cpuid-plan.ts, overlay mode).
   */
  overlay?: Readonly<Record<string, CpuidRegs>>
}

export interface KvmPlatform extends Platform {
  readonly kind: 'kvm'
  readonly vm: KvmVm
  /**
   * Which contract CPUID leaves the vCPU showed as requested (cpuidOrigins: a comparison; a bit
   * may match by coincidence with the host's value; proveCpuid in cpuid-proof.ts rules that out).
   */
  cpuidOrigins(cpu?: number): LeafOrigin[]
  /** Replace the overlay (KvmPlatformOptions.overlay) once the run's CPUID plan is known. */
  setOverlay(overlay: Readonly<Record<string, CpuidRegs>>): void
  close(): void
}

const noCpu = (cpu: number) => ({ ok: false as const, fault: { errno: 'ENXIO', message: `no vCPU ${cpu}` } })

/** Boot the payload VM and wrap it as a Platform. Call close() when done. */
export function kvmPlatform(opts: KvmPlatformOptions): KvmPlatform {
  const vm = buildVm(opts)
  const files = { ...(opts.files ?? {}) }
  let overlay = opts.overlay ?? {}
  let closed = false
  const vcpu = (cpu: number) => (closed ? undefined : vm.vcpus[cpu])
  const gone = (cpu: number) => (closed ? { ok: false as const, fault: { errno: 'ENODEV', message: 'kvm platform closed' } } : noCpu(cpu))

  const p: KvmPlatform = {
    kind: 'kvm',
    vm,
    cpus: () => vm.vcpus.map(v => v.id),
    cpuid(cpu, leaf, subleaf): CpuidResult {
      const v = vcpu(cpu)
      if (!v) return gone(cpu)
      const r = v.cpuid(leaf, subleaf)
      // CPUID does not fault here; a fault would mean CPUID faulting, reported like the cpuid driver (EIO).
      if (r.fault) return { ok: false, fault: { errno: 'EIO', message: `CPUID ${hex(leaf)}.${subleaf} faulted in the KVM guest (vCPU ${cpu})` } }
      const [eax, ebx, ecx, edx] = r.out
      const mask = overlay[leafKey(leaf, subleaf)]
      if (!mask) return { ok: true, regs: { eax, ebx, ecx, edx } }
      return { ok: true, regs: overlayRegs({ eax, ebx, ecx, edx }, mask, tableRegs(vm.cpuidTable, leaf, subleaf)) }
    },
    rdmsr(cpu, index): MsrRead {
      const v = vcpu(cpu)
      if (!v) return gone(cpu)
      const r = v.rdmsr(index)
      // #GP -> EIO, as the msr driver reports a faulting rdmsr_safe_on_cpu (arch/x86/kernel/msr.c).
      if (r.fault) return { ok: false, fault: { errno: 'EIO', message: `RDMSR ${hex(index)} raised #GP in the KVM guest (vCPU ${cpu})` } }
      return { ok: true, value: (BigInt(r.out[1]) << 32n) | BigInt(r.out[0]) }
    },
    wrmsr(cpu, index, value): MsrWrite {
      const v = vcpu(cpu)
      if (!v) return gone(cpu)
      const r = v.wrmsr(index, value)
      if (r.fault) return { ok: false, fault: { errno: 'EIO', message: `WRMSR ${hex(index)} = ${hex(value)} raised #GP in the KVM guest (vCPU ${cpu})` } }
      return { ok: true }
    },
    readText: (path) => files[path],
    cpuidOrigins(cpu = 0) {
      if (closed) throw new Error('kvm platform closed')
      return cpuidOrigins(vm.cpuidTable, executedLeaves(vm, cpu))
    },
    setOverlay(o) { overlay = { ...o } },
    close() { if (!closed) { closed = true; vm.close() } },
  }
  return p
}
