// The published JSON Schemas (contract/schemas/*.schema.json) equal what scripts/gen-schemas.ts
// generates from the zod schemas now, so they never drift (regenerate with `make schemas`), and
// they are usable: read back as a validator (z.fromJSONSchema) they accept every replay fixture and
// a probe document, and refuse a wrong value.
import t from 'tap'
import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { schemaFiles } from '../../scripts/gen-schemas.js'
import { main } from '../../guest/cli/probe.js'

const here = join(fileURLToPath(import.meta.url), '..')
const fixtures = join(here, '..', '..', 'guest', 'fixtures')
const generated = schemaFiles()

t.test('committed JSON Schemas equal the generated ones (run `make schemas` after changing a zod schema)', async t => {
  t.same(Object.keys(generated).sort(), ['cpu-model.schema.json', 'facts.schema.json', 'guest-report.schema.json', 'host-caps.schema.json', 'probe.schema.json', 'scenario.schema.json', 'vmm-state.schema.json', 'vmm.schema.json'])
  const committed = readdirSync(here).filter(f => f.endsWith('.schema.json')).sort()
  t.same(committed, Object.keys(generated).sort(), 'no stale or missing files')
  for (const [file, text] of Object.entries(generated)) {
    const path = join(here, file)
    t.equal(existsSync(path) ? readFileSync(path, 'utf8') : '(missing)', text, `${file} up to date`)
  }
})

t.test('the facts JSON Schema accepts every fixture and refuses a number where hex is expected', async t => {
  const v = z.fromJSONSchema(JSON.parse(generated['facts.schema.json']!))
  const files = existsSync(fixtures) ? readdirSync(fixtures).filter(f => f.endsWith('.json') && f !== 'expected.json') : []
  for (const f of files) {
    const doc = JSON.parse(readFileSync(join(fixtures, f), 'utf8'))
    t.ok(v.safeParse(doc).success, `${f} valid`)
  }
  if (files[0]) {
    const doc = JSON.parse(readFileSync(join(fixtures, files[0]), 'utf8'))
    doc.cpus[0].msr['0x10a'] = { value: 5 }
    t.notOk(v.safeParse(doc).success, 'MSR value as a number refused')
    doc.cpus[0].msr['0x10a'] = { value: '0x5', extra: 1 }
    t.notOk(v.safeParse(doc).success, 'unknown field refused (strict objects)')
  }
})

const probeFixture = join(fixtures, 'skylake-sp-guest-enum.json')
t.test('the probe JSON Schema accepts a real --json document', { skip: existsSync(probeFixture) ? false : 'fixture missing' }, async t => {
  const v = z.fromJSONSchema(JSON.parse(generated['probe.schema.json']!))
  const f = probeFixture
  const out: string[] = []
  await main(['--replay', f, '--json'], { io: { out: s => { out.push(s) }, err: () => {} } })
  const doc = JSON.parse(out.join(''))
  t.ok(v.safeParse(doc).success, 'valid')
  doc.status = 'fine'
  t.notOk(v.safeParse(doc).success, 'status outside the enum refused')
})
