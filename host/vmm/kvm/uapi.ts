// KVM userspace ABI in one place (like rust-vmm kvm-bindings): ioctl numbers, constants,
// and byte offsets of the structs this driver encodes by hand. x86-64 only.
// Sources (torvalds/linux):
//   include/uapi/linux/kvm.h          ioctls, exit reasons, struct kvm_run, kvm_enable_cap,
//                                     kvm_userspace_memory_region, caps 188/189
//   arch/x86/include/uapi/asm/kvm.h   kvm_regs, kvm_segment, kvm_dtable, kvm_sregs, kvm_msrs,
//                                     kvm_cpuid2/kvm_cpuid_entry2, kvm_msr_filter(_range)
//   include/uapi/asm-generic/ioctl.h  _IOC encoding (dir << 30 | size << 16 | type << 8 | nr)
// kvm-layout.test.ts checks every size and offset here against koffi's C layout rules.

/** KVMIO, include/uapi/linux/kvm.h. */
export const KVMIO = 0xae

const IOC_NONE = 0, IOC_WRITE = 1, IOC_READ = 2
/** _IOC from asm-generic/ioctl.h; arithmetic (not <<) because dir << 30 overflows int32. */
export const ioc = (dir: number, nr: number, size: number): number =>
  dir * 2 ** 30 + size * 2 ** 16 + KVMIO * 2 ** 8 + nr
const IO = (nr: number) => ioc(IOC_NONE, nr, 0)
const IOR = (nr: number, size: number) => ioc(IOC_READ, nr, size)
const IOW = (nr: number, size: number) => ioc(IOC_WRITE, nr, size)
const IOWR = (nr: number, size: number) => ioc(IOC_READ | IOC_WRITE, nr, size)

// ---- struct sizes (bytes) ----------------------------------------------------------------
/** struct kvm_userspace_memory_region: u32 slot, u32 flags, u64 guest_phys_addr, u64 memory_size, u64 userspace_addr. */
export const SIZEOF_KVM_USERSPACE_MEMORY_REGION = 32
/** struct kvm_regs: 18 x u64 (rax..r15, rip, rflags). */
export const SIZEOF_KVM_REGS = 144
/** struct kvm_segment: u64 base, u32 limit, u16 selector, 10 x u8. */
export const SIZEOF_KVM_SEGMENT = 24
/** struct kvm_dtable: u64 base, u16 limit, u16 padding[3]. */
export const SIZEOF_KVM_DTABLE = 16
/** struct kvm_sregs: 8 segments, gdt, idt, cr0 cr2 cr3 cr4 cr8 efer apic_base, u64 interrupt_bitmap[4]. */
export const SIZEOF_KVM_SREGS = 312
/** struct kvm_msrs header (u32 nmsrs, u32 pad) followed by struct kvm_msr_entry[]. */
export const SIZEOF_KVM_MSRS = 8
/** struct kvm_msr_entry: u32 index, u32 reserved, u64 data. */
export const SIZEOF_KVM_MSR_ENTRY = 16
/** struct kvm_cpuid2 header (u32 nent, u32 padding) followed by struct kvm_cpuid_entry2[]. */
export const SIZEOF_KVM_CPUID2 = 8
/** struct kvm_cpuid_entry2: function, index, flags, eax, ebx, ecx, edx, padding[3] (all u32). */
export const SIZEOF_KVM_CPUID_ENTRY2 = 40
/** struct kvm_enable_cap: u32 cap, u32 flags, u64 args[4], u8 pad[64]. */
export const SIZEOF_KVM_ENABLE_CAP = 104
/** struct kvm_msr_filter_range: u32 flags, u32 nmsrs, u32 base, (pad), u8 *bitmap. */
export const SIZEOF_KVM_MSR_FILTER_RANGE = 24
/** KVM_MSR_FILTER_MAX_RANGES, arch/x86/include/uapi/asm/kvm.h. */
export const KVM_MSR_FILTER_MAX_RANGES = 16
/** struct kvm_msr_filter: u32 flags, (pad), struct kvm_msr_filter_range ranges[16]. */
export const SIZEOF_KVM_MSR_FILTER = 8 + KVM_MSR_FILTER_MAX_RANGES * SIZEOF_KVM_MSR_FILTER_RANGE
/** struct kvm_run on x86: 32-byte head, 256-byte exit union, kvm_valid_regs, kvm_dirty_regs, 2048-byte s. */
export const SIZEOF_KVM_RUN = 2352

