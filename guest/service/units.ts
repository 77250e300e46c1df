// The guest agent's service files (issue 4), embedded as strings so the single-file bundle needs
// no data files. `virtmiti guest install-service` writes them under a prefix.
//
// - virtmiti-report.service: oneshot at boot, after the msr module can load, reports on every CPU.
// - virtmiti-report@.service: the same run, started by udev when a CPU comes online later: the
//   virtual MSRs are per vCPU (contract/CONTRACT.md section 3), so a new CPU must get the CTRL value too.
//   Each run is a full report (all CPUs; the others are a no-op, "unchanged"), so
//   /run/virtmiti/report.json always describes the whole VM. flock serialises runs, so a run
//   started for a CPU event probes after the CPU is online and never races another run.
// - 90-virtmiti.rules: the udev rule.

export const AGENT_PATH = '/usr/lib/virtmiti/virtmiti-guest.cjs'
export const REPORT_PATH = '/run/virtmiti/report.json'

const SERVICE_BODY = (what: string) => `[Service]
Type=oneshot
# /dev/cpu/N/msr and /dev/cpu/N/cpuid: without them the report exits 3 and says why.
ExecStartPre=-/sbin/modprobe msr
ExecStartPre=-/sbin/modprobe cpuid
ExecStart=/usr/bin/flock /run/virtmiti/lock /usr/bin/node ${AGENT_PATH} report --out ${REPORT_PATH}
RuntimeDirectory=virtmiti
RuntimeDirectoryPreserve=yes
# Exit codes (DESIGN.md): 0 done or nothing to report, 1 a CPU failed, 3 could not tell.
# ${what}
`

export const REPORT_SERVICE = `# virtmiti: report this guest's BHI / retpoline mitigation to the VMM by writing
# MSR_VIRTUAL_MITIGATION_CTRL (0x50000002) on every CPU. Installed by virtmiti guest install-service.
[Unit]
Description=virtmiti: report guest mitigations to the VMM (MSR_VIRTUAL_MITIGATION_CTRL)
After=systemd-modules-load.service
Wants=systemd-modules-load.service
ConditionPathExists=${AGENT_PATH}

${SERVICE_BODY('Started at boot (multi-user.target).')}
[Install]
WantedBy=multi-user.target
`

export const REPORT_CPU_SERVICE = `# virtmiti: report again when CPU %i comes online (started by 90-virtmiti.rules).
# Installed by virtmiti guest install-service.
[Unit]
Description=virtmiti: report guest mitigations to the VMM after %i came online
After=systemd-modules-load.service virtmiti-report.service
ConditionPathExists=${AGENT_PATH}

${SERVICE_BODY('Started by udev for a CPU online event; not enabled on its own.')}`

export const UDEV_RULE = `# virtmiti: a CPU that comes online later must get the same MSR_VIRTUAL_MITIGATION_CTRL value
# (the virtual MSRs are per vCPU). Installed by virtmiti guest install-service.
# "online": a CPU onlined after boot (echo 1 > /sys/devices/system/cpu/cpuN/online, or a hot-added
# CPU being onlined). "add" of an already-online CPU: only once the boot run has written its
# report, so the coldplug "add" of every CPU at boot does not start one run per CPU.
ACTION=="online", SUBSYSTEM=="cpu", KERNEL=="cpu[0-9]*", RUN+="/bin/systemctl --no-block start virtmiti-report@%k.service"
ACTION=="add", SUBSYSTEM=="cpu", KERNEL=="cpu[0-9]*", ATTR{online}=="1", TEST=="${REPORT_PATH}", RUN+="/bin/systemctl --no-block start virtmiti-report@%k.service"
`

export interface ServiceFile { path: string; content: string; mode: number }

/** Files under the prefix, relative to it (admin-installed units live in /etc). */
export const SERVICE_FILES: readonly ServiceFile[] = [
  { path: 'etc/systemd/system/virtmiti-report.service', content: REPORT_SERVICE, mode: 0o644 },
  { path: 'etc/systemd/system/virtmiti-report@.service', content: REPORT_CPU_SERVICE, mode: 0o644 },
  { path: 'etc/udev/rules.d/90-virtmiti.rules', content: UDEV_RULE, mode: 0o644 },
]

/** `systemctl enable` done by hand, as `systemctl --root` would: works in an image build. */
export const ENABLE_LINK = {
  path: 'etc/systemd/system/multi-user.target.wants/virtmiti-report.service',
  target: '/etc/systemd/system/virtmiti-report.service',
}
