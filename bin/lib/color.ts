// Colour for human output, with chalk's semantics made explicit (chalk 5 alone does not honour
// NO_COLOR, measured). Precedence, first match wins (README "Colour"):
//   1. --no-color                       -> off
//   2. NO_COLOR set and not empty       -> off   (no-color.org)
//   3. FORCE_COLOR=0 or false           -> off
//      FORCE_COLOR=1, 2, 3              -> on, at that level (16, 256, 16M colours)
//      FORCE_COLOR empty or true        -> on, level 1
//   4. TERM=dumb                        -> off
//   5. the output stream is a TTY       -> on (level 1), else off
// (supports-color, which chalk uses: FORCE_COLOR beats TERM=dumb and a non-TTY stream.)
import { Chalk, type ChalkInstance } from 'chalk'
import { isTerminal } from './cli.js'

export type ColorLevel = 0 | 1 | 2 | 3

export function colorLevel(opts: { noColor?: boolean; isTTY?: boolean; env?: NodeJS.ProcessEnv } = {}): ColorLevel {
  const env = opts.env ?? process.env
  if (opts.noColor) return 0
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return 0
  const fc = env.FORCE_COLOR
  if (fc !== undefined) {
    if (fc === '0' || fc === 'false') return 0
    if (fc === '' || fc === 'true') return 1
    const n = Number(fc)
    if (n === 1 || n === 2 || n === 3) return n
    // Any other value: supports-color takes min(level, 3) of a number, else level 1.
    return Number.isFinite(n) && n > 3 ? 3 : 1
  }
  if (env.TERM === 'dumb') return 0
  return opts.isTTY === true ? 1 : 0
}

export function makeColor(opts: { noColor?: boolean; stream?: { isTTY?: boolean }; env?: NodeJS.ProcessEnv } = {}): ChalkInstance {
  return new Chalk({ level: colorLevel({ ...(opts.noColor !== undefined ? { noColor: opts.noColor } : {}), isTTY: opts.stream ? opts.stream.isTTY === true : isTerminal(1), ...(opts.env ? { env: opts.env } : {}) }) })
}
