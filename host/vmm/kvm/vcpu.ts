// vCPU fd ioctls and the mmap'd struct kvm_run, one thin typed function each. No policy here.
import {
  KVM_GET_CPUID2, KVM_GET_MSRS, KVM_GET_REGS, KVM_GET_SREGS, KVM_MSR_ENTRY_OFF, KVM_REGS_FIELDS, KVM_RUN,
  KVM_RUN_OFF, KVM_SET_CPUID2, KVM_SET_MSRS, KVM_SET_REGS, KVM_SET_SREGS, KVM_SREGS_OFF, KVM_SREGS_SEGMENTS,
  KVM_SEGMENT_OFF, KVM_DTABLE_OFF, SIZEOF_KVM_MSRS, SIZEOF_KVM_MSR_ENTRY, SIZEOF_KVM_REGS, SIZEOF_KVM_SREGS,
  type KvmRegName, type SegName,
} from './uapi.js'
import {
  decodeCpuid2, encodeCpuid2, ioctlPtr, ioctlRaw, KvmError, MAP_SHARED, mmap, PROT_READ, PROT_WRITE,
  type CpuidEntry, type Mapping,
} from './sys.js'

export type KvmRegs = Record<KvmRegName, bigint>

export function decodeRegs(buf: Uint8Array): KvmRegs {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const r = {} as KvmRegs
  KVM_REGS_FIELDS.forEach((k, i) => { r[k] = dv.getBigUint64(8 * i, true) })
  return r
}
export function encodeRegs(r: KvmRegs): Uint8Array {
  const buf = new Uint8Array(SIZEOF_KVM_REGS)
  const dv = new DataView(buf.buffer)
  KVM_REGS_FIELDS.forEach((k, i) => dv.setBigUint64(8 * i, r[k], true))
  return buf
}

export function getRegs(vcpu: number): KvmRegs {
  const buf = new Uint8Array(SIZEOF_KVM_REGS)
  ioctlPtr(vcpu, KVM_GET_REGS, buf)
  return decodeRegs(buf)
}
export const setRegs = (vcpu: number, r: KvmRegs): void => { ioctlPtr(vcpu, KVM_SET_REGS, encodeRegs(r)) }

export interface KvmSegment {
  base: bigint; limit: number; selector: number; type: number; present: number; dpl: number
  db: number; s: number; l: number; g: number; avl: number; unusable: number
}
export interface KvmDtable { base: bigint; limit: number }
export type KvmSregs = Record<SegName, KvmSegment> & {
  gdt: KvmDtable; idt: KvmDtable
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apic_base: bigint
  interrupt_bitmap: [bigint, bigint, bigint, bigint]
}

const SEG_BYTES = ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const
const CRS = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'] as const

export function decodeSregs(buf: Uint8Array): KvmSregs {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const s = {} as KvmSregs
  for (const seg of KVM_SREGS_SEGMENTS) {
    const o = KVM_SREGS_OFF[seg]
    const v = { base: dv.getBigUint64(o, true), limit: dv.getUint32(o + KVM_SEGMENT_OFF.limit, true), selector: dv.getUint16(o + KVM_SEGMENT_OFF.selector, true) } as KvmSegment
    for (const f of SEG_BYTES) v[f] = dv.getUint8(o + KVM_SEGMENT_OFF[f])
    s[seg] = v
  }
  for (const t of ['gdt', 'idt'] as const) s[t] = { base: dv.getBigUint64(KVM_SREGS_OFF[t], true), limit: dv.getUint16(KVM_SREGS_OFF[t] + KVM_DTABLE_OFF.limit, true) }
  for (const c of CRS) s[c] = dv.getBigUint64(KVM_SREGS_OFF[c], true)
  const ib = KVM_SREGS_OFF.interrupt_bitmap
  s.interrupt_bitmap = [0, 1, 2, 3].map(i => dv.getBigUint64(ib + 8 * i, true)) as KvmSregs['interrupt_bitmap']
  return s
}

