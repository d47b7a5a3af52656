#!/usr/bin/env bash
# test.sh - THE test command: bash scripts/test.sh
#
# 1. installs what is missing (scripts/deps.sh);
# 2. builds two trees: build/ (release) and build-asan/ (ASan + UBSan);
# 3. runs the unit tests of both;
# 4. runs the end-to-end suite (tests/e2e, real FUSE mounts):
#    - with the release binary on local volumes and, at the same time, on
#      S3 volumes on the local radosgw, and the crash loop and the model
#      test on encrypted volumes, local and S3 (the runs wait on mounts,
#      timers and the store far more than on the CPU; each has its own
#      test directory);
#    - then, alone, the tests that make a mount namespace (marker
#      `namespace`: a namespace copies every mount while it lives and so
#      would hold up the other runs' unmounts);
#    - the memory test with a 1 GiB file;
#    - with the sanitizer binary (built while the release tests run),
#      the files that drive most of the code (E2E_ASAN below;
#      METAFUSE_ASAN_ALL=1: the whole suite), while bench/run --quick
#      runs beside it as a smoke test;
#    slow tests (marker `slow`: the 50-crash loop, the 4 GiB memory test,
#    100,000 entries) only with METAFUSE_SLOW=1;
# 5. prints one closing line "N passed, N failed[, N skipped]" over unit
#    test executables and pytest tests, and exits non-zero if anything
#    failed.
#
# Environment:
#   METAFUSE_E2E_ARGS   extra pytest arguments for every e2e run (e.g. -k x)
#   METAFUSE_SLOW=1     the slow tests too, at full length (about 10 more
#                       minutes)
#   METAFUSE_SERIAL=1   the release and S3 runs one after the other
#   METAFUSE_ASAN_ALL=1 the whole e2e suite under the sanitizers
#   METAFUSE_SKIP_ASAN=1  skip the sanitizer build and its runs
#   METAFUSE_SKIP_BENCH=1 skip the benchmark smoke test (bench/run --quick)
#   METAFUSE_SEED       seed of the model test (printed on failure)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
PY=/usr/bin/python3
# no __pycache__ in the source tree
export PYTHONDONTWRITEBYTECODE=1
JOBS=$(nproc 2>/dev/null || echo 2)

passed=0
failed=0
skipped=0
problems=()

note() { printf '\n==== %s\n' "$*"; }
fail_step() {
	failed=$((failed + 1))
	problems+=("$1")
	echo "test.sh: FAILED: $1" >&2
}

# Add the counts of a meson testlog.json.
count_meson() {
	local log=$1 out
	if [ ! -f "$log" ]; then
		fail_step "no meson test log at $log"
		return
	fi
	out=$("$PY" - "$log" <<'PYEOF'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line).get("result", "")
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:
        f += 1
print(p, f, s)
PYEOF
	) || { fail_step "cannot read $log"; return; }
	read -r p f s <<<"$out"
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	if [ "$f" -gt 0 ]; then
		problems+=("$f unit test(s) failed in $(dirname "$(dirname "$log")")")
	fi
}

# Add the counts of a pytest junit xml (a test failing in its call and in
# its teardown counts once).
count_junit() {
	local xml=$1 out
	if [ ! -f "$xml" ]; then
		fail_step "no junit xml at $xml (pytest died?)"
		return
	fi
	out=$("$PY" - "$xml" <<'PYEOF'
import sys
import xml.etree.ElementTree as ET
state = {}
for tc in ET.parse(sys.argv[1]).iter("testcase"):
    key = (tc.get("classname"), tc.get("name"))
    tags = {c.tag for c in tc}
    if tags & {"failure", "error"}:
        s = "failed"
    elif "skipped" in tags:
        s = "skipped"
    else:
        s = "passed"
    prev = state.get(key)
    if prev != "failed":
        state[key] = s if prev is None or s == "failed" else prev
vals = list(state.values())
print(vals.count("passed"), vals.count("failed"), vals.count("skipped"))
PYEOF
	) || { fail_step "cannot read $xml"; return; }
	read -r p f s <<<"$out"
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	if [ "$f" -gt 0 ]; then
		problems+=("$f e2e test(s) failed ($xml)")
	fi
}

