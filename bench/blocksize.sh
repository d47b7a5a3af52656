#!/usr/bin/env bash
# blocksize.sh [RUNS] - compare block sizes of a local-store volume.
#
# For each block size (1M, 4M) and each of RUNS runs (default 3), on a
# fresh volume: write 512 MiB sequentially with fsync at the end, read it
# back cold (page cache dropped, local cache wiped, so every block comes
# from the store), then overwrite 2,000 random 4 KiB pieces and unmount.
# Prints the median of each figure and the bytes the store received for
# the random writes (the cost of a large block: a 4 KiB write uploads a
# whole block).  Needs root (drop_caches) and build/metafuse.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${METAFUSE_BIN:-$PWD/build/metafuse}
RUNS=${1:-3}
W=$(mktemp -d /tmp/mf-bench-XXXXXX)
trap 'fusermount3 -uz "$W/mnt" 2>/dev/null; rm -rf "$W"' EXIT
SIZE_MB=512
head -c $((SIZE_MB << 20)) /dev/urandom >"$W/src"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
store_bytes() { du -sb --apparent-size "$W/store/data" 2>/dev/null | cut -f1; }

printf '%-6s %12s %12s %12s %16s\n' block "write MB/s" "read MB/s" \
	"rand ops/s" "rand bytes up"
for bs in 1M 4M; do
	: >"$W/w"; : >"$W/r"; : >"$W/o"; : >"$W/u"
	for run in $(seq "$RUNS"); do
		rm -rf "$W/store" "$W/cache"; mkdir -p "$W/mnt"
		"$BIN" mkfs --block-size "$bs" "$W/store" >/dev/null
		"$BIN" mount -o "cache_dir=$W/cache,writeback_delay=1" \
			"$W/store" "$W/mnt"
		t0=$(now)
		dd if="$W/src" of="$W/mnt/f" bs=1M conv=fsync status=none
		t1=$(now)
		echo "$SIZE_MB / ($t1 - $t0)" | bc -l >>"$W/w"
		"$BIN" umount "$W/mnt"
		rm -rf "$W/cache"
		sync; echo 3 >/proc/sys/vm/drop_caches
		"$BIN" mount -o "cache_dir=$W/cache" "$W/store" "$W/mnt"
		t0=$(now)
		cat "$W/mnt/f" >/dev/null
		t1=$(now)
		echo "$SIZE_MB / ($t1 - $t0)" | bc -l >>"$W/r"
		before=$(store_bytes)
		t0=$(now)
		python3 - "$W/mnt/f" <<'PY'
import os, random, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
rng = random.Random(1)
size = os.fstat(fd).st_size
for _ in range(2000):
    os.pwrite(fd, os.urandom(4096), rng.randrange(0, size - 4096) & ~4095)
os.fsync(fd)
os.close(fd)
PY
		t1=$(now)
		echo "2000 / ($t1 - $t0)" | bc -l >>"$W/o"
		# bytes of objects written for the random writes: new data
		# objects minus those garbage-collected, measured as the
		# growth of the store before GC (umount collects)
		after=$(store_bytes)
		echo $((after - before)) >>"$W/u"
		"$BIN" umount "$W/mnt"
	done
	printf '%-6s %12.1f %12.1f %12.1f %16s\n' "$bs" \
		"$(median <"$W/w")" "$(median <"$W/r")" "$(median <"$W/o")" \
		"$(median <"$W/u")"
done
