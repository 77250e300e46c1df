// A host named by its catalog CPU id (scenarios/cpus/<id>.yaml), for `host expect --host-cpu ID`
// (issue 13): its caps as contract/CONTRACT.md section 5 reads them. An unknown id is an input error that
// names the valid ids and the directory searched.
import { InputError } from '../../bin/lib/cli.js'
import { hostCapsFromCpu, type HostCaps } from '../../contract/host-caps.js'
import { builtinCpusDir } from './catalog.js'
import { loadCpuCatalog } from './cpus.js'
import { formatLocated } from './yaml-file.js'

export function catalogHostCaps(id: string): HostCaps {
  const dir = builtinCpusDir()
  if (!dir) throw new InputError('--host-cpu: the built-in CPU catalog (scenarios/cpus) was not found next to this program')
  const c = loadCpuCatalog(dir)
  if (c.errors.length) throw new InputError(c.errors.map(formatLocated).join('\n'))
  const m = c.models.get(id)
  if (!m) throw new InputError(`--host-cpu ${id}: unknown CPU id; valid CPU ids: ${[...c.models.keys()].sort().join(', ')} (searched ${dir})`)
  return hostCapsFromCpu(m)
}
