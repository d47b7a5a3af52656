#!/usr/bin/env bash
# s3server.sh start|stop|env|gc DIR - a one-node Ceph cluster with radosgw on
# 127.0.0.1, the S3 server the tests run against (it verifies SigV4
# signatures, which the easy emulators do not).
#
#   start DIR  install the Debian packages if missing, then start one mon,
#              one OSD on memstore (pool size 1) and radosgw, all state and
#              logs under DIR, on free ports chosen now; create an S3 user
#              with random keys and a test bucket; write DIR/env (shell
#              syntax) with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
#              METAFUSE_S3_ENDPOINT=http://127.0.0.1:PORT, METAFUSE_S3_BUCKET.
#              A server already running in DIR is left alone.
#   stop DIR   stop exactly the daemons this script started in DIR (their
#              pid files), wait until they are gone, and remove DIR's state.
#   env DIR    print DIR/env (fails when the server is not running).
#   gc DIR     run radosgw's garbage collector now, over everything it has
#              queued: the data of deleted objects is otherwise freed in
#              the background up to 20 s later (rgw gc settings below),
#              on the CPU of whatever is measured then (bench/).
#
# Every step that waits gives up after about 60 s and prints the tail of
# the daemon's log.  See /work/shared/CEPH-NOTES.md for why each setting.
set -euo pipefail

