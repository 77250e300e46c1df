// Stand-in for dist/virtmiti-guest.cjs (issue 7, brief step 4) until the real agent bundle
// exists: same subcommands (probe --json, report --json, selftest [TAP]), but it only reads
// IA32_ARCH_CAPABILITIES (0x10A) and IA32_SPEC_CTRL (0x48) on every CPU through the msr
// driver. It never touches 0x5000000x (DESIGN.md: never probe without ARCH_CAP bit 63).
// The MSR index is the file position, passed as a Number: a BigInt position silently
// becomes a read at the current offset (DESIGN.md conventions).
const fs = require('node:fs') // CommonJS, as the bundle it stands in for (installed as /virtmiti-guest.cjs)

const MSRS = [0x10a, 0x48]
const hex = v => '0x' + v.toString(16)

function cpus() {
  try { return fs.readdirSync('/dev/cpu').filter(n => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b) }
  catch { return [] }
}
function rdmsr(cpu, index) {
  let fd
  try {
    fd = fs.openSync(`/dev/cpu/${cpu}/msr`, 'r')
    const buf = Buffer.alloc(8)
    const n = fs.readSync(fd, buf, 0, 8, index)
    if (n !== 8) return { ok: false, errno: 'EIO', message: `short read ${n}` }
    return { ok: true, value: hex(buf.readBigUInt64LE(0)) }
  } catch (e) {
    return { ok: false, errno: e.code ?? 'EUNKNOWN', message: String(e.message) }
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}
function readText(p) { try { return fs.readFileSync(p, 'utf8').trim() } catch { return undefined } }
function probe() {
  return {
    standIn: true,
    cpus: cpus().map(cpu => ({ cpu, msr: Object.fromEntries(MSRS.map(m => [hex(m), rdmsr(cpu, m)])) })),
    spectreV2: readText('/sys/devices/system/cpu/vulnerabilities/spectre_v2'),
  }
}

const [cmd, ...flags] = process.argv.slice(2)
if (cmd === 'probe' || cmd === 'report') {
  process.stdout.write(JSON.stringify({ command: cmd, flags, ...probe() }) + '\n')
} else if (cmd === 'selftest') {
  const p = probe()
  const lines = ['TAP version 14']
  p.cpus.forEach((c, i) => lines.push(`${c.msr['0x10a'].ok ? 'ok' : 'not ok'} ${i + 1} - cpu ${c.cpu} rdmsr 0x10a`))
  lines.push(`1..${p.cpus.length}`)
  process.stdout.write(lines.join('\n') + '\n')
  process.exitCode = p.cpus.length > 0 && p.cpus.every(c => c.msr['0x10a'].ok) ? 0 : 1
} else {
  process.stderr.write('usage: stand-in-guest.cjs probe|report [--json] | selftest\n')
  process.exitCode = 2
}
