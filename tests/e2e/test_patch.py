"""Patches: a block written in a few places since its upload goes to the
store as a patch of the pages written, not whole (blob/patch.h).  These
tests check from outside that few bytes go up, that a cold mount reads
back exactly what was written (base object plus patches), that a long
chain is replaced by a whole upload whose garbage is freed, and that
fsck sees a consistent volume."""

import errno
import os
import random
import re

import mfhelpers as h
from mfhelpers import MIB, read_file, write_file

BS = MIB
PAGE = 4096


def pwrite(path, off, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        assert os.pwrite(fd, data, off) == len(data)
        os.fsync(fd)
    finally:
        os.close(fd)


def random_writes(path, model, seed, n, size=PAGE):
    """n writes of size bytes at random offsets of path and of model (a
    bytearray), one fsync at the end."""
    rnd = random.Random(seed)
    fd = os.open(path, os.O_WRONLY)
    try:
        for _ in range(n):
            off = rnd.randrange(0, len(model) - size)
            data = rnd.randbytes(size)
            assert os.pwrite(fd, data, off) == size
            model[off:off + size] = data
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_local_db(m):
    """Put the cache's database, as it is, to the store as a checkpoint:
    the mount after a crash writes one (an unmount may send only the
    journal, which records nothing done behind the daemon's back)."""
    m.mount()
    m.kill()
    h.force_unmount(m.mnt)
    m.mount()
    m.umount()


def fsck_ok(m):
    r = m.cli("fsck", m.store)
    assert r.returncode == 0, f"fsck: {r.stdout}{r.stderr}"


def test_random_writes_go_up_as_patches(mounts):
    m = mounts(block_size=BS)
    model = bytearray(h.rand_bytes(11, 16 * BS))
    write_file(m.path("f"), bytes(model))
    m.umount()
    before = m.data_objects()
    assert len(before) == 16

    m.mount()
    random_writes(m.path("f"), model, seed=5, n=64)
    m.umount()
    after = m.data_objects()
    new = {k: v for k, v in after.items() if k not in before}
    # every base object stays (its block is patched, not replaced)
    assert set(before) <= set(after)
    # one patch per block touched, holding the pages written: 64 writes
    # of 4 KiB touch at most 128 pages; whole blocks would be 16 MiB
    assert 0 < len(new) <= 16
    assert sum(new.values()) < 128 * PAGE + len(new) * 4096, new

    m.wipe_cache()
    m.mount()
    assert read_file(m.path("f")) == bytes(model)
    m.umount()
    fsck_ok(m)


def test_patch_chain_is_replaced_whole_and_freed(mounts):
    """Patch after patch on one block: after a few the block goes up whole
    again, and the old base and patches are deleted from the store."""
    m = mounts(block_size=BS)
    model = bytearray(h.rand_bytes(12, BS))
    write_file(m.path("f"), bytes(model))
    for i in range(12):
        data = h.rand_bytes(100 + i, 100)
        off = (i * 37 * PAGE + 123) % (BS - 100)
        pwrite(m.path("f"), off, data)
        model[off:off + 100] = data
    m.umount()
    objs = m.data_objects()
    # a chain is at most 8 patches long: of the 12 uploads after the
    # first whole one, the 9th is whole again and the last 2 or 3 are
    # patches on it; the base and 8 patches it replaced are freed
    # (without that: 13 objects or more; without patches: 1)
    assert 3 <= len(objs) <= 4, sorted(objs.values())
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("f")) == bytes(model)
    m.umount()
    fsck_ok(m)


