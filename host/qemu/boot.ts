// Boot the live-Linux-guest initramfs under qemu-system-x86_64 and collect its framed
// output from the second serial port (DESIGN.md test tier 4; issue 7).
// TCG by default: on this project's machines KVM runs a whole kernel emulated and far too
// slowly, and `-cpu host` aborts (KVM-NOTES.md "QEMU"). KVM only when asked and /dev/kvm opens.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { commandsParam, defaultCommands, X86_COMMAND_LINE_SIZE, type GuestCommand } from './commands.js'
import { kernelDeath, TRACE_END, type KernelDeath } from './death.js'
import { parseFrames, type ParsedFrames, type Section } from './frames.js'
import { bootableKernel, type BootKernel } from './kernel-extract.js'

export type Accel = 'tcg' | 'kvm'

export interface BootOptions {
  image: string
  /** A vmlinuz: booted as its extracted PVH vmlinux when it has one (host/qemu/kernel-extract.ts). */
  kernel: string
  /** Boot `kernel` exactly as given (no extraction). */
  kernelAsGiven?: boolean
  /** QEMU -cpu model, e.g. Skylake-Server (QEMU 7.2 has no SapphireRapids, KVM-NOTES.md). */
  cpu: string
  smp?: number
  /** -smp N,maxcpus=M: room for M - N vCPUs hot-plugged later (device_add). */
  maxCpus?: number
  memMiB?: number
  accel?: Accel
  /** Extra kernel parameters, e.g. ['spectre_bhi=off']. */
  append?: readonly string[]
  /** Commands the guest runs; default defaultCommands(). */
  commands?: readonly GuestCommand[]
  /** Host-side limit for the whole boot; QEMU is killed after it. Default 120 s. */
  timeoutMs?: number
  /** Per-command limit inside the guest (virtmiti.timeout=), seconds. Default 60. */
  guestCommandTimeoutS?: number
  /** Directory for console.log and frames.log; default a new temp directory. */
  workDir?: string
  qemu?: string
  /** Extra -cpu properties, e.g. ['virt-miti=on', 'bhi-ctrl=on'] (patched QEMU, host/qemu/patches). */
  cpuProps?: readonly string[]
  /** SMBIOS system UUID (-uuid): what the guest report carries as vmUuid. */
  uuid?: string
  /**
   * Keep the guest up after its last section (virtmiti.hold=1) and call this with a QMP socket
   * while it runs: the host reads QEMU's state, migrates, ... Then QEMU is told to quit over QMP.
   */
  held?: (g: HeldGuest) => Promise<void>
  /** Firmware directories (-L): a QEMU built from source has no default data dir; Debian's packages hold seabios. */
  dataDirs?: readonly string[]
  /** More QEMU arguments (e.g. -incoming for a migration destination). */
  extraArgs?: readonly string[]
}

export interface HeldGuest { qmpSocket: string; workDir: string; sections: Map<string, Section> }

export interface BootResult {
  /** QEMU exited 0 before the timeout, the guest sent its done line, and no frame was bad. */
  ok: boolean
  accel: Accel
  argv: string[]
  /** Spawn to QEMU exit (the guest powers off after its last section). */
  wallMs: number
  timedOut: boolean
  exitCode: number | null
  signal: string | null
  sections: Map<string, Section>
  frames: ParsedFrames
  consoleLog: string
  framesLog: string
  /** QEMU's own stderr (e.g. "TCG doesn't support requested feature" warnings). */
  qemuStderr: string
  /** What -kernel got: the extracted vmlinux or the vmlinuz, with the reason (absent with kernelAsGiven). */
  bootKernel?: Omit<BootKernel, 'ms'>
  notes: string[]
  /** The guest never sent its hello frame and the console shows why (death.ts). */
  death?: KernelDeath
  error?: string
}

/** A kernel whose console ended with a trace and stays silent this long before /init is taken as dead. */
export const DEAD_SILENCE_MS = 15_000

/** Whether /dev/kvm can be opened read-write: the least `-accel kvm` needs. */
export function kvmUsable(): { ok: boolean; reason: string } {
  try {
    fs.closeSync(fs.openSync('/dev/kvm', 'r+'))
    return { ok: true, reason: '/dev/kvm opens read-write' }
  } catch (e) {
    return { ok: false, reason: `/dev/kvm: ${(e as NodeJS.ErrnoException).code ?? String(e)}` }
  }
}

/** QEMU option values are comma-separated: a literal comma is written twice. */
export const qemuPath = (p: string): string => p.replace(/,/g, ',,')

/** The kernel command line: serial console, reboot (= QEMU exit, -no-reboot) on panic, extras, the command list. */
export function kernelCmdline(opts: Pick<BootOptions, 'append' | 'commands' | 'guestCommandTimeoutS' | 'held'>): string {
  const parts = ['console=ttyS0', 'panic=1', ...(opts.append ?? [])]
  if (opts.held) parts.push('virtmiti.hold=1')
  if (opts.guestCommandTimeoutS !== undefined) parts.push(`virtmiti.timeout=${Math.max(1, Math.floor(opts.guestCommandTimeoutS))}`)
  parts.push(commandsParam(opts.commands ?? defaultCommands()))
  return parts.join(' ')
}

