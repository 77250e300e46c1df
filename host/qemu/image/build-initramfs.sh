#!/bin/sh
# Build the live-Linux-guest initramfs (issue 7; DESIGN.md "Test tiers" 4) for one guest kernel
# (issue 15: its msr + cpuid modules and config, from the root host/qemu/kernels.ts resolved),
# busybox-static, nodejs (the node running here) and its shared libraries, msr-tools
# (rdmsr/wrmsr), cpuid, plus the agent bundle and host/qemu/image/init.sh as /init.
#
# Usage: build-initramfs.sh OUTDIR AGENT_BUNDLE MODULES_DIR CONFIG
#   OUTDIR        cache directory (e.g. .cache/qemu); images are kept as
#                 OUTDIR/initramfs-<key>.cpio with OUTDIR/initramfs-<key>.manifest beside it.
#   AGENT_BUNDLE  single .cjs file (dist/virtmiti-guest.cjs), installed as /virtmiti-guest.cjs
#   MODULES_DIR   the guest kernel's modules, .../modules/<release> (its name is the release):
#                 kernel/arch/x86/kernel/{msr,cpuid}.ko, .ko.xz or .ko.zst
#   CONFIG        the guest kernel's config, installed as /boot/config-<release>, where the agent
#                 reads CONFIG_KVM and friends (guest/probe.ts)
# Output: progress and the cache key on stderr; the image path on stdout.
#
# Reproducible: same inputs -> same bytes. The cache key is a sha256 over the kernel
# version, this script, the strip version and every input file's sha256, mode and image path
# (content only: never the host path it came from); all
# files get mtime 0, owner 0:0, a sorted file list, `cpio --reproducible` (renumbered
# inodes, no device numbers), left uncompressed (see below).
set -eu
export LC_ALL=C

die() { echo "build-initramfs: error: $*" >&2; exit 2; }
log() { echo "build-initramfs: $*" >&2; }

[ $# -eq 4 ] || die "usage: build-initramfs.sh OUTDIR AGENT_BUNDLE MODULES_DIR CONFIG"
OUTDIR=$1
BUNDLE=$2
MODDIR=$3
KCONFIG=$4
[ -f "$BUNDLE" ] || die "agent bundle not found: $BUNDLE"
[ -d "$MODDIR" ] || die "kernel modules directory not found: $MODDIR"
[ -f "$KCONFIG" ] || die "kernel config not found: $KCONFIG"
HERE=$(cd "$(dirname "$0")" && pwd)
SELF="$HERE/build-initramfs.sh"
INIT="$HERE/init.sh"
[ -f "$INIT" ] || die "missing $INIT"
for tool in cpio zstd sha256sum ldd; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install cpio zstd)"
done
# Uncompressed: under TCG the guest kernel took 12 s more to unpack the zstd image than the plain
# cpio (/init started at 23.5 s against 11.0 s of uptime, load 10 on 2 cores; issue 15 item 4),
# while QEMU copies the file into guest memory from the host. ~95 MB on disk per image.

t0=$(date +%s.%N)

# --- the guest kernel: named by the caller (never the host's `uname -r` or /boot) ------------
KVER=$(basename "$MODDIR")

# Module file: .ko, or .ko.xz / .ko.zst (newer Debian kernels compress modules; busybox
# insmod cannot read compressed ones, so they are decompressed into the image).
find_module() { # $1 = msr|cpuid
  for ext in ko ko.xz ko.zst; do
    f=$MODDIR/kernel/arch/x86/kernel/$1.$ext
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  die "module $1 not found under $MODDIR/kernel/arch/x86/kernel (kernel built with CONFIG_X86_MSR=y? then it needs no module)"
}

# --- input list: "image-path host-path mode" ---------------------------------------------
LIST=$(mktemp)
trap 'rm -f "$LIST"' EXIT
add() { echo "$1 $2 $3" >> "$LIST"; }
# Shared libraries of a dynamic executable, at the paths ldd names (the loader searches
# there), taken through symlinks (cp -L). "not a dynamic executable" -> nothing to add.
add_libs() {
  ldd "$1" 2>/dev/null | awk '
    $2 == "=>" && $3 ~ /^\// { print $3 }
    $1 ~ /^\// { print $1 }' | while read -r lib; do
    add "$lib" "$lib" 0755
  done
}
exe() { command -v "$1" 2>/dev/null || true; }

