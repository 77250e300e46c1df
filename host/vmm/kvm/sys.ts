// libc through koffi (ioctl, mmap, munmap, close) and the /dev/kvm system ioctls.
// One thin typed function per ioctl; no policy here. Errors carry errno and the ioctl name.
import fs from 'node:fs'
import { koffi } from './ffi.js'
import {
  IOCTL_NAMES, KVM_CHECK_EXTENSION, KVM_CREATE_VM, KVM_CPUID_ENTRY2_OFF, KVM_GET_API_VERSION,
  KVM_GET_SUPPORTED_CPUID, KVM_GET_VCPU_MMAP_SIZE, SIZEOF_KVM_CPUID2, SIZEOF_KVM_CPUID_ENTRY2,
} from './uapi.js'

/** The KVM device; VIRTMITI_KVM_DEVICE overrides it (to test the skip path where /dev/kvm exists). */
export const KVM_DEVICE = process.env.VIRTMITI_KVM_DEVICE || '/dev/kvm'

let errnoNames: Record<number, string> | undefined
/** Linux errno name for a number ("EINVAL"), or "E<n>". */
export const errnoName = (n: number): string =>
  (errnoNames ??= Object.fromEntries(Object.entries(koffi().os.errno).map(([k, v]) => [v, k])))[n] ?? `E${n}`

/** A failed KVM ioctl or libc call: `op` is the ioctl (or libc function) name. */
export class KvmError extends Error {
  override readonly name = 'KvmError'
  constructor(readonly op: string, readonly errno: number, detail?: string) {
    super(`${op}: ${errnoName(errno)} (errno ${errno})${detail ? `: ${detail}` : ''}`)
  }
  get code(): string { return errnoName(this.errno) }
}

let libc: {
  ioctl: (fd: number, req: number, ...args: unknown[]) => number
  mmap: (addr: null, len: number, prot: number, flags: number, fd: number, off: number) => unknown
  munmap: (addr: unknown, len: number) => number
}
function lib(): typeof libc {
  if (!libc) {
    const l = koffi().load('libc.so.6')
    libc = {
      // ioctl is variadic in libc (int ioctl(int, unsigned long, ...)); call it as such (x86-64 SysV).
      ioctl: l.func('int ioctl(int fd, unsigned long request, ...)'),
      mmap: l.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
      munmap: l.func('int munmap(void *addr, size_t length)'),
    }
  }
  return libc
}

const name = (req: number) => IOCTL_NAMES[req] ?? `ioctl 0x${req.toString(16)}`

/** ioctl(fd, req, (unsigned long) arg); throws KvmError on -1. Returns the ioctl's result. */
export function ioctlVal(fd: number, req: number, arg = 0): number {
  const r = lib().ioctl(fd, req, 'unsigned long', arg)
  if (r < 0) throw new KvmError(name(req), koffi().errno())
  return r
}

/** ioctl(fd, req, (void *) buf); the kernel reads/writes buf in place. Throws KvmError on -1. */
export function ioctlPtr(fd: number, req: number, buf: Uint8Array): number {
  const r = lib().ioctl(fd, req, 'void *', buf)
  if (r < 0) throw new KvmError(name(req), koffi().errno())
  return r
}

/** ioctl returning -errno instead of throwing (for the KVM_RUN loop, where EINTR/EAGAIN are retried). */
export function ioctlRaw(fd: number, req: number, arg = 0): number {
  const r = lib().ioctl(fd, req, 'unsigned long', arg)
  return r < 0 ? -koffi().errno() : r
}

export const PROT_READ = 1, PROT_WRITE = 2
export const MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20

/** A mapping: its address (for KVM_SET_USER_MEMORY_REGION) and an ArrayBuffer over it (koffi().view, no copy). */
export interface Mapping { ptr: unknown; addr: bigint; length: number; buffer: ArrayBuffer }

/** mmap(NULL, length, prot, flags, fd, 0). */
export function mmap(length: number, prot: number, flags: number, fd = -1): Mapping {
  const ptr = lib().mmap(null, length, prot, flags, fd, 0)
  const addr = ptr === null ? -1n : koffi().address(ptr)
  // MAP_FAILED is (void *)-1
  if (ptr === null || addr === 0xffffffffffffffffn || addr === -1n) throw new KvmError('mmap', koffi().errno())
  return { ptr, addr, length, buffer: koffi().view(ptr, length) }
}

