// The qemu matrix file format (scenarios/qemu/*.yaml): stock QEMU models x command lines, or the
// patched QEMU's boots list. Its own module so that the tier and one patched boot (patched.ts)
// both read it without importing each other.
import { z } from 'zod'
import { QEMU_FAULTS, type QemuFault } from './checks-patched.js'

const cpuName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected a QEMU -cpu model name like Skylake-Server')
const param = /^[A-Za-z0-9_.]+(=[A-Za-z0-9_.,=-]*)?$/
const append = z.string().max(400).refine(s => s.split(' ').filter(Boolean).every(w => param.test(w)), 'expected space-separated kernel parameters (name or name=value)')
const catalogId = z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'expected a CPU catalog id (scenarios/cpus/<id>.yaml), e.g. sapphire-rapids')
const u64 = z.union([z.bigint(), z.number()]).transform(v => BigInt(v)).pipe(z.bigint().min(0n).max((1n << 64n) - 1n))
const kernelId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/, 'expected a kernel id like 6.12 (the matrix\'s kernels list)')
/** A guest kernel: a Debian package of a suite (host/qemu/fetch-kernel.sh), or a file (host/qemu/kernels.ts). */
const KernelDoc = z.union([
  z.strictObject({
    id: kernelId,
    suite: z.string().regex(/^[a-z][a-z0-9-]{1,40}$/, 'expected a Debian suite like bookworm, trixie, sid, trixie-backports'),
    package: z.string().regex(/^linux-image-[a-z0-9.+-]+$/, 'expected a Debian kernel package like linux-image-amd64 or linux-image-6.12.117+deb13-amd64'),
    version: z.string().regex(/^[A-Za-z0-9.+~:-]+$/).optional().describe('pin: a version the mirror no longer has fails loudly'),
    ci: z.boolean().optional(), note: z.string().optional(),
  }),
  z.strictObject({ id: kernelId, file: z.string().min(1).max(400).describe('.../boot/vmlinuz-<release> or .../modules/<release>/vmlinuz'), ci: z.boolean().optional(), note: z.string().optional() }),
])
/** A death the kernel is known to die before /init (host/qemu/death.ts): the boot passes only if it dies so. */
const DeathDoc = z.strictObject({
  kernel: kernelId,
  append: z.string().min(1).max(200).describe('every word of it must be on the boot\'s command line'),
  line: z.string().min(8).max(300).describe('text of the console\'s WARNING/panic/Oops/BUG line'),
  note: z.string().optional(),
})
const cpuProp = z.string().regex(/^[a-z0-9][a-z0-9_.-]*=(on|off|[0-9]+)$/, 'expected a QEMU -cpu property name=on|off|number, e.g. bhi-ctrl=on')
/** One boot under the patched QEMU (host/qemu/patches): its purpose is what `expect` covers. */
const PatchedBootDoc = z.strictObject({
  cpu: cpuName,
  props: z.array(cpuProp).max(16).optional().describe('extra -cpu properties of the guest model (guest-visible), e.g. bhi-ctrl=on'),
  host: catalogId.describe('the host QEMU responds as (contract/CONTRACT.md section 5): its caps become virt-miti-host-* properties'),
  append,
  vmm: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'expected a VMM definition id (scenarios/vmms/<id>.yaml), e.g. reference').optional()
    .describe('a VMM definition (scenarios/vmms/<id>.yaml) translated into -cpu properties (host/qemu/vmm-props.ts); instead of fault and force'),
  kernel: kernelId.optional().describe('the kernels list id this boot runs (default: the first)'),
  fault: z.enum(QEMU_FAULTS).optional().describe('x-virt-miti-fault: the fault this boot must catch by name'),
  force: z.strictObject({ mask: u64, value: u64 }).optional().describe('spec-ctrl-force-mask / -value (userspace force)'),
  migrateTo: catalogId.optional().describe('after the guest ran, migrate it to a second QEMU responding as this host'),
  hotplug: z.union([z.bigint(), z.number()]).transform(Number).pipe(z.literal(1)).optional().describe('after the guest reported, hot-plug one more vCPU (device_add; -smp N,maxcpus=N+1): it must get its CTRL through the installed udev rule and unit'),
  expect: z.strictObject({
    bhi: z.enum(['not-affected', 'bhi-dis-s', 'sw-loop', 'retpoline', 'vmexit-sw-loop', 'vulnerable']).optional(),
    mitiCtrl: u64.optional(),
    forcedMask: u64.optional(),
    destForcedMask: u64.optional(),
  }).optional().describe('what this boot is in the matrix to cover (the kernel and host check stay the oracles)'),
  ci: z.boolean().optional(), note: z.string().optional(),
})
  .refine(b => !(b.hotplug && (b.migrateTo || b.fault)), 'hotplug is a boot of its own: not with migrateTo or fault')
  .refine(b => b.vmm === undefined || (b.fault === undefined && b.force === undefined), { message: 'expected vmm or fault/force, not both: the VMM definition carries its own faults and userspace force', path: ['vmm'] })
