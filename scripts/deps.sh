#!/usr/bin/env bash
# deps.sh - install what building and testing metafuse needs on Debian 12.
#
# Idempotent and quiet: it asks apt only for the packages that are missing,
# runs `apt-get update` first when there are any, and prints one line per
# install.  Run as root (or with sudo available).
set -euo pipefail

pkgs=(
	# build
	meson ninja-build pkg-config gcc libc6-dev
	libfuse3-dev libsqlite3-dev libzstd-dev libsodium-dev libssl-dev
	libcurl4-openssl-dev libxml2-dev
	# run
	fuse3
	# test
	python3 python3-pytest python3-pytest-timeout attr util-linux
	procps coreutils
	# test: counting the requests the daemon reads (tests/e2e/test_posix.py)
	strace
	# test: the man page renders (tests/e2e/test_help.py)
	man-db groff-base
	# test: certificates for the HTTPS tests (tests/e2e/test_s3_config.py)
	openssl
	# test: zstd frames in the store's objects (tests/e2e/test_encrypt_scan.py)
	zstd
	# test: the S3 server (scripts/s3server.sh)
	ceph-mon ceph-osd ceph-common radosgw curl
)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if ((${#missing[@]})); then
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		sudo=(sudo)
	fi
	echo "deps.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	log=$(mktemp)
	if ! { "${sudo[@]}" apt-get update -qq &&
		"${sudo[@]}" apt-get install -y -qq --no-install-recommends \
			"${missing[@]}"; } >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		echo "deps.sh: apt-get failed" >&2
		exit 1
	fi
	rm -f "$log"
fi

# /dev/fuse must exist for the mounts the tests make.
if [ ! -e /dev/fuse ]; then
	echo "deps.sh: warning: /dev/fuse is missing; mounted tests will fail" >&2
fi
