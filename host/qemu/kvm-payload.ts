// A tiny -bios image for QEMU under -accel kvm, in the manner of kvm-unit-tests (issue 11 item 1.d):
// 16-bit real mode (CPUID, RDMSR, WRMSR and RDTSC are legal at CPL0, and real mode is CPL0: Intel
// SDM vol. 2, RDMSR/WRMSR "#GP(0) if the current privilege level is not 0"), encoded by the
// project's own assembler (host/vmm/kvm/asm16.ts). It reports each step as a 10-byte record on the
// debug port (QEMU -debugcon, I/O 0xe9) and ends through isa-debug-exit (I/O 0xf4).
//
// Steps (contract/CONTRACT.md section 3; the values come from PayloadParams):
//   CPUID (7,0) and (7,2); RDMSR 0x10a, 0x50000000, 0x50000001; WRMSR CTRL with an enumerated bit,
//   read back; WRMSR CTRL with a bit not enumerated (#GP, CTRL unchanged), read back; WRMSR 0x48,
//   RDMSR 0x48 (the shadow, section 5); WRMSR of the read-only 0x50000000 and 0x10a (#GP);
//   then timed loops of N WRMSRs (RDTSC before and after), then a "done" record, then HLT with
//   interrupts off until the host, having read QEMU's QOM state, resets the machine (QMP
//   system_reset). RAM survives a QEMU system reset, so the second start finds RESET_MARK and
//   writes EXIT_OK to isa-debug-exit. (An NMI cannot be the signal: QEMU's inject-nmi goes through
//   the local APIC's LINT1, masked after reset, and real mode cannot reach the APIC page.)
//   Any exception other than #GP writes EXIT_UNEXPECTED.
// #GP (vector 13): the handler sets the record's fault byte, counts the fault, and skips the
// 2-byte faulting instruction (every MSR instruction here is 2 bytes: 0F 30, 0F 32).
import { asm, assemble, EAX, ECX, EDI, EDX, ESP, le16, le32, type Item } from '../vmm/kvm/asm16.js'
import { MSR } from '../../contract/registers.js'

export const BIOS_SIZE = 0x10000 // 64 KiB: QEMU maps it at 0xF0000 (and below 4 GiB); reset vector at its end - 16
export const BIOS_SEG = 0xf000
export const DEBUGCON_PORT = 0xe9
export const DEBUG_EXIT_PORT = 0xf4
/** isa-debug-exit makes QEMU exit with (value << 1) | 1. */
export const EXIT_OK = 0x10
export const EXIT_UNEXPECTED = 0x01
export const exitStatus = (v: number): number => (v << 1) | 1

/** RAM layout (DS = SS = 0). */
const REC = 0x500 // tag(1) eax(4) edx(4) fault(1)
export const RECORD_SIZE = 10
const FAULTS = 0x510
const T0 = 0x520
const MARK = 0x530
export const RESET_MARK = 0x564d5254 // "TRMV": this RAM has run the payload once
const STACK_TOP = 0x7c00

/** MSR KVM handles in the kernel on every host (SDM vol. 4: IA32_SYSENTER_CS), for the baseline loop. */
export const MSR_SYSENTER_CS = 0x174

export const TAG = {
  cpuid70: 'a', cpuid72: 'b', archCap: 'c', virtEnum: 'd', mitiEnum: 'e',
  ctrlWriteGood: 'f', ctrlReadGood: 'g', ctrlWriteBad: 'h', ctrlReadBad: 'i',
  specWrite: 'j', specRead: 'k', virtEnumWrite: 'l', archCapWrite: 'm',
  benchStart: 'S', benchEnd: 'E', benchFaults: 'F', done: 'Z', unexpected: '!',
} as const

export interface Bench { id: number; name: string; msr: number; value: bigint }
export interface PayloadParams {
  /** CTRL value with only enumerated bits (section 3: accepted). */
  ctrlGood: bigint
  /** CTRL value with a bit MITI_ENUM does not have (section 3: #GP, CTRL unchanged). */
  ctrlBad: bigint
  /** SPEC_CTRL value the guest writes. */
  specCtrl: bigint
  /** WRMSRs per timed loop (1..2^32-1). */
  loops: number
  benches: readonly Bench[]
}

/** The timed loops: a filtered SPEC_CTRL write, a filtered CTRL write (with the push), an in-kernel MSR. */
export function defaultBenches(p: { specCtrl: bigint; ctrlGood: bigint }): Bench[] {
  return [
    { id: 1, name: 'wrmsr-spec-ctrl', msr: MSR.SPEC_CTRL, value: p.specCtrl },
    { id: 2, name: 'wrmsr-miti-ctrl', msr: MSR.VIRTUAL_MITIGATION_CTRL, value: p.ctrlGood },
    { id: 3, name: 'wrmsr-sysenter-cs', msr: MSR_SYSENTER_CS, value: 0n },
  ]
}

