"""The history window: `mkfs --history`, `mount --at TIME`, retention and
garbage collection by time, `tune --history` (README, "History").

A volume keeps every state less than its window old: a past mount
(read-only, beside the live read-write mount) of an instant recorded after
an fsync shows exactly the files the volume had then.  Objects that only
past states need stay in the store until the window has passed them.
"""

import json
import os
import re
import time
from datetime import datetime, timezone

import pytest

import mfhelpers as h
from mfhelpers import MIB, read_file, write_file


def mkfs_history(m, duration, check=True):
    """mkfs with --history (and what Mount.mkfs would add)."""
    args = ["mkfs", "--history", duration]
    if m.encrypt:
        args.append("--encrypt")
    if h.STORE_KIND == "s3":
        args += ["--block-size", str(h.DEFAULT_BLOCK_SIZE)]
    r = m.cli(*args, m.store)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def new_volume(mounts, name="v", history="1h", opts=None):
    m = mounts(name, mkfs=False, mount=False, opts=opts)
    mkfs_history(m, history)
    m.mount()
    return m


def past(mounts, live, name, at):
    """A past mount of live's volume at `at` (a Mount, mounted)."""
    p = mounts(name, mkfs=False, mount=False, store=live.store,
               opts={"at": at}, env=live.env)
    p.mount()
    return p


