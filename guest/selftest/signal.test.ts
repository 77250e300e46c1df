import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { tmpdir } from 'node:os'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const HERE = dirname(fileURLToPath(import.meta.url))
const tmp = mkdtempSync(join(tmpdir(), 'virtmiti-signal-'))
t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
const child = join(tmp, 'signal-child.mjs')

t.before(async () => {
  await build({ entryPoints: [join(HERE, '..', '..', 'testing', 'signal-child.ts')], outfile: child, bundle: true, platform: 'node', format: 'esm', target: 'node18', logLevel: 'warning' })
})

for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  t.test(`a real ${sig} during selftest: every value restored, exit ${code}`, async t => {
    const r = spawnSync(process.execPath, [child, sig], { encoding: 'utf8', timeout: 30_000 })
    t.equal(r.status, code, r.stderr)
    const last = JSON.parse(r.stdout.trim().split('\n').pop()!)
    t.same(last, { code, ctrl: ['3', '1'], shadow: ['0', '0'] }, 'CTRL back to 3 and 1; SPEC_CTRL shadow untouched')
    t.match(r.stderr, new RegExp(`interrupted by ${sig}: restored 2 value\\(s\\)`))
    t.notMatch(r.stdout, /not interrupted/)
  })
}