usage() {
	echo "usage: $0 start|stop|env|gc DIR" >&2
	exit 2
}
(($# == 2)) || usage
cmd=$1
DIR=$2
[ -n "$DIR" ] || usage

die() {
	echo "s3server.sh: $*" >&2
	exit 1
}

# The pids this script started: DIR/pids/{mon,osd,rgw}.pid.
alive() {
	local f=$DIR/pids/$1.pid pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
		! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null
}

log_tail() {
	local f
	for f in "$@"; do
		if [ -f "$f" ]; then
			echo "---- last lines of $f" >&2
			tail -n 25 "$f" >&2
		fi
	done
}

free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

rand_hex() {
	head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# wait_for SECONDS WHAT LOGFILE... -- COMMAND: retry COMMAND until it
# succeeds; on timeout print the logs and die.
wait_for() {
	local secs=$1 what=$2 logs=()
	shift 2
	while [ "$1" != "--" ]; do
		logs+=("$1")
		shift
	done
	shift
	# a deadline, not a count of tries: a probe of a daemon that died
	# can itself take its own timeout (ceph's --connect-timeout 10)
	local deadline=$((SECONDS + secs))
	while ((SECONDS < deadline)); do
		if [ "$(type -t "$1")" = function ]; then
			"$@" >/dev/null 2>&1 && return 0
		elif timeout 15 "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.25
	done
	log_tail "${logs[@]}"
	die "$what did not come up within $secs s (state in $DIR)"
}

stop() {
	local d pid i
	[ -d "$DIR/pids" ] || return 0
	# the gateway first, the monitor last
	for d in rgw osd mon; do
		[ -f "$DIR/pids/$d.pid" ] || continue
		pid=$(cat "$DIR/pids/$d.pid")
		if alive "$d"; then
			kill -TERM "$pid" 2>/dev/null || true
			for ((i = 0; i < 60; i++)); do
				alive "$d" || break
				sleep 0.25
			done
			if alive "$d"; then
				kill -KILL "$pid" 2>/dev/null || true
				for ((i = 0; i < 40; i++)); do
					alive "$d" || break
					sleep 0.25
				done
			fi
		fi
		rm -f "$DIR/pids/$d.pid"
	done
	rm -rf "$DIR/mon" "$DIR/osd" "$DIR/run" "$DIR/env" "$DIR/ceph.conf"
}

install_packages() {
	local p missing=()
	for p in ceph-mon ceph-osd ceph-common radosgw curl python3; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q 'install ok installed' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	echo "s3server.sh: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	local log
	log=$(mktemp)
	if ! { "${sudo[@]}" apt-get update -qq &&
		"${sudo[@]}" apt-get install -y -qq --no-install-recommends \
			"${missing[@]}"; } >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		die "apt-get failed"
	fi
	rm -f "$log"
}

# start DAEMON-NAME COMMAND...: run a daemon in the foreground mode of
# Ceph (-f), in the background, and record its pid.
spawn() {
	local name=$1
	shift
	setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
	echo $! >"$DIR/pids/$name.pid"
}

start() {
	if alive mon && alive osd && alive rgw && [ -f "$DIR/env" ]; then
		echo "s3server.sh: already running in $DIR" >&2
		return 0
	fi
	# leftovers of a half-started or crashed server
	stop
	install_packages
	mkdir -p "$DIR"/{pids,log,run,mon/a,osd,rgw}
	DIR=$(cd "$DIR" && pwd)
	local conf=$DIR/ceph.conf fsid mon_port rgw_port uuid id
	local access secret bucket
	fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
	mon_port=$(free_port)
	rgw_port=$(free_port)
	while [ "$rgw_port" = "$mon_port" ]; do
		rgw_port=$(free_port)
	done
	cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
osd objectstore = memstore
memstore device bytes = 8589934592
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
# the monitor refuses to start when its file system has less than 5% free
# (a shared disk of a few hundred GiB full of build trees); its data here
# is a few MiB and the OSD lives in RAM
mon data avail crit = 1
mon data avail warn = 2
mon max pg per osd = 1000
osd crush chooseleaf type = 0
osd class update on start = false
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
mon data = $DIR/mon/\$id
osd data = $DIR/osd/\$id
keyring = /dev/null
[client.rgw.a]
# tcp_nodelay: without it a response body waits ~40 ms for the
# delayed ACK of its headers on every reused connection
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
# virtual-host addressing for BUCKET.localhost (libcurl resolves every
# *.localhost to loopback itself); requests to 127.0.0.1 or localhost
# stay path-style
rgw dns name = localhost
rgw data = $DIR/rgw
# deleted objects' tails (parts of multipart uploads, anything above 4 MiB)
# are freed by radosgw's garbage collector, by default two hours later;
# the OSD lives in RAM, so a benchmark that writes and deletes many GiB
# would fill it and every write would hang
rgw gc obj min wait = 10
rgw gc processor period = 10
EOF
	local ceph=(ceph -c "$conf" --connect-timeout 10)

	monmaptool --create --clobber --addv a "[v1:127.0.0.1:$mon_port]" \
		--fsid "$fsid" "$DIR/run/monmap" >"$DIR/log/monmaptool.out" 2>&1 ||
		{ log_tail "$DIR/log/monmaptool.out"; die "monmaptool failed"; }
	ceph-mon -c "$conf" --mkfs -i a --monmap "$DIR/run/monmap" \
		>"$DIR/log/mon-mkfs.out" 2>&1 ||
		{ log_tail "$DIR/log/mon-mkfs.out"; die "ceph-mon --mkfs failed"; }
	spawn mon ceph-mon -c "$conf" -i a -f
	wait_for 60 "the monitor" "$DIR/log/mon.a.log" "$DIR/log/mon.out" -- \
		"${ceph[@]}" mon stat

	uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
	id=$("${ceph[@]}" osd new "$uuid" 2>"$DIR/log/osd-new.out") ||
		{ log_tail "$DIR/log/osd-new.out"; die "ceph osd new failed"; }
	mkdir -p "$DIR/osd/$id"
	ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$uuid" \
		>"$DIR/log/osd-mkfs.out" 2>&1 ||
		{ log_tail "$DIR/log/osd-mkfs.out"; die "ceph-osd --mkfs failed"; }
	# The OSD sometimes asks the monitor before it knows the cluster's
	# fsid ("wrong fsid") and exits; start it again when it died.
	osd_up() {
		"${ceph[@]}" osd stat 2>/dev/null | grep -q ' 1 up' && return 0
		if ! alive osd && ((osd_starts < 4)); then
			osd_starts=$((osd_starts + 1))
			spawn osd ceph-osd -c "$conf" -i "$id" -f
		fi
		return 1
	}
	osd_starts=1
	spawn osd ceph-osd -c "$conf" -i "$id" -f
	wait_for 60 "the OSD" "$DIR/log/osd.$id.log" "$DIR/log/osd.out" -- \
		osd_up

	spawn rgw radosgw -c "$conf" -n client.rgw.a -f
	wait_for 60 "radosgw" "$DIR/log/client.rgw.a.log" "$DIR/log/rgw.out" -- \
		curl -fsS -o /dev/null "http://127.0.0.1:$rgw_port/"

	access=$(rand_hex 10 | tr 'a-f' 'A-F')
	secret=$(rand_hex 20)
	bucket=mf-test-$(rand_hex 4)
	radosgw-admin -c "$conf" -n client.rgw.a user create --uid=test \
		--display-name=test --access-key="$access" --secret="$secret" \
		>"$DIR/log/user-create.out" 2>&1 ||
		{ log_tail "$DIR/log/user-create.out"; die "radosgw-admin user create failed"; }
	# The bucket, with a SigV4-signed request (curl adds no payload hash
	# by itself; S3 servers require one).  The keys go through a config
	# file, not the command line.
	local curlcfg=$DIR/run/curl.cfg
	(
		umask 077
		printf 'user = "%s:%s"\n' "$access" "$secret" >"$curlcfg"
	)
	make_bucket() {
		curl -fsS -K "$curlcfg" --aws-sigv4 "aws:amz:us-east-1:s3" \
			-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
			-X PUT "http://127.0.0.1:$rgw_port/$bucket"
	}
	wait_for 60 "bucket creation" "$DIR/log/client.rgw.a.log" -- make_bucket
	rm -f "$curlcfg"

	(
		umask 077
		cat >"$DIR/env.tmp" <<EOF
export AWS_ACCESS_KEY_ID=$access
export AWS_SECRET_ACCESS_KEY=$secret
export METAFUSE_S3_ENDPOINT=http://127.0.0.1:$rgw_port
export METAFUSE_S3_BUCKET=$bucket
export METAFUSE_S3_REGION=us-east-1
EOF
		mv "$DIR/env.tmp" "$DIR/env"
	)
	echo "s3server.sh: radosgw on http://127.0.0.1:$rgw_port (env in $DIR/env)" >&2
}

case $cmd in
start) start ;;
stop) stop ;;
env)
	if ! alive rgw || [ ! -f "$DIR/env" ]; then
		die "no server running in $DIR"
	fi
	cat "$DIR/env"
	;;
gc)
	alive rgw || die "no server running in $DIR"
	# its own admin socket name: radosgw holds client.rgw.a's
	radosgw-admin -c "$DIR/ceph.conf" -n client.rgw.a \
		--admin-socket="$DIR/run/gc.asok" gc process --include-all \
		>"$DIR/log/gc.out" 2>&1 ||
		{ log_tail "$DIR/log/gc.out"; die "radosgw-admin gc process failed"; }
	;;
*) usage ;;
esac
