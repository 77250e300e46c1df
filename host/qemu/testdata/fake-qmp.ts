// A fake QMP server on a Unix socket (qmp-spec.rst framing) for the QMP client's and its users' tests.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

export type Handler = (cmd: { execute: string; arguments?: unknown }, send: (o: unknown) => void, raw: (s: string) => void) => void

export async function fakeQemu(t: { teardown: (f: () => void) => void }, handler: Handler, greeting: unknown = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'Debian 1:7.2+dfsg-7+deb12u18' }, capabilities: [] } }): Promise<{ sock: string; seen: string[] }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vm-qmp-t-'))
  const sock = path.join(dir, 'qmp.sock')
  const seen: string[] = []
  const conns: net.Socket[] = []
  const server = net.createServer(c => {
    conns.push(c)
    const send = (o: unknown) => c.write(JSON.stringify(o) + '\r\n')
    send(greeting)
    let buf = ''
    c.setEncoding('utf8').on('data', (d: string) => {
      buf += d
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl); buf = buf.slice(nl + 1)
        const cmd = JSON.parse(line) as { execute: string; arguments?: unknown }
        seen.push(cmd.execute)
        if (cmd.execute === 'qmp_capabilities') send({ return: {} })
        else handler(cmd, send, s => c.write(s))
      }
    })
  })
  await new Promise<void>(r => server.listen(sock, r))
  t.teardown(() => { for (const c of conns) c.destroy(); server.close(); fs.rmSync(dir, { recursive: true, force: true }) })
  return { sock, seen }
}
