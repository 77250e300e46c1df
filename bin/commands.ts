// The full command table of `virtmiti`.
import { runGrouped, type Table } from './dispatch.js'
import { GUEST } from './guest-commands.js'

export const TABLE: Table = {
  guest: GUEST,
  host: {
    caps: { help: "the host's own BHI/RRSBA/STIBP/SSBD capabilities, read through /dev/cpu", load: async () => (await import('../host/cli/caps.js')).main },
    expect: { help: 'forced SPEC_CTRL mask/value each vCPU must have, with the rule per bit', load: async () => (await import('../host/cli/expect.js')).main },
    vmm: { help: 'vmm run: the reference VMM on /dev/kvm runs guest report + selftest, then host check (TAP 14)', load: async () => (await import('../host/cli/vmm-run.js')).main },
    check: { help: "verify a VMM's observed per-vCPU state against a guest report", load: async () => (await import('../host/cli/check.js')).main },
  },
  scenarios: {
    run: { help: 'run scenario files end to end on the sim/kvm/qemu tiers (TAP 14); --exhaustive for the bit matrix', load: async () => (await import('../host/cli/scenarios-run.js')).main },
  },
}

export const run = (argv: string[]): Promise<number> => runGrouped(TABLE, 'virtmiti', argv)
