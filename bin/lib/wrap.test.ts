// Wrapping (issue 12): only on a TTY, at spaces, never truncating; colour codes have no width.
import t from 'tap'
import { outputWidth, wrapLine, wrapText } from './wrap.js'

t.test('wraps at spaces to the width, keeps every character, indents continuations', async t => {
  const line = '  BHI at risk: the short SW BHB-clearing loop is effective only on CPUs before Alder Lake / Sapphire Rapids'
  const w = wrapLine(line, 40)
  t.ok(w.length > 1)
  for (const l of w) t.ok(l.length <= 40, `"${l}" fits`)
  t.equal(w.map(l => l.trim()).join(' '), line.trim(), 'nothing lost, nothing truncated')
  t.match(w[1], /^ {4}\S/, 'continuation: indentation + 2')
  const long = 'x'.repeat(100)
  t.same(wrapLine(`a ${long} b`, 30), ['a', `  ${long}`, '  b'], 'a word longer than the width stays whole')
  t.equal(wrapText(`${line}\n${line}\n`, Infinity), `${line}\n${line}\n`, 'no width: unchanged')
  t.same(wrapLine('\u001b[31mred\u001b[39m word', 8), ['\u001b[31mred\u001b[39m word'], 'ANSI codes count as zero width')
})

t.test('the width is the TTY\'s columns; a pipe or a file gets none', async t => {
  t.equal(outputWidth({ isTTY: true, columns: 100 }), 100)
  t.equal(outputWidth({ isTTY: false, columns: 100 }), Infinity)
  t.equal(outputWidth({}), Infinity)
  t.equal(outputWidth({ isTTY: true, columns: 5 }), Infinity, 'a nonsense width is ignored')
})