/** qemu-system-x86_64 arguments (pure, for tests and for printing the exact command). */
export function qemuArgs(opts: BootOptions, accel: Accel, consoleLog: string, framesLog: string, qmpSocket?: string): string[] {
  if (opts.cpuProps?.some(p => !/^[a-z0-9][a-z0-9_.-]*=[A-Za-z0-9_.-]+$/.test(p))) throw new Error(`-cpu properties must be name=value words: ${opts.cpuProps.join(',')}`)
  if (opts.uuid !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(opts.uuid)) throw new Error(`-uuid ${opts.uuid}: expected a lower-case UUID`)
  return [
    '-accel', accel,
    '-cpu', [opts.cpu, ...(opts.cpuProps ?? [])].join(','),
    '-smp', `${opts.smp ?? 2}${opts.maxCpus !== undefined ? `,maxcpus=${opts.maxCpus}` : ''}`,
    '-m', String(opts.memMiB ?? 1024), // 320 MiB is the least that unpacks node (KVM-NOTES.md)
    '-kernel', opts.kernel,
    '-initrd', opts.image,
    '-append', kernelCmdline(opts),
    '-nographic', '-nodefaults', '-no-user-config', '-no-reboot', '-monitor', 'none',
    // -chardev, not `-serial file:PATH`: the legacy -serial syntax cannot escape a comma.
    '-chardev', `file,id=virtmiti-console,path=${qemuPath(consoleLog)}`,
    '-chardev', `file,id=virtmiti-frames,path=${qemuPath(framesLog)}`,
    '-serial', 'chardev:virtmiti-console', // ttyS0: kernel console and /init's log
    '-serial', 'chardev:virtmiti-frames',  // ttyS1: framed results only
    ...(opts.dataDirs ?? []).flatMap(d => ['-L', d]),
    ...(opts.uuid ? ['-uuid', opts.uuid] : []),
    ...(qmpSocket ? ['-qmp', `unix:${qemuPath(qmpSocket)},server=on,wait=off`] : []),
    ...(opts.extraArgs ?? []),
  ]
}

/** Wait for the done frame in the frames log (the guest holds after it), or for QEMU to exit. */
async function waitForDone(framesLog: string, exited: () => boolean, deadline: number): Promise<boolean> {
  while (!exited() && performance.now() < deadline) {
    try { if (fs.readFileSync(framesLog, 'utf8').includes('\n@@virtmiti-done ')) return true } catch { /* not yet created */ }
    await new Promise(r => setTimeout(r, 200))
  }
  return false
}

/** A new short directory for Unix sockets (removed with the process's other temp dirs by the OS). */
export const socketDir = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'vm-sock-'))

/** Tell QEMU to quit over QMP (the reply may not arrive: QEMU exits). */
export async function qmpQuit(socket: string): Promise<void> {
  const { Qmp } = await import('./qmp.js')
  try {
    const q = await Qmp.connect(socket, 5000)
    await q.execute('quit').catch(() => undefined)
    q.close()
  } catch { /* already gone */ }
}

