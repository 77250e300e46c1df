#!/bin/sh
# The udev variant of the live-guest initramfs (issue 11 item 5: a hot-plugged vCPU gets its CTRL
# through the installed udev rule and unit). The default image (build-initramfs.sh) stays as it
# is; this script packs a small second cpio archive and appends it to a copy of it (Linux unpacks
# concatenated, separately compressed cpio archives into one rootfs:
# Documentation/driver-api/early-userspace/buffer-format.rst). The overlay holds:
#   - the real systemd-udevd of Debian's udev package (this machine's binary and its ldd libs);
#   - the project's installed files, written by the agent itself: `node AGENT install-service
#     --prefix STAGE` (etc/udev/rules.d/90-virtmiti.rules, etc/systemd/system/virtmiti-report*.service,
#     usr/lib/virtmiti/virtmiti-guest.cjs);
#   - /bin/systemctl = systemctl-shim.mjs, a SHIM that runs the unit file's Exec lines (no systemd);
#   - /usr/bin/flock (util-linux; the unit's ExecStart, busybox has none) and its libs;
#   - udev/40-cpu-hotadd.rules (onlining a hot-added CPU: image policy) and udev/50-udev.sh (/init hook).
#
# Usage: build-udev-overlay.sh OUTDIR AGENT_BUNDLE BASE_IMAGE
# Output: the combined image path on stdout; progress and key=<key> on stderr.
# Reproducible and cached like build-initramfs.sh: key = sha256 over this script, the base image's
# name and size (its name carries its own key), and every overlay input's sha256, mode and path.
set -eu
export LC_ALL=C

die() { echo "build-udev-overlay: error: $*" >&2; exit 2; }
log() { echo "build-udev-overlay: $*" >&2; }

[ $# -eq 3 ] || die "usage: build-udev-overlay.sh OUTDIR AGENT_BUNDLE BASE_IMAGE"
OUTDIR=$1 BUNDLE=$2 BASE=$3
[ -f "$BUNDLE" ] || die "agent bundle not found: $BUNDLE"
[ -f "$BASE" ] || die "base image not found: $BASE"
HERE=$(cd "$(dirname "$0")" && pwd)
SELF="$HERE/build-udev-overlay.sh"
for tool in cpio zstd sha256sum ldd node; do command -v "$tool" >/dev/null 2>&1 || die "$tool not found"; done
UDEVD=/lib/systemd/systemd-udevd
[ -x "$UDEVD" ] || die "$UDEVD not found (apt-get install udev)"
FLOCK=$(command -v flock || true)
[ -n "$FLOCK" ] || die "flock not found (apt-get install util-linux)"
t0=$(date +%s.%N)

STAGE=$(mktemp -d)
LIST=$(mktemp)
trap 'rm -rf "$STAGE" "$LIST" "$LIST.key"' EXIT
add() { echo "$1 $2 $3" >> "$LIST"; }
add_libs() {
  ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    while read -r lib; do add "$lib" "$lib" 0755; done
}
add /lib/systemd/systemd-udevd "$UDEVD" 0755
add_libs "$UDEVD"
add /usr/bin/flock "$FLOCK" 0755
add_libs "$FLOCK"
add /bin/systemctl "$HERE/systemctl-shim.mjs" 0755
add /usr/lib/udev/rules.d/40-cpu-hotadd.rules "$HERE/udev/40-cpu-hotadd.rules" 0644
add /etc/virtmiti/init.d/50-udev "$HERE/udev/50-udev.sh" 0755

# The installed files, as `guest install-service` writes them (its own output, not a copy of it).
INST=$STAGE/install
mkdir -p "$INST"
node "$BUNDLE" install-service --prefix "$INST" >&2 || die "install-service --prefix failed"
[ -f "$INST/etc/udev/rules.d/90-virtmiti.rules" ] || die "install-service wrote no 90-virtmiti.rules"
(cd "$INST" && find . -type f | sort) | while read -r f; do
  add "${f#.}" "$INST/${f#./}" "$(stat -c %a "$INST/$f")"
done
sort -u -o "$LIST" "$LIST"

{
  echo "format 1"
  echo "script $(sha256sum < "$SELF" | cut -d' ' -f1)"
  echo "base $(basename "$BASE") $(wc -c < "$BASE")"
  while read -r dst src mode; do echo "file $dst $mode $(sha256sum < "$src" | cut -d' ' -f1)"; done < "$LIST"
} > "$LIST.key"
KEY=$(sha256sum < "$LIST.key" | cut -c1-16)
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
BASE_NAME=$(basename "$BASE"); BASE_NAME=${BASE_NAME%.zst}; BASE_NAME=${BASE_NAME%.cpio}  # the base is .cpio (uncompressed) or .cpio.zst
IMG=$OUTDIR/$BASE_NAME-udev-$KEY.cpio.zst
if [ -f "$IMG" ]; then
  log "cache hit key=$KEY image=$IMG"
  echo "$IMG"
  exit 0
fi
log "cache miss key=$KEY: building"

ROOT=$STAGE/root
umask 022
mkdir -p "$ROOT/run/udev" "$ROOT/etc/systemd/system/multi-user.target.wants"
while read -r dst src mode; do
  mkdir -p "$ROOT$(dirname "$dst")"
  cp -L "$src" "$ROOT$dst"
  chmod "$mode" "$ROOT$dst"
done < "$LIST"
# The enable symlink install-service made (a symlink: not in the file list above).
link=etc/systemd/system/multi-user.target.wants/virtmiti-report.service
[ -L "$INST/$link" ] && ln -s "$(readlink "$INST/$link")" "$ROOT/$link"
cp "$LIST.key" "$ROOT/etc/virtmiti/udev-inputs"
find "$ROOT" -exec touch -h -d @0 {} +

TMP=$(mktemp "$OUTDIR/.udev-$KEY.XXXXXX")
cp "$BASE" "$TMP"
(cd "$ROOT" && find . -mindepth 1 -print0 | sort -z | cpio --null --create --format=newc --reproducible --owner=0:0 --quiet) |
  zstd -q -T1 -3 -c >> "$TMP"
chmod 0644 "$TMP"
mv -f "$TMP" "$IMG"
# Keep the 2 newest udev images (each is a copy of a base image, ~40 MB).
ls -t "$OUTDIR"/initramfs-*-udev-*.cpio.zst 2>/dev/null | tail -n +3 | while read -r old; do rm -f "$old"; log "pruned $old"; done
t1=$(date +%s.%N)
log "built key=$KEY image=$IMG ($(wc -c < "$IMG") bytes, overlay $(($(wc -c < "$IMG") - $(wc -c < "$BASE"))) bytes, $(wc -l < "$LIST") files, $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s)"
echo "$IMG"