export function munmap(m: Mapping): void {
  if (lib().munmap(m.ptr, m.length) < 0) throw new KvmError('munmap', koffi().errno())
}

export function closeFd(fd: number): void { fs.closeSync(fd) }

/** Why /dev/kvm cannot be used here, or undefined when it can be opened read-write. */
export function kvmUnavailable(): string | undefined {
  try { fs.closeSync(fs.openSync(KVM_DEVICE, 'r+')); return undefined } catch (e) {
    const err = e as NodeJS.ErrnoException
    return `${KVM_DEVICE}: ${err.code ?? err.message}`
  }
}

/** Open /dev/kvm (O_RDWR|O_CLOEXEC, as Node opens every fd). */
export function openKvm(): number {
  try { return fs.openSync(KVM_DEVICE, 'r+') } catch (e) {
    const err = e as NodeJS.ErrnoException
    throw new KvmError(`open ${KVM_DEVICE}`, typeof err.errno === 'number' ? -err.errno : 0, err.code)
  }
}

export const getApiVersion = (kvm: number): number => ioctlVal(kvm, KVM_GET_API_VERSION)
/** KVM_CHECK_EXTENSION on /dev/kvm or a VM fd: 0 = unsupported, else a cap-specific value. */
export const checkExtension = (fd: number, cap: number): number => ioctlVal(fd, KVM_CHECK_EXTENSION, cap)
/** KVM_CREATE_VM (machine type 0): returns the VM fd. */
export const createVm = (kvm: number): number => ioctlVal(kvm, KVM_CREATE_VM, 0)
export const getVcpuMmapSize = (kvm: number): number => ioctlVal(kvm, KVM_GET_VCPU_MMAP_SIZE)

/** One struct kvm_cpuid_entry2. */
export interface CpuidEntry { function: number; index: number; flags: number; eax: number; ebx: number; ecx: number; edx: number }

/** Encode struct kvm_cpuid2 with its entries. */
export function encodeCpuid2(entries: readonly CpuidEntry[], capacity = entries.length): Uint8Array {
  const buf = new Uint8Array(SIZEOF_KVM_CPUID2 + capacity * SIZEOF_KVM_CPUID_ENTRY2)
  const dv = new DataView(buf.buffer)
  dv.setUint32(0, Math.max(capacity, entries.length), true)
  entries.forEach((e, i) => {
    const o = SIZEOF_KVM_CPUID2 + i * SIZEOF_KVM_CPUID_ENTRY2
    for (const k of ['function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx'] as const)
      dv.setUint32(o + KVM_CPUID_ENTRY2_OFF[k], e[k] >>> 0, true)
  })
  return buf
}

/** Decode struct kvm_cpuid2 (nent entries). */
export function decodeCpuid2(buf: Uint8Array): CpuidEntry[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const n = dv.getUint32(0, true)
  const out: CpuidEntry[] = []
  for (let i = 0; i < n; i++) {
    const o = SIZEOF_KVM_CPUID2 + i * SIZEOF_KVM_CPUID_ENTRY2
    const g = (k: keyof typeof KVM_CPUID_ENTRY2_OFF) => dv.getUint32(o + KVM_CPUID_ENTRY2_OFF[k], true)
    out.push({ function: g('function'), index: g('index'), flags: g('flags'), eax: g('eax'), ebx: g('ebx'), ecx: g('ecx'), edx: g('edx') })
  }
  return out
}

/** KVM_GET_SUPPORTED_CPUID: the CPUID table KVM can offer (grows the buffer on E2BIG). */
export function getSupportedCpuid(kvm: number): CpuidEntry[] {
  for (let cap = 128; ; cap *= 2) {
    const buf = encodeCpuid2([], cap)
    try { ioctlPtr(kvm, KVM_GET_SUPPORTED_CPUID, buf) } catch (e) {
      if (e instanceof KvmError && e.code === 'E2BIG' && cap < 4096) continue
      throw e
    }
    return decodeCpuid2(buf)
  }
}
