// The hot-plug sequence against a fake QMP server (query-hotpluggable-cpus, device_add,
// query-cpus-fast, qom-get) and a fake guest writing the events stream as image/udev/50-udev.sh does.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { hotplugVcpu, parseEvents, pickSlot, unitCpu } from './hotplug.js'
import { Qmp } from './qmp.js'
import { fakeQemu } from './testdata/fake-qmp.js'

/** One frame as /init's emit writes it (base64 at 76 columns). */
const frame = (name: string, exit: number, body: string, up = '12.5') =>
  `@@virtmiti-begin ${name}\n${(Buffer.from(body).toString('base64').match(/.{1,76}/g) ?? []).join('\n')}\n@@virtmiti-end ${name} ${exit} ${Buffer.byteLength(body)} ${up}\n`
const unitLog = (unit: string, status = 0) => `systemctl-shim: start ${unit} from /etc/systemd/system/virtmiti-report@.service\nsystemctl-shim: ExecStart=/usr/bin/flock ... -> exit ${status}\nsystemctl-shim: ${unit}: ${status ? `result exit-code, status ${status}` : 'result success'}\n`

const slots = (plugged: number) => [2, 1, 0].map(core => ({
  props: { 'core-id': core, 'thread-id': 0, 'socket-id': 0 }, 'vcpus-count': 1, type: 'Cascadelake-Server-v2-x86_64-cpu',
  ...(core < plugged ? { 'qom-path': `/machine/unattached/device[${core}]` } : {}),
}))

