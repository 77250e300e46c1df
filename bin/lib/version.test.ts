// VERSION must equal package.json "version": the bundle carries no package.json (bin/lib/version.ts).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { VERSION } from './version.js'

t.test('VERSION equals package.json version', async t => {
  const pkg = JSON.parse(readFileSync(join(fileURLToPath(import.meta.url), '..', '..', '..', 'package.json'), 'utf8'))
  t.equal(VERSION, pkg.version)
  t.match(VERSION, /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/, 'semver')
})
