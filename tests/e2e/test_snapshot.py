"""Snapshots: `metafuse snapshot create|list|delete TARGET [NAME]` on a
mounted volume and on the STORE of an unmounted one, and
`metafuse mount --snapshot NAME` beside the live read-write mount.

Checked from outside: a snapshot mounted through the kernel equals the
tree as it was when the snapshot was made, after the live files were
overwritten, deleted and truncated, after `gc`, after a remount with the
cache deleted; fsck --verify-data is clean; after delete and gc the
objects only the snapshot held are gone from the store and the shared
ones stay; every bad input is one line, a non-zero status and nothing
changed.  Runs on S3 with METAFUSE_TEST_STORE=s3, encrypted with
METAFUSE_TEST_ENCRYPT=1.
"""

import os
import re

import pytest

import mfhelpers as h
from mfhelpers import read_file, write_file

BS = h.DEFAULT_BLOCK_SIZE


def snap(m, *args):
    return m.cli("snapshot", *args)


def one_line_failure(r):
    assert r.returncode != 0, r.stdout
    err = r.stderr.strip()
    assert err and "\n" not in err, r.stderr
    return err


def listed(m, target=None):
    """{name: (iso time, exact bytes alone)} of `snapshot list`."""
    r = snap(m, "list", target or m.mnt)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        name, when, human, exact = line.split("\t")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", when), line
        m_ = re.fullmatch(r"\((\d+) bytes\)", exact)
        assert m_ and human, line
        out[name] = (when, int(m_.group(1)))
    return out


def past(mounts, m, name, tag="past"):
    """The snapshot name of m's volume mounted read-only (own cache)."""
    p = mounts(name=tag, store=m.store, mkfs=False, mount=False,
               use_cache_opt=False)
    p.mount(opts={"snapshot": name})
    return p


def make_tree(m):
    """Files of every kind: inline, several blocks, two with the same
    content (one object), a symlink, a directory, an xattr."""
    os.mkdir(m.path("d"))
    write_file(m.path("small"), b"tiny\n")
    write_file(m.path("big"), h.rand_bytes(1, 2 * BS + 100))
    write_file(m.path("d", "same1"), h.rand_bytes(2, BS))
    write_file(m.path("d", "same2"), h.rand_bytes(2, BS))
    write_file(m.path("d", "gone"), h.rand_bytes(3, BS + 7))
    write_file(m.path("trunc"), h.rand_bytes(4, 2 * BS))
    os.symlink("big", m.path("link"))
    os.setxattr(m.path("big"), "user.k", b"v1")


def change_tree(m):
    write_file(m.path("big"), h.rand_bytes(5, 2 * BS + 100))
    os.remove(m.path("d", "gone"))
    os.truncate(m.path("trunc"), 10)
    write_file(m.path("new"), h.rand_bytes(6, BS))
    os.setxattr(m.path("big"), "user.k", b"v2")
    os.remove(m.path("link"))


def check_same(p, want):
    got = h.snapshot(p.mnt, root_attrs=False)
    diff = h.diff_snapshots(want, got, "at creation", "snapshot mount")
    assert not diff, "\n".join(diff)


