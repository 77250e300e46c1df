// The kernel QEMU boots fastest (issue 15 item 4): under TCG, decompressing a bzImage took 2.7-4.4 s
// of an 8.7-10.9 s boot (KVM-NOTES.md "Newer guest kernels"). A bzImage carries its compressed
// vmlinux at a header-given offset (Linux Documentation/arch/x86/boot.rst, boot protocol >= 2.08:
// payload_offset 0x248, payload_length 0x24c, relative to the protected-mode code at
// (setup_sects + 1) * 512); uncompressed once, it is an ELF that QEMU's -kernel loads directly when
// it has a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, type 18, owner "Xen"; the kernel has it with
// CONFIG_PVH=y; QEMU hw/i386/x86.c load_elfboot). Cached by the vmlinuz's content hash outside the
// clone; a kernel that cannot be booted so (unknown compression, no PVH note) is booted as the
// bzImage, and the reason is given.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'

export const DEFAULT_BOOT_KERNEL_CACHE = '/var/cache/virtmiti/boot-kernels'
/** Bump when what is extracted, or how, changes: old entries are then ignored. */
const FORMAT = 1

export interface BzImageHeader { setupSects: number; protocol: number; payloadOffset: number; payloadLength: number }

/** The setup header of a bzImage (pure), or why the file is not one the extraction can read. */
export function parseBzImage(b: Uint8Array): BzImageHeader | { error: string } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength)
  if (buf.length < 0x250) return { error: `${buf.length} bytes: too short for a bzImage setup header` }
  if (buf.toString('latin1', 0x202, 0x206) !== 'HdrS') return { error: 'no "HdrS" boot header at 0x202: not a bzImage' }
  const protocol = buf.readUInt16LE(0x206)
  if (protocol < 0x208) return { error: `boot protocol ${(protocol >> 8)}.${(protocol & 0xff).toString().padStart(2, '0')} has no payload_offset (needs 2.08)` }
  const setupSects = buf[0x1f1] || 4 // boot.rst: 0 means 4
  const payloadOffset = (setupSects + 1) * 512 + buf.readUInt32LE(0x248)
  const payloadLength = buf.readUInt32LE(0x24c)
  if (payloadLength === 0 || payloadOffset + payloadLength > buf.length) return { error: `payload ${payloadOffset}+${payloadLength} lies outside the ${buf.length}-byte file` }
  return { setupSects, protocol, payloadOffset, payloadLength }
}

export type Compression = 'gzip' | 'xz' | 'zstd' | 'lzma' | 'bzip2' | 'lz4' | 'lzo'

/** The payload's format from its magic (Linux scripts/extract-vmlinux uses the same magics). */
export function compressionOf(p: Uint8Array): Compression | undefined {
  const starts = (...m: number[]) => m.every((x, i) => p[i] === x)
  if (starts(0x1f, 0x8b)) return 'gzip'
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'xz'
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd'
  if (starts(0x5d, 0x00, 0x00)) return 'lzma'
  if (starts(0x42, 0x5a, 0x68)) return 'bzip2'
  if (starts(0x02, 0x21, 0x4c, 0x18)) return 'lz4'
  if (starts(0x89, 0x4c, 0x5a, 0x4f)) return 'lzo'
  return undefined
}

/** Whether an ELF64 little-endian x86-64 image has a PT_NOTE with the Xen PVH entry note (pure). */
export function hasPvhNote(b: Uint8Array): { ok: true } | { ok: false; why: string } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength)
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) return { ok: false, why: 'not an ELF file' }
  if (buf[4] !== 2 || buf[5] !== 1) return { ok: false, why: 'not a 64-bit little-endian ELF' }
  if (buf.readUInt16LE(18) !== 62) return { ok: false, why: `ELF machine ${buf.readUInt16LE(18)} is not x86-64 (62)` }
  const phoff = Number(buf.readBigUInt64LE(32))
  const phentsize = buf.readUInt16LE(54), phnum = buf.readUInt16LE(56)
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize
    if (ph + 56 > buf.length) break
    if (buf.readUInt32LE(ph) !== 4) continue // PT_NOTE
    const off = Number(buf.readBigUInt64LE(ph + 8)), size = Number(buf.readBigUInt64LE(ph + 32))
    for (let n = off; n + 12 <= Math.min(off + size, buf.length);) {
      const namesz = buf.readUInt32LE(n), descsz = buf.readUInt32LE(n + 4), type = buf.readUInt32LE(n + 8)
      const name = buf.toString('latin1', n + 12, n + 12 + Math.max(0, namesz - 1))
      if (name === 'Xen' && type === 18) return { ok: true }
      n += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    }
  }
  return { ok: false, why: 'no XEN_ELFNOTE_PHYS32_ENTRY note (kernel built without CONFIG_PVH)' }
}

