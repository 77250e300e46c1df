// `virtmiti host vmm run --cpu-model M --profile P [--vcpus N] [--host-cpu H] [--tap-version 13|14] [--json]`
// (issue 5): boot payload vCPUs on /dev/kvm with the reference VMM emulation (profile P) answering
// the MSR filter, run the unchanged guest report + selftest in them, then host check. TAP 14 out.
// Exit (DESIGN.md): 0 the verdict of a correct VMM; 1 a violation (checker, selftest or the
// agent's report); 2 usage; 3 the tier broke (no verdict); 4 skipped (no usable /dev/kvm, or this host cannot present M).
import { EXIT, parse, stdio, type Io } from '../../bin/lib/cli.js'
import { tapDocument, type TapVersion } from '../../bin/lib/tap.js'
import { encode, hex } from '../../contract/bits.js'
import { hostCapsFromCpu } from '../../contract/host-caps.js'
import { ARCH_CAPABILITIES } from '../../contract/registers.js'
import { loadCpuCatalog } from '../runner/cpus.js'
import { builtinCpusDir } from '../runner/catalog.js'
import { PROFILES, profileByName } from '../vmm/profiles.js'
// Pure layout constants (no koffi): how many vCPU mailboxes the payload's 1 MiB holds.
import { MAX_VCPUS } from '../vmm/kvm/payload.js'

import { VMM_RUN_SCHEMA_ID } from '../../contract/schema-ids.js'

export { VMM_RUN_SCHEMA_ID }
export const DEFAULT_HOST_CPU = 'sapphire-rapids'
/** A spectre_v2=retpoline guest without BHI_CTRL using the short loop: the case the contract exists for (contract/CONTRACT.md section 1). */
export const DEFAULT_SPECTRE_V2 = 'Mitigation: Retpolines; IBPB: conditional; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: SW loop, KVM: SW loop'
export const DEFAULT_CMDLINE = 'console=ttyS0 spectre_v2=retpoline'

export const VMM_RUN_HELP = `Usage: virtmiti host vmm run --cpu-model M --profile P [options]

Runs the reference VMM on /dev/kvm: real vCPUs (a tiny payload guest per vCPU) are shown CPU
model M (KVM_SET_CPUID2, and IA32_ARCH_CAPABILITIES through the MSR filter), the VMM profile P
answers their MSR-filter exits (contract/CONTRACT.md section 5: userspace emulates the virtual MSRs),
the unchanged guest agent runs in them (probe, report with real WRMSRs, kernel SPEC_CTRL step,
selftest), and \`host check\` verifies the VMM's published per-vCPU state. It is the same chain
and the same VM builder as \`scenarios run --tier kvm\`.

CPUID this host cannot present: each run proves, with a complement VM, which contract CPUID bits
the vCPU really takes from KVM_SET_CPUID2. Some hosts' KVM pins CPUID.(7,0) (SPEC_CTRL,
ARCH_CAPABILITIES) whatever is asked. The run's "CPUID origin" point is ok when every bit the
agent reads came from the vCPU, and SKIPs naming the pinned leaf, register and bits otherwise.
By default (--cpuid overlay) the guest's CPUID reads of those bits are then answered from the
VMM's own table, and every MSR access still runs on real vCPUs (filter exits, #GP injection,
per-vCPU state); each run also measures that 0x10A / 0x48 still exit to the VMM when the vCPU's
own CPUID lacks their bits, and SKIPs the run if they do not.

Options:
  --cpu-model M          presented CPU (catalog id, scenarios/cpus/M.yaml)
  --profile P            VMM definition id (scenarios/vmms/<id>.yaml)
  --vcpus N              vCPUs (default 2; at most ${MAX_VCPUS}, the payload's mailbox pages)
  --host-cpu H           the host the VMM response derives from (catalog id; default ${DEFAULT_HOST_CPU})
  --arch-capabilities A  ARCH_CAPABILITIES presented: "model" (default), "none", or bit names
                         "RDCL_NO,IBRS_ALL" ("" for an empty value); bit 63 is the profile's
  --spectre-v2 LINE      the guest kernel's spectre_v2 sysfs line (default: retpoline + SW loop)
  --cmdline LINE         the guest kernel's /proc/cmdline (default "${DEFAULT_CMDLINE}")
  --cpuid MODE           overlay (default): answer host-pinned CPUID bits from the VMM's table;
                         strict: skip the run when the guest would see a contract bit otherwise
  --no-cpuid-proof       skip the complement-VM proof of CPUID origins (compare only; implies strict)
  --tap-version 13|14    TAP version (default 14; 13 flattens subtests)
  --json                 JSON (schema ${VMM_RUN_SCHEMA_ID}) instead of TAP
  -h, --help             this help

Exit: 0 the verdict of a correct VMM; 1 a violation (each named by rule and bit); 2 usage
error (also a profile the contract refuses on this host); 3 could not tell (a KVM ioctl failed
or the payload stopped: no verdict); 4 skipped (no usable /dev/kvm; with --cpuid strict, or when
the filter does not route 0x10A / 0x48 here, this host cannot present the model: reason printed).
`

