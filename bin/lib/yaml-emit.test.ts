// The TAP diagnostics YAML emitter: what it writes reads back with the yaml package to the same
// data (bigints as "0x" hex strings, DESIGN.md conventions); awkward keys and strings are quoted.
import t from 'tap'
import { parse } from 'yaml'
import { emitYaml } from './yaml-emit.js'

t.test('block mappings and sequences read back equal', async t => {
  const data = {
    kernel: 'BHI: SW loop, KVM: SW loop',
    'key with space': 'a "quoted" \\ value\nsecond line',
    n: 3, neg: -1.5, yes: true, none: null,
    list: ['x', 2, { cpu: 1, what: 'IA32_ARCH_CAPABILITIES differs' }, [], {}],
    nested: { deep: { deeper: ['#comment-like', '- dash', ': colon', 'no'] } },
    empty: [], emptyObj: {},
  }
  const text = emitYaml(data).join('\n')
  t.same(parse(text), data)
})

t.test('bigints become "0x" hex strings; non-finite numbers become strings', async t => {
  t.same(parse(emitYaml({ v: 0x8000000000000000n, inf: Infinity }).join('\n')), { v: '0x8000000000000000', inf: 'Infinity' })
  t.same(emitYaml({ v: 0x1fn }), ['v: "0x1f"'])
})

t.test('indentation is applied to every line', async t => {
  const lines = emitYaml({ a: { b: [1, 2] } }, '    ')
  t.same(lines, ['    a:', '      b:', '        - 1', '        - 2'])
  t.same(emitYaml('scalar'), ['"scalar"'])
})

// Perl's TAP::Parser::YAMLish (prove, TAP::Harness 3.44) reads `- "WORD: ..."` as a mapping and dies
// on the quote ("does not support multi-line quoted scalars"); the colon is written \x3a there.
t.test('sequence items that look like "KEY: ..." are YAMLish-safe and read back the same in YAML', async t => {
  const v = { failures: ['BHI_DIS_S: CTRL.BHB_CLEAR_SEQ_S_USED set, nothing forced', 'plain item', 'a: b', 'x', 'has: two: colons'] }
  const lines = emitYaml(v)
  t.same(lines.slice(1), ['  - "BHI_DIS_S\\x3a CTRL.BHB_CLEAR_SEQ_S_USED set, nothing forced"', '  - "plain item"', '  - "a\\x3a b"', '  - "x"', '  - "has\\x3a two\\x3a colons"'])
  t.same(parse(lines.join('\n')), v, 'YAML reads the same strings')
  t.same(emitYaml({ k: 'KEY: value' }), ['k: "KEY: value"'], 'mapping values need no escaping')
})
