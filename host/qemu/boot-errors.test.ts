// bootGuest's failure paths: clean errors, never an exception, no QEMU needed.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { bootGuest } from './boot.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-boot-errors-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
const file = path.join(dir, 'f')
fs.writeFileSync(file, 'x')

t.test('unreadable kernel or image is refused before QEMU starts', async t => {
  const r = await bootGuest({ image: file, kernel: path.join(dir, 'missing'), cpu: 'EPYC', workDir: dir })
  t.same([r.ok, r.wallMs], [false, 0])
  t.match(r.error, /kernel .*missing is not readable/)
})

t.test('an invalid command list is refused with the reason', async t => {
  const r = await bootGuest({ image: file, kernel: file, cpu: 'EPYC', workDir: dir, commands: [{ name: 'a b', command: 'true' }] })
  t.match(r.error, /invalid guest command list: name "a b"/)
})

t.test('a command line beyond x86 COMMAND_LINE_SIZE is refused', async t => {
  const commands = Array.from({ length: 40 }, (_, i) => ({ name: `c${i}`, command: 'echo ' + 'x'.repeat(40) }))
  const r = await bootGuest({ image: file, kernel: file, cpu: 'EPYC', workDir: dir, commands })
  t.match(r.error, /kernel command line is \d+ bytes; x86 keeps 2047/)
})

t.test('a missing QEMU binary is reported as not found', async t => {
  const r = await bootGuest({ image: file, kernel: file, cpu: 'EPYC', workDir: dir, qemu: path.join(dir, 'no-qemu') })
  t.equal(r.ok, false)
  t.match(r.error, /no-qemu not found/)
  t.equal(r.frames.errors[0]?.kind, 'missing-done', 'no frames: the parser says the guest never finished')
})
