"""The store is the truth: a tree written to a volume reads back identical
after unmount, deletion of the whole cache directory and a new mount (and,
more simply, after a plain remount)."""

import os
import stat
import time

import pytest

import mfhelpers as h
from mfhelpers import MIB, write_file

IS_ROOT = os.geteuid() == 0


def build_tree(root, bs):
    """Write a tree exercising every kind of object and attribute.
    Returns the times that were set explicitly: {relpath: (atime, mtime)}."""
    p = lambda *a: os.path.join(root, *a)  # noqa: E731
    files = {
        "empty": b"",
        "one": b"1",
        "block-minus-1": h.rand_bytes(1, bs - 1),
        "block": h.rand_bytes(2, bs),
        "block-plus-1": h.rand_bytes(3, bs + 1),
        "several": h.rand_bytes(4, 3 * bs + bs // 2),
        "text": b"compressible line of text\n" * (200000),
        "zeros": bytes(2 * bs),
        "large": h.rand_bytes(5, 64 * MIB),
    }
    for name, data in files.items():
        write_file(p(name), data)
    # sparse with holes: data, hole, data inside a block, hole, tail hole
    with open(p("sparse"), "wb") as f:
        f.write(b"start")
        f.seek(5 * bs + 12345)
        f.write(h.rand_bytes(6, 1000))
        f.seek(9 * bs - 3)
        f.write(b"cross")
        f.truncate(20 * bs)
    with open(p("only-hole"), "wb") as f:
        f.truncate(100 * MIB)
    # a file that shrank and grew: the old tail must not come back
    write_file(p("regrown"), h.rand_bytes(7, 3 * bs))
    os.truncate(p("regrown"), bs // 2)
    os.truncate(p("regrown"), 2 * bs)

    # nested directories, an empty one, odd modes
    os.makedirs(p("a", "b", "c", "d", "e"))
    write_file(p("a", "b", "c", "d", "e", "deep"), b"deep file")
    os.mkdir(p("emptydir"))
    os.mkdir(p("private"), 0o700)
    os.chmod(p("private"), 0o700)
    write_file(p("private", "x"), b"x")
    os.mkdir(p("sticky"))
    os.chmod(p("sticky"), 0o1777)
    many = p("a", "many")
    os.mkdir(many)
    for i in range(300):
        write_file(os.path.join(many, f"f{i:03d}"), str(i).encode() * i)

    # symlinks
    os.symlink("one", p("link-rel"))
    os.symlink("/etc/passwd", p("link-abs"))
    os.symlink("nowhere/at/all", p("link-dangling"))
    os.symlink("a/b", p("link-dir"))
    os.symlink("t" * 1000, p("link-long"))

    # hard links in several directories
    write_file(p("hl"), h.rand_bytes(8, 10000))
    os.link(p("hl"), p("a", "hl2"))
    os.link(p("hl"), p("a", "b", "hl3"))

    # modes
    for name, mode in (("one", 0o600), ("block", 0o755), ("several", 0o4755),
                       ("text", 0o2750), ("zeros", 0o000),
                       ("block-plus-1", 0o1644)):
        os.chmod(p(name), mode)

    # owners and special files (root only)
    if IS_ROOT:
        os.chown(p("block-minus-1"), 1000, 1000)
        os.chown(p("a", "b"), 65534, 65534)
        os.chown(p("link-rel"), 123, 456, follow_symlinks=False)
        os.chown(p("block"), 4000000000, 7)
        os.mknod(p("chardev"), stat.S_IFCHR | 0o600, os.makedev(1, 3))
        os.mknod(p("blockdev"), stat.S_IFBLK | 0o660, os.makedev(8, 1))
    os.mknod(p("fifo"), stat.S_IFIFO | 0o640)
    os.mknod(p("socket"), stat.S_IFSOCK | 0o644)

    # xattrs on files and directories
    os.setxattr(p("one"), "user.empty", b"")
    os.setxattr(p("one"), "user.bin", bytes(range(256)))
    os.setxattr(p("large"), "user.big", h.rand_bytes(9, 4000))
    for i in range(20):
        os.setxattr(p("hl"), f"user.n{i}", str(i).encode())
    os.setxattr(p("a"), "user.dir", b"dir value")
    if IS_ROOT:
        os.setxattr(p("text"), "trusted.t", b"trusted value")

    # times with nanoseconds, set last (children before their parents)
    set_times = {}
    all_paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            all_paths.append(os.path.join(dirpath, n))
    all_paths.sort(key=lambda x: -x.count(os.sep))
    by_ino = {}
    for i, path in enumerate(all_paths):
        at = 1_234_567_890_000_000_000 + i * 1_000_003_001 + 123_456_789
        mt = 1_300_000_000_000_000_000 + i * 999_999_937 + 987_654_321
        h.utimensat(path, divmod(at, 10**9), divmod(mt, 10**9),
                    follow=False)
        by_ino[os.lstat(path).st_ino] = (at, mt)   # hard links share
    for path in all_paths:
        set_times[os.path.relpath(path, root)] = \
            by_ino[os.lstat(path).st_ino]
    return set_times


def check_set_times(root, set_times):
    bad = []
    for rel, (at, mt) in set_times.items():
        st = os.lstat(os.path.join(root, rel))
        if st.st_mtime_ns != mt:
            bad.append(f"{rel}: mtime {st.st_mtime_ns} != {mt}")
    assert not bad, "\n".join(bad[:20])


@pytest.mark.parametrize("variant", [
    "wipe-cache", "wipe-cache-small-blocks", "plain-remount",
    "wipe-cache-foreground"])
def test_tree_survives_remount(mounts, variant):
    bs = 64 * 1024 if variant == "wipe-cache-small-blocks" else \
        h.DEFAULT_BLOCK_SIZE
    m = mounts(block_size=None if bs == h.DEFAULT_BLOCK_SIZE else bs)
    tree = m.path("tree")
    os.mkdir(tree)
    set_times = build_tree(tree, bs)
    stat_a = h.stat_snapshot(tree)
    check_set_times(tree, set_times)
    full = h.snapshot(tree)
    # reading the contents may legitimately update atimes: what counts is
    # the state at unmount
    stat_at_umount = h.stat_snapshot(tree)
    for rel in stat_a:
        assert stat_a[rel]["mtime_ns"] == stat_at_umount[rel]["mtime_ns"]
        assert stat_a[rel]["ctime_ns"] == stat_at_umount[rel]["ctime_ns"]

    m.umount()
    if variant.startswith("wipe-cache"):
        m.wipe_cache()
        assert not os.path.exists(m.cache)
    m.mount(foreground=variant.endswith("foreground"))

    got_stat = h.stat_snapshot(tree)
    assert h.diff_snapshots(stat_at_umount, got_stat, "before", "after") \
        == []
    check_set_times(tree, set_times)
    got = h.snapshot(tree)
    assert h.diff_snapshots(full, got, "before", "after") == []
    if IS_ROOT:
        assert os.getxattr(os.path.join(tree, "text"), "trusted.t") == \
            b"trusted value"
    # and the volume is still writable and consistent after the restore
    write_file(os.path.join(tree, "after"), b"written after restore")
    os.rename(os.path.join(tree, "a"), os.path.join(tree, "a-renamed"))
    os.unlink(os.path.join(tree, "large"))
    m.umount()
    r = m.cli("fsck", m.store)
    assert r.returncode == 0, f"fsck after restore: {r.stdout}{r.stderr}"
    m.wipe_cache()
    m.mount()
    assert h.read_file(os.path.join(tree, "after")) == \
        b"written after restore"
    assert h.read_file(os.path.join(tree, "a-renamed", "b", "c", "d", "e",
                                    "deep")) == b"deep file"
    assert not os.path.exists(os.path.join(tree, "large"))


def test_many_remounts_accumulate(mounts):
    """Ten generations of changes, each followed by a remount; every other
    one wipes the cache."""
    m = mounts()
    model = {}
    for gen in range(10):
        for i in range(gen, gen + 5):
            data = h.rand_bytes(gen * 100 + i, (i * 37777) % (3 * MIB))
            write_file(m.path(f"f{i}"), data)
            model[f"f{i}"] = data
        if gen % 3 == 2:
            victim = sorted(model)[0]
            os.unlink(m.path(victim))
            del model[victim]
        m.remount(wipe_cache=gen % 2 == 1)
        assert sorted(os.listdir(m.mnt)) == sorted(model)
        for name, data in model.items():
            assert h.read_file(m.path(name)) == data, f"gen {gen}: {name}"


def test_killed_daemon_keeps_cached_writes(mounts):
    """DESIGN: a crash of the process (kill -9) loses nothing that reached
    the local cache; the next mount finishes the upload."""
    m = mounts(opts={"writeback_delay": "3600"})
    data = h.rand_bytes(11, 5 * MIB + 3)
    write_file(m.path("f"), data)
    os.mkdir(m.path("d"))
    write_file(m.path("d", "g"), b"small")
    # closed files: their data reached the daemon's cache, not the store
    m.allow_errors(".*")  # the dead daemon's mount may log anything
    m.kill()
    h.force_unmount(m.mnt)
    m.mount()
    assert h.read_file(m.path("f")) == data
    assert h.read_file(m.path("d", "g")) == b"small"
    # and the recovered mount uploads it for good
    m.umount()
    m.wipe_cache()
    m.mount()
    assert h.read_file(m.path("f")) == data
    assert h.read_file(m.path("d", "g")) == b"small"


def test_fsync_survives_crash_and_cache_loss(mounts):
    """DESIGN: fsync returns only when the file's data and the metadata
    naming it are durable in the store; so neither a crash nor the loss of
    the cache disk loses it."""
    m = mounts(opts={"writeback_delay": "3600"})
    os.mkdir(m.path("d"))
    data = h.rand_bytes(21, 3 * MIB + 5)
    fd = os.open(m.path("d", "f"), os.O_CREAT | os.O_WRONLY, 0o640)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    m.allow_errors(".*")
    m.kill()
    h.force_unmount(m.mnt)
    m.wipe_cache()
    m.mount()
    assert h.read_file(m.path("d", "f")) == data
    assert stat.S_IMODE(os.stat(m.path("d", "f")).st_mode) == 0o640


def test_periodic_checkpoint_bounds_loss_of_cache(mounts):
    """The metadata reaches the store periodically while mounted: after a
    crash and the loss of the cache, data older than writeback_delay plus
    the checkpoint period is there."""
    if not h.mount_option_supported("checkpoint_interval"):
        pytest.skip("no checkpoint_interval option to make this quick")
    m = mounts(opts={"writeback_delay": "0.2", "checkpoint_interval": "1"})
    data = h.rand_bytes(22, 2 * MIB + 1)
    write_file(m.path("f"), data)
    os.symlink("f", m.path("l"))
    time.sleep(4)
    m.allow_errors(".*")
    m.kill()
    h.force_unmount(m.mnt)
    m.wipe_cache()
    m.mount()
    assert h.read_file(m.path("f")) == data
    assert os.readlink(m.path("l")) == "f"


def test_journal_bounds_loss_of_cache(mounts):
    """Between checkpoints the journal carries the metadata to the store:
    with checkpoints an hour apart, a crash and the loss of the cache lose
    nothing older than writeback_delay plus journal_interval."""
    if not h.mount_option_supported("journal_interval"):
        pytest.skip("no journal_interval option")
    m = mounts(opts={"writeback_delay": "0.2", "journal_interval": "0.5",
                     "checkpoint_interval": "3600"})
    data = h.rand_bytes(23, MIB + 7)
    os.mkdir(m.path("d"))
    write_file(m.path("d", "f"), data)
    os.rename(m.path("d"), m.path("e"))
    os.symlink("e/f", m.path("l"))
    time.sleep(3)
    m.allow_errors(".*")
    m.kill()
    h.force_unmount(m.mnt)
    m.wipe_cache()
    m.mount()
    assert h.read_file(m.path("e", "f")) == data
    assert os.readlink(m.path("l")) == "e/f"
    assert not os.path.exists(m.path("d"))


def test_small_files_inline(mounts):
    """Files written while empty and never past inline_max (4 KiB) live in
    the metadata: no data object, no cache file; growing past it moves the
    data to blocks; truncate and punch work on both; all of it survives
    the loss of the cache."""
    m = mounts(opts={"writeback_delay": "0.1"})
    small = {f"s{i}": h.rand_bytes(100 + i, i * 512 + 1) for i in range(8)}
    for name, data in small.items():
        write_file(m.path(name), data)
    grow = h.rand_bytes(200, 3000)
    write_file(m.path("grow"), grow)
    with open(m.path("grow"), "ab") as f:         # 3000 + 5000 > 4 KiB
        f.write(h.rand_bytes(201, 5000))
    grow += h.rand_bytes(201, 5000)
    write_file(m.path("cut"), h.rand_bytes(202, 4000))
    os.truncate(m.path("cut"), 1000)
    os.truncate(m.path("cut"), 3000)               # zeros, not old bytes
    cut = h.rand_bytes(202, 4000)[:1000] + bytes(2000)
    write_file(m.path("hole"), h.rand_bytes(203, 4096))
    fd = os.open(m.path("hole"), os.O_RDWR)
    h.fallocate(fd, h.FALLOC_FL_PUNCH_HOLE | h.FALLOC_FL_KEEP_SIZE, 100, 50)
    os.close(fd)
    hole = bytearray(h.rand_bytes(203, 4096))
    hole[100:150] = bytes(50)
    time.sleep(1)
    m.umount()
    # only "grow" has data in blocks
    assert len(m.data_objects()) == 1, m.data_objects()
    m.wipe_cache()
    m.mount()
    for name, data in small.items():
        assert h.read_file(m.path(name)) == data, name
    assert h.read_file(m.path("grow")) == grow
    assert h.read_file(m.path("cut")) == cut
    assert h.read_file(m.path("hole")) == bytes(hole)
    r = m.cli("fsck", m.store)
    assert "0 problem" in r.stdout, r.stdout


def test_large_metadata_checkpoint_in_parts(mounts):
    """Metadata larger than a checkpoint part (8 MiB: here 3,000 inline
    files of 4 KiB) goes to the store in parts under one head, and comes
    back whole on a machine that has only the store.  (The checkpoint is
    the one a mount after a crash writes: an unmount may send the journal
    instead.)"""
    m = mounts()
    os.mkdir(m.path("d"))
    for i in range(3000):
        write_file(m.path("d", f"f{i}"), h.rand_bytes(i, 4096))
    m.allow_errors(".*")
    m.kill()
    h.force_unmount(m.mnt)
    m.mount()
    m.umount()
    keys = m.store_ls("meta/")
    parts = [k for k in keys if k.startswith("meta/ckpp-")]
    heads = [k for k in keys if k.startswith("meta/ckpt-")]
    assert len(heads) == 1, keys
    assert len(parts) >= 2, keys
    # the parts all belong to the one checkpoint there is
    assert {p[len("meta/ckpp-"):][:16] for p in parts} == \
        {heads[0][len("meta/ckpt-"):]}, keys
    m.wipe_cache()
    m.mount()
    for i in range(0, 3000, 7):
        assert h.read_file(m.path("d", f"f{i}")) == h.rand_bytes(i, 4096), i
    assert len(os.listdir(m.path("d"))) == 3000
    r = m.cli("fsck", m.store)
    assert "0 problem" in r.stdout, r.stdout


def test_burst_of_changes_cuts_journal_early(mounts):
    """A burst of metadata changes goes to the store before
    journal_interval is up (the daemon cuts an entry every few thousand
    changes), so an entry, held in memory while framed, stays small.
    With an interval of an hour, any entry within 20 s is an early cut."""
    m = mounts(opts={"journal_interval": "3600"})
    before = [k for k in m.store_ls("meta/") if k.startswith("meta/jrnl-")]
    os.mkdir(m.path("d"))
    for i in range(4000):
        write_file(m.path("d", f"f{i}"), b"x" * 100)
    deadline = time.monotonic() + 20
    while True:
        now = [k for k in m.store_ls("meta/")
               if k.startswith("meta/jrnl-")]
        if len(now) > len(before):
            break
        assert time.monotonic() < deadline, \
            f"journal entries {before} -> {now}: no early cut"
        time.sleep(0.5)


def test_journal_interval_under_a_second(mounts):
    """A journal_interval under a second is kept: changes 0.3 s apart
    each go to the store in their own entry.  (The maintenance thread
    used to look once a second, whatever the option said.)"""
    m = mounts(opts={"journal_interval": "0.2"})

    def entries():
        return [k for k in m.store_ls("meta/") if k.startswith("meta/jrnl-")]

    before = len(entries())
    for i in range(10):
        os.mkdir(m.path(f"d{i}"))
        time.sleep(0.3)
    n = len(entries()) - before
    assert n >= 7, (f"10 changes 0.3 s apart with journal_interval=0.2: "
                    f"{n} journal entries")
    time.sleep(1)             # the last one too
    m.kill()                  # nothing more than what is in the store
    h.force_unmount(m.mnt)
    m.wipe_cache()
    m.mount()
    assert sorted(os.listdir(m.mnt)) == sorted(f"d{i}" for i in range(10))


def test_small_sessions_send_journal_not_checkpoints(mounts):
    """A checkpoint is the whole database: a session that changes little
    of it sends journal entries, not a checkpoint, however many sessions
    follow one another; a fresh machine restores the checkpoint and every
    entry after it.  Deleting data makes a checkpoint due, so that the
    unmount frees the objects."""
    m = mounts(opts={"writeback_delay": "0.1"})
    os.mkdir(m.path("d"))
    for i in range(400):      # inline files: a database of about 1 MiB
        write_file(m.path("d", f"f{i}"), b"%d " % i * 600)
    m.umount()

    def heads():
        return {k for k in m.store_ls("meta/") if k.startswith("meta/ckpt-")}

    def entries():
        return {k for k in m.store_ls("meta/") if k.startswith("meta/jrnl-")}

    ckpts, jrnl = heads(), entries()
    for s in range(3):
        m.mount()
        write_file(m.path(f"s{s}"), b"session %d" % s)
        os.rename(m.path("d", f"f{s}"), m.path(f"moved{s}"))
        m.umount()
        assert heads() == ckpts, f"session {s} wrote a checkpoint"
        assert entries() > jrnl, f"session {s} sent no journal entry"
        jrnl = entries()
    m.mount()
    write_file(m.path("big"), h.rand_bytes(30, 2 * h.DEFAULT_BLOCK_SIZE))
    m.umount()
    objects = m.data_objects()
    assert len(objects) == 2 and heads() == ckpts

    m.wipe_cache()            # a machine with only the store
    m.mount()
    for s in range(3):
        assert h.read_file(m.path(f"s{s}")) == b"session %d" % s
        assert h.read_file(m.path(f"moved{s}")) == b"%d " % s * 600
    assert h.read_file(m.path("d", "f399")) == b"399 " * 600
    assert len(os.listdir(m.path("d"))) == 397
    os.unlink(m.path("big"))
    m.umount()
    assert heads() != ckpts, "deleting data wrote no checkpoint"
    assert not m.data_objects(), "the deleted file's objects were kept"
    r = m.cli("fsck", m.store)
    assert "0 problem" in r.stdout, r.stdout


def test_unchanged_session_writes_no_checkpoint(mounts):
    """A mount and unmount that change nothing leave the store's metadata
    as it was (no checkpoint at mount, none at unmount: after a clean
    unmount the newest checkpoint already is the database); a session
    that changes something writes one, and it restores."""
    m = mounts()
    write_file(m.path("f"), b"first")
    m.umount()
    m.mount()
    # the first reads set atimes (relatime): a change
    h.read_file(m.path("f"))
    os.listdir(m.path(""))
    m.umount()
    meta = m.store_ls("meta/")
    for _ in range(2):
        m.mount()
        assert h.read_file(m.path("f")) == b"first"
        os.listdir(m.path(""))
        m.umount()
        assert m.store_ls("meta/") == meta
    m.mount()
    write_file(m.path("g"), b"second")
    m.umount()
    assert m.store_ls("meta/") != meta
    m.wipe_cache()
    m.mount()
    assert h.read_file(m.path("f")) == b"first"
    assert h.read_file(m.path("g")) == b"second"
