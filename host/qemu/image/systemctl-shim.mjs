#!/usr/bin/node
// A SHIM, not systemd: /bin/systemctl of the QEMU tier's udev image (build-udev-overlay.sh).
// The guest initramfs has no systemd (PID 1 is /init), but the udev rule and the unit it starts
// are the real installed ones (`virtmiti guest install-service`, guest/service/units.ts): the
// rule runs `systemctl --no-block start virtmiti-report@%k.service`, and this shim reads that
// unit file and runs what it says. It implements only `[--root DIR] [--no-block] start UNIT...`
// of a oneshot service: ExecStartPre/ExecStart/ExecStartPost in order ("-" prefix: failure
// ignored), %-specifiers of the unit name, ConditionPathExists, RuntimeDirectory. Everything a
// real systemd would also do (ordering, dependencies, cgroups, the journal) is not done; a
// directive this shim does not implement is logged as ignored, and syntax it cannot honour
// (quoting, $VAR expansion, other Exec prefixes, unknown specifiers) fails the start, never guessed.
// Sources: systemd.unit(5) "Specifiers", systemd.service(5) "Command lines", systemd.syntax(7).
// Plain JavaScript (node runs it in the guest without a build step); types in systemctl-shim.d.mts.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** Where the shim's per-start log and result go (the guest's /init hook forwards them to the host). */
export const JOURNAL_DIR = 'run/systemctl-shim'
/** systemd's unit search path for system units, in order (systemd.unit(5) "Unit File Load Path"). */
export const UNIT_PATH = ['etc/systemd/system', 'run/systemd/system', 'usr/lib/systemd/system', 'lib/systemd/system']

const EXEC_KEYS = ['ExecStartPre', 'ExecStart', 'ExecStartPost']
/** Directives read and acted on; the rest are logged as ignored. */
const HANDLED = new Set(['Unit.Description', 'Unit.ConditionPathExists', 'Service.Type', 'Service.RuntimeDirectory', 'Service.RuntimeDirectoryPreserve', ...EXEC_KEYS.map(k => `Service.${k}`)])
/** Directives whose absence of effect does not change what one oneshot start runs. */
const HARMLESS = new Set(['Unit.After', 'Unit.Before', 'Unit.Documentation'])

/**
 * systemd.syntax(7): "[Section]" headers, "Key=Value" (whitespace around "=" dropped), lines
 * starting with "#" or ";" are comments, a trailing backslash joins the next line (replaced by a
 * space; comment lines inside are skipped). Returns entries in file order.
 * @param {string} text
 */
export function parseUnitFile(text) {
  /** @type {{ section: string, key: string, value: string, line: number }[]} */
  const entries = []
  /** @type {string[]} */
  const errors = []
  let section = ''
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1
    let line = lines[i].trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    while (line.endsWith('\\') && i + 1 < lines.length) {
      line = line.slice(0, -1) + ' '
      // Comment lines inside a continued line are dropped; the line goes on after them.
      let next = lines[++i].trim()
      while ((next.startsWith('#') || next.startsWith(';')) && i + 1 < lines.length) next = lines[++i].trim()
      if (!next.startsWith('#') && !next.startsWith(';')) line += next
    }
    const h = /^\[([^\]]+)\]$/.exec(line)
    if (h) { section = h[1]; continue }
    const eq = line.indexOf('=')
    if (eq <= 0) { errors.push(`line ${lineNo}: not "Key=Value": ${line.slice(0, 80)}`); continue }
    if (section === '') { errors.push(`line ${lineNo}: assignment before any [Section]`); continue }
    entries.push({ section, key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim(), line: lineNo })
  }
  return { entries, errors }
}

/**
 * "prefix@instance.type" -> its parts, and the template it is loaded from.
 * @param {string} name
 */
export function unitNameParts(name) {
  const m = /^([A-Za-z0-9:_.\\-]+?)(?:@([A-Za-z0-9:_.\\-]*))?\.(service)$/.exec(name)
  if (!m || name.length > 255) return undefined
  const [, prefix, instance, type] = m
  return { name, prefix, instance, type, template: instance !== undefined ? `${prefix}@.${type}` : undefined }
}

/**
 * systemd-escape(1) --unescape: "-" is "/", "\xNN" is the byte NN.
 * @param {string} s
 */
export function unescapeUnitName(s) {
  return s.replace(/-/g, '/').replace(/\\x([0-9a-fA-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)))
}

/**
 * The specifiers systemd.unit(5) defines from the unit name alone.
 * @param {string} name
 */
export function nameSpecifiers(name) {
  const p = unitNameParts(name)
  if (!p) throw new Error(`${name}: not a service unit name`)
  const full = p.instance !== undefined ? `${p.prefix}@${p.instance}` : p.prefix
  return { n: name, N: full, p: p.prefix, P: unescapeUnitName(p.prefix), i: p.instance ?? '', I: unescapeUnitName(p.instance ?? ''), '%': '%' }
}

