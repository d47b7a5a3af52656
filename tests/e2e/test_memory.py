"""Memory stays bounded whatever the file sizes: writing (and reading back)
a 4 GiB file keeps the daemon's peak resident memory under 150 MiB."""

import hashlib
import os
import time

import pytest

import mfhelpers as h
from mfhelpers import MIB

LIMIT_KIB = 150 * 1024
SIZE = int(os.environ.get("METAFUSE_MEMORY_TEST_SIZE", str(4096 * MIB)))


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("block_size", [None, 4 * MIB],
                         ids=["default-blocks", "4MiB-blocks"])
def test_4gib_file_keeps_daemon_memory_bounded(mounts, block_size):
    """With the default blocks, and with the 4 MiB of S3 volumes (every
    buffer of a block four times larger)."""
    m = mounts(mount=False, block_size=block_size)
    # -f under Popen: the test knows the daemon's pid
    m.mount(foreground=True, opts={"writeback_delay": "0.2",
                                   "cache_size": "512M", "max_dirty": "256M"})
    pid = m.pid
    base = h.rand_bytes(42, MIB)
    digest = hashlib.sha256()
    t0 = time.monotonic()
    peak = 0
    fd = os.open(m.path("huge"), os.O_CREAT | os.O_WRONLY, 0o644)
    for i in range(SIZE // MIB):
        # every block distinct (no dedup), none compressible
        block = i.to_bytes(8, "little") + base[8:]
        os.write(fd, block)
        digest.update(block)
        if i % 256 == 0:
            peak = max(peak, h.vm_rss_kib(pid))
    os.fsync(fd)
    os.close(fd)
    t_write = time.monotonic() - t0
    hwm_write = h.vm_hwm_kib(pid)
    assert hwm_write < LIMIT_KIB, \
        f"daemon VmHWM {hwm_write // 1024} MiB after writing " \
        f"{SIZE // MIB} MiB (limit 150 MiB)"

    t0 = time.monotonic()
    back = hashlib.sha256()
    with open(m.path("huge"), "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                break
            back.update(b)
    t_read = time.monotonic() - t0
    hwm = h.vm_hwm_kib(pid)
    print(f"write {SIZE // MIB} MiB: {t_write:.1f} s, read: {t_read:.1f} s, "
          f"VmHWM {hwm // 1024} MiB")
    assert back.hexdigest() == digest.hexdigest(), "read back differs"
    assert hwm < LIMIT_KIB, \
        f"daemon VmHWM {hwm // 1024} MiB after reading back (limit 150 MiB)"
    assert os.stat(m.path("huge")).st_size == SIZE
    m.umount()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_many_files_keep_daemon_memory_bounded(mounts):
    m = mounts(mount=False)
    m.mount(foreground=True)
    pid = m.pid
    for d in range(20):
        os.mkdir(m.path(f"d{d}"))
        for i in range(1000):
            with open(m.path(f"d{d}", f"f{i}"), "wb") as f:
                f.write(b"x" * (i % 5000))
    for d in range(20):
        assert len(os.listdir(m.path(f"d{d}"))) == 1000
    hwm = h.vm_hwm_kib(pid)
    assert hwm < LIMIT_KIB, f"daemon VmHWM {hwm // 1024} MiB with 20000 files"
    m.umount()