# meson setup that also works on an existing build directory.  The logs
# stay inside the build directory.
setup() {
	local dir=$1
	shift
	mkdir -p "$dir"
	if [ -f "$dir/meson-private/coredata.dat" ]; then
		meson setup --reconfigure "$dir" "$@" >"$dir/test-sh-setup.log" 2>&1
	else
		meson setup "$dir" "$@" >"$dir/test-sh-setup.log" 2>&1
	fi || { cat "$dir/test-sh-setup.log" >&2; return 1; }
}

build() {
	local dir=$1
	shift
	note "build $dir"
	if ! setup "$dir" "$@"; then
		fail_step "meson setup $dir"
		return 1
	fi
	if ! ninja -C "$dir" -j "$JOBS" >"$dir/test-sh-build.log" 2>&1; then
		tail -n 60 "$dir/test-sh-build.log" >&2
		fail_step "build $dir"
		return 1
	fi
	echo "built $dir"
}

unit() {
	local dir=$1
	note "unit tests ($dir)"
	rm -f "$dir/meson-logs/testlog.json"
	meson test -C "$dir" --suite unit --print-errorlogs \
		--num-processes "$JOBS" || true
	count_meson "$dir/meson-logs/testlog.json"
}

TEST_TMP=$(mktemp -d /tmp/metafuse-tests.XXXXXX)
chmod 755 "$TEST_TMP"

# Leave no mount and no daemon behind under directory $1 (default: all of
# TEST_TMP), whatever happened.
sweep() {
	local dir=${1:-$TEST_TMP} mp pid
	while read -r mp; do
		fusermount3 -u -z "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null
	done < <(awk -v t="$dir/" 'index($5 "/", t) == 1 {print $5}' \
		/proc/self/mountinfo | sort -r)
	for pid in $(pgrep -f -- "$dir/" 2>/dev/null); do
		[ "$pid" != "$$" ] && kill -9 "$pid" 2>/dev/null
	done
}
cleanup() {
	sweep
	rm -rf "$TEST_TMP"
}
trap cleanup EXIT

# ---- the S3 server (scripts/s3server.sh) -------------------------------
# One radosgw for the whole run, outside TEST_TMP (sweep() kills whatever
# names TEST_TMP), started before the unit tests and stopped at exit.  Its
# environment (endpoint, bucket, keys) is exported, so t_store_s3 and
# tests/e2e/test_s3.py run; METAFUSE_SKIP_S3=1 leaves them skipped.
S3_DIR=
s3_start() {
	[ -n "${METAFUSE_SKIP_S3:-}" ] && return 0
	note "S3 server (radosgw)"
	S3_DIR=$(mktemp -d /tmp/metafuse-s3.XXXXXX)
	if bash scripts/s3server.sh start "$S3_DIR"; then
		# shellcheck disable=SC1091
		. "$S3_DIR/env"
	else
		fail_step "scripts/s3server.sh start"
	fi
}
s3_stop() {
	if [ -n "$S3_DIR" ]; then
		bash scripts/s3server.sh stop "$S3_DIR" || true
		rm -rf "$S3_DIR"
		S3_DIR=
	fi
}
trap 'cleanup; s3_stop' EXIT
# ------------------------------------------------------------------------

