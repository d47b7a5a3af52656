#!/bin/bash
# distant.sh - what a store far away costs the operations that read many
# objects one after the other: a mount on a fresh machine (an empty
# cache) restoring ENTRIES journal entries past the checkpoint, and
# fsck, plain and --verify-data, of OBJECTS data objects.  Every get,
# head and list of the store takes DELAY_MS, a distant service's round
# trip, simulated by the test suite's fault wrapper
# (METAFUSE_TEST_STORE_READ_DELAY_US) over a local store.
#
#   bash bench/distant.sh                  # 200 entries, 1000 objects,
#                                          # 20 ms, 3 runs
#   ENTRIES=500 OBJECTS=2000 DELAY_MS=30 RUNS=5 bash bench/distant.sh
#   METAFUSE_ALT_BIN=/path/to/other/metafuse bash bench/distant.sh
#
# With METAFUSE_ALT_BIN, the other build does the same on the same volume
# in the same runs, interleaved.  Prints seconds and their medians.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${METAFUSE_BIN:-$PWD/build/metafuse}
ALT=${METAFUSE_ALT_BIN:-}
ENTRIES=${ENTRIES:-200}
OBJECTS=${OBJECTS:-1000}
DELAY_MS=${DELAY_MS:-20}
RUNS=${RUNS:-3}
W=$(mktemp -d /tmp/mf-distant-XXXXXX)
trap 'fusermount3 -uz "$W/mnt" 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W/mnt"

"$BIN" mkfs --block-size 65536 "$W/store" >/dev/null
"$BIN" mount -o "cache_dir=$W/cache,journal_interval=0.1" "$W/store" \
	"$W/mnt"
# OBJECTS blocks of 64 KiB, each its own object
head -c $((OBJECTS * 65536)) /dev/urandom >"$W/mnt/file"
# one journal entry per sync: a directory made every 120 ms, synced every
# 100 ms
for ((i = 0; i < ENTRIES; i++)); do
	mkdir "$W/mnt/d$i"
	sleep 0.12
done
"$BIN" umount "$W/mnt"
echo "store: $(find "$W/store/data" -type f | wc -l) objects," \
	"$(find "$W/store/meta" -name 'jrnl-*' | wc -l) journal entries" \
	"past the checkpoint; a read request every ${DELAY_MS} ms"

delayed() {
	METAFUSE_TEST_STORE_READ_DELAY_US=$((DELAY_MS * 1000)) "$@"
}

# seconds of "$@", its output checked by the caller's pattern
timed() {
	local want=$1 t0 t1 out
	shift
	t0=$(date +%s.%N)
	out=$("$@" 2>&1) || true
	t1=$(date +%s.%N)
	if ! grep -q -- "$want" <<<"$out"; then
		echo "distant.sh: $* did not say '$want':" >&2
		echo "$out" >&2
		exit 1
	fi
	echo "$t1 - $t0" | bc -l
}

restore() {
	local bin=$1 t0 t1 n
	# a copy: the first mount after a restore folds the journal into a
	# checkpoint
	rm -rf "$W/cache" "$W/copy"
	cp -a "$W/store" "$W/copy"
	t0=$(date +%s.%N)
	delayed "$bin" mount -o "cache_dir=$W/cache" "$W/copy" "$W/mnt"
	t1=$(date +%s.%N)
	n=$(find "$W/mnt" -mindepth 1 -maxdepth 1 -name 'd*' | wc -l)
	"$bin" umount "$W/mnt"
	if [ "$n" != "$ENTRIES" ]; then
		echo "distant.sh: $bin restored $n of $ENTRIES directories" >&2
		exit 1
	fi
	echo "$t1 - $t0" | bc -l
}

one() { # bin label: a line of the three figures
	local bin=$1 label=$2 r f v
	r=$(restore "$bin")
	f=$(timed "$OBJECTS object(s) checked" delayed "$bin" fsck "$W/store")
	v=$(timed "$OBJECTS object(s) verified" delayed "$bin" fsck \
		--verify-data "$W/store")
	printf '%-8s %3d %10.2f %10.2f %14.2f\n' "$label" "$run" "$r" "$f" "$v"
	echo "$r $f $v" >>"$W/$label"
}

median() { # column
	awk -v c="$1" '{print $c}' | sort -n |
		awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

printf '%-8s %3s %10s %10s %14s\n' build run restore_s fsck_s verify_s
for ((run = 1; run <= RUNS; run++)); do
	one "$BIN" metafuse
	[ -n "$ALT" ] && one "$ALT" alt
done
for label in metafuse alt; do
	[ -f "$W/$label" ] || continue
	printf '%-8s %3s %10.2f %10.2f %14.2f\n' "$label" median \
		"$(median 1 <"$W/$label")" "$(median 2 <"$W/$label")" \
		"$(median 3 <"$W/$label")"
done
