// Platform that answers from a recorded Facts file (--replay): anybody can re-run a probe
// taken on a real machine. It never writes (EROFS), and MSRs not in the recording fault.
import type { Facts } from '../contract/facts.js'
import { CPUID_LEAVES, msrKey } from '../contract/facts.js'
import type { CpuidResult, MsrRead, MsrWrite, Platform } from './platform.js'

export class RecordedPlatform implements Platform {
  readonly kind = 'recorded'
  private readonly byCpu: Map<number, Facts['cpus'][number]>
  constructor(private readonly facts: Facts) {
    this.byCpu = new Map(facts.cpus.map(c => [c.cpu, c]))
  }
  cpus(): number[] { return [...this.byCpu.keys()].sort((a, b) => a - b) }

  cpuid(cpu: number, leaf: number, subleaf: number): CpuidResult {
    const c = this.byCpu.get(cpu)
    if (!c) return { ok: false, fault: { errno: 'ENXIO', message: `CPU ${cpu} is not in the recording` } }
    const key = CPUID_LEAVES.find(l => l.leaf === leaf && l.subleaf === subleaf)?.key
    const f = key ? c.cpuid[key] : undefined
    if (!f) return { ok: false, fault: { errno: 'ENODATA', message: `CPUID 0x${leaf.toString(16)}.${subleaf} is not in the recording` } }
    return 'regs' in f ? { ok: true, regs: f.regs } : { ok: false, fault: f.fault }
  }

  rdmsr(cpu: number, index: number): MsrRead {
    const c = this.byCpu.get(cpu)
    if (!c) return { ok: false, fault: { errno: 'ENXIO', message: `CPU ${cpu} is not in the recording` } }
    const f = c.msr[msrKey(index)]
    if (!f) return { ok: false, fault: { errno: 'ENODATA', message: `MSR ${msrKey(index)} is not in the recording` } }
    if ('value' in f) return { ok: true, value: f.value }
    if ('fault' in f) return { ok: false, fault: f.fault }
    return { ok: false, fault: { errno: 'ENODATA', message: `MSR ${msrKey(index)} was not read when recorded: ${f.skipped}` } }
  }

  wrmsr(): MsrWrite {
    return { ok: false, fault: { errno: 'EROFS', message: 'a recorded platform is read-only' } }
  }

  readText(path: string): string | undefined {
    const k = this.facts.kernel
    if (path === '/proc/cmdline') return k.cmdline
    if (path === '/proc/sys/kernel/osrelease') return k.release
    if (path === '/sys/kernel/security/lockdown') return k.lockdown
    if (k.config && k.release !== undefined && path === `/boot/config-${k.release}`) return Object.entries(k.config).map(([o, v]) => (v === 'n' ? `# ${o} is not set` : `${o}=${v}`)).join('\n') + '\n'
    const m = /^\/sys\/devices\/system\/cpu\/vulnerabilities\/([a-z0-9_]+)$/.exec(path)
    return m ? k.vulnerabilities[m[1]!] : undefined
  }
}
