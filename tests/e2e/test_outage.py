"""The store stops answering while mounted (durability issue).

The daemon's store is wrapped by the fault injector, which fails every
call while a file named by METAFUSE_TEST_STORE_DOWN_FILE exists.  While
the store is down: writes, renames and deletes go on into the cache, and
fsync returns EIO (the data stays in the cache, and is retried); the log
says what is pending.  Once the store is back, fsync succeeds and
unmount uploads everything: a remount from the store alone has every
byte.
"""

import errno
import os
import subprocess
import time

import mfhelpers as h
from mfhelpers import MIB, read_file, write_file


def test_store_outage_loses_nothing(mounts, workdir):
    down = os.path.join(workdir, "store-down")
    env = dict(os.environ, METAFUSE_TEST_STORE_DOWN_FILE=down)
    m = mounts(opts={"writeback_delay": "0.2", "journal_interval": "0.5"},
               env=env)
    m.allow_errors(r"failed: Input/output error",
                   r"cannot send the metadata", r"checkpoint failed")
    before = h.rand_bytes(1, 3 * MIB)
    write_file(m.path("before"), before)
    fd = os.open(m.path("before"), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)

    open(down, "w").close()
    during = h.rand_bytes(2, 5 * MIB + 11)
    fd = os.open(m.path("during"), os.O_CREAT | os.O_RDWR, 0o600)
    os.write(fd, during)
    try:
        os.fsync(fd)
        raise AssertionError("fsync returned 0 while the store was down")
    except OSError as e:
        assert e.errno == errno.EIO, e
    os.mkdir(m.path("dir"))
    os.rename(m.path("before"), m.path("dir", "moved"))
    write_file(m.path("dir", "small"), b"written while down")
    time.sleep(1.5)
    log = m.log_text()
    assert "waiting to be uploaded" in log, log[-2000:]

    os.unlink(down)
    deadline = time.monotonic() + 60
    while True:
        try:
            os.fsync(fd)
            break
        except OSError as e:
            assert e.errno == errno.EIO
            assert time.monotonic() < deadline, "fsync never succeeded"
            time.sleep(0.5)
    os.close(fd)
    m.umount()
    m.wipe_cache()
    del m.env["METAFUSE_TEST_STORE_DOWN_FILE"]
    m.mount()
    assert read_file(m.path("during")) == during
    assert read_file(m.path("dir", "moved")) == before
    assert read_file(m.path("dir", "small")) == b"written while down"
    assert not os.path.exists(m.path("before"))


def test_umount_while_store_down_says_what_waits(mounts, workdir):
    """`metafuse umount` with the store down: it says how much is left and
    what the store answered, and interrupting it loses nothing (the daemon
    goes on, and uploads once the store is back)."""
    down = os.path.join(workdir, "store-down")
    env = dict(os.environ, METAFUSE_TEST_STORE_DOWN_FILE=down)
    m = mounts(opts={"writeback_delay": "0.2"}, env=env)
    m.allow_errors(r"failed: Input/output error",
                   r"cannot send the metadata", r"checkpoint failed",
                   r"cannot write the final checkpoint")
    open(down, "w").close()
    data = h.rand_bytes(7, 3 * MIB + 5)
    write_file(m.path("f"), data)
    pid = m.pid
    assert pid
    p = subprocess.Popen([h.BIN, "umount", m.mnt], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=m.env)
    try:
        _, err = p.communicate(timeout=13)
        raise AssertionError(f"umount returned with the store down: {err}")
    except subprocess.TimeoutExpired:
        p.terminate()               # what a user's Ctrl-C does
        _, err = p.communicate()
    assert not h.is_mounted(m.mnt)
    assert "KiB left to upload" in err, err
    assert "last problem:" in err, err
    assert "interrupting this wait loses nothing" in err, err
    assert h.pid_alive(pid), "the daemon gave up while data was left"

    os.unlink(down)
    deadline = time.monotonic() + 60
    while h.pid_alive(pid):
        assert time.monotonic() < deadline, "daemon never finished"
        time.sleep(0.2)
    m.pid = None
    m.wipe_cache()
    del m.env["METAFUSE_TEST_STORE_DOWN_FILE"]
    m.mount()
    assert read_file(m.path("f")) == data
