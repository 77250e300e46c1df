// The QMP client against a fake QMP server on a Unix socket (qmp-spec.rst framing).
import t from 'tap'
import os from 'node:os'
import path from 'node:path'
import { Qmp, QMP_MAX_LINE } from './qmp.js'
import { fakeQemu } from './testdata/fake-qmp.js'

t.test('greeting, capabilities, then commands; events between replies are skipped', async t => {
  const q0 = await fakeQemu(t, (cmd, send) => {
    send({ event: 'RESUME', timestamp: { seconds: 1, microseconds: 0 } })
    send({ return: { echo: cmd.execute, args: cmd.arguments ?? null } })
  })
  const q = await Qmp.connect(q0.sock)
  t.equal(q.version, '7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)')
  t.same(await q.execute('qom-get', { path: '/machine/unattached/device[0]', property: 'virt-miti-ctrl' }), { echo: 'qom-get', args: { path: '/machine/unattached/device[0]', property: 'virt-miti-ctrl' } })
  t.same(await q.execute('query-uuid'), { echo: 'query-uuid', args: null })
  t.same(q0.seen, ['qmp_capabilities', 'qom-get', 'query-uuid'], 'capabilities negotiated first')
  q.close()
})

t.test('an error reply rejects with its class and description', async t => {
  const q0 = await fakeQemu(t, (_c, send) => send({ error: { class: 'GenericError', desc: "Property 'x86_64-cpu.virt-miti-ctrl' not found" } }))
  const q = await Qmp.connect(q0.sock)
  await t.rejects(q.execute('qom-get'), { message: "QMP: Property 'x86_64-cpu.virt-miti-ctrl' not found", qmpClass: 'GenericError' })
  q.close()
})

t.test('untrusted replies: non-JSON and oversize lines fail the connection, never throw out of band', async t => {
  const q1 = await fakeQemu(t, (_c, _s, raw) => raw('this is not json\n'))
  const a = await Qmp.connect(q1.sock)
  await t.rejects(a.execute('query-status'), /not JSON/)
  const q2 = await fakeQemu(t, (_c, _s, raw) => raw('x'.repeat(QMP_MAX_LINE + 10)))
  const b = await Qmp.connect(q2.sock)
  await t.rejects(b.execute('query-status'), /longer than/)
})

t.test('no reply: the timeout rejects', async t => {
  const q0 = await fakeQemu(t, () => { /* silent */ })
  const q = await Qmp.connect(q0.sock, 300)
  await t.rejects(q.execute('query-status'), /no reply within 300 ms/)
})

t.test('a socket nobody listens on: connect rejects', async t => {
  await t.rejects(Qmp.connect(path.join(os.tmpdir(), `vm-qmp-none-${process.pid}.sock`)), /QMP socket: connect/)
})
