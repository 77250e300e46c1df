// `virtmiti host expect`: the forced SPEC_CTRL mask/value each vCPU must have, given what its
// guest reported (MITI_CTRL), the host caps and the VMM profile, with the rule behind every bit.
import { EXIT, InputError, UsageError, parse, stdio, type Io } from '../../bin/lib/cli.js'
import { parseU64, hex } from '../../contract/bits.js'
import { HOST_CAP_NAMES, type HostCaps } from '../../contract/host-caps.js'
import { REPORT_MAX_BYTES } from '../../contract/report-json.js'
import { validateUserspaceForce } from '../../contract/vmm-response.js'
import { expectFor, expectForCtrl, type Expectation } from '../check/expect.js'
import { parseGuestReport, parseHostCaps } from '../check/parse.js'
import { PROFILES, profileByName, profileIdsForHelp } from '../vmm/profiles.js'
import type { VmmProfile } from '../vmm/profile.js'
import { readLimited } from './read-input.js'
import { safeText } from '../../bin/lib/escape.js'
import { catalogHostCaps } from '../runner/host-cpu.js'

export { EXPECT_SCHEMA_ID } from '../../contract/host-output-schemas.js'
import { EXPECT_SCHEMA_ID } from '../../contract/host-output-schemas.js'

/** The help text; a function so that the built-in VMM catalog (data files) is read only when asked for. */
export const expectHelp = (): string => `Usage: virtmiti host expect (--guest-report FILE | --miti-ctrl LIST) (--host-caps FILE | --caps LIST | --host-cpu ID) [options]

Prints, per vCPU, the SPEC_CTRL bits the VMM must force (mask) and their values, with the
contract/CONTRACT.md section 5 rule behind every bit.

Options:
  --guest-report FILE     a guest report: its per-CPU MITI_CTRL is used
  --miti-ctrl LIST        MITI_CTRL per vCPU instead, e.g. 0x1,0x3,0x0 (vCPU 0, 1, 2)
  --host-caps FILE        host caps (\`virtmiti host caps --json\`)
  --caps LIST             host caps that are present, e.g. bhiCtrl,rrsbaCtrl,rrsba,stibp,ssbd
                          (names: ${HOST_CAP_NAMES.join(', ')}; "none" for none)
  --host-cpu ID           host caps of a catalog CPU model (scenarios/cpus/<id>.yaml), e.g. sapphire-rapids
  --profile NAME          VMM profile (default reference): ${profileIdsForHelp()}
  --userspace-mask X      userspace force mask (overrides the profile's), e.g. 0x400
  --userspace-value X     userspace force value (must be a subset of the mask and of the host's
                          supported bits)
  --json                  JSON (schema ${EXPECT_SCHEMA_ID}, contract/schemas/expect.schema.json)
  --no-color              accepted for every command (this output has no colour)
  -h, --help              this help

With --guest-report, a bit the guest relies on (its report's decision) that the VMM does not
enumerate on some vCPUs is printed first as a finding naming the unprotected bit
(vmm.not-enumerated, vmm.enum-lacks-bit; ids as in contract/findings.ts).

Exit: 0 printed (findings included); 2 usage or input error (including an invalid userspace force).
`

function capsFromList(s: string): HostCaps {
  const caps: HostCaps = { bhiCtrl: false, bhiNo: false, rrsbaCtrl: false, rrsba: false, stibp: false, ssbd: false }
  if (s === 'none') return caps
  for (const n of s.split(',').map(x => x.trim()).filter(Boolean)) {
    if (!(HOST_CAP_NAMES as readonly string[]).includes(n)) throw new UsageError(`host expect: --caps: unknown capability "${n}" (expected ${HOST_CAP_NAMES.join(', ')} or none)`)
    caps[n as keyof HostCaps] = true
  }
  return caps
}

function u64(flag: string, s: string): bigint {
  const v = parseU64(s)
  if (v === undefined) throw new UsageError(`host expect: ${flag} ${s}: expected a 64-bit value ("0x..." hex or decimal)`)
  return v
}