// ---- ioctls --------------------------------------------------------------------------------
// system (/dev/kvm) ioctls
export const KVM_GET_API_VERSION = IO(0x00)
export const KVM_CREATE_VM = IO(0x01)
export const KVM_CHECK_EXTENSION = IO(0x03)
export const KVM_GET_VCPU_MMAP_SIZE = IO(0x04)
export const KVM_GET_SUPPORTED_CPUID = IOWR(0x05, SIZEOF_KVM_CPUID2)
// VM ioctls
export const KVM_CREATE_VCPU = IO(0x41)
export const KVM_SET_USER_MEMORY_REGION = IOW(0x46, SIZEOF_KVM_USERSPACE_MEMORY_REGION)
/** Needed by VMX without unrestricted guest to run real mode; a no-op on SVM (kvmtool, firecracker set it). */
export const KVM_SET_TSS_ADDR = IO(0x47)
export const KVM_ENABLE_CAP = IOW(0xa3, SIZEOF_KVM_ENABLE_CAP)
export const KVM_X86_SET_MSR_FILTER = IOW(0xc6, SIZEOF_KVM_MSR_FILTER)
// vCPU ioctls
export const KVM_RUN = IO(0x80)
export const KVM_GET_REGS = IOR(0x81, SIZEOF_KVM_REGS)
export const KVM_SET_REGS = IOW(0x82, SIZEOF_KVM_REGS)
export const KVM_GET_SREGS = IOR(0x83, SIZEOF_KVM_SREGS)
export const KVM_SET_SREGS = IOW(0x84, SIZEOF_KVM_SREGS)
export const KVM_GET_MSRS = IOWR(0x88, SIZEOF_KVM_MSRS)
export const KVM_SET_MSRS = IOW(0x89, SIZEOF_KVM_MSRS)
export const KVM_SET_CPUID2 = IOW(0x90, SIZEOF_KVM_CPUID2)
export const KVM_GET_CPUID2 = IOWR(0x91, SIZEOF_KVM_CPUID2)

/** Names for errors and logs. */
export const IOCTL_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [KVM_GET_API_VERSION]: 'KVM_GET_API_VERSION', [KVM_CREATE_VM]: 'KVM_CREATE_VM',
  [KVM_CHECK_EXTENSION]: 'KVM_CHECK_EXTENSION', [KVM_GET_VCPU_MMAP_SIZE]: 'KVM_GET_VCPU_MMAP_SIZE',
  [KVM_GET_SUPPORTED_CPUID]: 'KVM_GET_SUPPORTED_CPUID', [KVM_CREATE_VCPU]: 'KVM_CREATE_VCPU',
  [KVM_SET_USER_MEMORY_REGION]: 'KVM_SET_USER_MEMORY_REGION', [KVM_SET_TSS_ADDR]: 'KVM_SET_TSS_ADDR',
  [KVM_ENABLE_CAP]: 'KVM_ENABLE_CAP', [KVM_X86_SET_MSR_FILTER]: 'KVM_X86_SET_MSR_FILTER',
  [KVM_RUN]: 'KVM_RUN', [KVM_GET_REGS]: 'KVM_GET_REGS', [KVM_SET_REGS]: 'KVM_SET_REGS',
  [KVM_GET_SREGS]: 'KVM_GET_SREGS', [KVM_SET_SREGS]: 'KVM_SET_SREGS', [KVM_GET_MSRS]: 'KVM_GET_MSRS',
  [KVM_SET_MSRS]: 'KVM_SET_MSRS', [KVM_SET_CPUID2]: 'KVM_SET_CPUID2', [KVM_GET_CPUID2]: 'KVM_GET_CPUID2',
})

// ---- constants -----------------------------------------------------------------------------
/** KVM_API_VERSION, include/uapi/linux/kvm.h. */
export const KVM_API_VERSION = 12
export const KVM_CAP_X86_USER_SPACE_MSR = 188
export const KVM_CAP_X86_MSR_FILTER = 189

/** kvm_run.exit_reason values (include/uapi/linux/kvm.h). */
export const KVM_EXIT = {
  UNKNOWN: 0, EXCEPTION: 1, IO: 2, HYPERCALL: 3, DEBUG: 4, HLT: 5, MMIO: 6, IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8, FAIL_ENTRY: 9, INTR: 10, INTERNAL_ERROR: 17, SYSTEM_EVENT: 24,
  X86_RDMSR: 29, X86_WRMSR: 30,
} as const
export const KVM_EXIT_NAMES: Readonly<Record<number, string>> =
  Object.freeze(Object.fromEntries(Object.entries(KVM_EXIT).map(([k, v]) => [v, k])))