def iso(ns):
    """ns as UTC ISO 8601 with nanoseconds."""
    s = datetime.fromtimestamp(ns // 10**9, timezone.utc)
    return s.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % (ns % 10**9)


def fsync_all(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def instant(m, changed):
    """fsync what changed; the instant after it and the state then."""
    fsync_all(changed)
    t = time.time_ns()
    time.sleep(0.05)
    return t, h.snapshot(m.mnt, root_attrs=False)


def same(p, want, what):
    got = h.snapshot(p.mnt, root_attrs=False)
    diff = h.diff_snapshots(want, got, "model", "past mount")
    assert not diff, f"{what}:\n" + "\n".join(diff)


def test_mount_at_each_instant(mounts):
    """A series of states, each recorded after an fsync: a mount --at of
    each instant (absolute, and relative to now) beside the read-write
    mount shows exactly that state: files, sizes, bytes, a file deleted
    later back, a name as it was before a rename."""
    m = new_volume(mounts, opts={"journal_interval": "1",
                                 "checkpoint_interval": "2"})
    bs = h.DEFAULT_BLOCK_SIZE
    big = h.rand_bytes(1, 2 * bs + 1000)
    states = []
    os.mkdir(m.path("dir"))
    write_file(m.path("a.txt"), b"alpha\n")
    write_file(m.path("big.bin"), big)
    write_file(m.path("dir", "c.txt"), b"gamma\n")
    states.append(instant(m, [m.path("a.txt"), m.path("big.bin"),
                              m.path("dir", "c.txt")]))
    time.sleep(1.1)
    with open(m.path("big.bin"), "r+b") as f:
        f.seek(bs - 10)
        f.write(b"X" * 100)
    with open(m.path("a.txt"), "ab") as f:
        f.write(b"more\n")
    states.append(instant(m, [m.path("big.bin"), m.path("a.txt")]))
    time.sleep(1.1)
    os.unlink(m.path("dir", "c.txt"))
    os.rename(m.path("a.txt"), m.path("dir", "a2.txt"))
    states.append(instant(m, [m.path("dir", "a2.txt")]))
    time.sleep(1.1)
    os.truncate(m.path("big.bin"), 100000)
    write_file(m.path("d"), h.rand_bytes(2, 5000))
    states.append(instant(m, [m.path("big.bin"), m.path("d")]))
    # a change after the last instant, not yet in any of them
    write_file(m.path("late"), b"late\n")
    for i, (t, want) in enumerate(states):
        p = past(mounts, m, f"p{i}", iso(t))
        same(p, want, f"state {i} at {iso(t)}")
        with pytest.raises(OSError):
            write_file(p.path("new"), b"x")
        p.umount()
    # relative: half a second after the second instant
    t, want = states[1]
    back = (time.time_ns() - t) / 1e9 - 0.5
    p = past(mounts, m, "prel", "-%.3fs" % back)
    same(p, want, "relative time")
    p.umount()
    # the live mount went on all along
    assert read_file(m.path("late")) == b"late\n"
    m.umount()


def test_mount_at_after_remount_and_restore(mounts):
    """Instants survive an unmount, a restore from the store alone (cache
    wiped) and the checkpoints those write."""
    m = new_volume(mounts)
    write_file(m.path("f"), b"one\n")
    t1, s1 = instant(m, [m.path("f")])
    m.remount(wipe_cache=True)
    write_file(m.path("f"), b"two\n")
    t2, s2 = instant(m, [m.path("f")])
    m.umount()
    for i, (t, want) in enumerate([(t1, s1), (t2, s2)]):
        p = past(mounts, m, f"p{i}", iso(t))
        same(p, want, f"state {i}")
        p.umount()


def oldest_in(err):
    mo = re.search(r"oldest moment that can be mounted is (\S+)", err)
    assert mo, err
    return mo.group(1)


def test_bad_times(mounts):
    """--at before the oldest state kept names the oldest moment (which
    then mounts), in the future or not a time: one line, non-zero, no
    mount."""
    m = new_volume(mounts)
    write_file(m.path("f"), b"x")
    instant(m, [m.path("f")])
    mp = os.path.join(m.root, "pastmnt")
    os.makedirs(mp)
    r = m.cli("mount", "--at", "2001-01-01T00:00:00Z", m.store, mp)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    first = oldest_in(lines[0])
    assert not h.is_mounted(mp)
    p = past(mounts, m, "oldest", first)
    assert os.path.isdir(p.mnt)
    p.umount()
    # metafuse stats names the same moment
    r = m.cli("stats", "--json", m.mnt)
    j = json.loads(r.stdout)
    assert j["history_s"] == 3600, r.stdout
    got = datetime.strptime(j["history_oldest"], "%Y-%m-%dT%H:%M:%SZ")
    want = datetime.strptime(first, "%Y-%m-%dT%H:%M:%S.%fZ")
    assert 0 <= (got - want).total_seconds() < 1, (got, want)
    for bad, why in (("2099-01-01T00:00:00Z", "in the future"),
                     ("yesterday", "not a time"), ("-5x", "not a time")):
        r = m.cli("mount", "--at", bad, m.store, mp)
        assert r.returncode != 0
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert why in r.stderr, r.stderr
        assert not h.is_mounted(mp)
    m.umount()


def objects(m):
    return set(m.data_objects())


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.5)
    pytest.fail(f"not within {timeout} s: {what}")


def test_window_keeps_then_frees_objects(mounts):
    """An overwritten file's old blocks stay while the window holds the
    state that names them (the mount's collector runs every second); once
    the window has passed, they are deleted from the store."""
    m = new_volume(mounts, history="8s",
                   opts={"journal_interval": "1", "checkpoint_interval": "1"})
    old = h.rand_bytes(3, h.DEFAULT_BLOCK_SIZE)
    write_file(m.path("f"), old)
    t_old, s_old = instant(m, [m.path("f")])
    before = objects(m)
    write_file(m.path("f"), h.rand_bytes(4, h.DEFAULT_BLOCK_SIZE))
    instant(m, [m.path("f")])
    gone = before - objects(m)
    time.sleep(3)
    # still there: the state of t_old is in the window
    assert before <= objects(m)
    p = past(mounts, m, "p", iso(t_old))
    same(p, s_old, "the old state")
    p.umount()
    wait_for(lambda: not (before - gone) & objects(m) or
             not before <= objects(m), 40, "the old block collected")
    assert len(before - objects(m)) == 1
    m.umount()


def test_gc_keeps_the_window(mounts):
    """`metafuse gc` of an unmounted volume deletes only what no state in
    the window needs; after the window, the rest."""
    m = new_volume(mounts, history="6s")
    write_file(m.path("f"), h.rand_bytes(5, h.DEFAULT_BLOCK_SIZE))
    t_old, s_old = instant(m, [m.path("f")])
    before = objects(m)
    write_file(m.path("f"), h.rand_bytes(6, h.DEFAULT_BLOCK_SIZE))
    instant(m, [m.path("f")])
    m.umount()
    r = m.cli("gc", m.store)
    assert r.returncode == 0, r.stderr
    assert before <= objects(m)
    p = past(mounts, m, "p", iso(t_old))
    same(p, s_old, "the old state after gc")
    p.umount()
    time.sleep(7)
    r = m.cli("gc", m.store)
    assert r.returncode == 0, r.stderr
    assert len(before - objects(m)) == 1
    r = m.cli("mount", "--at", iso(t_old), m.store,
              os.path.join(m.root, "mnt"))
    assert r.returncode != 0 and "oldest moment" in r.stderr, r.stderr


def test_tune(mounts):
    """tune --history on a read-write mount (applied at once), on an
    unmounted STORE (under the lease), refused on a past mount, on a
    mounted STORE and for a bad duration: one line, nothing changed."""
    m = mounts()  # a volume without history
    write_file(m.path("f"), b"x")
    r = m.cli("tune", "--history", "2h", m.mnt)
    assert r.returncode == 0, r.stderr
    assert "2h (was 0s)" in r.stdout, r.stdout
    t, want = instant(m, [m.path("f")])
    # stats says the window
    r = m.cli("stats", m.mnt)
    assert r.returncode == 0 and "history window:       2h" in r.stdout, \
        r.stdout
    r = m.cli("stats", "--json", m.mnt)
    assert json.loads(r.stdout)["history_s"] == 7200, r.stdout
    p = past(mounts, m, "p", iso(t))
    same(p, want, "after tune")
    r = m.cli("tune", "--history", "1d", p.mnt)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert "read-only" in r.stderr, r.stderr
    p.umount()
    if m.is_local:
        r = m.cli("tune", "--history", "1d", m.store)
        assert r.returncode == 1
        assert f"mounted at {m.mnt}" in r.stderr, r.stderr
    for bad in ("", "abc", "-5m", "5w", "1h2", "1e99d"):
        r = m.cli("tune", "--history", bad, m.mnt)
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    m.umount()
    r = m.cli("tune", "--history", "30m", m.store)
    assert r.returncode == 0, r.stderr
    assert "30m (was 2h; volume format 5)" in r.stdout, r.stdout
    # what the mount then keeps: the instant is still there
    p = past(mounts, m, "p2", iso(t))
    same(p, want, "after tune of the store")
    p.umount()
    # off: the markers (and what only the window kept) go at once; gc
    # writes a checkpoint (with its marker) beside the older one
    assert m.cli("gc", m.store).returncode == 0
    keys = m.store_ls("meta/")
    assert any(k.startswith("meta/ckpi-") for k in keys), keys
    assert sum(k.startswith("meta/ckpt-") for k in keys) == 2, keys
    r = m.cli("tune", "--history", "0", m.store)
    assert r.returncode == 0, r.stderr
    assert "0s (was 30m" in r.stdout, r.stdout
    keys = m.store_ls("meta/")
    assert not any(k.startswith("meta/ckpi-") for k in keys), keys
    assert sum(k.startswith("meta/ckpt-") for k in keys) == 1, keys
    m.mount()
    assert read_file(m.path("f")) == b"x"


def test_mkfs_bad_history(mounts):
    m = mounts(mkfs=False, mount=False)
    r = mkfs_history(m, "ten minutes", check=False)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--history" in r.stderr
    assert m.cli("fsck", m.store).returncode != 0  # nothing was created
