// The payload guest: a tiny 16-bit real-mode program, encoded here byte by byte (no external
// assembler). Real mode is enough: CPUID, RDMSR and WRMSR are legal at CPL0 in real mode
// (Intel SDM vol 2: RDMSR/WRMSR "#GP(0) if the current privilege level is not 0"; real mode is CPL0).
//
// Loop (one copy per vCPU; each vCPU has its own mailbox page through DS = SS):
//   start: out SIGNAL_PORT, al        ; "done / ready": KVM_EXIT_IO, the VMM posts the next op
//          mov byte [FAULT], 0
//          dispatch on [OP]: 1 CPUID(IN0, IN1) -> OUT0..3 = EAX EBX ECX EDX
//                            2 RDMSR(IN0)      -> OUT0 = EAX, OUT1 = EDX
//                            3 WRMSR(IN0, EDX:EAX = IN2:IN1)
//          jmp start
//   #GP (IVT vector 13 at 0:0x34): set [FAULT] = 1, add 2 to the saved IP (CPUID, RDMSR and
//   WRMSR are all 2 bytes: 0F A2, 0F 32, 0F 30), iret. A #GP the VMM injects (kvm_run.msr.error = 1)
//   therefore shows as FAULT = 1 (KVM-NOTES.md: "error=1 injects #GP into the guest").
//   Every other vector: hlt (KVM_EXIT_HLT without an in-kernel irqchip), reported as an error.
// Cost: about 10 emulated instructions and one port-I/O exit per op (KVM-NOTES.md: ~2M instr/s, ~27 us/exit).

import { asm, assemble, ECX, EDX, EBX } from './asm16.js'

/** Guest-physical layout. */
export const GUEST_MEM_SIZE = 0x100000 // 1 MiB: real mode addresses at most 0x10FFEF
export const IVT_BASE = 0x0
export const CODE_BASE = 0x1000
/** Mailbox page of vCPU i: MAILBOX_BASE + i * MAILBOX_STRIDE; DS = SS = base >> 4, stack grows down from its end. */
export const MAILBOX_BASE = 0x10000
export const MAILBOX_STRIDE = 0x1000
export const MAX_VCPUS = (GUEST_MEM_SIZE - MAILBOX_BASE) / MAILBOX_STRIDE
/** KVM_SET_TSS_ADDR target: above guest RAM, below 4 GiB (kvmtool/QEMU use 0xfffbd000). */
export const TSS_ADDR = 0xfffbd000

/** The port the payload writes to signal "op done, ready for the next". */
export const SIGNAL_PORT = 0xf1

/** Mailbox field offsets (DS-relative). */
export const MB = { OP: 0x00, FAULT: 0x01, IN0: 0x04, IN1: 0x08, IN2: 0x0c, OUT0: 0x10, OUT1: 0x14, OUT2: 0x18, OUT3: 0x1c } as const
export const OP = { NONE: 0, CPUID: 1, RDMSR: 2, WRMSR: 3 } as const
export type OpKind = typeof OP[keyof typeof OP]

export const mailboxBase = (vcpu: number): number => MAILBOX_BASE + vcpu * MAILBOX_STRIDE

// The assembler is shared with host/qemu/kvm-payload.ts (asm16.ts).
export { assemble } from './asm16.js'

/** The payload program. Labels: start (entry), gp_handler, unexpected. */
export function payloadProgram(): { code: Uint8Array; labels: Record<string, number> } {
  return assemble([
    asm.label('start'),
    asm.out_imm8_al(SIGNAL_PORT),
    asm.mov_byte_mem_imm(MB.FAULT, 0),
    asm.mov_al_moffs(MB.OP),
    asm.cmp_al_imm8(OP.CPUID), asm.je('do_cpuid'),
    asm.cmp_al_imm8(OP.RDMSR), asm.je('do_rdmsr'),
    asm.cmp_al_imm8(OP.WRMSR), asm.je('do_wrmsr'),
    asm.jmp('start'),

    asm.label('do_cpuid'),
    asm.mov_eax_mem(MB.IN0),
    asm.mov_r32_mem(ECX, MB.IN1),
    asm.cpuid(),
    asm.mov_mem_eax(MB.OUT0),
    asm.mov_mem_r32(MB.OUT1, EBX),
    asm.mov_mem_r32(MB.OUT2, ECX),
    asm.mov_mem_r32(MB.OUT3, EDX),
    asm.jmp('start'),

    asm.label('do_rdmsr'),
    asm.mov_r32_mem(ECX, MB.IN0),
    asm.rdmsr(),
    asm.mov_mem_eax(MB.OUT0),
    asm.mov_mem_r32(MB.OUT1, EDX),
    asm.jmp('start'),

    asm.label('do_wrmsr'),
    asm.mov_r32_mem(ECX, MB.IN0),
    asm.mov_eax_mem(MB.IN1),
    asm.mov_r32_mem(EDX, MB.IN2),
    asm.wrmsr(),
    asm.jmp('start'),

    // #GP handler. Real mode pushes FLAGS, CS, IP (no error code): after push bp, [bp+2] = IP.
    asm.label('gp_handler'),
    { bytes: [0x55] },                    // push bp
    { bytes: [0x89, 0xe5] },              // mov bp, sp
    { bytes: [0x83, 0x46, 0x02, 0x02] },  // add word [bp+2], 2   (83 /0 ib, mod=01 rm=110 disp8; SS-relative)
    asm.mov_byte_mem_imm(MB.FAULT, 1),    // DS is the interrupted code's DS: this vCPU's mailbox
    { bytes: [0x5d] },                    // pop bp
    { bytes: [0xcf] },                    // iret

    // Any other exception: stop with HLT so the VMM sees KVM_EXIT_HLT instead of a silent loop.
    asm.label('unexpected'),
    asm.hlt(),
    asm.jmp('unexpected'),
  ])
}

/** Guest memory image: IVT (vector 13 -> gp_handler, others -> unexpected) and the code at CODE_BASE. */
export function writeImage(mem: Uint8Array): { entry: number } {
  const { code, labels } = payloadProgram()
  mem.set(code, CODE_BASE)
  const dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength)
  for (let v = 0; v < 256; v++) {
    // IVT entry v at 4*v: offset (u16), segment (u16); CS = 0 so offset = physical address.
    const target = CODE_BASE + (v === 13 ? labels.gp_handler! : labels.unexpected!)
    dv.setUint16(IVT_BASE + 4 * v, target, true)
    dv.setUint16(IVT_BASE + 4 * v + 2, 0, true)
  }
  return { entry: CODE_BASE + labels.start! }
}