export const KVM_EXIT_IO_IN = 0
export const KVM_EXIT_IO_OUT = 1

/** kvm_run.msr.reason bits; also the KVM_CAP_X86_USER_SPACE_MSR args[0] mask. */
export const KVM_MSR_EXIT_REASON_INVAL = 1 << 0
export const KVM_MSR_EXIT_REASON_UNKNOWN = 1 << 1
export const KVM_MSR_EXIT_REASON_FILTER = 1 << 2

/** kvm_msr_filter_range.flags / kvm_msr_filter.flags (arch/x86/include/uapi/asm/kvm.h). */
export const KVM_MSR_FILTER_READ = 1 << 0
export const KVM_MSR_FILTER_WRITE = 1 << 1
export const KVM_MSR_FILTER_DEFAULT_ALLOW = 0
export const KVM_MSR_FILTER_DEFAULT_DENY = 1
/** KVM_MSR_FILTER_MAX_BITMAP_SIZE (bytes per range bitmap). */
export const KVM_MSR_FILTER_MAX_BITMAP_SIZE = 0x600

/** kvm_cpuid_entry2.flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX (kernel spelling). */
export const KVM_CPUID_FLAG_SIGNIFICANT_INDEX = 1 << 0

// ---- struct field offsets ------------------------------------------------------------------
/** struct kvm_run: head fields, and the exit union members this driver reads. */
export const KVM_RUN_OFF = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  ready_for_interrupt_injection: 12,
  if_flag: 13,
  flags: 14,
  cr8: 16,
  apic_base: 24,
  /** start of the 256-byte exit union */
  exit: 32,
  // KVM_EXIT_IO
  io_direction: 32, io_size: 33, io_port: 34, io_count: 36, io_data_offset: 40,
  // KVM_EXIT_X86_RDMSR / KVM_EXIT_X86_WRMSR
  msr_error: 32, msr_reason: 40, msr_index: 44, msr_data: 48,
  // KVM_EXIT_FAIL_ENTRY
  fail_entry_reason: 32, fail_entry_cpu: 40,
  // KVM_EXIT_EXCEPTION
  ex_exception: 32, ex_error_code: 36,
  // KVM_EXIT_INTERNAL_ERROR
  internal_suberror: 32, internal_ndata: 36, internal_data: 40,
  kvm_valid_regs: 288,
  kvm_dirty_regs: 296,
  s: 304,
} as const

/** struct kvm_regs, in declaration order (each u64). */
export const KVM_REGS_FIELDS = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'] as const
export type KvmRegName = typeof KVM_REGS_FIELDS[number]

/** struct kvm_segment field offsets. */
export const KVM_SEGMENT_OFF = {
  base: 0, limit: 8, selector: 12, type: 14, present: 15, dpl: 16, db: 17, s: 18, l: 19, g: 20,
  avl: 21, unusable: 22, padding: 23,
} as const
/** struct kvm_dtable field offsets. */
export const KVM_DTABLE_OFF = { base: 0, limit: 8 } as const
/** Segments of struct kvm_sregs in declaration order. */
export const KVM_SREGS_SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const
export type SegName = typeof KVM_SREGS_SEGMENTS[number]
/** struct kvm_sregs field offsets. */
export const KVM_SREGS_OFF = {
  cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168, gdt: 192, idt: 208,
  cr0: 224, cr2: 232, cr3: 240, cr4: 248, cr8: 256, efer: 264, apic_base: 272, interrupt_bitmap: 280,
} as const

/** struct kvm_cpuid_entry2 field offsets. */
export const KVM_CPUID_ENTRY2_OFF = { function: 0, index: 4, flags: 8, eax: 12, ebx: 16, ecx: 20, edx: 24 } as const
/** struct kvm_msr_entry field offsets. */
export const KVM_MSR_ENTRY_OFF = { index: 0, data: 8 } as const
/** struct kvm_enable_cap field offsets. */
export const KVM_ENABLE_CAP_OFF = { cap: 0, flags: 4, args: 8, pad: 40 } as const
/** struct kvm_userspace_memory_region field offsets. */
export const KVM_USERSPACE_MEMORY_REGION_OFF = { slot: 0, flags: 4, guest_phys_addr: 8, memory_size: 16, userspace_addr: 24 } as const
/** struct kvm_msr_filter_range / kvm_msr_filter field offsets. */
export const KVM_MSR_FILTER_RANGE_OFF = { flags: 0, nmsrs: 4, base: 8, bitmap: 16 } as const
export const KVM_MSR_FILTER_OFF = { flags: 0, ranges: 8 } as const
