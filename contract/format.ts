// Small text formats shared by every output: field paths in error messages and CPU lists.

/** A field path as users read it: "cpus[0].cpuid.0x7.0.regs.edx"; "(document)" for the root. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let s = ''
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : (s ? '.' : '') + String(p)
  return s || '(document)'
}

/** "0-3,5" from CPU numbers, as the kernel writes CPU lists (/sys/devices/system/cpu/online). */
export function cpuRanges(cpus: readonly number[]): string {
  const s = [...cpus].sort((a, b) => a - b)
  const parts: string[] = []
  for (let i = 0; i < s.length; i++) {
    let j = i
    while (j + 1 < s.length && s[j + 1] === s[j]! + 1) j++
    parts.push(i === j ? `${s[i]}` : `${s[i]}-${s[j]}`)
    i = j
  }
  return parts.join(',')
}
