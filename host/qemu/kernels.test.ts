// Kernels as data (issue 15 item 1) without the network: kernel.env parsing, fetched roots, kernels
// named by file, and fetch-kernel.sh's input errors and --cached-only on an empty cache.
import t from 'tap'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { kernelFromFile, kernelFromRoot, originText, parseKernelEnv, resolveKernel } from './kernels.js'

const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-k-'))
const touch = (f: string, text = 'x'): void => { fs.mkdirSync(path.dirname(f), { recursive: true }); fs.writeFileSync(f, text) }

t.test('a fetched root: kernel.env names the files; origin keeps every .deb and its sha256', async t => {
  const root = tmp()
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
  const env = "RELEASE='7.2.13+deb14-amd64'\nVMLINUZ='usr/lib/modules/7.2.13+deb14-amd64/vmlinuz'\nMODULES='usr/lib/modules/7.2.13+deb14-amd64'\nCONFIG='usr/lib/modules/7.2.13+deb14-amd64/config'\nSUITE='sid'\nPACKAGE='linux-image-amd64'\nVERSION='7.2.13-1'\nDEBS='linux-image-amd64=7.2.13-1=aa linux-binary-7.2.13+deb14-amd64=7.2.13-1=bb'\n"
  t.same(parseKernelEnv(env)['RELEASE'], '7.2.13+deb14-amd64')
  touch(path.join(root, 'kernel.env'), env)
  const r = kernelFromRoot('7.2', root)
  if (!r.ok) return t.fail(r.error)
  t.equal(r.kernel.vmlinuz, path.join(root, 'usr/lib/modules/7.2.13+deb14-amd64/vmlinuz'))
  t.same(r.kernel.origin, { suite: 'sid', package: 'linux-image-amd64', version: '7.2.13-1', debs: [{ package: 'linux-image-amd64', version: '7.2.13-1', sha256: 'aa' }, { package: 'linux-binary-7.2.13+deb14-amd64', version: '7.2.13-1', sha256: 'bb' }] })
  t.equal(originText({ version: r.kernel.release, origin: r.kernel.origin }), '7.2.13+deb14-amd64 (sid linux-image-amd64 7.2.13-1)')
  touch(path.join(root, 'kernel.env'), "RELEASE='x'\n")
  t.match(kernelFromRoot('7.2', root), { ok: false, kind: 'infra', error: /lacks VMLINUZ, MODULES/ })
})

t.test('a kernel named by file: /boot layout and the 7.x modules layout; missing pieces are input errors', async t => {
  const top = tmp()
  t.teardown(() => fs.rmSync(top, { recursive: true, force: true }))
  touch(path.join(top, 'boot/vmlinuz-6.1.0-9-amd64'), 'kernel bytes')
  touch(path.join(top, 'lib/modules/6.1.0-9-amd64/kernel/arch/x86/kernel/msr.ko'))
  t.match(kernelFromFile('f', path.join(top, 'boot/vmlinuz-6.1.0-9-amd64')), { ok: false, kind: 'input', error: /no config-6\.1\.0-9-amd64/ })
  touch(path.join(top, 'boot/config-6.1.0-9-amd64'), 'CONFIG_KVM=m\n')
  const r = kernelFromFile('f', path.join(top, 'boot/vmlinuz-6.1.0-9-amd64'))
  if (!r.ok) return t.fail(r.error)
  t.same([r.kernel.release, r.kernel.modulesDir, r.kernel.config], ['6.1.0-9-amd64', path.join(top, 'lib/modules/6.1.0-9-amd64'), path.join(top, 'boot/config-6.1.0-9-amd64')])
  t.same(r.kernel.origin, { file: path.join(top, 'boot/vmlinuz-6.1.0-9-amd64'), sha256: createHash('sha256').update('kernel bytes').digest('hex') })
  const d7 = path.join(top, 'usr/lib/modules/7.3.4+deb13-amd64')
  touch(path.join(d7, 'vmlinuz')); touch(path.join(d7, 'config')); touch(path.join(d7, 'kernel/arch/x86/kernel/cpuid.ko.xz'))
  t.match(kernelFromFile('f7', path.join(d7, 'vmlinuz')), { ok: true, kernel: { release: '7.3.4+deb13-amd64', modulesDir: d7, config: path.join(d7, 'config') } })
  t.match(kernelFromFile('x', path.join(top, 'nope')), { ok: false, kind: 'input', error: /ENOENT/ })
  t.match(kernelFromFile('x', path.join(d7, 'config')), { ok: false, kind: 'input', error: /expected \.\.\.\/boot\/vmlinuz-<release>/ })
})

t.test('fetch-kernel.sh: bad names are input errors; --cached-only on an empty cache says so (no network)', async t => {
  const cache = tmp()
  t.teardown(() => fs.rmSync(cache, { recursive: true, force: true }))
  const env = { ...process.env, VIRTMITI_KERNEL_CACHE: cache }
  t.match(resolveKernel({ id: 'k', suite: 'Bad Suite', package: 'linux-image-amd64' }, { env }), { ok: false, kind: 'input', error: /bad suite name/ })
  t.match(resolveKernel({ id: 'k', suite: 'trixie', package: 'linux-image-amd64' }, { env, cachedOnly: true }), { ok: false, kind: 'not-cached', error: /trixie linux-image-amd64 not in / })
})