/** Decompress with a tool that stops at the end of the first stream (the kernel appends a size word). */
function decompress(kind: Compression, payload: Buffer): Buffer | { error: string } {
  if (kind === 'gzip') {
    try { return zlib.gunzipSync(payload) } catch (e) { return { error: `gunzip: ${(e as Error).message}` } }
  }
  const argv: Record<string, string[] | undefined> = { xz: ['xz', '-dc', '--single-stream'], lzma: ['xz', '-dc', '--format=lzma', '--single-stream'], zstd: ['zstd', '-dcq'] }
  const cmd = argv[kind]
  if (!cmd) return { error: `no decompressor wired for ${kind}` }
  // zstd has no --single-stream: drop the 4-byte size word Linux's size_append puts after the frame.
  const input = kind === 'zstd' ? payload.subarray(0, payload.length - 4) : payload
  const r = spawnSync(cmd[0]!, cmd.slice(1), { input, maxBuffer: 1 << 30, timeout: 120_000 })
  if (r.error) return { error: `${cmd[0]}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message} (apt-get install xz-utils zstd)` }
  if (r.status !== 0) return { error: `${cmd.join(' ')} exited ${r.status}: ${r.stderr.toString().trim().split('\n').pop() ?? ''}` }
  return r.stdout
}

export interface BootKernel {
  /** What to give QEMU's -kernel. */
  path: string
  kind: 'vmlinux-pvh' | 'as-given'
  /** Why this kind: the extracted file, or why the bzImage is booted as it is. */
  reason: string
  /** sha256 of the vmlinuz (the cache key). */
  sha256?: string
  cacheHit: boolean
  ms: number
}

interface CacheInfo { format: number; kind: BootKernel['kind']; reason: string; source: string; bytes?: number }

/**
 * The kernel to boot for `vmlinuz`: its uncompressed PVH vmlinux, extracted once into
 * `cacheDir/<sha256>/vmlinux` (VIRTMITI_BOOT_KERNEL_CACHE overrides the default), or the vmlinuz itself
 * with the reason. Never throws: an unreadable cache falls back to the bzImage too.
 */
export function bootableKernel(vmlinuz: string, cacheDir = process.env['VIRTMITI_BOOT_KERNEL_CACHE'] || DEFAULT_BOOT_KERNEL_CACHE): BootKernel {
  const t0 = performance.now()
  const done = (k: Omit<BootKernel, 'ms'>): BootKernel => ({ ...k, ms: performance.now() - t0 })
  let data: Buffer
  try { data = fs.readFileSync(vmlinuz) } catch (e) {
    return done({ path: vmlinuz, kind: 'as-given', reason: `cannot read ${vmlinuz}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, cacheHit: false })
  }
  // Not a bzImage (an ELF already, a test's stand-in): boot it as it is; nothing to cache.
  const h = parseBzImage(data)
  if ('error' in h) return done({ path: vmlinuz, kind: 'as-given', reason: `booting the file as given: ${h.error}`, cacheHit: false })
  const sha256 = createHash('sha256').update(data).digest('hex')
  const dir = path.join(cacheDir, sha256)
  const out = path.join(dir, 'vmlinux')
  const infoFile = path.join(dir, 'info.json')
  try {
    const info = JSON.parse(fs.readFileSync(infoFile, 'utf8')) as CacheInfo
    if (info.format === FORMAT) {
      if (info.kind === 'as-given') return done({ path: vmlinuz, kind: 'as-given', reason: info.reason, sha256, cacheHit: true })
      if (fs.statSync(out).size === info.bytes) return done({ path: out, kind: 'vmlinux-pvh', reason: info.reason, sha256, cacheHit: true })
    }
  } catch { /* no entry yet, or a broken one: make it again */ }
  const made = extract(data)
  const info: CacheInfo = { format: FORMAT, kind: 'elf' in made ? 'vmlinux-pvh' : 'as-given', reason: made.reason, source: vmlinuz }
  try {
    fs.mkdirSync(dir, { recursive: true })
    if ('elf' in made) {
      const tmp = `${out}.${process.pid}.tmp`
      fs.writeFileSync(tmp, made.elf)
      fs.renameSync(tmp, out)
      info.bytes = made.elf.length
    }
    const tmpInfo = `${infoFile}.${process.pid}.tmp`
    fs.writeFileSync(tmpInfo, JSON.stringify(info) + '\n')
    fs.renameSync(tmpInfo, infoFile)
  } catch (e) {
    return done({ path: vmlinuz, kind: 'as-given', reason: `cannot write the extracted kernel under ${cacheDir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, sha256, cacheHit: false })
  }
  return done({ path: 'elf' in made ? out : vmlinuz, kind: info.kind, reason: made.reason, sha256, cacheHit: false })
}

/** bzImage bytes -> the PVH-bootable ELF, or the reason to boot the bzImage as it is (pure but for the decompressor). */
export function extract(data: Buffer): { elf: Buffer; reason: string } | { reason: string } {
  const h = parseBzImage(data)
  if ('error' in h) return { reason: `booting the file as given: ${h.error}` }
  const payload = data.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength)
  const kind = compressionOf(payload)
  if (!kind) return { reason: 'booting the bzImage: its payload has an unknown compression magic' }
  const elf = decompress(kind, payload)
  if ('error' in elf) return { reason: `booting the bzImage: ${kind} payload not extracted: ${elf.error}` }
  const pvh = hasPvhNote(elf)
  if (!pvh.ok) return { reason: `booting the bzImage: the extracted vmlinux cannot be booted directly: ${pvh.why}` }
  return { elf, reason: `uncompressed ${kind} vmlinux (${(elf.length / 1048576).toFixed(1)} MiB) with a PVH entry note: QEMU loads it without the in-guest decompression` }
}
