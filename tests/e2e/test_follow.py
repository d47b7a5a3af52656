"""Followers: `metafuse mount -o ro,follow` beside a writer of the same
volume (another cache directory), on the file store and on radosgw.

Checked from outside, through the follower's kernel: every kind of change
the writer makes durable shows up within the interval (polled with a
deadline, never a fixed sleep as the assertion), pages read before a
change are not served after it, the follower catches up after the writer
checkpointed and trimmed the entries it had not read, a file the writer
deleted or rewrote reads as ESTALE once its objects are collected (never
zeros, never EIO), writes fail with EROFS, a follower survives unmount and
remount and a store that stops answering, and every bad option is one
line, a non-zero status and no mount.
"""

import errno
import json
import os
import re
import time

import pytest

import mfhelpers as h
from mfhelpers import read_file
# mount(8) in a mount namespace of its own, as test_fstab.py does it
from test_fstab import (check_mounted, mount8, namespace,  # noqa: F401
                        umount8, volume)

BS = h.DEFAULT_BLOCK_SIZE
# the writer sends its journal and blocks fast, so that the follower's
# interval is what the tests wait for
WRITER = {"journal_interval": "0.2", "writeback_delay": "0.2"}
DEADLINE = 20.0
# an entry listed, then trimmed by the writer's checkpoint before the
# follower fetched it: journal_replay() logs the failed download, the
# follower catches up from the checkpoint
TRIM_RACE = (r"(journal meta/jrnl-[0-9a-f]+|checkpoint meta/ckp[tp]-[0-9a-f-]+)"
             r": download failed: No such file")


def pair(mounts, writer_opts=None, follow_opts=None, name="f"):
    """A writer volume and a follower of it, both mounted."""
    w = mounts("w", opts=dict(WRITER, **(writer_opts or {})))
    fo = {"ro": True, "follow": True, "follow_interval": "0.3"}
    fo.update(follow_opts or {})
    f = mounts(name, store=w.store, mkfs=False, opts=fo)
    f.allow_errors(TRIM_RACE)
    f.mount()
    return w, f


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path, data):
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def view(root):
    """The tree as the follower shows it (None while it changes under
    the walk)."""
    try:
        return h.snapshot(root, times=False, root_attrs=False)
    except OSError:
        return None


def wait_same(w, f, what, deadline=DEADLINE):
    """Poll until the follower shows what the writer shows."""
    want = h.snapshot(w.mnt, times=False, root_attrs=False)
    end = time.monotonic() + deadline
    got = None
    while time.monotonic() < end:
        got = view(f.mnt)
        if got == want:
            return time.monotonic()
        time.sleep(0.05)
    diff = h.diff_snapshots(want, got or {}, "writer", "follower")
    pytest.fail(f"{what}: not on the follower within {deadline} s:\n{diff}")


