import t from 'tap'
import {
  checkCommands, commandsFile, commandsParam, CROSS_CHECK_MSRS, defaultCommands, parseRdmsrSection,
  rdmsrCommand, X86_COMMAND_LINE_SIZE,
} from './commands.js'
import { kernelCmdline, qemuArgs } from './boot.js'

t.test('default command list is valid and carries the agent, sysfs and rdmsr sections', async t => {
  const cmds = defaultCommands()
  t.same(checkCommands(cmds), [])
  const names = cmds.map(c => c.name)
  for (const n of ['cmdline', 'spectre_v2', 'cpus', 'agent', 'rdmsr.0x10a', 'rdmsr.0x48',
    'rdmsr.0x50000000', 'rdmsr.0x50000001', 'rdmsr.0x50000002']) t.ok(names.includes(n), `has section ${n}`)
  // One node process for the three agent commands (issue 15 item 4); their sections come from it.
  const agent = cmds.find(c => c.name === 'agent')
  t.same(agent, { name: 'agent', framed: true, command: 'node /virtmiti-guest.cjs batch probe --json :: report --json :: selftest --tap --allow-spec-ctrl-writes' })
  t.notOk(names.includes('probe'), 'probe runs inside the batch')
  const separate = defaultCommands(undefined, { separate: true })
  t.same(separate.filter(c => ['probe', 'report', 'selftest'].includes(c.name)).map(c => c.command),
    ['node /virtmiti-guest.cjs probe --json', 'node /virtmiti-guest.cjs report --json', 'node /virtmiti-guest.cjs selftest --tap --allow-spec-ctrl-writes'],
    'separate: the same arguments, one process each')
  t.same(CROSS_CHECK_MSRS, [0x10a, 0x48, 0x50000000, 0x50000001, 0x50000002])
  t.match(commandsFile([agent!]), /^agent\tnode [^\t]+\tframes\n$/, 'a framed command gets a third field for init.sh')
})

t.test('commandsParam round-trips through base64 to the file format init.sh reads', async t => {
  const cmds = [{ name: 'a', command: "echo 'x y'" }, { name: 'b.c', command: 'cat /proc/cmdline' }]
  const p = commandsParam(cmds)
  t.match(p, /^virtmiti\.cmds=[A-Za-z0-9+/]+=*$/, 'one kernel word: no spaces')
  t.equal(Buffer.from(p.slice('virtmiti.cmds='.length), 'base64').toString('utf8'), "a\techo 'x y'\nb.c\tcat /proc/cmdline\n")
  t.equal(commandsFile(cmds), "a\techo 'x y'\nb.c\tcat /proc/cmdline\n")
})

t.test('invalid command lists are refused with the reason', async t => {
  t.match(checkCommands([{ name: 'bad name', command: 'x' }])[0], /name "bad name"/)
  t.match(checkCommands([{ name: 'a.stderr', command: 'x' }])[0], /reserved/)
  t.match(checkCommands([{ name: 'a', command: 'x' }, { name: 'a', command: 'y' }])[0], /twice/)
  t.match(checkCommands([{ name: 'a', command: 'x\ty' }])[0], /tabs/)
  t.match(checkCommands([{ name: 'a', command: '  ' }])[0], /non-empty/)
  t.throws(() => commandsParam([{ name: 'a', command: 'x\ny' }]), RangeError)
})

t.test('the default kernel command line fits x86 COMMAND_LINE_SIZE with room for extras', async t => {
  const line = kernelCmdline({ append: ['spectre_bhi=vmexit', 'spectre_v2=retpoline'] })
  t.ok(line.length < X86_COMMAND_LINE_SIZE - 200, `cmdline is ${line.length} bytes`)
  t.match(line, /^console=ttyS0 panic=1 spectre_bhi=vmexit spectre_v2=retpoline virtmiti\.cmds=/)
})

t.test('qemuArgs: TCG, two serial ports, no reboot, requested model and size', async t => {
  const a = qemuArgs({ image: '/i,x', kernel: '/k', cpu: 'EPYC' }, 'tcg', '/w/console.log', '/w,x/frames.log')
  const arg = (flag: string): string | undefined => a[a.indexOf(flag) + 1]
  t.equal(arg('-accel'), 'tcg')
  t.equal(arg('-cpu'), 'EPYC')
  t.equal(arg('-smp'), '2')
  t.equal(arg('-m'), '1024')
  t.equal(arg('-kernel'), '/k')
  t.equal(arg('-initrd'), '/i,x', '-initrd is a plain path, not a QEMU option string')
  t.ok(a.includes('-no-reboot') && a.includes('-nographic'))
  t.same(a.filter((_, i) => a[i - 1] === '-chardev'), ['file,id=virtmiti-console,path=/w/console.log', 'file,id=virtmiti-frames,path=/w,,x/frames.log'],
    'commas doubled in chardev paths')
  t.same(a.filter((_, i) => a[i - 1] === '-serial'), ['chardev:virtmiti-console', 'chardev:virtmiti-frames'], 'ttyS0 console then ttyS1 frames')
})

t.test('parseRdmsrSection reads "<cpu> <hex>" and "<cpu> ERR" lines', async t => {
  const m = parseRdmsrSection('0 0000000000000000\n1 800000000000000a\n2 ERR\nrdmsr: junk\n')
  t.same([...m.entries()], [[0, 0n], [1, 0x800000000000000an], [2, 'error']])
  t.equal(rdmsrCommand(0x10a).command, 'virtmiti-rdmsr-all 0x10a')
})
