"""Clones: copy_file_range (os.copy_file_range, `cp`) sharing whole blocks,
and `metafuse clone SRC DST` of a file or a tree.

Checked from outside: the bytes of every copy against a model, the store's
objects (a clone adds none; an object goes only with its last holder),
fsck --verify-data after remounts, the kernel's view (page cache, negative
entries) right after a clone, and every bad input as one line and a
non-zero status with nothing changed.
"""

import os
import random
import stat
import subprocess

import pytest

import mfhelpers as h
from mfhelpers import read_file, write_file

BS = h.DEFAULT_BLOCK_SIZE


def copy_range(src, dst, count, off_in, off_out):
    """os.copy_file_range until count bytes or the source's end."""
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o644)
    done = 0
    try:
        while done < count:
            n = os.copy_file_range(fi, fo, count - done, off_in + done,
                                   off_out + done)
            if n == 0:
                break
            done += n
    finally:
        os.close(fi)
        os.close(fo)
    return done


def model_copy(src, dst, count, off_in, off_out):
    """What copy_file_range does to bytearray dst (src: bytes)."""
    piece = src[off_in:off_in + count]
    end = off_out + len(piece)
    if end > len(dst):
        dst.extend(b"\0" * (end - len(dst)))
    dst[off_out:end] = piece
    return len(piece)


def clone(m, src, dst, *flags):
    return m.cli("clone", *flags, src, dst)


def one_line_failure(r):
    assert r.returncode != 0, r.stdout
    err = r.stderr.strip()
    assert err and "\n" not in err, r.stderr
    return err


