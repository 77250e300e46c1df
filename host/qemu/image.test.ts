// The image build is reproducible and cached by its inputs (issue 7). Uses a temp cache dir.
import t from 'tap'
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { buildImage, STAND_IN_AGENT } from './image.js'
import { cachedMatrixKernel } from './tier.js'

function skipReason(): string | undefined {
  for (const tool of ['busybox', 'cpio', 'zstd', 'rdmsr']) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }) } catch { return `${tool} not found (apt-get install busybox-static cpio zstd msr-tools)` }
  }
  return kernel.ok ? undefined : `${kernel.error} (bash .ci/setup fetches the matrix kernels)`
}
// The matrix's first kernel, from the kernel cache (never /boot).
const kernel = cachedMatrixKernel()
const sha = (f: string): string => createHash('sha256').update(fs.readFileSync(f)).digest('hex')
// Three image builds hash ~110 MB each: more than tap's default 30 s on a loaded machine.
t.setTimeout(180_000)
const skip = skipReason()

t.test('same inputs give the same bytes; a changed agent bundle gives a new key', { skip: skip ?? false, timeout: 120_000 }, async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-image-test-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  if (!kernel.ok) return
  const k = kernel.kernel
  const first = buildImage(STAND_IN_AGENT, k, dir)
  t.equal(first.error, undefined, 'build succeeds')
  t.equal(first.cacheHit, false, 'empty cache: built')
  t.match(first.key, /^[0-9a-f]{16}$/)
  t.equal(first.kernel, k.vmlinuz, 'the image is for the kernel it was given')
  const manifest = fs.readFileSync(first.image!.replace(/\.cpio(\.zst)?$/, '.manifest'), 'utf8')
  t.match(manifest, new RegExp(`^file /boot/config-${k.release.replace(/[.+]/g, '\\$&')} 0644 `, 'm'), "the kernel's config is in the image as /boot/config-<release>")
  const bytes = sha(first.image!)
  const hit = buildImage(STAND_IN_AGENT, k, dir)
  t.same([hit.cacheHit, hit.key, hit.image], [true, first.key, first.image], 'unchanged inputs: cache hit')
  fs.rmSync(first.image!)
  const rebuilt = buildImage(STAND_IN_AGENT, k, dir)
  t.same([rebuilt.cacheHit, rebuilt.key], [false, first.key], 'deleted entry is rebuilt under the same key')
  t.equal(sha(rebuilt.image!), bytes, 'rebuild is byte-identical (reproducible)')
  const other = path.join(dir, 'agent.mjs')
  fs.writeFileSync(other, fs.readFileSync(STAND_IN_AGENT, 'utf8') + '\n// changed\n')
  const changed = buildImage(other, k, dir)
  t.equal(changed.cacheHit, false, 'changed bundle: rebuilt')
  t.not(changed.key, first.key, 'changed bundle: new key')
  const missing = buildImage(path.join(dir, 'nope.mjs'), k, dir)
  t.same([missing.ok, /agent bundle not found/.test(missing.error ?? '')], [false, true], 'missing bundle is a clean error')
})

// Issue 15 item 4: the key is made of contents only, and node goes in stripped.
let binutils = true
try { execFileSync('sh', ['-c', 'command -v strip && command -v readelf'], { stdio: 'ignore' }) } catch { binutils = false }
t.test('a relative and an absolute path to the same bundle give one key and one image; node goes in stripped', { skip: skip ?? false, timeout: 120_000 }, async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-image-key-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  if (!kernel.ok) return
  const k = kernel.kernel
  const abs = path.join(dir, 'agent.mjs')
  fs.copyFileSync(STAND_IN_AGENT, abs)
  const a = buildImage(abs, k, path.join(dir, 'cache'))
  t.equal(a.error, undefined, 'build succeeds')
  const rel = path.relative(process.cwd(), abs)
  t.not(rel, abs, `relative path ${rel}`)
  const b = buildImage(rel, k, path.join(dir, 'cache'))
  t.same([b.cacheHit, b.key, b.image], [true, a.key, a.image], 'relative path: same key, cache hit')
  t.test('node in the image', { skip: binutils ? false : 'strip/readelf not found (apt-get install binutils)' }, async t => {
    // Measured against the host's node: stripped means no .symtab section, .dynsym kept.
    const sections = (f: string): string => execFileSync('readelf', ['-SW', f], { encoding: 'utf8' })
    const node = path.join(dir, 'node')
    execFileSync('sh', ['-c', 'cpio -i --quiet --to-stdout usr/bin/node < "$1" > "$2"', 'sh', a.image!, node])
    t.notMatch(sections(node), /\.symtab/, 'no symbol table')
    t.match(sections(node), /\.dynsym/, 'its dynamic symbols stay')
    const host = fs.realpathSync(process.execPath)
    if (/\.symtab/.test(sections(host))) t.ok(fs.statSync(node).size < fs.statSync(host).size, `stripped ${fs.statSync(node).size} < host ${fs.statSync(host).size} bytes`)
  })
})
