// Guest machines for the chain (host/runner/chain.ts): the simulated platform, and the live KVM
// payload platform. Both sit on the one reference emulation (host/vmm/emulation.ts).
import { simulatedPlatform } from '../vmm/simulated.js'
import type { ChainSetup, GuestMachine, MachineFactory } from './chain.js'
import type { LiveTierOptions } from '../vmm/live/machine.js'

export const simMachine: MachineFactory = (s: ChainSetup): GuestMachine => {
  const { platform, vmm } = simulatedPlatform({ presented: s.presented, hostCaps: s.hostCaps, profile: s.profile, vcpus: s.vcpus, sysfs: s.files })
  return { platform, vmm, close: () => {} }
}

/**
 * The kvm tier's factory (host/vmm/live/machine.ts, the one live-KVM path), or why it cannot run
 * here. Loaded lazily: it needs koffi (a native module) and /dev/kvm; a missing piece makes the
 * tier SKIP with the reason, never a fake pass.
 */
export async function kvmMachine(o: LiveTierOptions = {}): Promise<MachineFactory | { unavailable: string }> {
  let live: typeof import('../vmm/live/machine.js')
  let mach: typeof import('../vmm/kvm/machine.js')
  try {
    mach = await import('../vmm/kvm/machine.js')
    live = await import('../vmm/live/machine.js')
  } catch (err) {
    return { unavailable: `kvm tier not available in this build: ${(err as Error).message.split('\n')[0]}` }
  }
  const why = mach.liveTierUnavailable()
  if (why) return { unavailable: `kvm tier unavailable here: ${why}` }
  return live.liveMachine(o)
}
