// Whether a live run really shows the guest the CPU model it was asked to present, and a plain
// statement of where each contract CPUID leaf came from. KVM-NOTES.md: on some hosts KVM keeps
// only part of KVM_SET_CPUID2 (here CPUID.(7,0) EAX/EDX are the host's), so the live tier must
// detect it per run, say so in its output, and refuse (skip) a model whose contract bits the
// guest would see differently: a pass for a CPU the guest never saw would be a fake pass.
// Pure: inputs are what the vCPU executed (cpuidOrigins) and, optionally, the complement proof.
import { hex } from '../../../contract/bits.js'
import type { CpuidRegs } from '../../../guest/platform.js'
import {
  CPUID1_ECX_HYPERVISOR, CPUID7_2_EDX_BHI_CTRL, CPUID7_2_EDX_RRSBA_CTRL, CPUID7_EDX_ARCH_CAPABILITIES, CPUID7_EDX_SPEC_CTRL,
} from '../../../contract/registers.js'
import type { LeafOrigin, LeafProof } from '../kvm/cpuid-table.js'

type Reg = keyof CpuidRegs
const REGS: readonly Reg[] = ['eax', 'ebx', 'ecx', 'edx']
const ALL = 0xffffffff
const b = (n: number) => (1 << n) >>> 0

/**
 * The CPUID bits the guest agent reads (guest/probe.ts, contract/decide.ts viewCpu): vendor,
 * signature, hypervisor bit, leaf 7 max subleaf, SPEC_CTRL and ARCH_CAPABILITIES (contract/CONTRACT.md
 * section 2 CPUID table; section 3 step 1), RRSBA_CTRL and BHI_CTRL, the hypervisor signature.
 * STIBP / SSBD are not here: nothing on the guest side reads them (host caps come from the host model).
 */
export const CONTRACT_BITS: Readonly<Record<string, Partial<Record<Reg, number>>>> = {
  '0x0.0': { ebx: ALL, ecx: ALL, edx: ALL },
  '0x1.0': { eax: ALL, ecx: b(CPUID1_ECX_HYPERVISOR) },
  '0x7.0': { eax: ALL, edx: (b(CPUID7_EDX_SPEC_CTRL) | b(CPUID7_EDX_ARCH_CAPABILITIES)) >>> 0 },
  '0x7.2': { edx: (b(CPUID7_2_EDX_RRSBA_CTRL) | b(CPUID7_2_EDX_BHI_CTRL)) >>> 0 },
  '0x40000000.0': { eax: ALL, ebx: ALL, ecx: ALL, edx: ALL },
}

const NAMED: Record<string, Partial<Record<Reg, Record<number, string>>>> = {
  '0x1.0': { ecx: { [CPUID1_ECX_HYPERVISOR]: 'HYPERVISOR' } },
  '0x7.0': { edx: { [CPUID7_EDX_SPEC_CTRL]: 'SPEC_CTRL', [CPUID7_EDX_ARCH_CAPABILITIES]: 'ARCH_CAPABILITIES' } },
  '0x7.2': { edx: { [CPUID7_2_EDX_RRSBA_CTRL]: 'RRSBA_CTRL', [CPUID7_2_EDX_BHI_CTRL]: 'BHI_CTRL' } },
}

export const leafName = (key: string): string => {
  const [l, s] = key.split('.')
  return `CPUID.(${Number(l) >= 0x40000000 ? l : Number(l)},${s})`
}

/** "EAX" for a whole register, else "EDX[26] SPEC_CTRL, EDX[29] ARCH_CAPABILITIES". */
export function describeMask(leaf: string, reg: Reg, mask: number): string {
  if (mask >>> 0 === ALL) return reg.toUpperCase()
  const out: string[] = []
  for (let n = 0; n < 32; n++) {
    if (!((mask >>> n) & 1)) continue
    const name = NAMED[leaf]?.[reg]?.[n]
    out.push(`${reg.toUpperCase()}[${n}]${name ? ` ${name}` : ''}`)
  }
  return out.join(', ')
}

/** "CPUID.(7,0):EDX[29] ARCH_CAPABILITIES is 1 in the guest, the model says 0" for each differing contract bit. */
function describeBits(o: LeafOrigin, reg: Reg, bits: number): string[] {
  const out: string[] = []
  for (let n = 0; n < 32; n++) {
    if (!((bits >>> n) & 1)) continue
    const name = NAMED[o.leaf]?.[reg]?.[n]
    const seen = (o.seen[reg] >>> n) & 1, asked = (o.requested[reg] >>> n) & 1
    out.push(`${leafName(o.leaf)}:${reg.toUpperCase()}[${n}]${name ? ` ${name}` : ''} is ${seen} in the guest, the presented model says ${asked}`)
  }
  return out
}

export interface CpuidFidelity {
  /** Contract bits the guest sees differently from the presented model: the run cannot stand for that model here. */
  blocking: string[]
  /** Leaves whose presented bits all reached the guest, and those that did not (with the differing bits). */
  asPresented: string[]
  notAsPresented: { leaf: string; differs: Record<string, string> }[]
  /** Leaves the complement VM proved host-pinned (only with a proof): the host decides these bits, whatever is asked. */
  hostPinned: { leaf: string; bits: Record<string, string> }[]
  /** One line for the output: where each contract CPUID leaf came from on this host. */
  statement: string
}

export function cpuidFidelity(origins: readonly LeafOrigin[], proof?: readonly LeafProof[]): CpuidFidelity {
  const blocking: string[] = []
  const asPresented: string[] = []
  const notAsPresented: CpuidFidelity['notAsPresented'] = []
  for (const o of origins) {
    if (o.fromVcpu) { asPresented.push(o.leaf); continue }
    const differs: Record<string, string> = {}
    for (const r of REGS) if (o.differs[r] !== 0) differs[r] = hex(o.differs[r])
    notAsPresented.push({ leaf: o.leaf, differs })
    const want = CONTRACT_BITS[o.leaf] ?? {}
    for (const r of REGS) blocking.push(...describeBits(o, r, (o.differs[r] & (want[r] ?? 0)) >>> 0))
  }
  const hostPinned = (proof ?? []).filter(p => !p.fromTable).map(p => ({
    leaf: p.leaf,
    bits: Object.fromEntries(REGS.filter(r => p.hostBits[r] !== 0).map(r => [r, hex(p.hostBits[r])])),
  }))
  const parts: string[] = []
  const fromTable = proof ? proof.filter(p => p.fromTable).map(p => leafName(p.leaf)) : asPresented.map(leafName)
  parts.push(`${fromTable.join(' ')} ${proof ? 'come from the vCPU as the VMM set them (KVM_SET_CPUID2, proven with a complement VM)' : 'match what the VMM set (KVM_SET_CPUID2, compared, not proven)'}`)
  for (const h of hostPinned) {
    parts.push(`${leafName(h.leaf)} ${Object.keys(h.bits).map(r => r.toUpperCase()).join('/')} ${Object.values(h.bits).every(v => v === hex(ALL)) ? 'is' : 'has bits'} this host's, not the presented model's (${Object.entries(h.bits).map(([r, v]) => `${r} ${v}`).join(', ')})`)
  }
  if (!proof) for (const n of notAsPresented) parts.push(`${leafName(n.leaf)} differs from the presented model in ${Object.entries(n.differs).map(([r, v]) => `${r} ${v}`).join(', ')}`)
  return { blocking, asPresented, notAsPresented, hostPinned, statement: parts.join('; ') }
}
