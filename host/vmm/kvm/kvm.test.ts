// Live tier: real vCPUs on /dev/kvm running the payload. Skips (never fakes a pass) without /dev/kvm.
import t from 'tap'
import type { PresentedCpu, Vendor } from '../../../contract/cpu-model.js'
import { vendorOf } from '../../../contract/cpu-model.js'
import type { VcpuMsrHandler } from '../msr-handler.js'
import { kvmPlatform, type KvmPlatform } from './platform.js'
import { buildVm, liveTierUnavailable } from './machine.js'
import { proveCpuid } from './cpuid-proof.js'

const skip = liveTierUnavailable()
const MITI_CTRL = 0x50000002, ARCH_CAP = 0x10a, SPEC_CTRL = 0x48

const presented = (vendor: Vendor, cpuid7_2_edx: number): PresentedCpu => ({
  model: {
    id: 'test', name: 'test', vendor, family: 6, model: 0x8f, stepping: 8,
    cpuid7_0_edx: 0x84000000, cpuid7_2_edx, archCapabilities: 0x1n, sources: {},
  },
  hypervisor: true,
  archCapabilities: 0x8000000000000001n,
})

/**
 * A tiny per-vCPU handler (not the reference emulation): ARCH_CAPABILITIES reads `archCap`,
 * MITI_CTRL stores what is written (only bits 0-1 accepted, else #GP), SPEC_CTRL writes always #GP.
 */
function tinyHandler(vcpu: number, archCap: bigint, log: string[]): VcpuMsrHandler {
  let miti = 0n
  return {
    indices: [SPEC_CTRL, ARCH_CAP, 0x50000000, 0x50000001, MITI_CTRL],
    rdmsr(index) {
      log.push(`${vcpu}:rd:${index.toString(16)}`)
      if (index === ARCH_CAP) return { ok: true, value: archCap }
      if (index === MITI_CTRL) return { ok: true, value: miti }
      return { ok: false, reason: 'not emulated' }
    },
    wrmsr(index, value) {
      log.push(`${vcpu}:wr:${index.toString(16)}=${value.toString(16)}`)
      if (index === MITI_CTRL && (value & ~3n) === 0n) { miti = value; return { ok: true } }
      return { ok: false, reason: 'reserved bits or read-only' }
    },
  }
}

const withPlatform = (p: PresentedCpu, vcpus: number, log: string[], fn: (pf: KvmPlatform) => void) => {
  const pf = kvmPlatform({ vcpus, presented: p, handler: v => tinyHandler(v, 0x8000000000000001n + BigInt(v) * 2n, log) })
  try { fn(pf) } finally { pf.close() }
}

t.test('guest CPUID comes from KVM_SET_CPUID2: vendor and CPUID.(7,2):EDX[4]', { skip }, async t => {
  // Two VMs with opposite values: what the payload executes follows the table each time, so it
  // cannot be the host's own CPUID. HygonGenuine is native on neither Intel nor AMD test hosts.
  for (const [vendor, edx72] of [['GenuineIntel', 0x17], ['HygonGenuine', 0x0]] as const) {
    withPlatform(presented(vendor, edx72), 1, [], pf => {
      const l0 = pf.cpuid(0, 0, 0)
      t.ok(l0.ok, 'CPUID leaf 0 ran')
      if (l0.ok) t.equal(vendorOf(l0.regs), vendor, `vendor ${vendor}`)
      const l72 = pf.cpuid(0, 7, 2)
      t.ok(l72.ok, 'CPUID leaf 7.2 ran')
      if (l72.ok) {
        t.equal(l72.regs.edx, edx72, `CPUID.(7,2):EDX = 0x${edx72.toString(16)}`)
        t.equal((l72.regs.edx >>> 4) & 1, (edx72 >>> 4) & 1, 'BHI_CTRL (EDX[4])')
      }
      const hv = pf.cpuid(0, 0x40000000, 0)
      t.ok(hv.ok && hv.regs.ebx === 0x4b4d564b, 'hypervisor signature KVMK...')
    })
  }
})

