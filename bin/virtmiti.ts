#!/usr/bin/env node
// Entry point: see bin/commands.ts for the command table.
import { run } from './commands.js'

// process.exitCode (not process.exit) lets a large JSON document drain through a pipe first.
process.exitCode = await run(process.argv.slice(2))
