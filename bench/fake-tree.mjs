// Build a fake /dev/cpu + /sys + /proc tree for `virtmiti guest probe --dev-root DIR` (used by
// bench/probe.mjs and guest/devcpu.test.ts). Regular sparse files stand in for the drivers:
//   dev/cpu/N/cpuid: pread(16 bytes) at offset (subleaf << 32 | leaf) gives EAX, EBX, ECX, EDX (LE)
//   dev/cpu/N/msr:   pread(8 bytes) at offset INDEX gives the MSR value (LE)
// which is how Linux's cpuid and msr drivers answer (arch/x86/kernel/cpuid.c, msr.c).
//
// A regular file cannot hold every record independently: the drivers decode the offset, so
// leaf 0 (bytes 0-15), leaf 1 (bytes 1-16) and leaf 7 (bytes 7-22) overlap in a file, and so do
// MSRs 0x50000000/1/2. The layout below keeps every bit the contract reads:
//   - CPUID records are written highest offset first, so lower leaves win overlapping bytes:
//     leaf 0 (vendor) is exact; then leaf 1 EAX bits 0-23 are written at bytes 1-3 (leaf 0 EAX
//     bits 8-31, which nothing reads), so family/model/stepping are exact (the top byte of leaf
//     1 EAX reads 'G' = 0x47: extended family, ignored unless the base family is 0xf).
//     Leaf 1 ECX reads vendor bytes ("neIn" for Intel): CPUID.1:ECX[31] HYPERVISOR is always
//     clear, so a fake tree is a bare-metal CPU. Leaf 7 EAX reads "uine" (>= 2, so subleaf 2
//     counts); leaf 7 EDX (bytes 19-22) is exact. Leaves 7.2 and 0x40000000 sit far apart: exact.
//   - MSRs are written lowest index first, so higher indices win: only the low byte of
//     0x50000000 and 0x50000001 survives, e.g. VIRTUAL_ENUMERATION 0x1, MITI_ENUM 0x3 and
//     MITI_CTRL 0x0 read back as 0x301, 0x3 and 0x0 (bit 0 set, as the chain needs).
// A regular file reads zeros for registers never written, like a VMM with ignore_msrs=1.
import * as fs from 'node:fs'
import { join } from 'node:path'

// "GenuineIntel" in EBX, EDX, ECX.
const INTEL = { ebx: 0x756e6547, edx: 0x49656e69, ecx: 0x6c65746e }

/** A Sapphire Rapids (family 6 model 0x8f), bare metal, with ARCH_CAP bit 63 and the virtual MSRs. */
export const SPR_VIRT = {
  cpuid: {
    '0x0': [0x20, INTEL.ebx, INTEL.ecx, INTEL.edx],
    '0x1': [0x806f8, 0, 0, 0],
    '0x7': [2, 0, 0, 0xac000000], // EDX: SPEC_CTRL STIBP ARCH_CAPABILITIES SSBD
    '0x7.2': [0, 0, 0, 0x17], // EDX: PSFD IPRED_CTRL RRSBA_CTRL BHI_CTRL
    '0x40000000': [0, 0, 0, 0],
  },
  msr: {
    0x10a: 0x800000000008e16bn, // IBRS_ALL ... + bit 63 VIRTUAL_ENUM
    0x50000000: 0x1n, // MITIGATION_CTRL_SUPPORT
    0x50000001: 0x3n, // BHB_CLEAR_SEQ_S_SUPPORT | RETPOLINE_S_SUPPORT
    0x50000002: 0x0n, // reset value (RFC v3 07/10)
  },
  spectreV2: 'Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; RSB filling; PBRSB-eIBRS: SW sequence; BHI: BHI_DIS_S',
  cmdline: 'BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet',
  release: '6.12.9',
}

const leafOffset = key => { const [l, s] = key.split('.'); return Number(s ?? 0) * 0x1_0000_0000 + Number(l) }

function writeCpuid(file, cpuid) {
  const fd = fs.openSync(file, 'w')
  const recs = Object.entries(cpuid).map(([k, regs]) => [leafOffset(k), regs]).sort((a, b) => b[0] - a[0])
  for (const [off, regs] of recs) {
    const b = Buffer.alloc(16)
    regs.forEach((r, i) => b.writeUInt32LE(r >>> 0, i * 4))
    fs.writeSync(fd, b, 0, 16, off)
  }
  const l1 = cpuid['0x1']
  if (l1) { const b = Buffer.alloc(4); b.writeUInt32LE(l1[0] >>> 0); fs.writeSync(fd, b, 0, 3, 1) }
  fs.closeSync(fd)
}

function writeMsr(file, msr) {
  const fd = fs.openSync(file, 'w')
  for (const [idx, v] of Object.entries(msr).map(([k, v]) => [Number(k), v]).sort((a, b) => a[0] - b[0])) {
    const b = Buffer.alloc(8)
    b.writeBigUInt64LE(v)
    fs.writeSync(fd, b, 0, 8, idx)
  }
  fs.closeSync(fd)
}

/**
 * Write a tree for `ncpus` CPUs into `root` and return root. `model` as SPR_VIRT; options:
 * `msrFile: false` leaves out dev/cpu/N/msr (msr driver not loaded), `online: false` leaves out
 * sys/devices/system/cpu/online, `perCpu(n, model)` varies one CPU.
 */
export function buildTree(root, ncpus, model = SPR_VIRT, opts = {}) {
  const { msrFile = true, online = true, perCpu } = opts
  for (let n = 0; n < ncpus; n++) {
    const m = perCpu ? perCpu(n, model) : model
    const dir = join(root, 'dev/cpu', String(n))
    fs.mkdirSync(dir, { recursive: true })
    writeCpuid(join(dir, 'cpuid'), m.cpuid)
    if (msrFile) writeMsr(join(dir, 'msr'), m.msr)
  }
  const w = (p, s) => { fs.mkdirSync(join(root, p, '..'), { recursive: true }); fs.writeFileSync(join(root, p), s) }
  if (online) w('sys/devices/system/cpu/online', ncpus === 1 ? '0\n' : `0-${ncpus - 1}\n`)
  if (model.spectreV2 !== undefined) w('sys/devices/system/cpu/vulnerabilities/spectre_v2', model.spectreV2 + '\n')
  if (model.cmdline !== undefined) w('proc/cmdline', model.cmdline + '\n')
  if (model.release !== undefined) w('proc/sys/kernel/osrelease', model.release + '\n')
  return root
}