def wait_until(cond, what, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {deadline} s")


def pread_or_none(fd, n, off):
    """pread, or None while the writer's block is not uploaded (EAGAIN:
    a journal entry may name it dirty before the fsync's upload)."""
    try:
        return os.pread(fd, n, off)
    except OSError as e:
        if e.errno == errno.EAGAIN:
            return None
        raise


def stale(fd):
    """Whether the follower's kernel says fd's inode is gone."""
    try:
        os.fstat(fd)
    except OSError as e:
        if e.errno == errno.ESTALE:
            return True
        raise
    return False


def test_changes_show_on_the_follower(mounts):
    """Creation, rename, delete, overwrite, truncate, mkdir, symlink and
    chmod, each made durable by the writer, show on the follower; an fd
    the follower holds reads the new bytes after an overwrite."""
    w, f = pair(mounts)
    wait_same(w, f, "an empty volume")

    data = h.rand_bytes(1, 2 * BS + 123)
    write_synced(w.path("a"), data)
    write_synced(w.path("small"), b"inline bytes")
    wait_same(w, f, "creation")
    assert read_file(f.path("a")) == data

    os.rename(w.path("a"), w.path("b"))
    fsync_path(w.mnt)
    wait_same(w, f, "rename")
    assert not os.path.exists(f.path("a"))

    # overwrite in place: pages the follower's kernel holds must go
    fd = os.open(f.path("b"), os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, BS) == data[BS:BS + 4096]
        new = h.rand_bytes(2, 4096)
        with open(w.path("b"), "r+b") as fh:
            fh.seek(BS)
            fh.write(new)
            fh.flush()
            os.fsync(fh.fileno())
        wait_until(lambda: pread_or_none(fd, 4096, BS) == new,
                   "an overwrite through an open fd")
    finally:
        os.close(fd)
    wait_same(w, f, "overwrite")

    os.truncate(w.path("b"), BS // 2)
    fsync_path(w.path("b"))
    wait_same(w, f, "truncate")
    assert os.stat(f.path("b")).st_size == BS // 2

    os.mkdir(w.path("d"))
    os.mkdir(w.path("d", "e"))
    os.symlink("../b", w.path("d", "link"))
    os.chmod(w.path("small"), 0o600)
    os.setxattr(w.path("small"), "user.k", b"v")
    fsync_path(w.mnt)
    wait_same(w, f, "mkdir, symlink, chmod, xattr")
    assert os.readlink(f.path("d", "link")) == "../b"
    assert os.stat(f.path("small")).st_mode & 0o777 == 0o600

    os.unlink(w.path("small"))
    os.rename(w.path("b"), w.path("d", "e", "b"))
    fsync_path(w.mnt)
    wait_same(w, f, "delete and a move into a subdirectory")
    assert not os.path.exists(f.path("small"))
    assert read_file(f.path("d", "e", "b")) == data[:BS // 2]


def test_blocks_not_uploaded_are_eagain(mounts):
    """A file the writer wrote but has not uploaded (its journal entry
    names its blocks dirty) reads as EAGAIN on the follower, never as
    zeros nor as older bytes; once the writer fsyncs, its bytes."""
    # nothing goes up before its delay (nor early, past max_dirty/32)
    w, f = pair(mounts, writer_opts={"writeback_delay": "600",
                                     "max_dirty": "2G"})
    old = h.rand_bytes(8, 2 * BS)
    write_synced(w.path("g"), old)
    wait_same(w, f, "an uploaded file")
    new = h.rand_bytes(9, 3 * BS)
    with open(w.path("g"), "r+b") as fh:   # not synced: dirty blocks
        fh.write(new)
    with open(w.path("n"), "wb") as fh:
        fh.write(new)
    wait_until(lambda: "n" in os.listdir(f.mnt) and
               os.stat(f.path("g")).st_size == 3 * BS,
               "the writer's journal entry")
    for name in ("g", "n"):
        fd = os.open(f.path(name), os.O_RDONLY)
        try:
            for off in (0, BS, 2 * BS):
                h.expect_errno(errno.EAGAIN, os.pread, fd, 4096, off)
        finally:
            os.close(fd)
    fsync_path(w.path("g"))
    fsync_path(w.path("n"))
    wait_same(w, f, "the blocks after the writer's fsync")
    assert read_file(f.path("g")) == new
    assert read_file(f.path("n")) == new


def test_kernel_hears_of_a_name_at_once(mounts):
    """The follower's kernel cached a name's absence for a whole interval
    (10 s); once the follower applied the entry that creates it, the name
    resolves at once: the follower told the kernel, it did not wait for
    the timeout.  (That it applied is seen in another directory's listing,
    which the kernel does not cache: listing the name's own directory
    would tell the kernel of it.)"""
    w, f = pair(mounts, follow_opts={"follow_interval": "10"})
    os.mkdir(w.path("d1"))
    os.mkdir(w.path("d2"))
    fsync_path(w.mnt)
    wait_same(w, f, "two directories")
    # the follower's round just ran: half an interval on, the absence
    # cached now outlives the next round by half an interval
    time.sleep(5)
    h.expect_errno(errno.ENOENT, os.stat, f.path("d1", "x"))  # cached
    write_synced(w.path("d1", "x"), b"x")
    write_synced(w.path("d2", "probe"), b"p")
    fsync_path(w.path("d2"))
    wait_until(lambda: "probe" in os.listdir(f.path("d2")),
               "the entries applied")
    wait_until(lambda: os.path.exists(f.path("d1", "x")),
               "the name through the kernel", deadline=0.5)
    assert read_file(f.path("d1", "x")) == b"x"


def test_writes_fail_with_erofs(mounts):
    w, f = pair(mounts)
    write_synced(w.path("x"), b"x")
    wait_same(w, f, "creation")
    for func, args in ((os.open, (f.path("new"), os.O_WRONLY | os.O_CREAT)),
                       (os.open, (f.path("x"), os.O_WRONLY)),
                       (os.mkdir, (f.path("d"),)),
                       (os.unlink, (f.path("x"),)),
                       (os.rename, (f.path("x"), f.path("y"))),
                       (os.chmod, (f.path("x"), 0o600)),
                       (os.truncate, (f.path("x"), 0)),
                       (os.symlink, ("x", f.path("l")))):
        h.expect_errno(errno.EROFS, func, *args)
    assert read_file(f.path("x")) == b"x"
    assert sorted(os.listdir(w.mnt)) == ["x"]


def follow_stats(m):
    r = m.cli("stats", "--json", m.mnt)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["follow"]


def test_stats_say_where_the_follower_stands(mounts):
    """`metafuse stats` of a follower: the writer's journal entry its copy
    is at, when the writer cut it, its rounds and what they applied; a
    writer's stats have no follower."""
    w, f = pair(mounts)
    write_synced(w.path("a"), b"a")
    wait_same(w, f, "creation")
    s1 = follow_stats(f)
    assert s1["interval_s"] == 0.3, s1
    assert s1["jseq"] >= 1 and s1["entries"] >= 1, s1
    assert s1["state_age_s"] is not None and 0 <= s1["state_age_s"] < 60
    assert s1["last_round_s"] < 10 and s1["failing"] is False, s1
    for i in range(2):
        write_synced(w.path(f"b{i}"), b"b")
    wait_same(w, f, "two more files")
    wait_until(lambda: follow_stats(f)["jseq"] > s1["jseq"],
               "the follower's entry moving on")
    s2 = follow_stats(f)
    assert s2["entries"] > s1["entries"], (s1, s2)
    r = f.cli("stats", f.mnt)
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("following:")]
    assert len(line) == 1, r.stdout
    got = re.fullmatch(
        r"following:\s+journal entry (\d+) of the writer, cut "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \([\d.]+ s ago\); last round "
        r"[\d.]+ s ago, every 0.3 s; (\d+) entries applied, \d+ "
        r"catch-up\(s\) from a checkpoint", line[0])
    assert got, line
    assert int(got.group(1)) >= s2["jseq"], (line, s2)
    assert int(got.group(2)) >= s2["entries"], (line, s2)
    r = w.cli("stats", "--json", w.mnt)
    assert json.loads(r.stdout)["follow"] is None
    assert "following:" not in w.cli("stats", w.mnt).stdout


def test_catch_up_after_checkpoint_and_trim(mounts):
    """The writer checkpoints and deletes the entries the follower has not
    read between two of its rounds: it catches up from the checkpoint
    without a remount."""
    w, f = pair(mounts, writer_opts={"checkpoint_interval": "0.3"},
                follow_opts={"follow_interval": "8"})
    t0 = time.monotonic()

    def ckpts():
        return sorted(k for k in w.store_ls("meta/") if "/ckpt-" in k)
    first = ckpts()
    for i in range(20):
        with open(w.path(f"n{i}"), "wb") as fh:
            fh.write(b"n" * i)
    os.mkdir(w.path("dir"))
    os.rename(w.path("n3"), w.path("dir", "n3"))
    # freed objects make the next checkpoint due
    write_synced(w.path("gone"), h.rand_bytes(3, BS + 1))
    os.unlink(w.path("gone"))
    fsync_path(w.mnt)
    wait_until(lambda: ckpts() != first, "a new checkpoint of the writer")
    if time.monotonic() - t0 > 6:
        pytest.skip("the machine is too slow to do it between two rounds")
    wait_same(w, f, "the state after a checkpoint")
    wait_until(lambda: "caught up with checkpoint" in f.log_text(),
               "the catch-up's log line")
    # and it goes on with the entries after the checkpoint
    write_synced(w.path("later"), b"later")
    wait_same(w, f, "an entry after the catch-up")


def test_deleted_or_rewritten_file_is_estale_once_collected(mounts):
    """A follower's open handle of a file the writer deleted reads ESTALE
    once the inode is gone; a follower that has not seen the change yet
    (a long interval) reads ESTALE once the writer collected the objects,
    never zeros and never EIO."""
    w, f = pair(mounts, writer_opts={"checkpoint_interval": "0.3"})
    frozen = mounts("frozen", store=w.store, mkfs=False,
                    opts={"ro": True, "follow": True,
                          "follow_interval": "3600"})
    frozen.allow_errors(TRIM_RACE)
    a = h.rand_bytes(4, 2 * BS)
    b = h.rand_bytes(5, 2 * BS)
    write_synced(w.path("del"), a)
    write_synced(w.path("rew"), b)
    wait_same(w, f, "creation")
    frozen.mount()          # its one round sees both files
    ffd = os.open(f.path("del"), os.O_RDONLY)
    zfd = os.open(frozen.path("del"), os.O_RDONLY)
    rfd = os.open(frozen.path("rew"), os.O_RDONLY)
    try:
        before = set(w.data_objects())
        os.unlink(w.path("del"))
        write_synced(w.path("rew"), h.rand_bytes(6, 2 * BS))
        fsync_path(w.mnt)
        # the writer collects the old objects after its next checkpoint
        wait_until(lambda: len(before - set(w.data_objects())) >= 4,
                   "the old objects collected")
        wait_until(lambda: not os.path.exists(f.path("del")),
                   "the delete on the follower")
        # the inode goes with the writer's purge, which may come in a
        # later entry than the name's removal
        wait_until(lambda: stale(ffd), "the deleted inode on the follower")
        for fd in (ffd, zfd, rfd):
            h.expect_errno(errno.ESTALE, os.pread, fd, 4096, 0)
            h.expect_errno(errno.ESTALE, os.pread, fd, 4096, BS)
        # the fast follower comes to the new content (it may have
        # applied the unlink's entry and not yet the rewrite's: then
        # the old content, collected, is ESTALE meanwhile)
        wait_same(w, f, "the rewrite")
    finally:
        for fd in (ffd, zfd, rfd):
            os.close(fd)
    frozen.umount()


def test_unmount_remount_and_writer_gone(mounts):
    """A follower unmounted while the writer goes on shows everything at
    its next mount; one mounted after the writer unmounted shows the
    final state, and so does the writer's next mount."""
    w, f = pair(mounts)
    write_synced(w.path("one"), b"1")
    wait_same(w, f, "creation")
    f.umount()
    write_synced(w.path("two"), h.rand_bytes(7, BS + 5))
    os.rename(w.path("one"), w.path("uno"))
    fsync_path(w.mnt)
    f.mount()
    wait_same(w, f, "changes made while the follower was away")
    want = h.snapshot(w.mnt, times=False, root_attrs=False)
    w.umount()
    wait_until(lambda: view(f.mnt) == want, "the writer's final state")
    f.umount()
    f.mount()
    assert view(f.mnt) == want
    w.mount()
    write_synced(w.path("three"), b"3")
    wait_same(w, f, "a new writer session")


def test_follower_cache_mounted_to_write(mounts):
    """A follower's cache directory, mounted read-write once the writer
    is gone, starts from the store's state, not from the follower's copy
    (which had not seen the writer's last entries)."""
    w, f = pair(mounts, follow_opts={"follow_interval": "3600"})
    write_synced(w.path("late"), b"after the follower's only round")
    want = h.snapshot(w.mnt, times=False, root_attrs=False)
    w.umount()
    assert not os.path.exists(f.path("late"))
    f.umount()
    f.mount(opts={"ro": False, "follow": False, "follow_interval": None})
    assert view(f.mnt) == want
    write_synced(f.path("mine"), b"m")
    f.umount()
    w.mount()
    assert read_file(w.path("mine")) == b"m"
    assert read_file(w.path("late")) == b"after the follower's only round"


@pytest.mark.local_store
def test_store_away_keeps_serving(mounts, workdir):
    """A follower whose store stops answering serves what it has, says so
    in its log once, and follows again when the store is back."""
    down = os.path.join(workdir, "down")
    w = mounts("w", opts=WRITER)
    env = dict(os.environ, METAFUSE_TEST_STORE_DOWN_FILE=down)
    f = mounts("f", store=w.store, mkfs=False, env=env,
               opts={"ro": True, "follow": True, "follow_interval": "0.3"})
    f.mount()
    write_synced(w.path("a"), b"a" * 100)
    wait_same(w, f, "creation")
    open(down, "w").close()
    try:
        wait_until(lambda: "cannot read the metadata" in f.log_text(),
                   "the follower's warning")
        assert read_file(f.path("a")) == b"a" * 100
        write_synced(w.path("b"), b"b")
    finally:
        os.unlink(down)
    wait_same(w, f, "a change after the store came back")
    assert f.log_text().count("cannot read the metadata") == 1


@pytest.mark.root
@pytest.mark.namespace
def test_follower_through_mount8(namespace, mounts):
    """mount(8) -t fuse.metafuse -o ro,follow,follow_interval=... (an
    fstab line's options): a follower, read-only, following; umount(8)
    ends it."""
    ns = namespace()        # before the writer: no copy of its mount
    w = mounts("w", opts=WRITER)
    f = volume(mounts, name="f", store=w.store, mkfs=False)
    f.allow_errors(TRIM_RACE)
    r = mount8(ns, f, "-t", "fuse.metafuse",
               opts="ro,follow,follow_interval=0.3,nofail")
    assert r.returncode == 0, r.stderr
    pid = check_mounted(ns, f)
    write_synced(w.path("x"), b"from the writer")
    wait_until(lambda: os.path.exists(ns.path(f.mnt, "x")),
               "the writer's file through mount(8)'s follower")
    assert read_file(ns.path(f.mnt, "x")) == b"from the writer"
    h.expect_errno(errno.EROFS, os.mkdir, ns.path(f.mnt, "d"))
    umount8(ns, f, pid)


@pytest.mark.parametrize("opts,words", [
    ("follow", "needs 'ro'"),
    ("ro,follow_interval=2", "needs 'follow'"),
    ("ro,follow,follow_interval=0", "invalid value"),
    ("ro,follow,follow_interval=abc", "invalid value"),
    ("ro,follow,follow_interval=-1", "invalid value"),
    ("ro,follow=1", "unknown mount option"),
])
def test_bad_options(mounts, opts, words):
    w = mounts("w", mount=False)
    r = h.run([h.BIN, "mount", "-o", f"cache_dir={w.cache},{opts}",
               w.store, w.mnt], env=w.env)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert err and "\n" not in err, r.stderr
    assert words in err, err
    assert not h.is_mounted(w.mnt)
    assert not os.path.exists(w.cache)
