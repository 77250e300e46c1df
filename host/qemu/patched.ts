// One boot under the patched QEMU (issue 11 item 5): the guest runs report + selftest with the
// virtual MSRs presented (virt-miti=on), then holds; the host reads QEMU's per-vCPU state over
// QMP, runs `host check`, and for a migration boot moves the running guest to a second QEMU
// that responds as another catalog host and checks that side too (issue 11 item 2).
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { hex } from '../../contract/bits.js'
import type { HostCaps } from '../../contract/host-caps.js'
import { hostCapsFromCpu, hostCapsToJson } from '../../contract/host-caps.js'
import { GuestReport } from '../../contract/report-json.js'
import { ProbeJson } from '../../contract/probe-schema.js'
import type { VmmState } from '../../contract/vmm-state-json.js'
import type { TapPoint } from '../../bin/lib/tap.js'
import { checkFromText } from '../check/from-text.js'
import { builtinCpusDir } from '../runner/catalog.js'
import { loadCpuCatalog } from '../runner/cpus.js'
import { qemuArgs, qemuPath, socketDir, type BootOptions, type BootResult, type HeldGuest } from './boot.js'
import { checkBoot, readKernelLine, type BootFacts } from './checks.js'
import { checkHotplug, checkPatched, type HostSide } from './checks-patched.js'
import { EVENTS_LOG, hotplugVcpu, type HotplugResult } from './hotplug.js'
import { Qmp } from './qmp.js'
import { readQemuState } from './qemu-state.js'
import type { PatchedBootSpec } from './matrix-doc.js'
import { vmmQemuProps } from './vmm-props.js'
import { PROFILES } from '../vmm/profiles.js'
import type { VmmProfile } from '../vmm/profile.js'

/** MITI_ENUM the tier presents: both bits (contract/CONTRACT.md section 2; patch 0002's default). */
export const TIER_MITI_ENUM = 0x3n

/** virt-miti-host-* properties: the host QEMU responds as (patch 0003, contract/CONTRACT.md section 5). */
export function hostCapsProps(c: HostCaps): string[] {
  const on = (b: boolean) => (b ? 'on' : 'off')
  return [
    `virt-miti-host-bhi-ctrl=${on(c.bhiCtrl)}`, `virt-miti-host-bhi-no=${on(c.bhiNo)}`,
    `virt-miti-host-rrsba-ctrl=${on(c.rrsbaCtrl)}`, `virt-miti-host-rrsba=${on(c.rrsba)}`,
    `virt-miti-host-stibp=${on(c.stibp)}`, `virt-miti-host-ssbd=${on(c.ssbd)}`,
  ]
}

/** Every -cpu property of one side: guest-visible ones, then the host's response (the VMM definition's, when the boot names one). */
export function patchedCpuProps(b: PatchedBootSpec, caps: HostCaps): string[] {
  if (b.vmmProps) return [...(b.props ?? []), ...b.vmmProps.props, ...hostCapsProps(caps)]
  return [
    ...(b.props ?? []), 'virt-miti=on', `virt-miti-enum=${TIER_MITI_ENUM}`, ...hostCapsProps(caps),
    ...(b.force ? [`spec-ctrl-force-mask=${b.force.mask}`, `spec-ctrl-force-value=${b.force.value}`] : []),
    ...(b.fault ? [`x-virt-miti-fault=${b.fault}`] : []),
  ]
}

export function catalogHostCaps(id: string, dir = builtinCpusDir()): HostCaps | string {
  if (!dir) return 'CPU catalog (scenarios/cpus) not found'
  const cat = loadCpuCatalog(dir)
  const m = cat.models.get(id)
  if (!m) return `host ${id}: not in the CPU catalog ${dir}`
  return hostCapsFromCpu(m)
}

export interface SideResult {
  host: string
  state?: VmmState
  stateErrors?: string[]
  check?: ReturnType<typeof checkFromText>
}

export interface MigrationResult { to: string; ms?: number; error?: string; side?: SideResult }

