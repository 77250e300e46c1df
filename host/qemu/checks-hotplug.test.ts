// checkHotplug (checks-patched.ts) on injected facts: the recorded patched boot (2 vCPUs, SW loop,
// CTRL 0x1 on a Cascade Lake host) plus a third vCPU hot-plugged after its report. Each broken
// fact fails the point for it, naming the vCPU.
import t from 'tap'
import { GuestReport } from '../../contract/report-json.js'
import { hostCapsFromCpu, hostCapsToJson } from '../../contract/host-caps.js'
import type { TapPoint } from '../../bin/lib/tap.js'
import { checkFromText } from '../check/from-text.js'
import { builtinCpusDir } from '../runner/catalog.js'
import { loadCpuCatalog } from '../runner/cpus.js'
import { checkHotplug, type HostSide, type HotplugFacts } from './checks-patched.js'
import { QOM_CONFIG, QOM_VCPU_REGS, qemuStateToVmmState } from './qemu-state.js'
import { loadRecordedBoot } from './recorded-boot.js'

const REC = loadRecordedBoot('patched-cascadelake-v2-on-cascade-lake')
const bootReportText = REC.sections['report']!.output
const bootReport = GuestReport.parse(JSON.parse(bootReportText))
const caps = hostCapsFromCpu(loadCpuCatalog(builtinCpusDir()!).models.get('cascade-lake')!)

/** The report the unit start writes after the hot-plug: the boot's, plus the new CPU (written). */
function reportAfter(newCpu: { readBack: string; outcome?: string } | undefined): string {
  const j = JSON.parse(bootReportText) as { cpus: Record<string, unknown>[] }
  if (newCpu) j.cpus.push({ ...j.cpus[1], cpu: 2, before: '0x0', wanted: newCpu.readBack, readBack: newCpu.readBack, outcome: newCpu.outcome ?? 'written' })
  for (const c of j.cpus.slice(0, 2)) c['outcome'] = 'unchanged'
  return JSON.stringify(j)
}

/** QEMU's side after the hot-plug: one CTRL per vCPU (Cascade Lake forces nothing). */
function after(report: string, ctrls: number[]): HostSide {
  const props = (ctrl: number) => ({
    [QOM_CONFIG.virtMiti]: true, [QOM_CONFIG.archCapabilities]: true, [QOM_CONFIG.mitiEnum]: 3,
    [QOM_CONFIG.bhiCtrl]: caps.bhiCtrl, [QOM_CONFIG.bhiNo]: caps.bhiNo, [QOM_CONFIG.rrsbaCtrl]: caps.rrsbaCtrl, [QOM_CONFIG.rrsba]: caps.rrsba,
    [QOM_CONFIG.stibp]: caps.stibp, [QOM_CONFIG.ssbd]: caps.ssbd, [QOM_CONFIG.forceMask]: 0, [QOM_CONFIG.forceValue]: 0, [QOM_CONFIG.fault]: null,
    [QOM_VCPU_REGS.mitiCtrl]: ctrl, [QOM_VCPU_REGS.forcedMask]: 0, [QOM_VCPU_REGS.forcedValue]: 0,
    [QOM_VCPU_REGS.specCtrlShadow]: 1, [QOM_VCPU_REGS.specCtrlEffective]: 1, [QOM_VCPU_REGS.specCtrlGuestRead]: 1, [QOM_VCPU_REGS.specCtrlGuestReads]: 1,
  })
  const s = qemuStateToVmmState({ uuid: bootReport.vmUuid, vcpus: ctrls.map((c, i) => ({ index: i, qomPath: `/machine/x[${i}]`, props: props(c) })) })
  if (!s.ok) throw new Error(s.errors.join('; '))
  const ck = checkFromText({ report, state: JSON.stringify(s.state), hostCaps: JSON.stringify(hostCapsToJson(caps)) })
  return { state: s.state, ...(ck.ok ? { check: ck.result } : { checkErrors: ck.errors }) }
}