const lo = (v: bigint) => Number(v & 0xffffffffn)
const hi = (v: bigint) => Number((v >> 32n) & 0xffffffffn)
const movWordImm = (off: number, v: number): Item => ({ bytes: [0xc7, 0x06, ...le16(off), ...le16(v)] }) // C7 /0 disp16 iw

/** Store EDX:EAX and the tag in the record, then emit it. */
const record = (tag: string): Item[] => [
  asm.mov_mem_r32(REC + 1, EAX), asm.mov_mem_r32(REC + 5, EDX),
  asm.mov_byte_mem_imm(REC, tag.charCodeAt(0)), asm.call('emit'),
]
const clearFault = (): Item => asm.mov_byte_mem_imm(REC + 9, 0)
const rdmsrStep = (tag: string, msr: number): Item[] => [clearFault(), asm.mov_r32_imm(ECX, msr), asm.rdmsr(), ...record(tag)]
const wrmsrStep = (tag: string, msr: number, v: bigint): Item[] => [
  clearFault(), asm.mov_r32_imm(ECX, msr), asm.mov_r32_imm(EAX, lo(v)), asm.mov_r32_imm(EDX, hi(v)), asm.wrmsr(), ...record(tag),
]
const cpuidStep = (tag: string, leaf: number, sub: number): Item[] => [
  clearFault(), asm.mov_r32_imm(EAX, leaf), asm.mov_r32_imm(ECX, sub), asm.cpuid(), ...record(tag),
]
const benchLoop = (b: Bench, loops: number): Item[] => {
  const l = `bench_${b.id}`
  return [
    asm.mov_r32_imm(EAX, 0), asm.mov_mem_r32(FAULTS, EAX),
    asm.mov_r32_imm(EAX, b.id), asm.mov_r32_imm(EDX, loops), clearFault(), ...record(TAG.benchStart),
    asm.mov_r32_imm(EDI, loops),
    asm.mov_r32_imm(ECX, b.msr),
    asm.rdtsc(), asm.mov_mem_r32(T0, EAX), asm.mov_mem_r32(T0 + 4, EDX), // RDTSC writes EDX:EAX
    asm.mov_r32_imm(EAX, lo(b.value)), asm.mov_r32_imm(EDX, hi(b.value)),
    asm.label(l),
    asm.wrmsr(), { bytes: [0x66, 0x4f] }, asm.jne(l), // wrmsr; dec edi (66 48+rd); jnz
    asm.rdtsc(), asm.sub_r32_mem(EAX, T0), asm.sbb_r32_mem(EDX, T0 + 4), ...record(TAG.benchEnd),
    asm.mov_r32_mem(EAX, FAULTS), asm.mov_r32_imm(EDX, loops), ...record(TAG.benchFaults),
  ]
}

/** The program (entry label: start), assembled at offset 0 of the BIOS segment. */
export function kvmPayloadProgram(p: PayloadParams): { code: Uint8Array; labels: Record<string, number> } {
  if (!Number.isInteger(p.loops) || p.loops < 1 || p.loops > 0xffffffff) throw new Error(`loops ${p.loops}: expected 1..2^32-1`)
  // IVT entries (offset, segment at 4*v) need the handler offsets: assemble once for the labels,
  // then again with the entries filled in (their size does not depend on the values).
  const first = assemble(programItems(p, {}))
  return assemble(programItems(p, first.labels))
}

function ivtItems(labels: Record<string, number>): Item[] {
  const out: Item[] = []
  for (let v = 0; v < 32; v++) {
    const h = v === 13 ? 'gp_handler' : 'unexpected'
    out.push(movWordImm(4 * v, labels[h] ?? 0), movWordImm(4 * v + 2, BIOS_SEG))
  }
  return out
}