BUSYBOX=$(exe busybox)
[ -n "$BUSYBOX" ] || die "busybox not found (apt-get install busybox-static)"
if ldd "$BUSYBOX" >/dev/null 2>&1; then die "$BUSYBOX is dynamically linked (apt-get install busybox-static)"; fi
add /bin/busybox "$BUSYBOX" 0755

NODE=$(node -p process.execPath 2>/dev/null) || die "node not found"
add /usr/bin/node "$NODE" 0755
add_libs "$NODE"

for t in rdmsr wrmsr; do
  p=$(exe "$t"); [ -n "$p" ] || p=/usr/sbin/$t
  [ -x "$p" ] || die "$t not found (apt-get install msr-tools)"
  add "/usr/sbin/$t" "$p" 0755
  add_libs "$p"
done
CPUID_TOOL=$(exe cpuid)
if [ -n "$CPUID_TOOL" ]; then add /usr/bin/cpuid "$CPUID_TOOL" 0755; add_libs "$CPUID_TOOL"
else log "note: cpuid tool not found (apt-get install cpuid); image has none"; fi

MSR_KO=$(find_module msr)
CPUID_KO=$(find_module cpuid)
add /lib/modules/virtmiti/msr.ko "$MSR_KO" 0644
add /lib/modules/virtmiti/cpuid.ko "$CPUID_KO" 0644
add "/boot/config-$KVER" "$KCONFIG" 0644
add /virtmiti-guest.cjs "$BUNDLE" 0644
add /init "$INIT" 0755
sort -u -o "$LIST" "$LIST"

# node is copied stripped (its symbol table was 92% of a 108 MB image; .dynsym stays, which
# is all the loader needs; issue 15 item 4). binutils' strip: .ci/setup installs it.
if command -v strip >/dev/null 2>&1; then STRIP_ID=$(strip --version | head -n1)
else STRIP_ID=none; log "note: strip not found (apt-get install binutils); node goes in unstripped"; fi

# --- cache key ------------------------------------------------------------------------
KEYTEXT=$(mktemp)
trap 'rm -f "$LIST" "$KEYTEXT"' EXIT
{
  echo "format 1"
  echo "kver $KVER"
  echo "script $(sha256sum < "$SELF" | cut -d' ' -f1)"
  echo "busybox-applets $("$BUSYBOX" --list | sort | sha256sum | cut -d' ' -f1)"
  echo "strip $STRIP_ID"
  # Content only: the same files give the same key whatever path they were named by (a relative
  # and an absolute bundle path built two identical images before; issue 15 item 4).
  while read -r dst src mode; do
    echo "file $dst $mode $(sha256sum < "$src" | cut -d' ' -f1)"
  done < "$LIST"
} > "$KEYTEXT"
KEY=$(sha256sum < "$KEYTEXT" | cut -c1-16)
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
IMG=$OUTDIR/initramfs-$KEY.cpio
MANIFEST=$OUTDIR/initramfs-$KEY.manifest

if [ -f "$IMG" ] && [ -f "$MANIFEST" ]; then
  t1=$(date +%s.%N)
  log "cache hit key=$KEY kver=$KVER image=$IMG ($(wc -c < "$IMG") bytes, checked in $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s)"
  echo "$IMG"
  exit 0
fi
log "cache miss key=$KEY kver=$KVER: building"

# --- stage ------------------------------------------------------------------------------
STAGE=$(mktemp -d "$OUTDIR/stage-$KEY.XXXXXX")
trap 'rm -f "$LIST" "$KEYTEXT"; rm -rf "$STAGE"' EXIT
umask 022
for d in bin sbin usr/bin usr/sbin proc sys dev tmp run root etc/virtmiti lib/modules/virtmiti; do
  mkdir -p "$STAGE/$d"
