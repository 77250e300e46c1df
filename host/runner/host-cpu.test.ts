// `host expect --host-cpu ID` (issue 13): the host's caps from a catalog CPU id. Expected bits by
// hand from contract/CONTRACT.md section 5 and the catalog files' registers: Sapphire Rapids has BHI_CTRL,
// RRSBA_CTRL and RRSBA (no BHI_NO), so CTRL 0x3 forces BHI_DIS_S (0x400) and RRSBA_DIS_S (0x40);
// Cascade Lake has no leaf 7.2 controls, so nothing can be derived.
import t from 'tap'
import { main as expectMain } from '../cli/expect.js'
import { InputError, UsageError } from '../../bin/lib/cli.js'

async function expectJson(argv: string[]) {
  let out = ''
  const code = await expectMain([...argv, '--json'], { io: { out: s => { out += s }, err: () => {} } })
  return { code, j: JSON.parse(out) }
}

t.test('--host-cpu sapphire-rapids: CTRL 0x3 forces BHI_DIS_S and RRSBA_DIS_S; 0x1 only BHI_DIS_S', async t => {
  const { code, j } = await expectJson(['--miti-ctrl', '0x3,0x1,0x0', '--host-cpu', 'sapphire-rapids'])
  t.equal(code, 0)
  t.same(j.vcpus.map((v: any) => [v.forcedMask, v.forcedValue]), [['0x440', '0x440'], ['0x400', '0x400'], ['0x0', '0x0']])
})

t.test('--host-cpu cascade-lake: no BHI_CTRL, no RRSBA_CTRL: nothing derived', async t => {
  const { j } = await expectJson(['--miti-ctrl', '0x3', '--host-cpu', 'cascade-lake'])
  t.same(j.vcpus.map((v: any) => [v.forcedMask, v.forcedValue]), [['0x0', '0x0']])
})

t.test('--host-cpu: an unknown id names the valid ids and the directory; exactly one caps source', async t => {
  await t.rejects(expectMain(['--miti-ctrl', '0x1', '--host-cpu', 'nope'], { io: { out: () => {}, err: () => {} } }), { constructor: InputError, message: /--host-cpu nope: unknown CPU id; valid CPU ids: .*sapphire-rapids.* \(searched .*scenarios\/cpus\)/ })
  await t.rejects(expectMain(['--miti-ctrl', '0x1', '--host-cpu', 'sapphire-rapids', '--caps', 'none'], { io: { out: () => {}, err: () => {} } }), { constructor: UsageError, message: /exactly one of --host-caps FILE, --caps LIST or --host-cpu ID/ })
})
