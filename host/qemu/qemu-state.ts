// The patched QEMU's per-vCPU state (host/qemu/patches: QOM properties of every x86 CPU object)
// read over QMP and translated into virtmiti/vmm-state/v1 (issue 11 item 3). The read is the I/O
// edge; the translation is pure and validates everything QEMU returned (untrusted input).
import { hex } from '../../contract/bits.js'
import { VMM_STATE_SCHEMA_ID, VmmState } from '../../contract/vmm-state-json.js'
import type { Qmp } from './qmp.js'

/** Per-vCPU registers, read-only QOM properties added by patches 0002 and 0003. */
export const QOM_VCPU_REGS = {
  mitiCtrl: 'virt-miti-ctrl',
  forcedMask: 'spec-ctrl-forced-mask',
  forcedValue: 'spec-ctrl-forced-value',
  specCtrlShadow: 'spec-ctrl-shadow',
  specCtrlEffective: 'spec-ctrl-effective',
  specCtrlGuestRead: 'spec-ctrl-guest-read',
  specCtrlGuestReads: 'spec-ctrl-guest-reads',
} as const

/** Configuration, static CPU properties (the same on every vCPU; read from each, checked equal). */
export const QOM_CONFIG = {
  virtMiti: 'virt-miti',
  archCapabilities: 'arch-capabilities',
  mitiEnum: 'virt-miti-enum',
  bhiCtrl: 'virt-miti-host-bhi-ctrl',
  bhiNo: 'virt-miti-host-bhi-no',
  rrsbaCtrl: 'virt-miti-host-rrsba-ctrl',
  rrsba: 'virt-miti-host-rrsba',
  stibp: 'virt-miti-host-stibp',
  ssbd: 'virt-miti-host-ssbd',
  forceMask: 'spec-ctrl-force-mask',
  forceValue: 'spec-ctrl-force-value',
  fault: 'x-virt-miti-fault',
} as const

export interface QemuRawVcpu { index: number; qomPath: string; props: Record<string, unknown> }
export interface QemuRawState { version?: string; uuid: unknown; vcpus: QemuRawVcpu[] }

export type StateResult = { ok: true; state: VmmState; fault?: string } | { ok: false; errors: string[] }

const MAX_VCPUS = 8192

/**
 * qom-get of each property of one QOM object, in order; a property whose qom-get fails (absent in
 * this build, say) is `{ missing: <its error> }`.
 */
export async function qomGetEach(qmp: Qmp, qomPath: string, props: readonly string[]): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  for (const p of props) {
    try { out[p] = await qmp.execute('qom-get', { path: qomPath, property: p }) } catch (e) {
      out[p] = { missing: (e as Error).message.slice(0, 200) }
    }
  }
  return out
}

/** Read every vCPU's properties. Throws QmpError on a transport or QMP error. */
export async function readQemuRaw(qmp: Qmp): Promise<QemuRawState> {
  const cpus = await qmp.execute('query-cpus-fast')
  if (!Array.isArray(cpus) || cpus.length === 0 || cpus.length > MAX_VCPUS) throw new Error(`query-cpus-fast: expected 1..${MAX_VCPUS} CPUs, got ${Array.isArray(cpus) ? cpus.length : typeof cpus}`)
  const uuid = ((await qmp.execute('query-uuid')) as { UUID?: unknown } | null)?.UUID
  const vcpus: QemuRawVcpu[] = []
  for (const c of cpus as { 'cpu-index'?: unknown; 'qom-path'?: unknown }[]) {
    const index = c['cpu-index'], qomPath = c['qom-path']
    if (typeof index !== 'number' || typeof qomPath !== 'string' || qomPath.length > 256) throw new Error('query-cpus-fast: an entry without cpu-index/qom-path')
    // Stock QEMU has none of these properties: recorded as missing, said so by the translation.
    const props = await qomGetEach(qmp, qomPath, [...Object.values(QOM_VCPU_REGS), ...Object.values(QOM_CONFIG)])
    vcpus.push({ index, qomPath, props })
  }
  return { ...(qmp.version ? { version: qmp.version } : {}), uuid, vcpus }
}

const u64 = (v: unknown): bigint | undefined =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : undefined

