// Types for bench/fake-tree.mjs (plain JS so that bench/ runs without a TypeScript loader).
export interface FakeModel {
  cpuid: Record<string, [number, number, number, number] | number[]>
  msr: Record<number, bigint>
  spectreV2?: string
  cmdline?: string
  release?: string
}
export const SPR_VIRT: FakeModel
export function buildTree(root: string, ncpus: number, model?: FakeModel, opts?: {
  msrFile?: boolean
  online?: boolean
  perCpu?: (n: number, model: FakeModel) => FakeModel
}): string
