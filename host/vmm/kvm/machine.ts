// The VM builder: one VM, N vCPUs each running its own copy of the payload loop, the presented
// CPU model in KVM_SET_CPUID2, and the MSR filter routing the handler's MSRs to userspace.
// This is the way contract/CONTRACT.md section 5 (Sean Christopherson, ZmepkZfLIvj_st5W@google.com) says a
// VMM implements the virtual MSRs: KVM_CAP_X86_USER_SPACE_MSR + KVM_X86_SET_MSR_FILTER, exits
// KVM_EXIT_X86_RDMSR/WRMSR answered by userspace (here: the VcpuMsrHandler).
import type { PresentedCpu } from '../../../contract/cpu-model.js'
import type { VcpuMsrHandler } from '../msr-handler.js'
import {
  KVM_API_VERSION, KVM_CAP_X86_MSR_FILTER, KVM_CAP_X86_USER_SPACE_MSR, KVM_EXIT, KVM_EXIT_IO_OUT, KVM_EXIT_NAMES,
  KVM_MSR_EXIT_REASON_FILTER, KVM_MSR_EXIT_REASON_UNKNOWN, KVM_MSR_FILTER_DEFAULT_ALLOW, KVM_MSR_FILTER_READ,
  KVM_MSR_FILTER_WRITE, KVM_RUN_OFF,
} from './uapi.js'
import {
  checkExtension, closeFd, createVm, getApiVersion, getSupportedCpuid, getVcpuMmapSize, KvmError, kvmUnavailable, MAP_ANONYMOUS,
  MAP_PRIVATE, mmap, munmap, openKvm, PROT_READ, PROT_WRITE, type CpuidEntry, type Mapping,
} from './sys.js'
import { createVcpu, enableCap, setMsrFilter, setTssAddr, setUserMemoryRegion, type MsrFilterRange } from './vm.js'
import { getRegs, getSregs, mapRun, run, setCpuid2, setRegs, setSregs } from './vcpu.js'
import { GUEST_MEM_SIZE, MAX_VCPUS, MB, OP, SIGNAL_PORT, TSS_ADDR, mailboxBase, writeImage, type OpKind } from './payload.js'
import { guestCpuidTable } from './cpuid-table.js'
import type { CpuidLens } from './host-cpuid.js'

/** What the payload reports for one op. */
export type OpResult = { fault: false; out: [number, number, number, number] } | { fault: true }

/** The payload stopped in a way the loop does not expect (HLT = unexpected exception, SHUTDOWN = triple fault...). */
export class PayloadError extends Error {
  override readonly name = 'PayloadError'
  constructor(readonly vcpu: number, readonly exitReason: number, detail: string) {
    super(`vCPU ${vcpu}: payload stopped with KVM_EXIT_${KVM_EXIT_NAMES[exitReason] ?? exitReason}: ${detail}`)
  }
}

export interface VcpuStats { ops: number; runs: number; rdmsrExits: number; wrmsrExits: number; ioExits: number }

/** At most this many exits per op before the loop gives up (an op needs 1 I/O exit + at most 1 MSR exit). */
const MAX_EXITS_PER_OP = 16

export class PayloadVcpu {
  readonly stats: VcpuStats = { ops: 0, runs: 0, rdmsrExits: 0, wrmsrExits: 0, ioExits: 0 }
  private readonly runView: DataView
  private readonly mb: DataView
  private readonly routed: Set<number>
  private closed = false

  constructor(readonly id: number, readonly fd: number, private readonly runMap: Mapping, mem: ArrayBuffer,
    readonly handler: VcpuMsrHandler, private readonly lens?: CpuidLens,
    private readonly afterWrmsr?: (v: PayloadVcpu, index: number) => void) {
    this.runView = new DataView(runMap.buffer)
    this.mb = new DataView(mem, mailboxBase(id), 0x20)
    this.routed = new Set(handler.indices)
  }

