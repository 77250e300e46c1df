#!/usr/bin/env bash
# Fetch promtool (for the `--format prometheus` test) from Debian's `prometheus` package without
# installing it: installing would start a Prometheus server. `apt-get download` + `dpkg-deb -x`
# into a cache directory; prints the promtool path. Idempotent. Called by .ci/setup.
# Usage: scripts/get-promtool.sh [CACHE_DIR]   (default .cache/promtool)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.cache/promtool}"
bin="$dir/root/usr/bin/promtool"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then echo "$bin"; exit 0; fi
mkdir -p "$dir"
( cd "$dir" && rm -f prometheus_*.deb && apt-get download -qq prometheus >/dev/null )
deb=$(ls "$dir"/prometheus_*.deb | head -n1)
rm -rf "$dir/root"
dpkg-deb -x "$deb" "$dir/root"
rm -f "$deb"
"$bin" --version >/dev/null
echo "$bin"
