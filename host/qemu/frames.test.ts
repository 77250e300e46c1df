import t from 'tap'
import { decodeBase64Strict, parseFrames } from './frames.js'

const b64 = (s: string | Uint8Array): string => Buffer.from(s).toString('base64')
// Same shape init.sh writes: base64 wrapped at 76 columns.
const wrap = (s: string): string => s.replace(/(.{76})/g, '$1\n').replace(/\n$/, '')
const frame = (name: string, body: string | Uint8Array, exit = 0, up = '5.10'): string => {
  const bytes = typeof body === 'string' ? Buffer.byteLength(body) : body.length
  return `@@virtmiti-begin ${name}\n${wrap(b64(body))}\n@@virtmiti-end ${name} ${exit} ${bytes} ${up}\n`
}
const kinds = (text: string): string[] => parseFrames(text).errors.map(e => e.kind)

t.test('a complete stream parses into named sections with exit codes and output', async t => {
  const long = 'x'.repeat(300) + '\n'
  const text = '@@virtmiti-hello 1 4.96\n' + frame('cmdline', 'console=ttyS0\n') +
    frame('probe', long, 0, '7.24') + frame('rdmsr.0x10a', '', 4) + '@@virtmiti-done 3 9.00\n'
  const p = parseFrames(text)
  t.same(p.errors, [], 'no errors on a well-formed stream')
  t.equal(p.protocol, 1)
  t.equal(p.helloUptimeS, 4.96)
  t.same(p.done, { frames: 3, uptimeS: 9 })
  t.same([...p.sections.keys()], ['cmdline', 'probe', 'rdmsr.0x10a'], 'sections keep arrival order')
  t.equal(p.sections.get('cmdline')?.output, 'console=ttyS0\n')
  t.equal(p.sections.get('probe')?.output, long, 'multi-line base64 body is joined before decoding')
  t.equal(p.sections.get('probe')?.uptimeS, 7.24)
  t.equal(p.sections.get('rdmsr.0x10a')?.exit, 4, 'non-zero exit code is kept')
  t.equal(p.sections.get('rdmsr.0x10a')?.output, '', 'empty output is a valid section')
})

t.test('CRLF line ends (a tty with ONLCR) parse the same as LF', async t => {
  const text = ('@@virtmiti-hello 1 1.0\n' + frame('a', 'hello\n') + '@@virtmiti-done 1 2.0\n').replace(/\n/g, '\r\n')
  const p = parseFrames(text)
  t.same(p.errors, [])
  t.equal(p.sections.get('a')?.output, 'hello\n')
})

t.test('arbitrary bytes survive: NUL, control bytes, invalid UTF-8 kept in raw', async t => {
  const bytes = new Uint8Array([0, 1, 2, 0xff, 0xfe, 10, 13, 0x40, 0x40])
  const p = parseFrames(frame('bin', bytes) + '@@virtmiti-done 1 2.0\n')
  t.same(p.errors, [])
  t.same([...p.sections.get('bin')!.raw], [...bytes], 'raw bytes equal what the guest sent')
})

t.test('stderr sections fold into their command; orphan stderr stays its own section', async t => {
  const text = frame('report', '{"a":1}\n', 1) + frame('report.stderr', 'warn: x\n', 1) +
    frame('lonely.stderr', 'oops\n', 2) + '@@virtmiti-done 3 3.0\n'
  const p = parseFrames(text)
  t.same(p.errors, [])
  t.same([...p.sections.keys()], ['report', 'lonely.stderr'])
  t.equal(p.sections.get('report')?.output, '{"a":1}\n', 'stdout is not mixed with stderr')
  t.equal(p.sections.get('report')?.stderr, 'warn: x\n')
  t.equal(p.sections.get('lonely.stderr')?.output, 'oops\n')
})

t.test('interleaved garbage outside frames is counted and ignored', async t => {
  const text = '[    0.000000] Linux version 6.1\nrandom noise @@virtmiti-begin fake\n' + frame('a', 'ok\n') +
    'more noise\n\n' + frame('b', 'ok2\n') + 'trailing\n@@virtmiti-done 2 3.0\n'
  const p = parseFrames(text)
  t.same(p.errors, [], 'markers count only at line start; noise between frames is not an error')
  t.equal(p.garbageLines, 4)
  t.same([...p.sections.keys()], ['a', 'b'])
})

t.test('truncated stream: open section reported, earlier sections kept, missing done reported', async t => {
  const text = frame('a', 'ok\n') + '@@virtmiti-begin b\n' + wrap(b64('partial output')).slice(0, 10)
  const p = parseFrames(text)
  t.same(kinds(text), ['truncated', 'missing-done'])
  t.equal(p.errors[0]?.section, 'b')
  t.same([...p.sections.keys()], ['a'], 'the complete section before the cut survives')
})