  /** Run until the payload signals on SIGNAL_PORT, answering MSR exits on the way. */
  runToSignal(): void {
    const rv = this.runView
    for (let n = 0; n < MAX_EXITS_PER_OP; n++) {
      this.stats.runs++
      const reason = run(this.fd, rv)
      switch (reason) {
        case KVM_EXIT.IO: {
          this.stats.ioExits++
          const port = rv.getUint16(KVM_RUN_OFF.io_port, true)
          const dir = rv.getUint8(KVM_RUN_OFF.io_direction)
          if (port === SIGNAL_PORT && dir === KVM_EXIT_IO_OUT) return
          throw new PayloadError(this.id, reason, `unexpected port ${dir === KVM_EXIT_IO_OUT ? 'write' : 'read'} 0x${port.toString(16)}`)
        }
        case KVM_EXIT.X86_RDMSR: {
          this.stats.rdmsrExits++
          const index = rv.getUint32(KVM_RUN_OFF.msr_index, true)
          // Not ours (reason UNKNOWN): #GP, what KVM does for an unknown MSR with ignore_msrs=0 (contract/CONTRACT.md section 3).
          const a = this.routed.has(index) ? this.handler.rdmsr(index) : { ok: false as const, reason: 'not routed' }
          rv.setUint8(KVM_RUN_OFF.msr_error, a.ok ? 0 : 1)
          if (a.ok) rv.setBigUint64(KVM_RUN_OFF.msr_data, BigInt.asUintN(64, a.value), true)
          break
        }
        case KVM_EXIT.X86_WRMSR: {
          this.stats.wrmsrExits++
          const index = rv.getUint32(KVM_RUN_OFF.msr_index, true)
          const value = rv.getBigUint64(KVM_RUN_OFF.msr_data, true)
          const a = this.routed.has(index) ? this.handler.wrmsr(index, value) : { ok: false as const, reason: 'not routed' }
          rv.setUint8(KVM_RUN_OFF.msr_error, a.ok ? 0 : 1)
          if (a.ok) this.afterWrmsr?.(this, index)
          break
        }
        case KVM_EXIT.HLT: {
          const r = getRegs(this.fd)
          throw new PayloadError(this.id, reason, `unexpected exception (payload halted at ip 0x${r.rip.toString(16)})`)
        }
        case KVM_EXIT.FAIL_ENTRY:
          throw new PayloadError(this.id, reason, `hardware_entry_failure_reason 0x${rv.getBigUint64(KVM_RUN_OFF.fail_entry_reason, true).toString(16)}`)
        case KVM_EXIT.INTERNAL_ERROR:
          throw new PayloadError(this.id, reason, `suberror ${rv.getUint32(KVM_RUN_OFF.internal_suberror, true)}`)
        default:
          throw new PayloadError(this.id, reason, 'unexpected exit')
      }
    }
    throw new PayloadError(this.id, -1, `no signal after ${MAX_EXITS_PER_OP} exits`)
  }

  /** Called by KvmVm.close(): the mappings behind the views are gone, touching them would crash. */
  markClosed(): void { this.closed = true }

  /** Post one op to this vCPU's mailbox and run until the payload signals it is done. */
  op(kind: OpKind, in0: number, in1 = 0, in2 = 0): OpResult {
    if (this.closed) throw new Error(`vCPU ${this.id}: VM closed`)
    const mb = this.mb
    mb.setUint32(MB.IN0, in0 >>> 0, true)
    mb.setUint32(MB.IN1, in1 >>> 0, true)
    mb.setUint32(MB.IN2, in2 >>> 0, true)
    mb.setUint8(MB.OP, kind)
    this.runToSignal()
    this.stats.ops++
    mb.setUint8(MB.OP, OP.NONE)
    if (mb.getUint8(MB.FAULT) !== 0) return { fault: true }
    return { fault: false, out: [mb.getUint32(MB.OUT0, true), mb.getUint32(MB.OUT1, true), mb.getUint32(MB.OUT2, true), mb.getUint32(MB.OUT3, true)] }
  }

