#!/usr/bin/env bash
# Fetches one Debian kernel package into a content-keyed cache outside the clone (issue 15 item 1),
# never installing it: a private apt sources list and state per suite, `apt-get update`,
# `apt-get download`, `dpkg-deb --fsys-tarfile` (only the files the guest image needs).
#
# Usage: fetch-kernel.sh [--cached-only] SUITE PACKAGE[=VERSION]
#   SUITE    bookworm, trixie, sid, trixie-backports, ... (deb.debian.org/debian, main)
#   PACKAGE  a kernel image package or the meta package (linux-image-amd64); its kernel Depends
#            (linux-image-*, linux-binary-*, linux-modules-*, linux-base-*) are fetched too: 6.x keeps
#            vmlinuz at /boot/vmlinuz-<ver>, Debian's 7.x at /usr/lib/modules/<ver>/vmlinuz
#            (linux-binary-*), its modules in linux-modules-* and its config in linux-base-*.
#   =VERSION pin: a version the mirror no longer has is an error naming the package (exit 2).
# Prints the kernel's root directory on stdout: ROOT/kernel.env (RELEASE, VMLINUZ, MODULES, CONFIG,
# SUITE, PACKAGE, VERSION, DEBS = "pkg=version=sha256 ..."), the kernel, its msr/cpuid modules and
# config-<ver>. Progress on stderr. Exit 2 input error (unknown or vanished package), 3 not cached
# (--cached-only), 1 infrastructure error (network, apt, dpkg).
# Environment: VIRTMITI_KERNEL_CACHE (default /var/cache/virtmiti/kernels);
#   VIRTMITI_KERNEL_REFRESH=1 asks the mirror again even when this SUITE+PACKAGE was resolved before
#   (otherwise a second run does no network at all).
set -euo pipefail
export LC_ALL=C
log() { echo "fetch-kernel: $*" >&2; }
die() { echo "fetch-kernel: error: $2" >&2; exit "$1"; }

