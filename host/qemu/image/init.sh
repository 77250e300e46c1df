#!/bin/busybox sh
# /init of the virtmiti live-Linux-guest initramfs (issue 7; built by build-initramfs.sh).
# Mounts proc/sys/dev, loads the Debian kernel's msr and cpuid drivers (contract/CONTRACT.md section 3:
# the agent reads MSRs through /dev/cpu/N/msr), runs a command list and sends every result
# to the host over the SECOND serial port, /dev/ttyS1, framed (parsed by host/qemu/frames.ts):
#   @@virtmiti-hello <protocol> <uptime-s>
#   @@virtmiti-begin <name>
#   <stdout, base64, 76 columns>
#   @@virtmiti-end <name> <exit-code> <byte-count> <uptime-s>
#   ... (a non-empty stderr follows as its own section "<name>.stderr", same exit code)
#   @@virtmiti-done <sections> <uptime-s>
# Base64 so arbitrary output (NULs, control bytes, partial lines) survives the tty.
# Kernel command line (read from /proc/cmdline; dotted names are never passed to init):
#   virtmiti.cmds=<base64 of "name<TAB>command[<TAB>frames]" lines>  overrides /etc/virtmiti/commands
#   virtmiti.timeout=<seconds>                            per-command limit (default 60)
#   virtmiti.shell=1                                      drop to a shell instead of powering off
#   virtmiti.hold=1                                       stay up after the last section (the host reads
#                                                         QEMU's state over QMP, migrates, then quits QEMU)
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs dev /dev
# The initramfs has no /dev/console node (built without root); reopen it from devtmpfs.
exec </dev/console >/dev/console 2>&1
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run

log() { echo "virtmiti-init: $*"; }
# Seconds since boot into $UP, with the shell's own read: no fork (each busybox fork+exec is
# 20-50 ms under TCG; issue 15 item 4).
uptime_s() { read -r UP _ < /proc/uptime; }

OUT=/dev/ttyS1
if [ -c "$OUT" ] && stty -F "$OUT" raw -echo 115200 2>/dev/null; then
  log "frames go to $OUT"
else
  log "no usable $OUT; frames go to the console"
  OUT=/dev/console
fi
exec 3>"$OUT"

CMDS=/etc/virtmiti/commands
TIMEOUT=60
SHELL_AT_END=0
HOLD=0
for w in $(cat /proc/cmdline); do
  case "$w" in
    virtmiti.cmds=*)
      if echo "${w#virtmiti.cmds=}" | base64 -d > /tmp/commands 2>/dev/null; then CMDS=/tmp/commands
      else log "virtmiti.cmds= is not valid base64; using $CMDS"; fi ;;
    virtmiti.timeout=*) TIMEOUT=${w#virtmiti.timeout=} ;;
    virtmiti.shell=1) SHELL_AT_END=1 ;;
    virtmiti.hold=1) HOLD=1 ;;
  esac
done

COUNT=0
# emit NAME EXIT FILE: one frame on fd 3
emit() {
  echo "@@virtmiti-begin $1" >&3
  base64 < "$3" >&3
  uptime_s
  echo "@@virtmiti-end $1 $2 $(wc -c < "$3") $UP" >&3
  COUNT=$((COUNT + 1))
}
# run NAME COMMAND: stdout is the section, stderr a ".stderr" section when not empty
run() {
  log "run $1: $2"
  timeout -s KILL "$TIMEOUT" sh -c "$2" </dev/null >/tmp/out 2>/tmp/err
  rc=$?
  emit "$1" "$rc" /tmp/out
  [ -s /tmp/err ] && emit "$1.stderr" "$rc" /tmp/err
  log "done $1: exit $rc"
}
# run_framed NAME COMMAND: the command prints whole frames itself (virtmiti-guest batch, one node
# process for several agent commands): they go out as they are and count; then section NAME
# carries its exit code (empty body) and its stderr. A kill leaves the frames written before it.
# Its limit is the per-command one times the commands it runs (words "::" + 1).
run_framed() {
  log "run $1 (framed): $2"
  n=1; for w in $2; do [ "$w" = "::" ] && n=$((n + 1)); done
  timeout -s KILL "$((TIMEOUT * n))" sh -c "$2" </dev/null >/tmp/out 2>/tmp/err
  rc=$?
  cat /tmp/out >&3
  COUNT=$((COUNT + $(grep -c '^@@virtmiti-end ' /tmp/out)))
  : > /tmp/empty
  emit "$1" "$rc" /tmp/empty
  [ -s /tmp/err ] && emit "$1.stderr" "$rc" /tmp/err
  log "done $1: exit $rc"
}

uptime_s; echo "@@virtmiti-hello 1 $UP" >&3
run insmod.msr "insmod /lib/modules/virtmiti/msr.ko"
run insmod.cpuid "insmod /lib/modules/virtmiti/cpuid.ko"
# Start-up hooks of image variants (udev/50-udev.sh of the udev image: systemd-udevd, unit results).
for h in /etc/virtmiti/init.d/*; do [ -x "$h" ] && { log "hook $h"; "$h"; }; done
TAB=$(printf '\t')
while IFS="$TAB" read -r name cmd kind; do
  case "$name" in ''|'#'*) continue ;; esac
  if [ "$kind" = frames ]; then run_framed "$name" "$cmd"; else run "$name" "$cmd"; fi
done < "$CMDS"
uptime_s; echo "@@virtmiti-done $COUNT $UP" >&3
exec 3>&-   # last close of the tty waits for its output to drain
log "all sections sent"
if [ "$SHELL_AT_END" = 1 ]; then setsid cttyhack sh; fi
if [ "$HOLD" = 1 ]; then log "holding for the host (QMP quit ends this VM)"; while :; do sleep 3600; done; fi
sync
poweroff -f
