#!/usr/bin/env node
// Build the self-contained guest agent: dist/virtmiti-guest.cjs (issue 4, `make bundle`).
// One CommonJS file for plain `node` (target node18: Debian 12's own nodejs), no node_modules at run
// time: zod, yaml and chalk are bundled in; koffi (host-only /dev/kvm ioctls, a native addon) must
// never be reached from the guest entry, and the build fails if it is.
//
//   node guest/bundle/build.mjs [--entry FILE] [--outfile FILE] [--quiet]
//
// Drop into a guest image: copy the output to /usr/lib/virtmiti/virtmiti-guest.cjs (needs node
// >= 18 in the image, e.g. Debian 12's `nodejs` package), then run
// `node /usr/lib/virtmiti/virtmiti-guest.cjs install-service --prefix <image root>` to add the
// systemd units and udev rule, or call `... report --out /dev/ttyS1` from an initramfs /init.
import { build } from 'esbuild'
import { builtinModules } from 'node:module'
import { statSync, chmodSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { brotliCompressSync, constants as zlibConstants } from 'node:zlib'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const FORBIDDEN = ['koffi']
/**
 * Packages embedded as a string and evaluated on first use (issue 15 item 4). zod was 85% of the
 * bundle and only `--replay` validates with it, yet node parsed all of it on every start. Kept as
 * packed text, it is only scanned. The schema modules import zod as before (one source of schemas).
 */
const LAZY = ['zod']

/**
 * Node built-ins the agent needs only on rare paths (modprobe of a missing driver, the selftest's
 * runner child, the atomic write's random name and the journal's hash), loaded at first call instead
 * of at start (issue 15 item 4): node:child_process (with net and stream) cost ~10 ms of every start
 * (node --cpu-prof of `probe`), node:crypto 15 internal modules (process.moduleLoadList). Functions
 * only: importing anything else from one of these fails the build ("No matching export").
 */
const LAZY_BUILTINS = ['node:child_process', 'node:tty', 'node:crypto']

/**
 * tty.isatty without loading node:tty (which pulls in net and stream, ~16 ms) for what surely is no
 * terminal: not a character device, or a memory device (major 1: /dev/null, /dev/zero; Linux
 * Documentation/admin-guide/devices.txt). Anything else asks the real tty.isatty. chalk's
 * supports-color calls it at start-up; the guest's stdout is a file.
 */
const TTY_OVERRIDES = `import { fstatSync as __fstat } from 'node:fs';
export function isatty(fd) {
  try { const st = __fstat(fd); if (!st.isCharacterDevice() || Math.floor(st.rdev / 256) % 4096 === 1) return false } catch { return false }
  return __get().isatty(fd)
}`

/** The virtual module standing for a LAZY_BUILTINS entry: a function per export, required on first call. */
async function lazyBuiltin(name) {
  const m = await import(name)
  const own = name === 'node:tty' ? ['isatty'] : []
  const fns = Object.keys(m).filter(k => k !== 'default' && !own.includes(k) && typeof m[k] === 'function' && /^[A-Za-z_$][\w$]*$/.test(k))
  return [
    // A non-literal require: esbuild leaves it alone (no loop through this plugin).
    `const __name = ${JSON.stringify(name)}; let __m; const __get = () => (__m ??= require(__name));`,
    ...(name === 'node:tty' ? [TTY_OVERRIDES] : []),
    ...fns.map(f => `export function ${f}(...a) { return __get().${f}(...a) }`),
    `const __own = { ${own.join(', ')} };`,
    `export default new Proxy(__own, { get: (t, k) => (k in t ? t[k] : __get()[k]), has: (t, k) => k in t || k in __get() });`,
  ].join('\n')
}

/** The virtual module standing for a LAZY package: its CommonJS bundle, run when first imported. */
async function lazyModule(pkg) {
  const r = await build({
    stdin: { contents: `module.exports = require(${JSON.stringify(pkg)})`, resolveDir: ROOT, loader: 'js' },
    bundle: true, platform: 'node', format: 'cjs', target: 'node18', minify: true, write: false, logLevel: 'warning', legalComments: 'none',
  })
  const code = r.outputFiles[0].text
  // Packed: even as a string, zod's 560 KB of source cost ~20 ms of every start (scanned with the
  // file); brotli + base64 is a quarter of that, and unpacking is paid only on first use.
  const packed = brotliCompressSync(Buffer.from(code), { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 11 } }).toString('base64')
  const names = Object.keys(await import(pkg)).filter(n => n !== 'default' && /^[A-Za-z_$][\w$]*$/.test(n))
  return [
    `const __lazy = { exports: {} };`,
    `const __code = require('node:zlib').brotliDecompressSync(Buffer.from(${JSON.stringify(packed)}, 'base64')).toString('utf8');`,
    `new Function('module', 'exports', 'require', __code)(__lazy, __lazy.exports, require);`,
    `const __m = __lazy.exports;`,
    `export const { ${names.join(', ')} } = __m;`,
    `export default ('default' in __m ? __m.default : __m);`,
  ].join('\n')
}

