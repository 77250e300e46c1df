// The reference VMM emulation: per-vCPU state machine for ARCH_CAPABILITIES (0x10A),
// SPEC_CTRL (0x48) and the virtual MSRs (0x50000000-2), exactly as contract/CONTRACT.md sections 3
// and 5 say. Pure (no I/O): the simulated platform and the KVM MSR-filter exit loop both
// drive it through VcpuMsrHandler, so a bug shows in both or neither (DESIGN.md).
import type { HostCaps } from '../../contract/host-caps.js'
import { decode, hex } from '../../contract/bits.js'
import {
  ARCH_CAP_VIRTUAL_ENUM, MSR, SPEC_CTRL, VIRTUAL_MITIGATION_CTRL, VIRT_ENUM_MITIGATION_CTRL_SUPPORT, bit,
} from '../../contract/registers.js'
import { effectiveSpecCtrl, forcedFor, validateUserspaceForce } from '../../contract/vmm-response.js'
import type { MsrAnswer, MsrWriteAnswer, VcpuMsrHandler } from './msr-handler.js'
import type { VmmFault, VmmProfile } from './profile.js'

/** What the VMM holds for one vCPU: the observed state the checker compares with the guest's report. */
export interface VcpuState {
  index: number
  /** MSR_VIRTUAL_MITIGATION_CTRL as last written by the guest (0 after reset). */
  mitiCtrl: bigint
  forcedMask: bigint
  forcedValue: bigint
  /** SPEC_CTRL as the guest last wrote it: what a guest read must return (section 5). */
  specCtrlShadow: bigint
  /** SPEC_CTRL the hardware runs with: (shadow & ~mask) | (value & mask) (section 5). */
  specCtrlEffective: bigint
  /** The value last returned to a guest RDMSR of SPEC_CTRL; absent until the guest reads it. */
  specCtrlGuestRead?: bigint
}

export interface VmmConfig {
  /** ARCH_CAPABILITIES of the presented CPU model; null = no such MSR for the guest. Bit 63 is set per profile.advertise. */
  archCapabilities: bigint | null
  hostCaps: HostCaps
  profile: VmmProfile
  vcpus: number
  /** Whether the guest's CPUID has SPEC_CTRL (CPUID.(7,0):EDX[26]); without it 0x48 faults. Default true. */
  guestSpecCtrl?: boolean
}

/** A VMM configuration that the contract refuses (e.g. userspace force value outside mask). */
export class VmmConfigError extends Error {
  override name = 'VmmConfigError'
}

export interface VcpuEmulation extends VcpuMsrHandler {
  readonly index: number
  state(): VcpuState
  /** vCPU reset (INIT/RESET): CTRL and SPEC_CTRL to 0 (section 3: "0 after vCPU reset"). */
  reset(): void
}

export interface VmmEmulation {
  readonly config: VmmConfig
  readonly vcpus: readonly VcpuEmulation[]
  /** ARCH_CAPABILITIES as the guest reads it, or null when it has none. */
  readonly guestArchCapabilities: bigint | null
  /** MSR_VIRTUAL_ENUMERATION as the guest reads it (0 when not advertised). */
  readonly virtualEnumeration: () => bigint
  readonly mitiEnum: () => bigint
  states(): VcpuState[]
  /** Answer for an MSR this VMM does not implement (profile.unknownMsr). */
  unknownRead(index: number): MsrAnswer
  unknownWrite(index: number, value: bigint): MsrWriteAnswer
}

/** MSRs the reference emulation answers (the KVM filter denies these so they exit to userspace). */
export const EMULATED_MSRS: readonly number[] = [
  MSR.ARCH_CAPABILITIES, MSR.SPEC_CTRL, MSR.VIRTUAL_ENUMERATION, MSR.VIRTUAL_MITIGATION_ENUM, MSR.VIRTUAL_MITIGATION_CTRL,
]

/** SPEC_CTRL bits a guest may write: those contract/CONTRACT.md section 2 defines (bit 9 and above 10 reserved; Xen msr-index.h@c447b73). */
const SPEC_CTRL_WRITABLE = SPEC_CTRL.bits.reduce((m, b) => m | bit(b.bit), 0n)

const U64 = (1n << 64n) - 1n

interface CtrlCell { mitiCtrl: bigint; forcedMask: bigint; forcedValue: bigint }

