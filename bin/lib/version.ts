// Kept equal to package.json "version" by bin/lib/version.test.ts (the bundle carries no package.json).
export const VERSION = '0.1.0'
