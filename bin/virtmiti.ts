#!/usr/bin/env node
// Entry point: see bin/commands.ts for the command table.
import { run } from './commands.js'

// process.exitCode (not process.exit) lets a large JSON document drain through a pipe first.
// Root processes never open the Node inspector on SIGUSR1 (issue 14 item 2; node 18 has no --disable-sigusr1).
process.on('SIGUSR1', () => { process.stderr.write('virtmiti: SIGUSR1 ignored\n') })
process.exitCode = await run(process.argv.slice(2))