/** The host side of one QEMU: state over QMP, then host check with the catalog host's caps. */
export async function checkSide(qmp: string | Qmp, report: string | undefined, host: string, caps: HostCaps): Promise<SideResult> {
  // A QMP socket serves one client at a time: an open connection is reused, never a second one.
  const q = typeof qmp === 'string' ? await Qmp.connect(qmp) : qmp
  try {
    const s = await readQemuState(q)
    if (!s.ok) return { host, stateErrors: s.errors }
    const side: SideResult = { host, state: s.state }
    // --host-caps from the catalog: QEMU's own claim about its caps is checked, not trusted.
    if (report !== undefined) side.check = checkFromText({ report, state: JSON.stringify(s.state), hostCaps: JSON.stringify(hostCapsToJson(caps, { source: `catalog ${host}` })) })
    return side
  } finally { if (typeof qmp === 'string') q.close() }
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

/** Poll a QMP query until `done` says yes (or fails); bounded. */
async function pollQmp(q: Qmp, cmd: string, done: (r: unknown) => boolean | string, deadlineMs: number): Promise<void> {
  const t0 = Date.now()
  for (;;) {
    const r = done(await q.execute(cmd))
    if (r === true) return
    if (typeof r === 'string') throw new Error(r)
    if (Date.now() - t0 > deadlineMs) throw new Error(`${cmd}: not done within ${deadlineMs} ms: ${JSON.stringify(await q.execute(cmd)).slice(0, 200)}`)
    await sleep(200)
  }
}

/**
 * Migrate the held guest to a second QEMU process (same machine and guest CPU, the destination
 * host's response properties) over a Unix socket; check the destination side; quit it.
 */
export async function migrateAndCheck(g: HeldGuest, src: BootOptions, qemu: string, b: PatchedBootSpec, destCaps: HostCaps, report: string | undefined): Promise<MigrationResult> {
  const to = b.migrateTo!
  const dir = path.join(g.workDir, 'dest')
  fs.mkdirSync(dir, { recursive: true })
  const sockets = socketDir()
  const destQmp = path.join(sockets, 'qmp.sock'), mig = path.join(sockets, 'migrate.sock')
  const argv = qemuArgs({ ...src, cpuProps: patchedCpuProps(b, destCaps), extraArgs: ['-incoming', `unix:${mig}`] }, 'tcg', path.join(dir, 'console.log'), path.join(dir, 'frames.log'), destQmp)
  const child = spawn('timeout', ['-s', 'KILL', '300', qemu, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 65536) stderr += d })
  const exited = new Promise<number | null>(r => child.on('close', c => r(c)))
  let dq: Qmp | undefined
  try {
    dq = await Qmp.connectRetry(destQmp)
    const sq = await Qmp.connect(g.qmpSocket)
    const t0 = performance.now()
    try {
      await sq.execute('migrate', { uri: `unix:${mig}` })
      await pollQmp(sq, 'query-migrate', r => {
        const s = (r as { status?: unknown })?.status
        return s === 'completed' ? true : s === 'failed' || s === 'cancelled' ? `migration ${s}: ${(r as { 'error-desc'?: string })['error-desc'] ?? ''}` : false
      }, 120_000)
    } finally { sq.close() }
    await pollQmp(dq, 'query-status', r => (r as { status?: unknown })?.status === 'running', 30_000)
    const ms = Math.round(performance.now() - t0)
    const side = await checkSide(dq, report, to, destCaps)
    return { to, ms, side }
  } catch (e) {
    return { to, error: `${(e as Error).message}${stderr.trim() ? ` (destination QEMU: ${stderr.trim().split('\n').slice(-3).join(' | ')})` : ''}` }
  } finally {
    await dq?.execute('quit').catch(() => undefined)
    dq?.close()
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(t)
  }
}

export interface HotplugSide { result: HotplugResult; after?: SideResult }

/**
 * A hot-plug boot's QEMU arguments: room for `n` more vCPUs, and the guest's third serial port
 * (ttyS2: the unit results image/udev/50-udev.sh forwards) into a file of its own.
 */