export async function bootGuest(opts: BootOptions): Promise<BootResult> {
  const notes: string[] = []
  let accel: Accel = opts.accel ?? 'tcg'
  if (accel === 'kvm') {
    const kvm = kvmUsable()
    if (!kvm.ok) { notes.push(`kvm requested but ${kvm.reason}; using tcg`); accel = 'tcg' }
  }
  const workDir = opts.workDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'virtmiti-qemu-'))
  fs.mkdirSync(workDir, { recursive: true })
  const consoleLog = path.join(workDir, 'console.log')
  const framesLog = path.join(workDir, 'frames.log')
  // Sockets live in a short temp dir of their own: sun_path holds 108 bytes, and -qmp's legacy
  // syntax cannot take a path with '=' (work dirs are named after command lines).
  const qmpSocket = opts.held ? path.join(socketDir(), 'qmp.sock') : undefined
  for (const f of [consoleLog, framesLog, ...(qmpSocket ? [qmpSocket] : [])]) fs.rmSync(f, { force: true })
  const empty = parseFrames('')
  const fail = (error: string, argv: string[] = []): BootResult => ({
    ok: false, accel, argv, wallMs: 0, timedOut: false, exitCode: null, signal: null,
    sections: new Map(), frames: empty, consoleLog, framesLog, qemuStderr: '', notes, error,
  })
  // Issue 15 item 4: the kernel decompressing itself under TCG was 2.7-4.4 s of a boot.
  let bootKernel: BootKernel | undefined
  if (!opts.kernelAsGiven) {
    bootKernel = bootableKernel(opts.kernel)
    if (bootKernel.kind === 'as-given') notes.push(`kernel: ${bootKernel.reason}`)
  }
  let argv: string[]
  try {
    argv = qemuArgs(bootKernel ? { ...opts, kernel: bootKernel.path } : opts, accel, consoleLog, framesLog, qmpSocket)
  } catch (e) {
    return fail((e as Error).message)
  }
  const cmdline = argv[argv.indexOf('-append') + 1]!
  if (cmdline.length >= X86_COMMAND_LINE_SIZE) {
    return fail(`kernel command line is ${cmdline.length} bytes; x86 keeps ${X86_COMMAND_LINE_SIZE - 1} (shorten the command list)`, argv)
  }
  for (const [what, p] of [['kernel', opts.kernel], ['initramfs', opts.image]] as const) {
    try { fs.accessSync(p, fs.constants.R_OK) } catch { return fail(`${what} ${p} is not readable`, argv) }
  }
  const qemu = opts.qemu ?? 'qemu-system-x86_64'
  const timeoutMs = opts.timeoutMs ?? 120_000
  const t0 = performance.now()
  let exited = false
  let died = false
  let heldError: string | undefined
  const runP = new Promise<{ code: number | null; signal: string | null; stderr: string; timedOut: boolean; spawnError?: string }>(resolve => {
    // coreutils timeout as a second guard: QEMU dies at the deadline (+5 s) even if this
    // process is killed first; our own timer sends SIGTERM, which timeout passes on to QEMU.
    const guardS = String(Math.ceil(timeoutMs / 1000) + 5)
    const child = spawn('timeout', ['-s', 'KILL', guardS, qemu, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    let timedOut = false
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (d: string) => { if (stderr.length < 1 << 20) stderr += d })
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGTERM') }, timeoutMs)
    // A WARN/Oops trace and then silence before /init's hello: the kernel is gone (7.2.13 hangs after
    // its apply_retpolines WARNING instead of panicking); stop instead of waiting for the timeout.
    let size = -1, still = 0
    const watch = setInterval(() => {
      let c = ''
      try { if (fs.statSync(framesLog).size > 0) return; c = fs.readFileSync(consoleLog, 'utf8') } catch { return }
      if (c.length !== size) { size = c.length; still = performance.now(); return }
      if (TRACE_END.test(c.slice(-4096)) && performance.now() - still > DEAD_SILENCE_MS) { died = true; child.kill('SIGTERM') }
    }, 1000)
    const done = () => { clearTimeout(timer); clearInterval(watch) }
    child.on('error', e => { done(); resolve({ code: null, signal: null, stderr, timedOut, spawnError: e.message }) })
    child.on('close', (code, signal) => { done(); exited = true; resolve({ code, signal, stderr, timedOut }) })
  })
  if (opts.held && qmpSocket) {
    if (await waitForDone(framesLog, () => exited, t0 + timeoutMs)) {
      try {
        await opts.held({ qmpSocket, workDir, sections: parseFrames(fs.readFileSync(framesLog, 'utf8')).sections })
      } catch (e) {
        heldError = `while the guest was held: ${(e as Error).message}`
      }
    }
    if (!exited) await qmpQuit(qmpSocket)
  }
  const run = await runP
  const wallMs = performance.now() - t0
  let text = ''
  try { text = fs.readFileSync(framesLog, 'utf8') } catch { /* no frames: reported by the parser */ }
  const frames = parseFrames(text)
  const result: BootResult = {
    ok: false, accel, argv, wallMs, timedOut: run.timedOut, exitCode: run.code, signal: run.signal,
    sections: frames.sections, frames, consoleLog, framesLog, qemuStderr: run.stderr, notes,
  }
  if (bootKernel) { const { ms: _, ...k } = bootKernel; result.bootKernel = k }
  // No hello frame: /init never ran. The console's last WARNING/panic/Oops line says why.
  if (!run.spawnError && run.code !== 127 && !/^@@virtmiti-hello /m.test(text)) {
    let con = ''
    try { con = fs.readFileSync(consoleLog, 'utf8') } catch { /* no console */ }
    const d = kernelDeath(con)
    if (d) result.death = d
    result.error = d ? `kernel died before /init: ${d.line}` : `kernel did not reach /init (no @@virtmiti-hello frame${run.timedOut ? `, QEMU killed after ${timeoutMs} ms` : ''}; console: ${consoleLog})`
    if (died) notes.push(`console silent for ${DEAD_SILENCE_MS / 1000} s after a kernel trace: QEMU stopped`)
  } else if (heldError) result.error = heldError
  else if (run.spawnError) result.error = `cannot start ${qemu}: ${run.spawnError}`
  else if (run.code === 127) result.error = `${qemu} not found (apt-get install qemu-system-x86)`
  else if (run.timedOut) result.error = `no poweroff within ${timeoutMs} ms: QEMU killed (console: ${consoleLog})`
  else if (run.code !== 0) result.error = `${qemu} exited ${run.code ?? run.signal}: ${run.stderr.trim().split('\n').pop() ?? ''} (console: ${consoleLog})`
  else if (frames.errors.length > 0) result.error = `guest output has ${frames.errors.length} framing error(s): ${frames.errors.map(e => e.message).join('; ')} (console: ${consoleLog})`
  result.ok = result.error === undefined
  return result
}
