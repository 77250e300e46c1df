// Recorded live-guest boots (host/qemu/testdata/boots/*.json) as the Section map checks.ts
// takes: for tests of the checks and of the tier without booting anything.
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Section } from './frames.js'

export interface RecordedBoot {
  source: string
  cpu: string
  append: string[]
  accel: 'tcg' | 'kvm'
  vcpus: number
  guestDoneS?: number
  sections: Record<string, { exit: number; output: string; stderr?: string }>
}

export const recordedBootPath = (name: string): string => fileURLToPath(new URL(`./testdata/boots/${name}.json`, import.meta.url))

export function loadRecordedBoot(name: string): RecordedBoot {
  return JSON.parse(fs.readFileSync(recordedBootPath(name), 'utf8')) as RecordedBoot
}

/** The recorded sections as frames.ts would have parsed them (raw = UTF-8 of the output). */
export function sectionMap(b: Pick<RecordedBoot, 'sections'>): Map<string, Section> {
  return new Map(Object.entries(b.sections).map(([name, s]) => [name, { name, exit: s.exit, output: s.output, raw: new TextEncoder().encode(s.output), stderr: s.stderr ?? '' }]))
}
