// `virtmiti host check --guest-report F --vmm-state F [--host-caps F] [--tap|--json]`:
// pair a guest report with a VMM's observed per-vCPU state and verify contract/CONTRACT.md sections 3
// and 5 on every vCPU. Both files are untrusted input (issue 3).
import { EXIT, UsageError, parse, stdio, type Io } from '../../bin/lib/cli.js'
import { REPORT_MAX_BYTES } from '../../contract/report-json.js'
import { VMM_STATE_MAX_BYTES } from '../../contract/vmm-state-json.js'
import { checkFromText } from '../check/from-text.js'
import { checkTap, checkTapPoints, checkText } from '../check/render.js'
import { parseGuestReport, parseHostCaps } from '../check/parse.js'
import { guestNeedFindings } from '../check/expect.js'
import { tapDocument } from '../../bin/lib/tap.js'
import { readLimited } from './read-input.js'
import { makeColor } from '../../bin/lib/color.js'
import { jsonText, safeText } from '../../bin/lib/escape.js'
import { stateFromQmp } from '../qemu/qemu-state.js'
import { SELFTEST_TAP_MAX_BYTES } from '../check/selftest-tap.js'
import { parseU64 } from '../../contract/bits.js'

export const CHECK_HELP = `Usage: virtmiti host check --guest-report FILE (--vmm-state FILE | --qmp SOCKET) [options]

Pairs a guest report (\`virtmiti guest report\`, schema virtmiti/guest-report/v1) with the VMM's
observed state (schema virtmiti/vmm-state/v1, contract/schemas/vmm-state.schema.json and README) by VM UUID
and vCPU index, and checks every vCPU: the VMM's MITI_CTRL equals what the guest wrote and
read back, the forced SPEC_CTRL mask and value are exactly what contract/CONTRACT.md section 5 derives
from it (host caps, userspace force), the effective SPEC_CTRL keeps the forced bits, and the
guest's reads of SPEC_CTRL never show forced bits.

Options:
  --guest-report FILE   the guest's report ("-" for standard input)
  --vmm-state FILE      the VMM's state
  --qmp SOCKET          instead of --vmm-state: read it from a running QEMU with virtmiti's
                        patches (host/qemu/patches) over its QMP Unix socket (qom-get per vCPU)
  --host-caps FILE      the host's capabilities (\`virtmiti host caps --json\`); default: trust the
                        caps recorded in the VMM state (said so in the output)
  --selftest FILE       also judge the guest selftest's output (\`virtmiti guest selftest\` TAP, saved in
                        the same guest): faults only exercising the MSRs shows (per-vCPU scope,
                        read-only ENUMs, reserved CTRL bits), one item per rule
  --after-reset FILE    also judge a VMM state (virtmiti/vmm-state/v1) taken after resetting every
                        vCPU, before the guest wrote CTRL again: CTRL must be 0 (contract/CONTRACT.md
                        section 3) and only userspace's force remain
  --reset-ctrl VALUE    with --after-reset: the reset CTRL the VMM declares instead of 0 (section 7:
                        Intel's value is unconfirmed), e.g. 0x1
  --tap                 TAP 14: one subtest per vCPU, YAML diagnostics with expected/observed bits
  --tap-version 13|14   TAP version for --tap (13 flattens subtests)
  --json                JSON (schema virtmiti/check-result/v1)
  --no-color            no colour in the text output (also NO_COLOR=1)
  -h, --help            this help

Exit: 0 every vCPU as the contract says; 1 a violation (each named by bit); 2 usage or input
error (the file, field path and expectation are printed); 3 the host caps file has unknowns.
`

