// Runs the -bios payload (kvm-payload.ts) under `qemu-system-x86_64 -accel kvm` and collects what
// it reported: the debug-port records (each with the host time it appeared, for wall-clock cost),
// QEMU's per-vCPU QOM state over QMP once the payload is done, and the exit status. I/O edge only:
// the checks are in kvm-payload-checks.ts.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { kvmPayloadImage, parseRecords, TAG, DEBUG_EXIT_PORT, type PayloadParams, type PayloadRecord } from './kvm-payload.js'
import { Qmp } from './qmp.js'
import { qomGetEach } from './qemu-state.js'

/** QOM properties read from vCPU 0: patches 0002, 0003 and 0005, and the CPUID feature flags. */
export const PAYLOAD_QOM = [
  'virt-miti', 'virt-miti-enum', 'virt-miti-ctrl', 'spec-ctrl-shadow', 'spec-ctrl-effective',
  'spec-ctrl-forced-mask', 'spec-ctrl-forced-value', 'spec-ctrl-guest-read', 'spec-ctrl-guest-reads',
  'spec-ctrl-kvm-readback', 'spec-ctrl-kvm-pushes', 'spec-ctrl', 'arch-capabilities', 'filtered-features',
] as const

export interface PayloadRunOptions {
  qemu: string
  /** Default kvm; tcg runs the same payload through TCG's helpers (the shared emulation). */
  accel?: 'kvm' | 'tcg'
  /** -cpu argument: model and properties. */
  cpu: string
  params: PayloadParams
  timeoutMs: number
  /** Keep the image, debug log and stderr here (default: a temporary directory, removed). */
  keepDir?: string
}

export interface PayloadRun {
  argv: string[]
  records: PayloadRecord[]
  /** performance.now() - start when each record was first seen (polled every POLL_MS). */
  seenMs: number[]
  trailing: number
  qom: Record<string, unknown>
  qomErrors: string[]
  exitCode: number | null
  signal: string | null
  stderr: string
  wallMs: number
  error?: string
}

export const POLL_MS = 2

export async function runKvmPayload(o: PayloadRunOptions): Promise<PayloadRun> {
  const dir = o.keepDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vm-kvmpl-'))
  fs.mkdirSync(dir, { recursive: true })
  const img = path.join(dir, 'payload.bin'), log = path.join(dir, 'debugcon.bin'), sock = path.join(dir, 'qmp.sock')
  fs.writeFileSync(img, kvmPayloadImage(o.params))
  fs.writeFileSync(log, '')
  fs.rmSync(sock, { force: true })
  const argv = [
    '-accel', o.accel ?? 'kvm', '-machine', 'pc', '-cpu', o.cpu, '-smp', '1', '-m', '16',
    '-bios', img, '-display', 'none', '-nodefaults', '-no-user-config',
    '-debugcon', `file:${log}`, '-device', `isa-debug-exit,iobase=${DEBUG_EXIT_PORT},iosize=0x04`,
    '-qmp', `unix:${sock},server=on,wait=off`,
  ]
  const t0 = performance.now()
  const child = spawn(o.qemu, argv, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 64 << 10) stderr += d })
  const exited = new Promise<{ code: number | null; signal: string | null }>(resolve => {
    child.on('exit', (code, signal) => resolve({ code, signal }))
    child.on('error', () => resolve({ code: null, signal: null }))
  })
  let done: { code: number | null; signal: string | null } | undefined
  void exited.then(d => { done = d })
  const run: PayloadRun = { argv, records: [], seenMs: [], trailing: 0, qom: {}, qomErrors: [], exitCode: null, signal: null, stderr: '', wallMs: 0 }
  const fd = fs.openSync(log, 'r')
  const chunks: Buffer[] = []
  let size = 0
  const poll = (): void => {
    const st = fs.fstatSync(fd)
    if (st.size <= size) return
    const b = Buffer.alloc(st.size - size)
    const n = fs.readSync(fd, b, 0, b.length, size)
    size += n
    chunks.push(b.subarray(0, n))
    const p = parseRecords(Buffer.concat(chunks))
    const now = performance.now() - t0
    while (run.seenMs.length < p.records.length) run.seenMs.push(now)
    run.records = p.records
    run.trailing = p.trailing
  }
  const last = () => run.records[run.records.length - 1]?.tag
  try {
    while (!done && performance.now() - t0 < o.timeoutMs && last() !== TAG.done && last() !== TAG.unexpected) {
      poll()
      await new Promise(r => setTimeout(r, POLL_MS))
    }
    poll()
    if (last() === TAG.done && !done) {
      // The payload waits in HLT: read the state, then reset; its second start leaves (kvm-payload.ts).
      let q: Qmp | undefined
      try {
        q = await Qmp.connectRetry(sock, 10_000)
        const cpus = await q.execute('query-cpus-fast') as { 'qom-path'?: unknown }[]
        const qp = cpus?.[0]?.['qom-path']
        if (typeof qp !== 'string') throw new Error('query-cpus-fast: no qom-path')
        for (const [p, v] of Object.entries(await qomGetEach(q, qp, PAYLOAD_QOM))) {
          const missing = v !== null && typeof v === 'object' && 'missing' in v ? (v as { missing: string }).missing : undefined
          if (missing === undefined) run.qom[p] = v
          else run.qomErrors.push(`${p}: ${missing}`)
        }
        // QEMU may exit (isa-debug-exit) before its reply: the exit status, not the reply, is the answer.
        await q.execute('system_reset').catch(() => undefined)
      } catch (e) {
        run.qomErrors.push(`QMP: ${(e as Error).message}`)
      } finally { q?.close() }
    } else if (!done) {
      run.error = last() === TAG.unexpected ? 'the payload took an unexpected exception' : `no "done" record within ${o.timeoutMs} ms (${run.records.length} records)`
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), done ? 0 : 15_000)
    const e = await exited
    clearTimeout(timer)
    poll()
    run.exitCode = e.code
    run.signal = e.signal
  } finally {
    fs.closeSync(fd)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    if (!o.keepDir) fs.rmSync(dir, { recursive: true, force: true })
  }
  run.stderr = stderr
  run.wallMs = performance.now() - t0
  return run
}
