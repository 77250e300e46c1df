// Types of build.mjs (plain JavaScript, run by node directly) for the TypeScript tests.
export interface GuestBundleResult { outfile: string; bytes: number; inputs: number; packages: string[]; lazy: string[] }
export function buildGuestBundle(opts?: { entry?: string; outfile?: string }): Promise<GuestBundleResult>
