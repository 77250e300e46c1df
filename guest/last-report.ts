// The agent's last report on this boot (/run/virtmiti/report.json, written by the service), read
// by `guest probe` so that a report that failed on some CPU, or was refused (EPERM), shows in the
// verdict (issue 12). Root-owned, but read defensively: any shape problem means "no record".
import type { RecordCpu } from '../contract/verdict.js'
import { REPORT_SCHEMA_ID } from '../contract/report-id.js'
import type { Platform } from './platform.js'
import { REPORT_PATH } from './service/units.js'

const MAX = 8192

export function lastReport(p: Platform, path = REPORT_PATH): { origin: string; cpus: RecordCpu[] } | undefined {
  const text = p.readText(path)
  if (text === undefined || text.length > 16 * 1024 * 1024) return undefined
  let doc: unknown
  try { doc = JSON.parse(text) } catch { return undefined }
  const d = doc as { schema?: unknown; bootId?: unknown; timestamp?: unknown; cpus?: unknown }
  if (d?.schema !== REPORT_SCHEMA_ID || !Array.isArray(d.cpus) || d.cpus.length > MAX) return undefined
  // A record from another boot says nothing about this one (/run is normally cleared at boot).
  const boot = p.readText('/proc/sys/kernel/random/boot_id')?.trim()
  if (typeof d.bootId === 'string' && boot && d.bootId !== boot) return undefined
  const cpus: RecordCpu[] = []
  for (const c of d.cpus as { cpu?: unknown; outcome?: unknown; fault?: { step?: unknown; errno?: unknown; message?: unknown } }[]) {
    if (typeof c?.cpu !== 'number' || typeof c.outcome !== 'string') return undefined
    const f = c.fault
    cpus.push({ cpu: c.cpu, outcome: c.outcome.slice(0, 64),
      ...(f && typeof f.errno === 'string' ? { fault: { step: String(f.step ?? '').slice(0, 64), errno: f.errno.slice(0, 16), message: String(f.message ?? '').slice(0, 500) } } : {}) })
  }
  return { origin: `last report (${path}${typeof d.timestamp === 'string' ? `, ${d.timestamp.slice(0, 64)}` : ''})`, cpus }
}