def test_patches_with_growth_truncate_and_holes(mounts):
    """Patches of a block whose length changes: a write past the end of a
    short last block, a shrink and regrowth (the next upload is whole),
    and a sparse region; read back cold, byte for byte."""
    m = mounts(block_size=BS)
    f = m.path("f")
    model = bytearray(h.rand_bytes(13, 2 * BS + BS // 3))
    write_file(f, bytes(model))
    m.umount()
    m.mount()
    # into the short last block and past its end
    end = len(model)
    tail = h.rand_bytes(14, 5000)
    pwrite(f, end + 7000, tail)
    model += bytes(7000) + tail
    mid = h.rand_bytes(15, 3000)
    pwrite(f, BS + 10, mid)
    model[BS + 10:BS + 10 + 3000] = mid
    m.umount()
    m.wipe_cache()
    m.mount()
    assert read_file(f) == bytes(model)
    # shrink into block 1, grow again, then patch it
    os.truncate(f, BS + BS // 2)
    del model[BS + BS // 2:]
    os.truncate(f, 3 * BS)
    model += bytes(3 * BS - len(model))
    fd = os.open(f, os.O_WRONLY)
    os.fsync(fd)
    os.close(fd)
    more = h.rand_bytes(16, 2000)
    pwrite(f, BS + BS // 2 + 100, more)
    model[BS + BS // 2 + 100:BS + BS // 2 + 2100] = more
    m.umount()
    m.wipe_cache()
    m.mount()
    assert read_file(f) == bytes(model)
    m.umount()
    fsck_ok(m)


def test_patched_blocks_survive_kill(mounts):
    """Random writes after a patch went up, then kill -9: the next mount
    uploads the dirty blocks (whole, the pages written are not known any
    more) and everything reads back."""
    m = mounts(block_size=BS)
    model = bytearray(h.rand_bytes(17, 8 * BS))
    write_file(m.path("f"), bytes(model))
    m.umount()
    m.mount()
    random_writes(m.path("f"), model, seed=6, n=20)
    random_writes(m.path("f"), model, seed=7, n=20)
    rnd = random.Random(8)
    fd = os.open(m.path("f"), os.O_WRONLY)
    for _ in range(10):
        off = rnd.randrange(0, len(model) - PAGE)
        data = rnd.randbytes(PAGE)
        os.pwrite(fd, data, off)
        model[off:off + PAGE] = data
    os.close(fd)
    m.kill()
    h.force_unmount(m.mnt)
    m.mount()
    assert read_file(m.path("f")) == bytes(model)
    m.umount()
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("f")) == bytes(model)
    m.umount()
    fsck_ok(m)


def store_gets(stderr):
    """The gets a command made (METAFUSE_TEST_STORE_COUNTS=1)."""
    m = re.search(r"store calls: (\d+) get", stderr)
    assert m, stderr
    return int(m.group(1))


def test_fsck_verify_data_follows_patch_chains(mounts):
    """Every object can be intact and a chain still broken: metadata
    that lists a block's patches in the wrong order (here swapped behind
    the daemon's back).  fsck --verify-data follows each chain and names
    the patch that does not sit on the object below it."""
    import sqlite3

    m = mounts(block_size=BS)
    f = m.path("f")
    model = bytearray(h.rand_bytes(18, BS))
    write_file(f, bytes(model))
    m.umount()
    m.mount()
    for i in range(2):          # two patches on block 0
        data = h.rand_bytes(19 + i, PAGE)
        pwrite(f, (3 + 5 * i) * PAGE, data)
        model[(3 + 5 * i) * PAGE:(4 + 5 * i) * PAGE] = data
    ino = os.stat(f).st_ino
    m.umount()
    r = m.cli("fsck", "--verify-data", m.store)
    assert r.returncode == 0, f"fsck: {r.stdout}{r.stderr}"
    # each object is fetched once, patches too (they were fetched again
    # to follow the chains): the gets beyond a plain fsck's are one per
    # object verified
    env = dict(m.env, METAFUSE_TEST_STORE_COUNTS="1")
    r = h.run([h.BIN, "fsck", "--verify-data", m.store], env=env)
    plain = h.run([h.BIN, "fsck", m.store], env=env)
    verified = int(re.search(r"(\d+) object\(s\) verified",
                             r.stdout).group(1))
    assert verified == 3, r.stdout  # the base and two patches
    assert store_gets(r.stderr) - store_gets(plain.stderr) == verified, \
        r.stderr + plain.stderr

    db = sqlite3.connect(os.path.join(m.cache, "meta.db"))
    rows = db.execute("SELECT n FROM patch WHERE ino = ? AND idx = 0",
                      (ino,)).fetchall()
    assert sorted(rows) == [(1,), (2,)], rows
    with db:
        db.execute("UPDATE patch SET n = 9 WHERE ino = ? AND idx = 0"
                   " AND n = 1", (ino,))
        db.execute("UPDATE patch SET n = 1 WHERE ino = ? AND idx = 0"
                   " AND n = 2", (ino,))
        db.execute("UPDATE patch SET n = 2 WHERE ino = ? AND idx = 0"
                   " AND n = 9", (ino,))
    db.close()
    checkpoint_local_db(m)

    r = m.cli("fsck", m.store)  # the metadata alone looks fine
    assert r.returncode == 0, f"fsck: {r.stdout}{r.stderr}"
    r = m.cli("fsck", "--verify-data", m.store)
    assert r.returncode == 1, f"fsck: {r.stdout}{r.stderr}"
    assert f"block 0 of inode {ino}: patch 1 of 2" in r.stdout, r.stdout
    assert "does not sit on the object below it" in r.stdout, r.stdout

    # and the daemon refuses to read the block, saying why
    m.allow_errors(r"block 0 of inode \d+: object \w+ is not a patch on")
    m.wipe_cache()
    m.mount()
    with open(f, "rb") as fh:
        h.expect_errno(errno.EIO, fh.read)
    m.umount()

    # a chain longer than any may be (16): reported by the metadata
    # check, and --verify-data goes on past it (it used to stop)
    db = sqlite3.connect(os.path.join(m.cache, "meta.db"))
    with db:
        (top,) = db.execute("SELECT hash FROM patch WHERE ino = ? AND"
                            " idx = 0 AND n = 2", (ino,)).fetchone()
        for n in range(3, 18):
            db.execute("INSERT INTO patch(ino, idx, n, hash)"
                       " VALUES (?, 0, ?, ?)", (ino, n, top))
    db.close()
    checkpoint_local_db(m)
    r = m.cli("fsck", "--verify-data", m.store)
    assert r.returncode == 1, f"fsck: {r.stdout}{r.stderr}"
    assert "17 patch rows more than a chain may have" in r.stdout, r.stdout
    assert "cannot check" not in r.stderr, r.stderr
