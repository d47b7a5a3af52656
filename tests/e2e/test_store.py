"""What reaches the store, seen from outside: damaged objects give EIO,
a full cache disk gives ENOSPC without losing data, deleted data is freed,
identical blocks are stored once, a small write uploads one block, uploads
follow writeback_delay and max_dirty, the cache stays within cache_size."""

import ctypes
import errno
import hashlib
import mmap
import os
import subprocess
import time

import pytest

import mfhelpers as h
from mfhelpers import MIB, read_file, write_file

BS = h.DEFAULT_BLOCK_SIZE


def disk_usage(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def wait_until(cond, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


# ---- damaged objects ------------------------------------------------------

def flip_bit(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))


@pytest.mark.local_store
@pytest.mark.parametrize("damage", ["payload", "header", "checksum",
                                    "truncated", "missing"])
def test_damaged_object_gives_eio(mounts, damage):
    m = mounts()
    m.umount()
    before = set(m.data_objects())
    m.mount()
    blocks = [h.rand_bytes(100 + i, BS) for i in range(4)]
    write_file(m.path("f"), b"".join(blocks))
    write_file(m.path("other"), h.rand_bytes(200, 100000))
    m.umount()
    new = sorted(set(m.data_objects()) - before)
    assert len(new) == 5, f"expected 5 new objects, found {len(new)}"
    # damage one object of f: find it by trying (names are keyed hashes)
    m.wipe_cache()
    victim = None
    for key in new:
        path = os.path.join(m.store, key)
        size = os.path.getsize(path)
        if size < BS // 2:
            continue  # the 100000-byte object of "other"
        victim = key
        break
    assert victim is not None
    path = os.path.join(m.store, victim)
    size = os.path.getsize(path)
    if damage == "payload":
        flip_bit(path, 40 + (size - 40) // 2)
    elif damage == "header":
        flip_bit(path, 9)           # inside plain_len
    elif damage == "checksum":
        flip_bit(path, 30)          # inside the checksum
    elif damage == "truncated":
        os.truncate(path, size // 2)
    else:
        os.unlink(path)
    name = os.path.basename(victim)
    m.allow_errors(".*")
    m.mount()
    fd = os.open(m.path("f"), os.O_RDONLY)
    failed = []
    for i in range(4):
        try:
            got = os.pread(fd, BS, i * BS)
        except OSError as e:
            assert e.errno == errno.EIO, f"block {i}: {e}"
            failed.append(i)
            continue
        assert got == blocks[i], f"block {i}: wrong bytes returned"
    assert len(failed) == 1, f"blocks failing with EIO: {failed}"
    # again: the error is not cached as good data
    with pytest.raises(OSError) as ei:
        os.pread(fd, 4096, failed[0] * BS + 1000)
    assert ei.value.errno == errno.EIO
    os.close(fd)
    # the rest of the volume is unaffected and the daemon alive
    assert read_file(m.path("other")) == h.rand_bytes(200, 100000)
    # the log names the damaged object
    assert name in m.log_text(), \
        f"daemon log does not name the damaged object {name}"
    m.umount()


def test_corruption_in_cache_is_not_trusted_blindly(mounts):
    """Bytes on the store side are verified on every fetch, also after
    eviction from a tiny cache."""
    m = mounts(opts={"cache_size": "1M", "writeback_delay": "0"})
    data = h.rand_bytes(7, 6 * BS)
    write_file(m.path("f"), data)
    m.umount()
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("f")) == data


# ---- full cache disk ------------------------------------------------------

@pytest.mark.root
def test_cache_disk_full_gives_enospc_and_loses_nothing(mounts, workdir):
    tmpfs = os.path.join(workdir, "tmpfs")
    os.mkdir(tmpfs)
    r = h.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", tmpfs])
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr}")
    try:
        m = mounts(mkfs=True, mount=False,
                   cache=os.path.join(tmpfs, "cache"))
        # nothing is uploaded on its own: the cache fills with dirty data
        m.mount(opts={"writeback_delay": "3600", "max_dirty": "1G",
                      "cache_size": "1G"})
        m.allow_errors("(?i)no space|ENOSPC|full")
        a = h.rand_bytes(1, 8 * MIB)
        write_file(m.path("a"), a)
        fd = os.open(m.path("a"), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        # fill it
        chunk = MIB
        acked = 0
        error_at = None
        fd = os.open(m.path("b"), os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            for i in range(64):
                try:
                    n = os.write(fd, h.rand_bytes(1000 + i, chunk))
                except OSError as e:
                    error_at = ("write", e.errno)
                    break
                acked += n
            if error_at is None:
                try:
                    os.fsync(fd)
                except OSError as e:
                    error_at = ("fsync", e.errno)
        finally:
            try:
                os.close(fd)
            except OSError as e:
                if error_at is None:
                    error_at = ("close", e.errno)
        assert error_at is not None, \
            f"wrote {acked} bytes into a 32 MiB cache without an error"
        assert error_at[1] == errno.ENOSPC, \
            f"{error_at[0]} failed with {errno.errorcode[error_at[1]]}"
        # the mount still works, and what was written before is intact
        assert read_file(m.path("a")) == a
        m.umount(timeout=60)
        m.cache = os.path.join(workdir, "cache-after")
        m.opts["cache_dir"] = m.cache
        m.mount()
        assert read_file(m.path("a")) == a
        got = read_file(m.path("b"))
        want = b"".join(h.rand_bytes(1000 + i, chunk)
                        for i in range(len(got) // chunk + 1))
        assert got == want[:len(got)], "file b holds wrong bytes"
        if error_at[0] == "write":
            # every acknowledged write() survived
            assert len(got) >= acked, f"{acked} bytes acknowledged, " \
                f"{len(got)} survived"
        m.umount()
    finally:
        h.force_unmount(os.path.join(workdir, "v", "mnt"))
        h.run(["umount", "-l", tmpfs])


@pytest.mark.root
def test_cache_disk_full_recovers_after_upload(mounts, workdir):
    """With uploads allowed, a small cache disk never fails a writer: clean
    blocks are evicted."""
    tmpfs = os.path.join(workdir, "tmpfs")
    os.mkdir(tmpfs)
    # sizes in blocks (1 MiB locally, 4 MiB on S3)
    r = h.run(["mount", "-t", "tmpfs", "-o", f"size={32 * BS}", "tmpfs",
               tmpfs])
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr}")
    try:
        m = mounts(mount=False, cache=os.path.join(tmpfs, "cache"))
        m.mount(opts={"writeback_delay": "0.1", "max_dirty": str(8 * BS),
                      "cache_size": str(16 * BS)})
        data = h.rand_bytes(2, 96 * BS)
        write_file(m.path("big"), data)
        assert h.file_sha256(m.path("big")) == \
            hashlib.sha256(data).hexdigest()
        m.umount()
    finally:
        h.force_unmount(os.path.join(workdir, "v", "mnt"))
        h.run(["umount", "-l", tmpfs])


# ---- space is freed -------------------------------------------------------

def test_write_delete_cycles_free_store_space(mounts):
    m = mounts()
    m.umount()
    start_data = m.store_bytes("data")
    start_all = m.store_bytes("")
    m.mount()
    for cycle in range(10):
        p = m.path(f"f{cycle}")
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
        for i in range(100):
            os.write(fd, h.rand_bytes(cycle * 1000 + i, MIB))
        if cycle % 2 == 0:
            os.fsync(fd)      # uploaded for sure before the delete
        os.close(fd)
        time.sleep(0.3)
        os.unlink(p)
    m.umount()
    end_data = m.store_bytes("data")
    end_all = m.store_bytes("")
    assert end_data <= start_data + 4 * MIB, \
        f"data objects grew from {start_data} to {end_data} bytes"
    assert end_all <= start_all + 8 * MIB, \
        f"store grew from {start_all} to {end_all} bytes"


def test_overwrite_frees_old_blocks(mounts):
    m = mounts()
    for gen in range(5):
        write_file(m.path("f"), h.rand_bytes(gen, 20 * MIB))
        fd = os.open(m.path("f"), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    m.umount()
    assert m.store_bytes("data") <= 24 * MIB
    m.mount()
    assert read_file(m.path("f")) == h.rand_bytes(4, 20 * MIB)


# ---- dedup and partial writes ---------------------------------------------

def test_identical_blocks_are_stored_once(mounts):
    m = mounts()
    m.umount()
    before = set(m.data_objects())
    m.mount()
    data = h.rand_bytes(3, 4 * BS)
    write_file(m.path("a"), data)
    write_file(m.path("b"), data)
    os.mkdir(m.path("d"))
    write_file(m.path("d", "c"), data[:2 * BS])      # two of the same blocks
    write_file(m.path("rep"), data[:BS] * 6)          # one block six times
    m.umount()
    new = set(m.data_objects()) - before
    assert len(new) == 4, f"{len(new)} objects for 4 distinct blocks"
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("a")) == data
    assert read_file(m.path("b")) == data
    assert read_file(m.path("rep")) == data[:BS] * 6
    # deleting one copy keeps the shared objects alive
    os.unlink(m.path("a"))
    os.unlink(m.path("rep"))
    m.umount()
    assert len(set(m.data_objects()) - before) == 4
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("b")) == data
    assert read_file(m.path("d", "c")) == data[:2 * BS]


def test_one_byte_write_uploads_one_block(mounts):
    m = mounts()
    data = bytearray(h.rand_bytes(4, 16 * BS))
    write_file(m.path("big"), data)
    m.umount()
    old = set(m.data_objects())
    assert len(old) == 16
    m.wipe_cache()
    m.mount()
    fd = os.open(m.path("big"), os.O_WRONLY)
    os.pwrite(fd, b"\x00", 5 * BS + 123)
    os.close(fd)
    data[5 * BS + 123] = 0
    m.umount()
    new = set(m.data_objects())
    assert len(new - old) == 1, f"{len(new - old)} objects uploaded for a " \
        f"one-byte write"
    assert len(old - new) <= 1
    m.mount()
    assert read_file(m.path("big")) == bytes(data)


def test_read_fetches_only_what_it_needs(mounts):
    m = mounts()
    write_file(m.path("big"), h.rand_bytes(5, 64 * MIB))
    m.umount()
    m.wipe_cache()
    m.mount()
    before = disk_usage(m.cache)
    fd = os.open(m.path("big"), os.O_RDONLY)
    assert os.pread(fd, 4096, 30 * MIB + 5) == \
        h.rand_bytes(5, 64 * MIB)[30 * MIB + 5:30 * MIB + 5 + 4096]
    os.close(fd)
    grown = disk_usage(m.cache) - before
    assert grown <= 8 * BS, f"cache grew by {grown} bytes for a 4 KiB read"


def test_sequential_reader_is_read_ahead(mounts):
    """After two blocks read in order from a cold cache, the blocks after
    them are fetched without being asked for (read-ahead); a single
    random read (above) fetches only what it needs."""
    m = mounts()
    data = h.rand_bytes(6, 16 * BS)
    write_file(m.path("big"), data)
    m.umount()
    m.wipe_cache()
    m.mount()
    fd = os.open(m.path("big"), os.O_RDONLY)
    assert os.pread(fd, 4096, 0) == data[:4096]
    assert os.pread(fd, 4096, BS) == data[BS:BS + 4096]
    os.close(fd)
    cached = 0
    for _ in range(100):   # the fetchers run in the background
        cached = len(os.listdir(os.path.join(m.cache, "blocks")))
        if cached >= 6:
            break
        time.sleep(0.05)
    assert cached >= 6, f"{cached} blocks cached after reading 2 in order"
    assert read_file(m.path("big")) == data


def test_sequential_write_uploads_as_it_goes(mounts):
    """Blocks a sequential writer has written whole go up while it writes
    (past a 32nd of max_dirty), not writeback_delay later or at fsync; a
    file rewritten in place, in part, waits for the delay."""
    m = mounts(opts={"writeback_delay": "3600", "max_dirty": str(64 * BS)})
    data = h.rand_bytes(21, 24 * BS)
    fd = os.open(m.path("seq"), os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        for off in range(0, len(data), 128 * 1024):
            os.write(fd, data[off:off + 128 * 1024])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(m.data_objects()) < 20:
            time.sleep(0.1)
        # 2 blocks (max_dirty / 32) and the last, partly written one
        # may wait
        assert len(m.data_objects()) >= 20, \
            f"{len(m.data_objects())} of 24 blocks uploaded without fsync"
        os.fsync(fd)
        before = len(m.data_objects())
        for i in range(24):      # 4 KiB into each block: none is whole
            os.pwrite(fd, b"z" * 4096, i * BS + 8192)
        time.sleep(1)
        assert len(m.data_objects()) == before
    finally:
        os.close(fd)
    m.umount()
    m.wipe_cache()
    m.mount()
    want = bytearray(data)
    for i in range(24):
        want[i * BS + 8192:i * BS + 12288] = b"z" * 4096
    assert read_file(m.path("seq")) == bytes(want)


def test_small_files_wait_for_their_delay(mounts):
    """max_dirty weighs the bytes written: 300 small files (each a block
    of the cache's room, far from half of cache_size) wait for
    writeback_delay; they used to count a whole block of unsent data
    each and all went up at once past max_dirty.  Past half the room
    they go up at once; the unmount sends the rest."""
    m = mounts(opts={"writeback_delay": "3600", "max_dirty": str(64 * BS),
                     "cache_size": str(800 * BS)})
    os.mkdir(m.path("d"))
    files = {f"d/f{i:03d}": h.rand_bytes(3000 + i, 5000 + i)
             for i in range(300)}
    for name, data in files.items():
        write_file(m.path(name), data)
    time.sleep(2)
    assert len(m.data_objects()) == 0, \
        f"{len(m.data_objects())} small files uploaded before their delay"
    # 150 more: past half of the room (400 blocks), uploads start
    more = {f"d/g{i:03d}": h.rand_bytes(4000 + i, 5000 + i)
            for i in range(150)}
    for name, data in more.items():
        write_file(m.path(name), data)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(m.data_objects()) < 50:
        time.sleep(0.1)
    assert len(m.data_objects()) >= 50, \
        f"{len(m.data_objects())} uploaded with the room past half full"
    files.update(more)
    m.umount()
    m.wipe_cache()
    m.mount()
    for name, data in files.items():
        assert read_file(m.path(name)) == data, name


def resident_pages(path):
    """Pages of the file at path in the page cache (mincore(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                             ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = os.path.getsize(path)
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), "mmap failed"
        vec = ctypes.create_string_buffer(pages)
        try:
            assert libc.mincore(addr, size, vec) == 0, "mincore failed"
        finally:
            libc.munmap(addr, size)
        return sum(b & 1 for b in vec.raw)
    finally:
        os.close(fd)


@pytest.mark.local_store
def test_block_objects_bypass_the_page_cache(mounts):
    """A local store writes uploaded blocks and reads fetched ones with
    O_DIRECT: what the cache holds is not kept twice in memory.  Only the
    buffered tail page of each object may be resident."""
    m = mounts()
    if h.run(["stat", "-f", "-c", "%T", m.store_dir]).stdout.strip() \
            == "tmpfs":
        pytest.skip("the store is on tmpfs, whose pages are always resident")
    data = h.rand_bytes(31, 16 * MIB)
    write_file(m.path("f"), data)
    m.umount()
    objs = [os.path.join(m.store_dir, k) for k in m.data_objects()]
    assert len(objs) == 16
    assert sum(resident_pages(p) for p in objs) <= len(objs), \
        "uploaded blocks left in the page cache"
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("f")) == data      # every block fetched
    assert sum(resident_pages(p) for p in objs) <= len(objs), \
        "fetched blocks left in the page cache"


def test_requests_do_not_start_threads(mounts):
    """The daemon's FUSE workers live on: a thread made and ended around
    each request cost most of a small write's time (libfuse read our loop
    configuration in an older layout)."""
    m = mounts(opts={"writeback_delay": "3600"})
    assert m.pid, "daemon pid unknown"
    fd = os.open(m.path("f"), os.O_CREAT | os.O_RDWR, 0o644)
    for i in range(50):           # let the pool grow to what it needs
        os.pwrite(fd, b"x" * 4096, i * 4096)
    before = set(os.listdir(f"/proc/{m.pid}/task"))
    seen = set(before)
    for i in range(500):
        os.pwrite(fd, b"y" * 4096, (i % 64) * 4096)
        if i % 5 == 0:   # a thread that came and went shows up here
            seen |= set(os.listdir(f"/proc/{m.pid}/task"))
    os.close(fd)
    after = set(os.listdir(f"/proc/{m.pid}/task"))
    # The pool may still grow (a write waiting behind a journal upload
    # to a slow store makes libfuse start one more worker, which lives
    # on); what must not happen is a worker that comes and goes.
    ended = seen - after
    assert len(ended) <= 2, f"{len(ended)} threads came and went in 500 writes"
    # ... and grows at most to libfuse's max_threads (fs_run()); on a
    # loaded machine it may well grow by more than a handful
    assert len(after - before) <= 16, \
        f"{len(after - before)} threads started for 500 writes"


@pytest.mark.local_store
def test_directory_rename_touches_no_data_object(mounts):
    m = mounts()
    os.makedirs(m.path("top", "sub"))
    for i in range(200):
        write_file(m.path("top", "sub", f"f{i}"), h.rand_bytes(i, 20000 + i))
    m.umount()

    def objects_with_times():
        out = {}
        for key in m.data_objects():
            st = os.stat(os.path.join(m.store, key))
            out[key] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return out

    before = objects_with_times()
    m.mount()
    os.rename(m.path("top"), m.path("renamed"))
    os.mkdir(m.path("other"))
    os.rename(m.path("renamed", "sub"), m.path("other", "sub"))
    m.umount()
    assert objects_with_times() == before
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("other", "sub", "f199")) == \
        h.rand_bytes(199, 20199)


# ---- write-back schedule and cache size -----------------------------------

def test_small_writeback_delay_uploads_without_fsync(mounts):
    m = mounts(opts={"writeback_delay": "0.2"})
    before = len(m.data_objects())
    write_file(m.path("f"), h.rand_bytes(6, 10 * BS))
    assert wait_until(lambda: len(m.data_objects()) >= before + 10, 20), \
        f"only {len(m.data_objects()) - before} of 10 blocks uploaded " \
        f"after 20 s with writeback_delay=0.2"


def test_large_delay_holds_uploads_until_max_dirty(mounts):
    m = mounts(opts={"writeback_delay": "3600", "max_dirty": str(8 * BS)})
    before = len(m.data_objects())
    # 4 blocks dirty, none written whole (whole ones would go at once
    # past a 32nd of max_dirty: test_sequential_write_uploads_as_it_goes)
    small = bytearray(4 * BS)
    fd = os.open(m.path("small"), os.O_CREAT | os.O_WRONLY, 0o644)
    for i in range(4):
        piece = h.rand_bytes(70 + i, BS - 4096)
        os.pwrite(fd, piece, i * BS + 4096)
        small[i * BS + 4096:(i + 1) * BS] = piece
    os.close(fd)
    time.sleep(2)
    assert len(m.data_objects()) == before, \
        "data uploaded before writeback_delay with dirty < max_dirty"
    write_file(m.path("big"), h.rand_bytes(8, 60 * BS))
    # dirty data must come down to about max_dirty
    assert wait_until(lambda: len(m.data_objects()) >= before + 56, 60), \
        f"{len(m.data_objects()) - before} blocks uploaded with 64 " \
        f"blocks dirty and max_dirty of 8"
    m.remount(wipe_cache=True)
    assert read_file(m.path("big")) == h.rand_bytes(8, 60 * BS)
    assert read_file(m.path("small")) == bytes(small)


def test_cache_stays_within_cache_size(mounts):
    m = mounts(opts={"cache_size": "16M", "writeback_delay": "0.1"})
    data = h.rand_bytes(9, 96 * MIB)
    write_file(m.path("f"), data)
    # once uploaded, clean blocks are evicted down to cache_size
    limit = 16 * MIB + 8 * MIB   # slack for the database and the log
    assert wait_until(lambda: disk_usage(m.cache) <= limit, 60), \
        f"cache holds {disk_usage(m.cache)} bytes with cache_size=16M"
    assert h.file_sha256(m.path("f")) == \
        hashlib.sha256(data).hexdigest()
    assert disk_usage(m.cache) <= limit + 8 * MIB, \
        f"reading back grew the cache to {disk_usage(m.cache)} bytes"


@pytest.mark.local_store
def test_store_layout(mounts):
    m = mounts(encrypt=False)  # the plain layout
    assert os.path.isfile(os.path.join(m.store, "volume"))
    write_file(m.path("f"), h.rand_bytes(10, 3 * BS))
    m.umount()
    assert os.path.isdir(os.path.join(m.store, "meta"))
    assert os.listdir(os.path.join(m.store, "meta")), "no checkpoint"
    for key, size in m.data_objects().items():
        _, xx, name = key.split("/")
        assert name[:2] == xx
        assert size >= 40
        with open(os.path.join(m.store, key), "rb") as f:
            assert f.read(4) == b"MFB1"
    # nothing but the documented entries at the top
    top = set(os.listdir(m.store))
    assert {"volume", "meta", "data"} <= top


def test_fsck_after_heavy_use_is_clean(mounts):
    m = mounts(block_size=64 * 1024)
    for i in range(30):
        write_file(m.path(f"f{i}"), h.rand_bytes(i, (i * 77777) % (2 * MIB)))
    for i in range(0, 30, 3):
        os.unlink(m.path(f"f{i}"))
    for i in range(1, 30, 3):
        os.truncate(m.path(f"f{i}"), 1000)
    m.umount()
    r = m.cli("fsck", m.store)
    assert r.returncode == 0, f"{r.stdout}{r.stderr}"


@pytest.mark.local_store
def test_store_survives_copy_to_new_location(mounts, workdir):
    """The store is self-contained: a copy of the directory mounts
    elsewhere with a fresh cache (a new machine)."""
    m = mounts()
    write_file(m.path("f"), h.rand_bytes(12, 3 * MIB))
    os.symlink("f", m.path("l"))
    m.umount()
    copy = os.path.join(workdir, "store-copy")
    subprocess.run(["cp", "-a", m.store, copy], check=True)
    m2 = mounts("v2", mkfs=False, store=copy)
    m2.mount()
    assert read_file(m2.path("f")) == h.rand_bytes(12, 3 * MIB)
    assert os.readlink(m2.path("l")) == "f"
    m2.umount()
