// decode/encode/hex/parseU64 (contract/CONTRACT.md section 2): round trips, `bit N` for unknown bits, bit 63
// as a bigint (never a Number shift), and the JSON spelling of 64-bit values (DESIGN.md conventions).
import t from 'tap'
import { decode, encode, hex, parseU64 } from './bits.js'
import { ARCH_CAPABILITIES, REGISTERS, SPEC_CTRL, VIRTUAL_MITIGATION_CTRL, bit, mask, msrDef, MSR } from './registers.js'

t.test('decode names known bits and lists unknown set bits as "bit N"', async t => {
  // SPEC_CTRL bit 9 is undefined (contract/CONTRACT.md section 2).
  t.same(decode(SPEC_CTRL, 0x641n), ['IBRS', 'RRSBA_DIS_S', 'bit 9', 'BHI_DIS_S'], 'in bit order')
  t.same(decode(SPEC_CTRL, 0x200n), ['bit 9'])
  t.same(decode(SPEC_CTRL, 0n), [])
  t.same(decode(VIRTUAL_MITIGATION_CTRL, 0x7n), ['BHB_CLEAR_SEQ_S_USED', 'RETPOLINE_S_USED', 'bit 2'])
})

t.test('bit 63 (ARCH_CAP VIRTUAL_ENUM) decodes and encodes as a 64-bit bigint', async t => {
  t.same(decode(ARCH_CAPABILITIES, 0x8000000000000000n), ['VIRTUAL_ENUM'])
  t.equal(encode(ARCH_CAPABILITIES, ['VIRTUAL_ENUM']), 0x8000000000000000n)
  t.equal(bit(63), 0x8000000000000000n)
  t.equal(mask(ARCH_CAPABILITIES, 'VIRTUAL_ENUM'), 1n << 63n)
  // bit 62 ITS_NO next to it, and an undefined high bit.
  t.same(decode(ARCH_CAPABILITIES, 0xe000000000000000n), ['bit 61', 'ITS_NO', 'VIRTUAL_ENUM'])
  t.same(decode(SPEC_CTRL, 1n << 63n), ['bit 63'])
})

t.test('decode/encode round-trip for every defined bit and for all-ones', async t => {
  for (const reg of REGISTERS) {
    for (const b of reg.bits) {
      t.equal(encode(reg, decode(reg, bit(b.bit))), bit(b.bit), `${reg.name} ${b.name}`)
      t.same(decode(reg, encode(reg, [b.name])), [b.name], `${reg.name} ${b.name} back`)
    }
    const all = (1n << 64n) - 1n
    t.equal(encode(reg, decode(reg, all)), all, `${reg.name}: all 64 bits survive`)
    t.equal(decode(reg, all).length, 64)
  }
})

t.test('encode accepts "bit N" below 64 and refuses other names with the valid ones listed', async t => {
  t.equal(encode(SPEC_CTRL, ['bit 9', 'BHI_DIS_S']), 0x600n)
  t.equal(encode(SPEC_CTRL, ['bit 63']), 1n << 63n)
  t.throws(() => encode(SPEC_CTRL, ['bit 64']), { name: 'RangeError', message: /IA32_SPEC_CTRL: unknown bit name "bit 64".*BHI_DIS_S/ })
  t.throws(() => encode(SPEC_CTRL, ['BHI_CTRL']), /unknown bit name "BHI_CTRL"/, 'a CPUID name is not a SPEC_CTRL bit')
  t.throws(() => mask(SPEC_CTRL, 'NOPE'), /IA32_SPEC_CTRL has no bit named NOPE/)
})

t.test('hex spells values as lower-case "0x" without padding', async t => {
  t.equal(hex(0n), '0x0')
  t.equal(hex(0x8000000000000000n), '0x8000000000000000')
  t.equal(hex(0xABCn), '0xabc')
  t.equal(hex(0x80000000), '0x80000000', 'a Number with bit 31 set stays positive')
})

t.test('parseU64 accepts the JSON/YAML spellings and refuses anything outside 0..2^64-1', async t => {
  t.equal(parseU64('0xffffffffffffffff'), (1n << 64n) - 1n)
  t.equal(parseU64('0xFF'), 0xffn)
  t.equal(parseU64('18446744073709551615'), (1n << 64n) - 1n)
  t.equal(parseU64('18446744073709551616'), undefined, '2^64 is out of range')
  t.equal(parseU64('0x10000000000000000'), undefined, '17 hex digits')
  t.equal(parseU64(42), 42n)
  t.equal(parseU64(2 ** 53), undefined, 'unsafe Number refused (precision already lost)')
  t.equal(parseU64(-1), undefined)
  t.equal(parseU64(-1n), undefined)
  t.equal(parseU64(1n << 63n), 1n << 63n)
  t.equal(parseU64('0x'), undefined)
  t.equal(parseU64('-0x1'), undefined)
  t.equal(parseU64(' 1'), undefined)
  t.equal(parseU64(1.5), undefined)
  t.equal(parseU64(null), undefined)
})

t.test('msrDef finds the contract MSRs by index (contract/CONTRACT.md section 2)', async t => {
  t.equal(msrDef(MSR.VIRTUAL_MITIGATION_CTRL)?.name, 'MSR_VIRTUAL_MITIGATION_CTRL')
  t.equal(msrDef(0x50000002), msrDef(MSR.VIRTUAL_MITIGATION_CTRL))
  t.equal(msrDef(0x10a)?.name, 'IA32_ARCH_CAPABILITIES')
  t.equal(msrDef(7), undefined, 'CPUID leaf 7 is not an MSR')
})
