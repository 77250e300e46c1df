// The command list the live guest's /init runs (host/qemu/image/init.sh), one framed section
// each, and its encoding for the kernel command line (virtmiti.cmds=<base64>). Pure.
import { MSR } from '../../contract/registers.js'

export interface GuestCommand {
  /** Section name, [A-Za-z0-9_.:-]; ".stderr" is reserved for the stderr companion section. */
  name: string
  /** busybox sh command line, run as `sh -c` with stdin from /dev/null. */
  command: string
  /**
   * The command prints whole frames itself (`virtmiti-guest batch`): /init passes its stdout on as
   * it is, counts its frames, and sends a section `name` holding only its exit code and stderr.
   */
  framed?: boolean
}

/** Where build-initramfs.sh installs the agent bundle inside the guest. */
export const AGENT_PATH = '/virtmiti-guest.cjs'

/** x86 COMMAND_LINE_SIZE (Linux arch/x86/include/asm/setup.h): longer command lines are cut. */
export const X86_COMMAND_LINE_SIZE = 2048

/** The MSRs rdmsr reads on every CPU as the cross-check of the agent's reads (issue 7). */
export const CROSS_CHECK_MSRS: readonly number[] = [
  MSR.ARCH_CAPABILITIES, MSR.SPEC_CTRL,
  MSR.VIRTUAL_ENUMERATION, MSR.VIRTUAL_MITIGATION_ENUM, MSR.VIRTUAL_MITIGATION_CTRL,
]

const NAME = /^[A-Za-z0-9_.:-]{1,100}$/

/** The agent's three subcommands as [section, argv] (DESIGN.md; dist/virtmiti-guest.cjs). */
export const AGENT_STEPS: readonly (readonly [string, string])[] = [
  ['probe', 'probe --json'],
  ['report', 'report --json'],
  // The tier's guests run nothing but this list, so the selftest may write SPEC_CTRL back (its
  // shadow rule; issue 14 item 3 makes that opt-in because on a real guest it can clear another
  // task's SSBD/STIBP).
  ['selftest', 'selftest --tap --allow-spec-ctrl-writes'],
]

/** Section of the batch run itself (its exit code and stderr; its commands have their own). */
export const AGENT_BATCH_SECTION = 'agent'

/**
 * The agent's subcommands: by default one node process for all three (`batch`, issue 15 item 4:
 * each node start cost 0.5-0.9 s under TCG), still one section per command with its own exit
 * code; `separate: true` gives the three runs of before (bench/boot.mjs compares the two).
 */
export function agentCommands(agent = AGENT_PATH, o: { separate?: boolean } = {}): GuestCommand[] {
  if (o.separate) return AGENT_STEPS.map(([name, args]) => ({ name, command: `node ${agent} ${args}` }))
  return [{ name: AGENT_BATCH_SECTION, command: `node ${agent} batch ${AGENT_STEPS.map(([, args]) => args).join(' :: ')}`, framed: true }]
}

/** Section name of the rdmsr cross-check of one MSR, e.g. "rdmsr.0x10a". */
export const rdmsrSectionName = (msr: number): string => `rdmsr.0x${msr.toString(16)}`

/**
 * One section per MSR, run by /usr/bin/virtmiti-rdmsr-all (written by build-initramfs.sh):
 * a line "<cpu> <16 hex digits>" per online CPU, or "<cpu> ERR" when rdmsr failed (a #GP
 * surfaces as EIO through the msr driver, contract/CONTRACT.md section 3; rdmsr's message goes to the
 * .stderr section); exit 1 when any CPU failed. Looping over /dev/cpu covers any -smp and
 * shows which vCPUs the guest kernel brought up; the helper keeps the kernel command line short.
 */
export function rdmsrCommand(msr: number): GuestCommand {
  return { name: rdmsrSectionName(msr), command: `virtmiti-rdmsr-all 0x${msr.toString(16)}` }
}

/** What the guest's kernel says, read before the agent runs (the oracle, DESIGN.md tier 4). */
export const kernelCommands: readonly GuestCommand[] = [
  { name: 'cmdline', command: 'cat /proc/cmdline' },
  { name: 'spectre_v2', command: 'cat /sys/devices/system/cpu/vulnerabilities/spectre_v2' },
  { name: 'cpus', command: 'ls /dev/cpu' },
  { name: 'nproc', command: 'grep -c ^processor /proc/cpuinfo' },
  { name: 'cpuinfo.flags', command: "grep -m1 '^flags' /proc/cpuinfo" },
  { name: 'cpuinfo.bugs', command: "grep -m1 '^bugs' /proc/cpuinfo" },
]

/** The default list: kernel facts, the agent's subcommands, then rdmsr of every cross-check MSR. */
export function defaultCommands(agent = AGENT_PATH, o: { separate?: boolean } = {}): GuestCommand[] {
  return [...kernelCommands, ...agentCommands(agent, o), ...CROSS_CHECK_MSRS.map(rdmsrCommand)]
}

/** Reasons a list cannot be sent to the guest; empty when it can. */
export function checkCommands(cmds: readonly GuestCommand[]): string[] {
  const problems: string[] = []
  const seen = new Set<string>()
  for (const c of cmds) {
    if (!NAME.test(c.name)) problems.push(`name ${JSON.stringify(c.name)}: use 1-100 of [A-Za-z0-9_.:-]`)
    if (c.name.endsWith('.stderr')) problems.push(`name ${c.name}: ".stderr" is reserved for stderr sections`)
    if (seen.has(c.name)) problems.push(`name ${c.name} appears twice`)
    seen.add(c.name)
    if (/[\t\n\r]/.test(c.command) || c.command.trim() === '') problems.push(`command of ${c.name}: must be one non-empty line without tabs`)
  }
  return problems
}

/** "name<TAB>command[<TAB>frames]" lines, the format of the image's /etc/virtmiti/commands. */
export function commandsFile(cmds: readonly GuestCommand[]): string {
  return cmds.map(c => `${c.name}\t${c.command}${c.framed ? '\tframes' : ''}\n`).join('')
}

/** The kernel parameter that hands the list to /init; throws RangeError on an invalid list. */
export function commandsParam(cmds: readonly GuestCommand[]): string {
  const problems = checkCommands(cmds)
  if (problems.length > 0) throw new RangeError(`invalid guest command list: ${problems.join('; ')}`)
  return `virtmiti.cmds=${Buffer.from(commandsFile(cmds), 'utf8').toString('base64')}`
}

/** rdmsr section output -> value (or 'error') per CPU; undefined for lines it cannot read. */
export function parseRdmsrSection(output: string): Map<number, bigint | 'error'> {
  const out = new Map<number, bigint | 'error'>()
  for (const line of output.split('\n')) {
    const m = /^(\d+) (?:([0-9a-f]{16})|ERR)$/.exec(line.trim())
    if (!m) continue
    out.set(Number(m[1]), m[2] === undefined ? 'error' : BigInt('0x' + m[2]))
  }
  return out
}
