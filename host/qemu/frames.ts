// Parser for the framed output the live-guest /init writes to its second serial port
// (host/qemu/image/init.sh is the writer; keep both in step). Pure: text in, result out,
// never throws on bad input: every defect becomes a FrameError so a test can print it.
//
//   @@virtmiti-hello <protocol> <uptime-s>
//   @@virtmiti-begin <name>
//   <base64 of the command's stdout, any line width>
//   @@virtmiti-end <name> <exit-code> <byte-count> <uptime-s>
//   @@virtmiti-done <frames-sent> <uptime-s>
// A section "<name>.stderr" carries the stderr of <name> and is folded into it.

export const FRAME_PROTOCOL = 1

export interface Section {
  name: string
  /** Exit status of the command in the guest (shell convention: 128+N = killed by signal N). */
  exit: number
  /** stdout as UTF-8 text. */
  output: string
  /** stdout bytes exactly as the guest produced them. */
  raw: Uint8Array
  /** stderr as UTF-8 text, '' when the guest sent none. */
  stderr: string
  /** Guest uptime (seconds, /proc/uptime) when the section ended. */
  uptimeS?: number
}

export type FrameErrorKind =
  | 'truncated'          // begin without end (stream cut, or a new begin arrived first)
  | 'bad-base64'         // a body line or the whole body is not canonical base64
  | 'length-mismatch'    // decoded length differs from the byte count in the end line
  | 'bad-marker'         // a @@virtmiti- line with the wrong fields
  | 'end-without-begin'
  | 'name-mismatch'      // end names another section than the open begin
  | 'duplicate'          // a second section with a name already seen (first one kept)
  | 'missing-done'       // no @@virtmiti-done: the guest stopped before the end of its list
  | 'count-mismatch'     // done's frame count differs from the frames received

export interface FrameError { kind: FrameErrorKind; line: number; section?: string; message: string }

export interface ParsedFrames {
  protocol?: number
  helloUptimeS?: number
  /** Complete, valid sections by name, in arrival order (stderr folded in). */
  sections: Map<string, Section>
  done?: { frames: number; uptimeS?: number }
  errors: FrameError[]
  /** Lines outside any frame (console noise on a shared port): ignored, counted. */
  garbageLines: number
}

const MARK = '@@virtmiti-'
const NAME = /^[A-Za-z0-9_.:-]{1,200}$/
const B64_LINE = /^[A-Za-z0-9+/]*={0,2}$/
const B64_ALL = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const INT = /^(0|[1-9][0-9]{0,9})$/
const DEC = /^[0-9]+(\.[0-9]+)?$/

interface Open { name: string; line: number; body: string[]; bad?: number }
interface Frame { name: string; exit: number; raw: Uint8Array; uptimeS?: number }

const utf8 = new TextDecoder('utf-8', { fatal: false })

/** Strict base64 decode: undefined unless the text is canonical (length % 4, padding last). */
export function decodeBase64Strict(text: string): Uint8Array | undefined {
  if (!B64_ALL.test(text)) return undefined
  return new Uint8Array(Buffer.from(text, 'base64'))
}

