// Document ids shared by a writer (*-json.ts, on the agent's hot path, no zod) and its schema
// (*-schema.ts, zod): both import them from here, so neither imports the other (no import circle).
export const FACTS_SCHEMA_ID = 'virtmiti/facts/v1'
export const PROBE_SCHEMA_ID = 'virtmiti/probe/v1'
export const VMM_RUN_SCHEMA_ID = 'virtmiti/vmm-run/v1'
export const SCENARIO_RUN_SCHEMA_ID = 'virtmiti/scenario-run/v1'