t.test('cpuidOrigins reports per leaf whether the vCPU showed the presented bits', { skip }, async t => {
  withPlatform(presented('GenuineIntel', 0x17), 1, [], pf => {
    const origins = pf.cpuidOrigins()
    const by = Object.fromEntries(origins.map(o => [o.leaf, o]))
    t.same(Object.keys(by).sort(), ['0x0.0', '0x1.0', '0x40000000.0', '0x7.0', '0x7.2'])
    t.equal(by['0x0.0']!.fromVcpu, true, 'vendor from the vCPU')
    t.equal(by['0x7.2']!.fromVcpu, true, '7.2 from the vCPU')
    for (const o of origins) {
      const direct = pf.cpuid(0, Number(o.leaf.split('.')[0]), Number(o.leaf.split('.')[1]))
      t.ok(direct.ok, `${o.leaf} ran`)
      if (direct.ok) t.same(o.seen, direct.regs, `${o.leaf}: seen is what the payload executes`)
      const zero = o.differs.eax === 0 && o.differs.ebx === 0 && o.differs.ecx === 0 && o.differs.edx === 0
      t.equal(o.fromVcpu, zero, `${o.leaf}: fromVcpu iff no presented bit differs`)
    }
    t.comment(`honoured here: ${origins.filter(o => o.fromVcpu).map(o => o.leaf).join(' ')}; replaced: ${origins.filter(o => !o.fromVcpu).map(o => o.leaf).join(' ') || 'none'}`)
  })
})

t.test('proveCpuid: vendor and 7.2 follow KVM_SET_CPUID2 both ways; every presented bit is accounted for', { skip }, async t => {
  const proof = proveCpuid(presented('GenuineIntel', 0x17))
  const by = Object.fromEntries(proof.map(p => [p.leaf, p]))
  t.same(Object.keys(by).sort(), ['0x0.0', '0x1.0', '0x40000000.0', '0x7.0', '0x7.2'])
  t.equal(by['0x0.0']!.fromTable, true, 'vendor string from the table')
  t.equal(by['0x7.2']!.fromTable, true, 'CPUID.(7,2):EDX from the table')
  for (const p of proof) {
    for (const r of ['eax', 'ebx', 'ecx', 'edx'] as const) {
      t.equal((p.followed[r] & p.hostBits[r]) >>> 0, 0, `${p.leaf} ${r}: a bit is followed or host-pinned, not both`)
    }
    t.equal(p.fromTable, Object.values(p.hostBits).every(v => v === 0), `${p.leaf}: fromTable iff no host-pinned bit`)
  }
  t.comment(`from the table here: ${proof.filter(p => p.fromTable).map(p => p.leaf).join(' ')}; host-pinned: ${proof.filter(p => !p.fromTable).map(p => `${p.leaf} ${JSON.stringify(p.hostBits)}`).join('; ') || 'none'}`)
})

t.test('handler answers: RDMSR value reaches the payload, ok=false on WRMSR is a #GP (EIO)', { skip }, async t => {
  const log: string[] = []
  withPlatform(presented('GenuineIntel', 0x17), 1, log, pf => {
    t.same(pf.rdmsr(0, ARCH_CAP), { ok: true, value: 0x8000000000000001n }, 'RDMSR 0x10A = handler value (bit 63 round trips)')
    const bad = pf.wrmsr(0, MITI_CTRL, 0x4n)
    t.equal(bad.ok, false, 'WRMSR of a reserved bit faults')
    if (!bad.ok) t.equal(bad.fault.errno, 'EIO')
    t.same(pf.rdmsr(0, MITI_CTRL), { ok: true, value: 0n }, 'rejected write left MITI_CTRL unchanged')
    t.same(pf.wrmsr(0, MITI_CTRL, 0x3n), { ok: true })
    t.same(pf.rdmsr(0, MITI_CTRL), { ok: true, value: 0x3n })
    const rdFault = pf.rdmsr(0, 0x50000000)
    t.equal(rdFault.ok, false, 'RDMSR the handler refuses faults')
    if (!rdFault.ok) t.equal(rdFault.fault.errno, 'EIO')
    const roWrite = pf.wrmsr(0, ARCH_CAP, 0n)
    t.equal(roWrite.ok, false, 'WRMSR to read-only ARCH_CAPABILITIES faults')
    // the filter routed every access to the handler: nothing reached KVM's own MSR code
    t.same(log, ['0:rd:10a', '0:wr:50000002=4', '0:rd:50000002', '0:wr:50000002=3', '0:rd:50000002', '0:rd:50000000', '0:wr:10a=0'])
    // payload keeps working after faults
    t.same(pf.rdmsr(0, ARCH_CAP), { ok: true, value: 0x8000000000000001n }, 'payload runs on after #GP')
  })
})

