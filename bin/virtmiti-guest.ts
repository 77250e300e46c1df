#!/usr/bin/env node
// Entry point of the self-contained guest bundle dist/virtmiti-guest.cjs (`make bundle`):
// `node virtmiti-guest.cjs probe|report|selftest|install-service ...`, no node_modules needed.
import { runFlat } from './dispatch.js'
import { GUEST } from './guest-commands.js'
import { stdio } from './lib/cli.js'

// Root processes never open the Node inspector on SIGUSR1 (issue 14 item 2; node 18 has no --disable-sigusr1).
process.on('SIGUSR1', () => { stdio.err('virtmiti: SIGUSR1 ignored\n') })
// No top-level await: the bundle is CommonJS (guest/bundle/build.mjs says why).
void runFlat(GUEST, 'guest', 'virtmiti-guest', process.argv.slice(2)).then(code => { process.exitCode = code })
