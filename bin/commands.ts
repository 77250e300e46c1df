// virtmiti: guest agent, host checker and scenario runner for Intel's virtual mitigation MSRs.
// Subcommands load lazily so that `guest probe` starts as fast as Node itself allows.
import { EXIT, InputError, UsageError } from './lib/cli.js'
import { VERSION } from './lib/version.js'

type Main = (argv: string[]) => Promise<number>
const COMMANDS: Record<string, Record<string, { help: string; load: () => Promise<Main> }>> = {
  guest: {
    probe: { help: 'read-only report of BHI/retpoline state and what would be written', load: async () => (await import('../guest/cli/probe.js')).main },
  },
  host: {},
  scenarios: {},
}

export function register(group: string, name: string, help: string, load: () => Promise<Main>): void {
  COMMANDS[group]![name] = { help, load }
}

function usage(): string {
  const lines = ['Usage: virtmiti <group> <command> [options]   (virtmiti <group> <command> --help for details)', '']
  for (const [g, cmds] of Object.entries(COMMANDS)) {
    for (const [n, c] of Object.entries(cmds)) lines.push(`  virtmiti ${`${g} ${n}`.padEnd(22)} ${c.help}`)
  }
  lines.push('', 'Exit codes: 0 ok; 1 contract violation found; 2 usage or input error; 3 could not tell; 4 skipped.')
  return lines.join('\n') + '\n'
}

export async function run(argv: string[]): Promise<number> {
  const [group, name, ...rest] = argv
  if (group === '--version' || group === '-V') { process.stdout.write(`virtmiti ${VERSION}\n`); return EXIT.OK }
  if (group === undefined || group === '--help' || group === '-h' || group === 'help') { process.stdout.write(usage()); return group ? EXIT.OK : EXIT.USAGE }
  const g = COMMANDS[group]
  if (!g) { process.stderr.write(`virtmiti: unknown command group "${group}" (expected ${Object.keys(COMMANDS).join(', ')})\n\n` + usage()); return EXIT.USAGE }
  if (name === undefined || name === '--help' || name === '-h') { process.stdout.write(usage()); return name ? EXIT.OK : EXIT.USAGE }
  const c = g[name]
  if (!c) { process.stderr.write(`virtmiti: unknown command "${group} ${name}" (expected one of: ${Object.keys(g).join(', ') || 'none yet'})\n`); return EXIT.USAGE }
  try {
    return await (await c.load())(rest)
  } catch (e) {
    if (e instanceof UsageError) { process.stderr.write(`virtmiti: ${e.message}\n(see virtmiti ${group} ${name} --help)\n`); return EXIT.USAGE }
    if (e instanceof InputError) { process.stderr.write(`virtmiti: ${e.message}\n`); return EXIT.USAGE }
    throw e
  }
}