export async function main(argv: string[], deps: { io?: Io } = {}): Promise<number> {
  const io = deps.io ?? stdio
  const { values: o } = parse('host check', argv, {
    'guest-report': { type: 'string' }, 'vmm-state': { type: 'string' }, qmp: { type: 'string' }, 'host-caps': { type: 'string' },
    selftest: { type: 'string' }, 'after-reset': { type: 'string' }, 'reset-ctrl': { type: 'string' },
    tap: { type: 'boolean' }, 'tap-version': { type: 'string' }, json: { type: 'boolean' }, 'no-color': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  })
  if (o.help) { io.out(CHECK_HELP); return EXIT.OK }
  if (o['vmm-state'] !== undefined && o.qmp !== undefined) throw new UsageError('host check: --vmm-state and --qmp are exclusive')
  if (!o['guest-report'] || (!o['vmm-state'] && !o.qmp)) throw new UsageError('host check: --guest-report FILE and --vmm-state FILE (or --qmp SOCKET) are required')
  if (o.tap && o.json) throw new UsageError('host check: --tap and --json are exclusive')
  if (o['tap-version'] !== undefined && o['tap-version'] !== '13' && o['tap-version'] !== '14') throw new UsageError(`host check: --tap-version ${o['tap-version']}: expected 13 or 14`)
  if ([o['guest-report'], o['vmm-state'], o.selftest, o['after-reset']].filter(x => x === '-').length > 1) throw new UsageError('host check: only one input can be standard input')
  if (o['reset-ctrl'] !== undefined && o['after-reset'] === undefined) throw new UsageError('host check: --reset-ctrl needs --after-reset FILE')
  const resetCtrl = o['reset-ctrl'] === undefined ? undefined : parseU64(o['reset-ctrl'])
  if (o['reset-ctrl'] !== undefined && resetCtrl === undefined) throw new UsageError(`host check: --reset-ctrl ${o['reset-ctrl']}: expected a 64-bit value like 0x1`)

  const report = readLimited(o['guest-report'], REPORT_MAX_BYTES, 'guest report')
  let state: string
  if (o.qmp !== undefined) {
    const s = await stateFromQmp(o.qmp)
    if (!s.ok) { io.err(s.errors.map(e => `virtmiti: --qmp ${o.qmp}: ${e}\n`).join('')); return EXIT.USAGE }
    state = JSON.stringify(s.state)
  } else state = readLimited(o['vmm-state']!, VMM_STATE_MAX_BYTES, 'VMM state')
  const caps = o['host-caps'] !== undefined ? readLimited(o['host-caps'], 64 * 1024, 'host caps') : undefined
  const selftest = o.selftest !== undefined ? readLimited(o.selftest, SELFTEST_TAP_MAX_BYTES, 'selftest TAP') : undefined
  const afterReset = o['after-reset'] !== undefined ? readLimited(o['after-reset'], VMM_STATE_MAX_BYTES, 'after-reset VMM state') : undefined
  // Input errors come first (issue 14 item 11): a garbage report with an unknowns-bearing caps
  // file is a usage/input error (2), not "could not tell" (3).
  const r = checkFromText({
    report, state, ...(caps !== undefined ? { hostCaps: caps } : {}), ...(selftest !== undefined ? { selftest } : {}),
    ...(afterReset !== undefined ? { afterReset } : {}), ...(resetCtrl !== undefined ? { resetCtrl } : {}),
  })
  if (!r.ok) {
    if (o.json) io.out(jsonText({ schema: 'virtmiti/check-result/v1', ok: false, inputErrors: r.errors }, 2) + '\n')
    io.err(r.errors.map(e => `virtmiti: ${safeText(e)}\n`).join(''))
    return EXIT.USAGE
  }
  if (caps !== undefined) {
    const h = parseHostCaps(caps)
    if (h.ok && h.value.unknown?.length) {
      io.err(`virtmiti: host caps ${safeText(o['host-caps']!)}: could not tell: ${h.value.unknown.map(u => safeText(`${u.cap} (${u.why})`)).join('; ')}\n`)
      return EXIT.CANNOT_TELL
    }
  }
  // What the guest relies on that the VMM cannot protect (issue 12): a finding, not a contract
  // violation (a VMM may lack the hardware), so it never changes the exit code.
  const parsed = parseGuestReport(report)
  const findings = parsed.ok ? guestNeedFindings(parsed.value) : []
  if (o.json) io.out(jsonText({ ...r.result, findings }, 2) + '\n')
  else if (o.tap) {
    const text = checkTap(r.result, o['tap-version'] === '13' ? 13 : 14)
    io.out(findings.length === 0 ? text : tapDocument([...checkTapPoints(r.result), {
      ok: false, name: 'the VMM can back every bit the guest relies on', todo: 'a finding, not a contract violation', diag: { findings: findings.map(f => `${f.id}: ${f.text}`) },
    }], o['tap-version'] === '13' ? 13 : 14))
  } else io.out(checkText(r.result, makeColor({ noColor: o['no-color'] === true })) + findings.map(f => `  FINDING ${f.id}: ${safeText(f.text)}\n`).join(''))
  return r.result.verdict === 'pass' ? EXIT.OK : r.result.verdict === 'fail' ? EXIT.VIOLATION : EXIT.CANNOT_TELL
}
