// qemuArgs/kernelCmdline for patched boots (pure): -cpu properties, -uuid, -L, -qmp, hold.
import t from 'tap'
import { kernelCmdline, qemuArgs, type BootOptions } from './boot.js'

const base: BootOptions = { image: '/i', kernel: '/k', cpu: 'Cascadelake-Server-v2' }
const held = async () => {}

t.test('patched boot arguments', async t => {
  const a = qemuArgs({ ...base, cpuProps: ['virt-miti=on', 'virt-miti-host-bhi-ctrl=on'], uuid: '0b9e3c4a-7f3d-4c1e-9a52-6f0e2d8b1c77', dataDirs: ['/usr/share/qemu', '/usr/share/seabios'], held }, 'tcg', '/c', '/f', '/s/qmp.sock')
  t.equal(a[a.indexOf('-cpu') + 1], 'Cascadelake-Server-v2,virt-miti=on,virt-miti-host-bhi-ctrl=on')
  t.equal(a[a.indexOf('-uuid') + 1], '0b9e3c4a-7f3d-4c1e-9a52-6f0e2d8b1c77')
  t.same(a.filter((_, i) => a[i - 1] === '-L'), ['/usr/share/qemu', '/usr/share/seabios'])
  t.equal(a[a.indexOf('-qmp') + 1], 'unix:/s/qmp.sock,server=on,wait=off')
  t.match(a[a.indexOf('-append') + 1], / virtmiti\.hold=1 /, 'held: /init stays up for the host')
  t.notMatch(kernelCmdline({}), /virtmiti\.hold/, 'not held: /init powers off')
  const stock = qemuArgs(base, 'tcg', '/c', '/f')
  t.equal(stock[stock.indexOf('-cpu') + 1], 'Cascadelake-Server-v2')
  t.notOk(stock.includes('-qmp') || stock.includes('-uuid') || stock.includes('-L'), 'a stock boot has none of them')
})

t.test('properties and UUIDs that could inject QEMU options are refused', async t => {
  t.throws(() => qemuArgs({ ...base, cpuProps: ['virt-miti=on,kvm=off'] }, 'tcg', '/c', '/f'), /name=value words/)
  t.throws(() => qemuArgs({ ...base, cpuProps: ['-device'] }, 'tcg', '/c', '/f'), /name=value words/)
  t.throws(() => qemuArgs({ ...base, uuid: 'X,share=on' }, 'tcg', '/c', '/f'), /lower-case UUID/)
})
