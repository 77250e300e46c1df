#!/usr/bin/env bash
# Builds qemu-system-x86_64 from Debian 12's own QEMU source package with virtmiti's patch series
# (host/qemu/patches/*.patch, in name order) applied, cached outside the clone (issue 11 item 4):
#   $VIRTMITI_QEMU_CACHE (default /var/cache/virtmiti/qemu)/<source-version>-<sha256 of patches>/
# Prints the binary's path on stdout; what it did on stderr. A second run with the same patches
# costs nothing (no network: the last version built for these patches is remembered).
# The source comes through a private apt sources list and state dir (never the system's):
# deb-src bookworm + bookworm-security, `apt-get source --download-only`, `dpkg-source -x`
# (applies Debian's own patches; the bare orig tarball fails configure, KVM-NOTES.md).
#   VIRTMITI_QEMU_REFRESH=1  ask apt for a newer source version even if a build is cached
#   --source-only            stop after unpacking + patching; print the source tree's path
#   --cached-only            print the binary built for these patches and exit 0, or exit 3 (no build,
#                            no network; what the qemu tier calls)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
patches="$here/patches"
cache="${VIRTMITI_QEMU_CACHE:-/var/cache/virtmiti/qemu}"
source_only=0
cached_only=0
[ "${1:-}" = "--source-only" ] && source_only=1
[ "${1:-}" = "--cached-only" ] && cached_only=1
log() { echo "build-patched: $*" >&2; }
die() { echo "build-patched: error: $*" >&2; exit 1; }

shopt -s nullglob
series=("$patches"/*.patch)
[ ${#series[@]} -gt 0 ] || die "no patches in $patches"
# The key covers the patches' names and contents, and this script (it decides configure flags).
phash="$( (for p in "${series[@]}"; do basename "$p"; sha256sum <"$p"; done; sha256sum <"$0") | sha256sum | cut -c1-16)"
mkdir -p "$cache"
remembered="$cache/last-$phash"
if [ $source_only -eq 0 ] && [ "${VIRTMITI_QEMU_REFRESH:-0}" != 1 ] && [ -f "$remembered" ]; then
  bin="$(cat "$remembered")"
  if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
    log "cached: $bin (patches $phash)"
    echo "$bin"; exit 0
  fi
fi
if [ $cached_only -eq 1 ]; then log "no build for patches $phash under $cache (run host/qemu/build-patched.sh)"; exit 3; fi

# --- private apt: sources list, state and cache under $cache/apt ---------------------------
apt="$cache/apt"
mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/etc"
cat >"$apt/etc/sources.list" <<'EOF'
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
EOF
aptopts=(-o "Dir::Etc::SourceList=$apt/etc/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
  -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Dir::Cache::Archives=$apt/archives"
  -o "APT::Sandbox::User=root")
mkdir -p "$apt/cache"
log "apt-get update (private list $apt/etc/sources.list)"
apt-get "${aptopts[@]}" -qq update >&2 || die "apt-get update failed"
version="$(apt-cache "${aptopts[@]}" showsrc qemu | awk '/^Version:/ { print $2 }' | sort -V | tail -1)"
[ -n "$version" ] || die "no qemu source package in the private list"
case "$version" in 1:7.2+dfsg-*|7.2+dfsg-*) ;; *) die "unexpected qemu source version $version (the series is for 7.2+dfsg)";; esac
vkey="${version#*:}"
key="$vkey-$phash"
out="$cache/$key"
bin="$out/qemu-system-x86_64"
if [ $source_only -eq 0 ] && [ -x "$bin" ]; then
  echo "$bin" >"$remembered"
  log "cached: $bin"; echo "$bin"; exit 0
fi

# --- source: download once per version, unpack fresh per key -------------------------------
dl="$cache/src/$vkey"
mkdir -p "$dl"
dscs=("$dl"/*.dsc)
if [ ${#dscs[@]} -eq 0 ]; then
  log "apt-get source --download-only qemu=$version"
  (cd "$dl" && apt-get "${aptopts[@]}" -qq source --download-only "qemu=$version" >&2) || die "apt-get source failed"
fi
dscs=("$dl"/*.dsc)
[ ${#dscs[@]} -eq 1 ] || die "expected one .dsc in $dl"
dsc="${dscs[0]}"
work="$cache/work-$key"
rm -rf "$work"; mkdir -p "$work"
log "dpkg-source -x $(basename "$dsc")"
dpkg-source -q -x "$dsc" "$work/qemu" >&2 || die "dpkg-source -x failed"
for p in "${series[@]}"; do
  # --forward + --no-backup: a patch that does not apply exactly fails the build loudly.
  patch -d "$work/qemu" -p1 --forward --no-backup-if-mismatch -s <"$p" >&2 || die "patch $(basename "$p") does not apply to qemu $version"
  log "applied $(basename "$p")"
done
if [ $source_only -eq 1 ]; then echo "$work/qemu"; exit 0; fi

# --- build ------------------------------------------------------------------------------------
command -v meson >/dev/null && command -v ninja >/dev/null || die "need meson ninja-build libglib2.0-dev libpixman-1-dev zlib1g-dev libfdt-dev"
t0=$(date +%s)
mkdir -p "$work/qemu/build"
(cd "$work/qemu/build" && ../configure --target-list=x86_64-softmmu --without-default-features --disable-docs \
  --disable-werror --enable-tcg --enable-kvm --disable-install-blobs --meson=/usr/bin/meson >"$work/configure.log" 2>&1) \
  || { tail -20 "$work/configure.log" >&2; die "configure failed (log $work/configure.log)"; }
log "ninja -j$(nproc) qemu-system-x86_64 (a few minutes)"
ninja -C "$work/qemu/build" -j"$(nproc)" qemu-system-x86_64 >"$work/ninja.log" 2>&1 \
  || { grep -m20 -B2 -A6 'error' "$work/ninja.log" >&2 || tail -30 "$work/ninja.log" >&2; die "build failed (log $work/ninja.log)"; }
rm -rf "$out.tmp"; mkdir -p "$out.tmp"
cp "$work/qemu/build/qemu-system-x86_64" "$out.tmp/"
printf 'source qemu %s\npatches %s\n' "$version" "$phash" >"$out.tmp/BUILD-INFO"
for p in "${series[@]}"; do basename "$p" >>"$out.tmp/BUILD-INFO"; done
rm -rf "$out"; mv "$out.tmp" "$out"
rm -rf "$work"
echo "$bin" >"$remembered"
log "built $bin in $(( $(date +%s) - t0 )) s"
echo "$bin"
