// The udev image (image/build-udev-overlay.sh): the base image's bytes, then an overlay holding the
// real systemd-udevd, the files `guest install-service` writes (byte-equal to guest/service/units.ts),
// the systemctl shim as /bin/systemctl, flock, the onlining rule and the /init hook; cached, reproducible.
import t from 'tap'
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AGENT_BUNDLE } from './image.js'
import { buildUdevImage, udevOverlayScript } from './udev-image.js'
import { REPORT_CPU_SERVICE, UDEV_RULE } from '../../guest/service/units.js'

const HERE = path.dirname(new URL(import.meta.url).pathname)
const SCRIPT = udevOverlayScript(path.join(HERE, 'image', 'build-initramfs.sh'))
function skipReason(): string | undefined {
  if (!fs.existsSync('/lib/systemd/systemd-udevd')) return '/lib/systemd/systemd-udevd not found (apt-get install udev)'
  for (const tool of ['cpio', 'zstd', 'flock']) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }) } catch { return `${tool} not found (apt-get install cpio zstd util-linux)` }
  }
  if (!fs.existsSync(AGENT_BUNDLE)) return `${AGENT_BUNDLE} not built (make bundle): install-service is the bundle's own command`
  return undefined
}
const sha = (f: string): string => createHash('sha256').update(fs.readFileSync(f)).digest('hex')
t.setTimeout(120_000)

t.test('overlay contents, cache hit, byte-identical rebuild', { skip: skipReason() ?? false }, async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-udev-test-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const base = path.join(dir, 'initramfs-0123456789abcdef.cpio.zst')
  fs.writeFileSync(base, 'base image bytes\n')
  const first = buildUdevImage(AGENT_BUNDLE, base, dir, SCRIPT)
  t.equal(first.error, undefined, 'build succeeds')
  t.match(first.image, /initramfs-0123456789abcdef-udev-[0-9a-f]{16}\.cpio\.zst$/)
  const img = fs.readFileSync(first.image!)
  t.equal(img.subarray(0, 17).toString(), 'base image bytes\n', 'the base image comes first, unchanged')
  const root = path.join(dir, 'root')
  fs.mkdirSync(root)
  execFileSync('sh', ['-c', `tail -c +18 "$1" | zstd -dc | (cd "$2" && cpio -idm --quiet --no-absolute-filenames)`, 'sh', first.image!, root])
  const read = (p: string) => fs.readFileSync(path.join(root, p), 'utf8')
  t.equal(read('etc/udev/rules.d/90-virtmiti.rules'), UDEV_RULE, 'the installed rule, as install-service writes it')
  t.equal(read('etc/systemd/system/virtmiti-report@.service'), REPORT_CPU_SERVICE, 'the installed unit')
  t.equal(sha(path.join(root, 'usr/lib/virtmiti/virtmiti-guest.cjs')), sha(AGENT_BUNDLE), 'the agent install-service copied')
  t.equal(read('bin/systemctl'), fs.readFileSync(path.join(HERE, 'image', 'systemctl-shim.mjs'), 'utf8'), '/bin/systemctl is the shim')
  t.equal(sha(path.join(root, 'lib/systemd/systemd-udevd')), sha('/lib/systemd/systemd-udevd'), "Debian's systemd-udevd")
  for (const f of ['usr/bin/flock', 'etc/virtmiti/init.d/50-udev', 'bin/systemctl']) t.ok((fs.statSync(path.join(root, f)).mode & 0o111) !== 0, `${f} executable`)
  t.match(read('usr/lib/udev/rules.d/40-cpu-hotadd.rules'), /ACTION=="add".*ATTR\{online\}="1"/)
  const hit = buildUdevImage(AGENT_BUNDLE, base, dir, SCRIPT)
  t.same([hit.cacheHit, hit.image], [true, first.image])
  fs.rmSync(first.image!)
  t.equal(sha(buildUdevImage(AGENT_BUNDLE, base, dir, SCRIPT).image!), createHash('sha256').update(img).digest('hex'), 'rebuild is byte-identical')
  fs.appendFileSync(base, 'changed\n')
  t.not(buildUdevImage(AGENT_BUNDLE, base, dir, SCRIPT).key, first.key, 'a changed base image gives a new key')
  t.match(buildUdevImage(AGENT_BUNDLE, path.join(dir, 'nope'), dir, SCRIPT).error, /base image not found/)
})
