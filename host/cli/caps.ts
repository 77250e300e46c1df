// `virtmiti host caps [--json]`: this host's capabilities as contract/CONTRACT.md section 5 uses them,
// read for real (CPUID through /dev/cpu/N/cpuid, ARCH_CAPABILITIES through /dev/cpu/N/msr).
import { EXIT, parse, stdio, type Io } from '../../bin/lib/cli.js'
import { decode } from '../../contract/bits.js'
import { HOST_CAP_NAMES, HOST_CAP_SOURCES, hostCapsToJson } from '../../contract/host-caps.js'
import { SPEC_CTRL } from '../../contract/registers.js'
import { supportedForceBits } from '../../contract/vmm-response.js'
import type { Platform } from '../../guest/platform.js'
import { readHostCaps } from '../caps-read.js'

export const CAPS_HELP = `Usage: virtmiti host caps [options]

Reads this host's CPUID.(7,0), CPUID.(7,2) and IA32_ARCH_CAPABILITIES on every CPU and prints
the capabilities the VMM response depends on (contract/CONTRACT.md section 5): BHI_CTRL, BHI_NO,
RRSBA_CTRL, RRSBA, STIBP, SSBD, and the SPEC_CTRL bits a VMM may force on this host. Read-only.

Options:
  --json           JSON (schema virtmiti/host-caps/v1); usable as \`host check --host-caps\`
  --dev-root DIR   read DIR/dev/cpu/N/{cpuid,msr} and DIR/sys instead of /
  -h, --help       this help

Exit: 0 all capabilities known; 2 usage error; 3 could not tell (e.g. the msr driver is
missing, so BHI_NO and RRSBA are unknown: the reason is printed).
`

export interface CapsDeps { io?: Io; platform?: Platform }

export async function main(argv: string[], deps: CapsDeps = {}): Promise<number> {
  const io = deps.io ?? stdio
  const { values: o } = parse('host caps', argv, { json: { type: 'boolean' }, 'dev-root': { type: 'string' }, help: { type: 'boolean', short: 'h' } })
  if (o.help) { io.out(CAPS_HELP); return EXIT.OK }
  const platform = deps.platform ?? new (await import('../../guest/devcpu.js')).DevcpuPlatform({ root: o['dev-root'] ?? '/' })
  const r = readHostCaps(platform)
  ;(platform as { close?: () => void }).close?.()
  const code = r.unknown.length > 0 ? EXIT.CANNOT_TELL : EXIT.OK
  if (o.json) {
    const source = `read through ${platform.kind} on CPU ${platform.cpus()[0] ?? '?'} of ${r.cpus}` + (r.disagreements.length ? `; CPUs ${r.disagreements.map(d => d.cpu).join(',')} differ` : '')
    io.out(JSON.stringify(hostCapsToJson(r.caps, { unknown: r.unknown, source }), null, 2) + '\n')
    return code
  }
  const names: Record<string, string> = { bhiCtrl: 'BHI_CTRL', bhiNo: 'BHI_NO', rrsbaCtrl: 'RRSBA_CTRL', rrsba: 'RRSBA', stibp: 'STIBP', ssbd: 'SSBD' }
  const lines = [`Host capabilities (${r.cpus} CPUs, read through ${platform.kind}):`]
  for (const n of HOST_CAP_NAMES) {
    const u = r.unknown.find(x => x.cap === n)
    lines.push(`  ${names[n]!.padEnd(11)} ${u ? 'unknown' : r.caps[n] ? 'yes    ' : 'no     '}  ${u ? u.why : HOST_CAP_SOURCES[n]}`)
  }
  for (const d of r.disagreements) lines.push(`  CPU ${d.cpu} differs from the first CPU in: ${d.caps.map(c => names[c]).join(', ')}`)
  lines.push(`SPEC_CTRL bits a VMM may force on here (v3 01/10): ${decode(SPEC_CTRL, supportedForceBits(r.caps)).join(', ')}${r.unknown.length ? ' (from the known capabilities only)' : ''}`)
  if (r.unknown.length) lines.push('Could not tell every capability: see "unknown" above (exit 3).')
  io.out(lines.join('\n') + '\n')
  return code
}
