// Test support: the simulated guest of sim-core.ts over a built-in VMM profile by name
// (scenarios/vmms, loaded through the data catalog). Never imported by the agent.
import { profileByName } from '../host/vmm/profiles.js'
import { simGuestWith, type SimOptions } from './sim-core.js'
export * from './sim-core.js'

/** A simulated guest over a built-in VMM profile by name (scenarios/vmms). */
export function simGuest(profile: string, o: SimOptions = {}) {
  const p = profileByName(profile)
  if (!p) throw new Error(`no VMM profile ${profile}`)
  return simGuestWith(p, o)
}

