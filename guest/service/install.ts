// `guest install-service` logic: write the service files under a prefix, creating directories,
// never replacing a file whose content differs unless forced, and saying what it did.
import * as nodeFs from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { SERVICE_FILES, ENABLE_LINK, AGENT_PATH, type ServiceFile } from './units.js'

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
  let old: Buffer | undefined
  try { old = fs.readFileSync(abs) } catch { old = undefined }
  if (old !== undefined && old.equals(content)) return { path: shown, action: 'unchanged' }
  if (old !== undefined && !force) return { path: shown, action: 'refused', detail: 'exists with different content (use --force to replace it)' }
  fs.mkdirSync(dirname(abs), { recursive: true })
  // Same atomic pattern as the report: a reader never sees half a unit file.
  const tmp = `${abs}.tmp-${process.pid}`
  try {
    fs.writeFileSync(tmp, content, { mode })
    fs.chmodSync(tmp, mode)
    fs.renameSync(tmp, abs)
  } catch (e) {
    try { fs.unlinkSync(tmp) } catch { /* not created */ }
    throw e
  }
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
    else steps.push(put(fs, shown(rel), shown(rel), fs.readFileSync(o.agentSource), 0o755, o.force))
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
      fs.mkdirSync(dirname(link), { recursive: true })
      if (exists) fs.unlinkSync(link)
      fs.symlinkSync(ENABLE_LINK.target, link)
      steps.push({ path: link, action: exists ? 'replaced' : 'created', detail: `-> ${ENABLE_LINK.target}` })
    }
  }
  return steps
}
