// A small QMP client (QEMU Machine Protocol, docs/interop/qmp-spec.rst): one Unix socket, one
// command at a time, JSON lines. The greeting, then qmp_capabilities, then execute(). Events
// are ignored. QEMU is untrusted input: lines are bounded, every reply is a parse, never a crash.
import net from 'node:net'

/** A reply line longer than this is an error (qom-get replies are tens of bytes). */
export const QMP_MAX_LINE = 1 << 20

export class QmpError extends Error {
  constructor(message: string, readonly qmpClass?: string) { super(message) }
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void }

export class Qmp {
  private buf = ''
  private pending: Pending[] = []
  private closed: Error | undefined
  private greeting: Pending | undefined
  version: string | undefined

  private constructor(private readonly sock: net.Socket, private readonly timeoutMs: number) {
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => this.onData(d))
    sock.on('error', e => this.fail(new QmpError(`QMP socket: ${e.message}`)))
    sock.on('close', () => this.fail(new QmpError('QMP socket closed')))
  }

  /** Connect, read the greeting, leave capabilities negotiation mode. */
  static async connect(path: string, timeoutMs = 10_000): Promise<Qmp> {
    const sock = net.createConnection(path)
    const q = new Qmp(sock, timeoutMs)
    const greeting = await q.withTimeout(new Promise<unknown>((resolve, reject) => { q.greeting = { resolve, reject } }), 'greeting')
    const g = greeting as { QMP?: { version?: { qemu?: { major?: unknown; minor?: unknown; micro?: unknown }; package?: unknown } } }
    const v = g.QMP?.version?.qemu
    if (v && [v.major, v.minor, v.micro].every(n => typeof n === 'number')) {
      const pkg = typeof g.QMP?.version?.package === 'string' ? g.QMP.version.package.trim() : ''
      q.version = `${v.major}.${v.minor}.${v.micro}${pkg ? ` (${pkg})` : ''}`.slice(0, 64)
    }
    await q.execute('qmp_capabilities')
    return q
  }

  /** Connect, retrying while QEMU has not created the socket yet. */
  static async connectRetry(path: string, deadlineMs = 15_000): Promise<Qmp> {
    const t0 = Date.now()
    for (;;) {
      try { return await Qmp.connect(path) } catch (e) {
        if (Date.now() - t0 > deadlineMs) throw e
        await new Promise(r => setTimeout(r, 100))
      }
    }
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closed) return Promise.reject(this.closed)
    const p = new Promise<unknown>((resolve, reject) => { this.pending.push({ resolve, reject }) })
    this.sock.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n')
    return this.withTimeout(p, command)
  }

  close(): void { this.sock.destroy() }

  private withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => { reject(new QmpError(`QMP ${what}: no reply within ${this.timeoutMs} ms`)); this.sock.destroy() }, this.timeoutMs)
      p.then(v => { clearTimeout(t); resolve(v) }, e => { clearTimeout(t); reject(e as Error) })
    })
  }

  private fail(e: Error): void {
    if (!this.closed) this.closed = e
    this.greeting?.reject(e)
    this.greeting = undefined
    for (const p of this.pending.splice(0)) p.reject(e)
  }

  private onData(d: string): void {
    this.buf += d
    for (;;) {
      const nl = this.buf.indexOf('\n')
      if (nl < 0) break
      const line = this.buf.slice(0, nl).trim()
      this.buf = this.buf.slice(nl + 1)
      if (line) this.onLine(line)
    }
    if (this.buf.length > QMP_MAX_LINE) { this.fail(new QmpError(`QMP line longer than ${QMP_MAX_LINE} bytes`)); this.sock.destroy() }
  }

  private onLine(line: string): void {
    let msg: unknown
    try { msg = JSON.parse(line) } catch { this.fail(new QmpError(`QMP: not JSON: ${line.slice(0, 100)}`)); return }
    if (typeof msg !== 'object' || msg === null) return
    const m = msg as Record<string, unknown>
    if ('QMP' in m) { this.greeting?.resolve(m); this.greeting = undefined; return }
    if ('event' in m) return
    const p = this.pending.shift()
    if (!p) return
    if ('return' in m) p.resolve(m['return'])
    else if ('error' in m) {
      const e = m['error'] as { class?: unknown; desc?: unknown } | null
      p.reject(new QmpError(`QMP: ${typeof e?.desc === 'string' ? e.desc.slice(0, 500) : 'error'}`, typeof e?.class === 'string' ? e.class : undefined))
    } else p.reject(new QmpError(`QMP: unexpected reply ${line.slice(0, 100)}`))
  }
}