export const QemuMatrixDoc = z.strictObject({
  description: z.string().min(1),
  source: z.string().min(1),
  vmm: z.enum(['stock', 'patched']).optional().describe('stock: Debian\'s qemu-system-x86_64, the VMM that knows nothing; patched: host/qemu/build-patched.sh'),
  vcpus: z.union([z.bigint(), z.number()]).transform(Number).pipe(z.number().int().min(1).max(8)).optional(),
  kernels: z.array(KernelDoc).min(1).describe('guest kernels; stock boots run kernels x models x cmdlines'),
  deaths: z.array(DeathDoc).optional(),
  models: z.array(z.strictObject({ cpu: cpuName, ci: z.boolean().optional(), note: z.string().optional() })).min(1).optional(),
  cmdlines: z.array(z.strictObject({
    append,
    ci: z.union([z.boolean(), z.array(kernelId).min(1)]).optional().describe('true: in the CI set with every ci kernel; a list: only with these'),
    note: z.string().optional(),
  })).min(1).optional(),
  boots: z.array(PatchedBootDoc).min(1).optional(),
}).refine(d => d.vmm === 'patched' ? d.boots !== undefined && !d.models && !d.cmdlines : d.boots === undefined && d.models !== undefined && d.cmdlines !== undefined,
  'vmm: stock takes models x cmdlines; vmm: patched takes a boots list')
  .superRefine((d, ctx) => {
    const ids = d.kernels.map(k => k.id)
    const dup = ids.find((id, i) => ids.indexOf(id) !== i)
    if (dup) ctx.addIssue({ code: 'custom', path: ['kernels'], message: `kernel id ${dup} appears twice` })
    const refs = [
      ...(d.deaths ?? []).map((x, i) => ({ id: x.kernel, path: ['deaths', i, 'kernel'] })),
      ...(d.boots ?? []).flatMap((x, i) => x.kernel ? [{ id: x.kernel, path: ['boots', i, 'kernel'] }] : []),
      ...(d.cmdlines ?? []).flatMap((c, i) => Array.isArray(c.ci) ? c.ci.map((id, j) => ({ id, path: ['cmdlines', i, 'ci', j] })) : []),
    ]
    for (const r of refs) if (!ids.includes(r.id)) ctx.addIssue({ code: 'custom', path: r.path, message: `kernel ${r.id} is not in this file's kernels (${ids.join(', ')})` })
  })
export type KernelDoc = z.infer<typeof KernelDoc>
export type DeathDoc = z.infer<typeof DeathDoc>

/** A boot as parsed; `vmmProps` once its `vmm` definition is translated (tier.ts parseQemuMatrix). */
export type PatchedBootSpec = z.infer<typeof PatchedBootDoc> & { vmmProps?: { props: string[]; fault?: QemuFault; mitiEnum: bigint } }