def test_snapshot_of_a_mount(mounts):
    m = mounts()
    make_tree(m)
    before = h.snapshot(m.mnt, root_attrs=False)
    r = snap(m, "create", m.mnt, "s1")
    assert r.returncode == 0, r.stderr
    assert "s1" in r.stdout
    # durable before the answer: the objects of every file are stored
    held = set(m.data_objects())
    assert len(held) >= 5
    change_tree(m)
    after = h.snapshot(m.mnt, root_attrs=False)
    ls = listed(m)
    assert list(ls) == ["s1"]

    p = past(mounts, m, "s1")
    check_same(p, before)
    # the live mount is untouched beside it, and can still change
    assert h.snapshot(m.mnt, root_attrs=False) == after
    write_file(m.path("later"), b"x")
    assert not os.path.exists(p.path("later"))
    p.umount()

    m.umount()
    r = m.cli("gc", m.store)
    assert r.returncode == 0, r.stderr
    # every object the snapshot named survived gc
    assert held <= set(m.data_objects())
    m.fsck_verified()
    m.wipe_cache()
    m.mount()
    p.mount(opts={"snapshot": "s1"})
    check_same(p, before)
    p.umount()
    # what only s1 keeps: the old big, gone, trunc's blocks (at least)
    alone = listed(m)["s1"][1]
    assert alone >= 2 * BS

    r = snap(m, "delete", m.mnt, "s1")
    assert r.returncode == 0, r.stderr
    assert listed(m) == {}
    assert not m.store_ls("meta/snap-") and not m.store_ls("meta/snpp-")
    before_gc = m.data_objects()
    m.umount()
    assert m.cli("gc", m.store).returncode == 0
    now = m.data_objects()
    freed = set(before_gc) - set(now)
    # the objects only s1 held are gone, exactly the bytes it alone kept;
    # the ones it shared with live files stay
    assert freed and freed <= held
    if not m.encrypt:
        assert sum(before_gc[k] for k in freed) == alone
    assert held & set(now)
    m.fsck_verified()
    m.mount()
    got = h.snapshot(m.mnt, root_attrs=False)
    assert got.pop("later")["size"] == 1
    assert got == after
    assert read_file(m.path("d", "same1")) == h.rand_bytes(2, BS)


def test_snapshot_of_an_unmounted_store(mounts):
    m = mounts()
    make_tree(m)
    before = h.snapshot(m.mnt, root_attrs=False)
    # a mounted STORE is refused, naming the mount
    err = one_line_failure(snap(m, "create", m.store, "off"))
    assert m.mnt in err, err
    m.umount()
    r = snap(m, "create", m.store, "off")
    assert r.returncode == 0, r.stderr
    ls = listed(m, m.store)
    assert list(ls) == ["off"]
    m.mount()
    change_tree(m)
    assert list(listed(m)) == ["off"]
    p = past(mounts, m, "off")
    check_same(p, before)
    p.umount()
    # a second one on the mount, then both seen offline
    assert snap(m, "create", m.mnt, "on").returncode == 0
    after = h.snapshot(m.mnt, root_attrs=False)
    m.umount()
    assert list(listed(m, m.store)) == ["off", "on"]
    p.mount(opts={"snapshot": "on"})
    check_same(p, after)
    p.umount()
    r = snap(m, "delete", m.store, "off")
    assert r.returncode == 0, r.stderr
    assert list(listed(m, m.store)) == ["on"]
    m.fsck_verified()
    m.mount()
    assert h.snapshot(m.mnt, root_attrs=False) == after


