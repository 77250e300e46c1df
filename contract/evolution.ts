// How a v1 document may grow (contract/EVOLUTION.md, issue 13): a reader of version N accepts a
// document of a later v1 revision by ignoring the fields it does not know, after validating every
// field it does know as strictly as before. Anything else changes the major version. Pure.
import type { z } from 'zod'

/** Keys never ignored: they would be dangerous if a later step merged the object (prototype pollution). */
const NEVER_IGNORED = new Set(['__proto__', 'constructor', 'prototype'])

export type GrowingParse<T> = { success: true; data: T; ignored: string[] } | { success: false; error: z.ZodError }

/**
 * Parse `json` (a JSON.parse result: plain objects and arrays) with a strict schema, ignoring
 * unknown fields: when the only issues are unknown keys, those keys are removed (from a copy of
 * their objects) and the document is parsed again. Known fields keep every check; the ignored
 * field paths are returned so that a reader can say what it skipped.
 */
export function parseGrowing<T>(schema: z.ZodType<T>, json: unknown, maxIgnored = 256): GrowingParse<T> {
  const first = schema.safeParse(json)
  if (first.success) return { success: true, data: first.data, ignored: [] }
  const issues = first.error.issues
  if (!issues.every(i => i.code === 'unrecognized_keys' && i.keys.every(k => !NEVER_IGNORED.has(k)))) return { success: false, error: first.error }
  const drop = issues.flatMap(i => (i.code === 'unrecognized_keys' ? i.keys.map(k => ({ path: i.path, key: k })) : []))
  if (drop.length > maxIgnored) return { success: false, error: first.error }
  const copy = structuredClone(json) as Record<PropertyKey, unknown>
  const ignored: string[] = []
  for (const { path, key } of drop) {
    let node: unknown = copy
    for (const p of path) node = node !== null && typeof node === 'object' ? (node as Record<PropertyKey, unknown>)[p as PropertyKey] : undefined
    if (node === null || typeof node !== 'object' || !Object.prototype.hasOwnProperty.call(node, key)) return { success: false, error: first.error }
    delete (node as Record<string, unknown>)[key]
    ignored.push([...path.map(String), key].join('.'))
  }
  const second = schema.safeParse(copy)
  return second.success ? { success: true, data: second.data, ignored } : { success: false, error: second.error }
}
