// Conformance probe of a VMM's virtual-MSR emulation (contract/CONTRACT.md section 3), driven as a guest
// would drive it, through VcpuMsrHandler: the reference emulation, a faulty profile, or the KVM
// exit loop's handlers. Unlike `host check` (which pairs one guest run with the VMM state), this
// exercises the rules a normal guest run never touches: read-only ENUM MSRs, reserved CTRL bits,
// reset, per-vCPU scope. It writes CTRL and leaves every vCPU's CTRL at 0 when done.
// Pure: no I/O.
import { decode, hex } from '../../contract/bits.js'
import { ARCH_CAP_VIRTUAL_ENUM, MSR, VIRTUAL_MITIGATION_CTRL, VIRT_ENUM_MITIGATION_CTRL_SUPPORT, bit } from '../../contract/registers.js'
import type { VcpuMsrHandler } from '../vmm/msr-handler.js'
import type { CheckItem } from './check.js'

export interface ConformanceTarget {
  vcpus: readonly (VcpuMsrHandler & { reset?: () => void })[]
}

const CTRL_DEFINED = VIRTUAL_MITIGATION_CTRL.bits.reduce((m, b) => m | bit(b.bit), 0n)

/** Section 3 conformance of an advertising VMM. Returns one item per rule, failures naming bits. */
export function conformance(target: ConformanceTarget): CheckItem[] {
  const items: CheckItem[] = []
  const pass = (id: string, message: string) => items.push({ id, ok: true, message })
  const fail = (id: string, message: string) => items.push({ id, ok: false, message })
  const v0 = target.vcpus[0]
  if (!v0) return [{ id: 'vcpus', ok: false, message: 'no vCPU to probe' }]

  // Step 1-3 of the discovery chain (section 3).
  const ac = v0.rdmsr(MSR.ARCH_CAPABILITIES)
  if (!ac.ok || (ac.value & ARCH_CAP_VIRTUAL_ENUM) === 0n) {
    return [{ id: 'advertised', ok: true, message: 'virtual MSRs not advertised (ARCH_CAPABILITIES bit 63 clear or no ARCH_CAPABILITIES)', skip: 'nothing to probe' }]
  }
  const ve = v0.rdmsr(MSR.VIRTUAL_ENUMERATION)
  if (!ve.ok || (ve.value & VIRT_ENUM_MITIGATION_CTRL_SUPPORT) === 0n) {
    fail('virtual-enum', `ARCH_CAPABILITIES bit 63 is set but MSR_VIRTUAL_ENUMERATION ${ve.ok ? `reads ${hex(ve.value)} without bit 0` : `faults (${ve.reason})`} (section 3 step 2)`)
    return items
  }
  pass('virtual-enum', 'MSR_VIRTUAL_ENUMERATION bit 0 set')
  const en = v0.rdmsr(MSR.VIRTUAL_MITIGATION_ENUM)
  if (!en.ok) { fail('miti-enum', `MSR_VIRTUAL_MITIGATION_ENUM faults although enumerated (${en.reason})`); return items }
  const mitiEnum = en.value
  pass('miti-enum', `MSR_VIRTUAL_MITIGATION_ENUM reads ${hex(mitiEnum)} (${decode(VIRTUAL_MITIGATION_CTRL, mitiEnum).join(', ') || 'none'})`)

  // Read-only ENUM MSRs: a write faults and changes nothing (section 3).
  for (const [index, name, value] of [[MSR.VIRTUAL_ENUMERATION, 'MSR_VIRTUAL_ENUMERATION', ve.value], [MSR.VIRTUAL_MITIGATION_ENUM, 'MSR_VIRTUAL_MITIGATION_ENUM', mitiEnum]] as const) {
    const w = v0.wrmsr(index, value ^ 1n)
    const after = v0.rdmsr(index)
    const unchanged = after.ok && after.value === value
    if (w.ok || !unchanged) fail(`${name}-read-only`, `${name} is read-only: a write of ${hex(value ^ 1n)} ${w.ok ? 'succeeded' : 'faulted'} and the value ${unchanged ? 'stayed' : `became ${after.ok ? hex(after.value) : 'unreadable'}`} (section 3: faults and changes nothing)`)
    else pass(`${name}-read-only`, `${name} write faults and changes nothing`)
    // Put a writable-by-mistake ENUM back so the remaining probes see the original.
    if (!unchanged) v0.wrmsr(index, value)
  }

  // CTRL bits not in MITI_ENUM fault and change nothing (section 3).
  const start = v0.rdmsr(MSR.VIRTUAL_MITIGATION_CTRL)
  const before = start.ok ? start.value : 0n
  const reservedProbe = Array.from({ length: 64 }, (_, n) => bit(n)).filter(b => (b & mitiEnum) === 0n)
  const accepted: bigint[] = []
  for (const b of reservedProbe) {
    const w = v0.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, b)
    const after = v0.rdmsr(MSR.VIRTUAL_MITIGATION_CTRL)
    if (w.ok || !after.ok || after.value !== before) accepted.push(b)
    if (w.ok) v0.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, before)
  }
  const names = decode(VIRTUAL_MITIGATION_CTRL, accepted.reduce((m, b) => m | b, 0n))
  const shown = names.length > 6 ? `${names.slice(0, 4).join(', ')}, ... ${names[names.length - 1]} (${names.length} bits)` : names.join(', ')
  if (accepted.length) fail('ctrl-reserved', `MSR_VIRTUAL_MITIGATION_CTRL accepted ${shown}, not enumerated in MITI_ENUM ${hex(mitiEnum)} (section 3: faults and changes nothing)`)
  else pass('ctrl-reserved', `CTRL writes of the ${reservedProbe.length} non-enumerated bits fault and change nothing`)

  // Read-back of every enumerated subset (section 3).
  const enumerated = mitiEnum & CTRL_DEFINED
  const values = new Set<bigint>([0n, enumerated])
  for (let n = 0; n < 64; n++) if (enumerated & bit(n)) values.add(bit(n))
  const readBackBad: string[] = []
  for (const x of values) {
    const w = v0.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, x)
    const r = v0.rdmsr(MSR.VIRTUAL_MITIGATION_CTRL)
    if (!w.ok || !r.ok || r.value !== x) readBackBad.push(`wrote ${hex(x)}, ${!w.ok ? `write faulted (${w.reason})` : r.ok ? `read ${hex(r.value)}` : 'read faulted'}`)
  }
  if (readBackBad.length) fail('ctrl-read-back', `MSR_VIRTUAL_MITIGATION_CTRL does not read back the last value written: ${readBackBad.join('; ')} (section 3)`)
  else pass('ctrl-read-back', `CTRL reads back each of ${values.size} written values`)

  // Per vCPU (section 3; v3 06/10): a write on vCPU 0 is not seen on vCPU 1.
  const v1 = target.vcpus[1]
  if (v1 && enumerated !== 0n) {
    v1.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 0n)
    v0.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, enumerated)
    const r1 = v1.rdmsr(MSR.VIRTUAL_MITIGATION_CTRL)
    const r0 = v0.rdmsr(MSR.VIRTUAL_MITIGATION_CTRL)
    if (!r1.ok || r1.value !== 0n || !r0.ok || r0.value !== enumerated) fail('ctrl-per-vcpu', `MSR_VIRTUAL_MITIGATION_CTRL is not per vCPU: after vCPU 1 wrote 0x0 and vCPU 0 wrote ${hex(enumerated)}, vCPU 1 reads ${r1.ok ? hex(r1.value) : 'a fault'} and vCPU 0 reads ${r0.ok ? hex(r0.value) : 'a fault'} (section 3)`)
    else pass('ctrl-per-vcpu', 'CTRL is per vCPU')
  } else items.push({ id: 'ctrl-per-vcpu', ok: true, message: 'CTRL is per vCPU', skip: v1 ? 'MITI_ENUM enumerates nothing' : 'only one vCPU' })

  // Reset (section 3: 0 after vCPU reset).
  if (v0.reset && enumerated !== 0n) {
    v0.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, enumerated)
    v0.reset()
    const r = v0.rdmsr(MSR.VIRTUAL_MITIGATION_CTRL)
    if (!r.ok || r.value !== 0n) fail('ctrl-reset', `MSR_VIRTUAL_MITIGATION_CTRL after vCPU reset reads ${r.ok ? `${hex(r.value)} (${decode(VIRTUAL_MITIGATION_CTRL, r.value).join(', ')})` : 'a fault'}, expected 0x0 (section 3)`)
    else pass('ctrl-reset', 'CTRL is 0 after vCPU reset')
  } else items.push({ id: 'ctrl-reset', ok: true, message: 'CTRL is 0 after vCPU reset', skip: v0.reset ? 'MITI_ENUM enumerates nothing' : 'target cannot reset a vCPU' })

  for (const v of target.vcpus) if (enumerated !== 0n) v.wrmsr(MSR.VIRTUAL_MITIGATION_CTRL, 0n)
  return items
}
