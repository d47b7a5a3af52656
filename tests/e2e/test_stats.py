"""`metafuse stats`: the requests a mount makes, what waits to be
uploaded, what the store holds and what it costs; and the lease, which is
all an idle mount asks of its store.

The counts are exact: a known workload makes known requests (explained
at each test), on the file store and on S3 (METAFUSE_TEST_STORE=s3)."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

import mfhelpers as h
from mfhelpers import is_mounted, write_file

BS = h.DEFAULT_BLOCK_SIZE
KINDS = ["GET", "PUT", "POST", "LIST", "HEAD", "DELETE", "DELETE_MULTI"]
# a blob-framed object is its payload behind a 40-byte header; random
# data does not compress, so a block's object is BS + 40 bytes
HEADER = 40
# nothing goes up on its own while a test looks: uploads, journal
# entries and checkpoints wait for an fsync or the unmount
QUIET = {"writeback_delay": "3600", "journal_interval": "3600",
         "checkpoint_interval": "3600"}


def one_line_error(r):
    assert r.returncode != 0, f"expected failure, got 0: {r.stdout}"
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr: {r.stderr!r}"
    return lines[0]


def stats(m, *args, mnt=None):
    r = m.cli("stats", "--json", *args, mnt or m.mnt)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    return json.loads(r.stdout)


def delta(a, b):
    return {k: b["requests"][k] - a["requests"][k] for k in KINDS}


def write_blocks(path, n, seed):
    """n whole blocks of random data, fsync'ed: returns the data."""
    data = h.rand_bytes(seed, n * BS)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return data


def journal_keys(m):
    return {k: v for k, v in m.store_ls("meta/").items()
            if k.startswith("meta/jrnl-")}


def test_known_write_makes_exact_puts_and_bytes(mounts):
    """N whole blocks written and fsync'ed: fsync uploads the file's N
    blocks (one PUT each, nothing fetched: each block is written whole)
    and then sends one journal entry with every metadata change so far
    (the create, the size, the N block rows): N + 1 PUTs and nothing
    else, and bytes_up is exactly what the store gained."""
    m = mounts(opts=QUIET, encrypt=False)  # a plain object's bytes
    n = 3
    before_objs, before_jrnl = m.data_objects(), journal_keys(m)
    s0 = stats(m)
    write_blocks(m.path("f"), n, seed=1)
    s1 = stats(m)
    new_objs = {k: v for k, v in m.data_objects().items()
                if k not in before_objs}
    new_jrnl = {k: v for k, v in journal_keys(m).items()
                if k not in before_jrnl}
    assert len(new_objs) == n
    assert all(size == BS + HEADER for size in new_objs.values()), new_objs
    assert len(new_jrnl) == 1, new_jrnl
    d = delta(s0, s1)
    assert d == dict({k: 0 for k in KINDS}, PUT=n + 1), d
    assert s1["bytes_up"] - s0["bytes_up"] == \
        sum(new_objs.values()) + sum(new_jrnl.values())
    assert s1["bytes_down"] == s0["bytes_down"]
    assert s1["errors"] == 0 and s1["retries"] == 0
    # all of it is in the store: nothing waits, nothing in flight
    assert s1["dirty_bytes"] == 0 and s1["oldest_dirty_s"] == 0
    assert s1["uploads_in_flight"] == 0
    assert s1["journal_entries"] == s0["journal_entries"] + 1
    assert s1["stored_data_bytes"] == n * (BS + HEADER)
    assert s1["uploads"] == s0["uploads"] + n
    # the cache holds the blocks written
    assert s1["cache_bytes"] >= n * BS


