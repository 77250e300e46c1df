// `virtmiti-guest batch` (issue 15 item 4): parsing, the frames (read back by the host's parser),
// and each command's isolation (output, exit code, argv, NO_COLOR) with a recorded command table.
// The real bundle against separate runs: guest/bundle/build.test.ts.
import t from 'tap'
import { frame, main, parseBatch } from './batch.js'
import { parseFrames } from '../../host/qemu/frames.js'
import { runFlat, takeNoColor, type Command } from '../../bin/dispatch.js'
import { captureOutput, stdio } from '../../bin/lib/cli.js'

/** The deps bin/guest-commands.ts gives, over a made-up table. */
const over = (table: Record<string, Command>) => ({ commands: Object.keys(table), run: (a: string[]) => runFlat(table, 'guest', 'virtmiti-guest', a) })

t.test('parseBatch: commands split at "::", NAME=COMMAND, the errors named', async t => {
  const known = ['probe', 'report', 'selftest']
  t.same(parseBatch(['probe', '--json', '::', 'r2=report', '--json', '--cpu', '1'], known), [
    { name: 'probe', command: 'probe', args: ['--json'] },
    { name: 'r2', command: 'report', args: ['--json', '--cpu', '1'] },
  ])
  t.match(parseBatch(['probe', '::'], known), { error: /empty command/ })
  t.match(parseBatch(['::', 'probe'], known), { error: /empty command/ })
  t.match(parseBatch(['batch'], known), { error: /unknown command "batch"/ })
  t.match(parseBatch(['probe', '::', 'probe'], known), { error: /section "probe" twice/ })
  t.match(parseBatch(['x.stderr=probe'], known), { error: /not ending in \.stderr/ })
  t.match(parseBatch(['a b=probe'], known), { error: /section name "a b"/ })
})

t.test('frame: protocol 1, read back by host/qemu/frames.ts, 76 columns, empty bodies', async t => {
  const body = Buffer.from('x'.repeat(200) + '\u0000\n')
  const text = `@@virtmiti-hello 1 0.5\n${frame('a', 3, body, '1.25')}${frame('b', 0, Buffer.alloc(0))}@@virtmiti-done 2 2.0\n`
  const f = parseFrames(text)
  t.same(f.errors, [])
  t.same([f.sections.get('a')?.exit, Buffer.from(f.sections.get('a')!.raw).equals(body), f.sections.get('a')?.uptimeS], [3, true, 1.25])
  t.equal(f.sections.get('b')?.output, '')
  t.ok(text.split('\n').every(l => l.length <= 76 || l.startsWith('@@')), 'body lines of at most 76 columns')
})

t.test('main: each command caught on its own, as its own run would see itself', async t => {
  const seen: { argv: string[]; noColor?: string | undefined }[] = []
  const cmd = (f: (argv: string[]) => Promise<number>): Command => ({ help: '', load: async () => f })
  const table: Record<string, Command> = {
    // Commands write through bin/lib/cli.ts stdio (every guest command does): batch catches that.
    a: cmd(async () => { stdio.out('hello\n'); stdio.err('warned\n'); return 3 }),
    // takeNoColor runs in the dispatch: --no-color sets NO_COLOR for this command only.
    b: cmd(async argv => { seen.push({ argv: process.argv.slice(2), noColor: process.env['NO_COLOR'] }); stdio.out(JSON.stringify(takeNoColor(argv))); return 0 }),
    c: cmd(async () => { seen.push({ argv: process.argv.slice(2), noColor: process.env['NO_COLOR'] }); throw new Error('boom') }),
    batch: cmd(async () => 0),
  }
  const saved = { argv: process.argv, noColor: process.env['NO_COLOR'] }
  delete process.env['NO_COLOR']
  process.argv = [process.argv[0]!, '/virtmiti-guest.cjs', 'batch', 'a', '::', 'b', '--x', '--no-color', '::', 'c']
  t.teardown(() => { process.argv = saved.argv; if (saved.noColor === undefined) delete process.env['NO_COLOR']; else process.env['NO_COLOR'] = saved.noColor })
  let out = ''
  const rc = await main(['a', '::', 'b', '--x', '--no-color', '::', 'c'], { ...over(table), write: s => { out += s }, uptime: () => '9.5' })
  t.equal(rc, 0)
  const f = parseFrames(`@@virtmiti-hello 1 0\n${out}@@virtmiti-done 5 10\n`)
  t.same(f.errors, [])
  t.same([...f.sections.keys()], ['a', 'b', 'c'])
  t.same([f.sections.get('a')!.exit, f.sections.get('a')!.output, f.sections.get('a')!.stderr, f.sections.get('a')!.uptimeS], [3, 'hello\n', 'warned\n', 9.5])
  t.same(seen, [{ argv: ['b', '--x', '--no-color'], noColor: '1' }, { argv: ['c'], noColor: undefined }], 'argv as a separate run; NO_COLOR of b does not reach c')
  t.equal(f.sections.get('b')!.output, '["--x"]')
  t.same([f.sections.get('c')!.exit, /internal error, could not tell: boom/.test(f.sections.get('c')!.stderr)], [3, true], 'a throw: exit 3 with the message, as runFlat does')
  t.equal(process.argv[2], 'batch', 'argv restored')
  t.equal(process.exitCode, undefined)
})

t.test('main: usage errors exit 2 and write no frame', async t => {
  let out = ''
  const table: Record<string, Command> = { a: { help: '', load: async () => async () => 0 } }
  const errs: string[] = []
  const release = captureOutput({ out: () => {}, err: s => { errs.push(s) } })
  try {
    t.equal(await main(['nope'], { ...over(table), write: s => { out += s } }), 2)
    t.equal(await main(['a', '::'], { ...over(table), write: s => { out += s } }), 2)
  } finally { release() }
  t.equal(out, '')
  t.match(errs.join(''), /unknown command "nope"/)
})
