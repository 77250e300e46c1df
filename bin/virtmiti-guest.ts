#!/usr/bin/env node
// Entry point of the self-contained guest bundle dist/virtmiti-guest.mjs (`make bundle`):
// `node virtmiti-guest.mjs probe|report|selftest|install-service ...`, no node_modules needed.
import { runFlat } from './dispatch.js'
import { GUEST } from './guest-commands.js'

process.exitCode = await runFlat(GUEST, 'guest', 'virtmiti-guest', process.argv.slice(2))