def test_cold_read_counts_gets_and_bytes_down(mounts):
    """A file of N blocks read with an empty cache: each block is fetched
    once, GET by GET, its object's bytes down; the first read misses."""
    m = mounts(opts=QUIET, encrypt=False)  # a plain object's bytes
    n = 3
    data = write_blocks(m.path("f"), n, seed=2)
    m.umount()
    m.wipe_cache()
    m.mount()
    s0 = stats(m)
    with open(m.path("f"), "rb") as f:
        assert f.read() == data
    s1 = stats(m)
    d = delta(s0, s1)
    assert d == dict({k: 0 for k in KINDS}, GET=n), d
    assert s1["bytes_down"] - s0["bytes_down"] == n * (BS + HEADER)
    assert s1["cache_misses"] > s0["cache_misses"]
    assert s1["cache_hits"] + s1["cache_misses"] > \
        s0["cache_hits"] + s0["cache_misses"]
    # read again, past the kernel's page cache: all from metafuse's
    # cache, nothing asked of the store
    with open(m.path("f"), "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert f.read() == data
    s2 = stats(m)
    assert delta(s1, s2) == {k: 0 for k in KINDS}
    assert s2["cache_misses"] == s1["cache_misses"]
    assert s2["cache_hits"] > s1["cache_hits"]


def test_dirty_bytes_and_their_age(mounts):
    """Written and not yet uploaded: the block waits (dirty), as old as
    the write at most; after fsync nothing waits."""
    m = mounts(opts=QUIET)
    t0 = time.monotonic()
    write_file(m.path("f"), b"x" * 100000)
    s = stats(m)
    age = time.monotonic() - t0
    assert s["dirty_bytes"] == BS    # a dirty block, counted whole
    assert 0 <= s["oldest_dirty_s"] <= age + 0.002
    time.sleep(0.3)
    s2 = stats(m)
    assert s2["oldest_dirty_s"] >= s["oldest_dirty_s"] + 0.3
    fd = os.open(m.path("f"), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    s3 = stats(m)
    assert s3["dirty_bytes"] == 0 and s3["oldest_dirty_s"] == 0


def cost_of(s, requests, seconds):
    """The month's cost as the README defines it, from the JSON."""
    p = s["prices"]
    month = 730 * 3600
    gib = 1024 ** 3
    scale = month / max(seconds, 1)
    tier1 = sum(requests[k] for k in ("PUT", "POST", "LIST",
                                       "DELETE_MULTI"))
    tier2 = requests["GET"] + requests["HEAD"]
    return (s["stored_bytes"] / gib * p["storage_gb_month"] +
            (tier1 * p["put_1k"] + tier2 * p["get_1k"]) / 1000 * scale)


def test_json_fields_text_and_cost(mounts):
    m = mounts(opts=QUIET)
    write_blocks(m.path("f"), 2, seed=3)
    s = stats(m)
    for field in ("requests", "bytes_up", "bytes_down", "dirty_bytes",
                  "oldest_dirty_s", "cache_bytes", "cost_usd_month",
                  "uploads_in_flight", "cache_hits", "cache_misses",
                  "errors", "retries", "journal_entries",
                  "checkpoint_seq", "checkpoint_age_s", "stored_bytes",
                  "last_hour"):
        assert field in s, field
    assert sorted(s["requests"]) == sorted(KINDS)
    # the defaults: AWS S3 Standard, us-east-1
    assert s["prices"] == {"storage_gb_month": 0.023, "put_1k": 0.005,
                           "get_1k": 0.0004, "egress_gb": 0.09}
    assert s["priced_as_s3"] == (h.STORE_KIND != "s3")
    assert s["store"].startswith("s3://" if h.STORE_KIND == "s3"
                                 else "file://")
    assert s["stored_bytes"] == s["stored_data_bytes"] + \
        s["stored_garbage_bytes"] + s["stored_meta_bytes"]
    assert s["stored_data_bytes"] == 2 * (BS + HEADER)
    assert s["stored_meta_bytes"] > 0
    # the month at the rate since the mount (uptime_s is rounded to
    # the ms, hence the tolerance)
    egress = s["bytes_down"] / 1024 ** 3 * 0.09 * 730 * 3600 / \
        max(s["uptime_s"], 1)
    want = cost_of(s, s["requests"], s["uptime_s"]) + egress
    assert abs(s["cost_usd_month"] - want) <= 2e-3 * want + 1e-9, \
        (s["cost_usd_month"], want)
    # the last hour of a young mount is all of it
    assert s["last_hour"]["requests"] == s["requests"]
    assert s["last_hour"]["seconds"] <= s["uptime_s"] + 1
    # the text for a person says the same
    r = m.cli("stats", m.mnt)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert f"PUT {s['requests']['PUT']}" in r.stdout
    for label in ("requests since mount:", "requests, last hour:",
                  "waiting for upload:", "cache:", "stored:",
                  "cost per month:", "prices:", "lease:"):
        assert label in r.stdout, (label, r.stdout)
    if h.STORE_KIND != "s3":
        assert "priced as S3" in r.stdout


def test_prices_from_options_and_file(mounts):
    m = mounts(mount=False)
    m.mount(opts={"price_storage_gb_month": "0", "price_put_1k": "0",
                  "price_get_1k": "0", "price_egress_gb": "0"})
    write_blocks(m.path("f"), 1, seed=4)
    s = stats(m)
    assert s["cost_usd_month"] == 0
    assert set(s["prices"].values()) == {0}
    m.umount()
    pf = os.path.join(m.root, "prices")
    with open(pf, "w") as f:
        f.write("# a cheaper store\nstorage_gb_month = 0.006\n"
                "put_1k=0.004\n\nprice_egress_gb=0.01\n")
    m.mount(opts={"price_file": pf, "price_get_1k": "0.0003"})
    s = stats(m)
    assert s["prices"] == {"storage_gb_month": 0.006, "put_1k": 0.004,
                           "get_1k": 0.0003, "egress_gb": 0.01}
    assert s["cost_usd_month"] > 0


@pytest.mark.parametrize("opt,words", [
    ("price_put_1k=abc", "price_put_1k"),
    ("price_get_1k=-1", "price_get_1k"),
    ("price_storage_gb_month=", "price_storage_gb_month"),
    ("price_egress_gb=1e3", "price_egress_gb"),
    ("price_put_1k=0,05", None),  # two options: "05" is unknown
    ("price_file=/nonexistent/prices", "/nonexistent/prices"),
    ("price_bogus=1", "price_bogus"),
])
def test_bad_price_option_refused(mounts, opt, words):
    m = mounts(mount=False)
    r = m.cli("mount", "-o", f"cache_dir={m.cache},{opt}", m.store, m.mnt)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    # one line; an unknown option's names the valid ones in it
    assert len(lines) == 1, r.stderr
    assert (words or "'05'") in lines[0], r.stderr
    if "bogus" in opt or words is None:
        assert "price_put_1k=" in lines[0], r.stderr
    assert not is_mounted(m.mnt)


def test_bad_price_file_refused(mounts):
    m = mounts(mount=False)
    pf = os.path.join(m.root, "prices")
    with open(pf, "w") as f:
        f.write("put_1k=0.005\nget_1k=cheap\n")
    r = m.cli("mount", "-o", f"cache_dir={m.cache},price_file={pf}",
              m.store, m.mnt)
    line = one_line_error(r)
    assert pf in line and "line 2" in line and "get_1k" in line, line
    assert not is_mounted(m.mnt)


def test_watch_prints_a_line_per_interval(mounts):
    m = mounts(opts=QUIET)
    r = m.cli("stats", "--watch", "0.1", "--count", "3", m.mnt)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4, r.stdout
    assert "GET/s" in lines[0] and "PUT/s" in lines[0] and \
        "hit%" in lines[0]
    for ln in lines[1:]:
        assert re.match(r"\d\d:\d\d:\d\d +\d", ln), ln
    r = m.cli("stats", "--json", "--watch", "0.1", "--count", "2", m.mnt)
    assert r.returncode == 0, r.stderr
    objs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(objs) == 2 and all("requests" in o for o in objs)
    # a watch started before an unmount ends with it, cleanly
    p = subprocess.Popen([h.BIN, "stats", "--watch", "0.2", m.mnt],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=m.env)
    try:
        first = p.stdout.readline()
        assert "GET/s" in first
        m.umount()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "unmounted" in err


@pytest.mark.parametrize("args", [
    ["--watch", "0"], ["--watch", "x"], ["--count", "2"],
    ["--watch", "1", "--count", "0"], ["--bogus"],
])
def test_bad_stats_flags(mounts, args):
    m = mounts(opts=QUIET)
    one_line_error(m.cli("stats", *args, m.mnt))


def test_two_mounts_each_answer_for_itself(mounts):
    a = mounts("a", opts=QUIET)
    b = mounts("b", opts=QUIET)
    sa0, sb0 = stats(a), stats(b)
    write_blocks(a.path("f"), 1, seed=5)
    write_blocks(b.path("f"), 3, seed=6)
    sa1, sb1 = stats(a), stats(b)
    assert sa1["store"] != sb1["store"] and sa1["pid"] != sb1["pid"]
    assert sa1["mountpoint"] == a.mnt and sb1["mountpoint"] == b.mnt
    assert delta(sa0, sa1)["PUT"] == 1 + 1
    assert delta(sb0, sb1)["PUT"] == 3 + 1
    assert sa1["stored_data_bytes"] == BS + HEADER
    assert sb1["stored_data_bytes"] == 3 * (BS + HEADER)


def test_store_failing_counts_errors_and_what_waits(mounts, workdir):
    """The store down (the test's fault wrapper fails every call): the
    failed uploads are errors, the block and its age wait, and stats
    answers at once, not after the uploads' retries."""
    down = os.path.join(workdir, "store-down")
    env = dict(os.environ, METAFUSE_TEST_STORE_DOWN_FILE=down)
    m = mounts(opts={"writeback_delay": "0.2", "journal_interval": "0.2"},
               env=env)
    m.allow_errors(r"failed: Input/output error",
                   r"cannot send the metadata", r"checkpoint failed")
    s0 = stats(m)
    open(down, "w").close()
    write_file(m.path("f"), h.rand_bytes(10, BS))
    assert wait_until(lambda: stats(m)["errors"] >= s0["errors"] + 2, 60)
    s = stats(m)
    assert s["dirty_bytes"] == BS and s["oldest_dirty_s"] > 0
    assert s["upload_errors"] > 0
    os.unlink(down)
    assert wait_until(lambda: stats(m)["dirty_bytes"] == 0, 60)


def test_read_only_mount(mounts):
    """A read-only mount writes nothing, holds no lease, and still says
    what the store holds."""
    m = mounts(opts=QUIET)
    write_blocks(m.path("f"), 2, seed=8)
    m.umount()
    m.mount(opts={"ro": True})
    s0 = stats(m)
    with open(m.path("f"), "rb") as f:
        f.read()
    s1 = stats(m)
    assert s1["requests"]["PUT"] == 0 and s1["requests"]["DELETE"] == 0
    assert delta(s0, s1)["GET"] == 0     # the blocks were cached
    assert s1["lease_renew_s"] == 0
    assert s1["stored_data_bytes"] == 2 * (BS + HEADER)
    assert s1["stored_meta_bytes"] > 0
    r = m.cli("stats", m.mnt)
    assert r.returncode == 0 and "lease:" not in r.stdout


def test_not_a_mount_and_a_dead_daemon(mounts, workdir):
    m = mounts(opts=QUIET)
    line = one_line_error(m.cli("stats", workdir))
    assert "not a metafuse mount" in line
    line = one_line_error(m.cli("stats", "/proc"))
    assert "not a metafuse mount" in line
    line = one_line_error(m.cli("stats", os.path.join(workdir, "none")))
    assert "none" in line
    # a mount whose daemon died: the mount point stays, nobody answers
    m.kill()
    assert is_mounted(m.mnt)
    line = one_line_error(m.cli("stats", m.mnt))
    assert "not running" in line, line
    line = one_line_error(m.cli("stats", "--watch", "1", m.mnt))
    assert "not running" in line, line
    h.force_unmount(m.mnt)


def wait_until(cond, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


def test_idle_mount_sends_nothing_between_lease_renewals(mounts):
    """Idle, with the journal and checkpoint duties looked at five times
    a second: not one request.  What an idle mount sends is the lease's
    renewal alone, every lease_renew_s: at most 10 an hour."""
    m = mounts(opts={"journal_interval": "0.2",
                     "checkpoint_interval": "0.2",
                     "writeback_delay": "0.2"})
    write_blocks(m.path("f"), 1, seed=7)
    os.unlink(m.path("f"))
    # the delete's journal entry, checkpoint and garbage go out, and the
    # journal entry of the garbage's going; then the mount is idle
    assert wait_until(lambda: stats(m)["stored_garbage_bytes"] == 0 and
                      stats(m)["stored_data_bytes"] == 0, 60)

    def settled():
        s = stats(m)
        time.sleep(1)
        return stats(m)["requests"] == s["requests"]
    assert wait_until(settled, 60)
    s0 = stats(m)
    time.sleep(3)
    s1 = stats(m)
    assert delta(s0, s1) == {k: 0 for k in KINDS}
    assert s1["bytes_up"] == s0["bytes_up"]
    assert s1["lease_renew_s"] == 450 and s1["lease_valid_s"] == 900
    assert 3600 / s1["lease_renew_s"] <= 10


def test_idle_lease_renewal_is_one_put(mounts):
    """With the lease shortened for the test (valid 6 s, renewed every
    3): the renewals are PUTs, nothing read, nothing else."""
    m = mounts(mount=False)
    m.env["METAFUSE_TEST_LEASE_S"] = "6"
    m.mount(opts=QUIET)
    s0 = stats(m)
    t0 = time.monotonic()
    assert wait_until(lambda: delta(s0, stats(m))["PUT"] >= 2, 60)
    s1 = stats(m)
    elapsed = time.monotonic() - t0
    d = delta(s0, s1)
    assert d == dict({k: 0 for k in KINDS}, PUT=d["PUT"]), d
    assert d["PUT"] <= elapsed / 3 + 1
    assert s1["lease_renew_s"] == 3
    # the last hour holds them
    assert s1["last_hour"]["requests"]["PUT"] == s1["requests"]["PUT"]


def test_last_hour_forgets_older_requests(mounts):
    """With the minute shortened for the test (0.1 s, so "the hour" is
    6 s): a write's requests leave the last hour once it is older, and
    stay in the counts since the mount."""
    m = mounts(mount=False)
    m.env["METAFUSE_TEST_STATS_MINUTE_MS"] = "100"
    m.mount(opts=QUIET)
    write_blocks(m.path("f"), 2, seed=9)
    s = stats(m)
    assert s["last_hour"]["requests"]["PUT"] == s["requests"]["PUT"] >= 3
    assert wait_until(
        lambda: stats(m)["last_hour"]["requests"]["PUT"] == 0, 60)
    s = stats(m)
    assert s["requests"]["PUT"] >= 3
    assert 0 < s["last_hour"]["seconds"] <= 6.5
    assert s["cost_usd_month_last_hour"] < s["cost_usd_month"]


# ---- the lease of a mount on another host ----

def elsewhere(args, env):
    """args run as on a host named "elsewhere" (a UTS namespace)."""
    return ["unshare", "--uts", "sh", "-c",
            'hostname elsewhere && exec "$@"', "sh", *args]


def mount_elsewhere(m, cache, extra_env):
    env = dict(m.env, **extra_env)
    args = [h.BIN, "mount", "-o",
            h.format_opts(dict(QUIET, cache_dir=cache)), m.store, m.mnt]
    r = h.run(elsewhere(args, env), env=env)
    assert r.returncode == 0, r.stderr
    return h.pids_with_arg(m.mnt)


def can_unshare():
    try:
        return subprocess.run(["unshare", "--uts", "true"],
                              capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@pytest.mark.root
@pytest.mark.skipif(not can_unshare(), reason="needs unshare --uts")
def test_live_mount_elsewhere_keeps_its_lease_by_renewing(mounts):
    """A mount on another host keeps the volume by its renewals alone
    (one PUT each, never read back): long after the lease it took has
    expired, a second mount is still refused."""
    m = mounts(mount=False)
    other = os.path.join(m.root, "cache-elsewhere")
    m.extra_logs.append(os.path.join(other, "metafuse.log"))
    mount_elsewhere(m, other, {"METAFUSE_TEST_LEASE_S": "6"})
    try:
        s0 = stats(m)
        t0 = time.monotonic()
        # three renewals: at least 9 s, past the first write's 6 s
        assert wait_until(lambda: delta(s0, stats(m))["PUT"] >= 3, 90)
        assert time.monotonic() - t0 > 6
        d = delta(s0, stats(m))
        assert d["GET"] == 0 and d["HEAD"] == 0, d
        mnt2 = os.path.join(m.root, "mnt2")
        os.makedirs(mnt2)
        r = m.cli("mount", "-o", f"cache_dir={m.cache}", m.store, mnt2)
        line = one_line_error(r)
        assert "already mounted by host elsewhere" in line, line
        assert not is_mounted(mnt2)
    finally:
        r = m.cli("umount", m.mnt)
        assert r.returncode == 0, r.stderr


@pytest.mark.root
@pytest.mark.skipif(not can_unshare(), reason="needs unshare --uts")
def test_dead_holder_elsewhere_taken_after_expiry_or_forced(mounts):
    """A mount on another host killed: its lease is refused (the message
    says until when) until it expires, then taken without --force; and
    at once with --force."""
    m = mounts(mount=False)
    other = os.path.join(m.root, "cache-elsewhere")
    m.extra_logs.append(os.path.join(other, "metafuse.log"))
    for forced in (False, True):
        pids = mount_elsewhere(m, other, {"METAFUSE_TEST_LEASE_S": "12"})
        write_file(m.path(f"f{int(forced)}"), b"written elsewhere")
        fd = os.open(m.path(f"f{int(forced)}"), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not any(h.pid_alive(p) for p in pids),
                          15)
        h.force_unmount(m.mnt)
        assert wait_until(lambda: not is_mounted(m.mnt), 15)
        if forced:
            r = m.cli("mount", "--force", "-o", f"cache_dir={m.cache}",
                      m.store, m.mnt)
            assert r.returncode == 0, r.stderr
        else:
            r = m.cli("mount", "-o", f"cache_dir={m.cache}", m.store,
                      m.mnt)
            line = one_line_error(r)
            assert "already mounted by host elsewhere" in line, line
            assert "can be taken after" in line, line
            # taken once it has expired: 12 s after its last renewal
            t0 = time.monotonic()
            assert wait_until(lambda: m.cli(
                "mount", "-o", f"cache_dir={m.cache}", m.store,
                m.mnt).returncode == 0, 60, interval=1)
            assert time.monotonic() - t0 < 30
        assert is_mounted(m.mnt)
        with open(m.path(f"f{int(forced)}"), "rb") as f:
            assert f.read() == b"written elsewhere"
        m.pid = None
        m.umount()


@pytest.mark.root
@pytest.mark.skipif(not can_unshare(), reason="needs unshare --uts")
def test_gc_elsewhere_keeps_its_lease_while_it_runs(mounts):
    """`metafuse gc` on another host holds the volume's lease for as long
    as it runs, renewing it: long after one validity has passed, a mount
    is still refused; once gc ends, the mount goes through."""
    m = mounts()
    write_file(m.path("f"), b"kept")
    m.umount()
    env = dict(m.env, METAFUSE_TEST_LEASE_S="3",
               METAFUSE_TEST_GC_PAUSE_MS="10000")
    gc = subprocess.Popen(elsewhere([h.BIN, "gc", m.store], env), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    try:
        # the lease is taken within a second or two; then its 3 s of
        # validity pass twice over while gc pauses
        time.sleep(8)
        assert gc.poll() is None, gc.communicate()
        r = m.cli("mount", "-o", f"cache_dir={m.cache}", m.store, m.mnt)
        line = one_line_error(r)
        assert "already mounted by host elsewhere" in line, line
        assert not is_mounted(m.mnt)
        out, err = gc.communicate(timeout=60)
        assert gc.returncode == 0, err
        assert "object(s) deleted" in out, out
    finally:
        if gc.poll() is None:
            gc.kill()
            gc.wait()
    m.mount()
    with open(m.path("f"), "rb") as f:
        assert f.read() == b"kept"
