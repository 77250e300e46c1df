// Test support for signal.test.ts: run `guest selftest` on a simulated guest in this process and
// send ourselves a real signal in the middle. The real process.on handlers must restore every
// value and exit 130/143; on exit, print the VMM's per-vCPU state so the parent can check it.
import { main } from '../guest/cli/selftest.js'
import { REFERENCE_PROFILE, simGuestWith } from './sim-core.js'
import { RULES } from '../guest/selftest/run.js'
import { MSR } from '../contract/registers.js'

const sig = (process.argv[2] ?? 'SIGINT') as 'SIGINT' | 'SIGTERM'
const { platform, vmm } = simGuestWith(REFERENCE_PROFILE, { vcpus: 2 })
// Values the guest held before the selftest (set up outside the agent's gates, as a VMM would).
platform.wrmsr(0, MSR.VIRTUAL_MITIGATION_CTRL, 3n)
platform.wrmsr(1, MSR.VIRTUAL_MITIGATION_CTRL, 1n)
process.on('exit', code => {
  process.stdout.write(JSON.stringify({ code, ctrl: vmm.states().map(s => s.mitiCtrl.toString()), shadow: vmm.states().map(s => s.specCtrlShadow.toString()) }) + '\n')
})
await main([], {
  platform, out: () => {}, err: s => { process.stderr.write(s) },
  between: async name => {
    if (name !== RULES.ctrlReadBack) return
    // The read-back test left CTRL at 0 on every CPU: a real signal now must restore 3 and 1.
    process.kill(process.pid, sig)
    await new Promise(r => setTimeout(r, 50))
  },
})
process.stdout.write('not interrupted\n')