function facts(o: { report?: string; ctrls?: number[]; status?: number; unit?: string; error?: string; vcpu?: number } = {}): HotplugFacts {
  const report = o.report ?? reportAfter({ readBack: '0x1' })
  return {
    vcpus: 2, bootReport,
    result: {
      slot: { driver: 'Cascadelake-Server-v2-x86_64-cpu', props: { 'socket-id': 0, 'core-id': 2, 'thread-id': 0 } }, ...(o.vcpu !== -1 ? { vcpu: o.vcpu ?? 2 } : {}),
      start: { k: 1, unit: o.unit ?? 'virtmiti-report@cpu2.service', status: o.status ?? 0, log: 'systemctl-shim: ...\n', report },
      ms: { qemu: 40, ctrl: 9000, unit: 9500 }, eventErrors: [], ...(o.error ? { error: o.error } : {}),
    },
    after: after(report, o.ctrls ?? [1, 1, 1]),
  }
}
const failing = (ps: TapPoint[]) => ps.filter(p => !p.ok).map(p => p.name)

t.test('the new vCPU holds what the guest reported on the others, and host check passes on all three', async t => {
  const ps = checkHotplug(facts())
  t.same(failing(ps), [])
  t.same(ps.map(p => p.name), [
    'hot-plug: device_add Cascadelake-Server-v2-x86_64-cpu socket-id=0,core-id=2,thread-id=0 adds vCPU 2 to QEMU',
    'hot-plug: 90-virtmiti.rules started virtmiti-report@cpu2.service for the new CPU (systemctl shim) and it succeeded 9500 ms after device_add',
    'hot-plug: the report the unit wrote covers all 3 CPUs; cpu2 holds MITI_CTRL 0x1 as the others do',
    "hot-plug: QEMU's vCPU 2 holds MITI_CTRL 0x1, what the guest reported on the others (contract/CONTRACT.md section 4)",
    'hot-plug: host check passes on all 3 vCPUs, vCPU 2 checked on guest data',
  ])
})

t.test('QEMU holding the reset value on the new vCPU: the QOM point and host check fail, naming vCPU 2', async t => {
  const ps = checkHotplug(facts({ ctrls: [1, 1, 0] }))
  t.same(failing(ps), ["hot-plug: QEMU's vCPU 2 holds MITI_CTRL 0x1, what the guest reported on the others (contract/CONTRACT.md section 4)", 'hot-plug: host check passes on all 3 vCPUs, vCPU 2 checked on guest data'])
  const hc = ps.find(p => p.name.startsWith('hot-plug: host check'))!
  t.match((hc.diag as { failures: string[] }).failures.join('\n'), /^vCPU 2: /m)
})

t.test('the guest never reported on the new CPU: the stale 2-CPU report makes no pass', async t => {
  const stale = facts({ report: reportAfter(undefined) })
  const f = failing(checkHotplug(stale))
  t.ok(f.includes('hot-plug: the report the unit wrote covers all 3 CPUs; cpu2 holds MITI_CTRL 0x1 as the others do'))
  t.ok(f.includes('hot-plug: host check passes on all 3 vCPUs, vCPU 2 checked on guest data'), 'vCPU 2 checked on the VMM state only is not enough')
})

t.test('the guest wrote another value on the new CPU, or the unit failed, or QEMU added nothing', async t => {
  t.same(failing(checkHotplug(facts({ report: reportAfter({ readBack: '0x0' }), ctrls: [1, 1, 0] }))).slice(0, 1), ['hot-plug: the report the unit wrote covers all 3 CPUs; cpu2 holds MITI_CTRL 0x1 as the others do'])
  t.same(failing(checkHotplug(facts({ status: 1 }))), ['hot-plug: 90-virtmiti.rules started virtmiti-report@cpu2.service for the new CPU (systemctl shim) and it succeeded 9500 ms after device_add'])
  const none = checkHotplug(facts({ vcpu: -1, error: 'query-hotpluggable-cpus: no free slot' }))
  t.ok(failing(none).includes('hot-plug: device_add Cascadelake-Server-v2-x86_64-cpu socket-id=0,core-id=2,thread-id=0 adds vCPU ? to QEMU'))
})
