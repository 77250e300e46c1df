// Test support (no data catalog: bundled children use it too): a simulated guest (host/vmm/simulated.ts over the reference VMM emulation) for
// each VMM profile, with a Skylake-like presented CPU in a migration pool whose real hosts are
// Sapphire Rapids (contract/CONTRACT.md section 1: the guest picks the short BHB loop and retpoline, the
// VMM can deploy BHI_DIS_S and RRSBA_DIS_S). Values are hand-written so these tests do not
// depend on the catalog loader. Never imported by the agent.
import type { PresentedCpu, CpuModel } from '../contract/cpu-model.js'
import type { HostCaps } from '../contract/host-caps.js'
import { simulatedPlatform } from '../host/vmm/simulated.js'
import type { VmmProfile } from '../host/vmm/profile.js'

/** Skylake-SP-like: SPEC_CTRL, STIBP, ARCH_CAPABILITIES, SSBD; no leaf 7.2 controls (contract/CONTRACT.md section 2 bit numbers). */
export const SKYLAKE_LIKE: CpuModel = {
  id: 'skylake-like', name: 'Skylake-SP-like test model', vendor: 'GenuineIntel', family: 6, model: 0x55, stepping: 4,
  cpuid7_0_edx: ((1 << 26) | (1 << 27) | (1 << 29) | (1 << 31)) >>> 0,
  cpuid7_2_edx: 0,
  archCapabilities: 0n,
  sources: { all: 'hand-written test model' },
}

/** A Sapphire Rapids host: BHI_CTRL, RRSBA_CTRL and RRSBA (scenarios/cpus/sapphire-rapids.yaml). */
export const SPR_HOST: HostCaps = { bhiCtrl: true, bhiNo: false, rrsbaCtrl: true, rrsba: true, stibp: true, ssbd: true }

/** Linux 6.9+ on a CPU without BHI_CTRL, spectre_v2=retpoline: retpoline and the short SW loop. */
export const RETPOLINE_SW_LOOP = 'Mitigation: Retpolines; IBPB: conditional; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: SW loop, KVM: SW loop'

export const GUEST_UUID = '5c4a3b2e-1d0f-4e9a-8b7c-6d5e4f3a2b1c'
export const BOOT_ID = '0f0e0d0c-0b0a-4909-8807-060504030201'

/**
 * The reference VMM, hand-written from contract/CONTRACT.md sections 3 and 5 (scenarios/vmms/reference.yaml
 * says the same): for bundled children (signal test, bench) that must not load the data catalog.
 */
export const REFERENCE_PROFILE: VmmProfile = {
  name: 'reference', description: 'hand-written reference (testing/sim-guest.ts)', advertise: true, mitiEnum: 3n,
  userspaceForce: { mask: 0n, value: 0n }, specCtrl: 'intercepted', unknownMsr: 'fault', faults: new Set(),
}

export type SimOptions = { vcpus?: number; spectreV2?: string; model?: CpuModel; hostCaps?: HostCaps }

export function simGuestWith(p: VmmProfile, o: SimOptions = {}) {
  const model = o.model ?? SKYLAKE_LIKE
  const presented: PresentedCpu = { model, hypervisor: true, hypervisorVendor: 'KVMKVMKVM\0\0\0', archCapabilities: model.archCapabilities }
  return simulatedPlatform({
    presented, hostCaps: o.hostCaps ?? SPR_HOST, profile: p, vcpus: o.vcpus ?? 4,
    sysfs: {
      '/sys/devices/system/cpu/vulnerabilities/spectre_v2': (o.spectreV2 ?? RETPOLINE_SW_LOOP) + '\n',
      '/proc/sys/kernel/osrelease': '6.12.0-virtmiti-test\n',
      '/proc/cmdline': 'console=ttyS0 spectre_v2=retpoline\n',
      '/sys/class/dmi/id/product_uuid': GUEST_UUID.toUpperCase() + '\n',
      '/proc/sys/kernel/random/boot_id': BOOT_ID + '\n',
    },
  })
}
