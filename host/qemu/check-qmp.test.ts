// `virtmiti host check --qmp SOCKET` against a fake QMP QEMU serving the QOM properties of the
// patch series, with the guest report of a recorded patched boot (SW loop, CTRL 0x1).
import t from 'tap'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { main as checkMain } from '../cli/check.js'
import { UsageError } from '../../bin/lib/cli.js'
import { QOM_CONFIG, QOM_VCPU_REGS } from './qemu-state.js'
import { loadRecordedBoot } from './recorded-boot.js'

const REC = loadRecordedBoot('patched-cascadelake-v2-on-cascade-lake')
const report = REC.sections['report']!.output
const vmUuid = (JSON.parse(report) as { vmUuid: string }).vmUuid

/** A QEMU answering query-cpus-fast, query-uuid and qom-get; `props` null = stock QEMU. */
async function fakeQemu(t: { teardown: (f: () => void) => void }, props: Record<string, unknown> | null): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vm-cq-'))
  const sock = path.join(dir, 'qmp.sock')
  const conns: net.Socket[] = []
  const server = net.createServer(c => {
    conns.push(c)
    const send = (o: unknown) => c.write(JSON.stringify(o) + '\n')
    send({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: '' }, capabilities: [] } })
    let buf = ''
    c.setEncoding('utf8').on('data', (d: string) => {
      buf += d
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string; arguments?: { property: string } }
        buf = buf.slice(nl + 1)
        if (cmd.execute === 'query-cpus-fast') send({ return: [0, 1].map(i => ({ 'cpu-index': i, 'qom-path': `/machine/unattached/device[${i}]` })) })
        else if (cmd.execute === 'query-uuid') send({ return: { UUID: vmUuid } })
        else if (cmd.execute === 'qom-get') {
          const p = cmd.arguments!.property
          if (props && p in props) send({ return: props[p] })
          else send({ error: { class: 'GenericError', desc: `Property 'x86_64-cpu.${p}' not found` } })
        } else send({ return: {} })
      }
    })
  })
  await new Promise<void>(r => server.listen(sock, r))
  t.teardown(() => { for (const c of conns) c.destroy(); server.close(); fs.rmSync(dir, { recursive: true, force: true }) })
  return sock
}

/** Cascade Lake host (no BHI_CTRL): nothing forced for CTRL 0x1. */
const cascadeLake = (over: Record<string, unknown> = {}) => ({
  [QOM_CONFIG.virtMiti]: true, [QOM_CONFIG.archCapabilities]: true, [QOM_CONFIG.mitiEnum]: 3,
  [QOM_CONFIG.bhiCtrl]: false, [QOM_CONFIG.bhiNo]: false, [QOM_CONFIG.rrsbaCtrl]: false, [QOM_CONFIG.rrsba]: true,
  [QOM_CONFIG.stibp]: true, [QOM_CONFIG.ssbd]: true, [QOM_CONFIG.forceMask]: 0, [QOM_CONFIG.forceValue]: 0, [QOM_CONFIG.fault]: null,
  [QOM_VCPU_REGS.mitiCtrl]: 1, [QOM_VCPU_REGS.forcedMask]: 0, [QOM_VCPU_REGS.forcedValue]: 0,
  [QOM_VCPU_REGS.specCtrlShadow]: 1, [QOM_VCPU_REGS.specCtrlEffective]: 1, [QOM_VCPU_REGS.specCtrlGuestRead]: 1, [QOM_VCPU_REGS.specCtrlGuestReads]: 2,
  ...over,
})

function io() {
  const o = { out: '', err: '' }
  return { o, io: { out: (s: string) => { o.out += s }, err: (s: string) => { o.err += s } } }
}

const reportFile = (): string => {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vm-cq-r-')), 'report.json')
  fs.writeFileSync(f, report)
  return f
}

t.test('--qmp: a live patched QEMU that holds what the guest wrote passes (exit 0)', async t => {
  const sock = await fakeQemu(t, cascadeLake())
  const c = io()
  t.equal(await checkMain(['--guest-report', reportFile(), '--qmp', sock, '--json'], { io: c.io }), 0, c.o.err)
  const j = JSON.parse(c.o.out)
  t.equal(j.ok, true)
  t.equal(j.vmUuid, vmUuid)
})

t.test('--qmp: the same guest on a BHI_CTRL host with nothing forced is a violation (exit 1), named', async t => {
  const sock = await fakeQemu(t, cascadeLake({ [QOM_CONFIG.bhiCtrl]: true }))
  const c = io()
  t.equal(await checkMain(['--guest-report', reportFile(), '--qmp', sock], { io: c.io }), 1)
  t.match(c.o.out, /BHI_DIS_S/)
})

t.test('--qmp: stock QEMU has none of the properties: input error (exit 2) naming the patches', async t => {
  const sock = await fakeQemu(t, null)
  const c = io()
  t.equal(await checkMain(['--guest-report', reportFile(), '--qmp', sock], { io: c.io }), 2)
  t.match(c.o.err, /not patched \(host\/qemu\/patches\)/)
})

t.test('--qmp and --vmm-state are exclusive; a dead socket is an input error', async t => {
  const e = await checkMain(['--guest-report', 'r', '--qmp', 's', '--vmm-state', 'v'], { io: io().io }).then(() => undefined, (x: unknown) => x)
  t.ok(e instanceof UsageError && /--vmm-state and --qmp are exclusive/.test(e.message), 'usage error')
  const c = io()
  t.equal(await checkMain(['--guest-report', reportFile(), '--qmp', path.join(os.tmpdir(), `vm-none-${process.pid}.sock`)], { io: c.io }), 2)
  t.match(c.o.err, /QMP socket: connect/)
})