export function hotplugBootArgs(vcpus: number, n: number, eventsLog = path.join(socketDir(), EVENTS_LOG)): Pick<BootOptions, 'maxCpus' | 'extraArgs'> & { eventsLog: string } {
  return { maxCpus: vcpus + n, eventsLog, extraArgs: ['-chardev', `file,id=virtmiti-events,path=${qemuPath(eventsLog)}`, '-serial', 'chardev:virtmiti-events'] }
}

/** Hot-plug one vCPU into the held guest, wait for its unit result, then read the state and host check again. */
export async function hotplugAndCheck(g: HeldGuest, eventsLog: string, bootReport: string | undefined, host: string, caps: HostCaps, timeoutMs = 180_000): Promise<HotplugSide> {
  let rep: GuestReport | undefined
  try { const v = GuestReport.safeParse(JSON.parse(bootReport ?? '')); if (v.success) rep = v.data } catch { /* rep stays undefined */ }
  const values = [...new Set((rep?.cpus ?? []).map(c => c.readBack))]
  const expectCtrl = values.length === 1 && values[0] !== undefined ? BigInt(values[0]) : undefined
  const q = await Qmp.connect(g.qmpSocket)
  try {
    // Reset value 0: patchedCpuProps never sets virt-miti-ctrl-reset (patch 0002's default).
    const result = await hotplugVcpu(q, eventsLog, { ...(expectCtrl !== undefined ? { expectCtrl } : {}), resetCtrl: 0n, timeoutMs, id: 'virtmiti-hotplug-1', guestCpus: (rep?.cpus ?? []).map(c => c.cpu) })
    try { fs.copyFileSync(eventsLog, path.join(g.workDir, EVENTS_LOG)) } catch { /* no events: said by the result */ }
    if (!result.start) return { result }
    return { result, after: await checkSide(q, result.start.report, host, caps) }
  } finally { q.close() }
}

export interface PatchedRun {
  points: TapPoint[]
  facts: BootFacts
  extra: {
    vmm: { kind: 'patched'; version?: string; binary: string }
    kernel?: string
    cmdline?: string
    host: string
    fault?: string
    mitiCtrl?: string[]
    forced?: { mask: string; value: string }[]
    hostCheck?: { verdict: 'pass' | 'fail'; failures: string[] } | { verdict: 'error'; errors: string[] }
    migration?: { to: string; ms?: number; error?: string; forced?: { mask: string; value: string }[]; hostCheck?: { verdict: 'pass' | 'fail' | 'error'; failures: string[] } }
    /** ms from device_add: QEMU lists the vCPU, its QOM CTRL reads the reported value, the guest's unit result arrives. */
    hotplug?: { vcpu?: number; unit?: string; ms: HotplugResult['ms']; mitiCtrl?: string[]; error?: string; hostCheck?: { verdict: 'pass' | 'fail' | 'error'; failures: string[] } }
  }
}

const hostCheckOf = (s: SideResult | undefined): PatchedRun['extra']['hostCheck'] | undefined => {
  if (!s) return undefined
  if (!s.check) return { verdict: 'error', errors: s.stateErrors ?? ['no state'] }
  return s.check.ok ? { verdict: s.check.result.ok ? 'pass' : 'fail', failures: s.check.result.failures } : { verdict: 'error', errors: s.check.errors }
}

/** The held phase of a patched boot: what runs while the guest waits (see runPatched). */
export function patchedHeld(b: PatchedBootSpec, qemu: string, srcOpts: () => BootOptions, hostCaps: HostCaps, destCaps: HostCaps | undefined, out: { src?: SideResult; mig?: MigrationResult; hot?: HotplugSide }, eventsLog?: string) {
  return async (g: HeldGuest): Promise<void> => {
    const report = g.sections.get('report')?.output
    out.src = await checkSide(g.qmpSocket, report, b.host, hostCaps)
    // Next to console.log and frames.log: what host check read (kept with the logs of a failing boot).
    if (out.src.state) fs.writeFileSync(path.join(g.workDir, 'vmm-state.json'), JSON.stringify(out.src.state, null, 1) + '\n')
    if (b.migrateTo && destCaps) {
      out.mig = await migrateAndCheck(g, srcOpts(), qemu, b, destCaps, report)
      if (out.mig.side?.state) fs.writeFileSync(path.join(g.workDir, 'dest', 'vmm-state.json'), JSON.stringify(out.mig.side.state, null, 1) + '\n')
    }
    if (b.hotplug && eventsLog) {
      out.hot = await hotplugAndCheck(g, eventsLog, report, b.host, hostCaps)
      if (out.hot.after?.state) fs.writeFileSync(path.join(g.workDir, 'vmm-state-hotplug.json'), JSON.stringify(out.hot.after.state, null, 1) + '\n')
    }
  }
}

