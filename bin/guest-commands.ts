// The guest agent's commands: the only ones in the guest bundle (no koffi, no host code).
import { runFlat, type Command } from './dispatch.js'

export const GUEST: Record<string, Command> = {
  probe: { help: 'read-only report of BHI/retpoline state and what would be written', load: async () => (await import('../guest/cli/probe.js')).main },
  report: { help: 'write MSR_VIRTUAL_MITIGATION_CTRL on every CPU, read it back, report (--json, --out)', load: async () => (await import('../guest/cli/report.js')).main },
  selftest: { help: "in-guest conformance tests of the VMM's virtual MSRs (TAP 14)", load: async () => (await import('../guest/cli/selftest.js')).main },
  // One node process for several commands, framed for the live guest's /init (issue 15 item 4).
  batch: { help: 'run several commands (CMD ARGS :: CMD ARGS ...) in one process, one frame each', load: async () => {
    const m = await import('../guest/cli/batch.js')
    const table = Object.fromEntries(Object.entries(GUEST).filter(([k]) => k !== 'batch'))
    return argv => m.main(argv, { commands: Object.keys(table), run: a => runFlat(table, 'guest', 'virtmiti-guest', a) })
  } },
  'install-service': { help: 'install the udev rule and systemd units (--prefix DIR)', load: async () => (await import('../guest/cli/install-service.js')).main },
}
