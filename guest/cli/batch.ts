// `virtmiti-guest batch`: several agent commands in one node process (issue 15 item 4: the live
// guest's /init started node three times, 0.5-0.9 s each under TCG). Each command runs exactly as
// its own `virtmiti-guest <command> ...` run would (same dispatch, same argv as seen by the command,
// NO_COLOR and the exit code reset between commands); its stdout and stderr are caught and written
// as one frame each in the protocol of host/qemu/README.md ("Frame format"), which /init passes on.
import * as fs from 'node:fs'
import { EXIT, captureOutput, stdio } from '../../bin/lib/cli.js'

export const BATCH_HELP = `usage: virtmiti-guest batch [NAME=]COMMAND [ARGS...] [:: [NAME=]COMMAND [ARGS...]]...

Runs the agent commands one after another in this process, each as its own run would (exit codes
and output unchanged), and prints one frame per command on stdout (host/qemu/README.md):
  @@virtmiti-begin NAME / base64 of its stdout / @@virtmiti-end NAME EXIT BYTES UPTIME
then a NAME.stderr frame when it wrote to stderr. NAME defaults to the command's name.
A guest's /init uses it to start node once per boot. Example:
  virtmiti-guest batch probe --json :: report --json :: selftest --tap

exit: 0 every command ran (each one's exit code is in its frame); 2 usage error.
`

export const SEPARATOR = '::'
const NAME = /^[A-Za-z0-9_.:-]{1,100}$/

export interface BatchStep { name: string; command: string; args: string[] }

/** argv -> steps, or the usage error (pure). */
export function parseBatch(argv: readonly string[], known: readonly string[]): BatchStep[] | { error: string } {
  const groups: string[][] = [[]]
  for (const a of argv) { if (a === SEPARATOR) groups.push([]); else groups[groups.length - 1]!.push(a) }
  const steps: BatchStep[] = []
  for (const g of groups) {
    const [head, ...args] = g
    if (head === undefined) return { error: `an empty command (two "${SEPARATOR}" in a row, or one at an end)` }
    const eq = head.indexOf('=')
    const name = eq > 0 ? head.slice(0, eq) : head
    const command = eq > 0 ? head.slice(eq + 1) : head
    if (!known.includes(command)) return { error: `unknown command "${command}" (expected one of: ${known.join(', ')})` }
    if (!NAME.test(name) || name.endsWith('.stderr')) return { error: `section name "${name}": use 1-100 of [A-Za-z0-9_.:-], not ending in .stderr` }
    if (steps.some(s => s.name === name)) return { error: `section "${name}" twice (give one NAME=${command})` }
    steps.push({ name, command, args })
  }
  return steps
}

/** One frame of protocol 1 (host/qemu/frames.ts parses it): base64 in 76 columns, like busybox base64. */
export function frame(name: string, exit: number, body: Buffer, uptimeS?: string): string {
  const b64 = body.toString('base64').replace(/.{76}(?!$)/g, '$&\n')
  return `@@virtmiti-begin ${name}\n${b64 ? b64 + '\n' : ''}@@virtmiti-end ${name} ${exit} ${body.length}${uptimeS ? ` ${uptimeS}` : ''}\n`
}

const uptime = (): string | undefined => {
  try { return fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0] } catch { return undefined }
}

/** Run `fn` with the commands' stdout/stderr caught (what a separate run would have printed): every
 * command writes through bin/lib/cli.ts stdio; a direct process.stdout.write would escape. */
async function caught(fn: () => Promise<number>): Promise<{ exit: number; out: Buffer; err: Buffer }> {
  const out: Buffer[] = [], err: Buffer[] = []
  // Through bin/lib/cli.ts stdio, which every command writes with; process.stdout is never built.
  const release = captureOutput({ out: s => { out.push(Buffer.from(s, 'utf8')) }, err: s => { err.push(Buffer.from(s, 'utf8')) } })
  try {
    const exit = await fn()
    return { exit, out: Buffer.concat(out), err: Buffer.concat(err) }
  } finally {
    release()
  }
}

export interface BatchDeps {
  /** The commands it may run (bin/guest-commands.ts GUEST, less batch). */
  commands: readonly string[]
  /** Run one as `virtmiti-guest COMMAND ARGS...` would (bin/dispatch.ts runFlat): passed in, since bin sits above guest. */
  run: (argv: string[]) => Promise<number>
  /** Where frames go (default fd 1, written synchronously: a kill leaves only whole frames). */
  write?: (s: string) => void
  uptime?: () => string | undefined
}

export async function main(argv: string[], deps: BatchDeps): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
    stdio.out(BATCH_HELP)
    return argv.length === 0 ? EXIT.USAGE : EXIT.OK
  }
  const known = deps.commands.filter(k => k !== 'batch')
  const steps = parseBatch(argv, known)
  if ('error' in steps) { stdio.err(`virtmiti-guest batch: ${steps.error}\n(see virtmiti-guest batch --help)\n`); return EXIT.USAGE }
  const write = deps.write ?? ((s: string) => { fs.writeSync(1, s) })
  const now = deps.uptime ?? uptime
  // What each command sees as its own process: argv up to the batch word, then its own words
  // (guest selftest starts its runner child from process.argv; guest/selftest/supervisor.ts selfCommand).
  const argv0 = process.argv
  const at = argv0.indexOf('batch', 2)
  const prefix = argv0.slice(0, at < 0 ? 2 : at)
  const noColor = process.env['NO_COLOR']
  try {
    for (const s of steps) {
      process.argv = [...prefix, s.command, ...s.args]
      process.exitCode = undefined
      if (noColor === undefined) delete process.env['NO_COLOR']; else process.env['NO_COLOR'] = noColor
      const r = await caught(() => deps.run([s.command, ...s.args]))
      const t = now()
      write(frame(s.name, r.exit, r.out, t) + (r.err.length > 0 ? frame(`${s.name}.stderr`, r.exit, r.err, t) : ''))
    }
  } finally {
    process.argv = argv0
    process.exitCode = undefined
  }
  return EXIT.OK
}