def test_many_clones_share_blocks_and_free_with_last_holder(mounts):
    """Clones of one file by copy_file_range, cp, metafuse clone (of the
    file and of a tree holding it) and a clone of a clone: the store
    grows by nothing, writes to each copy diverge, and deletes in random
    order free each object only when its last holder is gone."""
    m = mounts()
    rng = random.Random(17)
    data = h.rand_bytes(1, 4 * BS + 1000)      # four blocks and a tail
    write_file(m.path("orig"), data)           # dirty: not yet uploaded
    assert copy_range(m.path("orig"), m.path("c1"), len(data), 0, 0) == \
        len(data)
    r = subprocess.run(["cp", m.path("orig"), m.path("c2")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = clone(m, m.path("orig"), m.path("c3"))
    assert r.returncode == 0, r.stderr
    os.mkdir(m.path("d"))
    assert copy_range(m.path("c1"), m.path("d", "c4"), len(data), 0, 0) == \
        len(data)
    r = clone(m, m.path("d"), m.path("d2"), "-v")
    assert r.returncode == 0 and "2 inodes made, 5 blocks shared" in \
        r.stdout, r.stdout + r.stderr
    names = ["orig", "c1", "c2", "c3", "d/c4", "d2/c4"]
    model = {n: bytearray(data) for n in names}
    for n in names:
        assert read_file(m.path(n)) == data, n
    m.umount()
    shared = set(m.data_objects())
    assert len(shared) <= 5, "a clone uploaded its blocks again"
    m.mount()

    # writes to each copy: part of a block (a patch on a shared block)
    # and a whole block; none shows in another copy
    for i, n in enumerate(names):
        off = rng.randrange(0, len(data) - 100)
        piece = h.rand_bytes(100 + i, 100)
        with open(m.path(n), "r+b") as f:
            f.seek(off)
            f.write(piece)
            blk = rng.randrange(0, 4) * BS
            whole = h.rand_bytes(200 + i, BS)
            f.seek(blk)
            f.write(whole)
        model[n][off:off + 100] = piece
        model[n][blk:blk + BS] = whole
    for n in names:
        assert read_file(m.path(n)) == bytes(model[n]), n
    m.remount()
    for n in names:
        assert read_file(m.path(n)) == bytes(model[n]), n
    m.umount()
    m.fsck_verified()
    m.mount()

    # deletes in random order; after each, the others read back whole
    # from the store alone
    rng.shuffle(names)
    for i, n in enumerate(names):
        os.unlink(m.path(n))
        del model[n]
        if i % 2 == 1 or i == len(names) - 1:
            m.remount(wipe_cache=True)
            for k in model:
                assert read_file(m.path(k)) == bytes(model[k]), k
    m.umount()
    r = m.cli("gc", m.store)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not m.data_objects(), "objects kept after their last holder"
    m.fsck_verified()


@pytest.mark.parametrize("wbc", [False, True], ids=["plain", "wbcache"])
def test_copy_file_range_partial_ranges_match_a_model(mounts, wbc):
    """Random ranges, aligned (blocks shared) and not (the kernel's copy),
    between files and inside one file, byte for byte against a model;
    again after a remount from the store alone.  With the kernel's
    writeback cache too, where the written bytes wait in the kernel."""
    m = mounts(opts={"writeback_cache": True} if wbc else None)
    rng = random.Random(5)
    files = {f"f{i}": bytearray(h.rand_bytes(10 + i, rng.randrange(
        BS // 2, 5 * BS))) for i in range(3)}
    for n, d in files.items():
        write_file(m.path(n), bytes(d))
    for step in range(40):
        src, dst = rng.choice(list(files)), rng.choice(list(files))
        if rng.random() < 0.4:
            # bytes just written (dirty: in the cache, or in the kernel)
            off = rng.randrange(0, len(files[src]))
            piece = h.rand_bytes(1000 + step, rng.randrange(1, 5000))
            with open(m.path(src), "r+b") as f:
                f.seek(off)
                f.write(piece)
            model_copy(piece, files[src], len(piece), 0, off)
        size = len(files[src])
        off_in = rng.randrange(0, size)
        count = rng.randrange(1, 3 * BS)
        if rng.random() < 0.6:
            # the same place in their blocks: whole blocks are shared
            off_out = rng.randrange(0, 4) * BS + off_in % BS
        else:
            off_out = rng.randrange(0, 5 * BS)
        if src == dst:
            end_in = off_in + min(count, size - off_in)
            if off_out < end_in and off_in < off_out + min(count, size):
                continue          # overlapping: EINVAL, not a copy
        count = min(count, size - off_in)   # what one call may copy
        want = model_copy(bytes(files[src]), files[dst], count, off_in,
                          off_out)
        got = copy_range(m.path(src), m.path(dst), count, off_in, off_out)
        assert got == want, (step, src, dst, off_in, off_out, count)
        assert read_file(m.path(dst)) == bytes(files[dst]), step
    m.remount(wipe_cache=True)
    for n, d in files.items():
        assert read_file(m.path(n)) == bytes(d), n
    m.umount()
    m.fsck_verified()


def cache_files(m):
    n = 0
    for _, _, files in os.walk(os.path.join(m.cache, "blocks")):
        n += len(files)
    return n


def test_cp_shares_blocks_instead_of_copying(mounts):
    """cp and os.copy_file_range of a large file write no block: the
    cache gets no file for the copy and the store no object, until the
    copy is written to."""
    m = mounts()
    data = h.rand_bytes(9, 8 * BS)
    write_file(m.path("src"), data)
    with open(m.path("src"), "rb") as f:
        os.fsync(f.fileno())
    files, objects = cache_files(m), len(m.data_objects())
    r = subprocess.run(["cp", m.path("src"), m.path("cp")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert copy_range(m.path("src"), m.path("cfr"), len(data), 0, 0) == \
        len(data)
    assert cache_files(m) == files, "the copies went through the cache"
    assert read_file(m.path("cp")) == data
    assert read_file(m.path("cfr")) == data
    with open(m.path("cp"), "r+b") as f:
        f.write(b"diverged")
    m.umount()
    assert len(m.data_objects()) == objects + 1
    m.mount()
    assert read_file(m.path("cp")) == b"diverged" + data[8:]
    assert read_file(m.path("src")) == data


def test_copy_over_cached_pages_and_dirty_source(mounts):
    """The kernel's cached pages of the destination are not served after
    a copy; a source written just before (still dirty) is copied as it
    is now."""
    m = mounts(opts={"writeback_delay": "30"})
    old = h.rand_bytes(2, 3 * BS)
    write_file(m.path("dst"), old)
    fd = os.open(m.path("dst"), os.O_RDONLY)
    assert os.pread(fd, 3 * BS, 0) == old          # pages cached
    new = h.rand_bytes(3, 3 * BS)
    write_file(m.path("src"), new)                  # dirty for 30 s
    assert copy_range(m.path("src"), m.path("dst"), 3 * BS, 0, 0) == 3 * BS
    assert os.pread(fd, 3 * BS, 0) == new
    os.close(fd)
    m.remount(wipe_cache=True)
    assert read_file(m.path("dst")) == new


def test_clone_tree_as_cp_a(mounts):
    """metafuse clone of a tree keeps what cp -a keeps: types, modes,
    owners, sizes, contents, symlinks, xattrs, hard links inside the
    tree, mtimes; in one step that adds no object; the new name is seen
    at once even after a failed lookup of it."""
    m = mounts()
    t = m.path("t")
    os.makedirs(os.path.join(t, "sub", "deeper"))
    write_file(os.path.join(t, "big"), h.rand_bytes(4, 2 * BS + 7), 0o640)
    write_file(os.path.join(t, "small"), b"small file\n", 0o600)
    write_file(os.path.join(t, "sub", "deeper", "x"), h.rand_bytes(5, BS))
    os.link(os.path.join(t, "big"), os.path.join(t, "sub", "big-link"))
    os.symlink("../big", os.path.join(t, "sub", "sym"))
    os.mkfifo(os.path.join(t, "fifo"))
    os.chmod(os.path.join(t, "sub"), 0o2750)
    os.setxattr(os.path.join(t, "big"), "user.tag", b"v1")
    os.utime(os.path.join(t, "small"), ns=(1_000_000_123, 2_000_000_456))
    os.chown(os.path.join(t, "small"), 123, 456)
    assert not os.path.exists(m.path("t2"))        # a negative entry
    r = clone(m, t, m.path("t2"))
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert os.path.isdir(m.path("t2"))
    # what cp -a would make: the source's own description
    a = h.snapshot(t)
    b = h.snapshot(m.path("t2"))
    diff = h.diff_snapshots(a, b, "source", "clone")
    assert diff == [], "\n".join(diff)
    for rel in a:
        s1 = os.lstat(os.path.join(t, rel))
        s2 = os.lstat(os.path.join(m.path("t2"), rel))
        assert s1.st_mtime_ns == s2.st_mtime_ns, rel
    assert os.stat(m.path("t2", "big")).st_ino == \
        os.stat(m.path("t2", "sub", "big-link")).st_ino
    m.umount()
    before = set(m.data_objects())
    m.mount()
    r = clone(m, t, m.path("t4"))
    assert r.returncode == 0, r.stderr
    m.umount()
    assert set(m.data_objects()) == before
    m.fsck_verified()
    m.mount()
    assert h.diff_snapshots(h.snapshot(t), h.snapshot(m.path("t4"))) == []


def test_clone_permissions_of_the_caller(mounts):
    """A user clones only what they could read, into a directory they
    can write; the copy is theirs and loses set-user-ID."""
    m = mounts(opts={"allow_other": True})
    os.chmod(m.mnt, 0o755)
    os.makedirs(m.path("pub"), mode=0o777)
    os.chmod(m.path("pub"), 0o777)
    write_file(m.path("readable"), h.rand_bytes(6, BS + 3), 0o4755)
    write_file(m.path("secret"), b"no", 0o600)
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

    def as_user(*args):
        return subprocess.run(user + [h.BIN, "clone", *args],
                              capture_output=True, text=True)

    r = as_user(m.path("secret"), m.path("pub", "s"))
    assert "Permission denied" in one_line_failure(r)
    r = as_user(m.path("readable"), m.path("mine"))      # root's dir
    assert "permission denied" in one_line_failure(r).lower()
    assert not os.path.exists(m.path("mine"))
    r = as_user(m.path("readable"), m.path("pub", "mine"))
    assert r.returncode == 0, r.stderr
    st = os.stat(m.path("pub", "mine"))
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert read_file(m.path("pub", "mine")) == read_file(m.path("readable"))


def test_clone_bad_input(mounts, workdir):
    """Each refusal is one line and a non-zero status, and changes
    nothing; copy_file_range between volumes or from another
    filesystem still copies."""
    m = mounts()
    other = mounts("w")
    write_file(m.path("f"), h.rand_bytes(7, 2 * BS))
    write_file(m.path("g"), b"exists")
    os.mkdir(m.path("d"))
    write_file(other.path("o"), b"other volume")
    outside = os.path.join(workdir, "outside")
    write_file(outside, h.rand_bytes(8, BS + 5))
    before = h.snapshot(m.mnt)

    cases = [
        ((m.path("f"), m.path("g")), "exists"),
        ((m.path("nope"), m.path("h")), "No such file"),
        ((m.path("f"), other.path("h")), "not in the same"),
        ((outside, m.path("h")), "not in the same"),
        ((outside, os.path.join(workdir, "h")), "not in a metafuse"),
        ((m.path("d"), m.path("d", "inside")), "into itself"),
        ((m.path("f"), m.path("nodir", "h")), "No such file"),
    ]
    for args, words in cases:
        r = clone(m, *args)
        assert words in one_line_failure(r), (args, r.stderr)
    assert h.diff_snapshots(before, h.snapshot(m.mnt)) == []
    assert not os.path.exists(os.path.join(workdir, "h"))
    r = m.cli("clone", m.path("f"))
    assert r.returncode == 2 and "usage" in r.stderr, r.stderr

    # copy_file_range: between two volumes the kernel copies the bytes;
    # from another filesystem it refuses (EXDEV) and cp copies them
    data = read_file(m.path("f"))
    assert copy_range(m.path("f"), other.path("copy"), len(data), 0, 0) \
        == len(data)
    assert read_file(other.path("copy")) == data
    with pytest.raises(OSError) as e:
        copy_range(outside, m.path("x"), 10, 0, 0)
    assert e.value.errno == 18
    r = subprocess.run(["cp", outside, m.path("from-outside")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert read_file(m.path("from-outside")) == read_file(outside)