# e2e NAME DIR [pytest args and paths...]: one pytest run of the binaries
# in DIR, in its own directory $TEST_TMP/NAME, with its junit xml in
# DIR/test-results/e2e-NAME.xml (counted by e2e_count NAME DIR).  Without
# a path among the arguments it runs all of tests/e2e.
e2e() {
	local name=$1 dir=$2
	shift 2
	local xml="$ROOT/$dir/test-results/e2e-$name.xml"
	local tmp="$TEST_TMP/$name"
	mkdir -p "$(dirname "$xml")" "$tmp"
	chmod 755 "$tmp"
	rm -f "$xml"
	note "e2e tests ($name: $dir/metafuse)"
	local extra=() paths=("$ROOT/tests/e2e") a
	# shellcheck disable=SC2206
	[ -n "${METAFUSE_E2E_ARGS:-}" ] && extra=($METAFUSE_E2E_ARGS)
	for a in "$@"; do
		[[ $a == tests/e2e/* ]] && paths=()
	done
	METAFUSE_BIN="$ROOT/$dir/metafuse" \
	METAFUSE_EXERCISER="$ROOT/$dir/tests/syscall_exerciser" \
	METAFUSE_STORE_TOOL="$ROOT/$dir/tests/store_tool" \
	METAFUSE_TEST_TMP="$tmp" \
		timeout -k 30 3000 "$PY" -m pytest "${paths[@]}" -ra \
		--junitxml="$xml" -o junit_suite_name="e2e-$name" \
		"$@" "${extra[@]}"
	local rc=$?
	sweep "$tmp"
	case $rc in
	0 | 1) ;;
	5) echo "test.sh: e2e $name collected no tests" >&2 ;;
	*) echo "test.sh: pytest ($name) exited with $rc" >&2 ;;
	esac
	echo "$rc" >"$tmp.rc"
	return 0
}
e2e_count() {
	local name=$1 dir=$2
	[ "$(cat "$TEST_TMP/$name.rc" 2>/dev/null)" = 5 ] &&
		fail_step "e2e $name collected no tests"
	count_junit "$ROOT/$dir/test-results/e2e-$name.xml"
}
# e2e_bg NAME DIR ARGS...: e2e in the background, its output in a log
# that e2e_wait prints whole once every background run has ended.
bg_names=()
e2e_bg() {
	local name=$1
	bg_names+=("$name")
	e2e "$@" >"$TEST_TMP/$name.log" 2>&1 &
}
e2e_wait() {
	local name
	wait
	for name in "${bg_names[@]}"; do
		cat "$TEST_TMP/$name.log"
	done
	bg_names=()
}

start=$(date +%s)

note "dependencies"
if ! bash scripts/deps.sh; then
	fail_step "scripts/deps.sh"
fi

s3_start

# The sanitizer run's files: every layer's main paths, the crash and
# model tests, and the newest features.
E2E_ASAN=(tests/e2e/test_posix.py tests/e2e/test_patch.py
	tests/e2e/test_gc.py tests/e2e/test_crash.py tests/e2e/test_model.py
	tests/e2e/test_persistence.py)
for f in tests/e2e/test_holes.py tests/e2e/test_clone.py \
	tests/e2e/test_encrypt.py tests/e2e/test_encrypt_tamper.py \
	tests/e2e/test_follow.py; do
	[ -f "$f" ] && E2E_ASAN+=("$f")
done

# the crash loop and the model test on encrypted volumes (every other
# test file runs encrypted too with METAFUSE_TEST_ENCRYPT=1)
encrypted() {
	METAFUSE_TEST_ENCRYPT=1 e2e encrypted build -m "not slow" \
		tests/e2e/test_crash.py tests/e2e/test_model.py
	[ -n "$s3" ] && METAFUSE_TEST_ENCRYPT=1 METAFUSE_TEST_STORE=s3 \
		e2e s3-encrypted build -m "not slow" \
		tests/e2e/test_crash.py tests/e2e/test_model.py
	return 0
}

# The sanitizer build compiles while the release binary's tests run
# (they wait far more than they compute); asan_build_done says how it
# went, building it now when it was not started.
ASAN_SETUP=(-Db_sanitize=address,undefined -Db_lundef=false)
asan_bg=
asan_build_bg() {
	[ -n "${METAFUSE_SKIP_ASAN:-}" ] && return 0
	asan_bg=1
	{
		build build-asan "${ASAN_SETUP[@]}"
		echo $? >"$TEST_TMP/asan-build.rc"
	} >"$TEST_TMP/asan-build.log" 2>&1 &
}
asan_build_done() {
	if [ -z "$asan_bg" ]; then
		build build-asan "${ASAN_SETUP[@]}"
		return
	fi
	wait
	cat "$TEST_TMP/asan-build.log"
	if [ "$(cat "$TEST_TMP/asan-build.rc" 2>/dev/null)" != 0 ]; then
		fail_step "build build-asan"
		return 1
	fi
}

# The benchmark harness must keep working (issue 5): its quick mode, as a
# smoke test that counts as one test; how fast is not checked here.  It
# runs beside the sanitizer's e2e run (bench_start, bench_done).
bench_on=
bench_start() {
	[ -n "$bench_on" ] && return 0
	[ -n "${METAFUSE_SKIP_BENCH:-}" ] || [ ! -x build/metafuse ] && return 0
	bench_on=1
	note "benchmark smoke test (bench/run --quick), in the background"
	{
		bash bench/run --quick >build/bench-quick.log 2>&1
		echo $? >"$TEST_TMP/bench.rc"
	} &
}
bench_done() {
	[ -z "$bench_on" ] && return 0
	wait
	note "benchmark smoke test (bench/run --quick)"
	if [ "$(cat "$TEST_TMP/bench.rc" 2>/dev/null)" = 0 ]; then
		passed=$((passed + 1))
		tail -n 3 build/bench-quick.log
	else
		tail -n 30 build/bench-quick.log
		fail_step "bench/run --quick (log: build/bench-quick.log)"
	fi
}

slow="not slow"
[ -n "${METAFUSE_SLOW:-}" ] && slow="(slow or not slow)"
if build build -Dbuildtype=release; then
	unit build
	s3=
	[ -n "${METAFUSE_S3_ENDPOINT:-}" ] && s3=1
	asan_build_bg
	if [ -n "${METAFUSE_SERIAL:-}" ]; then
		e2e release build -m "$slow and not namespace"
		[ -n "$s3" ] && METAFUSE_TEST_STORE=s3 \
			e2e s3 build -m "not slow and not namespace"
		encrypted
	else
		e2e_bg release build -m "$slow and not namespace"
		# the same filesystem tests on S3 volumes (radosgw above); tests
		# about a local store's files or CLI paths skip themselves
		[ -n "$s3" ] && METAFUSE_TEST_STORE=s3 \
			e2e_bg s3 build -m "not slow and not namespace"
		bg_names+=(encrypted)
		encrypted >"$TEST_TMP/encrypted.log" 2>&1 &
		e2e_wait
	fi
	e2e_count release build
	[ -n "$s3" ] && e2e_count s3 build
	e2e_count encrypted build
	[ -n "$s3" ] && e2e_count s3-encrypted build
	e2e namespace build -m "$slow and namespace"
	e2e_count namespace build
	if [ -z "${METAFUSE_SLOW:-}" ]; then
		# the memory bound with a file of 1 GiB, twice the cache
		METAFUSE_MEMORY_TEST_SIZE=$((1 << 30)) \
			e2e memory build -m slow tests/e2e/test_memory.py
		e2e_count memory build
	fi
fi

if [ -z "${METAFUSE_SKIP_ASAN:-}" ]; then
	if asan_build_done; then
		export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1"
		export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
		unit build-asan
		bench_start
		if [ -n "${METAFUSE_ASAN_ALL:-}" ]; then
			e2e asan build-asan -m "not slow"
		else
			e2e asan build-asan -m "not slow" "${E2E_ASAN[@]}"
		fi
		e2e_count asan build-asan
		unset ASAN_OPTIONS UBSAN_OPTIONS
	fi
fi
bench_start
bench_done

note "summary ($(($(date +%s) - start)) s)"
for p in "${problems[@]}"; do
	echo "  $p"
done
line="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
