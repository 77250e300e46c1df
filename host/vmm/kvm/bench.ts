// Micro benchmark of the live KVM tier; prints one JSON object.
// Run: npx tsc -p . --outDir build && node build/host/vmm/kvm/bench.js [seconds per op kind, default 2]
// Without a usable /dev/kvm it prints {"skipped": reason} and exits 4 (the tier's skip code).
import { hex } from '../../../contract/bits.js'
import type { PresentedCpu } from '../../../contract/cpu-model.js'
import type { VcpuMsrHandler } from '../msr-handler.js'
import { buildVm, liveTierUnavailable, type PayloadVcpu } from './machine.js'
import { OP } from './payload.js'
import { proveCpuid } from './cpuid-proof.js'

const presented: PresentedCpu = {
  model: {
    id: 'bench', name: 'bench', vendor: 'GenuineIntel', family: 6, model: 0x8f, stepping: 8,
    cpuid7_0_edx: 0xa4000000, cpuid7_2_edx: 0x17, archCapabilities: 0x1n, sources: {},
  },
  hypervisor: true,
  archCapabilities: 0x8000000000000001n,
}
/** Constant answers: the benchmark measures the exit path, not an emulation. */
const handler = (): VcpuMsrHandler => {
  let miti = 0n
  return {
    indices: [0x48, 0x10a, 0x50000000, 0x50000001, 0x50000002],
    rdmsr: i => (i === 0x10a ? { ok: true, value: presented.archCapabilities! } : i === 0x50000002 ? { ok: true, value: miti } : { ok: false, reason: 'bench' }),
    wrmsr: (i, v) => (i === 0x50000002 ? ((miti = v), { ok: true }) : { ok: false, reason: 'bench' }),
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d

/** Round trips per second of `fn` over about `seconds`. */
function rate(seconds: number, fn: () => void): { perSecond: number; n: number } {
  for (let i = 0; i < 20; i++) fn() // warm up
  let n = 0
  const t0 = performance.now(), end = t0 + seconds * 1000
  let now = t0
  while (now < end) { for (let i = 0; i < 50; i++) fn(); n += 50; now = performance.now() }
  const ms = now - t0
  return { perSecond: Math.round(n / (ms / 1000)), n }
}

function main(): number {
  const seconds = Number(process.argv[2] ?? 2)
  const why = liveTierUnavailable()
  if (why) { console.log(JSON.stringify({ skipped: why })); return 4 }

  // VM create (open /dev/kvm .. every vCPU at its first signal) and first op, 1 and 4 vCPUs.
  const create: Record<string, { createMs: number; firstOpMs: number }> = {}
  for (const vcpus of [1, 4]) {
    const c: number[] = [], f: number[] = []
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now()
      const vm = buildVm({ vcpus, presented, handler })
      const t1 = performance.now()
      const r = vm.vcpus[0]!.rdmsr(0x10a)
      const t2 = performance.now()
      if (r.fault) throw new Error('first RDMSR 0x10A faulted')
      vm.close()
      c.push(t1 - t0); f.push(t2 - t0)
    }
    create[`${vcpus}vcpu`] = { createMs: round(median(c), 2), firstOpMs: round(median(f), 2) }
  }

  const vm = buildVm({ vcpus: 1, presented, handler })
  const v: PayloadVcpu = vm.vcpus[0]!
  // Interleaved rounds, median per kind: the host is shared and its speed drifts.
  const kinds: Record<string, () => void> = {
    // an op with no instruction: the payload loop plus one port-I/O exit
    emptyOp: () => { v.op(OP.NONE, 0) },
    cpuid: () => { v.cpuid(7, 2) },
    rdmsrFiltered: () => { v.rdmsr(0x10a) },
    wrmsrFiltered: () => { v.wrmsr(0x50000002, 1n) },
    rdmsrInjectedGp: () => { v.rdmsr(0x50000000) },
  }
  const rounds = 5
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(kinds).map(k => [k, []]))
  for (let r = 0; r < rounds; r++) for (const [k, fn] of Object.entries(kinds)) samples[k]!.push(rate(seconds / rounds, fn).perSecond)
  const results = Object.fromEntries(Object.entries(samples).map(([k, xs]) => {
    const m = median(xs)
    return [k, { perSecond: m, usPerOp: round(1e6 / m), min: Math.min(...xs), max: Math.max(...xs) }]
  }))
  const stats = { ...v.stats }
  vm.close()

  // Which presented CPUID bits the guest really gets from KVM_SET_CPUID2 on this host.
  const proofStart = performance.now()
  const proof = proveCpuid(presented).map(p => ({ leaf: p.leaf, fromTable: p.fromTable, ...(p.fromTable ? {} : { hostPinned: mapRegs(p.hostBits) }) }))
  const proofMs = round(performance.now() - proofStart, 2)

  console.log(JSON.stringify({
    node: process.version,
    seconds,
    vmCreate: create,
    roundTrips: results,
    cpuidProof: { ms: proofMs, leaves: proof },
    exitCounts: stats,
  }, null, 2))
  return 0
}
const mapRegs = (r: { eax: number; ebx: number; ecx: number; edx: number }) =>
  ({ eax: hex(r.eax), ebx: hex(r.ebx), ecx: hex(r.ecx), edx: hex(r.edx) })

process.exitCode = main()
