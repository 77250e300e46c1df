// Types of systemctl-shim.mjs (plain JavaScript, run by node in the guest) for the TypeScript tests.
export const JOURNAL_DIR: string
export const UNIT_PATH: readonly string[]
export interface UnitEntry { section: string; key: string; value: string; line: number }
export function parseUnitFile(text: string): { entries: UnitEntry[]; errors: string[] }
export interface UnitNameParts { name: string; prefix: string; instance: string | undefined; type: string; template: string | undefined }
export function unitNameParts(name: string): UnitNameParts | undefined
export function unescapeUnitName(s: string): string
export function nameSpecifiers(name: string): Record<'n' | 'N' | 'p' | 'P' | 'i' | 'I' | '%', string>
export function expandSpecifiers(s: string, spec: Record<string, string>): string
export interface ExecLine { ignoreFailure: boolean; argv: string[] }
export function parseExecLine(value: string): ExecLine
export interface StartPlan {
  name: string
  conditions: { path: string; negate: boolean }[]
  runtimeDirectories: string[]
  steps: (ExecLine & { directive: 'ExecStartPre' | 'ExecStart' | 'ExecStartPost' })[]
  ignored: string[]
  errors: string[]
}
export function planStart(text: string, name: string): StartPlan
export function findUnitFile(root: string, name: string): string | undefined
export function main(argv: string[], self?: string): number
