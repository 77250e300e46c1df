// VM fd ioctls, one thin typed function each (include/uapi/linux/kvm.h). No policy here.
import {
  KVM_CREATE_VCPU, KVM_ENABLE_CAP, KVM_ENABLE_CAP_OFF, KVM_MSR_FILTER_MAX_BITMAP_SIZE, KVM_MSR_FILTER_MAX_RANGES,
  KVM_MSR_FILTER_OFF, KVM_MSR_FILTER_RANGE_OFF, KVM_SET_TSS_ADDR, KVM_SET_USER_MEMORY_REGION,
  KVM_USERSPACE_MEMORY_REGION_OFF, KVM_X86_SET_MSR_FILTER, SIZEOF_KVM_ENABLE_CAP, SIZEOF_KVM_MSR_FILTER,
  SIZEOF_KVM_MSR_FILTER_RANGE, SIZEOF_KVM_USERSPACE_MEMORY_REGION,
} from './uapi.js'
import { koffi } from './ffi.js'
import { ioctlPtr, ioctlVal } from './sys.js'

/** KVM_CREATE_VCPU: returns the vCPU fd. */
export const createVcpu = (vm: number, id: number): number => ioctlVal(vm, KVM_CREATE_VCPU, id)

/** KVM_SET_TSS_ADDR: three pages of guest-physical space KVM may use for real mode on VMX. */
export const setTssAddr = (vm: number, addr: number): void => { ioctlVal(vm, KVM_SET_TSS_ADDR, addr) }

export interface MemoryRegion { slot: number; flags: number; guestPhysAddr: bigint; memorySize: bigint; userspaceAddr: bigint }

export function encodeMemoryRegion(r: MemoryRegion): Uint8Array {
  const buf = new Uint8Array(SIZEOF_KVM_USERSPACE_MEMORY_REGION)
  const dv = new DataView(buf.buffer)
  const o = KVM_USERSPACE_MEMORY_REGION_OFF
  dv.setUint32(o.slot, r.slot, true)
  dv.setUint32(o.flags, r.flags, true)
  dv.setBigUint64(o.guest_phys_addr, r.guestPhysAddr, true)
  dv.setBigUint64(o.memory_size, r.memorySize, true)
  dv.setBigUint64(o.userspace_addr, r.userspaceAddr, true)
  return buf
}

/** KVM_SET_USER_MEMORY_REGION. */
export const setUserMemoryRegion = (vm: number, r: MemoryRegion): void => { ioctlPtr(vm, KVM_SET_USER_MEMORY_REGION, encodeMemoryRegion(r)) }

export function encodeEnableCap(cap: number, args: readonly bigint[] = [], flags = 0): Uint8Array {
  const buf = new Uint8Array(SIZEOF_KVM_ENABLE_CAP)
  const dv = new DataView(buf.buffer)
  dv.setUint32(KVM_ENABLE_CAP_OFF.cap, cap, true)
  dv.setUint32(KVM_ENABLE_CAP_OFF.flags, flags, true)
  args.slice(0, 4).forEach((a, i) => dv.setBigUint64(KVM_ENABLE_CAP_OFF.args + 8 * i, a, true))
  return buf
}

/** KVM_ENABLE_CAP on a VM (or vCPU) fd. */
export const enableCap = (fd: number, cap: number, args: readonly bigint[] = []): void => { ioctlPtr(fd, KVM_ENABLE_CAP, encodeEnableCap(cap, args)) }

/** One kvm_msr_filter_range: `allow` holds one boolean per MSR from `base` (true = KVM handles it, false = deny). */
export interface MsrFilterRange { flags: number; base: number; allow: readonly boolean[] }

/**
 * Encode struct kvm_msr_filter. Each range's bitmap lives in C memory (koffi().alloc: a V8 heap
 * buffer may move, its address must not); call `free()` once the ioctl has returned.
 */
export function encodeMsrFilter(flags: number, ranges: readonly MsrFilterRange[]): { buf: Uint8Array; free: () => void } {
  if (ranges.length > KVM_MSR_FILTER_MAX_RANGES) throw new RangeError(`kvm_msr_filter: ${ranges.length} ranges > ${KVM_MSR_FILTER_MAX_RANGES}`)
  const buf = new Uint8Array(SIZEOF_KVM_MSR_FILTER)
  const dv = new DataView(buf.buffer)
  dv.setUint32(KVM_MSR_FILTER_OFF.flags, flags, true)
  const mem: unknown[] = []
  const free = () => { for (const p of mem.splice(0)) koffi().free(p) }
  ranges.forEach((r, i) => {
    const bytes = Math.max(8, Math.ceil(r.allow.length / 8))
    if (bytes > KVM_MSR_FILTER_MAX_BITMAP_SIZE) { free(); throw new RangeError(`kvm_msr_filter_range: bitmap of ${bytes} bytes too large`) }
    const ptr = koffi().alloc('uint8_t', bytes)
    mem.push(ptr)
    const bitmap = new Uint8Array(koffi().view(ptr, bytes))
    bitmap.fill(0)
    r.allow.forEach((a, n) => { if (a) bitmap[n >> 3]! |= 1 << (n & 7) })
    const o = KVM_MSR_FILTER_OFF.ranges + i * SIZEOF_KVM_MSR_FILTER_RANGE
    dv.setUint32(o + KVM_MSR_FILTER_RANGE_OFF.flags, r.flags, true)
    dv.setUint32(o + KVM_MSR_FILTER_RANGE_OFF.nmsrs, r.allow.length, true)
    dv.setUint32(o + KVM_MSR_FILTER_RANGE_OFF.base, r.base >>> 0, true)
    dv.setBigUint64(o + KVM_MSR_FILTER_RANGE_OFF.bitmap, koffi().address(ptr), true)
  })
  return { buf, free }
}


/** KVM_X86_SET_MSR_FILTER. */
export function setMsrFilter(vm: number, flags: number, ranges: readonly MsrFilterRange[]): void {
  const { buf, free } = encodeMsrFilter(flags, ranges)
  // the kernel copies the bitmaps during the ioctl (kvm_add_msr_filter, arch/x86/kvm/x86.c)
  try { ioctlPtr(vm, KVM_X86_SET_MSR_FILTER, buf) } finally { free() }
}
