// `virtmiti guest install-service [--prefix DIR] [--force]` (issue 4): install the udev rule and
// the systemd units (boot oneshot + CPU-online template) under PREFIX (default /), and the agent
// bundle itself when run from it. Exit: 0 done; 2 usage, or a differing file kept (needs --force);
// 3 an I/O error.
import { basename } from 'node:path'
import { installService, type InstallStep } from '../service/install.js'
import { AGENT_PATH, REPORT_PATH } from '../service/units.js'
import { EXIT, parse, stdio } from '../../bin/lib/cli.js'

export interface InstallDeps {
  out: (s: string) => void
  err: (s: string) => void
  /** Path of the running script (process.argv[1]); installed when it is the .cjs bundle. */
  selfPath?: string
}

export const INSTALL_USAGE = `usage: virtmiti guest install-service [--prefix DIR] [--force]

Installs under PREFIX (default /):
  etc/systemd/system/virtmiti-report.service    oneshot at boot: report on every CPU
  etc/systemd/system/virtmiti-report@.service   the same, run when a CPU comes online
  etc/udev/rules.d/90-virtmiti.rules            starts virtmiti-report@cpuN on CPU online
  etc/systemd/system/multi-user.target.wants/   the enable symlink
  ${AGENT_PATH.slice(1)}          this bundle, when run from it
A file that exists with different content is kept unless --force is given.
`

const OPTIONS = { prefix: { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const

export async function main(argv: string[], deps: InstallDeps = { out: stdio.out, err: stdio.err, ...(process.argv[1] ? { selfPath: process.argv[1] } : {}) }): Promise<number> {
  let v
  try { v = parse('guest install-service', argv, OPTIONS).values } catch (e) {
    deps.err(`${(e as Error).message}\n${INSTALL_USAGE}`); return EXIT.USAGE
  }
  if (v.help) { deps.out(INSTALL_USAGE); return EXIT.OK }
  const prefix = v.prefix ?? '/'
  if (prefix === '') { deps.err('guest install-service: --prefix wants a directory\n'); return EXIT.USAGE }
  // Only the guest bundle installs itself: the full host CLI (dist/virtmiti.mjs) needs koffi and node_modules.
  const self = deps.selfPath && /^virtmiti-guest.*\.cjs$/.test(basename(deps.selfPath)) ? deps.selfPath : undefined
  let steps: InstallStep[]
  try {
    steps = installService({ prefix, force: v.force ?? false, ...(self ? { agentSource: self } : {}) })
  } catch (e) {
    deps.err(`guest install-service: ${(e as Error).message}\n`)
    return EXIT.CANNOT_TELL
  }
  for (const s of steps) deps.out(`${s.action.padEnd(9)} ${s.path}${s.detail ? `  (${s.detail})` : ''}\n`)
  if (!self) deps.out(`note: not run from the bundle: copy dist/virtmiti-guest.cjs to ${prefix.replace(/\/$/, '')}${AGENT_PATH} yourself\n`)
  if (prefix === '/') deps.out(`next: systemctl daemon-reload && udevadm control --reload && systemctl start virtmiti-report.service; the report goes to ${REPORT_PATH}\n`)
  const refused = steps.filter(s => s.action === 'refused')
  if (refused.length > 0) {
    deps.err(`guest install-service: kept ${refused.length} existing file(s) with different content; rerun with --force to replace them\n`)
    return EXIT.USAGE
  }
  return EXIT.OK
}
