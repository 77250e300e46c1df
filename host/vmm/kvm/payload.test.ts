// The payload's bytes, the CPUID table builder and the filter ranges (pure; no /dev/kvm needed).
import t from 'tap'
import { assemble, CODE_BASE, MB, payloadProgram, SIGNAL_PORT, writeImage } from './payload.js'
import { cpuidFollowed, cpuidOrigins, guestCpuidTable, invertPresented } from './cpuid-table.js'
import { filterRanges } from './machine.js'
import { KVM_CPUID_FLAG_SIGNIFICANT_INDEX, KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE } from './uapi.js'
import type { PresentedCpu } from '../../../contract/cpu-model.js'
import type { CpuidEntry } from './sys.js'

const find = (hay: Uint8Array, needle: number[]): number[] => {
  const at: number[] = []
  for (let i = 0; i + needle.length <= hay.length; i++) if (needle.every((b, j) => hay[i + j] === b)) at.push(i)
  return at
}

t.test('payload starts by signalling on SIGNAL_PORT', async t => {
  const { code, labels } = payloadProgram()
  t.equal(labels.start, 0)
  t.same([...code.slice(0, 2)], [0xe6, SIGNAL_PORT], 'out imm8, al')
})

t.test('#GP handler skips 2 bytes and sets FAULT in the mailbox', async t => {
  const { code, labels } = payloadProgram()
  const h = labels.gp_handler!
  t.same([...code.slice(h, h + 14)], [
    0x55, 0x89, 0xe5, // push bp; mov bp, sp
    0x83, 0x46, 0x02, 0x02, // add word [bp+2], 2
    0xc6, 0x06, MB.FAULT, 0x00, 0x01, // mov byte [FAULT], 1
    0x5d, 0xcf, // pop bp; iret
  ])
})

t.test('each faulting instruction is 2 bytes and appears once', async t => {
  const { code } = payloadProgram()
  t.equal(find(code, [0x0f, 0xa2]).length, 1, 'cpuid')
  t.equal(find(code, [0x0f, 0x32]).length, 1, 'rdmsr')
  t.equal(find(code, [0x0f, 0x30]).length, 1, 'wrmsr')
})

t.test('dispatch jumps land on their labels', async t => {
  const { code, labels } = payloadProgram()
  // cmp al, n (3C n) followed by je rel8 (74 cb)
  for (const [op, label] of [[1, 'do_cpuid'], [2, 'do_rdmsr'], [3, 'do_wrmsr']] as const) {
    const [at] = find(code, [0x3c, op, 0x74])
    t.ok(at !== undefined, `cmp al, ${op}; je`)
    const rel = (code[at! + 3]! << 24) >> 24
    t.equal(at! + 4 + rel, labels[label], `je ${label}`)
  }
})

t.test('IVT: vector 13 -> #GP handler, others -> unexpected (hlt)', async t => {
  const mem = new Uint8Array(0x2000)
  const { entry } = writeImage(mem)
  const { labels } = payloadProgram()
  const dv = new DataView(mem.buffer)
  t.equal(entry, CODE_BASE)
  t.equal(dv.getUint16(13 * 4, true), CODE_BASE + labels.gp_handler!)
  t.equal(dv.getUint16(13 * 4 + 2, true), 0, 'segment 0')
  t.equal(dv.getUint16(6 * 4, true), CODE_BASE + labels.unexpected!, '#UD')
  t.equal(mem[CODE_BASE + labels.unexpected!], 0xf4, 'hlt')
})

t.test('assembler rejects bad jumps', async t => {
  t.throws(() => assemble([{ jmp8: 0xeb, to: 'nowhere' }]), /undefined label/)
  t.throws(() => assemble([{ label: 'a' }, { bytes: new Array(200).fill(0x90) }, { jmp8: 0xeb, to: 'a' }]), /rel8/)
})

const presented: PresentedCpu = {
  model: {
    id: 'test', name: 'test', vendor: 'GenuineIntel', family: 6, model: 0x8f, stepping: 8,
    cpuid7_0_edx: 0x84000000, cpuid7_2_edx: 0x17, archCapabilities: 0x1n, sources: {},
  },
  hypervisor: true,
  archCapabilities: 0x1n,
}
const supported: CpuidEntry[] = [
  { function: 0, index: 0, flags: 0, eax: 0x10, ebx: 0x68747541, ecx: 0x444d4163, edx: 0x69746e65 }, // AuthenticAMD
  { function: 1, index: 0, flags: 0, eax: 0xa00f11, ebx: 0, ecx: 0x7ed8320b, edx: 0x178bfbff },
  { function: 7, index: 0, flags: KVM_CPUID_FLAG_SIGNIFICANT_INDEX, eax: 1, ebx: 0x219c91a9, ecx: 0x40069c, edx: 0x10 },
  { function: 0x40000000, index: 0, flags: 0, eax: 0x40000001, ebx: 0, ecx: 0, edx: 0 },
]

