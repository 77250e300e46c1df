// What a VMM's MSR emulation offers to whatever delivers guest MSR accesses to it:
// the in-process simulated platform, or the KVM MSR-filter exit loop (host/vmm/kvm).
// One implementation (the reference emulation) serves both (DESIGN.md).

/** ok=false means: inject #GP into the guest (KVM: kvm_run.msr.error = 1). */
export type MsrAnswer = { ok: true; value: bigint } | { ok: false; reason: string }
export type MsrWriteAnswer = { ok: true } | { ok: false; reason: string }

export interface VcpuMsrHandler {
  /** MSR indices this handler wants routed to it (the KVM filter denies these so they exit). */
  readonly indices: readonly number[]
  rdmsr(index: number): MsrAnswer
  wrmsr(index: number, value: bigint): MsrWriteAnswer
}