cached_only=0
[ "${1:-}" = "--cached-only" ] && { cached_only=1; shift; }
[ $# -eq 2 ] || die 2 "usage: fetch-kernel.sh [--cached-only] SUITE PACKAGE[=VERSION]"
suite=$1 spec=$2
[[ $suite =~ ^[a-z][a-z0-9-]{1,40}$ ]] || die 2 "bad suite name: $suite"
[[ $spec =~ ^[a-z0-9][a-z0-9.+-]*(=[A-Za-z0-9.+~:-]+)?$ ]] || die 2 "bad package spec: $spec"
pkg=${spec%%=*}
pin=; [[ $spec == *=* ]] && pin=${spec#*=}
cache=${VIRTMITI_KERNEL_CACHE:-/var/cache/virtmiti/kernels}
mkdir -p "$cache/resolved"
remembered="$cache/resolved/$suite+$spec"

# A root is usable when its kernel.env names files that exist.
usable() { [ -f "$1/kernel.env" ] && (. "$1/kernel.env" && [ -f "$1/$VMLINUZ" ] && [ -d "$1/$MODULES" ] && [ -f "$1/$CONFIG" ]); }

if [ "${VIRTMITI_KERNEL_REFRESH:-0}" != 1 ] && [ -f "$remembered" ]; then
  root=$(cat "$remembered")
  if usable "$root"; then log "cached: $suite $spec -> $root"; echo "$root"; exit 0; fi
fi
[ $cached_only -eq 1 ] && die 3 "$suite $spec not in $cache (run host/qemu/fetch-kernel.sh $suite $spec)"
# One fetch at a time per cache (setup and a tier run may both ask; they share the apt state).
exec 9>"$cache/.lock"
flock 9
if [ "${VIRTMITI_KERNEL_REFRESH:-0}" != 1 ] && [ -f "$remembered" ] && usable "$(cat "$remembered")"; then
  log "cached (fetched meanwhile): $suite $spec"; cat "$remembered"; exit 0
fi

# --- private apt for this suite: the URI of the system's own Debian sources -------------------
uri=$(sed -n 's/^URIs:[[:space:]]*\(http[^ ]*\/debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
[ -n "$uri" ] || uri=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$uri" ] || uri=http://deb.debian.org/debian
# Security suites live beside the archive (deb.debian.org/debian-security).
case "$suite" in *-security) uri=$uri-security ;; esac
apt="$cache/apt/$suite"
mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/cache" "$apt/etc"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" > "$apt/etc/sources.list"
aptopts=(-o "Dir::Etc::SourceList=$apt/etc/sources.list" -o "Dir::Etc::SourceParts=-"
  -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Dir::Cache::Archives=$apt/archives"
  -o "APT::Sandbox::User=root" -o "APT::Architecture=amd64" -o "Dir::State::Status=/dev/null")
log "apt-get update ($uri $suite main, private list $apt/etc/sources.list)"
apt-get "${aptopts[@]}" -qq update >&2 || die 1 "apt-get update failed for $uri $suite"

# Versions of a package in this suite, newest first.
versions() { apt-cache "${aptopts[@]}" show "$1" 2>/dev/null | awk '/^Version:/ { print $2 }' | sort -Vr -u; }
# Kernel packages a package depends on (first alternative of each Depends entry).
kdeps() {
  apt-cache "${aptopts[@]}" show "$1=$2" 2>/dev/null | awk -F': ' '/^Depends:/ { print $2; exit }' |
    tr ',' '\n' | sed 's/|.*//; s/(.*//; s/[[:space:]]//g' | grep -E '^linux-(image|binary|modules|base)-' || true
}

work=$(mktemp -d "$cache/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
debs=() want=("$pkg=$pin") seen=" "
found=0
for _ in 1 2 3 4; do
  [ ${#want[@]} -gt 0 ] || break
  next=()
  for w in "${want[@]}"; do
    p=${w%%=*} v=${w#*=}
    case "$seen" in *" $p "*) continue ;; esac
    seen="$seen$p "
    avail=$(versions "$p")
    [ -n "$avail" ] || die 2 "package $p is not in $suite ($uri): the matrix names a kernel the mirror does not have"
    if [ -z "$v" ]; then v=$(echo "$avail" | head -1)
    elif ! echo "$avail" | grep -qx -- "$v"; then die 2 "package $p=$v vanished from $suite ($uri has $(echo "$avail" | tr '\n' ' ')): update the pin in the matrix"; fi
    log "apt-get download $p=$v"
    (cd "$work" && apt-get "${aptopts[@]}" -qq download "$p=$v" >&2) || die 1 "apt-get download $p=$v failed"
    deb=$(ls "$work"/"${p}"_*.deb | head -1)
    debs+=("$deb")
    # grep without -q reads to the end (-q would kill dpkg-deb's tar with SIGPIPE under pipefail).
    if dpkg-deb -c "$deb" | grep -E '\./(boot/vmlinuz-|usr/lib/modules/[^/]+/vmlinuz$)' >/dev/null; then found=1; fi
    for d in $(kdeps "$p" "$v"); do next+=("$d="); done
  done
  want=("${next[@]+"${next[@]}"}")
done
[ $found -eq 1 ] || die 2 "no vmlinuz in $spec or the kernel packages it depends on ($suite)"

# --- content key: the debs' sha256s; extract only what the image needs ------------------------
lines=()
for d in "${debs[@]}"; do
  lines+=("$(dpkg-deb -f "$d" Package)=$(dpkg-deb -f "$d" Version)=$(sha256sum < "$d" | cut -d' ' -f1)")
done
key=$(printf '%s\n' "${lines[@]}" | sort | sha256sum | cut -c1-16)
root="$cache/$key"
if ! usable "$root"; then
  stage=$(mktemp -d "$cache/.stage-$key.XXXXXX")
  for d in "${debs[@]}"; do
    # vmlinuz, config, System.map-less; the modules the guest loads plus modules.* indexes.
    dpkg-deb --fsys-tarfile "$d" | tar -x -C "$stage" --wildcards --no-anchored \
      'vmlinuz*' 'config-*' 'lib/modules/*/config' '*/kernel/arch/x86/kernel/msr.ko*' '*/kernel/arch/x86/kernel/cpuid.ko*' 2>/dev/null || true
  done
  vmlinuz=$(cd "$stage" && { ls boot/vmlinuz-* usr/lib/modules/*/vmlinuz 2>/dev/null || true; } | head -1)
  [ -n "$vmlinuz" ] || die 1 "extracted $spec but found no vmlinuz"
  case "$vmlinuz" in boot/vmlinuz-*) release=${vmlinuz#boot/vmlinuz-} ;; *) release=$(basename "$(dirname "$vmlinuz")") ;; esac
  modules=; for m in "lib/modules/$release" "usr/lib/modules/$release"; do [ -d "$stage/$m/kernel" ] && modules=$m; done
  [ -n "$modules" ] || die 1 "$spec ($release): no msr/cpuid modules under lib/modules or usr/lib/modules"
  config=; for c in "boot/config-$release" "usr/lib/modules/$release/config" "lib/modules/$release/config"; do [ -f "$stage/$c" ] && config=$c; done
  [ -n "$config" ] || die 1 "$spec ($release): no config-$release in the package(s)"
  top=$(printf '%s\n' "${lines[@]}" | head -1)
  {
    echo "RELEASE='$release'"; echo "VMLINUZ='$vmlinuz'"; echo "MODULES='$modules'"; echo "CONFIG='$config'"
    echo "SUITE='$suite'"; echo "PACKAGE='$pkg'"; echo "VERSION='$(echo "$top" | cut -d= -f2)'"
    echo "DEBS='${lines[*]}'"
  } > "$stage/kernel.env"
  rm -rf "$root"; mv "$stage" "$root"
  log "extracted $release into $root ($(du -sh "$root" | cut -f1))"
fi
echo "$root" > "$remembered"
echo "$root"
