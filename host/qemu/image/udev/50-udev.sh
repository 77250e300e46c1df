#!/bin/busybox sh
# /etc/virtmiti/init.d/50-udev of the QEMU tier's udev image (build-udev-overlay.sh): started by
# /init before its command list. Starts the real systemd-udevd (Debian's udev package) with the
# rules in /etc/udev/rules.d (the installed 90-virtmiti.rules) and /usr/lib/udev/rules.d (the
# image's CPU onlining rule), and forwards every finished unit start of the systemctl shim
# (/run/systemctl-shim/SEQ.result, .log) to the host over the THIRD serial port, /dev/ttyS2, in
# /init's frame format (host/qemu/frames.ts): "unit.K" is the start's log (exit = its status),
# "report.K" the agent's /run/virtmiti/report.json right after it. The stream has a hello line
# and no done line: it stays open until QEMU quits.
log() { echo "virtmiti-udev: $*"; }
mkdir -p /run/udev /run/systemctl-shim
if ! /lib/systemd/systemd-udevd --daemon --resolve-names=never; then log "systemd-udevd did not start"; exit 0; fi
EV=/dev/ttyS2
if ! { [ -c "$EV" ] && stty -F "$EV" raw -echo 115200 2>/dev/null; }; then log "no usable $EV: unit results are not forwarded"; exit 0; fi
log "udevd running; unit results go to $EV"
(
  exec 4>"$EV" </dev/null >/dev/null 2>&1
  up() { cut -d' ' -f1 /proc/uptime; }
  emit() { # NAME EXIT FILE (the same frames as /init's emit)
    echo "@@virtmiti-begin $1" >&4
    base64 < "$3" >&4
    echo "@@virtmiti-end $1 $2 $(wc -c < "$3") $(up)" >&4
  }
  echo "@@virtmiti-hello 1 $(up)" >&4
  k=0
  seen=' '
  while :; do
    for r in /run/systemctl-shim/*.result; do
      [ -f "$r" ] || continue
      case "$seen" in *" $r "*) continue ;; esac
      seen="$seen$r "
      k=$((k + 1))
      emit "unit.$k" "$(cut -d' ' -f1 "$r")" "${r%.result}.log"
      if [ -f /run/virtmiti/report.json ]; then emit "report.$k" 0 /run/virtmiti/report.json
      else : > /tmp/empty; emit "report.$k" 1 /tmp/empty; fi
    done
    sleep 0.3
  done
) &
exit 0
