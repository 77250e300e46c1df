// `scenarios run --emit DIR` (issue 13): per run, the files a VMM engineer must produce from their
// own VMM (the guest report and the VMM state) plus the host caps and the host-check result, so
// that `virtmiti host check` on them reproduces the run's verdict. Output-file rules: each file is
// written to a temporary file in the same directory, created exclusively, fsynced and renamed
// over the target; no directory the run creates or enters is a symlink.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomic } from '../../guest/atomic.js'
import { hex } from '../../contract/bits.js'
import { HOST_CAPS_SCHEMA_ID, type HostCaps } from '../../contract/host-caps.js'
import type { ChainRun } from './chain.js'
import { tapDocument } from '../../bin/lib/tap.js'
import { withEvidence, type Evidence } from '../check/evidence.js'

const json = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? hex(x) : x), 2) + '\n'

/**
 * Write `data` to `file` atomically, never through a symlink: the project's one atomic writer
 * (guest/atomic.ts: temp file beside the target created with O_CREAT|O_EXCL, which refuses an
 * existing name or symlink, fsync, rename over the target, which replaces a symlink there
 * rather than writing through it).
 */
export const writeFileExclusive = (file: string, data: string): void => writeFileAtomic(file, data)

/** A real directory at `dir` (created if missing); a symlink or a non-directory there is refused. */
export function realDir(dir: string): void {
  let st: fs.Stats | undefined
  try { st = fs.lstatSync(dir) } catch { /* missing */ }
  if (!st) { fs.mkdirSync(dir, { mode: 0o755 }); st = fs.lstatSync(dir) }
  if (st.isSymbolicLink()) throw new Error(`${dir}: is a symlink; refusing to write through it`)
  if (!st.isDirectory()) throw new Error(`${dir}: exists and is not a directory`)
}

export interface EmittedRun { dir: string; files: string[] }

/**
 * The run's files under DIR/<scenario>/<tier>/: guest-report.json (virtmiti/guest-report/v1, with
 * the verdict, as `guest report --out` writes it), vmm-state.json (virtmiti/vmm-state/v1) as the
 * first host check saw it, host-caps.json (the host model's caps, virtmiti/host-caps/v1),
 * selftest.tap (the guest selftest's output, as `guest selftest` prints it), vmm-state-after-reset.json
 * (the state right after every vCPU was reset) and host-check.json: `host check` of all of them
 * (virtmiti/check-result/v1), which names the failure the run named.
 */
export function emitRun(root: string, scenario: string, tier: string, run: ChainRun, hostCaps: HostCaps, source: string, resetCtrl?: bigint): EmittedRun | undefined {
  if (!run.report || !run.state || !run.check) return undefined
  realDir(root)
  realDir(join(root, scenario))
  const dir = join(root, scenario, tier)
  realDir(dir)
  const evidence: Evidence = {
    ...(run.selftest ? { selftest: run.selftest.points } : {}),
    ...(run.stateAfterReset ? { afterReset: { state: run.stateAfterReset, ...(resetCtrl ? { resetCtrl } : {}) } } : {}),
  }
  const files: [string, string][] = [
    ['guest-report.json', json(run.report.report)],
    ['vmm-state.json', json(run.state)],
    ['host-caps.json', json({ schema: HOST_CAPS_SCHEMA_ID, caps: { ...hostCaps }, source })],
    ...(run.selftest ? [['selftest.tap', tapDocument(run.selftest.points)] as [string, string]] : []),
    ...(run.stateAfterReset ? [['vmm-state-after-reset.json', json(run.stateAfterReset)] as [string, string]] : []),
    ['host-check.json', json(withEvidence(run.check, evidence, hostCaps, run.state))],
  ]
  for (const [name, text] of files) writeFileExclusive(join(dir, name), text)
  return { dir, files: files.map(([n]) => join(dir, n)) }
}