export function parseFrames(text: string): ParsedFrames {
  const out: ParsedFrames = { sections: new Map(), errors: [], garbageLines: 0 }
  const frames: Frame[] = []
  let received = 0 // frames that reached their end line, valid or not (compared with done)
  let open: Open | undefined
  const err = (kind: FrameErrorKind, line: number, message: string, section?: string): void => {
    out.errors.push(section === undefined ? { kind, line, message } : { kind, line, section, message })
  }
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1
    const line = lines[i]!.replace(/\r+$/, '').replace(/^\r+/, '')
    if (!line.startsWith(MARK)) {
      if (open) {
        if (line === '') continue
        if (!B64_LINE.test(line)) open.bad ??= lineNo
        open.body.push(line)
      } else if (line !== '') out.garbageLines++
      continue
    }
    const [mark, ...f] = line.slice(MARK.length).split(' ')
    switch (mark) {
      case 'hello': {
        if (f.length < 1 || !INT.test(f[0]!)) { err('bad-marker', lineNo, `hello needs "<protocol> <uptime>": ${JSON.stringify(line)}`); break }
        out.protocol = Number(f[0])
        if (f[1] !== undefined && DEC.test(f[1])) out.helloUptimeS = Number(f[1])
        break
      }
      case 'begin': {
        if (open) err('truncated', open.line, `section "${open.name}" has no end line before the next begin at line ${lineNo}`, open.name)
        open = undefined
        if (f.length !== 1 || !NAME.test(f[0]!)) { err('bad-marker', lineNo, `begin needs one name [A-Za-z0-9_.:-]: ${JSON.stringify(line)}`); break }
        open = { name: f[0]!, line: lineNo, body: [] }
        break
      }
      case 'end': {
        if (!open) { err('end-without-begin', lineNo, `end line without a begin: ${JSON.stringify(line)}`, f[0]); break }
        const o = open
        open = undefined
        received++
        if (f.length < 3 || f.length > 4 || !INT.test(f[1]!) || !INT.test(f[2]!) || (f[3] !== undefined && !DEC.test(f[3]))) {
          err('bad-marker', lineNo, `end needs "<name> <exit> <bytes> [<uptime>]": ${JSON.stringify(line)}`, o.name); break
        }
        if (f[0] !== o.name) { err('name-mismatch', lineNo, `end names "${f[0]}" but the open section is "${o.name}" (line ${o.line})`, o.name); break }
        if (o.bad !== undefined) { err('bad-base64', o.bad, `section "${o.name}": body line ${o.bad} is not base64`, o.name); break }
        const raw = decodeBase64Strict(o.body.join(''))
        if (!raw) { err('bad-base64', o.line, `section "${o.name}": body is not canonical base64 (length or padding)`, o.name); break }
        const bytes = Number(f[2])
        if (raw.length !== bytes) { err('length-mismatch', lineNo, `section "${o.name}": decoded ${raw.length} bytes, end line says ${bytes}`, o.name); break }
        const frame: Frame = { name: o.name, exit: Number(f[1]), raw }
        if (f[3] !== undefined) frame.uptimeS = Number(f[3])
        if (frames.some(x => x.name === o.name)) { err('duplicate', lineNo, `section "${o.name}" received twice; the first is kept`, o.name); break }
        frames.push(frame)
        break
      }
      case 'done': {
        if (open) { err('truncated', open.line, `section "${open.name}" has no end line before done at line ${lineNo}`, open.name); open = undefined }
        if (f.length < 1 || !INT.test(f[0]!)) { err('bad-marker', lineNo, `done needs "<frames> <uptime>": ${JSON.stringify(line)}`); break }
        out.done = { frames: Number(f[0]) }
        if (f[1] !== undefined && DEC.test(f[1])) out.done.uptimeS = Number(f[1])
        break
      }
      default:
        err('bad-marker', lineNo, `unknown marker: ${JSON.stringify(line.slice(0, 80))}`)
    }
  }
  if (open) err('truncated', open.line, `section "${open.name}" has no end line (stream ends at line ${lines.length})`, open.name)
  if (!out.done) err('missing-done', lines.length, 'no @@virtmiti-done line: the guest did not finish its command list')
  else if (out.done.frames !== received) err('count-mismatch', lines.length, `guest sent ${out.done.frames} frames, ${received} arrived complete`)

  // Fold "<name>.stderr" into <name> when <name> arrived; otherwise keep it as its own section.
  const names = new Set(frames.map(fr => fr.name))
  for (const fr of frames) {
    if (fr.name.endsWith('.stderr') && names.has(fr.name.slice(0, -'.stderr'.length))) continue
    const s: Section = { name: fr.name, exit: fr.exit, output: utf8.decode(fr.raw), raw: fr.raw, stderr: '' }
    if (fr.uptimeS !== undefined) s.uptimeS = fr.uptimeS
    const e = frames.find(x => x.name === fr.name + '.stderr')
    if (e) s.stderr = utf8.decode(e.raw)
    out.sections.set(fr.name, s)
  }
  return out
}
