"""Holes that tools can see: lseek(SEEK_DATA / SEEK_HOLE) answers from the
block map (a block never written, punched or zeroed whole is a hole; a
dirty block not yet uploaded and an inline file's data are data; the end
of the file is a hole; ENXIO at or past the end), and fallocate's
FALLOC_FL_ZERO_RANGE (with and without KEEP_SIZE), whose whole blocks
become holes without anything being uploaded.

Everything is checked through the kernel: the answers of lseek, the bytes
and sizes against the same operations on a file of the local disk, the
objects in the store, and what cp, tar and du make of a sparse file; on
both stores (METAFUSE_TEST_STORE=s3), after a remount and from a cold
cache."""

import errno
import mmap
import os
import random
import subprocess

import pytest

import mfhelpers as h
from mfhelpers import MIB, expect_errno, read_file

BS = MIB  # every volume here is made with 1 MiB blocks
ZERO_RANGE = 0x10
KEEP_SIZE = h.FALLOC_FL_KEEP_SIZE
PUNCH = h.FALLOC_FL_PUNCH_HOLE | h.FALLOC_FL_KEEP_SIZE
COLLAPSE_RANGE = 0x08
INSERT_RANGE = 0x20


def seek(fd, off, whence):
    """lseek's answer, or None for ENXIO."""
    try:
        return os.lseek(fd, off, whence)
    except OSError as e:
        assert e.errno == errno.ENXIO, e
        return None