def test_snapshot_bad_input(mounts):
    m = mounts()
    write_file(m.path("f"), h.rand_bytes(7, BS))
    assert snap(m, "create", m.mnt, "s1").returncode == 0
    state = h.snapshot(m.mnt, root_attrs=False)
    objects = set(m.data_objects())
    keys = set(m.store_ls("meta/snap"))

    cases = [
        (("create", m.mnt, "s1"), "already has a snapshot named 's1'"),
        (("create", m.mnt, ""), "cannot be empty"),
        (("create", m.mnt, "x" * 256), "at most 255 bytes"),
        (("create", m.mnt, "a/b"), "cannot hold '/'"),
        (("create", m.mnt, "a\tb"), "control characters"),
        (("create", m.mnt, "a\nb"), "control characters"),
        (("delete", m.mnt, "nope"), "no snapshot named 'nope'"),
        (("delete", m.mnt, ""), "cannot be empty"),
        (("rename", m.mnt, "s1"), "unknown action"),
        (("list", m.mnt, "s1"), "usage"),
        (("create", m.mnt), "usage"),
    ]
    for args, words in cases:
        err = one_line_failure(snap(m, *args))
        assert words in err, (args, err)
    assert "'s1'" in one_line_failure(snap(m, "delete", m.mnt, "nope"))
    # a 255-byte name is fine
    long_name = "y" * 255
    assert snap(m, "create", m.mnt, long_name).returncode == 0
    assert snap(m, "delete", m.mnt, long_name).returncode == 0

    # on a past mount (read-only): refused
    p = past(mounts, m, "s1")
    for verb in ("create", "delete"):
        err = one_line_failure(snap(p, verb, p.mnt, "s1"))
        assert "read-only" in err, err
    p.umount()
    # on a read-only mount of the volume itself: refused too
    ro = mounts(name="ro", store=m.store, mkfs=False, mount=False)
    ro.mount(opts={"ro": True})
    err = one_line_failure(snap(ro, "create", ro.mnt, "s2"))
    assert "read-only" in err, err
    assert list(listed(ro)) == ["s1"]
    ro.umount()
    # an unknown name to mount: the names there are
    q = mounts(name="q", store=m.store, mkfs=False, mount=False,
               use_cache_opt=False)
    try:
        q.mount(opts={"snapshot": "nope"})
        assert False, "mounted an unknown snapshot"
    except h.MountError as e:
        assert "'nope'" in str(e) and "'s1'" in str(e), str(e)
    assert not h.is_mounted(q.mnt)
    # not a metafuse mount, not a volume
    err = one_line_failure(snap(m, "list", m.root))
    # nothing changed
    assert list(listed(m)) == ["s1"]
    assert h.snapshot(m.mnt, root_attrs=False) == state
    assert set(m.data_objects()) == objects
    assert set(m.store_ls("meta/snap")) == keys


def test_snapshot_only_root_and_the_owner(mounts):
    """Another user who can reach the mount (allow_other) may not make,
    delete or list its snapshots."""
    import subprocess
    m = mounts(opts={"allow_other": True})
    os.chmod(m.mnt, 0o755)
    assert snap(m, "create", m.mnt, "s1").returncode == 0
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    for args in (("create", m.mnt, "s2"), ("delete", m.mnt, "s1"),
                 ("list", m.mnt)):
        r = subprocess.run(user + [h.BIN, "snapshot", *args],
                           capture_output=True, text=True)
        err = one_line_failure(r)
        assert "only root and the user who mounted" in err, err
    assert list(listed(m)) == ["s1"]


@pytest.mark.parametrize("wbc", [False, True],
                         ids=["default", "kernel-writeback-cache"])
def test_snapshot_while_a_file_is_written(mounts, wbc):
    """A file written all the time does not hold a snapshot back, and
    the snapshot has every byte written before the command (with the
    kernel's writeback cache too: the command's syncfs sends it)."""
    import threading
    if wbc and not h.mount_option_supported("writeback_cache"):
        pytest.skip("this metafuse has no writeback_cache option")
    m = mounts(opts={"writeback_cache": True} if wbc else None)
    # written, still open (a close would write the kernel's pages back)
    fresh = h.rand_bytes(10, 8192 + 5)
    fd = os.open(m.path("fresh"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, fresh)
        r = snap(m, "create", m.mnt, "open")
        assert r.returncode == 0, r.stderr
        p = past(mounts, m, "open", tag="past-open")
        assert read_file(p.path("fresh")) == fresh
        p.umount()
    finally:
        os.close(fd)
    data = h.rand_bytes(9, 8 * BS)
    written = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def writer():
        fd = os.open(m.path("busy"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            off = 0
            while not stop.is_set():
                n = os.pwrite(fd, data[off:off + 4096], off)
                with lock:
                    written[0] = max(written[0], off + n)
                off = (off + n) % len(data)
        finally:
            os.close(fd)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for i in range(3):
            while True:
                with lock:
                    before = written[0]
                if before >= (i + 1) * BS or before == len(data):
                    break
            r = snap(m, "create", m.mnt, f"s{i}")
            assert r.returncode == 0, r.stderr
            p = past(mounts, m, f"s{i}", tag=f"past{i}")
            got = read_file(p.path("busy"))
            p.umount()
            assert len(got) >= before
            assert got[:before] == data[:before]
    finally:
        stop.set()
        t.join()
