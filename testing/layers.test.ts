// The import direction (DESIGN.md layers; issue 13): contract -> guest -> host -> bin, each layer
// importing only itself and the layers before it, and no import circles. bin/lib/ (the output
// library: TAP, CLI errors, colour, version) sits below everything and imports nothing of the
// project. Tests, test support (testing/), benchmarks (bench/) and generators (scripts/) may import
// anything; production code never imports them.
import t from 'tap'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const RANK: Record<string, number> = { 'bin/lib': 0, contract: 1, guest: 2, host: 3, bin: 4 }
const HARNESS = ['testing', 'bench', 'scripts']

/** The layer of a repository path, or 'harness' / undefined (outside the source tree). */
function layerOf(rel: string): string | undefined {
  if (rel.startsWith('bin/lib/')) return 'bin/lib'
  const top = rel.split('/')[0]!
  if (top in RANK) return top
  return HARNESS.includes(top) ? 'harness' : undefined
}

const isTest = (rel: string) => /\.test\.ts$/.test(rel)

function sources(dir: string): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir).flatMap(n => {
    const p = join(dir, n)
    return statSync(p).isDirectory() ? sources(p) : /\.(ts|mts|mjs)$/.test(n) && !/\.d\.mts$/.test(n) ? [p] : []
  })
}

/** Relative import specifiers of a file: static, type-only, re-exports, side-effect and dynamic imports. */
export function importsOf(text: string): string[] {
  const code = text.replace(/^\s*\/\/.*$/gm, '')
  return [...code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm)].map(m => m[1]!)
}

function resolveImport(fromRel: string, spec: string): string {
  const abs = resolve(ROOT, dirname(fromRel), spec)
  const ts = abs.replace(/\.js$/, '.ts')
  return relative(ROOT, existsSync(ts) ? ts : abs)
}

/** Imports that point the wrong way: [importer, imported, why]. */
export function violations(edges: readonly [string, string][]): string[] {
  const out: string[] = []
  for (const [a, b] of edges) {
    if (isTest(a) || layerOf(a) === 'harness' || layerOf(a) === undefined) continue
    const la = layerOf(a)!, lb = layerOf(b)
    if (lb === 'harness') out.push(`${a} -> ${b}: production code imports test support / harness`)
    else if (lb !== undefined && RANK[lb]! > RANK[la]!) out.push(`${a} (${la}) -> ${b} (${lb}): points up`)
    else if (isTest(b)) out.push(`${a} -> ${b}: production code imports a test`)
  }
  return out
}

/** Strongly connected components with more than one file (import circles), over production files. */
export function circles(edges: readonly [string, string][]): string[][] {
  const prod = (f: string) => !isTest(f) && layerOf(f) !== 'harness' && layerOf(f) !== undefined
  const g = new Map<string, string[]>()
  for (const [a, b] of edges) if (prod(a) && prod(b)) g.set(a, [...(g.get(a) ?? []), b])
  let index = 0
  const idx = new Map<string, number>(), low = new Map<string, number>(), on = new Set<string>(), stack: string[] = [], out: string[][] = []
  const visit = (v: string): void => {
    idx.set(v, index); low.set(v, index); index++; stack.push(v); on.add(v)
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)) } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!))
    }
    if (low.get(v) === idx.get(v)) {
      const c: string[] = []
      let w: string
      do { w = stack.pop()!; on.delete(w); c.push(w) } while (w !== v)
      if (c.length > 1) out.push(c.sort())
    }
  }
  for (const v of g.keys()) if (!idx.has(v)) visit(v)
  return out
}

const files = [...Object.keys(RANK).filter(k => k !== 'bin/lib'), ...HARNESS].flatMap(d => sources(join(ROOT, d))).map(f => relative(ROOT, f))
const edges: [string, string][] = files.flatMap(f => importsOf(readFileSync(join(ROOT, f), 'utf8')).map(s => [f, resolveImport(f, s)] as [string, string]))

t.test('the checker itself catches each kind of wrong import and a circle', async t => {
  t.same(importsOf("import type { A } from '../guest/platform.js'\nexport { b } from './b.js'\nconst m = await import('../host/x.js')\nimport './side.js'\n// import x from '../nope.js'"),
    ['../guest/platform.js', './b.js', '../host/x.js', './side.js'])
  t.equal(violations([['contract/a.ts', 'guest/platform.ts']]).length, 1, 'contract -> guest')
  t.equal(violations([['guest/a.ts', 'host/b.ts']]).length, 1, 'guest -> host')
  t.equal(violations([['bin/lib/tap.ts', 'contract/bits.ts']]).length, 1, 'bin/lib -> contract')
  // bin/lib is the shared bottom layer: it imports nothing of contract/guest/host/bin, anyone imports it.
  t.equal(violations([['bin/lib/tap.ts', 'bin/commands.ts'], ['bin/lib/cli.ts', 'guest/platform.ts'], ['bin/lib/color.ts', 'host/x.ts']]).length, 3, 'bin/lib -> bin, guest, host')
  t.same(violations([['contract/a.ts', 'bin/lib/tap.ts'], ['guest/a.ts', 'bin/lib/cli.ts'], ['host/a.ts', 'bin/lib/escape.ts'], ['bin/lib/tap.ts', 'bin/lib/escape.ts']]), [], 'every layer may import bin/lib, and bin/lib itself')
  t.equal(violations([['guest/a.ts', 'testing/fake-platform.ts']]).length, 1, 'production -> test support')
  t.same(violations([['host/a.ts', 'guest/b.ts'], ['guest/a.test.ts', 'host/b.ts'], ['testing/x.ts', 'host/y.ts'], ['bin/virtmiti.ts', 'host/z.ts']]), [], 'downward, tests and harness allowed')
  t.same(circles([['contract/a.ts', 'contract/b.ts'], ['contract/b.ts', 'contract/a.ts'], ['contract/c.ts', 'contract/a.ts']]), [['contract/a.ts', 'contract/b.ts']])
})

t.test('every production import points down: contract -> guest -> host -> bin (bin/lib below all)', async t => {
  t.ok(files.length > 100, `${files.length} files scanned`)
  t.ok(edges.length > 300, `${edges.length} imports scanned`)
  t.same(violations(edges), [])
})

t.test('no import circles among production files', async t => {
  t.same(circles(edges), [])
})
