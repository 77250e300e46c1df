// CPU model catalog (issue 6) and replay fixtures (issue 2): the catalog loads, bad files give
// file:line:column errors, the cited facts hold, and every fixture is valid Facts JSON that the
// generator reproduces byte for byte.
import t from 'tap'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cpuModelFromDoc, cpuModelJsonSchema, pathString } from './cpu-model-json.js'
import { cpuidLeaves, type CpuModel } from './cpu-model.js'
import { factsFromJson } from './facts-json.js'
import { FactsJson } from './facts-schema.js'
import { decode } from './bits.js'
import { ARCH_CAPABILITIES, CPUID_7_0_EDX, CPUID_7_2_EDX } from './registers.js'
import { loadCpuCatalog, loadCpuFile, parseCpuModel, formatCatalogError, type CatalogError } from '../host/runner/cpus.js'
import { buildFixtures, expectedText, fixtureText, generate, spectreV2Line, FIXTURE_MODELS } from '../scripts/gen-fixtures.js'

const root = join(fileURLToPath(import.meta.url), '..', '..')
const cpusDir = join(root, 'scenarios', 'cpus')
const fixturesDir = join(root, 'guest', 'fixtures')
const catalog = loadCpuCatalog(cpusDir)

const model = (id: string): CpuModel => {
  const m = catalog.models.get(id)
  if (!m) throw new Error(`catalog lacks ${id}`)
  return m
}
const cap = (id: string) => { const v = model(id).archCapabilities; return v === null ? null : decode(ARCH_CAPABILITIES, v) }
const leaf7 = (id: string) => decode(CPUID_7_0_EDX, BigInt(model(id).cpuid7_0_edx))
const leaf72 = (id: string) => decode(CPUID_7_2_EDX, BigInt(model(id).cpuid7_2_edx))

t.test('every catalog file loads without errors', async t => {
  t.same(catalog.errors.map(formatCatalogError), [], 'no errors')
  const files = readdirSync(cpusDir).filter(n => n.endsWith('.yaml'))
  t.equal(catalog.models.size, files.length, 'one model per file')
  for (const id of ['skylake-sp', 'cascade-lake', 'ice-lake-sp', 'sapphire-rapids', 'emerald-rapids', 'granite-rapids',
    'sierra-forest', 'alder-lake', 'zen3-milan', 'zen4-genoa']) t.ok(catalog.models.has(id), `issue 6 model ${id} present`)
  for (const m of catalog.models.values()) {
    for (const k of ['family_model', 'cpuid7_0_edx', 'cpuid7_2_edx', 'arch_capabilities']) t.ok(m.sources[k], `${m.id} cites ${k}`)
  }
})