t.test('guestCpuidTable writes the presented bits over KVM\'s table', async t => {
  const tab = guestCpuidTable(supported, presented)
  const get = (f: number, i: number) => tab.find(e => e.function === f && e.index === i)!
  t.equal(get(0, 0).eax, 0x10, 'leaf 0 EAX (max basic leaf) stays KVM\'s')
  t.same([get(0, 0).ebx, get(0, 0).edx, get(0, 0).ecx], [0x756e6547, 0x49656e69, 0x6c65746e], 'GenuineIntel')
  t.equal(get(1, 0).eax, 0x806f8, 'signature family 6 model 0x8f stepping 8')
  t.equal(get(1, 0).ecx, (0x7ed8320b | 0x80000000) >>> 0, 'hypervisor bit set, other ECX bits kept')
  t.equal(get(1, 0).edx, 0x178bfbff, 'leaf 1 EDX kept')
  t.equal(get(7, 0).edx, 0xa4000000, 'model EDX plus ARCH_CAPABILITIES (bit 29) since archCapabilities is set')
  t.equal(get(7, 0).ebx, 0x219c91a9, 'leaf 7.0 EBX kept')
  t.equal(get(7, 0).eax, 2, 'max subleaf 2')
  const l72 = get(7, 2)
  t.equal(l72.edx, 0x17)
  t.equal(l72.flags, KVM_CPUID_FLAG_SIGNIFICANT_INDEX, '7.2 added with SIGNIFICANT_INDEX')
  t.same([get(0x40000000, 0).ebx, get(0x40000000, 0).ecx, get(0x40000000, 0).edx], [0x4b4d564b, 0x564b4d56, 0x4d], 'KVMKVMKVM')
  t.equal(supported[0]!.ebx, 0x68747541, 'input table not modified')
  const noHv = guestCpuidTable(supported, { ...presented, hypervisor: false })
  t.equal(noHv.find(e => e.function === 1)!.ecx >>> 31, 0, 'hypervisor bit cleared')
})

t.test('cpuidOrigins says which presented bits the vCPU did not show', async t => {
  const tab = guestCpuidTable(supported, presented)
  const seen = Object.fromEntries(tab.map(e => [`0x${e.function.toString(16)}.${e.index}`, { eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx }]))
  t.ok(cpuidOrigins(tab, seen).every(o => o.fromVcpu), 'identical -> all from the vCPU')
  // Host replaced leaf 7.0 EDX and leaf 1 EDX (not a presented bit) with native values.
  seen['0x7.0'] = { ...seen['0x7.0']!, edx: 0x10 }
  seen['0x1.0'] = { ...seen['0x1.0']!, edx: 0x1 }
  const o = Object.fromEntries(cpuidOrigins(tab, seen).map(x => [x.leaf, x]))
  t.equal(o['0x7.0']!.fromVcpu, false)
  t.equal(o['0x7.0']!.differs.edx, (0xa4000000 ^ 0x10) >>> 0)
  t.equal(o['0x1.0']!.fromVcpu, true, 'leaf 1 EDX is not a presented bit')
  t.equal(o['0x7.2']!.fromVcpu, true)
})

t.test('filterRanges merges contiguous MSRs into deny ranges', async t => {
  const r = filterRanges([0x50000002, 0x10a, 0x48, 0x50000000, 0x50000001, 0x48])
  t.same(r.map(x => [x.base, x.allow.length]), [[0x48, 1], [0x10a, 1], [0x50000000, 3]])
  t.ok(r.every(x => x.flags === (KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE) && x.allow.every(a => a === false)))
})

t.test('cpuidFollowed: only bits that follow the table both ways count as from the table', async t => {
  const tab = guestCpuidTable(supported, presented)
  const ctl = invertPresented(tab)
  const key = (e: CpuidEntry) => `0x${e.function.toString(16)}.${e.index}`
  const regs = (e: CpuidEntry) => ({ eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx })
  t.equal(ctl.find(e => e.function === 0)!.ebx, (~0x756e6547) >>> 0, 'vendor EBX inverted in the control')
  t.equal(ctl.find(e => e.function === 1)!.edx, 0x178bfbff, 'leaf 1 EDX (not presented) untouched')
  const seen = Object.fromEntries(tab.map(e => [key(e), regs(e)]))
  const ctlSeen = Object.fromEntries(ctl.map(e => [key(e), regs(e)]))
  t.ok(cpuidFollowed(tab, seen, ctl, ctlSeen).every(p => p.fromTable), 'both followed -> from the table')
  // Host pins leaf 7.0 EDX to 0xa4000010: in the first VM the asked bits match by coincidence,
  // the control shows they do not follow.
  seen['0x7.0'] = { ...seen['0x7.0']!, edx: 0xa4000010 }
  ctlSeen['0x7.0'] = { ...ctlSeen['0x7.0']!, edx: 0xa4000010 }
  const p = Object.fromEntries(cpuidFollowed(tab, seen, ctl, ctlSeen).map(x => [x.leaf, x]))
  t.equal(p['0x7.0']!.fromTable, false)
  t.equal(p['0x7.0']!.hostBits.edx, 0xffffffff, 'every EDX bit pinned by the host')
  t.equal(p['0x7.0']!.followed.eax, 0xffffffff, 'EAX followed')
  t.equal(p['0x7.2']!.fromTable, true)
})