t.test('an MSR neither routed nor known to KVM is a #GP (UNKNOWN exit answered error=1)', { skip }, async t => {
  withPlatform(presented('GenuineIntel', 0x17), 1, [], pf => {
    const r = pf.rdmsr(0, 0x4b564d99)
    t.equal(r.ok, false)
    if (!r.ok) t.equal(r.fault.errno, 'EIO')
  })
})

t.test('SPEC_CTRL (0x48) accesses exit to the handler through the filter, not to KVM', { skip }, async t => {
  const log: string[] = []
  withPlatform(presented('GenuineIntel', 0x17), 1, log, pf => {
    const rd = pf.rdmsr(0, SPEC_CTRL)
    t.equal(rd.ok, false, 'tiny handler refuses RDMSR 0x48 -> #GP')
    const wr = pf.wrmsr(0, SPEC_CTRL, 0x400n)
    t.equal(wr.ok, false, 'tiny handler refuses WRMSR 0x48 -> #GP')
    t.same(log, ['0:rd:48', '0:wr:48=400'], 'both accesses reached the handler')
  })
})

t.test('two vCPUs have independent state', { skip }, async t => {
  const log: string[] = []
  withPlatform(presented('GenuineIntel', 0x17), 2, log, pf => {
    t.same(pf.cpus(), [0, 1])
    t.same(pf.wrmsr(0, MITI_CTRL, 0x1n), { ok: true })
    t.same(pf.wrmsr(1, MITI_CTRL, 0x2n), { ok: true })
    t.same(pf.rdmsr(0, MITI_CTRL), { ok: true, value: 0x1n }, 'vCPU 0 keeps its value')
    t.same(pf.rdmsr(1, MITI_CTRL), { ok: true, value: 0x2n }, 'vCPU 1 keeps its value')
    t.same(pf.rdmsr(1, ARCH_CAP), { ok: true, value: 0x8000000000000003n }, 'vCPU 1 answered by its own handler')
    t.same(log.filter(l => l.startsWith('1:')), ['1:wr:50000002=2', '1:rd:50000002', '1:rd:10a'], 'vCPU 1 exits reached handler 1 only')
    const none = pf.rdmsr(2, MITI_CTRL)
    t.equal(none.ok, false)
    if (!none.ok) t.equal(none.fault.errno, 'ENXIO', 'no vCPU 2')
  })
})

t.test('readText answers from the supplied files; closed platform refuses', { skip }, async t => {
  const pf = kvmPlatform({ vcpus: 1, presented: presented('GenuineIntel', 0), handler: v => tinyHandler(v, 1n, []),
    files: { '/sys/devices/system/cpu/vulnerabilities/spectre_v2': 'Mitigation: Enhanced / Automatic IBRS\n' } })
  t.equal(pf.kind, 'kvm')
  t.equal(pf.readText('/sys/devices/system/cpu/vulnerabilities/spectre_v2'), 'Mitigation: Enhanced / Automatic IBRS\n')
  t.equal(pf.readText('/proc/cpuinfo'), undefined)
  pf.close()
  pf.close()
  const r = pf.rdmsr(0, ARCH_CAP)
  t.equal(r.ok, false)
  if (!r.ok) t.equal(r.fault.errno, 'ENODEV')
})

t.test('a closed VM refuses ops instead of touching unmapped memory', { skip }, async t => {
  const vm = buildVm({ vcpus: 1, presented: presented('GenuineIntel', 0), handler: v => tinyHandler(v, 1n, []) })
  t.equal(vm.vcpus[0]!.rdmsr(ARCH_CAP).fault, false)
  vm.close()
  t.throws(() => vm.vcpus[0]!.rdmsr(ARCH_CAP), /VM closed/)
})

t.test('buildVm rejects a vCPU count the layout cannot hold', { skip }, async t => {
  t.throws(() => buildVm({ vcpus: 0, presented: presented('GenuineIntel', 0), handler: v => tinyHandler(v, 1n, []) }), RangeError)
  t.throws(() => buildVm({ vcpus: 10_000, presented: presented('GenuineIntel', 0), handler: v => tinyHandler(v, 1n, []) }), RangeError)
})
