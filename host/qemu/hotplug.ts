// vCPU hot-plug of a held patched boot (issue 11 item 5, last bullet): QMP device_add of one more
// vCPU, then the guest's own path (the kernel registers cpuN, the image's onlining rule onlines it,
// the installed 90-virtmiti.rules starts virtmiti-report@cpuN.service through the systemctl shim,
// the agent writes MITI_CTRL on every CPU), reported back as "unit.K"/"report.K" frames on the
// guest's third serial port (image/udev/50-udev.sh). The QMP sequence and the events log are the
// I/O edge; picking the slot and reading the events are pure.
import fs from 'node:fs'
import { parseFrames } from './frames.js'
import type { Qmp } from './qmp.js'
import { QOM_VCPU_REGS } from './qemu-state.js'

/** The guest side's frames file: ttyS2 (after the console and the command frames). */
export const EVENTS_LOG = 'events.log'

export interface HotplugSlot { driver: string; props: Record<string, number> }

/** query-hotpluggable-cpus: the first slot nothing is plugged into (no qom-path), as device_add arguments. */
export function pickSlot(reply: unknown): HotplugSlot | string {
  if (!Array.isArray(reply)) return `query-hotpluggable-cpus: expected a list, got ${typeof reply}`
  for (const e of reply as { type?: unknown; props?: unknown; 'qom-path'?: unknown; 'vcpus-count'?: unknown }[]) {
    if (e?.['qom-path'] !== undefined) continue
    if (typeof e?.type !== 'string' || !/^[A-Za-z0-9_.-]{1,80}$/.test(e.type)) return `query-hotpluggable-cpus: a free slot without a usable type: ${JSON.stringify(e).slice(0, 120)}`
    if (e['vcpus-count'] !== 1) return `query-hotpluggable-cpus: free slot of ${String(e['vcpus-count'])} vCPUs (this tier plugs one)`
    const props: Record<string, number> = {}
    for (const [k, v] of Object.entries((e.props ?? {}) as Record<string, unknown>)) {
      if (!/^[a-z]+-id$/.test(k) || typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return `query-hotpluggable-cpus: slot property ${k}=${JSON.stringify(v)} is not an id`
      props[k] = v
    }
    return { driver: e.type, props }
  }
  return 'query-hotpluggable-cpus: no free slot (start QEMU with -smp N,maxcpus=M, M > N)'
}

/** One finished start of the systemctl shim, as the guest forwarded it. */
export interface UnitStart { k: number; unit: string; status: number; log: string; report?: string; reportExit?: number; uptimeS?: number }

/**
 * The events stream: "unit.K" (the shim's log of one start; exit = its status) and "report.K"
 * (report.json after it). The stream never ends with a done line (QEMU is quit while it is open):
 * a missing done, and a last frame still being written, are expected; any other defect is not.
 */
export function parseEvents(text: string): { starts: UnitStart[]; errors: string[] } {
  const f = parseFrames(text)
  // A frame still open at the end of the text is one the guest is writing now.
  const errors = f.errors.filter(e => e.kind !== 'missing-done' && !(e.kind === 'truncated' && /no end line \(stream ends/.test(e.message))).map(e => `events line ${e.line}: ${e.message}`)
  const starts: UnitStart[] = []
  for (const [name, s] of f.sections) {
    const m = /^unit\.([0-9]{1,6})$/.exec(name)
    if (!m) continue
    const unit = /^systemctl-shim: start (\S+) from /m.exec(s.output)?.[1] ?? /^systemctl-shim: (\S+): result /m.exec(s.output)?.[1] ?? '?'
    const r = f.sections.get(`report.${m[1]}`)
    starts.push({ k: Number(m[1]), unit, status: s.exit, log: s.output, ...(r ? { report: r.output, reportExit: r.exit } : {}), ...(s.uptimeS !== undefined ? { uptimeS: s.uptimeS } : {}) })
  }
  return { starts: starts.sort((a, b) => a.k - b.k), errors }
}

/** The CPU a virtmiti-report@cpuN.service start was for, or undefined. */
export const unitCpu = (unit: string): number | undefined => {
  const m = /^virtmiti-report@cpu([0-9]{1,5})\.service$/.exec(unit)
  return m ? Number(m[1]) : undefined
}

export interface HotplugResult {
  slot?: HotplugSlot
  /** QEMU's cpu-index and QOM path of the new vCPU. */
  vcpu?: number
  qomPath?: string
  /** The guest's unit start for the new CPU, with the report written by it. */
  start?: UnitStart
  /** Every start the guest forwarded (a second one is not an error: flock serialises them). */
  starts: UnitStart[]
  /** QOM virt-miti-ctrl of the new vCPU when the wait ended. */
  ctrl?: number
  /** From device_add: QEMU lists the vCPU; the guest's unit result arrived; QOM CTRL became `expectCtrl`. */
  ms: { qemu?: number; unit?: number; ctrl?: number }
  eventErrors: string[]
  error?: string
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

/**
 * device_add one vCPU and wait (bounded) until the guest forwarded the unit start for a CPU that
 * is not one of `guestCpus` (the CPUs the guest had at boot). The QOM
 * CTRL of the new vCPU is polled meanwhile: `ms.ctrl` is when it first read `expectCtrl` (left
 * out when that is the reset value, which a read cannot tell from "not written yet").
 */
export async function hotplugVcpu(q: Qmp, eventsLog: string, o: { expectCtrl?: bigint; resetCtrl?: bigint; timeoutMs: number; id: string; guestCpus: readonly number[] }): Promise<HotplugResult> {
  const res: HotplugResult = { starts: [], ms: {}, eventErrors: [] }
  const slot = pickSlot(await q.execute('query-hotpluggable-cpus'))
  if (typeof slot === 'string') return { ...res, error: slot }
  res.slot = slot
  const before = await cpuIndices(q)
  const t0 = performance.now()
  await q.execute('device_add', { driver: slot.driver, id: o.id, ...slot.props })
  const since = () => Math.round(performance.now() - t0)
  while (since() < o.timeoutMs) {
    if (res.vcpu === undefined) {
      const now = await cpuIndices(q)
      const added = [...now].find(([i]) => !before.has(i))
      if (added) { res.vcpu = added[0]; res.qomPath = added[1]; res.ms.qemu = since() }
    }
    if (res.qomPath !== undefined && res.ms.ctrl === undefined && o.expectCtrl !== undefined && o.expectCtrl !== (o.resetCtrl ?? 0n)) {
      const v = await q.execute('qom-get', { path: res.qomPath, property: QOM_VCPU_REGS.mitiCtrl })
      if (typeof v === 'number') { res.ctrl = v; if (BigInt(v) === o.expectCtrl) res.ms.ctrl = since() }
    }
    let text = ''
    try { text = fs.readFileSync(eventsLog, 'utf8') } catch { /* not created yet */ }
    const ev = parseEvents(text)
    res.starts = ev.starts
    res.eventErrors = ev.errors
    const start = ev.starts.find(s => { const c = unitCpu(s.unit); return c !== undefined && !o.guestCpus.includes(c) && s.report !== undefined })
    if (start && res.qomPath !== undefined) {
      res.start = start
      res.ms.unit = since()
      const v = await q.execute('qom-get', { path: res.qomPath, property: QOM_VCPU_REGS.mitiCtrl })
      if (typeof v === 'number') { res.ctrl = v; if (res.ms.ctrl === undefined && o.expectCtrl !== undefined && o.expectCtrl !== (o.resetCtrl ?? 0n) && BigInt(v) === o.expectCtrl) res.ms.ctrl = since() }
      return res
    }
    await sleep(200)
  }
  return { ...res, error: `no unit result for the new vCPU from the guest within ${o.timeoutMs} ms (${res.starts.length} start(s) forwarded: ${res.starts.map(s => `${s.unit} status ${s.status}`).join(', ') || 'none'})` }
}

async function cpuIndices(q: Qmp): Promise<Map<number, string>> {
  const r = await q.execute('query-cpus-fast')
  const m = new Map<number, string>()
  if (Array.isArray(r)) for (const c of r as { 'cpu-index'?: unknown; 'qom-path'?: unknown }[]) if (typeof c['cpu-index'] === 'number' && typeof c['qom-path'] === 'string') m.set(c['cpu-index'], c['qom-path'])
  return m
}