/** Pure: raw QOM values to virtmiti/vmm-state/v1, or every reason it cannot be. */
export function qemuStateToVmmState(raw: QemuRawState): StateResult {
  const errors: string[] = []
  if (raw.vcpus.length === 0) return { ok: false, errors: ['no vCPUs'] }
  const missing = raw.vcpus[0]!.props[QOM_VCPU_REGS.mitiCtrl]
  if (typeof missing === 'object' && missing !== null && 'missing' in missing) {
    return { ok: false, errors: [`vCPU ${raw.vcpus[0]!.index}: no QOM property ${QOM_VCPU_REGS.mitiCtrl}: this QEMU is not patched (host/qemu/patches) (${String((missing as { missing: unknown }).missing)})`] }
  }
  const uuid = typeof raw.uuid === 'string' ? raw.uuid.toLowerCase() : ''
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(uuid)) errors.push(`query-uuid: not a UUID: ${JSON.stringify(raw.uuid)?.slice(0, 60)}`)
  // Configuration: every vCPU must agree (static properties; a difference is a broken VMM).
  const cfg0 = raw.vcpus[0]!.props
  for (const v of raw.vcpus.slice(1)) {
    for (const p of Object.values(QOM_CONFIG)) {
      if (JSON.stringify(v.props[p]) !== JSON.stringify(cfg0[p])) errors.push(`vCPU ${v.index}: ${p} = ${JSON.stringify(v.props[p])}, vCPU ${raw.vcpus[0]!.index} has ${JSON.stringify(cfg0[p])}`)
    }
  }
  const bool = (p: string): boolean => {
    const v = cfg0[p]
    if (typeof v !== 'boolean') { errors.push(`${p}: expected a boolean, got ${JSON.stringify(v)?.slice(0, 80)}`); return false }
    return v
  }
  const num = (props: Record<string, unknown>, p: string, who: string): bigint => {
    const v = u64(props[p])
    if (v === undefined) { errors.push(`${who}${p}: expected an exact unsigned integer, got ${JSON.stringify(props[p])?.slice(0, 80)}`); return 0n }
    return v
  }
  const fault = cfg0[QOM_CONFIG.fault]
  const hostCaps = {
    bhiCtrl: bool(QOM_CONFIG.bhiCtrl), bhiNo: bool(QOM_CONFIG.bhiNo), rrsbaCtrl: bool(QOM_CONFIG.rrsbaCtrl),
    rrsba: bool(QOM_CONFIG.rrsba), stibp: bool(QOM_CONFIG.stibp), ssbd: bool(QOM_CONFIG.ssbd),
  }
  const advertised = bool(QOM_CONFIG.virtMiti) && bool(QOM_CONFIG.archCapabilities)
  const indices = new Set<number>()
  const vcpus = raw.vcpus.map(v => {
    if (!Number.isInteger(v.index) || v.index < 0 || v.index > 65535 || indices.has(v.index)) errors.push(`vCPU index ${v.index}: not a unique 0..65535 integer`)
    indices.add(v.index)
    const who = `vCPU ${v.index}: `
    const r = (k: keyof typeof QOM_VCPU_REGS) => num(v.props, QOM_VCPU_REGS[k], who)
    const reads = r('specCtrlGuestReads')
    return {
      index: v.index,
      mitiCtrl: hex(r('mitiCtrl')), forcedMask: hex(r('forcedMask')), forcedValue: hex(r('forcedValue')),
      specCtrlShadow: hex(r('specCtrlShadow')), specCtrlEffective: hex(r('specCtrlEffective')),
      // Only when the guest read SPEC_CTRL at least once (schema: optional).
      ...(reads > 0n ? { specCtrlGuestRead: hex(r('specCtrlGuestRead')) } : {}),
    }
  })
  const state = {
    schema: VMM_STATE_SCHEMA_ID, vmUuid: uuid,
    vmm: { name: 'qemu', ...(raw.version ? { version: raw.version.slice(0, 64) } : {}), profile: typeof fault === 'string' && fault ? `fault:${fault}`.slice(0, 64) : 'virtmiti-patched' },
    hostCaps, advertised,
    mitiEnum: hex(advertised ? num(cfg0, QOM_CONFIG.mitiEnum, '') : 0n),
    userspaceForce: { mask: hex(num(cfg0, QOM_CONFIG.forceMask, '')), value: hex(num(cfg0, QOM_CONFIG.forceValue, '')) },
    // TCG (and KVM with the filter, patch 0005) handles every SPEC_CTRL access in QEMU.
    specCtrl: 'intercepted' as const,
    vcpus: vcpus.sort((a, b) => a.index - b.index),
  }
  if (errors.length) return { ok: false, errors }
  const v = VmmState.safeParse(state)
  if (!v.success) return { ok: false, errors: v.error.issues.map(i => `${i.path.join('.')}: ${i.message}`) }
  return { ok: true, state: v.data, ...(typeof fault === 'string' && fault ? { fault } : {}) }
}

/** `host check --qmp SOCKET`: connect, read, translate, close. */
export async function stateFromQmp(socket: string): Promise<StateResult> {
  const { Qmp } = await import('./qmp.js')
  let q: Qmp
  try { q = await Qmp.connect(socket) } catch (e) { return { ok: false, errors: [(e as Error).message] } }
  try { return await readQemuState(q) } finally { q.close() }
}

/** Read and translate: the whole `--qmp` path. */
export async function readQemuState(qmp: Qmp): Promise<StateResult> {
  try {
    return qemuStateToVmmState(await readQemuRaw(qmp))
  } catch (e) {
    return { ok: false, errors: [(e as Error).message] }
  }
}
