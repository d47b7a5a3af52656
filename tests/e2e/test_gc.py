"""Garbage collection and deduplication across restores.

The store deletes an object once no block references it and no durable
checkpoint needs it; a later identical block must then be uploaded again,
even when a restored checkpoint still lists the deleted object.
"""

import os

import mfhelpers as h
from mfhelpers import MIB, read_file, write_file


def test_dedup_never_reuses_a_collected_object(mounts):
    m = mounts(opts={"writeback_delay": "0.1"})
    data = h.rand_bytes(77, 3 * h.DEFAULT_BLOCK_SIZE)   # 3 blocks
    write_file(m.path("a"), data)
    m.umount()
    objects_with_a = m.data_objects()
    assert len(objects_with_a) >= 3
    # delete it: the unmount collects its objects, but the checkpoint
    # written just before still lists them (with no reference)
    m.mount()
    os.unlink(m.path("a"))
    m.umount()
    assert len(m.data_objects()) == len(objects_with_a) - 3
    # restore from that checkpoint, then write the same bytes again
    m.wipe_cache()
    m.mount()
    write_file(m.path("b"), data)
    m.remount(wipe_cache=True)
    assert read_file(m.path("b")) == data
    assert len(m.data_objects()) == len(objects_with_a)


def test_crash_leftovers_are_collected(mounts):
    """Objects a crashed mount uploaded but never recorded in metadata that
    reached the store are deleted by the next mount (after a crash with
    the cache kept, and after a restore from the store alone); objects the
    metadata names stay."""
    m = mounts(opts={"writeback_delay": "0.1"})
    data = h.rand_bytes(78, 2 * MIB)
    write_file(m.path("a"), data)
    m.umount()
    named = set(m.data_objects())
    m.mount()
    for i, wipe in enumerate([False, True]):
        # what a crash between an upload and its metadata leaves behind
        stray = os.path.join(m.store_dir, "data", "ee",
                             f"ee{i:062x}")
        os.makedirs(os.path.dirname(stray), exist_ok=True)
        with open(stray, "wb") as f:
            f.write(b"x" * 100)
        m.allow_errors(".*")
        m.kill()
        h.force_unmount(m.mnt)
        if wipe:
            m.wipe_cache()
        m.mount()
        assert not os.path.exists(stray), f"stray object kept (wipe={wipe})"
        assert named <= set(m.data_objects())
        assert read_file(m.path("a")) == data
    m.umount()
    m.fsck_verified()


def test_fsck_verify_data_finds_a_damaged_object(mounts):
    m = mounts(opts={"writeback_delay": "0.1"})
    write_file(m.path("a"), h.rand_bytes(79, MIB))
    m.umount()
    key = sorted(m.data_objects())[0]
    path = os.path.join(m.store_dir, key)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x10]))
    r = m.cli("fsck", m.store)
    assert r.returncode == 0, r.stdout + r.stderr   # sizes are fine
    r = m.cli("fsck", "--verify-data", m.store)
    assert r.returncode == 1, r.stdout + r.stderr
    assert os.path.basename(key) in r.stdout and "damaged" in r.stdout


def test_fsck_checks_many_objects(mounts):
    """fsck checks a volume of more objects than it verifies in one go
    (it lists the store once, then fetches objects in batches of 1,024,
    several at a time): each referenced object is counted once, and a
    missing object is named whether it falls in the first batch or a
    later one, as is a damaged one."""
    m = mounts(block_size=64 * 1024, opts={"writeback_delay": "0.1"})
    write_file(m.path("a"), h.rand_bytes(81, 80 * MIB))  # 1,280 blocks
    m.umount()
    keys = sorted(m.data_objects())
    assert len(keys) == 1280
    out = m.fsck_verified()
    assert "1280 object(s) verified (80 MiB)" in out, out
    gone = [keys[3], keys[1200]]
    damaged = keys[1100]
    for k in gone:
        os.unlink(os.path.join(m.store_dir, k))
    path = os.path.join(m.store_dir, damaged)
    with open(path, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 1]))
    r = m.cli("fsck", m.store)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.count("missing from the store") == 2, r.stdout
    assert all(k in r.stdout for k in gone), r.stdout
    assert "damaged" not in r.stdout, r.stdout
    assert "1280 object(s) checked" in r.stdout, r.stdout
    r = m.cli("fsck", "--verify-data", m.store)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.count("missing from the store") == 2, r.stdout
    assert r.stdout.count("is damaged") == 1 and damaged in r.stdout, \
        r.stdout
    assert "1280 object(s) verified" in r.stdout, r.stdout


def test_gc_command(mounts):
    """`metafuse gc` on an unmounted volume: deletes strays and objects
    with no reference left, keeps what files use, refuses a mounted
    volume."""
    m = mounts(opts={"writeback_delay": "0.1"})
    keep = h.rand_bytes(80, 2 * MIB)
    write_file(m.path("keep"), keep)
    r = m.cli("gc", m.store)
    assert r.returncode != 0, r.stdout
    assert "pid" in r.stderr and "\n" not in r.stderr.strip(), r.stderr
    m.umount()
    used = set(m.data_objects())
    stray = os.path.join(m.store_dir, "data", "ab", "ab" + "0" * 62)
    os.makedirs(os.path.dirname(stray), exist_ok=True)
    with open(stray, "wb") as f:
        f.write(b"y" * 10)
    r = m.cli("gc", m.store)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 of" in r.stdout, r.stdout
    assert not os.path.exists(stray)
    assert set(m.data_objects()) == used
    r = m.cli("fsck", "--verify-data", m.store)
    assert r.returncode == 0, r.stdout + r.stderr
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("keep")) == keep
