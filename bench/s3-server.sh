# s3-server.sh - sourced by the S3 benchmark scripts (bench/s3*.sh): a
# scratch directory W (with W/mnt) removed at exit, and an S3 server: the
# one of the environment when METAFUSE_S3_ENDPOINT and METAFUSE_S3_BUCKET
# are set (with AWS_* keys), else a radosgw of scripts/s3server.sh,
# stopped at exit (METAFUSE_S3_SERVER_DIR names the directory of the
# environment's server, if it is one of that script's, for settle()).
# Exports AWS_ENDPOINT_URL, so that every tool finds this server and
# never a public one.  Run from the repository's top.
W=$(mktemp -d /tmp/mf-s3bench-XXXXXX)
SRV=
cleanup() {
	fusermount3 -uz "$W/mnt" 2>/dev/null || true
	if [ -n "$SRV" ]; then
		bash scripts/s3server.sh stop "$SRV" || true
		rm -rf "$SRV"
	fi
	rm -rf "$W"
}
trap cleanup EXIT

if [ -z "${METAFUSE_S3_ENDPOINT:-}" ] || [ -z "${METAFUSE_S3_BUCKET:-}" ]; then
	SRV=$(mktemp -d /tmp/mf-s3bench-srv-XXXXXX)
	bash scripts/s3server.sh start "$SRV"
	# shellcheck disable=SC1091
	. "$SRV/env"
fi
export AWS_ENDPOINT_URL=$METAFUSE_S3_ENDPOINT
# the server's directory, when it is a scripts/s3server.sh one
SRV_DIR=${SRV:-${METAFUSE_S3_SERVER_DIR:-}}

# settle: free the data of what was deleted so far now, not during the
# next measurement (radosgw's garbage collector runs in the background,
# every 10 s on objects deleted 10 s before)
settle() {
	if [ -n "$SRV_DIR" ]; then
		bash scripts/s3server.sh gc "$SRV_DIR"
	fi
}
mkdir -p "$W/mnt"