export async function main(argv: string[], deps: { io?: Io } = {}): Promise<number> {
  const io = deps.io ?? stdio
  const { values: o } = parse('host expect', argv, {
    'guest-report': { type: 'string' }, 'miti-ctrl': { type: 'string' }, 'host-caps': { type: 'string' }, caps: { type: 'string' }, 'host-cpu': { type: 'string' },
    profile: { type: 'string' }, 'userspace-mask': { type: 'string' }, 'userspace-value': { type: 'string' },
    json: { type: 'boolean' }, 'no-color': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  })
  if (o.help) { io.out(expectHelp()); return EXIT.OK }
  if ((o['guest-report'] === undefined) === (o['miti-ctrl'] === undefined)) throw new UsageError('host expect: give exactly one of --guest-report FILE or --miti-ctrl LIST')
  if ([o['host-caps'], o.caps, o['host-cpu']].filter(x => x !== undefined).length !== 1) throw new UsageError('host expect: give exactly one of --host-caps FILE, --caps LIST or --host-cpu ID')
  const base = profileByName(o.profile ?? 'reference')
  if (!base) throw new UsageError(`host expect: --profile ${o.profile}: unknown (expected one of ${[...PROFILES.keys()].join(', ')})`)

  let caps: HostCaps
  if (o.caps !== undefined) caps = capsFromList(o.caps)
  else if (o['host-cpu'] !== undefined) caps = catalogHostCaps(o['host-cpu'])
  else {
    const h = parseHostCaps(readLimited(o['host-caps']!, 64 * 1024, 'host caps'))
    if (!h.ok) throw new InputError(h.errors.join('\n'))
    if (h.value.unknown?.length) { io.err(`virtmiti: host caps: could not tell: ${h.value.unknown.map(u => u.cap).join(', ')}\n`); return EXIT.CANNOT_TELL }
    caps = h.value.caps
  }
  const profile: VmmProfile = {
    ...base,
    userspaceForce: {
      mask: o['userspace-mask'] !== undefined ? u64('--userspace-mask', o['userspace-mask']) : base.userspaceForce.mask,
      value: o['userspace-value'] !== undefined ? u64('--userspace-value', o['userspace-value']) : base.userspaceForce.value,
    },
  }
  let ex: Expectation
  if (o['miti-ctrl'] !== undefined) {
    const v = validateUserspaceForce(profile.userspaceForce, caps)
    if (!v.ok) throw new InputError(`host expect: ${v.error}`)
    const ctrls = o['miti-ctrl'].split(',').map(s => u64('--miti-ctrl', s.trim()))
    if (ctrls.length > 8192) throw new UsageError('host expect: --miti-ctrl: at most 8192 vCPUs')
    ex = {
      userspaceForce: { mask: hex(profile.userspaceForce.mask), value: hex(profile.userspaceForce.value) }, hostCaps: caps,
      vcpus: ctrls.map((c, i) => expectForCtrl(i, profile.advertise ? c : undefined, profile.advertise ? '--miti-ctrl' : `profile ${profile.name} does not advertise the virtual MSRs`, caps, profile.userspaceForce)),
    }
  } else {
    const r = parseGuestReport(readLimited(o['guest-report']!, REPORT_MAX_BYTES, 'guest report'))
    if (!r.ok) throw new InputError(r.errors.join('\n'))
    const e = expectFor(r.value, caps, profile)
    if (!e.ok) throw new InputError(`host expect: ${e.error}`)
    ex = e.expectation
  }
  if (o.json) {
    io.out(JSON.stringify({ schema: EXPECT_SCHEMA_ID, profile: profile.name, ...ex }, null, 2) + '\n')
    return EXIT.OK
  }
  const lines: string[] = []
  // The guest's own needs first (issue 12): a bit it relies on that the VMM cannot protect.
  for (const f of ex.findings ?? []) lines.push(`FINDING ${f.id}: ${f.text}`)
  lines.push(`Userspace force: mask ${ex.userspaceForce.mask} value ${ex.userspaceForce.value} (profile ${profile.name})`)
  for (const v of ex.vcpus) {
    const ctrl = v.mitiCtrl !== undefined ? `MITI_CTRL ${v.mitiCtrl}${v.mitiCtrlBits!.length ? ` (${v.mitiCtrlBits!.join(', ')})` : ''}` : `MITI_CTRL unknown (${v.basis})`
    lines.push(`vCPU ${v.cpu}: ${ctrl} -> forced mask ${v.forcedMask} (${v.forcedMaskBits.join(', ') || 'none'}), value ${v.forcedValue} (${v.forcedValueBits.join(', ') || 'none'})`)
    for (const r of v.rules) lines.push(`    ${r.forced ? '+' : '-'} ${r.bit}: ${r.rule} [${r.source}]`)
  }
  // The basis quotes the untrusted guest report (fault steps): escape controls (issue 14 item 9).
  io.out(lines.map(safeText).join('\n') + '\n')
  return EXIT.OK
}