const bigHex = (_k: string, v: unknown) => (typeof v === 'bigint' ? hex(v) : v)

export interface VmmRunDeps { io?: Io; cpusDir?: string }

export async function main(argv: string[], deps: VmmRunDeps = {}): Promise<number> {
  const io = deps.io ?? stdio
  // `virtmiti host vmm run ...`: the dispatcher may hand us "run" as the first word.
  const args = argv[0] === 'run' ? argv.slice(1) : argv
  const usage = (msg: string) => { io.err(`host vmm run: ${msg}\n(see virtmiti host vmm run --help)\n`); return EXIT.USAGE }
  let o
  try {
    o = parse('host vmm run', args, {
      'cpu-model': { type: 'string' }, profile: { type: 'string' }, vcpus: { type: 'string' }, 'host-cpu': { type: 'string' },
      'arch-capabilities': { type: 'string' }, 'spectre-v2': { type: 'string' }, cmdline: { type: 'string' },
      'no-cpuid-proof': { type: 'boolean' }, cpuid: { type: 'string' }, 'tap-version': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    }).values
  } catch (e) {
    return usage((e as Error).message.replace(/^host vmm run: /, ''))
  }
  if (o.help) { io.out(VMM_RUN_HELP); return EXIT.OK }
  const tv = o['tap-version'] ?? '14'
  if (tv !== '13' && tv !== '14') return usage(`--tap-version wants 13 or 14, got "${tv}"`)
  if (o.json && o['tap-version'] !== undefined) return usage('--json and --tap-version are exclusive')
  if (!o['cpu-model'] || !o.profile) return usage('--cpu-model M and --profile P are required')
  const cpuidMode = o.cpuid ?? 'overlay'
  if (cpuidMode !== 'overlay' && cpuidMode !== 'strict') return usage(`--cpuid wants overlay or strict, got "${o.cpuid}"`)
  const vcpus = o.vcpus === undefined ? 2 : Number(o.vcpus)
  if (!/^\d{1,4}$/.test(o.vcpus ?? '2') || !Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) return usage(`--vcpus wants an integer 1..${MAX_VCPUS}, got "${o.vcpus}"`)

  const profile = profileByName(o.profile)
  if (!profile) return usage(`unknown profile "${o.profile}"; valid profiles: ${[...PROFILES.keys()].join(', ')}`)
  const dir = deps.cpusDir ?? builtinCpusDir()
  if (!dir) { io.err('host vmm run: the CPU catalog (scenarios/cpus) was not found next to this program\n'); return EXIT.USAGE }
  const catalog = loadCpuCatalog(dir)
  const ids = [...catalog.models.keys()]
  const model = catalog.models.get(o['cpu-model'])
  if (!model) return usage(`unknown CPU model "${o['cpu-model']}"; valid models: ${ids.join(', ')}${catalog.errors.length ? ` (${catalog.errors.length} catalog file errors)` : ''}`)
  const hostId = o['host-cpu'] ?? DEFAULT_HOST_CPU
  const host = catalog.models.get(hostId)
  if (!host) return usage(`unknown host CPU "${hostId}"; valid models: ${ids.join(', ')}`)

  let archCapabilities: bigint | null | undefined
  const ac = o['arch-capabilities']
  if (ac === undefined || ac === 'model') archCapabilities = undefined
  else if (ac === 'none') archCapabilities = null
  else {
    const names = ac.split(',').map(s => s.trim()).filter(Boolean)
    const known = new Set(ARCH_CAPABILITIES.bits.map(b => b.name))
    const bad = names.filter(n => !known.has(n) || n === 'VIRTUAL_ENUM')
    // Bit 63 is the VMM profile's to set (contract/CONTRACT.md section 3 step 1), not the model's.
    if (bad.length) return usage(`--arch-capabilities: unknown or not allowed bit name(s) ${bad.join(', ')}; valid: ${[...known].filter(n => n !== 'VIRTUAL_ENUM').join(', ')}, or "model", "none"`)
    archCapabilities = encode(ARCH_CAPABILITIES, names)
  }

  // Loaded lazily: koffi is a native module only this command needs.
  const { runLive } = await import('../vmm/live/run-live.js')
  const { VmmConfigError } = await import('../vmm/emulation.js')
  const hostCaps = hostCapsFromCpu(host)
  let r
  try {
    r = await runLive({
      cpuModel: model, hostCaps, profile, vcpus,
      kernel: { cmdline: o.cmdline ?? DEFAULT_CMDLINE, spectreV2: o['spectre-v2'] ?? DEFAULT_SPECTRE_V2 },
      ...(archCapabilities !== undefined ? { archCapabilities } : {}),
      proveCpuid: o['no-cpuid-proof'] !== true, cpuid: cpuidMode,
    })
  } catch (e) {
    // A profile the contract refuses on this host (e.g. a userspace force of a bit the host lacks, v3 01/10).
    if (e instanceof VmmConfigError) return usage(`${e.message} (host ${host.id})`)
    // The tier itself broke (an ioctl failed, the payload stopped): no verdict, say why (DESIGN.md exit 3).
    const msg = (e as Error).message ?? String(e)
    io.out(`TAP version ${o.json ? 14 : tv}\nBail out! ${msg.replace(/\n/g, ' ')}\n`)
    io.err(`host vmm run: could not tell: ${(e as Error).stack ?? msg}\n`)
    return EXIT.CANNOT_TELL
  }
  if (o.json) {
    io.out(JSON.stringify({
      schema: VMM_RUN_SCHEMA_ID, ok: r.ok, exitCode: r.exitCode,
      ...(r.skipReason !== undefined ? { skipReason: r.skipReason } : {}),
      cpuModel: model.id, hostCpu: host.id, hostCaps, profile: profile.name, vcpus,
      ...(r.vmUuid ? { vmUuid: r.vmUuid } : {}),
      ...(r.cpuid ? { cpuid: r.cpuid } : {}),
      ...(r.timings ? { timings: r.timings } : {}),
      ...(r.ops ? { ops: r.ops } : {}),
      failures: r.failures,
      ...(r.report ? { report: r.report } : {}),
      ...(r.state ? { vmmState: r.state } : {}),
      ...(r.check ? { check: r.check } : {}),
      ...(r.checkAfterSelftest ? { checkAfterSelftest: r.checkAfterSelftest } : {}),
      ...(r.selftest ? { selftest: { exitCode: r.selftest.exitCode, points: r.selftest.points } } : {}),
    }, bigHex, 2) + '\n')
  } else {
    const top = [{ ok: r.ok, name: `vmm run: ${model.id} presented on a ${host.id} host, profile ${profile.name}, ${vcpus} vCPUs`, sub: r.points, ...(r.skipReason !== undefined ? { skip: r.skipReason } : {}) }]
    const comments: string[] = []
    if (r.timings) comments.push(`# timing: VM create ${r.timings.createMs.toFixed(1)} ms (CPUID proof and filter-exit measurement ${r.timings.proofMs.toFixed(1)} ms of it); VM create to verdict ${r.timings.totalMs.toFixed(1)} ms (report ${r.timings.reportMs.toFixed(1)}, selftest ${r.timings.selftestMs.toFixed(1)}, check ${r.timings.checkMs.toFixed(1)})`)
    if (r.ops) comments.push(`# guest ops (real CPUID/RDMSR/WRMSR): report ${r.ops.report}, selftest ${r.ops.selftest}`)
    for (const f of r.failures.slice(0, 50)) comments.push(`# FAIL ${f.replace(/\n/g, ' ')}`)
    io.out(tapDocument(top, Number(tv) as TapVersion) + (comments.length ? comments.join('\n') + '\n' : ''))
  }
  if (r.skipReason !== undefined) {
    io.err(`host vmm run: skipped: ${r.skipReason}\n`)
    // KVM emulates ARCH_CAPABILITIES for every guest, so a VMM may present it (empty) on a model without it.
    if (/EDX\[29\] ARCH_CAPABILITIES is 1 in the guest/.test(r.skipReason)) io.err('host vmm run: hint: present an (empty) ARCH_CAPABILITIES with --arch-capabilities= as KVM does for every guest\n')
  }
  return r.exitCode
}
