// Colour for human output. chalk 5 decides from the terminal and FORCE_COLOR; it does not honour
// NO_COLOR by itself (measured here), so NO_COLOR and --no-color are handled explicitly.
import { Chalk, type ChalkInstance } from 'chalk'

export function makeColor(opts: { noColor?: boolean; stream?: NodeJS.WriteStream } = {}): ChalkInstance {
  const env = process.env
  if (opts.noColor || (env.NO_COLOR !== undefined && env.NO_COLOR !== '')) return new Chalk({ level: 0 })
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return new Chalk({ level: Math.min(3, Math.max(1, Number(env.FORCE_COLOR) || 1)) as 1 | 2 | 3 })
  const tty = (opts.stream ?? process.stdout).isTTY === true
  return new Chalk({ level: tty ? 1 : 0 })
}