  /** CPUID as the guest executes it (through the injected host behaviour, when there is one). */
  cpuid(leaf: number, subleaf: number): OpResult {
    const r = this.rawCpuid(leaf, subleaf)
    if (r.fault || !this.lens) return r
    const [eax, ebx, ecx, edx] = r.out
    const v = this.lens(leaf, subleaf, { eax, ebx, ecx, edx })
    return { fault: false, out: [v.eax, v.ebx, v.ecx, v.edx] }
  }
  /** CPUID as this host's KVM really answers it, whatever lens a test injected. */
  rawCpuid(leaf: number, subleaf: number): OpResult { return this.op(OP.CPUID, leaf, subleaf) }
  rdmsr(index: number): OpResult { return this.op(OP.RDMSR, index) }
  wrmsr(index: number, value: bigint): OpResult {
    const v = BigInt.asUintN(64, value)
    return this.op(OP.WRMSR, index, Number(v & 0xffffffffn), Number(v >> 32n))
  }
}

export interface BuildVmOptions {
  vcpus: number
  presented: PresentedCpu
  /** The MSR emulation of each vCPU (the reference emulation, or a test's tiny handler). */
  handler: (vcpu: number) => VcpuMsrHandler
  /** Change the KVM_SET_CPUID2 table before it is set (the CPUID control VM of cpuid-proof.ts). */
  cpuidTransform?: (table: CpuidEntry[]) => CpuidEntry[]
  /**
   * Tests only: stand in for another host's KVM CPUID handling (host-cpuid.ts), applied to what
   * each vCPU executes. Given the table that was set, it returns the lens for the vCPUs.
   */
  hostCpuid?: (table: readonly CpuidEntry[]) => CpuidLens
  /**
   * Called after the handler accepted a guest WRMSR, between two KVM_RUNs of that vCPU (where
   * vCPU ioctls such as KVM_SET_MSRS may be issued): the live VMM pushes SPEC_CTRL here.
   */
  afterWrmsr?: (v: PayloadVcpu, index: number) => void
}

export interface KvmVm {
  readonly vcpus: readonly PayloadVcpu[]
  /** The table given to KVM_SET_CPUID2 (same for every vCPU). */
  readonly cpuidTable: readonly CpuidEntry[]
  /** The MSR indices the filter denies (so they exit to the handlers). */
  readonly filtered: readonly number[]
  /** Milliseconds: open /dev/kvm to every vCPU having reached its first signal. */
  readonly createMs: number
  close(): void
}

/**
 * Why the live tier cannot run here (no /dev/kvm, wrong API version, no user-space MSR exits or
 * MSR filter), or undefined when it can. Callers skip with this reason; they never fake a pass.
 */
export function liveTierUnavailable(): string | undefined {
  const why = kvmUnavailable()
  if (why) return why
  let kvm = -1
  try {
    kvm = openKvm()
    const api = getApiVersion(kvm)
    if (api !== KVM_API_VERSION) return `KVM API version ${api}, expected ${KVM_API_VERSION}`
    if (checkExtension(kvm, KVM_CAP_X86_USER_SPACE_MSR) === 0) return 'KVM_CAP_X86_USER_SPACE_MSR (188) not supported'
    if (checkExtension(kvm, KVM_CAP_X86_MSR_FILTER) === 0) return 'KVM_CAP_X86_MSR_FILTER (189) not supported'
    return undefined
  } catch (e) {
    return e instanceof Error ? e.message : String(e)
  } finally {
    if (kvm >= 0) closeFd(kvm)
  }
}

/** Contiguous runs of indices -> deny-all filter ranges (a 0 bit denies, KVM_X86_SET_MSR_FILTER doc). */
export function filterRanges(indices: readonly number[]): MsrFilterRange[] {
  const sorted = [...new Set(indices.map(i => i >>> 0))].sort((a, b) => a - b)
  const out: MsrFilterRange[] = []
  for (const i of sorted) {
    const last = out[out.length - 1]
    if (last && last.base + last.allow.length === i) (last.allow as boolean[]).push(false)
    else out.push({ flags: KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE, base: i, allow: [false] })
  }
  return out
}

/**
 * Build and start the VM. Every vCPU gets the same KVM_SET_CPUID2 table (guestCpuidTable), its
 * own mailbox and stack page, and runs to its first signal before this returns.
 */
