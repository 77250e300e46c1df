// The extracted-kernel path (issue 15 item 4): header, compression and PVH-note parsing on made-up
// images (each field the parser reads, and what it refuses), the cache, and the real /boot kernels:
// whether one boots directly is derived from its own config (CONFIG_PVH), never assumed.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'
import { bootableKernel, compressionOf, extract, hasPvhNote, parseBzImage } from './kernel-extract.js'

/** A minimal ELF64 x86-64 with one PT_NOTE holding the notes given as [owner, type]. */
function elf(notes: [string, number][]): Buffer {
  const body = Buffer.concat(notes.map(([name, type]) => {
    const n = Buffer.alloc((name.length + 1 + 3) & ~3); n.write(name, 'latin1')
    const h = Buffer.alloc(12); h.writeUInt32LE(name.length + 1, 0); h.writeUInt32LE(4, 4); h.writeUInt32LE(type, 8)
    return Buffer.concat([h, n, Buffer.alloc(4)])
  }))
  const b = Buffer.alloc(64 + 56)
  b.writeUInt32BE(0x7f454c46, 0); b[4] = 2; b[5] = 1; b.writeUInt16LE(62, 18)
  b.writeBigUInt64LE(64n, 32); b.writeUInt16LE(56, 54); b.writeUInt16LE(1, 56)
  b.writeUInt32LE(4, 64); b.writeBigUInt64LE(BigInt(64 + 56), 64 + 8); b.writeBigUInt64LE(BigInt(body.length), 64 + 32)
  return Buffer.concat([b, body])
}

/** A bzImage-shaped file: setup header (protocol 2.15), 2 setup sectors, the payload behind them. */
function bzImage(payload: Buffer, o: { magic?: string; protocol?: number } = {}): Buffer {
  const setupSects = 2
  const head = Buffer.alloc((setupSects + 1) * 512)
  head[0x1f1] = setupSects
  head.write(o.magic ?? 'HdrS', 0x202, 'latin1')
  head.writeUInt16LE(o.protocol ?? 0x20f, 0x206)
  const pad = 100 // payload_offset counts from the protected-mode code
  head.writeUInt32LE(pad, 0x248); head.writeUInt32LE(payload.length, 0x24c)
  return Buffer.concat([head, Buffer.alloc(pad), payload, Buffer.alloc(16)])
}

t.test('parseBzImage reads setup_sects, the protocol and the payload; refuses what is not one', async t => {
  const f = bzImage(Buffer.from('payload'))
  t.same(parseBzImage(f), { setupSects: 2, protocol: 0x20f, payloadOffset: 3 * 512 + 100, payloadLength: 7 })
  t.match(parseBzImage(bzImage(Buffer.from('x'), { magic: 'ELF!' })), { error: /no "HdrS"/ })
  t.match(parseBzImage(bzImage(Buffer.from('x'), { protocol: 0x207 })), { error: /boot protocol 2\.07 .*needs 2\.08/ })
  t.match(parseBzImage(Buffer.alloc(100)), { error: /too short/ })
  const cut = bzImage(Buffer.alloc(4000)).subarray(0, 2000)
  t.match(parseBzImage(cut), { error: /outside the 2000-byte file/ })
})

t.test('compressionOf knows the kernel compressors by magic', async t => {
  t.equal(compressionOf(zlib.gzipSync(Buffer.from('x'))), 'gzip')
  t.equal(compressionOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1])), 'xz')
  t.equal(compressionOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0])), 'zstd')
  t.equal(compressionOf(Buffer.from('plain')), undefined)
})