/** A side as checks-patched.ts takes it. */
const hostSideOf = (s: SideResult | undefined): HostSide => ({
  ...(s?.state ? { state: s.state } : {}), ...(s?.stateErrors ? { stateErrors: s.stateErrors } : {}),
  ...(s?.check?.ok ? { check: s.check.result } : {}), ...(s?.check && !s.check.ok ? { checkErrors: s.check.errors } : {}),
})

const pt = (ok: boolean, name: string, diag?: Record<string, unknown>): TapPoint => ({ ok, name, ...(diag && !ok ? { diag } : {}) })

/** Checks of a finished patched boot: the stock tier's guest checks, then checks-patched.ts, then coverage. */
export function patchedPoints(b: PatchedBootSpec, r: BootResult, vcpus: number, append: string[], sides: { src?: SideResult; mig?: MigrationResult; hot?: HotplugSide }, binary: string): PatchedRun {
  const c = checkBoot(r.sections, { cpu: [b.cpu, ...(b.props ?? [])].join(','), append, accel: r.accel, vcpus, virtMsrs: true })
  const kernelLine = r.sections.get('spectre_v2')?.output
  const kernel = kernelLine !== undefined ? readKernelLine(kernelLine) : undefined
  let report: GuestReport | undefined
  let probe: ProbeJson | undefined
  try { const v = GuestReport.safeParse(JSON.parse(r.sections.get('report')?.output ?? '')); if (v.success) report = v.data } catch { /* checkBoot reports it */ }
  try { const v = ProbeJson.safeParse(JSON.parse(r.sections.get('probe')?.output ?? '')); if (v.success) probe = v.data } catch { /* checkBoot reports it */ }
  const host = hostSideOf(sides.src)
  if (!sides.src) host.stateErrors = ['the guest never reached its last section: QEMU state not read']
  const fault = b.fault ?? b.vmmProps?.fault
  const points = [...c.points, ...checkPatched(r.sections, probe, report, host, { vcpus, kernel, mitiEnum: b.vmmProps?.mitiEnum ?? TIER_MITI_ENUM, ...(fault ? { fault } : {}) })]
  const st = sides.src?.state
  const forcedOf = (s: VmmState | undefined) => s?.vcpus.map(v => ({ mask: v.forcedMask, value: v.forcedValue }))
  // Coverage: what this boot is in the matrix for (hand-derived from contract/CONTRACT.md in the matrix).
  const e = b.expect
  if (e?.bhi !== undefined) points.push(pt(kernel?.bhi === e.bhi, `covers: the kernel chose BHI ${e.bhi}`, { kernel: kernelLine, bhi: kernel?.bhi ?? '?' }))
  if (e?.mitiCtrl !== undefined) points.push(pt(!!st && st.vcpus.every(v => v.mitiCtrl === hex(e.mitiCtrl!)), `covers: MITI_CTRL ${hex(e.mitiCtrl)} on every vCPU`, { qemu: st?.vcpus.map(v => v.mitiCtrl) }))
  if (e?.forcedMask !== undefined) points.push(pt(!!st && st.vcpus.every(v => v.forcedMask === hex(e.forcedMask!)), `covers: ${b.host} forces ${e.forcedMask === 0n ? 'nothing' : hex(e.forcedMask)} on every vCPU`, { qemu: forcedOf(st) }))
  const mig = sides.mig
  if (b.migrateTo) {
    const ms = mig?.side?.state
    const ck = mig?.side?.check
    points.push(pt(!!mig && !mig.error && !!ms, `migration to a second QEMU responding as ${b.migrateTo} completes; the destination's state reads over QMP`, { error: mig?.error ?? (mig ? mig.side?.stateErrors : 'not attempted') }))
    points.push(pt(!!ck && ck.ok && ck.result.ok, `host check on the destination (${b.migrateTo}): every vCPU as contract/CONTRACT.md section 5 says for that host`, { failures: ck?.ok ? ck.result.failures : ck?.errors ?? [] }))
    if (e?.destForcedMask !== undefined) points.push(pt(!!ms && ms.vcpus.every(v => v.forcedMask === hex(e.destForcedMask!)), `covers: after migration, ${b.migrateTo} forces ${e.destForcedMask === 0n ? 'nothing' : hex(e.destForcedMask)} on every vCPU`, { qemu: forcedOf(ms) }))
  }
  const hot = sides.hot
  if (b.hotplug) {
    const after = hot?.after
    points.push(...checkHotplug({
      vcpus, bootReport: report,
      result: hot?.result ?? { ms: {}, eventErrors: [], error: 'the guest never reached its last section: no hot-plug' },
      after: hostSideOf(after),
    }))
  }
  const hc = hostCheckOf(sides.src)
  return {
    points, facts: c.facts,
    extra: {
      vmm: { kind: 'patched', ...(st?.vmm.version ? { version: st.vmm.version } : {}), binary },
      ...(report?.kernelRelease ? { kernel: report.kernelRelease } : {}),
      ...(r.sections.get('cmdline') ? { cmdline: r.sections.get('cmdline')!.output.trim() } : {}),
      host: b.host, ...(fault ? { fault } : {}),
      ...(st ? { mitiCtrl: st.vcpus.map(v => v.mitiCtrl), forced: forcedOf(st)! } : {}),
      ...(hc ? { hostCheck: hc } : {}),
      ...(b.migrateTo ? {
        migration: {
          to: b.migrateTo, ...(mig?.ms !== undefined ? { ms: mig.ms } : {}), ...(mig?.error ? { error: mig.error } : {}),
          ...(mig?.side?.state ? { forced: forcedOf(mig.side.state)! } : {}),
          ...(mig?.side ? { hostCheck: (() => { const h = hostCheckOf(mig.side)!; return 'failures' in h ? h : { verdict: 'error' as const, failures: h.errors } })() } : {}),
        },
      } : {}),
      ...(b.hotplug ? {
        hotplug: {
          ...(hot?.result.vcpu !== undefined ? { vcpu: hot.result.vcpu } : {}), ...(hot?.result.start ? { unit: hot.result.start.unit } : {}),
          ms: hot?.result.ms ?? {}, ...(hot?.after?.state ? { mitiCtrl: hot.after.state.vcpus.map(v => v.mitiCtrl) } : {}),
          ...(hot?.result.error ? { error: hot.result.error } : {}),
          ...(hot?.after ? { hostCheck: (() => { const h = hostCheckOf(hot.after)!; return 'failures' in h ? h : { verdict: 'error' as const, failures: h.errors } })() } : {}),
        },
      } : {}),
    },
  }
}

export const newUuid = (): string => crypto.randomUUID()

/** A boot's `vmm:` definition as -cpu properties (vmm-props.ts), or why it cannot be (unknown id: the valid ids). */
export function resolveBootVmm(b: PatchedBootSpec, vcpus: number, vmms: ReadonlyMap<string, VmmProfile> = PROFILES): PatchedBootSpec | { errors: string[] } {
  if (b.vmm === undefined) return b
  const d = vmms.get(b.vmm)
  if (!d) return { errors: [`unknown VMM definition "${b.vmm}" (scenarios/vmms: ${[...vmms.keys()].sort().join(', ')})`] }
  const r = vmmQemuProps(d, vcpus)
  if (!r.ok) return { errors: r.errors.map(e => `vmm ${b.vmm}: ${e}`) }
  return { ...b, vmmProps: { props: r.props, mitiEnum: r.mitiEnum, ...(r.fault ? { fault: r.fault } : {}) } }
}
