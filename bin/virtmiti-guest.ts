#!/usr/bin/env node
// Entry point of the self-contained guest bundle dist/virtmiti-guest.mjs (`make bundle`):
// `node virtmiti-guest.mjs probe|report|selftest|install-service ...`, no node_modules needed.
import { runFlat } from './dispatch.js'
import { GUEST } from './guest-commands.js'

// Root processes never open the Node inspector on SIGUSR1 (issue 14 item 2; node 18 has no --disable-sigusr1).
process.on('SIGUSR1', () => { process.stderr.write('virtmiti: SIGUSR1 ignored\n') })
process.exitCode = await runFlat(GUEST, 'guest', 'virtmiti-guest', process.argv.slice(2))