function programItems(p: PayloadParams, labels: Record<string, number>): Item[] {
  return [
    asm.label('start'),
    asm.cli(), asm.cld(),
    asm.mov_r16_imm(EAX, 0), asm.mov_sreg_ax(3), asm.mov_sreg_ax(2), asm.mov_sreg_ax(0), // ds = ss = es = 0
    asm.mov_r16_imm(ESP, STACK_TOP),
    // Second start (after the host's system_reset): leave.
    { bytes: [0x66, 0x81, 0x3e, ...le16(MARK), ...le32(RESET_MARK)] }, asm.jne('fresh'), // cmp dword [MARK], imm32
    { bytes: [0xb0, EXIT_OK] }, asm.out_imm8_al(DEBUG_EXIT_PORT),                       // mov al, EXIT_OK; out 0xf4, al
    asm.label('exit_stop'), asm.hlt(), asm.jmp('exit_stop'),
    asm.label('fresh'),
    { bytes: [0x66, 0xc7, 0x06, ...le16(MARK), ...le32(RESET_MARK)] },                 // mov dword [MARK], imm32
    ...ivtItems(labels),
    ...cpuidStep(TAG.cpuid70, 7, 0),
    ...cpuidStep(TAG.cpuid72, 7, 2),
    ...rdmsrStep(TAG.archCap, MSR.ARCH_CAPABILITIES),
    ...rdmsrStep(TAG.virtEnum, MSR.VIRTUAL_ENUMERATION),
    ...rdmsrStep(TAG.mitiEnum, MSR.VIRTUAL_MITIGATION_ENUM),
    ...wrmsrStep(TAG.ctrlWriteGood, MSR.VIRTUAL_MITIGATION_CTRL, p.ctrlGood),
    ...rdmsrStep(TAG.ctrlReadGood, MSR.VIRTUAL_MITIGATION_CTRL),
    ...wrmsrStep(TAG.ctrlWriteBad, MSR.VIRTUAL_MITIGATION_CTRL, p.ctrlBad),
    ...rdmsrStep(TAG.ctrlReadBad, MSR.VIRTUAL_MITIGATION_CTRL),
    ...wrmsrStep(TAG.specWrite, MSR.SPEC_CTRL, p.specCtrl),
    ...rdmsrStep(TAG.specRead, MSR.SPEC_CTRL),
    ...wrmsrStep(TAG.virtEnumWrite, MSR.VIRTUAL_ENUMERATION, 0n),
    ...wrmsrStep(TAG.archCapWrite, MSR.ARCH_CAPABILITIES, 0n),
    ...p.benches.flatMap(b => benchLoop(b, p.loops)),
    asm.mov_r32_imm(EAX, 0), asm.mov_r32_imm(EDX, 0), clearFault(), ...record(TAG.done),
    asm.label('wait'), asm.cli(), asm.hlt(), asm.jmp('wait'),

    // emit: the 10-byte record at REC to the debug port.
    asm.label('emit'),
    asm.mov_r16_imm(6, REC), asm.mov_r16_imm(ECX, RECORD_SIZE), // mov si, REC; mov cx, 10
    asm.label('emit_loop'), asm.lodsb(), asm.out_imm8_al(DEBUGCON_PORT), asm.loop('emit_loop'),
    asm.ret(),

    // #GP: real mode pushes FLAGS, CS, IP and no error code; after push bp, [bp+2] = IP.
    asm.label('gp_handler'),
    { bytes: [0x55] }, { bytes: [0x89, 0xe5] },   // push bp; mov bp, sp
    { bytes: [0x83, 0x46, 0x02, 0x02] },          // add word [bp+2], 2 (SS-relative)
    asm.mov_byte_mem_imm(REC + 9, 1), asm.inc_dword_mem(FAULTS),
    { bytes: [0x5d] }, asm.iret(),                // pop bp; iret

    // Any other exception: a record, then isa-debug-exit with EXIT_UNEXPECTED.
    asm.label('unexpected'),
    asm.mov_byte_mem_imm(REC, TAG.unexpected.charCodeAt(0)), asm.call('emit'),
    { bytes: [0xb0, EXIT_UNEXPECTED] }, asm.out_imm8_al(DEBUG_EXIT_PORT),
    asm.label('unexpected_stop'), asm.hlt(), asm.jmp('unexpected_stop'),
  ]
}

/** The 64 KiB image: the program at offset 0, `jmp far F000:start` at the reset vector (0xFFF0). */
export function kvmPayloadImage(p: PayloadParams): Uint8Array {
  const { code, labels } = kvmPayloadProgram(p)
  if (code.length > BIOS_SIZE - 16) throw new Error(`payload: ${code.length} bytes do not fit below the reset vector`)
  const img = new Uint8Array(BIOS_SIZE).fill(0xf4) // hlt everywhere else
  img.set(code, 0)
  img.set([0xea, ...le16(labels.start!), ...le16(BIOS_SEG)], BIOS_SIZE - 16) // EA iw iw: jmp ptr16:16
  return img
}

export interface PayloadRecord { tag: string; eax: number; edx: number; value: bigint; fault: boolean }

/** Parse the debug port's bytes into records; a trailing partial record is reported, not dropped silently. */
export function parseRecords(buf: Uint8Array): { records: PayloadRecord[]; trailing: number } {
  const records: PayloadRecord[] = []
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  let i = 0
  for (; i + RECORD_SIZE <= buf.length; i += RECORD_SIZE) {
    const eax = dv.getUint32(i + 1, true), edx = dv.getUint32(i + 5, true)
    records.push({ tag: String.fromCharCode(buf[i]!), eax, edx, value: (BigInt(edx) << 32n) | BigInt(eax), fault: buf[i + 9] !== 0 })
  }
  return { records, trailing: buf.length - i }
}
