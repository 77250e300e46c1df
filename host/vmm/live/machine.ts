// The one live-KVM path (issue 10): `scenarios run --tier kvm`, `host vmm run` and the benchmarks
// all create their VMs here. Per run: prove where each contract CPUID bit comes from (complement
// VM), measure whether 0x10A / 0x48 still exit when the vCPU's CPUID lacks their bits, then boot
// the run's payload vCPUs with the reference emulation behind the MSR filter. Bits this host's KVM
// pins are answered from the VMM's table (overlay, the default) or make the run SKIP (strict);
// every MSR access still runs on real vCPUs. Needs koffi and /dev/kvm: import lazily.
import { CPUID7_EDX_SPEC_CTRL, hasBit32 } from '../../../contract/registers.js'
import type { ChainSetup, GuestMachine, MachineFactory } from '../../runner/chain.js'
import { createVmm } from '../emulation.js'
import { kvmPlatform } from '../kvm/platform.js'
import type { PayloadVcpu } from '../kvm/machine.js'
import { probeSpecCtrlHold, pushSpecCtrl } from '../kvm/spec-ctrl-push.js'
import { measureFilterExits, proveCpuid } from '../kvm/cpuid-proof.js'
import { simulatedHostCpuid, type KvmCpuidBehaviour } from '../kvm/host-cpuid.js'
import { planCpuid, type CpuidMode } from './cpuid-plan.js'

export interface LiveTierOptions {
  /** overlay (default) or strict (cpuid-plan.ts). */
  cpuid?: CpuidMode
  /** Prove CPUID origins with a complement VM (default true); false implies strict. */
  prove?: boolean
  /** Tests only: stand in for a host whose KVM handles KVM_SET_CPUID2 this way (host-cpuid.ts). */
  hostCpuid?: KvmCpuidBehaviour
}

/** The effective mode: without a proof nothing is known to be pinned, so nothing is overlaid. */
export const cpuidModeOf = (o: LiveTierOptions): CpuidMode => (o.prove === false ? 'strict' : o.cpuid ?? 'overlay')

export function liveMachine(o: LiveTierOptions = {}): MachineFactory {
  const mode = cpuidModeOf(o)
  const hostCpuid = o.hostCpuid ? simulatedHostCpuid(o.hostCpuid) : undefined
  return (s: ChainSetup): GuestMachine => {
    const t0 = performance.now()
    // The VMM first: a configuration the contract refuses throws VmmConfigError before any VM exists.
    const vmm = createVmm({
      archCapabilities: s.presented.archCapabilities, hostCaps: s.hostCaps, profile: s.profile, vcpus: s.vcpus,
      // 0x48 exists iff the presented CPUID.(7,0):EDX[26], on every tier (as host/vmm/simulated.ts).
      guestSpecCtrl: hasBit32(s.presented.model.cpuid7_0_edx, CPUID7_EDX_SPEC_CTRL),
    })
    const proof = o.prove === false ? undefined : proveCpuid(s.presented, hostCpuid ? { hostCpuid } : {})
    const exits = measureFilterExits(s.presented)
    const proofMs = performance.now() - t0
    // After every WRMSR the emulation accepted, the effective SPEC_CTRL of that vCPU goes into KVM
    // (KVM_SET_MSRS) and what KVM then holds is read back (KVM_GET_MSRS): issue 11 item 6.
    const hardware: (bigint | undefined)[] = new Array(s.vcpus).fill(undefined)
    const push = (v: PayloadVcpu) => { hardware[v.id] = pushSpecCtrl(v.fd, vmm.vcpus[v.id]!.state().specCtrlEffective).readBack }
    // Each real vCPU's filtered MSR exits go to its own emulated vCPU (per vCPU, contract/CONTRACT.md section 3).
    const pf = kvmPlatform({
      vcpus: s.vcpus, presented: s.presented, handler: i => vmm.vcpus[i]!, files: s.files, afterWrmsr: push,
      ...(hostCpuid ? { hostCpuid } : {}),
    })
    try {
      // Measured per run: this host may not hold a guest SPEC_CTRL at all (KVM-NOTES.md read 0 back).
      const hold = probeSpecCtrlHold(pf.vm.vcpus[0]!.fd)
      for (const v of pf.vm.vcpus) push(v)
      const raw = pf.vm.vcpus[0]!.rawCpuid(7, 0)
      const plan = planCpuid({
        presented: s.presented, mode, origins: pf.cpuidOrigins(0), exits,
        ...(proof ? { proof } : {}), ...(raw.fault ? {} : { rawEdx7: raw.out[3] }),
      })
      pf.setOverlay(plan.overlay)
      return {
        platform: pf, vmm, close: () => pf.close(), tierPoints: plan.points, cpuid: plan.fidelity,
        ...(plan.skip !== undefined ? { skip: plan.skip } : {}),
        ops: () => pf.vm.vcpus.reduce((n, v) => n + v.stats.ops, 0),
        createMs: performance.now() - t0, proofMs,
        specCtrlHardware: () => ({ held: hold.held, perVcpu: [...hardware] }),
      }
    } catch (e) {
      pf.close()
      throw e
    }
  }
}