export function encodeSregs(s: KvmSregs): Uint8Array {
  const buf = new Uint8Array(SIZEOF_KVM_SREGS)
  const dv = new DataView(buf.buffer)
  for (const seg of KVM_SREGS_SEGMENTS) {
    const o = KVM_SREGS_OFF[seg], v = s[seg]
    dv.setBigUint64(o, v.base, true)
    dv.setUint32(o + KVM_SEGMENT_OFF.limit, v.limit >>> 0, true)
    dv.setUint16(o + KVM_SEGMENT_OFF.selector, v.selector, true)
    for (const f of SEG_BYTES) dv.setUint8(o + KVM_SEGMENT_OFF[f], v[f])
  }
  for (const t of ['gdt', 'idt'] as const) { dv.setBigUint64(KVM_SREGS_OFF[t], s[t].base, true); dv.setUint16(KVM_SREGS_OFF[t] + KVM_DTABLE_OFF.limit, s[t].limit, true) }
  for (const c of CRS) dv.setBigUint64(KVM_SREGS_OFF[c], s[c], true)
  s.interrupt_bitmap.forEach((w, i) => dv.setBigUint64(KVM_SREGS_OFF.interrupt_bitmap + 8 * i, w, true))
  return buf
}

export function getSregs(vcpu: number): KvmSregs {
  const buf = new Uint8Array(SIZEOF_KVM_SREGS)
  ioctlPtr(vcpu, KVM_GET_SREGS, buf)
  return decodeSregs(buf)
}
export const setSregs = (vcpu: number, s: KvmSregs): void => { ioctlPtr(vcpu, KVM_SET_SREGS, encodeSregs(s)) }

/** KVM_SET_CPUID2. */
export const setCpuid2 = (vcpu: number, entries: readonly CpuidEntry[]): void => { ioctlPtr(vcpu, KVM_SET_CPUID2, encodeCpuid2(entries)) }

/** KVM_GET_CPUID2: what KVM kept of the table (it may differ from what was set, KVM-NOTES.md). Grows on E2BIG. */
export function getCpuid2(vcpu: number): CpuidEntry[] {
  for (let cap = 128; ; cap *= 2) {
    const buf = encodeCpuid2([], cap)
    try { ioctlPtr(vcpu, KVM_GET_CPUID2, buf) } catch (e) {
      if (e instanceof KvmError && e.code === 'E2BIG' && cap < 4096) continue
      throw e
    }
    return decodeCpuid2(buf)
  }
}

export interface MsrEntry { index: number; data: bigint }

function encodeMsrs(entries: readonly MsrEntry[]): Uint8Array {
  const buf = new Uint8Array(SIZEOF_KVM_MSRS + entries.length * SIZEOF_KVM_MSR_ENTRY)
  const dv = new DataView(buf.buffer)
  dv.setUint32(0, entries.length, true)
  entries.forEach((e, i) => {
    const o = SIZEOF_KVM_MSRS + i * SIZEOF_KVM_MSR_ENTRY
    dv.setUint32(o + KVM_MSR_ENTRY_OFF.index, e.index >>> 0, true)
    dv.setBigUint64(o + KVM_MSR_ENTRY_OFF.data, e.data, true)
  })
  return buf
}

/** KVM_GET_MSRS: returns the entries KVM read (it stops at the first MSR it cannot read). */
export function getMsrs(vcpu: number, indices: readonly number[]): MsrEntry[] {
  const buf = encodeMsrs(indices.map(index => ({ index, data: 0n })))
  const n = ioctlPtr(vcpu, KVM_GET_MSRS, buf)
  const dv = new DataView(buf.buffer)
  return indices.slice(0, n).map((index, i) => ({ index, data: dv.getBigUint64(SIZEOF_KVM_MSRS + i * SIZEOF_KVM_MSR_ENTRY + KVM_MSR_ENTRY_OFF.data, true) }))
}

/** KVM_SET_MSRS: returns how many entries KVM accepted (it stops at the first it rejects). */
export const setMsrs = (vcpu: number, entries: readonly MsrEntry[]): number => ioctlPtr(vcpu, KVM_SET_MSRS, encodeMsrs(entries))

/** mmap of the vCPU fd: struct kvm_run (and the PIO data page after it). */
export function mapRun(vcpu: number, mmapSize: number): Mapping {
  return mmap(mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu)
}

/**
 * KVM_RUN once. Returns kvm_run.exit_reason. EINTR/EAGAIN are retried (a signal interrupted
 * the run: nothing to handle). Other errors throw KvmError.
 */
export function run(vcpu: number, runView: DataView): number {
  for (;;) {
    const r = ioctlRaw(vcpu, KVM_RUN)
    if (r >= 0) return runView.getUint32(KVM_RUN_OFF.exit_reason, true)
    if (r === -4 /* EINTR */ || r === -11 /* EAGAIN */) continue
    throw new KvmError('KVM_RUN', -r)
  }
}