export function buildVm(opts: BuildVmOptions): KvmVm {
  const t0 = performance.now()
  if (!Number.isInteger(opts.vcpus) || opts.vcpus < 1 || opts.vcpus > MAX_VCPUS) throw new RangeError(`vcpus must be 1..${MAX_VCPUS}`)
  const fds: number[] = []
  const maps: Mapping[] = []
  const cleanup = () => {
    for (const m of maps.splice(0).reverse()) { try { munmap(m) } catch { /* best effort */ } }
    for (const fd of fds.splice(0).reverse()) { try { closeFd(fd) } catch { /* best effort */ } }
  }
  try {
    const kvm = openKvm(); fds.push(kvm)
    const api = getApiVersion(kvm)
    if (api !== KVM_API_VERSION) throw new KvmError('KVM_GET_API_VERSION', 0, `API version ${api}, expected ${KVM_API_VERSION}`)
    for (const cap of [KVM_CAP_X86_USER_SPACE_MSR, KVM_CAP_X86_MSR_FILTER])
      if (checkExtension(kvm, cap) === 0) throw new KvmError('KVM_CHECK_EXTENSION', 0, `capability ${cap} not supported`)
    const mmapSize = getVcpuMmapSize(kvm)
    const supported = getSupportedCpuid(kvm)
    const base = guestCpuidTable(supported, opts.presented)
    const cpuidTable = opts.cpuidTransform ? opts.cpuidTransform(base) : base
    const lens = opts.hostCpuid?.(cpuidTable)

    const vm = createVm(kvm); fds.push(vm)
    setTssAddr(vm, TSS_ADDR)
    const mem = mmap(GUEST_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS); maps.push(mem)
    const { entry } = writeImage(new Uint8Array(mem.buffer))
    setUserMemoryRegion(vm, { slot: 0, flags: 0, guestPhysAddr: 0n, memorySize: BigInt(GUEST_MEM_SIZE), userspaceAddr: mem.addr })

    // MSR accesses the filter denies exit to userspace (FILTER); MSRs KVM does not know exit too
    // (UNKNOWN) and are answered with #GP, as KVM with ignore_msrs=0 would (KVM-NOTES.md).
    enableCap(vm, KVM_CAP_X86_USER_SPACE_MSR, [BigInt(KVM_MSR_EXIT_REASON_FILTER | KVM_MSR_EXIT_REASON_UNKNOWN)])
    const handlers = Array.from({ length: opts.vcpus }, (_, i) => opts.handler(i))
    const filtered = [...new Set(handlers.flatMap(h => h.indices.map(i => i >>> 0)))].sort((a, b) => a - b)
    setMsrFilter(vm, KVM_MSR_FILTER_DEFAULT_ALLOW, filterRanges(filtered))

    const vcpus: PayloadVcpu[] = []
    for (let i = 0; i < opts.vcpus; i++) {
      const fd = createVcpu(vm, i); fds.push(fd)
      const runMap = mapRun(fd, mmapSize); maps.push(runMap)
      setCpuid2(fd, cpuidTable)
      const s = getSregs(fd)
      // Real mode: CS = 0 (code and IVT at low memory), DS = ES = SS = this vCPU's mailbox page.
      s.cs = { ...s.cs, base: 0n, selector: 0 }
      const mbSel = mailboxBase(i) >> 4
      for (const seg of ['ds', 'es', 'fs', 'gs', 'ss'] as const) s[seg] = { ...s[seg], base: BigInt(mailboxBase(i)), selector: mbSel }
      s.idt = { base: 0n, limit: 0x3ff }
      setSregs(fd, s)
      const r = getRegs(fd)
      setRegs(fd, { ...r, rip: BigInt(entry), rsp: 0x1000n, rflags: 0x2n })
      const v = new PayloadVcpu(i, fd, runMap, mem.buffer, handlers[i]!, lens, opts.afterWrmsr)
      v.runToSignal() // first signal: the payload is ready for ops
      vcpus.push(v)
    }
    let closed = false
    return {
      vcpus, cpuidTable, filtered, createMs: performance.now() - t0,
      close: () => { if (!closed) { closed = true; for (const v of vcpus) v.markClosed(); cleanup() } },
    }
  } catch (e) {
    cleanup()
    throw e
  }
}
