// How `guest selftest` bounds device access and survives every signal (issue 14 item 2).
//
// A synchronous pread/pwrite on /dev/cpu cannot be interrupted from JavaScript, and signal handlers
// run only when the event loop turns, so the process that touches the devices cannot be the one
// that must react. The mechanism is a **supervisor process with a runner child started from the
// same file** (the guest bundle is one file run by plain node >= 18):
// - the supervisor (the process the operator or systemd signals) never touches a device; it starts
//   `selftest --runner` as a child in its own process group and keeps its event loop free;
// - the runner does all device access through WatchedPlatform, which sends a heartbeat byte on
//   fd 3 at most every 50 ms (one Date.now() per access otherwise: within the per-CPU budget);
// - the runner journals originals before its first write (journal.ts) and restores on every exit
//   it can see (end, exception, any terminating signal, the supervisor gone: EPIPE on fd 3);
// - on a terminating signal the supervisor sends SIGTERM to the runner, and SIGKILL after the
//   access deadline; when no heartbeat comes within the deadline (an access hangs) it SIGKILLs the
//   runner at once. Then it restores from the journal in a fresh `selftest --recover` child (itself
//   bounded by a timeout), prints `Bail out!` and exits (128 + signal, or 3 for the deadline);
// - SIGKILL of both leaves the journal: the next run (or --recover) restores from it first.
import * as fs from 'node:fs'
import { spawn, spawnSync } from 'node:child_process'
import type { CpuidResult, MsrRead, MsrWrite, Platform } from '../platform.js'
import { SIGNAL_NUMBER, TERMINATING_SIGNALS, type SignalHost } from './test-writes.js'

/** A platform whose every access first proves the runner is alive (and that the supervisor still is). */
export class WatchedPlatform implements Platform {
  readonly kind: string
  private last = 0
  private gone = false
  constructor(private readonly inner: Platform, private readonly fd = 3, private readonly everyMs = 50) { this.kind = inner.kind }

  beat(): void {
    if (this.gone) return
    const now = Date.now()
    if (now - this.last < this.everyMs) return
    this.last = now
    try { fs.writeSync(this.fd, '.') } catch (e) {
      // EPIPE/EBADF: the supervisor is gone. Stop testing; the runner's finally still restores.
      this.gone = true
      throw new Error(`the selftest supervisor is gone (${(e as NodeJS.ErrnoException).code ?? 'error'}): stopping`)
    }
  }
  cpus(): number[] { return this.inner.cpus() }
  cpuid(cpu: number, leaf: number, subleaf: number): CpuidResult { this.beat(); return this.inner.cpuid(cpu, leaf, subleaf) }
  rdmsr(cpu: number, index: number): MsrRead { this.beat(); return this.inner.rdmsr(cpu, index) }
  wrmsr(cpu: number, index: number, value: bigint): MsrWrite { this.beat(); return this.inner.wrmsr(cpu, index, value) }
  readText(path: string): string | undefined { return this.inner.readText(path) }
  close(): void { (this.inner as { close?: () => void }).close?.() }
}

/** How to start this same program again: node, its flags (no inspector), the script, the command words. */
export interface SelfCommand { execPath: string; args: string[] }

/** From process.argv: everything up to and including the word "selftest"; undefined when not run as a command. */
export function selfCommand(argv: readonly string[] = process.argv, execArgv: readonly string[] = process.execArgv): SelfCommand | undefined {
  const i = argv.indexOf('selftest', 2)
  if (i < 0 || argv[1] === undefined) return undefined
  return { execPath: argv[0] ?? process.execPath, args: [...execArgv.filter(a => !/^--(inspect|debug)/.test(a)), ...argv.slice(1, i + 1)] }
}

export interface SuperviseOptions {
  self: SelfCommand
  /** Options for the runner (without --runner). */
  runnerArgs: string[]
  /** Options for a --recover child (--dev-root, --journal-dir). */
  recoverArgs: string[]
  journalPath: string
  accessDeadlineMs: number
  recoverTimeoutMs: number
  tapVersion: '13' | '14'
  out: (s: string) => void
  err: (s: string) => void
  signals: SignalHost
}

