#!/usr/bin/env bash
# s3-ceiling.sh - how fast can anything write 1 GiB to this S3 server, and
# where does the CPU go?  Interleaved, RUNS times (default 3):
#
#   ceiling   store_tool putrate: 256 PUTs of 4 MiB from memory, 4 threads,
#             over metafuse's own S3 client (no FUSE, no cache, no hashing
#             of block names): what the server takes at best;
#   metafuse  dd of 1 GiB (1 MiB writes, fsync at the end) into an S3
#             volume (4 MiB blocks, the default mount options);
#   s3fs      the same dd into s3fs-fuse on the same server.
#
# For each: wall seconds, MB/s, and the CPU seconds (user + system) spent
# meanwhile by the client, by radosgw and by the OSD, from /proc.  On a
# machine where the server shares the cores, the server's own CPU per GiB
# bounds every client: the ceiling row shows that bound, and floor_s is
# the row's server CPU spread over all cores (a client that used no CPU
# at all could not be faster).  Each run ends with a verdict: whether
# twice s3fs's speed (half its time) is above the floor of the run's
# cheapest row, i.e. whether any client could reach it on this machine.
#
# Uses the server of the environment when METAFUSE_S3_ENDPOINT and
# METAFUSE_S3_BUCKET are set (with AWS_* keys), else starts one with
# scripts/s3server.sh.  Needs root, s3fs (apt-get install s3fs), and
# build/metafuse and build/tests/store_tool (METAFUSE_BIN and
# METAFUSE_STORE_TOOL override).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${METAFUSE_BIN:-$PWD/build/metafuse}
TOOL=${METAFUSE_STORE_TOOL:-$PWD/build/tests/store_tool}
RUNS=${RUNS:-3}
command -v s3fs >/dev/null || {
	echo "s3-ceiling.sh: needs s3fs (apt-get install s3fs)" >&2
	exit 1
}
# shellcheck source=bench/s3-server.sh
. bench/s3-server.sh
EP=$METAFUSE_S3_ENDPOINT
B=$METAFUSE_S3_BUCKET
TICK=$(getconf CLK_TCK)
head -c $((1 << 30)) /dev/urandom >"$W/src"
printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$W/passwd"
chmod 600 "$W/passwd"

# cpu NAME...: the summed utime+stime ticks of every process so named
cpu() {
	local t=0 p n
	for n in "$@"; do
		for p in $(pgrep -x "$n" || true); do
			t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
		done
	done
	echo "$t"
}
secs() { echo "scale=2; $1 / $TICK" | bc -l; }

# measure LABEL CLIENT-PROCESS-NAME COMMAND...: one row
measure() {
	local label=$1 client=$2 c0 r0 o0 t0 t1
	shift 2
	settle
	sync
	echo 3 >/proc/sys/vm/drop_caches
	c0=$(cpu "$client")
	r0=$(cpu radosgw)
	o0=$(cpu ceph-osd)
	t0=$(date +%s.%N)
	"$@" >/dev/null
	t1=$(date +%s.%N)
	local wall srv r o
	wall=$(echo "$t1 - $t0" | bc -l)
	r=$(($(cpu radosgw) - r0))
	o=$(($(cpu ceph-osd) - o0))
	srv=$(secs $((r + o)))
	printf '%-9s %6s %8.2f %8.0f %8s %8s %8s %8.2f\n' "$label" "$run" \
		"$wall" "$(echo "1073.741824 / $wall" | bc -l)" \
		"$(secs $(($(cpu "$client") - c0)))" "$(secs "$r")" \
		"$(secs "$o")" "$(echo "$srv / $NCPU" | bc -l)"
	last_wall=$wall
	if [ -z "$min_srv" ] || [ "$(echo "$srv < $min_srv" | bc -l)" = 1 ]; then
		min_srv=$srv
	fi
}

# purge PREFIX: delete every object under it (the OSD keeps them in RAM)
purge() {
	"$TOOL" "s3://$B/$1" ls "" | cut -f1 | while read -r k; do
		"$TOOL" "s3://$B/$1" del "$k"
	done
}

dd_in() { dd if="$W/src" of="$1" bs=1M conv=fsync status=none; }

NCPU=$(nproc)
printf '%-9s %6s %8s %8s %8s %8s %8s %8s\n' target run seconds MB/s \
	client_s rgw_s osd_s floor_s
verdicts=()
for ((run = 1; run <= RUNS; run++)); do
	min_srv=
	measure ceiling store_tool "$TOOL" "s3://$B" putrate \
		"ceiling-$$-$run" 256 4M 4
	purge "ceiling-$$-$run"
	store=s3://$B/ceiling-mf-$$-$run
	"$BIN" mkfs -o "endpoint=$EP" "$store" >/dev/null
	rm -rf "$W/cache"
	"$BIN" mount -o "endpoint=$EP,cache_dir=$W/cache" "$store" "$W/mnt"
	measure metafuse metafuse dd_in "$W/mnt/big"
	"$BIN" umount "$W/mnt"
	purge "ceiling-mf-$$-$run"
	s3fs "$B:/ceiling-s3fs-$$-$run" "$W/mnt" -o \
		"url=$EP,use_path_request_style,passwd_file=$W/passwd"
	for ((i = 0; i < 100; i++)); do
		mountpoint -q "$W/mnt" && break
		sleep 0.1
	done
	measure s3fs s3fs dd_in "$W/mnt/big"
	# twice s3fs's speed is half its time; the least CPU the server
	# spent on a GiB in this run, spread over every core, is less time
	# than any client can take
	verdicts+=("$(printf 'run %s: 2x s3fs means %.2f s; the server alone needs %.2f s of %s cores: %s' \
		"$run" "$(echo "$last_wall / 2" | bc -l)" \
		"$(echo "$min_srv / $NCPU" | bc -l)" "$NCPU" \
		"$(if [ "$(echo "$last_wall / 2 < $min_srv / $NCPU" | bc -l)" = 1 ]; then
			echo "out of reach for any client"
		else
			echo "possible in principle"
		fi)")")
	rm -f "$W/mnt/big"
	fusermount3 -u "$W/mnt"
done
printf '%s\n' "${verdicts[@]}"
