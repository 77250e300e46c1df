// Decode/encode 64-bit register values against a RegisterDef (contract/CONTRACT.md section 2).
import { bit, type RegisterDef } from './registers.js'

/** The 64 single-bit masks, built once: the probe decodes registers for every CPU (bench/probe.mjs). */
const MASKS: readonly bigint[] = Array.from({ length: 64 }, (_, n) => bit(n))

/** Names of the set bits; set bits the definition does not know appear as `bit N`. */
export function decode(reg: RegisterDef, value: bigint): string[] {
  const out: string[] = []
  for (let n = 0; n < 64; n++) {
    const m = MASKS[n]!
    if (value >= 0n && m > value) break // no set bits left above n
    if ((value & m) === 0n) continue
    out.push(reg.bits.find(b => b.bit === n)?.name ?? `bit ${n}`)
  }
  return out
}

/** Value with the named bits set; accepts `bit N` for bits the definition does not name. */
export function encode(reg: RegisterDef, names: readonly string[]): bigint {
  let v = 0n
  for (const name of names) {
    const known = reg.bits.find(b => b.name === name)
    const raw = /^bit (\d+)$/.exec(name)
    if (known) v |= bit(known.bit)
    else if (raw && Number(raw[1]) < 64) v |= bit(Number(raw[1]))
    else throw new RangeError(`${reg.name}: unknown bit name "${name}" (expected one of ${reg.bits.map(b => b.name).join(', ')}, or "bit N" with N < 64)`)
  }
  return v
}

/** "0x" hex with no padding: the JSON spelling of every 64-bit value in this project. */
export const hex = (v: bigint | number): string => '0x' + v.toString(16)

/** Parse a JSON/YAML spelling of a 64-bit unsigned value: "0x..." hex, decimal string, bigint or safe integer. */
export function parseU64(v: unknown): bigint | undefined {
  let b: bigint
  if (typeof v === 'bigint') b = v
  else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v)
  else if (typeof v === 'string' && /^(0x[0-9a-fA-F]{1,16}|[0-9]{1,20})$/.test(v)) b = BigInt(v)
  else return undefined
  return b >= 0n && b < (1n << 64n) ? b : undefined
}
