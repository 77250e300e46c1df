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

// ---- a very small assembler: bytes, labels, rel8 jumps -------------------------------------
type Item = { bytes: number[] } | { label: string } | { jmp8: number; to: string }
const le16 = (v: number) => [v & 0xff, (v >> 8) & 0xff]

const asm = {
  out_imm8_al: (port: number): Item => ({ bytes: [0xe6, port] }),               // E6 ib      out imm8, al
  mov_al_moffs: (off: number): Item => ({ bytes: [0xa0, ...le16(off)] }),        // A0 mo16    mov al, [off]
  mov_byte_mem_imm: (off: number, v: number): Item => ({ bytes: [0xc6, 0x06, ...le16(off), v] }), // C6 /0 mod=00 rm=110 disp16 ib
  cmp_al_imm8: (v: number): Item => ({ bytes: [0x3c, v] }),                      // 3C ib      cmp al, imm8
  je: (to: string): Item => ({ jmp8: 0x74, to }),                                // 74 cb      je rel8
  jmp: (to: string): Item => ({ jmp8: 0xeb, to }),                               // EB cb      jmp rel8
  mov_eax_mem: (off: number): Item => ({ bytes: [0x66, 0xa1, ...le16(off)] }),   // 66 A1 mo16 mov eax, [off]
  mov_mem_eax: (off: number): Item => ({ bytes: [0x66, 0xa3, ...le16(off)] }),   // 66 A3 mo16 mov [off], eax
  // 66 8B /r (load) and 66 89 /r (store), modrm mod=00 rm=110 (disp16): reg ecx=1, edx=2, ebx=3
  mov_r32_mem: (reg: number, off: number): Item => ({ bytes: [0x66, 0x8b, (reg << 3) | 0x06, ...le16(off)] }),
  mov_mem_r32: (off: number, reg: number): Item => ({ bytes: [0x66, 0x89, (reg << 3) | 0x06, ...le16(off)] }),
  cpuid: (): Item => ({ bytes: [0x0f, 0xa2] }),
  rdmsr: (): Item => ({ bytes: [0x0f, 0x32] }),
  wrmsr: (): Item => ({ bytes: [0x0f, 0x30] }),
  hlt: (): Item => ({ bytes: [0xf4] }),
  label: (label: string): Item => ({ label }),
}
const ECX = 1, EDX = 2, EBX = 3

/** Assemble items at `origin`; returns the bytes and label addresses (relative to origin). */
export function assemble(items: readonly Item[]): { code: Uint8Array; labels: Record<string, number> } {
  const labels: Record<string, number> = {}
  let pc = 0
  for (const it of items) {
    if ('label' in it) labels[it.label] = pc
    else pc += 'bytes' in it ? it.bytes.length : 2
  }
  const out: number[] = []
  for (const it of items) {
    if ('label' in it) continue
    if ('bytes' in it) { out.push(...it.bytes); continue }
    const target = labels[it.to]
    if (target === undefined) throw new Error(`payload: undefined label ${it.to}`)
    const rel = target - (out.length + 2)
    if (rel < -128 || rel > 127) throw new Error(`payload: jump to ${it.to} out of rel8 range`)
    out.push(it.jmp8, rel & 0xff)
  }
  return { code: Uint8Array.from(out), labels }
}

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