t.test('cited facts per model (a wrong data edit fails here)', async t => {
  // Skylake-SP: no eIBRS, no ARCH_CAPABILITIES modelled, no BHI_CTRL (skylake-sp.yaml sources).
  t.equal(model('skylake-sp').model, 0x55)
  t.ok(model('skylake-sp').stepping <= 5, 'Skylake-SP steppings are <= 5 (Xen mds_calculations)')
  t.equal(cap('skylake-sp'), null, 'skylake-sp has no ARCH_CAPABILITIES, so no IBRS_ALL')
  t.notOk(leaf7('skylake-sp').includes('ARCH_CAPABILITIES'))
  t.same(leaf72('skylake-sp'), [])
  // Cascade Lake: same model number, eIBRS.
  t.equal(model('cascade-lake').model, 0x55)
  t.ok(model('cascade-lake').stepping >= 6, 'Cascade Lake steppings are >= 6')
  t.ok(cap('cascade-lake')!.includes('IBRS_ALL'), 'cascade-lake has IBRS_ALL (QEMU Cascadelake-Server-v2 ibrs-all)')
  t.notOk(leaf72('cascade-lake').includes('BHI_CTRL'))
  // Ice Lake-SP: eIBRS, and not RRSBA (Andrew Cooper: ICX non-RRSBA).
  t.equal(model('ice-lake-sp').model, 0x6a)
  t.ok(cap('ice-lake-sp')!.includes('IBRS_ALL'))
  t.notOk(cap('ice-lake-sp')!.includes('RRSBA'), 'ice-lake-sp is non-RRSBA')
  t.notOk(leaf72('ice-lake-sp').includes('RRSBA_CTRL'))
  // Sapphire / Emerald / Granite Rapids, Alder Lake: BHI_CTRL and RRSBA_CTRL.
  for (const id of ['sapphire-rapids', 'emerald-rapids', 'granite-rapids', 'alder-lake']) {
    t.ok(leaf72(id).includes('BHI_CTRL'), `${id} has BHI_CTRL`)
    t.ok(leaf72(id).includes('RRSBA_CTRL'), `${id} has RRSBA_CTRL`)
    t.ok(cap(id)!.includes('IBRS_ALL'), `${id} has eIBRS`)
    t.notOk(cap(id)!.includes('BHI_NO'), `${id} is not BHI_NO`)
  }
  t.same([model('sapphire-rapids').model, model('emerald-rapids').model, model('granite-rapids').model, model('alder-lake').model], [0x8f, 0xcf, 0xad, 0x97])
  t.ok(cap('granite-rapids')!.includes('PBRSB_NO'), 'granite-rapids has PBRSB_NO (QEMU pbrsb-no)')
  t.notOk(cap('sapphire-rapids')!.includes('PBRSB_NO'), 'sapphire-rapids lacks PBRSB_NO (QEMU has no pbrsb-no)')
  // Sierra Forest: not BHI_NO per QEMU; Clearwater Forest is.
  t.equal(model('sierra-forest').model, 0xaf)
  t.notOk(cap('sierra-forest')!.includes('BHI_NO'), 'sierra-forest is not BHI_NO')
  t.ok(leaf72('sierra-forest').includes('BHI_CTRL'), 'sierra-forest has BHI_CTRL (QEMU SierraForest-v2)')
  t.equal(model('clearwater-forest').model, 0xdd)
  t.ok(cap('clearwater-forest')!.includes('BHI_NO'), 'clearwater-forest is BHI_NO')
  // AMD: vendor, family 0x19, nothing in leaf 7 EDX that the contract reads, no ARCH_CAPABILITIES.
  for (const [id, m] of [['zen3-milan', 0x01], ['zen4-genoa', 0x11]] as const) {
    t.equal(model(id).vendor, 'AuthenticAMD', `${id} vendor`)
    t.equal(model(id).family, 0x19, `${id} family`)
    t.equal(model(id).model, m, `${id} model`)
    t.equal(model(id).archCapabilities, null, `${id} has no ARCH_CAPABILITIES`)
    t.equal(model(id).cpuid7_0_edx, 0, `${id} leaf 7 EDX`)
  }
})

t.test('catalog values become the CPUID words the contract reads', async t => {
  const spr = cpuidLeaves({ model: model('sapphire-rapids'), hypervisor: false, archCapabilities: model('sapphire-rapids').archCapabilities })
  t.equal(spr['0x1.0']!.eax, 0x806f8, 'signature family 6 model 0x8f stepping 8')
  t.equal(spr['0x7.0']!.edx, 0xac000000, 'SPEC_CTRL|STIBP|ARCH_CAPABILITIES|SSBD = bits 26,27,29,31')
  t.equal(spr['0x7.2']!.edx, 0x17, 'PSFD|IPRED_CTRL|RRSBA_CTRL|BHI_CTRL = bits 0,1,2,4')
  t.equal(model('clearwater-forest').archCapabilities! & (1n << 20n), 1n << 20n, 'BHI_NO is bit 20')
  const milan = cpuidLeaves({ model: model('zen3-milan'), hypervisor: false, archCapabilities: null })
  t.equal(milan['0x1.0']!.eax, 0xa00f11, 'signature family 0x19 model 0x01 stepping 1 (extended family 0xa)')
})

