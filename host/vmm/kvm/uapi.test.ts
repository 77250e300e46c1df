// Struct layouts and ioctl numbers against the kernel uapi (no /dev/kvm needed).
// The koffi structs below transcribe the C declarations of include/uapi/linux/kvm.h and
// arch/x86/include/uapi/asm/kvm.h; koffi lays them out with the C ABI rules, so a wrong hand
// offset or size in uapi.ts fails here.
import t from 'tap'
import koffi, { type TypeObject } from 'koffi'
import * as U from './uapi.js'

const u8 = 'uint8_t', u16 = 'uint16_t', u32 = 'uint32_t', u64 = 'uint64_t'
const arr = (ty: string, n: number) => koffi.array(ty, n)

const kvm_userspace_memory_region = koffi.struct('kvm_userspace_memory_region',
  { slot: u32, flags: u32, guest_phys_addr: u64, memory_size: u64, userspace_addr: u64 })
const kvm_regs = koffi.struct('kvm_regs', Object.fromEntries(U.KVM_REGS_FIELDS.map(f => [f, u64])))
const kvm_segment = koffi.struct('kvm_segment', {
  base: u64, limit: u32, selector: u16, type: u8, present: u8, dpl: u8, db: u8, s: u8, l: u8, g: u8, avl: u8,
  unusable: u8, padding: u8,
})
const kvm_dtable = koffi.struct('kvm_dtable', { base: u64, limit: u16, padding: arr(u16, 3) })
const kvm_sregs = koffi.struct('kvm_sregs', {
  cs: kvm_segment, ds: kvm_segment, es: kvm_segment, fs: kvm_segment, gs: kvm_segment, ss: kvm_segment,
  tr: kvm_segment, ldt: kvm_segment, gdt: kvm_dtable, idt: kvm_dtable,
  cr0: u64, cr2: u64, cr3: u64, cr4: u64, cr8: u64, efer: u64, apic_base: u64,
  interrupt_bitmap: arr(u64, (256 + 63) / 64), // KVM_NR_INTERRUPTS = 256
})
const kvm_msr_entry = koffi.struct('kvm_msr_entry', { index: u32, reserved: u32, data: u64 })
const kvm_msrs = koffi.struct('kvm_msrs', { nmsrs: u32, pad: u32 })
const kvm_cpuid_entry2 = koffi.struct('kvm_cpuid_entry2', {
  function: u32, index: u32, flags: u32, eax: u32, ebx: u32, ecx: u32, edx: u32, padding: arr(u32, 3),
})
const kvm_cpuid2 = koffi.struct('kvm_cpuid2', { nent: u32, padding: u32 })
const kvm_enable_cap = koffi.struct('kvm_enable_cap', { cap: u32, flags: u32, args: arr(u64, 4), pad: arr(u8, 64) })
const kvm_msr_filter_range = koffi.struct('kvm_msr_filter_range', { flags: u32, nmsrs: u32, base: u32, bitmap: 'uint8_t *' })
const kvm_msr_filter = koffi.struct('kvm_msr_filter', { flags: u32, ranges: koffi.array(kvm_msr_filter_range, 16) })
// struct kvm_run, x86 (no s390 psw fields); the exit union is padded to 256 bytes, s to 2048.
const io = koffi.struct('kvm_run_io', { direction: u8, size: u8, port: u16, count: u32, data_offset: u64 })
const msr = koffi.struct('kvm_run_msr', { error: u8, pad: arr(u8, 7), reason: u32, index: u32, data: u64 })
const ex = koffi.struct('kvm_run_ex', { exception: u32, error_code: u32 })
const internal = koffi.struct('kvm_run_internal', { suberror: u32, ndata: u32, data: arr(u64, 16) })
const fail_entry = koffi.struct('kvm_run_fail_entry', { hardware_entry_failure_reason: u64, cpu: u32 })
const exitUnion = koffi.union('kvm_run_exit', { io, msr, ex, internal, fail_entry, padding: arr('char', 256) })
const kvm_run = koffi.struct('kvm_run', {
  request_interrupt_window: u8, immediate_exit: u8, padding1: arr(u8, 6),
  exit_reason: u32, ready_for_interrupt_injection: u8, if_flag: u8, flags: u16,
  cr8: u64, apic_base: u64, exit: exitUnion, kvm_valid_regs: u64, kvm_dirty_regs: u64, s: arr('char', 2048),
})

