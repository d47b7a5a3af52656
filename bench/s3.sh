#!/usr/bin/env bash
# s3.sh - an S3 volume against a local radosgw: throughput and traffic.
#
#   1 GiB written sequentially (dd, fsync, then umount: everything
#   uploaded), then read back cold (local cache wiped, page cache dropped);
#   1,000 files of 4 KiB created, listed (ls -l after a cache wipe), read
#   and deleted.
#
# Each phase is one mount session, and the S3 backend logs the session's
# traffic when it closes (requests per method, bytes sent and received):
# the table shows that line's figures for every phase.
#
# Uses the server of the environment when METAFUSE_S3_ENDPOINT and
# METAFUSE_S3_BUCKET are set (with AWS_* keys), else starts one with
# scripts/s3server.sh and stops it at the end.  Needs root (drop_caches)
# and build/metafuse (METAFUSE_BIN overrides).  SIZE_MB=N changes the
# 1 GiB; FILES=N the 1,000.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${METAFUSE_BIN:-$PWD/build/metafuse}
SIZE_MB=${SIZE_MB:-1024}
FILES=${FILES:-1000}
# shellcheck source=bench/s3-server.sh
. bench/s3-server.sh
EP=$METAFUSE_S3_ENDPOINT
STORE=s3://$METAFUSE_S3_BUCKET/bench-$(date +%s)-$$
OPTS="endpoint=$EP,cache_dir=$W/cache,writeback_delay=1"

now() { date +%s.%N; }
mount_vol() { "$BIN" mount -o "$OPTS" "$STORE" "$W/mnt"; }
# umount, then print the traffic line of the session that just ended
umount_vol() {
	"$BIN" umount "$W/mnt"
	grep ' s3: .* requests' "$W/cache/metafuse.log" | tail -n 1 |
		sed -E 's/.*: ([0-9]+) GET, ([0-9]+) PUT, ([0-9]+) HEAD, ([0-9]+) DELETE, ([0-9]+) POST requests \(([0-9]+) retried\); ([0-9]+) bytes sent, ([0-9]+) received/\1 \2 \3 \4 \5 \6 \7 \8/'
}
cold() {
	rm -rf "$W/cache"
	sync
	echo 3 >/proc/sys/vm/drop_caches
}
row() { # name seconds rate "traffic"
	# shellcheck disable=SC2086
	set -- "$1" "$2" "$3" $4
	printf '%-22s %8.2f %12s %6s %6s %6s %6s %6s %7s %12s %12s\n' \
		"$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "${10}" "${11}"
}

"$BIN" mkfs -o "endpoint=$EP" "$STORE" >/dev/null
head -c $((SIZE_MB << 20)) /dev/urandom >"$W/src"

printf '%-22s %8s %12s %6s %6s %6s %6s %6s %7s %12s %12s\n' phase seconds \
	rate GET PUT HEAD DELETE POST retried "bytes sent" "bytes recv"

mount_vol
t0=$(now)
dd if="$W/src" of="$W/mnt/big" bs=1M conv=fsync status=none
t=$(echo "$(now) - $t0" | bc -l)
tr=$(umount_vol)
t=$(echo "$(now) - $t0" | bc -l)
row "write ${SIZE_MB} MiB+umount" "$t" \
	"$(printf '%.1f MB/s' "$(echo "$SIZE_MB / $t" | bc -l)")" "$tr"

cold
mount_vol
t0=$(now)
cat "$W/mnt/big" >/dev/null
t=$(echo "$(now) - $t0" | bc -l)
tr=$(umount_vol)
row "read ${SIZE_MB} MiB cold" "$t" \
	"$(printf '%.1f MB/s' "$(echo "$SIZE_MB / $t" | bc -l)")" "$tr"
mount_vol
cmp -s "$W/src" "$W/mnt/big" || echo "s3.sh: the file read back differs" >&2
umount_vol >/dev/null

mount_vol
t0=$(now)
mkdir "$W/mnt/small"
for i in $(seq "$FILES"); do
	# distinct contents: identical blocks would be stored once
	head -c 4096 /dev/urandom >"$W/mnt/small/f$i"
done
t=$(echo "$(now) - $t0" | bc -l)
tr=$(umount_vol)
t=$(echo "$(now) - $t0" | bc -l)
row "create $FILES x 4 KiB" "$t" \
	"$(printf '%.0f files/s' "$(echo "$FILES / $t" | bc -l)")" "$tr"

cold
mount_vol
t0=$(now)
# ls -l: a listing with a stat of every entry, what a user does
# shellcheck disable=SC2010
n=$(ls -l "$W/mnt/small" | grep -c '^-')
t=$(echo "$(now) - $t0" | bc -l)
tr=$(umount_vol)
[ "$n" -eq "$FILES" ] || echo "s3.sh: listed $n files, want $FILES" >&2
row "list (cold)" "$t" "$n files" "$tr"

mount_vol
t0=$(now)
cat "$W/mnt/small/"* >/dev/null
t=$(echo "$(now) - $t0" | bc -l)
tr=$(umount_vol)
row "read $FILES (cold)" "$t" \
	"$(printf '%.0f files/s' "$(echo "$FILES / $t" | bc -l)")" "$tr"

mount_vol
t0=$(now)
rm -r "$W/mnt/small"
t=$(echo "$(now) - $t0" | bc -l)
tr=$(umount_vol)
t=$(echo "$(now) - $t0" | bc -l)
row "delete $FILES+umount" "$t" \
	"$(printf '%.0f files/s' "$(echo "$FILES / $t" | bc -l)")" "$tr"
