// A very small 16-bit real-mode assembler, shared by the payload guests (host/vmm/kvm/payload.ts
// for the project's own VMM, host/qemu/kvm-payload.ts for a -bios image under QEMU -accel kvm):
// bytes, labels, rel8 jumps, rel16 calls/jumps. Encodings from the Intel SDM vol. 2 opcode tables;
// every item states its bytes, so a test can check them one by one.
export type Item =
  | { bytes: number[] }
  | { label: string }
  | { jmp8: number; to: string }
  | { rel16: number[]; to: string }

export const le16 = (v: number): number[] => [v & 0xff, (v >> 8) & 0xff]
export const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff]

/** 32-bit register numbers (ModRM reg field). */
export const EAX = 0, ECX = 1, EDX = 2, EBX = 3, ESP = 4, EBP = 5, ESI = 6, EDI = 7

export const asm = {
  out_imm8_al: (port: number): Item => ({ bytes: [0xe6, port] }),               // E6 ib      out imm8, al
  mov_al_moffs: (off: number): Item => ({ bytes: [0xa0, ...le16(off)] }),        // A0 mo16    mov al, [off]
  mov_byte_mem_imm: (off: number, v: number): Item => ({ bytes: [0xc6, 0x06, ...le16(off), v] }), // C6 /0 mod=00 rm=110 disp16 ib
  cmp_al_imm8: (v: number): Item => ({ bytes: [0x3c, v] }),                      // 3C ib      cmp al, imm8
  je: (to: string): Item => ({ jmp8: 0x74, to }),                                // 74 cb      je rel8
  jne: (to: string): Item => ({ jmp8: 0x75, to }),                               // 75 cb      jne rel8
  jmp: (to: string): Item => ({ jmp8: 0xeb, to }),                               // EB cb      jmp rel8
  loop: (to: string): Item => ({ jmp8: 0xe2, to }),                              // E2 cb      loop rel8 (CX)
  call: (to: string): Item => ({ rel16: [0xe8], to }),                           // E8 cw      call rel16
  jmp16: (to: string): Item => ({ rel16: [0xe9], to }),                          // E9 cw      jmp rel16
  ret: (): Item => ({ bytes: [0xc3] }),                                          // C3         ret (near)
  mov_eax_mem: (off: number): Item => ({ bytes: [0x66, 0xa1, ...le16(off)] }),   // 66 A1 mo16 mov eax, [off]
  mov_mem_eax: (off: number): Item => ({ bytes: [0x66, 0xa3, ...le16(off)] }),   // 66 A3 mo16 mov [off], eax
  // 66 8B /r (load) and 66 89 /r (store), modrm mod=00 rm=110 (disp16)
  mov_r32_mem: (reg: number, off: number): Item => ({ bytes: [0x66, 0x8b, (reg << 3) | 0x06, ...le16(off)] }),
  mov_mem_r32: (off: number, reg: number): Item => ({ bytes: [0x66, 0x89, (reg << 3) | 0x06, ...le16(off)] }),
  mov_r32_imm: (reg: number, v: number): Item => ({ bytes: [0x66, 0xb8 + reg, ...le32(v)] }), // 66 B8+rd id mov r32, imm32
  mov_r16_imm: (reg: number, v: number): Item => ({ bytes: [0xb8 + reg, ...le16(v)] }),      // B8+rw iw    mov r16, imm16
  mov_sreg_ax: (sreg: number): Item => ({ bytes: [0x8e, 0xc0 | (sreg << 3)] }),            // 8E /r      mov sreg, ax (ES=0 SS=2 DS=3)
  xor_r32_r32: (dst: number, src: number): Item => ({ bytes: [0x66, 0x31, 0xc0 | (src << 3) | dst] }), // 66 31 /r
  sub_r32_mem: (reg: number, off: number): Item => ({ bytes: [0x66, 0x2b, (reg << 3) | 0x06, ...le16(off)] }), // 66 2B /r sub r32, [off]
  sbb_r32_mem: (reg: number, off: number): Item => ({ bytes: [0x66, 0x1b, (reg << 3) | 0x06, ...le16(off)] }), // 66 1B /r sbb r32, [off]
  inc_dword_mem: (off: number): Item => ({ bytes: [0x66, 0xff, 0x06, ...le16(off)] }),   // 66 FF /0 inc dword [off]
  lodsb: (): Item => ({ bytes: [0xac] }),                                        // AC         lodsb (DS:SI)
  cli: (): Item => ({ bytes: [0xfa] }),
  cld: (): Item => ({ bytes: [0xfc] }),
  iret: (): Item => ({ bytes: [0xcf] }),
  cpuid: (): Item => ({ bytes: [0x0f, 0xa2] }),
  rdmsr: (): Item => ({ bytes: [0x0f, 0x32] }),
  wrmsr: (): Item => ({ bytes: [0x0f, 0x30] }),
  rdtsc: (): Item => ({ bytes: [0x0f, 0x31] }),
  hlt: (): Item => ({ bytes: [0xf4] }),
  label: (label: string): Item => ({ label }),
}

const itemSize = (it: Item): number =>
  'label' in it ? 0 : 'bytes' in it ? it.bytes.length : 'jmp8' in it ? 2 : it.rel16.length + 2

/** Assemble items; returns the bytes and label addresses (relative to the first byte). */
export function assemble(items: readonly Item[]): { code: Uint8Array; labels: Record<string, number> } {
  const labels: Record<string, number> = {}
  let pc = 0
  for (const it of items) {
    if ('label' in it) {
      if (it.label in labels) throw new Error(`payload: label ${it.label} defined twice`)
      labels[it.label] = pc
    }
    pc += itemSize(it)
  }
  const out: number[] = []
  for (const it of items) {
    if ('label' in it) continue
    if ('bytes' in it) { out.push(...it.bytes); continue }
    const target = labels[it.to]
    if (target === undefined) throw new Error(`payload: undefined label ${it.to}`)
    const end = out.length + itemSize(it)
    const rel = target - end
    if ('jmp8' in it) {
      if (rel < -128 || rel > 127) throw new Error(`payload: jump to ${it.to} out of rel8 range`)
      out.push(it.jmp8, rel & 0xff)
    } else {
      out.push(...it.rel16, ...le16(rel & 0xffff))
    }
  }
  return { code: Uint8Array.from(out), labels }
}