t.test('struct sizes match the kernel uapi', async t => {
  // Sizes as the kernel headers define them (x86-64); e.g. sizeof(struct kvm_regs) = 18 * 8.
  const cases: [string, TypeObject, number, number][] = [
    ['kvm_userspace_memory_region', kvm_userspace_memory_region, U.SIZEOF_KVM_USERSPACE_MEMORY_REGION, 32],
    ['kvm_regs', kvm_regs, U.SIZEOF_KVM_REGS, 144],
    ['kvm_segment', kvm_segment, U.SIZEOF_KVM_SEGMENT, 24],
    ['kvm_dtable', kvm_dtable, U.SIZEOF_KVM_DTABLE, 16],
    ['kvm_sregs', kvm_sregs, U.SIZEOF_KVM_SREGS, 312],
    ['kvm_msr_entry', kvm_msr_entry, U.SIZEOF_KVM_MSR_ENTRY, 16],
    ['kvm_msrs', kvm_msrs, U.SIZEOF_KVM_MSRS, 8],
    ['kvm_cpuid_entry2', kvm_cpuid_entry2, U.SIZEOF_KVM_CPUID_ENTRY2, 40],
    ['kvm_cpuid2', kvm_cpuid2, U.SIZEOF_KVM_CPUID2, 8],
    ['kvm_enable_cap', kvm_enable_cap, U.SIZEOF_KVM_ENABLE_CAP, 104],
    ['kvm_msr_filter_range', kvm_msr_filter_range, U.SIZEOF_KVM_MSR_FILTER_RANGE, 24],
    ['kvm_msr_filter', kvm_msr_filter, U.SIZEOF_KVM_MSR_FILTER, 8 + 16 * 24],
    ['kvm_run', kvm_run, U.SIZEOF_KVM_RUN, 2352],
  ]
  for (const [name, ty, ours, kernel] of cases) {
    t.equal(koffi.sizeof(ty), kernel, `sizeof(struct ${name}) laid out from the C declaration`)
    t.equal(ours, kernel, `uapi.ts SIZEOF for struct ${name}`)
  }
})

t.test('struct field offsets in uapi.ts match the C layout', async t => {
  const off = (ty: TypeObject, f: string) => koffi.offsetof(ty, f)
  for (const [f, o] of Object.entries(U.KVM_SREGS_OFF)) t.equal(o, off(kvm_sregs, f), `kvm_sregs.${f}`)
  for (const [f, o] of Object.entries(U.KVM_SEGMENT_OFF)) t.equal(o, off(kvm_segment, f), `kvm_segment.${f}`)
  for (const [f, o] of Object.entries(U.KVM_DTABLE_OFF)) t.equal(o, off(kvm_dtable, f), `kvm_dtable.${f}`)
  for (const [f, o] of Object.entries(U.KVM_CPUID_ENTRY2_OFF)) t.equal(o, off(kvm_cpuid_entry2, f), `kvm_cpuid_entry2.${f}`)
  for (const [f, o] of Object.entries(U.KVM_MSR_ENTRY_OFF)) t.equal(o, off(kvm_msr_entry, f), `kvm_msr_entry.${f}`)
  for (const [f, o] of Object.entries(U.KVM_ENABLE_CAP_OFF)) t.equal(o, off(kvm_enable_cap, f), `kvm_enable_cap.${f}`)
  for (const [f, o] of Object.entries(U.KVM_USERSPACE_MEMORY_REGION_OFF)) t.equal(o, off(kvm_userspace_memory_region, f), `kvm_userspace_memory_region.${f}`)
  for (const [f, o] of Object.entries(U.KVM_MSR_FILTER_RANGE_OFF)) t.equal(o, off(kvm_msr_filter_range, f), `kvm_msr_filter_range.${f}`)
  for (const [f, o] of Object.entries(U.KVM_MSR_FILTER_OFF)) t.equal(o, off(kvm_msr_filter, f), `kvm_msr_filter.${f}`)
  U.KVM_REGS_FIELDS.forEach((f, i) => t.equal(8 * i, off(kvm_regs, f), `kvm_regs.${f}`))
  const exit = off(kvm_run, 'exit')
  const R = U.KVM_RUN_OFF
  t.equal(R.exit, exit, 'kvm_run exit union')
  for (const f of ['exit_reason', 'immediate_exit', 'ready_for_interrupt_injection', 'if_flag', 'flags', 'cr8', 'apic_base', 'kvm_valid_regs', 'kvm_dirty_regs', 's'] as const)
    t.equal(R[f], off(kvm_run, f), `kvm_run.${f}`)
  t.equal(R.io_direction, exit + off(io, 'direction'), 'kvm_run.io.direction')
  t.equal(R.io_size, exit + off(io, 'size'), 'kvm_run.io.size')
  t.equal(R.io_port, exit + off(io, 'port'), 'kvm_run.io.port')
  t.equal(R.io_count, exit + off(io, 'count'), 'kvm_run.io.count')
  t.equal(R.io_data_offset, exit + off(io, 'data_offset'), 'kvm_run.io.data_offset')
  t.equal(R.msr_error, exit + off(msr, 'error'), 'kvm_run.msr.error')
  t.equal(R.msr_reason, exit + off(msr, 'reason'), 'kvm_run.msr.reason')
  t.equal(R.msr_index, exit + off(msr, 'index'), 'kvm_run.msr.index')
  t.equal(R.msr_data, exit + off(msr, 'data'), 'kvm_run.msr.data')
  t.equal(R.ex_exception, exit + off(ex, 'exception'), 'kvm_run.ex.exception')
  t.equal(R.internal_suberror, exit + off(internal, 'suberror'), 'kvm_run.internal.suberror')
  t.equal(R.internal_data, exit + off(internal, 'data'), 'kvm_run.internal.data')
  t.equal(R.fail_entry_cpu, exit + off(fail_entry, 'cpu'), 'kvm_run.fail_entry.cpu')
})

