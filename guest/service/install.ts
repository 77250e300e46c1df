// `guest install-service` logic: write the service files under a prefix, creating directories,
// never replacing a file whose content differs unless forced, and saying what it did.
import * as nodeFs from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { SERVICE_FILES, ENABLE_LINK, AGENT_PATH, type ServiceFile } from './units.js'
import { writeFileAtomic } from '../atomic.js'
import { readBoundedSync } from '../../bin/lib/read-bounded.js'

/** The agent bundle is about 1 MB; unit files a few hundred bytes. */
const MAX_EXISTING = 16 * 1024 * 1024

/**
 * mkdir -p, one component at a time (issue 14 item 10: Node's recursive mkdirSync loops forever
 * where mkdir(2) answers ENOENT for an existing parent, as under /proc). An existing component
 * must be a directory (or a link to one: image roots with a merged /usr have them).
 */
function mkdirs(fs: typeof nodeFs, dir: string): void {
  const parts = resolve(dir).split('/').filter(Boolean)
  let cur = ''
  for (const p of parts) {
    cur += `/${p}`
    try { fs.mkdirSync(cur, { mode: 0o755 }) } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code !== 'EEXIST') throw new Error(`cannot create directory ${cur} (${code ?? (e as Error).message})`)
      if (!fs.statSync(cur).isDirectory()) throw new Error(`${cur} exists and is not a directory`)
    }
  }
}

export type InstallAction = 'created' | 'unchanged' | 'replaced' | 'refused'
export interface InstallStep { path: string; action: InstallAction; detail?: string }

export interface InstallOptions {
  prefix: string
  force: boolean
  /** The running agent bundle, copied to /usr/lib/virtmiti (absent when not run from the bundle). */
  agentSource?: string
  fs?: typeof nodeFs
}

function put(fs: typeof nodeFs, abs: string, shown: string, content: Buffer, mode: number, force: boolean): InstallStep {
  // What is there now, without following a symlink or opening a FIFO (issue 14 items 4, 6).
  let old: Buffer | 'other' | undefined
  let st: nodeFs.Stats | undefined
  try { st = fs.lstatSync(abs) } catch { st = undefined }
  if (st !== undefined) {
    const r = st.isFile() ? readBoundedSync(abs, { maxBytes: MAX_EXISTING, what: 'existing file' }) : undefined
    old = r?.ok ? Buffer.from(r.text, 'utf8') : 'other'
  }
  if (old instanceof Buffer && old.equals(content)) return { path: shown, action: 'unchanged' }
  if (old !== undefined && !force) return { path: shown, action: 'refused', detail: `exists ${old === 'other' ? 'and is not a regular file' : 'with different content'} (use --force to replace it)` }
  mkdirs(fs, dirname(abs))
  // Same atomic write as the report (random O_EXCL | O_NOFOLLOW temporary, then rename): a reader
  // never sees half a unit file, and a planted symlink is replaced, never written through.
  writeFileAtomic(abs, content, { fs, mode })
  return { path: shown, action: old === undefined ? 'created' : 'replaced' }
}

export function installService(o: InstallOptions): InstallStep[] {
  const fs = o.fs ?? nodeFs
  const prefix = resolve(o.prefix)
  const shown = (rel: string) => join(prefix, rel)
  const steps: InstallStep[] = []
  const files: ServiceFile[] = [...SERVICE_FILES]
  for (const f of files) steps.push(put(fs, shown(f.path), shown(f.path), Buffer.from(f.content, 'utf8'), f.mode, o.force))
  if (o.agentSource !== undefined) {
    const rel = AGENT_PATH.slice(1)
    if (resolve(o.agentSource) === shown(rel)) steps.push({ path: shown(rel), action: 'unchanged', detail: 'running from the installed copy' })
    else {
      const self = readBoundedSync(o.agentSource, { maxBytes: MAX_EXISTING, what: 'agent bundle' })
      if (!self.ok) throw new Error(self.error)
      steps.push(put(fs, shown(rel), shown(rel), Buffer.from(self.text, 'utf8'), 0o755, o.force))
    }
  }
  // Enable: the multi-user.target.wants symlink.
  const link = shown(ENABLE_LINK.path)
  let current: string | undefined
  try { current = fs.readlinkSync(link) } catch { current = undefined }
  if (current === ENABLE_LINK.target) steps.push({ path: link, action: 'unchanged', detail: `-> ${ENABLE_LINK.target}` })
  else {
    let exists = current !== undefined
    if (!exists) { try { fs.lstatSync(link); exists = true } catch { exists = false } }
    if (exists && !o.force) steps.push({ path: link, action: 'refused', detail: `exists${current ? ` -> ${current}` : ''} (use --force to replace it)` })
    else {
      mkdirs(fs, dirname(link))
      if (exists) fs.unlinkSync(link)
      fs.symlinkSync(ENABLE_LINK.target, link)
      steps.push({ path: link, action: exists ? 'replaced' : 'created', detail: `-> ${ENABLE_LINK.target}` })
    }
  }
  return steps
}