/** Run `selftest --recover` in a child, bounded by a timeout; returns its exit code and what it said. */
export function recoverChild(o: Pick<SuperviseOptions, 'self' | 'recoverArgs' | 'recoverTimeoutMs'>): { code: number; said: string } {
  const r = spawnSync(o.self.execPath, [...o.self.args, '--recover', ...o.recoverArgs], { encoding: 'utf8', timeout: o.recoverTimeoutMs, killSignal: 'SIGKILL', stdio: ['ignore', 'pipe', 'pipe'] })
  const said = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').filter(Boolean).slice(-3).join('; ')
  if (r.error || r.status === null) return { code: 3, said: `recovery did not finish within ${o.recoverTimeoutMs} ms (${r.error ? (r.error as NodeJS.ErrnoException).code : `killed by ${r.signal}`}); the journal is kept for --recover` }
  return { code: r.status, said }
}

export function supervise(o: SuperviseOptions): Promise<number> {
  return new Promise<number>(resolvePromise => {
    const child = spawn(o.self.execPath, [...o.self.args, '--runner', ...o.runnerArgs], { stdio: ['ignore', 'pipe', 'inherit', 'pipe'], detached: true })
    let last = Date.now()
    // The deadline is per device access; node's own start-up (loading the bundle) comes first, so
    // the clock starts with the first heartbeat (with a generous bound on start-up itself).
    let started = false
    const startupMs = Math.max(30_000, o.accessDeadlineMs)
    let ending: { reason: string; code: number } | undefined
    let killTimer: NodeJS.Timeout | undefined
    const hb = child.stdio[3] as NodeJS.ReadableStream | null
    hb?.on('data', () => { last = Date.now(); started = true })
    hb?.on('error', () => {})
    child.stdout?.on('data', (d: Buffer) => { o.out(d.toString('utf8')) })
    const end = (reason: string, code: number, hard: boolean) => {
      if (ending) return
      ending = { reason, code }
      if (hard) { child.kill('SIGKILL'); return }
      child.kill('SIGTERM')
      // The runner reacts once its current access returns; one that hangs gets SIGKILL.
      killTimer = setTimeout(() => { child.kill('SIGKILL') }, o.accessDeadlineMs)
    }
    const handlers: [NodeJS.Signals, () => void][] = TERMINATING_SIGNALS.map(sig => [sig, () => end(`interrupted by ${sig}`, 128 + SIGNAL_NUMBER[sig], false)])
    handlers.push(['SIGUSR1', () => { o.err('guest selftest: SIGUSR1 ignored (the inspector stays closed in this root process)\n') }])
    for (const [s, f] of handlers) o.signals.on(s, f)
    const watch = setInterval(() => {
      if (ending) return
      if (!started && Date.now() - last > startupMs) end(`the selftest runner did not start within ${startupMs} ms`, 3, true)
      else if (started && Date.now() - last > o.accessDeadlineMs) end(`a device access took longer than the ${o.accessDeadlineMs} ms deadline`, 3, true)
    }, Math.min(100, o.accessDeadlineMs))
    child.on('error', e => { end(`could not start the selftest runner (${(e as NodeJS.ErrnoException).code ?? e.message})`, 3, true) })
    child.on('close', (code, signal) => {
      clearInterval(watch)
      if (killTimer) clearTimeout(killTimer)
      for (const [s, f] of handlers) o.signals.off(s, f)
      if (!ending && code !== null && code >= 0 && code <= 4) { resolvePromise(code); return }
      const reason = ending?.reason ?? `the selftest runner ended ${signal ? `by ${signal}` : `with exit ${code}`}`
      // The runner restores whatever it can see; the journal covers what it could not.
      const rec = fs.existsSync(o.journalPath) ? recoverChild(o) : { code: 0, said: 'every value restored by the runner' }
      const restored = rec.code === 0 ? `restored (${rec.said || 'from the journal'})` : `NOT restored: ${rec.said}`
      o.out(`TAP version ${o.tapVersion}\nBail out! ${`${reason}; ${restored}`.replace(/[\r\n\u2028\u2029]+/g, ' ')}\n`)
      o.err(`guest selftest: ${reason}; ${restored}\n`)
      resolvePromise(rec.code === 0 ? (ending?.code ?? 3) : 3)
    })
  })
}