t.test('ioctl numbers are the kernel _IOC values', async t => {
  // Values as strace prints them for the kernel's _IO/_IOR/_IOW/_IOWR(KVMIO, nr, struct).
  const want: [string, number, number][] = [
    ['KVM_GET_API_VERSION', U.KVM_GET_API_VERSION, 0xae00],
    ['KVM_CREATE_VM', U.KVM_CREATE_VM, 0xae01],
    ['KVM_CHECK_EXTENSION', U.KVM_CHECK_EXTENSION, 0xae03],
    ['KVM_GET_VCPU_MMAP_SIZE', U.KVM_GET_VCPU_MMAP_SIZE, 0xae04],
    ['KVM_GET_SUPPORTED_CPUID', U.KVM_GET_SUPPORTED_CPUID, 0xc008ae05],
    ['KVM_CREATE_VCPU', U.KVM_CREATE_VCPU, 0xae41],
    ['KVM_SET_USER_MEMORY_REGION', U.KVM_SET_USER_MEMORY_REGION, 0x4020ae46],
    ['KVM_SET_TSS_ADDR', U.KVM_SET_TSS_ADDR, 0xae47],
    ['KVM_RUN', U.KVM_RUN, 0xae80],
    ['KVM_GET_REGS', U.KVM_GET_REGS, 0x8090ae81],
    ['KVM_SET_REGS', U.KVM_SET_REGS, 0x4090ae82],
    ['KVM_GET_SREGS', U.KVM_GET_SREGS, 0x8138ae83],
    ['KVM_SET_SREGS', U.KVM_SET_SREGS, 0x4138ae84],
    ['KVM_GET_MSRS', U.KVM_GET_MSRS, 0xc008ae88],
    ['KVM_SET_MSRS', U.KVM_SET_MSRS, 0x4008ae89],
    ['KVM_SET_CPUID2', U.KVM_SET_CPUID2, 0x4008ae90],
    ['KVM_GET_CPUID2', U.KVM_GET_CPUID2, 0xc008ae91],
    ['KVM_ENABLE_CAP', U.KVM_ENABLE_CAP, 0x4068aea3],
    ['KVM_X86_SET_MSR_FILTER', U.KVM_X86_SET_MSR_FILTER, 0x4188aec6],
  ]
  for (const [name, ours, kernel] of want) {
    t.equal(ours.toString(16), kernel.toString(16), name)
    t.equal(U.IOCTL_NAMES[ours], name, `IOCTL_NAMES names ${name}`)
  }
})

t.test('exit reasons and MSR exit constants', async t => {
  t.equal(U.KVM_EXIT.IO, 2)
  t.equal(U.KVM_EXIT.HLT, 5)
  t.equal(U.KVM_EXIT.SHUTDOWN, 8)
  t.equal(U.KVM_EXIT.INTERNAL_ERROR, 17)
  t.equal(U.KVM_EXIT.X86_RDMSR, 29)
  t.equal(U.KVM_EXIT.X86_WRMSR, 30)
  t.equal(U.KVM_MSR_EXIT_REASON_UNKNOWN, 2)
  t.equal(U.KVM_MSR_EXIT_REASON_FILTER, 4)
  t.equal(U.KVM_CAP_X86_USER_SPACE_MSR, 188)
  t.equal(U.KVM_CAP_X86_MSR_FILTER, 189)
  t.equal(U.KVM_EXIT_NAMES[29], 'X86_RDMSR')
})