export async function buildGuestBundle({ entry = join(ROOT, 'bin/virtmiti-guest.ts'), outfile = join(ROOT, 'dist/virtmiti-guest.cjs') } = {}) {
  const forbidden = []
  const guard = {
    name: 'virtmiti-no-host-deps',
    setup(b) {
      // Record every import of a forbidden package, with its importer, and fail the build.
      b.onResolve({ filter: new RegExp(`^(${FORBIDDEN.join('|')})(/|$)`) }, args => {
        forbidden.push(`${args.path} imported by ${relative(ROOT, args.importer)}`)
        return { path: args.path, external: true }
      })
    },
  }
  const lazy = {
    name: 'virtmiti-lazy-packages',
    setup(b) {
      b.onResolve({ filter: new RegExp(`^(${LAZY.join('|')})(/.*)?$`) }, args => {
        if (args.path.includes('/')) return { errors: [{ text: `${args.path}: only the package root of ${LAZY.join(', ')} can be embedded lazily (imported by ${relative(ROOT, args.importer)})` }] }
        return { path: args.path, namespace: 'virtmiti-lazy' }
      })
      b.onLoad({ filter: /.*/, namespace: 'virtmiti-lazy' }, async args => ({ contents: await lazyModule(args.path), loader: 'js', resolveDir: ROOT }))
      const builtins = new RegExp(`^(${LAZY_BUILTINS.map(n => n.replace('node:', '(node:)?')).join('|')})$`)
      b.onResolve({ filter: builtins }, args => ({ path: args.path.startsWith('node:') ? args.path : `node:${args.path}`, namespace: 'virtmiti-lazy-builtin' }))
      b.onLoad({ filter: /.*/, namespace: 'virtmiti-lazy-builtin' }, async args => ({ contents: await lazyBuiltin(args.path), loader: 'js', resolveDir: ROOT }))
    },
  }
  const result = await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    // CommonJS, not ESM (issue 15 item 4): node's ESM loader compiles ~15 internal modules of its
    // own (esm/*, fs/promises, readline) before our first line, 12 ms of a 104 ms `guest probe`
    // here (bench/probe.mjs, process.moduleLoadList). Hence no top-level await in the entry.
    format: 'cjs',
    target: 'node18',
    // esbuild keeps an entry's own hashbang line first; otherwise the banner provides it.
    banner: { js: readFileSync(entry, 'utf8').startsWith('#!') ? '' : '#!/usr/bin/env node' },
    metafile: true,
    logLevel: 'warning',
    legalComments: 'eof',
    sourcemap: false,
    plugins: [guard, lazy],
  })
  if (forbidden.length > 0) throw new Error(`the guest bundle must not contain ${FORBIDDEN.join(', ')}: ${forbidden.join('; ')}`)
  // The output may import Node built-ins only: anything else would need node_modules at run time.
  const builtins = new Set([...builtinModules, ...builtinModules.map(m => `node:${m}`)])
  const out = Object.values(result.metafile.outputs)[0]
  const externals = out.imports.filter(i => i.external && !builtins.has(i.path)).map(i => i.path)
  if (externals.length > 0) throw new Error(`the guest bundle would need node_modules at run time for: ${externals.join(', ')}`)
  chmodSync(outfile, 0o755)
  const inputs = Object.keys(result.metafile.inputs)
  return {
    outfile,
    bytes: statSync(outfile).size,
    inputs: inputs.length,
    packages: [...new Set([...inputs.filter(i => i.includes('node_modules/')).map(i => i.replace(/^.*node_modules\/((?:@[^/]+\/)?[^/]+).*$/, '$1')),
      ...inputs.filter(i => i.startsWith('virtmiti-lazy:')).map(i => i.slice('virtmiti-lazy:'.length))])].sort(),
    /** Packages inside as a string, evaluated on first import. */
    lazy: inputs.filter(i => i.startsWith('virtmiti-lazy:')).map(i => i.slice('virtmiti-lazy:'.length)).sort(),
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { entry: { type: 'string' }, outfile: { type: 'string' }, quiet: { type: 'boolean' } }, strict: true })
  try {
    const r = await buildGuestBundle({ ...(values.entry ? { entry: values.entry } : {}), ...(values.outfile ? { outfile: values.outfile } : {}) })
    if (!values.quiet) process.stdout.write(`${relative(process.cwd(), r.outfile)}: ${r.bytes} bytes from ${r.inputs} inputs; bundled packages: ${r.packages.join(', ') || 'none'}\n`)
  } catch (e) {
    process.stderr.write(`guest bundle: ${e.message}\n`)
    process.exitCode = 1
  }
}
