// Command dispatch shared by the full CLI (bin/virtmiti.ts) and the guest-only bundle
// (bin/virtmiti-guest.ts). Subcommands load lazily so each run pays only for what it uses.
import { EXIT, InputError, UsageError, stdio } from './lib/cli.js'
import { VERSION } from './lib/version.js'

export type Main = (argv: string[]) => Promise<number>
export interface Command { help: string; load: () => Promise<Main> }
export type Table = Record<string, Record<string, Command>>

export function usage(table: Table, prog: string, grouped: boolean): string {
  const lines = [`Usage: ${prog} ${grouped ? '<group> ' : ''}<command> [options]   (add --help after a command for its options)`, '']
  for (const [g, cmds] of Object.entries(table)) {
    for (const [n, c] of Object.entries(cmds)) lines.push(`  ${prog} ${(grouped ? `${g} ${n}` : n).padEnd(22)} ${c.help}`)
  }
  lines.push('', 'Exit codes: 0 ok; 1 contract violation found; 2 usage or input error; 3 could not tell; 4 skipped.')
  return lines.join('\n') + '\n'
}

/**
 * Every command accepts --no-color (issue 12): taken here, before the command's own strict option
 * table, as NO_COLOR=1 (bin/lib/color.ts precedence), so it also reaches child processes.
 */
export function takeNoColor(argv: readonly string[]): string[] {
  const end = argv.indexOf('--')
  const head = end < 0 ? argv : argv.slice(0, end)
  if (!head.includes('--no-color')) return [...argv]
  process.env.NO_COLOR = '1'
  return [...head.filter(a => a !== '--no-color'), ...(end < 0 ? [] : argv.slice(end))]
}

async function invoke(c: Command, argv: string[], label: string): Promise<number> {
  try {
    return await (await c.load())(takeNoColor(argv))
  } catch (e) {
    if (e instanceof UsageError) { stdio.err(`virtmiti: ${e.message}\n(see ${label} --help)\n`); return EXIT.USAGE }
    if (e instanceof InputError) { stdio.err(`virtmiti: ${e.message}\n`); return EXIT.USAGE }
    // Anything else is a bug of ours, never a verdict: exit 3 with the message, not Node's 1 (which
    // reads as "contract violation") and no stack trace unless asked (issue 14 items 10, 11).
    const msg = e instanceof Error ? e.message : String(e)
    stdio.err(`virtmiti: internal error, could not tell: ${msg.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ')}\n`)
    if (process.env.VIRTMITI_DEBUG) stdio.err(`${e instanceof Error ? e.stack : ''}\n`)
    return EXIT.CANNOT_TELL
  }
}

/** `prog <group> <command> ...` */
export async function runGrouped(table: Table, prog: string, argv: string[]): Promise<number> {
  const [group, name, ...rest] = argv
  if (group === '--version' || group === '-V') { stdio.out(`virtmiti ${VERSION}\n`); return EXIT.OK }
  if (group === undefined || group === '--help' || group === '-h' || group === 'help') { stdio.out(usage(table, prog, true)); return group ? EXIT.OK : EXIT.USAGE }
  const g = table[group]
  if (!g) { stdio.err(`${prog}: unknown command group "${group}" (expected ${Object.keys(table).join(', ')})\n\n` + usage(table, prog, true)); return EXIT.USAGE }
  if (name === undefined || name === '--help' || name === '-h') { stdio.out(usage({ [group]: g }, prog, true)); return name ? EXIT.OK : EXIT.USAGE }
  const c = g[name]
  if (!c) { stdio.err(`${prog}: unknown command "${group} ${name}" (expected one of: ${Object.keys(g).join(', ')})\n`); return EXIT.USAGE }
  return invoke(c, rest, `${prog} ${group} ${name}`)
}

/** `prog <command> ...` over one group (the guest bundle); a leading group word is accepted too. */
export async function runFlat(group: Record<string, Command>, groupName: string, prog: string, argv: string[]): Promise<number> {
  const args = argv[0] === groupName ? argv.slice(1) : argv
  const [name, ...rest] = args
  if (name === '--version' || name === '-V') { stdio.out(`virtmiti ${VERSION}\n`); return EXIT.OK }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') { stdio.out(usage({ [groupName]: group }, prog, false)); return name ? EXIT.OK : EXIT.USAGE }
  const c = group[name]
  if (!c) { stdio.err(`${prog}: unknown command "${name}" (expected one of: ${Object.keys(group).join(', ')})\n`); return EXIT.USAGE }
  return invoke(c, rest, `${prog} ${name}`)
}