const good = `id: bad
name: A test model
vendor: GenuineIntel
family: 6
model: 0x8f
stepping: 8
cpuid7_0_edx: [SPEC_CTRL, ARCH_CAPABILITIES]
cpuid7_2_edx: [BHI_CTRL]
arch_capabilities: [IBRS_ALL, bit 63]
sources:
  family_model: a
  cpuid7_0_edx: b
  cpuid7_2_edx: c
  arch_capabilities: d
`
const errs = (text: string): CatalogError[] => { const r = parseCpuModel(text, 'scenarios/cpus/bad.yaml'); return r.ok ? [] : r.errors }

t.test('a well-formed file parses, with "bit N" names and 64-bit ARCH_CAPABILITIES', async t => {
  const r = parseCpuModel(good, 'x/bad.yaml')
  t.ok(r.ok)
  if (r.ok) {
    t.equal(r.model.archCapabilities, (1n << 63n) | 2n)
    t.equal(r.model.cpuid7_2_edx, 0x10)
  }
})

t.test('unknown key is reported at its line:column with the allowed fields', async t => {
  const e = errs(good.replace('stepping: 8\n', 'stepping: 8\ncolour: blue\n'))
  t.equal(e.length, 1)
  t.match(formatCatalogError(e[0]!), /^scenarios\/cpus\/bad\.yaml:7:1: colour: unknown field "colour" \(expected one of id, name, /)
  const s = errs(good.replace('  arch_capabilities: d\n', '  arch_capabilities: d\n  rrsba: e\n'))
  t.equal(formatCatalogError(s[0]!).split(': ').slice(0, 2).join(': '), 'scenarios/cpus/bad.yaml:15:3: sources.rrsba')
})

t.test('a bad bit name is reported at the list item, naming the register and the expected names', async t => {
  const e = errs(good.replace('[BHI_CTRL]', '[PSFD, BHI_CTL]'))
  t.equal(e.length, 1)
  t.equal(`${e[0]!.line}:${e[0]!.column}`, '8:22')
  t.equal(e[0]!.field, 'cpuid7_2_edx[1]')
  t.match(e[0]!.message, /CPUID\.\(7,2\):EDX bit name \(PSFD, IPRED_CTRL, RRSBA_CTRL, DDPD_U, BHI_CTRL, MCDT_NO\) or "bit N" with N < 32/)
  t.match(errs(good.replace('[BHI_CTRL]', '[bit 40]'))[0]!.message, /N < 32/, 'CPUID words stop at bit 31')
  t.match(errs(good.replace('[BHI_CTRL]', '[BHI_CTRL, BHI_CTRL]'))[0]!.message, /at most once/)
})

t.test('a missing field is named, with what was expected', async t => {
  const e = errs(good.replace('cpuid7_2_edx: [BHI_CTRL]\n', ''))
  t.equal(e.length, 1)
  t.equal(e[0]!.field, 'cpuid7_2_edx')
  t.equal(`${e[0]!.line}:${e[0]!.column}`, '1:1', 'points at the document')
  t.match(e[0]!.message, /^missing required field \(expected array\)/)
  const s = errs(good.replace('  cpuid7_0_edx: b\n', ''))
  t.equal(s[0]!.field, 'sources.cpuid7_0_edx')
  t.equal(`${s[0]!.line}:${s[0]!.column}`, '11:3', 'points at the sources map')
})

t.test('other mistakes: out-of-range model, id mismatch, MSR vs CPUID disagreement, YAML syntax', async t => {
  const big = errs(good.replace('model: 0x8f', 'model: 0x1ff'))
  t.equal(`${big[0]!.line}:${big[0]!.column} ${big[0]!.field}`, '5:8 model')
  t.match(big[0]!.message, /<= 255/)
  const id = errs(good.replace('id: bad', 'id: other'))
  t.equal(id[0]!.field, 'id')
  t.match(id[0]!.message, /expected "bad"/)
  const msr = errs(good.replace('[SPEC_CTRL, ARCH_CAPABILITIES]', '[SPEC_CTRL]'))
  t.equal(`${msr[0]!.line}:${msr[0]!.column} ${msr[0]!.field}`, '9:20 arch_capabilities')
  t.match(msr[0]!.message, /expected null/)
  const vendor = errs(good.replace('GenuineIntel', 'Intel'))
  t.match(vendor[0]!.message, /expected one of "GenuineIntel", "AuthenticAMD"/)
  const syntax = errs(good.replace('name: A test model', 'name: [unclosed'))
  t.equal(syntax[0]!.field, '(document)')
  t.match(syntax[0]!.message, /^YAML syntax:/)
  t.equal(errs(good + 'id: dup\n')[0]!.field, '(document)', 'duplicate keys are a YAML error')
})

t.test('cpuModelFromDoc is pure and rejects non-objects', async t => {
  const r = cpuModelFromDoc('not a map', 'x')
  t.notOk(r.ok)
  if (!r.ok) t.equal(pathString(r.errors[0]!.path), '(document)')
  t.equal(pathString(['a', 3, 'b']), 'a[3].b')
  const schema = cpuModelJsonSchema() as { properties: Record<string, unknown>; additionalProperties: boolean }
  t.ok(schema.properties['arch_capabilities'], 'JSON Schema names arch_capabilities')
  t.equal(schema.additionalProperties, false, 'JSON Schema is strict')
})

t.test('a missing catalog directory or file is an error, not an exception', async t => {
  const r = loadCpuCatalog(join(root, 'no-such-dir'))
  t.equal(r.errors[0]!.field, '(directory)')
  const f = loadCpuFile(join(root, 'no-such-file.yaml'))
  t.notOk(f.ok)
  if (!f.ok) t.equal(`${f.errors[0]!.line}:${f.errors[0]!.column} ${f.errors[0]!.field}`, '1:1 (file)')
})

const fixtureFiles = readdirSync(fixturesDir).filter(n => n.endsWith('.json') && n !== 'expected.json').sort()
const expected = JSON.parse(readFileSync(join(fixturesDir, 'expected.json'), 'utf8')) as Record<string, { mitiCtrl: string | null; enumerated: boolean; hypervisor: boolean; bhi: string }>

t.test('each fixture validates against FactsJson and converts to Facts', async t => {
  t.ok(fixtureFiles.length >= 18, `${fixtureFiles.length} fixtures`)
  for (const id of FIXTURE_MODELS.slice(0, 6)) {
    for (const v of ['baremetal', 'guest-enum', 'guest-noenum']) t.ok(fixtureFiles.includes(`${id}-${v}.json`), `${id}-${v}.json exists`)
  }
  for (const f of fixtureFiles) {
    const r = FactsJson.safeParse(JSON.parse(readFileSync(join(fixturesDir, f), 'utf8')))
    t.ok(r.success, `${f} is valid Facts JSON${r.success ? '' : ': ' + r.error.message}`)
    if (r.success) t.equal(factsFromJson(r.data).cpus.length, 2, `${f} has 2 CPUs`)
  }
})

t.test('fixtures follow the discovery chain (contract/CONTRACT.md section 3)', async t => {
  for (const f of fixtureFiles) {
    const facts = factsFromJson(FactsJson.parse(JSON.parse(readFileSync(join(fixturesDir, f), 'utf8'))))
    const c = facts.cpus[0]!
    const leaf1 = c.cpuid['0x1.0']!
    const hv = 'regs' in leaf1 && (leaf1.regs.ecx >>> 31) === 1
    const archCap = c.msr['0x10a']!
    const bit63 = 'value' in archCap && (archCap.value >> 63n) === 1n
    const e = expected[f]!
    t.equal(hv, e.hypervisor, `${f}: hypervisor bit`)
    t.equal(bit63, e.enumerated, `${f}: ARCH_CAP bit 63`)
    for (const idx of ['0x50000000', '0x50000001', '0x50000002']) {
      const m = c.msr[idx]!
      if (bit63) t.ok('value' in m, `${f}: ${idx} read because bit 63 is set`)
      else t.ok('skipped' in m, `${f}: ${idx} not probed without bit 63`)
    }
    if (bit63) t.same(['0x50000000', '0x50000001', '0x50000002'].map(i => { const m = c.msr[i]!; return 'value' in m ? m.value : -1n }), [1n, 3n, 0n], `${f}: virtual MSR values`)
    if (f.includes('baremetal')) t.notOk(bit63, `${f}: bare metal never enumerates`)
  }
})

t.test('committed fixtures and expected.json match the generator (regenerate with scripts/gen-fixtures.ts)', async t => {
  const built = buildFixtures(catalog.models)
  t.same(built.map(b => b.file).sort(), fixtureFiles, 'same file set')
  for (const b of built) t.equal(readFileSync(join(fixturesDir, b.file), 'utf8'), fixtureText(b.json), `${b.file} is up to date`)
  t.equal(readFileSync(join(fixturesDir, 'expected.json'), 'utf8'), expectedText(built), 'expected.json is up to date')
  // The script's own write path produces the same bytes.
  const out = mkdtempSync(join(tmpdir(), 'virtmiti-fixtures-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const g = generate(root, out)
  t.same(g.errors, [])
  t.equal(g.written, fixtureFiles.length + 1, 'fixtures plus expected.json written')
  for (const f of [...fixtureFiles, 'expected.json']) t.equal(readFileSync(join(out, f), 'utf8'), readFileSync(join(fixturesDir, f), 'utf8'), `generated ${f} equals the committed one`)
  t.match(generate(join(root, 'no-such-root'), out).errors[0], /\(directory\): cannot list/, 'a missing catalog is reported, nothing thrown')
})

t.test('expected agent decisions for the fixtures (contract/CONTRACT.md section 4)', async t => {
  const ctrl = Object.fromEntries(Object.entries(expected).map(([f, e]) => [f, e.mitiCtrl]))
  t.equal(ctrl['skylake-sp-guest-enum.json'], '0x1', 'Skylake guest on the SW loop reports BHB_CLEAR_SEQ_S_USED')
  t.equal(ctrl['skylake-sp-guest-enum-retpoline.json'], '0x2', 'Skylake retpoline guest reports RETPOLINE_S_USED only')
  t.equal(ctrl['cascade-lake-guest-enum.json'], '0x1')
  t.equal(ctrl['ice-lake-sp-guest-enum.json'], '0x1')
  t.equal(ctrl['sapphire-rapids-guest-enum.json'], '0x0', 'BHI_DIS_S guest reports nothing')
  t.equal(ctrl['granite-rapids-guest-enum.json'], '0x0')
  t.equal(ctrl['zen3-milan-guest-enum.json'], '0x2', 'AMD retpoline guest reports RETPOLINE_S_USED')
  t.equal(ctrl['clearwater-forest-guest-enum.json'], '0x0', 'BHI_NO guest on 6.12: BHI not affected')
  for (const [f, e] of Object.entries(expected)) if (!e.enumerated) t.equal(e.mitiCtrl, null, `${f}: no write without enumeration`)
})

t.test('spectre_v2 derivation reproduces the line measured on QEMU TCG (KVM-NOTES.md)', async t => {
  // QEMU -cpu Icelake-Server under TCG drops spec-ctrl, ssbd, arch-capabilities; the Debian kernel printed
  // "Mitigation: Retpolines; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Retpoline".
  const icx = model('ice-lake-sp')
  const tcg: CpuModel = { ...icx, cpuid7_0_edx: 0, cpuid7_2_edx: 0, archCapabilities: null }
  t.equal(spectreV2Line({ model: tcg, hypervisor: true, archCap: null, smt: false }).line,
    'Mitigation: Retpolines; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Retpoline')
  // bugs.c: a retpoline guest on an RRSBA part without RRSBA_CTRL falls back to the SW loop.
  const clx = model('cascade-lake')
  const noEibrs = clx.archCapabilities! & ~2n
  t.equal(spectreV2Line({ model: clx, hypervisor: true, archCap: noEibrs, smt: true, spectreV2: 'retpoline' }).bhi, 'SW loop, KVM: SW loop')
  // With RRSBA_CTRL the kernel sets RRSBA_DIS_S and keeps "BHI: Retpoline".
  const spr = model('sapphire-rapids')
  t.equal(spectreV2Line({ model: spr, hypervisor: true, archCap: spr.archCapabilities! & ~2n, smt: true, spectreV2: 'retpoline' }).bhi, 'Retpoline')
})
