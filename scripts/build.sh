#!/usr/bin/env bash
# build.sh [BUILDDIR [MESON-OPTIONS...]] - install what is missing, then
# configure (once) and compile metafuse.  Default: build/, release.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
dir=${1:-build}
shift || true
if [ ! -f "$dir/build.ninja" ]; then
	if (($#)); then
		meson setup "$dir" "$@" >/dev/null
	else
		meson setup "$dir" -Dbuildtype=release >/dev/null
	fi
fi
ninja -C "$dir" >/dev/null
echo "built $dir/metafuse"