/**
 * Replace %X; a specifier this shim does not know fails (never left as text or guessed).
 * @param {string} s
 * @param {Record<string, string>} spec
 */
export function expandSpecifiers(s, spec) {
  return s.replace(/%(.?)/g, (_, c) => {
    if (Object.hasOwn(spec, c)) return spec[c]
    throw new Error(`specifier %${c} is not implemented by this shim`)
  })
}

/**
 * systemd.service(5) "Command lines": optional prefixes, then the argv. Only "-" (failure
 * ignored) is implemented; quoting, escapes and $VAR expansion are refused: the argv is split
 * on whitespace only, which is exactly right for a line that uses none of them.
 * @param {string} value
 */
export function parseExecLine(value) {
  const m = /^([-@:+!]*)(.*)$/.exec(value)
  const prefixes = m[1], rest = m[2].trim()
  if (/[@:+!]/.test(prefixes)) throw new Error(`Exec prefix "${prefixes}" is not implemented by this shim`)
  if (/["'\\$;]/.test(rest)) throw new Error(`quoting, escapes, ";" and $VAR expansion are not implemented by this shim: ${rest.slice(0, 80)}`)
  const argv = rest.split(/\s+/).filter(Boolean)
  if (argv.length === 0 || !argv[0].startsWith('/')) throw new Error(`command must be an absolute path: ${rest.slice(0, 80)}`)
  return { ignoreFailure: prefixes.includes('-'), argv }
}

/**
 * What starting `name` from unit file `text` runs, in order; pure.
 * @param {string} text
 * @param {string} name
 */
export function planStart(text, name) {
  const spec = nameSpecifiers(name)
  const { entries, errors } = parseUnitFile(text)
  /** @type {Record<string, { ignoreFailure: boolean, argv: string[] }[]>} */
  const exec = Object.fromEntries(EXEC_KEYS.map(k => [k, []]))
  /** @type {{ path: string, negate: boolean }[]} */
  const conditions = []
  /** @type {string[]} */
  const runtimeDirectories = []
  /** @type {string[]} */
  const ignored = []
  let type = 'simple'
  for (const e of entries) {
    const id = `${e.section}.${e.key}`
    try {
      if (!HANDLED.has(id)) { if (!HARMLESS.has(id) && e.section !== 'Install') ignored.push(`${id} (line ${e.line})`); continue }
      const v = expandSpecifiers(e.value, spec)
      if (e.section === 'Service' && EXEC_KEYS.includes(e.key)) {
        // An empty assignment resets the list (systemd.service(5)).
        if (v === '') exec[e.key] = []
        else exec[e.key].push(parseExecLine(v))
      } else if (id === 'Unit.ConditionPathExists') {
        if (v !== '') conditions.push({ path: v.replace(/^!/, ''), negate: v.startsWith('!') })
      } else if (id === 'Service.Type') type = v
      // The shim never removes a RuntimeDirectory: that is RuntimeDirectoryPreserve=yes.
      else if (id === 'Service.RuntimeDirectoryPreserve') { if (v !== 'yes') ignored.push(`${id}=${v} (line ${e.line}): the shim keeps the directory`) }
      else if (id === 'Service.RuntimeDirectory') {
        for (const d of v.split(/\s+/).filter(Boolean)) {
          if (d.startsWith('/') || d.split('/').includes('..')) throw new Error(`RuntimeDirectory ${d}: must be relative to /run`)
          runtimeDirectories.push(d)
        }
      }
    } catch (err) { errors.push(`line ${e.line}: ${/** @type {Error} */ (err).message}`) }
  }
  if (type !== 'oneshot') errors.push(`Type=${type}: this shim runs oneshot services only`)
  if (exec['ExecStart'].length === 0) errors.push('no ExecStart')
  const steps = EXEC_KEYS.flatMap(k => exec[k].map(c => ({ directive: k, ...c })))
  return { name, conditions, runtimeDirectories, steps, ignored, errors }
}

/**
 * The unit file for `name` under `root`: the name itself, else its template (systemd.unit(5)).
 * @param {string} root
 * @param {string} name
 * @param {typeof fs} [f]
 */
export function findUnitFile(root, name, f = fs) {
  const p = unitNameParts(name)
  if (!p) return undefined
  for (const candidate of [name, ...(p.template ? [p.template] : [])]) {
    for (const dir of UNIT_PATH) {
      const file = path.join(root, dir, candidate)
      if (f.existsSync(file)) return file
    }
  }
  return undefined
}

/**
 * One start, synchronously, its log lines and command output appended to `logFd`.
 * @returns {number} 0 success, else the failing command's status (systemd's "exit-code" result)
 */
function runStart(root, name, logFd) {
  const log = (/** @type {string} */ s) => fs.writeSync(logFd, `systemctl-shim: ${s}\n`)
  const file = findUnitFile(root, name)
  if (!file) { log(`unit ${name} not found in ${UNIT_PATH.map(d => `/${d}`).join(' ')}`); return 5 }
  log(`start ${name} from ${file}`)
  const plan = planStart(fs.readFileSync(file, 'utf8'), name)
  for (const i of plan.ignored) log(`ignored (not implemented by this shim): ${i}`)
  if (plan.errors.length) { for (const e of plan.errors) log(`error: ${e}`); return 6 }
  for (const c of plan.conditions) {
    const there = fs.existsSync(path.join(root, c.path))
    if (there === c.negate) { log(`condition ConditionPathExists=${c.negate ? '!' : ''}${c.path} not met: skipped`); return 0 }
  }
  for (const d of plan.runtimeDirectories) fs.mkdirSync(path.join(root, 'run', d), { recursive: true, mode: 0o755 })
  for (const s of plan.steps) {
    const argv = s.argv
    const r = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', logFd, logFd] })
    const status = r.error ? 203 : r.status ?? 128 + 9 // 203: systemd's EXIT_EXEC
    log(`${s.directive}=${s.ignoreFailure ? '-' : ''}${argv.join(' ')} -> ${r.error ? `exec failed: ${r.error.message}` : r.signal ? `signal ${r.signal}` : `exit ${status}`}${status && s.ignoreFailure ? ' (ignored)' : ''}`)
    if (status !== 0 && !s.ignoreFailure) return status
  }
  return 0
}

/** Guest uptime in the journal lines: where a hot-plug's latency goes (the host sees only the total). */
const up = () => { try { return `uptime ${fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]} s` } catch { return 'uptime unknown' } }

/** One start with its journal: SEQ.log as it goes, then SEQ.result ("<status> <unit>"), atomically. */
function startLogged(root, name, seq) {
  const dir = path.join(root, JOURNAL_DIR)
  const fd = fs.openSync(path.join(dir, `${seq}.log`), 'a')
  fs.writeSync(fd, `systemctl-shim: ${name}: job started, ${up()}\n`)
  let status
  try { status = runStart(root, name, fd) } catch (e) { fs.writeSync(fd, `systemctl-shim: error: ${e.message}\n`); status = 1 }
  fs.writeSync(fd, `systemctl-shim: ${name}: job finished, ${up()}\n`)
  fs.writeSync(fd, `systemctl-shim: ${name}: ${status === 0 ? 'result success' : `result exit-code, status ${status}`}\n`)
  fs.closeSync(fd)
  fs.writeFileSync(path.join(dir, `${seq}.tmp`), `${status} ${name}\n`)
  fs.renameSync(path.join(dir, `${seq}.tmp`), path.join(dir, `${seq}.result`))
  return status
}

/**
 * `systemctl [--root DIR] [--no-block] start UNIT...`. --root (for tests): unit files, conditions,
 * RuntimeDirectory and the journal are looked up under DIR; commands run as the unit writes them.
 */
export function main(argv, self = fileURLToPath(import.meta.url)) {
  let root = '/', noBlock = false, run = false
  const args = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--no-block') noBlock = true
    else if (a === '--root') root = argv[++i] ?? ''
    else if (a.startsWith('--root=')) root = a.slice(7)
    else if (a === '--shim-run') run = true // internal: the detached half of --no-block
    else args.push(a)
  }
  if (run) return startLogged(root, args[1], args[0])
  const [verb, ...units] = args
  if (verb !== 'start' || units.length === 0 || !root) {
    process.stderr.write(`systemctl (virtmiti shim): only "[--root DIR] [--no-block] start UNIT..." is implemented, got: ${argv.join(' ')}\n`)
    return 1
  }
  const dir = path.join(root, JOURNAL_DIR)
  fs.mkdirSync(dir, { recursive: true })
  let rc = 0
  for (const name of units) {
    if (!unitNameParts(name)) { process.stderr.write(`systemctl (virtmiti shim): ${name}: not a service unit name\n`); rc = 1; continue }
    // Sortable: the guest's /init hook forwards results in this order.
    const seq = `${String(Date.now()).padStart(15, '0')}-${process.pid}-${units.indexOf(name)}`
    if (noBlock) {
      fs.appendFileSync(path.join(dir, `${seq}.log`), `systemctl-shim: ${name}: job queued (--no-block), ${up()}\n`)
      // --no-block: return at once (udev must not wait for the report); the start runs detached,
      // in its own session, with no inherited stdio (udevd would wait for its pipe to close).
      spawn(process.execPath, [self, '--root', root, '--shim-run', seq, name], { detached: true, stdio: 'ignore' }).unref()
      continue
    }
    const status = startLogged(root, name, seq)
    if (status !== 0) { process.stderr.write(`Job for ${name} failed (status ${status}); see ${path.join(dir, `${seq}.log`)}\n`); rc = 1 }
  }
  return rc
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url))) process.exitCode = main(process.argv.slice(2))