t.test('pickSlot: the first free slot, as device_add arguments; no free slot or odd replies are errors', async t => {
  t.same(pickSlot(slots(2)), { driver: 'Cascadelake-Server-v2-x86_64-cpu', props: { 'core-id': 2, 'thread-id': 0, 'socket-id': 0 } })
  t.match(pickSlot(slots(3)), /no free slot \(start QEMU with -smp N,maxcpus=M/)
  t.match(pickSlot({}), /expected a list/)
  t.match(pickSlot([{ type: 'x', 'vcpus-count': 2, props: {} }]), /free slot of 2 vCPUs/)
  t.match(pickSlot([{ type: 'x', 'vcpus-count': 1, props: { 'core-id': -1 } }]), /core-id=-1 is not an id/)
  t.match(pickSlot([{ type: 'x y', 'vcpus-count': 1, props: {} }]), /without a usable type/)
})

t.test('parseEvents: unit starts with the report after each; an open last frame is fine, other defects are not', async t => {
  const text = '@@virtmiti-hello 1 3.1\n' + frame('unit.1', 0, unitLog('virtmiti-report@cpu2.service')) + frame('report.1', 0, '{"cpus":[]}') + '@@virtmiti-begin unit.2\nAAAA\n'
  const ev = parseEvents(text)
  t.same(ev.errors, [])
  t.same(ev.starts.map(s => [s.k, s.unit, s.status, s.report, s.reportExit, s.uptimeS]), [[1, 'virtmiti-report@cpu2.service', 0, '{"cpus":[]}', 0, 12.5]])
  const bad = parseEvents(frame('unit.1', 0, 'x').replace('@@virtmiti-end unit.1 0 1', '@@virtmiti-end unit.1 0 9'))
  t.match(bad.errors, [/decoded 1 bytes, end line says 9/])
  t.equal(unitCpu('virtmiti-report@cpu12.service'), 12)
  t.equal(unitCpu('virtmiti-report.service'), undefined)
})

/** A fake patched QEMU: device_add plugs vCPU 2; `guest` says what the fake guest does then. */
async function fakeVm(t: Parameters<typeof fakeQemu>[0], guest: { ctrlAfterMs?: number; eventsAfterMs?: number; status?: number; unitCpu?: number }) {
  const events = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vm-hp-t-')), 'events.log')
  t.teardown(() => fs.rmSync(path.dirname(events), { recursive: true, force: true }))
  fs.writeFileSync(events, '@@virtmiti-hello 1 3.0\n')
  let plugged = 2, ctrl = 0
  const added: unknown[] = []
  const q0 = await fakeQemu(t, (cmd, send) => {
    const a = cmd.arguments as Record<string, unknown> | undefined
    if (cmd.execute === 'query-hotpluggable-cpus') send({ return: slots(plugged) })
    else if (cmd.execute === 'query-cpus-fast') send({ return: Array.from({ length: plugged }, (_, i) => ({ 'cpu-index': i, 'qom-path': i === 2 ? '/machine/peripheral/virtmiti-hotplug-1' : `/machine/unattached/device[${i}]`, target: 'x86_64' })) })
    else if (cmd.execute === 'device_add') {
      added.push(a); plugged = 3; send({ return: {} })
      if (guest.ctrlAfterMs !== undefined) setTimeout(() => { ctrl = 1 }, guest.ctrlAfterMs)
      if (guest.eventsAfterMs !== undefined) {
        setTimeout(() => fs.appendFileSync(events, frame('unit.1', guest.status ?? 0, unitLog(`virtmiti-report@cpu${guest.unitCpu ?? 2}.service`, guest.status)) + frame('report.1', 0, '{}')), guest.eventsAfterMs)
      }
    } else if (cmd.execute === 'qom-get' && a?.['path'] === '/machine/peripheral/virtmiti-hotplug-1' && a['property'] === 'virt-miti-ctrl') send({ return: ctrl })
    else send({ error: { class: 'GenericError', desc: `unexpected ${cmd.execute} ${JSON.stringify(a)}` } })
  })
  return { q: await Qmp.connect(q0.sock), events, added, seen: q0.seen }
}

t.test('hot-plug: device_add of the free slot, the new vCPU found, CTRL written, then the unit result', async t => {
  const vm = await fakeVm(t, { ctrlAfterMs: 300, eventsAfterMs: 700 })
  const r = await hotplugVcpu(vm.q, vm.events, { expectCtrl: 1n, resetCtrl: 0n, timeoutMs: 10_000, id: 'virtmiti-hotplug-1', guestCpus: [0, 1] })
  vm.q.close()
  t.equal(r.error, undefined)
  t.same(vm.added, [{ driver: 'Cascadelake-Server-v2-x86_64-cpu', id: 'virtmiti-hotplug-1', 'core-id': 2, 'thread-id': 0, 'socket-id': 0 }])
  t.same([r.vcpu, r.qomPath, r.ctrl, r.start?.unit], [2, '/machine/peripheral/virtmiti-hotplug-1', 1, 'virtmiti-report@cpu2.service'])
  t.ok(r.ms.qemu! <= r.ms.ctrl! && r.ms.ctrl! >= 250 && r.ms.unit! >= 650, `ms ${JSON.stringify(r.ms)}`)
  t.equal(vm.seen.filter(c => c === 'device_add').length, 1)
})

t.test('hot-plug: CTRL expected at its reset value: no CTRL time (a read cannot tell); a start for a boot CPU is not the new one', async t => {
  const vm = await fakeVm(t, { eventsAfterMs: 200, unitCpu: 1 })
  const r = await hotplugVcpu(vm.q, vm.events, { expectCtrl: 0n, resetCtrl: 0n, timeoutMs: 1500, id: 'virtmiti-hotplug-1', guestCpus: [0, 1] })
  vm.q.close()
  t.equal(r.ms.ctrl, undefined)
  t.equal(r.start, undefined)
  t.match(r.error, /no unit result for the new vCPU from the guest within 1500 ms \(1 start\(s\) forwarded: virtmiti-report@cpu1.service status 0\)/)
})

t.test('hot-plug: no free slot fails before device_add', async t => {
  const vm = await fakeVm(t, {})
  await vm.q.execute('device_add', { driver: 'x' }) // fills the last slot
  const r = await hotplugVcpu(vm.q, vm.events, { timeoutMs: 500, id: 'virtmiti-hotplug-1', guestCpus: [0, 1] })
  vm.q.close()
  t.match(r.error, /no free slot/)
  t.equal(vm.seen.filter(c => c === 'device_add').length, 1)
})

t.test('a hot-plug boot: -smp N,maxcpus=N+1 and the events port as the third serial port; matrix rules', async t => {
  const { qemuArgs } = await import('./boot.js')
  const { hotplugBootArgs } = await import('./patched.js')
  const { parseQemuMatrix } = await import('./tier.js')
  const h = hotplugBootArgs(2, 1, '/tmp/a,b/events.log')
  t.same([h.maxCpus, h.eventsLog], [3, '/tmp/a,b/events.log'])
  const argv = qemuArgs({ image: 'i', kernel: 'k', cpu: 'Cascadelake-Server-v2', smp: 2, maxCpus: h.maxCpus!, extraArgs: h.extraArgs! }, 'tcg', '/c.log', '/f.log')
  t.equal(argv[argv.indexOf('-smp') + 1], '2,maxcpus=3')
  t.same(argv.filter((a, i) => argv[i - 1] === '-serial'), ['chardev:virtmiti-console', 'chardev:virtmiti-frames', 'chardev:virtmiti-events'], 'ttyS0 console, ttyS1 frames, ttyS2 events (image/udev/50-udev.sh)')
  t.ok(argv.includes('file,id=virtmiti-events,path=/tmp/a,,b/events.log'), 'a comma in the path is doubled')
  const head = 'description: d\nsource: s\nvmm: patched\nkernels: [{ id: k, file: /k/boot/vmlinuz-1 }]\nboots:\n'
  const ok = parseQemuMatrix(head + '  - { cpu: Cascadelake-Server-v2, host: cascade-lake, append: "", hotplug: 1 }\n', 'p.yaml')
  t.same([ok.errors, ok.boots[0]?.name], [[], 'qemu-patched: linux-k Cascadelake-Server-v2 on cascade-lake (default) hotplug +1'])
  t.match(parseQemuMatrix(head + '  - { cpu: Cascadelake-Server-v2, host: cascade-lake, append: "", hotplug: 1, migrateTo: sapphire-rapids }\n', 'p.yaml').errors, [/hotplug is a boot of its own: not with migrateTo or fault/])
  t.match(parseQemuMatrix(head + '  - { cpu: Cascadelake-Server-v2, host: cascade-lake, append: "", hotplug: 2 }\n', 'p.yaml').errors, [/hotplug/])
})
