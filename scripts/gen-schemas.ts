// Publish the JSON documents' zod schemas as JSON Schema (DESIGN.md conventions: "versioned schema,
// published as JSON Schema") into contract/schemas/, with z.toJSONSchema (zod 4).
// contract/schemas/schemas.test.ts regenerates them in memory and fails when a committed file differs.
//
// Run (`make schemas`): npx esbuild scripts/gen-schemas.ts --bundle --platform=node --format=esm \
//        --packages=external --outfile=.cache/gen-schemas.mjs && node .cache/gen-schemas.mjs [OUTDIR]
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { z } from 'zod'
import { FactsJson } from '../contract/facts-schema.js'
import { FACTS_SCHEMA_ID } from '../contract/facts-json.js'
import { ProbeJson } from '../contract/probe-schema.js'
import { PROBE_SCHEMA_ID } from '../contract/probe-json.js'
import { GuestReport, REPORT_SCHEMA_ID } from '../contract/report-json.js'
import { HostCapsJson, HOST_CAPS_SCHEMA_ID } from '../contract/host-caps.js'
import { vmmStateJsonSchema } from '../contract/vmm-state-json.js'
import { scenarioJsonSchema } from '../contract/scenario.js'
import { cpuModelJsonSchema } from '../contract/cpu-model-json.js'
import { CHECK_RESULT_SCHEMA_ID, CheckResultJson, EXPECT_SCHEMA_ID, ExpectJson } from '../contract/host-output-schemas.js'
import { vmmJsonSchema } from '../contract/vmm-definition.js'
import { SCENARIO_RUN_SCHEMA_ID, ScenarioRunJson, VMM_RUN_SCHEMA_ID, VmmRunJson } from '../contract/run-output-schemas.js'

/** File name -> [zod schema, document id, title]. The id is the document's own "schema" field. */
const SCHEMAS: Record<string, [z.ZodType, string, string]> = {
  'facts.schema.json': [FactsJson, FACTS_SCHEMA_ID, 'virtmiti facts file (guest probe --record / --replay)'],
  'probe.schema.json': [ProbeJson, PROBE_SCHEMA_ID, 'virtmiti guest probe --json'],
  'guest-report.schema.json': [GuestReport, REPORT_SCHEMA_ID, 'virtmiti guest report (read by host check)'],
  'host-caps.schema.json': [HostCapsJson, HOST_CAPS_SCHEMA_ID, 'virtmiti host caps --json (read by host check --host-caps)'],
  'expect.schema.json': [ExpectJson, EXPECT_SCHEMA_ID, 'virtmiti host expect --json'],
  'check-result.schema.json': [CheckResultJson, CHECK_RESULT_SCHEMA_ID, 'virtmiti host check --json'],
  'vmm-run.schema.json': [VmmRunJson, VMM_RUN_SCHEMA_ID, 'virtmiti host vmm run --json'],
  'scenario-run.schema.json': [ScenarioRunJson, SCENARIO_RUN_SCHEMA_ID, 'virtmiti scenarios run --json'],
}

/** "$id" of a generated schema, in the form the hand-built ones use (contract/vmm-state-json.ts). */
const idOf = (docId: string) => `https://virtmiti.invalid/schema/${docId.replace(/^virtmiti\//, '')}.json`

/** Schemas whose owners already add $id/title (and YAML-specific fixes): published as they give them. */
const PREBUILT: Record<string, () => unknown> = {
  'vmm-state.schema.json': vmmStateJsonSchema,
  'scenario.schema.json': scenarioJsonSchema,
  'cpu-model.schema.json': cpuModelJsonSchema,
  'vmm.schema.json': vmmJsonSchema,
}

/** The JSON Schema files as text, keyed by file name. Deterministic: same zod schemas, same bytes. */
export function schemaFiles(): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [file, [schema, id, title]] of Object.entries(SCHEMAS)) {
    const js = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input' }) as Record<string, unknown>
    const { $schema, ...rest } = js
    out[file] = JSON.stringify({ $id: idOf(id), $schema, title, description: `JSON Schema of the document whose "schema" field is "${id}". Generated from the zod schema by scripts/gen-schemas.ts; do not edit.`, ...rest }, null, 2) + '\n'
  }
  for (const [file, make] of Object.entries(PREBUILT)) out[file] = JSON.stringify(make(), null, 2) + '\n'
  return out
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const dir = resolve(process.argv[2] ?? join('contract', 'schemas'))
  mkdirSync(dir, { recursive: true })
  for (const [file, text] of Object.entries(schemaFiles())) {
    writeFileSync(join(dir, file), text)
    process.stdout.write(`wrote ${join(dir, file)}\n`)
  }
}
