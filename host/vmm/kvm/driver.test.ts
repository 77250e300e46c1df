// The thin ioctl wrappers on a real /dev/kvm. Skips (never fakes a pass) without it.
import t from 'tap'
import {
  checkExtension, closeFd, createVm, getApiVersion, getSupportedCpuid, getVcpuMmapSize, KvmError, openKvm,
} from './sys.js'
import { createVcpu, enableCap } from './vm.js'
import { getCpuid2, getMsrs, getRegs, getSregs, setCpuid2, setMsrs, setRegs, setSregs } from './vcpu.js'
import { liveTierUnavailable } from './machine.js'
import { KVM_CAP_X86_MSR_FILTER, KVM_CAP_X86_USER_SPACE_MSR, SIZEOF_KVM_RUN } from './uapi.js'

const skip = liveTierUnavailable()

t.test('system ioctls: API 12, user-space MSR caps, mmap size, supported CPUID', { skip }, async t => {
  const kvm = openKvm()
  try {
    t.equal(getApiVersion(kvm), 12)
    t.not(checkExtension(kvm, KVM_CAP_X86_USER_SPACE_MSR), 0, 'KVM_CAP_X86_USER_SPACE_MSR')
    t.not(checkExtension(kvm, KVM_CAP_X86_MSR_FILTER), 0, 'KVM_CAP_X86_MSR_FILTER')
    t.ok(getVcpuMmapSize(kvm) >= SIZEOF_KVM_RUN, 'vCPU mmap holds struct kvm_run')
    const cpuid = getSupportedCpuid(kvm)
    const l0 = cpuid.find(e => e.function === 0)
    t.ok(l0 && l0.eax >= 7, 'supported table has leaf 0 with max basic leaf >= 7')
  } finally { closeFd(kvm) }
})

t.test('vCPU ioctls round-trip regs, sregs, CPUID and MSRs', { skip }, async t => {
  const kvm = openKvm()
  const vm = createVm(kvm)
  const vcpu = createVcpu(vm, 0)
  try {
    const s = getSregs(vcpu)
    t.equal(s.cs.selector, 0xf000, 'reset CS selector (SDM vol 3 9.1.4)')
    t.equal(s.cs.base, 0xffff0000n, 'reset CS base')
    setSregs(vcpu, { ...s, ds: { ...s.ds, base: 0x12340n, selector: 0x1234 } })
    const s2 = getSregs(vcpu)
    t.equal(s2.ds.base, 0x12340n)
    t.equal(s2.ds.selector, 0x1234)
    t.equal(getRegs(vcpu).rip, 0xfff0n, 'reset RIP')
    setRegs(vcpu, { ...getRegs(vcpu), rax: 0x1122334455667788n, rip: 0x1000n })
    const r = getRegs(vcpu)
    t.equal(r.rax, 0x1122334455667788n)
    t.equal(r.rip, 0x1000n)
    const table = getSupportedCpuid(kvm)
    setCpuid2(vcpu, table)
    t.ok(getCpuid2(vcpu).length > 0, 'KVM_GET_CPUID2 returns the table')
    // IA32_SYSENTER_CS (0x174): a plain MSR KVM keeps per vCPU.
    t.equal(setMsrs(vcpu, [{ index: 0x174, data: 0x10n }]), 1, 'KVM_SET_MSRS accepted 1 entry')
    t.same(getMsrs(vcpu, [0x174]), [{ index: 0x174, data: 0x10n }])
  } finally { closeFd(vcpu); closeFd(vm); closeFd(kvm) }
})

t.test('errors carry the ioctl name and errno', { skip }, async t => {
  const kvm = openKvm()
  const vm = createVm(kvm)
  const vcpu = createVcpu(vm, 0)
  try {
    // a second vCPU with the same id: kvm_vm_ioctl_create_vcpu returns -EEXIST
    const e = t.throws(() => createVcpu(vm, 0)) as unknown
    t.ok(e instanceof KvmError)
    if (e instanceof KvmError) {
      t.equal(e.op, 'KVM_CREATE_VCPU')
      t.equal(e.code, 'EEXIST')
      t.match(e.message, /KVM_CREATE_VCPU: EEXIST/)
    }
    // an unknown capability: KVM_ENABLE_CAP returns -EINVAL
    const e2 = t.throws(() => enableCap(vm, 0x7fff, [])) as unknown
    t.ok(e2 instanceof KvmError && e2.op === 'KVM_ENABLE_CAP' && e2.code === 'EINVAL', 'KVM_ENABLE_CAP EINVAL')
  } finally { closeFd(vcpu); closeFd(vm); closeFd(kvm) }
})
