#!/usr/bin/env bash
# s3-concurrency.sh - how many uploads and connections an S3 volume needs.
#
# For each setting of upload_threads (parallel uploads, and parallel
# read-ahead fetches) and connections (the S3 backend's pool), interleaved
# over ROUNDS rounds: SIZE_MB written sequentially with fsync at the end
# (for metafuse: in the store), then read back cold (local cache wiped,
# page cache dropped); a third field sets the volume's block size (mkfs
# --block-size, default 4M as on any S3 volume).  s3fs-fuse writes the
# same file in each round as the reference.  Prints every measurement,
# then the median per setting.  The defaults (upload_threads=4,
# connections=16) were chosen from this with 1 MiB blocks; with 4 MiB
# ones, 8 upload threads wrote 1 GiB no faster than 4 (4.0-4.4 s either
# way, 3 rounds, 2026-11-26: the two cores are the limit).
#
# Uses the server of the environment when METAFUSE_S3_ENDPOINT and
# METAFUSE_S3_BUCKET are set (with AWS_* keys), else starts one with
# scripts/s3server.sh.  Needs root (drop_caches) and build/metafuse
# (METAFUSE_BIN overrides).  SIZE_MB (512), ROUNDS (3) and SETTINGS
# ("UPLOADS:CONNECTIONS[:BLOCK] ...") change the run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${METAFUSE_BIN:-$PWD/build/metafuse}
SIZE_MB=${SIZE_MB:-512}
ROUNDS=${ROUNDS:-3}
SETTINGS=${SETTINGS:-"2:16 4:16 8:16 16:16 4:4 16:32"}
# shellcheck source=bench/s3-server.sh
. bench/s3-server.sh
BUCKET=$METAFUSE_S3_BUCKET
head -c $((SIZE_MB << 20)) /dev/urandom >"$W/src"
printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$W/passwd"
chmod 600 "$W/passwd"

now() { date +%s.%N; }
mbps() { echo "$SIZE_MB / ($2 - $1)" | bc -l; }
cold() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}
results=$W/results
: >"$results"

for round in $(seq "$ROUNDS"); do
	for set in $SETTINGS s3fs; do
		if [ "$set" = s3fs ]; then
			cold
			s3fs "$BUCKET:/conc-s3fs-$round-$$" "$W/mnt" -o \
				"url=$METAFUSE_S3_ENDPOINT,use_path_request_style,passwd_file=$W/passwd"
			for _ in $(seq 50); do
				mountpoint -q "$W/mnt" && break
				sleep 0.1
			done
			t0=$(now)
			dd if="$W/src" of="$W/mnt/f" bs=1M conv=fsync status=none
			w=$(mbps "$t0" "$(now)")
			rm -f "$W/mnt/f"
			fusermount3 -u "$W/mnt"
			echo "s3fs write $w" >>"$results"
			printf 'round %s  s3fs             write %6.0f MB/s\n' \
				"$round" "$w"
			continue
		fi
		IFS=: read -r up conns bs <<<"$set"
		bs=${bs:-4M}
		store=s3://$BUCKET/conc-$up-$conns-$bs-$round-$$
		opts="cache_dir=$W/cache,upload_threads=$up,connections=$conns"
		rm -rf "$W/cache"
		"$BIN" mkfs --block-size "$bs" "$store" >/dev/null
		cold
		"$BIN" mount -o "$opts" "$store" "$W/mnt"
		t0=$(now)
		dd if="$W/src" of="$W/mnt/f" bs=1M conv=fsync status=none
		w=$(mbps "$t0" "$(now)")
		"$BIN" umount "$W/mnt"
		rm -rf "$W/cache"
		cold
		"$BIN" mount -o "$opts" "$store" "$W/mnt"
		t0=$(now)
		cat "$W/mnt/f" >/dev/null
		r=$(mbps "$t0" "$(now)")
		# free the server's memory for the next rounds
		rm -f "$W/mnt/f"
		"$BIN" umount "$W/mnt"
		echo "$set write $w" >>"$results"
		echo "$set read $r" >>"$results"
		printf 'round %s  uploads %-2s conns %-3s block %-3s write %6.0f  read %6.0f MB/s\n' \
			"$round" "$up" "$conns" "$bs" "$w" "$r"
	done
done

echo
echo "medians of $ROUNDS rounds, $SIZE_MB MiB (MB/s):"
python3 - "$results" <<'EOF'
import statistics, sys
v = {}
for line in open(sys.argv[1]):
    k, what, x = line.split()
    v.setdefault(k, {}).setdefault(what, []).append(float(x))
ref = statistics.median(v.get("s3fs", {}).get("write", [0])) or None
print(f"{'setting':<14} {'write':>7} {'read':>7} {'write/s3fs':>11}")
for k, d in v.items():
    w = statistics.median(d["write"])
    r = f"{statistics.median(d['read']):7.0f}" if "read" in d else "      -"
    ratio = f"{w / ref:11.2f}" if ref else "          -"
    print(f"{k:<14} {w:7.0f} {r} {ratio}")
EOF