t.test('a begin inside an open section truncates the first and parses the second', async t => {
  const text = '@@virtmiti-begin a\nQUJD\n' + frame('b', 'fine\n') + '@@virtmiti-done 2 3.0\n'
  const p = parseFrames(text)
  t.same(kinds(text), ['truncated', 'count-mismatch'], 'done says 2 frames, only 1 completed')
  t.equal(p.sections.get('b')?.output, 'fine\n')
  t.notOk(p.sections.has('a'))
})

t.test('bad base64 is a clean error for that section only', async t => {
  const badChar = '@@virtmiti-begin a\nQUJD$$\n@@virtmiti-end a 0 3 1.0\n'
  t.same(kinds(badChar + '@@virtmiti-done 1 2\n'), ['bad-base64'], 'a non-alphabet character')
  const badPad = '@@virtmiti-begin a\nQUJ\n@@virtmiti-end a 0 2 1.0\n'
  t.same(kinds(badPad + '@@virtmiti-done 1 2\n'), ['bad-base64'], 'length not a multiple of 4')
  const midPad = '@@virtmiti-begin a\nQQ==QUJD\n@@virtmiti-end a 0 4 1.0\n'
  t.same(kinds(midPad + '@@virtmiti-done 1 2\n'), ['bad-base64'], 'padding in the middle')
  const noise = '@@virtmiti-begin a\nQUJD\n[ 5.1] kernel: hi\n@@virtmiti-end a 0 3 1.0\n'
  const p = parseFrames(noise + frame('b', 'x') + '@@virtmiti-done 2 2\n')
  t.same(p.errors.map(e => [e.kind, e.section, e.line]), [['bad-base64', 'a', 3]], 'error names the section and line')
  t.same([...p.sections.keys()], ['b'], 'later sections still parse')
})

t.test('byte count, names and markers are checked', async t => {
  t.same(kinds('@@virtmiti-begin a\nQUJD\n@@virtmiti-end a 0 4 1.0\n@@virtmiti-done 1 2\n'), ['length-mismatch'])
  t.same(kinds('@@virtmiti-begin a\nQUJD\n@@virtmiti-end b 0 3 1.0\n@@virtmiti-done 1 2\n'), ['name-mismatch'])
  t.same(kinds('@@virtmiti-end a 0 3 1.0\n@@virtmiti-done 0 2\n'), ['end-without-begin'])
  t.same(kinds('@@virtmiti-begin a\nQUJD\n@@virtmiti-end a zero 3 1.0\n@@virtmiti-done 1 2\n'), ['bad-marker'])
  t.same(kinds('@@virtmiti-begin a b\n@@virtmiti-done 0 2\n'), ['bad-marker'], 'a name with a space')
  t.same(kinds('@@virtmiti-begin __proto__\nQUJD\n@@virtmiti-end __proto__ 0 3\n@@virtmiti-done 1 2\n'), [],
    'odd names are plain Map keys (no prototype pollution); uptime is optional')
  t.same(kinds('@@virtmiti-bogus 1\n@@virtmiti-done 0 2\n'), ['bad-marker'])
  t.same(kinds('@@virtmiti-done x\n'), ['bad-marker', 'missing-done'])
  const dup = frame('a', '1') + frame('a', '2') + '@@virtmiti-done 2 2\n'
  t.same(kinds(dup), ['duplicate'])
  t.equal(parseFrames(dup).sections.get('a')?.output, '1', 'the first of two duplicates is kept')
})

t.test('parseFrames never throws on hostile input', async t => {
  const inputs = ['', '\n\n\n', '@@virtmiti-', '@@virtmiti-begin', '@@virtmiti-end', '@@virtmiti-done',
    '@@virtmiti-begin a\n@@virtmiti-begin a\n@@virtmiti-end a 0 0\n', '\u0000\uffff@@virtmiti-begin\r\r\n',
    '@@virtmiti-begin a\n' + 'A'.repeat(100000) + '\n@@virtmiti-end a 0 75000 1\n@@virtmiti-done 1 1\n']
  for (const s of inputs) t.doesNotThrow(() => parseFrames(s), JSON.stringify(s.slice(0, 40)))
  t.same(kinds(''), ['missing-done'], 'empty stream (guest never started) is reported as such')
  t.same(kinds(inputs[8]!), [], '100 kB body decodes')
})

t.test('decodeBase64Strict accepts canonical base64 only', async t => {
  t.same(decodeBase64Strict(''), new Uint8Array(0))
  t.same([...decodeBase64Strict('QUI=')!], [0x41, 0x42])
  t.equal(decodeBase64Strict('QUI'), undefined)
  t.equal(decodeBase64Strict('QU=I'), undefined)
  t.equal(decodeBase64Strict('QUI-'), undefined, 'base64url alphabet is not accepted')
})