def extents(path):
    """The data extents [(start, end)] of path, as SEEK_DATA and SEEK_HOLE
    walk them (what cp and tar do)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        out, off = [], 0
        while True:
            start = seek(fd, off, os.SEEK_DATA)
            if start is None:
                return out
            end = seek(fd, start, os.SEEK_HOLE)
            assert end is not None and end > start
            out.append((start, end))
            off = end
    finally:
        os.close(fd)


def pwrite(path, off, data, fsync=False):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert os.pwrite(fd, data, off) == len(data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def falloc(path, mode, off, length):
    fd = os.open(path, os.O_RDWR)
    try:
        h.fallocate(fd, mode, off, length)
    finally:
        os.close(fd)


def sparse_file(path):
    """A hole at the start, data in blocks 3 and 5-6 (block 6 partly), a
    hole at the end: 10 blocks.  Its extents: [(3, 4), (5, 7)] blocks."""
    pwrite(path, 3 * BS + 100, b"a" * 10)
    pwrite(path, 5 * BS, h.rand_bytes(1, BS + 10))
    os.truncate(path, 10 * BS)
    return [(3 * BS, 4 * BS), (5 * BS, 7 * BS)]


def check_sparse(path, want):
    assert extents(path) == want
    fd = os.open(path, os.O_RDONLY)
    try:
        assert seek(fd, 0, os.SEEK_HOLE) == 0
        assert seek(fd, 3 * BS + 7, os.SEEK_DATA) == 3 * BS + 7
        assert seek(fd, 3 * BS + 7, os.SEEK_HOLE) == 4 * BS
        assert seek(fd, 4 * BS, os.SEEK_DATA) == 5 * BS
        assert seek(fd, 7 * BS, os.SEEK_DATA) is None
        assert seek(fd, 9 * BS, os.SEEK_HOLE) == 9 * BS
        assert seek(fd, 10 * BS - 1, os.SEEK_HOLE) == 10 * BS - 1
        # at and past the end: ENXIO (POSIX)
        for off in (10 * BS, 10 * BS + 1, 1 << 40):
            assert seek(fd, off, os.SEEK_DATA) is None
            assert seek(fd, off, os.SEEK_HOLE) is None
    finally:
        os.close(fd)


# ---- SEEK_DATA / SEEK_HOLE ---------------------------------------------------

def test_seek_dirty_then_uploaded_then_remounted(mounts):
    """Dirty blocks not yet uploaded are data; the answers stay the same
    once they are in the store, after a remount and from a cold cache."""
    m = mounts(block_size=BS, opts={"writeback_delay": "3600"})
    p = m.path("f")
    want = sparse_file(p)
    # nothing uploaded yet: the blocks are dirty in the cache
    assert m.data_objects() == {}
    check_sparse(p, want)
    fd = os.open(p, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    assert len(m.data_objects()) == 3
    check_sparse(p, want)
    m.remount()
    check_sparse(p, want)
    m.remount(wipe_cache=True)
    check_sparse(p, want)
    assert read_file(p)[3 * BS + 100:3 * BS + 110] == b"a" * 10


def test_seek_data_at_start_and_end(mounts):
    m = mounts(block_size=BS)
    p = m.path("f")
    pwrite(p, 0, b"x" * (BS + 1))          # blocks 0 and 1
    pwrite(p, 4 * BS - 5, b"y" * 5)        # block 3, to the end
    assert extents(p) == [(0, 2 * BS), (3 * BS, 4 * BS)]
    fd = os.open(p, os.O_RDONLY)
    assert seek(fd, 0, os.SEEK_DATA) == 0
    assert seek(fd, 0, os.SEEK_HOLE) == 2 * BS
    assert seek(fd, 2 * BS + 1, os.SEEK_HOLE) == 2 * BS + 1
    assert seek(fd, 3 * BS, os.SEEK_HOLE) == 4 * BS
    os.close(fd)
    # a file that is data whole: one extent, the hole at its end
    q = m.path("g")
    pwrite(q, 0, h.rand_bytes(2, 3 * BS + 7))
    assert extents(q) == [(0, 3 * BS + 7)]


def test_seek_punched_and_truncated(mounts):
    m = mounts(block_size=BS)
    p = m.path("f")
    pwrite(p, 0, h.rand_bytes(3, 8 * BS), fsync=True)
    falloc(p, PUNCH, 2 * BS, 2 * BS)               # whole blocks 2, 3
    falloc(p, PUNCH, 5 * BS + 10, BS)              # parts of 5 and 6
    assert extents(p) == [(0, 2 * BS), (4 * BS, 8 * BS)]
    os.truncate(p, 20 * BS)                         # a hole at the end
    assert extents(p) == [(0, 2 * BS), (4 * BS, 8 * BS)]
    os.truncate(p, 3 * BS)                          # cut in the hole
    assert extents(p) == [(0, 2 * BS)]
    m.remount(wipe_cache=True)
    assert extents(p) == [(0, 2 * BS)]
    assert os.stat(p).st_size == 3 * BS


def test_seek_small_and_empty_files(mounts):
    """A small file kept inline in the metadata is data to its size; an
    empty file has neither; a file grown by truncate is one hole."""
    m = mounts(block_size=BS)
    p = m.path("small")
    h.write_file(p, b"hello, world")
    e = m.path("empty")
    h.write_file(e, b"")
    t = m.path("truncated")
    h.write_file(t, b"")
    os.truncate(t, 5 * BS + 3)
    for _ in range(2):
        assert extents(p) == [(0, 12)]
        fd = os.open(p, os.O_RDONLY)
        assert seek(fd, 5, os.SEEK_DATA) == 5
        assert seek(fd, 5, os.SEEK_HOLE) == 12
        assert seek(fd, 12, os.SEEK_DATA) is None
        os.close(fd)
        fd = os.open(e, os.O_RDONLY)
        assert seek(fd, 0, os.SEEK_DATA) is None
        assert seek(fd, 0, os.SEEK_HOLE) is None
        os.close(fd)
        assert extents(t) == []
        fd = os.open(t, os.O_RDONLY)
        assert seek(fd, 0, os.SEEK_HOLE) == 0
        assert seek(fd, 5 * BS + 2, os.SEEK_HOLE) == 5 * BS + 2
        os.close(fd)
        m.remount()


def test_seek_with_kernel_writeback_cache(mounts):
    """Under writeback_cache the kernel holds writes the daemon has not
    seen: the kernel answers alone, and everything is data (never a
    hole where a write is)."""
    m = mounts(block_size=BS, opts={"writeback_cache": True})
    p = m.path("f")
    pwrite(p, 5 * BS, b"z" * 10)
    fd = os.open(p, os.O_RDONLY)
    assert seek(fd, 0, os.SEEK_DATA) == 0
    assert seek(fd, 0, os.SEEK_HOLE) == 5 * BS + 10
    os.close(fd)


def test_seek_after_mmap_write(mounts):
    """Pages written through a shared mapping are data once they reach
    the daemon (msync; the kernel does not write them back before
    asking lseek)."""
    m = mounts(block_size=BS)
    p = m.path("f")
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 8 * BS)
        mm = mmap.mmap(fd, 8 * BS)
        mm[5 * BS + 10:5 * BS + 14] = b"abcd"
        mm.flush()
        mm.close()
        assert seek(fd, 0, os.SEEK_DATA) == 5 * BS
        assert seek(fd, 5 * BS, os.SEEK_HOLE) == 6 * BS
    finally:
        os.close(fd)


def daemon_wchar(m):
    """Bytes the daemon has written (its replies to /dev/fuse among
    them): what reading a file through the mount costs it."""
    with open(f"/proc/{m.pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise AssertionError("no wchar")


def test_tools_copy_only_the_data(mounts, reference):
    """cp --sparse=auto and tar -S read only the data of a sparse file
    (the daemon sends about its data, not the file's size), and the copy
    on the local disk is as sparse; du counts the data."""
    m = mounts(block_size=BS)
    p = m.path("sparse")
    data = h.rand_bytes(4, BS)
    pwrite(p, 40 * BS, data)
    os.truncate(p, 64 * BS)
    m.remount()         # drop the kernel's cached pages: reads reach us
    assert m.pid is not None
    assert os.stat(p).st_blocks * 512 <= 2 * BS
    du = subprocess.run(["du", "-B1", p], capture_output=True, text=True,
                        check=True)
    assert int(du.stdout.split()[0]) <= 2 * BS

    before = daemon_wchar(m)
    copy = os.path.join(reference, "copy")
    subprocess.run(["cp", "--sparse=auto", p, copy], check=True)
    sent = daemon_wchar(m) - before
    assert sent < 8 * BS, f"cp read {sent} bytes of a 64 MiB file"
    assert os.stat(copy).st_blocks * 512 <= 2 * BS
    want = bytes(40 * BS) + data + bytes(23 * BS)
    assert read_file(copy) == want

    m.remount()
    before = daemon_wchar(m)
    tar = os.path.join(reference, "a.tar")
    subprocess.run(["tar", "-S", "-cf", tar, "-C", m.mnt, "sparse"],
                   check=True)
    sent = daemon_wchar(m) - before
    assert sent < 8 * BS, f"tar read {sent} bytes of a 64 MiB file"
    assert os.path.getsize(tar) < 2 * BS
    out = os.path.join(reference, "x")
    os.mkdir(out)
    subprocess.run(["tar", "-xf", tar, "-C", out], check=True)
    assert read_file(os.path.join(out, "sparse")) == want


# ---- FALLOC_FL_ZERO_RANGE ---------------------------------------------------

def apply_ops(ops, path):
    """Run ops on path: ("w", off, data), ("z", mode, off, len), ("t",
    size); returns nothing, raises what the system call raises."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for op in ops:
            if op[0] == "w":
                assert os.pwrite(fd, op[2], op[1]) == len(op[2])
            elif op[0] == "z":
                h.fallocate(fd, op[1], op[2], op[3])
            else:
                os.ftruncate(fd, op[1])
    finally:
        os.close(fd)


def random_ops(seed, n):
    rnd = random.Random(seed)
    ops = [("w", 0, rnd.randbytes(6 * BS + 1234))]
    for _ in range(n):
        kind = rnd.random()
        off = rnd.randrange(0, 10 * BS)
        if kind < 0.3:
            ops.append(("w", off, rnd.randbytes(rnd.randrange(1, 2 * BS))))
        elif kind < 0.9:
            # lengths from a byte to several blocks, aligned or not
            length = rnd.choice([1, 4096, BS, 2 * BS, 3 * BS + 17,
                                 rnd.randrange(1, 4 * BS)])
            if rnd.random() < 0.3:
                off -= off % BS
            mode = ZERO_RANGE | (KEEP_SIZE if rnd.random() < 0.5 else 0)
            ops.append(("z", mode, off, length))
        else:
            ops.append(("t", rnd.randrange(0, 9 * BS)))
    return ops


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_zero_range_matches_local_disk(mounts, reference, seed):
    """The bytes and sizes after writes, zero ranges (with and without
    KEEP_SIZE, inside, across and past the end) and truncates are those
    of the local disk, after each step, after a remount and from a cold
    cache."""
    m = mounts(block_size=BS)
    ops = random_ops(seed, 24)
    p, ref = m.path("f"), os.path.join(reference, "f")
    for i in range(len(ops)):
        apply_ops(ops[i:i + 1], p)
        apply_ops(ops[i:i + 1], ref)
        assert os.stat(p).st_size == os.stat(ref).st_size, (i, ops[i][:3])
        assert read_file(p) == read_file(ref), (i, ops[i][:3])
    want = read_file(ref)
    m.remount()
    assert read_file(p) == want
    m.remount(wipe_cache=True)
    assert read_file(p) == want


def test_zero_range_small_file(mounts, reference):
    """A file kept inline in the metadata is zeroed and grown alike."""
    m = mounts(block_size=BS)
    ops = [("w", 0, b"0123456789" * 10),
           ("z", ZERO_RANGE, 10, 20),
           ("z", ZERO_RANGE | KEEP_SIZE, 90, 50),
           ("z", ZERO_RANGE, 95, 100),
           ("z", ZERO_RANGE | KEEP_SIZE, 500, 10)]
    p, ref = m.path("f"), os.path.join(reference, "f")
    apply_ops(ops, p)
    apply_ops(ops, ref)
    assert os.stat(p).st_size == 195
    assert read_file(p) == read_file(ref)
    m.remount(wipe_cache=True)
    assert read_file(p) == read_file(ref)


def test_zero_range_whole_blocks_become_holes(mounts):
    """Whole blocks of the range become holes and nothing is uploaded for
    them; a partial block at an edge is zeroed and goes up again."""
    m = mounts(block_size=BS)
    p = m.path("f")
    data = bytearray(h.rand_bytes(5, 8 * BS))
    h.write_file(p, data)
    m.umount()
    before = set(m.data_objects())
    assert len(before) == 8

    m.mount()
    falloc(p, ZERO_RANGE | KEEP_SIZE, 2 * BS, 3 * BS)
    data[2 * BS:5 * BS] = bytes(3 * BS)
    assert extents(p) == [(0, 2 * BS), (5 * BS, 8 * BS)]
    assert os.stat(p).st_blocks * 512 == 5 * BS
    m.umount()
    assert set(m.data_objects()) - before == set()

    m.mount()
    falloc(p, ZERO_RANGE, 6 * BS + 100, BS)          # parts of 6 and 7
    data[6 * BS + 100:7 * BS + 100] = bytes(BS)
    falloc(p, ZERO_RANGE, 8 * BS - 10, 3 * BS)        # grows the file
    data[8 * BS - 10:] = bytes(10)
    data += bytes(3 * BS - 10)
    assert os.stat(p).st_size == 11 * BS - 10
    assert extents(p) == [(0, 2 * BS), (5 * BS, 8 * BS)]
    m.umount()
    new = set(m.data_objects()) - before
    assert 1 <= len(new) <= 2, new     # blocks 6 and 7 (7 zeroed twice)
    m.mount()
    assert read_file(p) == bytes(data)
    m.remount(wipe_cache=True)
    assert read_file(p) == bytes(data)
    m.umount()
    r = m.cli("fsck", m.store)
    assert r.returncode == 0, r.stdout + r.stderr


def test_collapse_and_insert_range_refused(mounts, reference):
    """The kernel refuses COLLAPSE_RANGE and INSERT_RANGE on FUSE before
    any daemon sees them: EOPNOTSUPP, and the file is unchanged."""
    m = mounts(block_size=BS)
    p = m.path("f")
    data = h.rand_bytes(6, 4 * BS)
    h.write_file(p, data)
    fd = os.open(p, os.O_RDWR)
    try:
        for mode in (COLLAPSE_RANGE, INSERT_RANGE):
            expect_errno(errno.EOPNOTSUPP, h.fallocate, fd, mode, BS, BS)
        # both PUNCH_HOLE and ZERO_RANGE at once: refused
        expect_errno(errno.EOPNOTSUPP, h.fallocate, fd,
                     PUNCH | ZERO_RANGE, 0, BS)
    finally:
        os.close(fd)
    assert read_file(p) == data
