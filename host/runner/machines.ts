// Guest machines for the chain (host/runner/chain.ts): the simulated platform, and the live KVM
// payload platform. Both sit on the one reference emulation (host/vmm/emulation.ts).
import { CPUID7_EDX_SPEC_CTRL, hasBit32 } from '../../contract/registers.js'
import { createVmm } from '../vmm/emulation.js'
import { simulatedPlatform } from '../vmm/simulated.js'
import type { ChainSetup, GuestMachine, MachineFactory } from './chain.js'

export const simMachine: MachineFactory = (s: ChainSetup): GuestMachine => {
  const { platform, vmm } = simulatedPlatform({ presented: s.presented, hostCaps: s.hostCaps, profile: s.profile, vcpus: s.vcpus, sysfs: s.files })
  return { platform, vmm, close: () => {} }
}

/**
 * The kvm tier's factory, or why it cannot run here. Loaded lazily: it needs koffi (a native
 * module) and /dev/kvm; a missing piece makes the tier SKIP with the reason, never a fake pass.
 */
export async function kvmMachine(): Promise<MachineFactory | { unavailable: string }> {
  let mod: typeof import('../vmm/kvm/platform.js')
  let mach: typeof import('../vmm/kvm/machine.js')
  try {
    mach = await import('../vmm/kvm/machine.js')
    mod = await import('../vmm/kvm/platform.js')
  } catch (err) {
    return { unavailable: `kvm tier not available in this build: ${(err as Error).message.split('\n')[0]}` }
  }
  const why = mach.liveTierUnavailable()
  if (why) return { unavailable: `kvm tier unavailable here: ${why}` }
  return (s: ChainSetup): GuestMachine => {
    const vmm = createVmm({
      archCapabilities: s.presented.archCapabilities, hostCaps: s.hostCaps, profile: s.profile, vcpus: s.vcpus,
      guestSpecCtrl: hasBit32(s.presented.model.cpuid7_0_edx, CPUID7_EDX_SPEC_CTRL),
    })
    // The reference emulation answers the filtered MSRs of each real vCPU (KVM MSR filter exits).
    const platform = mod.kvmPlatform({ vcpus: s.vcpus, presented: s.presented, handler: i => vmm.vcpus[i]!, files: s.files })
    return { platform, vmm, close: () => platform.close() }
  }
}