done
while read -r dst src mode; do
  mkdir -p "$STAGE$(dirname "$dst")"
  if [ "$dst" = /usr/bin/node ] && [ "$STRIP_ID" != none ]; then strip --strip-all -o "$STAGE$dst" "$src"
  else case "$src" in
    *.ko.xz)  xz -dc < "$src" > "$STAGE$dst" ;;
    *.ko.zst) zstd -qdc < "$src" > "$STAGE$dst" ;;
    *)        cp -L "$src" "$STAGE$dst" ;;
  esac; fi
  chmod "$mode" "$STAGE$dst"
done < "$LIST"
# busybox applets as symlinks (everything in /bin; the tools above live in /usr)
for a in $("$BUSYBOX" --list | sort); do
  [ "$a" = busybox ] && continue
  [ -e "$STAGE/bin/$a" ] || ln -s busybox "$STAGE/bin/$a"
done
# Default command list (used when the kernel command line has no virtmiti.cmds=):
# one "name<TAB>shell command[<TAB>frames]" per line; host/qemu/commands.ts makes the same list.
TAB=$(printf '\t')
cat > "$STAGE/etc/virtmiti/commands" <<CMDS
cmdline${TAB}cat /proc/cmdline
spectre_v2${TAB}cat /sys/devices/system/cpu/vulnerabilities/spectre_v2
cpus${TAB}ls /dev/cpu
agent${TAB}node /virtmiti-guest.cjs batch probe --json :: report --json :: selftest --tap${TAB}frames
rdmsr.0x10a${TAB}virtmiti-rdmsr-all 0x10a
rdmsr.0x48${TAB}virtmiti-rdmsr-all 0x48
rdmsr.0x50000000${TAB}virtmiti-rdmsr-all 0x50000000
rdmsr.0x50000001${TAB}virtmiti-rdmsr-all 0x50000001
rdmsr.0x50000002${TAB}virtmiti-rdmsr-all 0x50000002
CMDS
# rdmsr on every online CPU (msr-tools' -a stops at the first CPU that faults): one line
# "<cpu> <16 hex digits>" or "<cpu> ERR" per CPU, exit 1 if any failed (host/qemu/commands.ts
# parses it). A #GP surfaces as EIO through the msr driver (contract/CONTRACT.md section 3).
cat > "$STAGE/usr/bin/virtmiti-rdmsr-all" <<'RDMSR'
#!/bin/sh
r=0
for d in /dev/cpu/[0-9]*; do
  c=${d##*/}
  v=$(rdmsr -p "$c" -0 -x "$1") || { r=1; v=ERR; }
  echo "$c $v"
done
exit $r
RDMSR
chmod 0755 "$STAGE/usr/bin/virtmiti-rdmsr-all"
cp "$KEYTEXT" "$STAGE/etc/virtmiti/inputs"; chmod 0644 "$STAGE/etc/virtmiti/inputs"
find "$STAGE" -exec chmod go-w {} + 
find "$STAGE" -exec touch -h -d @0 {} +

# --- pack -------------------------------------------------------------------------------
TMPIMG=$(mktemp "$OUTDIR/.initramfs-$KEY.XXXXXX")
(cd "$STAGE" && find . -mindepth 1 -print0 | sort -z |
  cpio --null --create --format=newc --reproducible --owner=0:0 --quiet) > "$TMPIMG"
chmod 0644 "$TMPIMG"
mv -f "$TMPIMG" "$IMG"
{ echo "key $KEY"; echo "kernel $KVER"; cat "$KEYTEXT"; } > "$MANIFEST"
# Keep the 6 newest images: every agent bundle change makes one entry per matrix kernel (3 today,
# ~95 MB each); older zstd-packed ones (.cpio.zst) go the same way.
ls -t "$OUTDIR"/initramfs-*.cpio "$OUTDIR"/initramfs-*.cpio.zst 2>/dev/null | tail -n +7 | while read -r old; do
  rm -f "$old" "${old%.cpio*}.manifest"; log "pruned old cache entry $old"
done
t1=$(date +%s.%N)
log "built key=$KEY image=$IMG ($(wc -c < "$IMG") bytes, $(wc -l < "$LIST") input files, $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s)"
echo "$IMG"