/** Why `profile` cannot run with `vcpus` vCPUs (per-vCPU knobs naming vCPUs that do not exist), or undefined. */
export function profileMisfit(profile: VmmProfile, vcpus: number): string | undefined {
  const init = profile.initialCtrl
  if (Array.isArray(init) && init.length !== vcpus) return `VMM ${profile.name}: ctrl.initial.perVcpu has ${init.length} entries for ${vcpus} vCPUs`
  const over = [...(profile.vcpuFaults?.keys() ?? [])].filter(i => i >= vcpus)
  if (over.length) return `VMM ${profile.name}: faults name vCPU ${over.join(', ')}, but the VM has ${vcpus} vCPUs (0..${vcpus - 1})`
  return undefined
}

const CTRL_DEFINED = VIRTUAL_MITIGATION_CTRL.bits.reduce((m, b) => m | bit(b.bit), 0n)
const NO_FAULTS: ReadonlySet<VmmFault> = new Set()

export function createVmm(config: VmmConfig): VmmEmulation {
  const { profile, hostCaps } = config
  if (!Number.isInteger(config.vcpus) || config.vcpus < 1 || config.vcpus > 8192) throw new VmmConfigError(`vcpus must be an integer in 1..8192, got ${config.vcpus}`)
  const misfit = profileMisfit(profile, config.vcpus)
  if (misfit) throw new VmmConfigError(misfit)
  /** Faults active on vCPU `i`: the whole VM's and its own (a per-vCPU fault, issue 13). */
  const faultsOf = (i: number): ReadonlySet<VmmFault> => {
    const own = profile.vcpuFaults?.get(i)
    return own ? new Set([...profile.faults, ...own]) : profile.faults.size ? profile.faults : NO_FAULTS
  }
  const vmFaults = profile.faults
  // Userspace force is validated once, before any vCPU exists (v3 01/10 ABI text).
  const v = validateUserspaceForce(profile.userspaceForce, hostCaps)
  if (!v.ok) throw new VmmConfigError(`profile ${profile.name}: ${v.error}`)
  if ((profile.mitiEnum & ~CTRL_DEFINED) !== 0n) {
    throw new VmmConfigError(`profile ${profile.name}: MITI_ENUM ${hex(profile.mitiEnum)} names bits the contract does not define (contract/CONTRACT.md section 2)`)
  }
  // A CTRL left over from an earlier boot was written under this MITI_ENUM: only its bits (section 3).
  const initialOf = (i: number): bigint => { const x = profile.initialCtrl ?? 0n; return typeof x === 'bigint' ? x : x[i] ?? 0n }
  const resetCtrl = profile.resetCtrl ?? 0n
  for (const [what, v] of [...Array.from({ length: config.vcpus }, (_, i) => [`initial CTRL of vCPU ${i}`, initialOf(i)] as const), ['reset CTRL', resetCtrl] as const]) {
    if (v !== 0n && (!profile.advertise || (v & ~profile.mitiEnum) !== 0n)) throw new VmmConfigError(`profile ${profile.name}: ${what} ${hex(v)} has bits outside MITI_ENUM ${hex(profile.advertise ? profile.mitiEnum : 0n)} (contract/CONTRACT.md section 3)`)
  }

  // ARCH_CAP bit 63 is the VMM's: set when it advertises the virtual MSRs (section 3 step 1).
  const guestArchCapabilities = config.archCapabilities === null ? null
    : profile.advertise ? config.archCapabilities | ARCH_CAP_VIRTUAL_ENUM : config.archCapabilities & ~ARCH_CAP_VIRTUAL_ENUM
  // VIRTUAL_ENUMERATION and MITI_ENUM are per vCPU like CTRL (section 3); a whole-VM
  // enum-writable fault writes every vCPU's copy, a per-vCPU one only its own.
  const ve0 = !profile.advertise ? 0n : profile.virtualEnumeration ?? VIRT_ENUM_MITIGATION_CTRL_SUPPORT
  const me0 = profile.advertise ? profile.mitiEnum : 0n
  const guestSpecCtrl = config.guestSpecCtrl ?? true

  /** Forced mask/value for a CTRL value, with the vCPU's faults applied (section 5). */
  function forceFor(ctrl: bigint, faults: ReadonlySet<VmmFault>): { mask: bigint; value: bigint } {
    const um = profile.userspaceForce
    if (faults.has('forces-nothing')) return { mask: um.mask, value: um.value }
    const caps = faults.has('forces-bhi-regardless-of-caps') ? { ...hostCaps, bhiCtrl: true, bhiNo: false } : hostCaps
    if (faults.has('guest-overrides-userspace')) {
      // Faulty: derived bits are OR-ed in without `derived &= ~userspace_mask`.
      const d = forcedFor(ctrl, caps, { mask: 0n, value: 0n })
      return { mask: um.mask | d.mask, value: um.value | d.value }
    }
    const f = forcedFor(ctrl, caps, um)
    return { mask: f.mask, value: f.value }
  }

  // The response to a leftover CTRL is in place before the guest runs (section 5: it follows CTRL).
  const fresh = (i: number): CtrlCell => {
    const f = forceFor(initialOf(i), faultsOf(i))
    return { mitiCtrl: initialOf(i), forcedMask: f.mask, forcedValue: f.value }
  }
  const shared = fresh(0)
  const vcpus: VcpuEmulationImpl[] = []

  class VcpuEmulationImpl implements VcpuEmulation {
    readonly indices = EMULATED_MSRS
    readonly faults: ReadonlySet<VmmFault>
    cell: CtrlCell
    shadow = 0n
    effective = 0n
    guestRead: bigint | undefined
    virtualEnumeration = ve0
    mitiEnum = me0
    constructor(readonly index: number) {
      this.faults = faultsOf(index)
      this.cell = vmFaults.has('ctrl-not-per-vcpu') ? shared : fresh(index)
      this.recomputeEffective()
    }

    recomputeEffective(): void {
      this.effective = effectiveSpecCtrl(this.shadow, this.cell.forcedMask, this.cell.forcedValue)
    }

    state(): VcpuState {
      return {
        index: this.index, mitiCtrl: this.cell.mitiCtrl, forcedMask: this.cell.forcedMask, forcedValue: this.cell.forcedValue,
        specCtrlShadow: this.shadow, specCtrlEffective: this.effective,
        ...(this.guestRead !== undefined ? { specCtrlGuestRead: this.guestRead } : {}),
      }
    }

    reset(): void {
      const keep = this.faults.has('ctrl-not-reset') ? this.cell.mitiCtrl : resetCtrl
      this.shadow = 0n
      this.guestRead = undefined
      this.writeCtrl(keep)
    }

    /** Store CTRL and recompute the response from the written value (section 5: follows each write). */
    writeCtrl(value: bigint): void {
      this.cell.mitiCtrl = value
      const f = forceFor(value, this.faults)
      this.cell.forcedMask = f.mask
      this.cell.forcedValue = f.value
      // With a shared cell (faulty), every vCPU's effective value moves with it.
      for (const v of vmFaults.has('ctrl-not-per-vcpu') ? vcpus : [this]) v.recomputeEffective()
    }

    rdmsr(index: number): MsrAnswer {
      switch (index) {
        case MSR.ARCH_CAPABILITIES:
          // Exists iff CPUID.(7,0):EDX[29], which the presented CPU shows iff it has a value (section 2).
          return guestArchCapabilities === null ? { ok: false, reason: 'IA32_ARCH_CAPABILITIES not presented to this guest' } : { ok: true, value: guestArchCapabilities }
        case MSR.SPEC_CTRL: {
          if (!guestSpecCtrl) return { ok: false, reason: 'IA32_SPEC_CTRL not presented (CPUID.(7,0):EDX[26] clear)' }
          // The guest reads its shadow, never the forced bits (section 5).
          const value = this.faults.has('leaks-forced-into-shadow') ? this.effective : this.shadow
          this.guestRead = value
          return { ok: true, value }
        }
        case MSR.VIRTUAL_ENUMERATION:
          if (!profile.advertise) return vmm.unknownRead(index)
          // Faults unless the vCPU's ARCH_CAPABILITIES has bit 63 (section 3; v3 07/10).
          if (guestArchCapabilities === null || (guestArchCapabilities & ARCH_CAP_VIRTUAL_ENUM) === 0n) return { ok: false, reason: 'MSR_VIRTUAL_ENUMERATION read without ARCH_CAPABILITIES bit 63' }
          return { ok: true, value: this.virtualEnumeration }
        case MSR.VIRTUAL_MITIGATION_ENUM:
        case MSR.VIRTUAL_MITIGATION_CTRL:
          if (!profile.advertise) return vmm.unknownRead(index)
          // Fault unless VIRTUAL_ENUMERATION bit 0 (section 3; v3 08/10).
          if ((this.virtualEnumeration & VIRT_ENUM_MITIGATION_CTRL_SUPPORT) === 0n) return { ok: false, reason: `MSR ${hex(index)} read without MSR_VIRTUAL_ENUMERATION bit 0` }
          return { ok: true, value: index === MSR.VIRTUAL_MITIGATION_ENUM ? this.mitiEnum : this.cell.mitiCtrl }
        default:
          return vmm.unknownRead(index)
      }
    }

    wrmsr(index: number, value: bigint): MsrWriteAnswer {
      if (value < 0n || value > U64) return { ok: false, reason: `value ${value} is not a 64-bit unsigned value` }
      switch (index) {
        case MSR.ARCH_CAPABILITIES:
          // Read-only (Intel SDM; KVM rejects guest writes to ARCH_CAPABILITIES).
          return { ok: false, reason: 'IA32_ARCH_CAPABILITIES is read-only' }
        case MSR.SPEC_CTRL: {
          if (!guestSpecCtrl) return { ok: false, reason: 'IA32_SPEC_CTRL not presented (CPUID.(7,0):EDX[26] clear)' }
          const reserved = value & ~SPEC_CTRL_WRITABLE
          if (reserved !== 0n) return { ok: false, reason: `IA32_SPEC_CTRL write sets reserved ${decode(SPEC_CTRL, reserved).join(', ')}` }
          this.shadow = value
          // Faulty: the guest's value goes straight to hardware, forced bits lost.
          if (this.faults.has('guest-can-clear-forced')) this.effective = value
          else this.recomputeEffective()
          return { ok: true }
        }
        case MSR.VIRTUAL_ENUMERATION:
        case MSR.VIRTUAL_MITIGATION_ENUM: {
          if (!profile.advertise) return vmm.unknownWrite(index, value)
          if (this.faults.has('enum-writable')) {
            for (const v of vmFaults.has('enum-writable') ? vcpus : [this]) {
              if (index === MSR.VIRTUAL_ENUMERATION) v.virtualEnumeration = value
              else v.mitiEnum = value
            }
            return { ok: true }
          }
          // Read-only for the guest: a write faults and changes nothing (section 3).
          return { ok: false, reason: `MSR ${hex(index)} is read-only` }
        }
        case MSR.VIRTUAL_MITIGATION_CTRL: {
          if (!profile.advertise) return vmm.unknownWrite(index, value)
          if ((this.virtualEnumeration & VIRT_ENUM_MITIGATION_CTRL_SUPPORT) === 0n) return { ok: false, reason: 'MSR_VIRTUAL_MITIGATION_CTRL written without MSR_VIRTUAL_ENUMERATION bit 0' }
          // Any bit not in MITI_ENUM faults and changes nothing (section 3; v3 08/10).
          const reserved = value & ~this.mitiEnum
          if (reserved !== 0n && !this.faults.has('reserved-ctrl-bits-accepted')) {
            return { ok: false, reason: `MSR_VIRTUAL_MITIGATION_CTRL write sets ${decode(VIRTUAL_MITIGATION_CTRL, reserved).join(', ')}, not enumerated in MITI_ENUM ${hex(this.mitiEnum)}` }
          }
          if (this.faults.has('ignores-ctrl-writes')) return { ok: true }
          this.writeCtrl(value)
          return { ok: true }
        }
        default:
          return vmm.unknownWrite(index, value)
      }
    }
  }

  const vmm: VmmEmulation = {
    config,
    vcpus,
    guestArchCapabilities,
    // The VM-level view (VMM state file): vCPU 0's copy, the one a whole-VM write changes too.
    virtualEnumeration: () => vcpus[0]?.virtualEnumeration ?? ve0,
    mitiEnum: () => vcpus[0]?.mitiEnum ?? me0,
    states: () => vcpus.map(v => v.state()),
    unknownRead: (index: number): MsrAnswer => profile.unknownMsr === 'fault'
      ? { ok: false, reason: `MSR ${hex(index)} not implemented by this VMM (profile ${profile.name})` }
      : { ok: true, value: 0n },
    unknownWrite: (index: number): MsrWriteAnswer => profile.unknownMsr === 'fault'
      ? { ok: false, reason: `MSR ${hex(index)} not implemented by this VMM (profile ${profile.name})` }
      : { ok: true },
  }
  for (let i = 0; i < config.vcpus; i++) vcpus.push(new VcpuEmulationImpl(i))
  return vmm
}