t.test('hasPvhNote: owner "Xen", type 18 (XEN_ELFNOTE_PHYS32_ENTRY); other notes do not count', async t => {
  t.same(hasPvhNote(elf([['Xen', 6], ['Xen', 18]])), { ok: true })
  t.match(hasPvhNote(elf([['Xen', 6], ['GNU', 18]])), { ok: false, why: /CONFIG_PVH/ })
  t.match(hasPvhNote(Buffer.from('not an elf at all, long enough to hold a header.................')), { ok: false, why: /not an ELF/ })
  const i386 = elf([['Xen', 18]]); i386.writeUInt16LE(3, 18)
  t.match(hasPvhNote(i386), { ok: false, why: /not x86-64/ })
})

t.test('extract: a gzip payload with a PVH note comes out whole; without the note the bzImage is booted', async t => {
  const vmlinux = elf([['Xen', 18]])
  const ok = extract(bzImage(Buffer.concat([zlib.gzipSync(vmlinux), Buffer.from([0, 0, 0, 0])])))
  t.ok('elf' in ok && ok.elf.equals(vmlinux), ok.reason)
  t.match(extract(bzImage(zlib.gzipSync(elf([['Xen', 6]])))), { reason: /booting the bzImage: .*CONFIG_PVH/ })
  t.match(extract(bzImage(Buffer.from('no known magic'))), { reason: /unknown compression/ })
})

t.test('bootableKernel caches by content: a second call, or the same bytes under another name, is a hit', async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-kx-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const k = path.join(dir, 'vmlinuz-test')
  fs.writeFileSync(k, bzImage(zlib.gzipSync(elf([['Xen', 18]]))))
  const cache = path.join(dir, 'cache')
  const a = bootableKernel(k, cache)
  t.same([a.kind, a.cacheHit, path.dirname(a.path)], ['vmlinux-pvh', false, path.join(cache, a.sha256!)])
  const b = bootableKernel(k, cache)
  t.same([b.kind, b.cacheHit, b.path], ['vmlinux-pvh', true, a.path])
  const copy = path.join(dir, 'renamed')
  fs.copyFileSync(k, copy)
  t.same([bootableKernel(copy, cache).cacheHit, bootableKernel(copy, cache).path], [true, a.path], 'content, not the name, is the key')
  const noPvh = path.join(dir, 'vmlinuz-nopvh')
  fs.writeFileSync(noPvh, bzImage(zlib.gzipSync(elf([['Xen', 6]]))))
  const c = bootableKernel(noPvh, cache)
  t.same([c.kind, c.path], ['as-given', noPvh], c.reason)
  t.same([bootableKernel(noPvh, cache).cacheHit, bootableKernel(noPvh, cache).kind], [true, 'as-given'], 'the refusal is cached too')
  const junk = path.join(dir, 'junk')
  fs.writeFileSync(junk, 'not a kernel')
  t.match(bootableKernel(junk, cache), { kind: 'as-given', path: junk, reason: /not a bzImage|too short/ })
})

// The real kernels here (Debian's; machines differ): CONFIG_PVH in the kernel's own config says
// whether the extraction must give a PVH vmlinux.
const bootKernels = fs.existsSync('/boot') ? fs.readdirSync('/boot').filter(f => /^vmlinuz-/.test(f)).map(f => path.join('/boot', f)) : []
t.test('the /boot kernels: extracted exactly when their config has CONFIG_PVH=y', { skip: bootKernels.length ? false : 'no /boot/vmlinuz-* here', timeout: 300_000 }, async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-kx-boot-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  for (const k of bootKernels) {
    const cfg = k.replace(/vmlinuz-/, 'config-')
    if (!fs.existsSync(cfg)) { t.comment(`${k}: no ${cfg} to derive the expectation from`); continue }
    const pvh = /^CONFIG_PVH=y$/m.test(fs.readFileSync(cfg, 'utf8'))
    const r = bootableKernel(k, dir)
    t.equal(r.kind, pvh ? 'vmlinux-pvh' : 'as-given', `${k} (CONFIG_PVH ${pvh ? 'y' : 'not set'}): ${r.reason}`)
    if (pvh) t.ok(hasPvhNote(fs.readFileSync(r.path)).ok, 'the file to boot carries the PVH note')
  }
})
