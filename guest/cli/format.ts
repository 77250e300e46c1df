// `--format human|json|tap|prometheus|nrpe|short` of `guest probe` and `guest report` (issue 12);
// `--json` and `--tap` stay as aliases. NRPE is the only format that remaps exit codes.
import { UsageError } from '../../bin/lib/cli.js'

export const FORMATS = ['human', 'json', 'tap', 'prometheus', 'nrpe', 'short'] as const
export type Format = typeof FORMATS[number]

export const FORMAT_OPTIONS = {
  format: { type: 'string' }, json: { type: 'boolean' }, tap: { type: 'boolean' },
  explain: { type: 'boolean' }, 'textfile-dir': { type: 'string' }, 'no-color': { type: 'boolean' },
} as const

export function pickFormat(cmd: string, o: { format?: string | undefined; json?: boolean | undefined; tap?: boolean | undefined }, allowed: readonly Format[] = FORMATS): Format {
  const asked = [o.format, o.json ? 'json' : undefined, o.tap ? 'tap' : undefined].filter((x): x is string => x !== undefined)
  if (new Set(asked).size > 1) throw new UsageError(`${cmd}: --format, --json and --tap name different formats (${asked.join(', ')})`)
  const f = asked[0] ?? 'human'
  if (!(allowed as readonly string[]).includes(f)) throw new UsageError(`${cmd}: --format ${f}: expected one of ${allowed.join(', ')}`)
  return f as Format
}

/** Whether argv asks for NRPE output: then even a usage error must exit 3 (UNKNOWN), not 2. */
export function wantsNrpe(argv: readonly string[]): boolean {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--') break
    if (argv[i] === '--format=nrpe' || (argv[i] === '--format' && argv[i + 1] === 'nrpe')) return true
  }
  return false
}

/** The textfile collector's file in DIR (node_exporter reads only *.prom; the temp file is not one). */
export const TEXTFILE_NAME = { probe: 'virtmiti.prom', report: 'virtmiti-report.prom' } as const
