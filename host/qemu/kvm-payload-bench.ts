// Cost of a filtered guest WRMSR under the patched QEMU with -accel kvm (issue 11 item 1.d: IBRS-mode
// kernels write SPEC_CTRL on every entry). The -bios payload (kvm-payload.ts) times N WRMSRs per
// MSR with RDTSC; the host times the same loops by when their records appear. Two VMs: virt-miti=on
// (0x48 and 0x50000002 exit to QEMU through the MSR filter; CTRL writes also push SPEC_CTRL with
// KVM_SET_MSRS + KVM_GET_MSRS) and the same model without virt-miti (KVM answers in the kernel).
// Prints one JSON object. Exit 4 (skip): no /dev/kvm or no patched QEMU built for these patches.
// Run: node --import @tapjs/typescript/import host/qemu/kvm-payload-bench.ts [loops, default 100000]
import fs from 'node:fs'
import { MITI_CTRL_BHB_CLEAR_SEQ_S_USED, SPEC_CTRL_IBRS } from '../../contract/registers.js'
import { defaultBenches } from './kvm-payload.js'
import { benchFigures } from './kvm-payload-checks.js'
import { runKvmPayload } from './kvm-payload-run.js'
import { catalogHostCaps, hostCapsProps } from './patched.js'
import { findPatchedQemu, tierPaths } from './tier.js'

const skip = (why: string): never => { console.log(JSON.stringify({ skipped: why })); process.exit(4) }
const loops = Number(process.argv[2] ?? 100_000)
if (!Number.isInteger(loops) || loops < 1) skip(`loops ${process.argv[2]}: expected a positive integer`)
if (!fs.existsSync('/dev/kvm')) skip('no /dev/kvm')
const q = findPatchedQemu(tierPaths()?.patchedScript)
if ('unavailable' in q) skip(q.unavailable)
const qemu = (q as { path: string }).path
const caps = catalogHostCaps('sapphire-rapids')
if (typeof caps === 'string') skip(caps)

const base = { ctrlGood: MITI_CTRL_BHB_CLEAR_SEQ_S_USED, ctrlBad: 1n << 2n, specCtrl: SPEC_CTRL_IBRS }
const params = { ...base, loops, benches: defaultBenches(base) }
// x-force-features=on keeps SPEC_CTRL in QEMU's table where KVM lacks it, so 0x48 writes are accepted (not #GP) in both VMs.
const model = ['qemu64', '+spec-ctrl', '+arch-capabilities', 'x-force-features=on']
const round = (x: number | undefined, d = 2) => (x === undefined ? null : Math.round(x * 10 ** d) / 10 ** d)
const out: Record<string, unknown> = { loops, qemu }
for (const [name, cpu] of [
  ['virt-miti', [...model, 'virt-miti=on', 'virt-miti-enum=3', ...hostCapsProps(caps as never)]],
  ['no-virt-miti', model],
] as const) {
  const run = await runKvmPayload({ qemu, cpu: cpu.join(','), params, timeoutMs: 600_000 })
  out[name] = {
    cpu: cpu.join(','), wallMs: Math.round(run.wallMs), exitCode: run.exitCode, ...(run.error ? { error: run.error } : {}),
    specCtrlKvmReadback: run.qom['spec-ctrl-kvm-readback'] ?? null, specCtrlKvmPushes: run.qom['spec-ctrl-kvm-pushes'] ?? null,
    benches: benchFigures(run, params.benches).map(b => ({
      name: b.name, msr: '0x' + b.msr.toString(16), faults: b.faults, cyclesPerOp: round(b.cyclesPerOp, 0), wallUsPerOp: round(b.wallNsPerOp === undefined ? undefined : b.wallNsPerOp / 1000),
    })),
  }
}
console.log(JSON.stringify(out, null, 1))
