// The selftest's journal (issue 14 item 2): before the selftest writes an MSR for the first time,
// the original value of every MSR it may change is saved to a file under /run (tmpfs: gone at
// reboot, when the vCPUs reset anyway). A clean end (or a handled signal) restores and removes it;
// after a SIGKILL the next `guest selftest`, or `guest selftest --recover`, restores from it.
// The journal is root's own file, but it is still checked before anything is written from it:
// only MSRs on the selftest's rule table (test-writes.ts), 64-bit values, the same --dev-root,
// the same boot, and only on CPUs where the gate itself walks the discovery chain.
import * as fs from 'node:fs'
import { createHash } from 'node:crypto'
import { join, resolve } from 'node:path'
import type { Platform } from '../platform.js'
import { hex, parseU64 } from '../../contract/bits.js'
import { writeFileAtomic } from '../atomic.js'
import { readBoundedSync } from '../../bin/lib/read-bounded.js'
import { SELFTEST_WRITABLE, TestWrites, type JournalSink, type Original, type RestoreResult } from './test-writes.js'

export const JOURNAL_SCHEMA = 'virtmiti/selftest-journal/v1'
export const DEFAULT_JOURNAL_DIR = '/run/virtmiti'
const MAX_BYTES = 4 * 1024 * 1024
const MAX_ENTRIES = 8192 * SELFTEST_WRITABLE.length

interface JournalDoc { schema: string; devRoot: string; bootId?: string; pid: number; originals: { cpu: number; index: number; value: string }[] }

const canonicalRoot = (devRoot: string) => { try { return fs.realpathSync(devRoot) } catch { return resolve(devRoot) } }

/** One journal per device tree: the real "/" and each --dev-root tree never share one. */
export function journalPath(dir: string, devRoot: string): string {
  return join(dir, `selftest-${createHash('sha256').update(canonicalRoot(devRoot)).digest('hex').slice(0, 16)}.json`)
}

/** The journal directory, created 0700 if missing; refused if it is a symlink or not ours. */
function ensureDir(dir: string): void {
  // /run exists on systemd guests and in the QEMU tier's initramfs (a tmpfs); DIR itself is ours.
  try { fs.mkdirSync(dir, { mode: 0o700 }) } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot create the selftest journal directory ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); give --journal-dir DIR`)
  }
  const st = fs.lstatSync(dir)
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1
  if (!st.isDirectory()) throw new Error(`journal directory ${dir} is not a directory`)
  if (uid >= 0 && st.uid !== uid) throw new Error(`journal directory ${dir} belongs to uid ${st.uid}, not ${uid}`)
}

export class FileJournal implements JournalSink {
  constructor(readonly path: string, private readonly meta: { devRoot: string; bootId?: string }) {}

  save(originals: readonly Original[]): void {
    ensureDir(join(this.path, '..'))
    const doc: JournalDoc = {
      schema: JOURNAL_SCHEMA, devRoot: canonicalRoot(this.meta.devRoot), ...(this.meta.bootId ? { bootId: this.meta.bootId } : {}), pid: process.pid,
      originals: originals.map(o => ({ cpu: o.cpu, index: o.index, value: hex(o.value) })),
    }
    writeFileAtomic(this.path, JSON.stringify(doc) + '\n', { mode: 0o600 })
  }

  clear(): void { try { fs.unlinkSync(this.path) } catch { /* already gone */ } }
}

export type Recovery =
  | { kind: 'none' }
  | { kind: 'stale'; why: string }
  | { kind: 'invalid'; why: string }
  | { kind: 'restored'; result: RestoreResult; refused: string[] }

function validate(doc: unknown, devRoot: string): { ok: true; originals: Original[] } | { ok: false; why: string } {
  const d = doc as Partial<JournalDoc> | null
  if (typeof d !== 'object' || d === null || d.schema !== JOURNAL_SCHEMA) return { ok: false, why: `not a ${JOURNAL_SCHEMA} document` }
  if (d.devRoot !== canonicalRoot(devRoot)) return { ok: false, why: `written for device tree ${JSON.stringify(String(d.devRoot).slice(0, 200))}, not ${canonicalRoot(devRoot)}` }
  if (!Array.isArray(d.originals) || d.originals.length > MAX_ENTRIES) return { ok: false, why: 'originals: expected a bounded array' }
  const out: Original[] = []
  for (const [i, o] of d.originals.entries()) {
    const v = typeof o?.value === 'string' ? parseU64(o.value) : undefined
    if (!Number.isInteger(o?.cpu) || o.cpu < 0 || o.cpu > 65535) return { ok: false, why: `originals[${i}].cpu: expected a CPU number` }
    if (!SELFTEST_WRITABLE.includes(o.index)) return { ok: false, why: `originals[${i}].index: MSR ${Number(o.index)} is not on the selftest's rule table` }
    if (v === undefined) return { ok: false, why: `originals[${i}].value: expected a 64-bit "0x" value` }
    out.push({ cpu: o.cpu, index: o.index, value: v })
  }
  return { ok: true, originals: out }
}

/**
 * Put back what a previous run recorded, then remove the journal (kept when something could not be
 * restored, so that a later --recover can try again). Writes only on CPUs that show
 * ARCH_CAPABILITIES bit 63 (never 0x5000000x without it, contract/CONTRACT.md section 3); VIRTUAL_ENUMERATION
 * is put back first, so that 0x50000001/2 exist again before they are restored.
 */
export function recoverFromJournal(path: string, platform: Platform, o: { devRoot: string; bootId?: string }): Recovery {
  if (!fs.existsSync(path)) return { kind: 'none' }
  const r = readBoundedSync(path, { maxBytes: MAX_BYTES, what: 'selftest journal' })
  if (!r.ok) return { kind: 'invalid', why: r.error }
  let doc: unknown
  try { doc = JSON.parse(r.text) } catch (e) { return { kind: 'invalid', why: `${path}: not JSON (${(e as Error).message.slice(0, 100)})` } }
  const v = validate(doc, o.devRoot)
  if (!v.ok) return { kind: 'invalid', why: `${path}: ${v.why}` }
  const bootId = (doc as JournalDoc).bootId
  if (bootId !== undefined && o.bootId !== undefined && bootId !== o.bootId) {
    fs.unlinkSync(path)
    return { kind: 'stale', why: `written during boot ${bootId}, this is boot ${o.bootId}: the vCPUs were reset since; nothing written` }
  }
  const gate = new TestWrites(platform)
  const refused: string[] = []
  const ok = v.originals.filter(x => {
    const en = gate.archCapEnumerated(x.cpu)
    if (en !== true) refused.push(`cpu ${x.cpu} MSR ${hex(x.index)}: not restored (${en})`)
    return en === true
  })
  const result = gate.restoreOriginals(ok)
  if (result.failed.length === 0 && refused.length === 0) fs.unlinkSync(path)
  return { kind: 'restored', result, refused }
}
