"""POSIX behaviour of a mounted volume, checked from outside through the
kernel: one test (or a few) per item of the issue's "Filesystem behaviour"
list, plus the C syscall exerciser compared against a local directory."""

import ctypes
import difflib
import errno
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest

import mfhelpers as h
from mfhelpers import MIB, expect_errno, read_file, write_file

# Coarse kernel clocks may lag time.time_ns() by a tick.
CLOCK_SLACK_NS = 50_000_000


# ---- the syscall exerciser -----------------------------------------------

def run_exerciser(path):
    os.mkdir(path)
    r = subprocess.run([h.EXERCISER, path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=600)
    assert r.returncode == 0, f"exerciser failed in {path}: {r.stderr!r}"
    return r.stdout.decode(errors="backslashreplace").splitlines()


def assert_same_transcript(ref, got):
    if ref != got:
        diff = list(difflib.unified_diff(ref, got, "reference", "metafuse",
                                         lineterm="", n=2))
        pytest.fail("syscall transcript differs from the reference:\n" +
                    "\n".join(diff[:120]), pytrace=False)


def test_syscall_exerciser_matches_reference(mnt, reference):
    if not os.access(h.EXERCISER, os.X_OK):
        pytest.fail(f"exerciser missing at {h.EXERCISER}")
    ref = run_exerciser(os.path.join(reference, "ex"))
    got = run_exerciser(mnt.path("ex"))
    assert_same_transcript(ref, got)
    # the resulting trees are identical too, also after a cache wipe
    want = h.snapshot(os.path.join(reference, "ex"))
    assert h.diff_snapshots(want, h.snapshot(mnt.path("ex")),
                            "reference", "mount") == []
    mnt.remount(wipe_cache=True)
    assert h.diff_snapshots(want, h.snapshot(mnt.path("ex")),
                            "reference", "remounted") == []


def test_syscall_exerciser_with_kernel_writeback_cache(mounts, reference):
    """The optional writeback_cache mode (the kernel caches writes) must
    not change any result."""
    if not h.mount_option_supported("writeback_cache"):
        pytest.skip("this metafuse has no writeback_cache option")
    m = mounts(opts={"writeback_cache": True})
    ref = run_exerciser(os.path.join(reference, "ex"))
    got = run_exerciser(m.path("ex"))
    assert_same_transcript(ref, got)
    want = h.snapshot(os.path.join(reference, "ex"))
    m.remount(wipe_cache=True)
    assert h.diff_snapshots(want, h.snapshot(m.path("ex")),
                            "reference", "remounted") == []


def test_syscall_exerciser_small_blocks_no_writeback_delay(mounts,
                                                           reference):
    """Same transcript with 64 KiB blocks (many block boundaries) and
    uploads racing the calls."""
    m = mounts(block_size=64 * 1024, opts={"writeback_delay": "0"})
    ref = run_exerciser(os.path.join(reference, "ex"))
    got = run_exerciser(m.path("ex"))
    assert_same_transcript(ref, got)


# ---- lookup, getattr, setattr -------------------------------------------

def test_lookup_and_getattr(mnt):
    p = mnt.path("f")
    expect_errno(errno.ENOENT, os.stat, p)
    before = time.time_ns()
    write_file(p, b"x" * 1000, 0o640)
    st = os.stat(p)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640 & ~current_umask()
    assert st.st_size == 1000
    assert st.st_nlink == 1
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    assert st.st_blksize > 0
    assert st.st_mtime_ns >= before - CLOCK_SLACK_NS
    assert st.st_mtime_ns <= time.time_ns() + CLOCK_SLACK_NS
    # the same inode on every lookup; distinct files distinct inodes
    assert os.stat(p).st_ino == st.st_ino
    write_file(mnt.path("g"), b"")
    assert os.stat(mnt.path("g")).st_ino != st.st_ino
    root = os.stat(mnt.mnt)
    assert stat.S_ISDIR(root.st_mode)
    assert root.st_nlink >= 2
    expect_errno(errno.ENOTDIR, os.stat, os.path.join(p, "x"))
    expect_errno(errno.ENOENT, os.lstat, mnt.path("nope", "x"))


def current_umask():
    u = os.umask(0)
    os.umask(u)
    return u


def test_chmod(mnt):
    p = mnt.path("f")
    write_file(p, b"abc")
    for mode in (0o000, 0o777, 0o4755, 0o2755, 0o1777, 0o600):
        os.chmod(p, mode)
        assert stat.S_IMODE(os.stat(p).st_mode) == mode
        assert stat.S_ISREG(os.stat(p).st_mode)
    os.mkdir(mnt.path("d"))
    os.chmod(mnt.path("d"), 0o1711)
    assert stat.S_IMODE(os.stat(mnt.path("d")).st_mode) == 0o1711
    assert stat.S_ISDIR(os.stat(mnt.path("d")).st_mode)
    fd = os.open(p, os.O_RDONLY)
    os.fchmod(fd, 0o640)
    os.close(fd)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640


@pytest.mark.root
def test_chown(mnt):
    p = mnt.path("f")
    write_file(p, b"abc")
    os.chown(p, 1234, 5678)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.chown(p, -1, 99)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 99)
    os.chown(p, 4000000000, 4000000001)   # full 32-bit ids
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (4000000000, 4000000001)
    # chown of a setuid/setgid executable clears both bits
    os.chmod(p, 0o6755)
    os.chown(p, 1, 1)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o755
    os.symlink("f", mnt.path("l"))
    os.chown(mnt.path("l"), 7, 8, follow_symlinks=False)
    assert (os.lstat(mnt.path("l")).st_uid,
            os.lstat(mnt.path("l")).st_gid) == (7, 8)
    assert os.stat(p).st_uid == 1


def test_truncate_up_and_down(mnt):
    p = mnt.path("t")
    data = h.rand_bytes(1, 3 * MIB + 777)
    write_file(p, data)
    for size in (3 * MIB + 777, 2 * MIB + 5, MIB, MIB - 1, 4097, 1, 0):
        os.truncate(p, size)
        assert os.stat(p).st_size == size
        assert read_file(p) == data[:size]
        # grow again: the cut-off bytes must not come back
        os.truncate(p, size + 2 * MIB)
        got = read_file(p)
        assert len(got) == size + 2 * MIB
        assert got[:size] == data[:size]
        assert got[size:] == bytes(2 * MIB), f"stale data after {size}"
        os.truncate(p, size)
    fd = os.open(p, os.O_RDWR)
    os.ftruncate(fd, 5 * MIB)
    assert os.fstat(fd).st_size == 5 * MIB
    os.pwrite(fd, b"end", 5 * MIB - 3)
    os.ftruncate(fd, 10)
    os.close(fd)
    assert read_file(p) == bytes(10)
    # survives a remount with an empty cache
    write_file(p, data)
    os.truncate(p, MIB + 3)
    mnt.remount(wipe_cache=True)
    assert read_file(p) == data[:MIB + 3]


def test_utimens(mnt):
    p = mnt.path("f")
    write_file(p, b"x")
    os.utime(p, ns=(1_000_000_000_123_456_789, 1_100_000_000_987_654_321))
    st = os.stat(p)
    assert st.st_atime_ns == 1_000_000_000_123_456_789
    assert st.st_mtime_ns == 1_100_000_000_987_654_321
    # before 1970 and far in the future
    os.utime(p, ns=(-1_000_000_001, 4_000_000_000_000_000_001))
    st = os.stat(p)
    assert st.st_atime_ns == -1_000_000_001
    assert st.st_mtime_ns == 4_000_000_000_000_000_001
    # UTIME_NOW for both (utime with no times)
    before = time.time_ns()
    os.utime(p)
    st = os.stat(p)
    for t in (st.st_atime_ns, st.st_mtime_ns):
        assert before - CLOCK_SLACK_NS <= t <= time.time_ns() + \
            CLOCK_SLACK_NS
    # UTIME_OMIT leaves one untouched, UTIME_NOW sets the other
    os.utime(p, ns=(5_000_000_007, 6_000_000_008))
    h.utimensat(p, (0, h.UTIME_OMIT), (7, 9))
    st = os.stat(p)
    assert st.st_atime_ns == 5_000_000_007
    assert st.st_mtime_ns == 7_000_000_009
    before = time.time_ns()
    h.utimensat(p, (0, h.UTIME_NOW), (0, h.UTIME_OMIT))
    st = os.stat(p)
    assert st.st_atime_ns >= before - CLOCK_SLACK_NS
    assert st.st_mtime_ns == 7_000_000_009
    h.utimensat(p, (11, h.UTIME_OMIT), (12, h.UTIME_OMIT))
    st = os.stat(p)
    assert st.st_mtime_ns == 7_000_000_009
    # symlink times, without following
    os.symlink("f", mnt.path("l"))
    h.utimensat(mnt.path("l"), (1, 2), (3, 4), follow=False)
    assert os.lstat(mnt.path("l")).st_mtime_ns == 3_000_000_004
    assert os.stat(p).st_mtime_ns == 7_000_000_009
    # invalid nanoseconds
    expect_errno(errno.EINVAL, h.utimensat, p, (1, 1_000_000_000), (1, 0))


# ---- special files, directories -----------------------------------------

@pytest.mark.root
def test_mknod_special_files(mnt):
    os.mknod(mnt.path("fifo"), stat.S_IFIFO | 0o640)
    os.mknod(mnt.path("sock"), stat.S_IFSOCK | 0o600)
    os.mknod(mnt.path("chr"), stat.S_IFCHR | 0o620, os.makedev(1, 3))
    os.mknod(mnt.path("blk"), stat.S_IFBLK | 0o660, os.makedev(8, 17))
    os.mknod(mnt.path("reg"), stat.S_IFREG | 0o604)
    expect_errno(errno.EEXIST, os.mknod, mnt.path("fifo"),
                 stat.S_IFIFO | 0o600)

    def check():
        st = os.lstat(mnt.path("fifo"))
        assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
        assert stat.S_ISSOCK(os.lstat(mnt.path("sock")).st_mode)
        st = os.lstat(mnt.path("chr"))
        assert stat.S_ISCHR(st.st_mode)
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
        st = os.lstat(mnt.path("blk"))
        assert stat.S_ISBLK(st.st_mode)
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (8, 17)
        st = os.lstat(mnt.path("reg"))
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0

    check()
    # the fifo works as a fifo (the kernel's, not the filesystem's)
    r = os.open(mnt.path("fifo"), os.O_RDONLY | os.O_NONBLOCK)
    w = os.open(mnt.path("fifo"), os.O_WRONLY | os.O_NONBLOCK)
    os.write(w, b"ping")
    assert os.read(r, 10) == b"ping"
    os.close(w)
    os.close(r)
    # a unix socket can bind at a new path in the mount
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(mnt.path("bound.sock"))
        assert stat.S_ISSOCK(os.lstat(mnt.path("bound.sock")).st_mode)
    finally:
        s.close()
    mnt.remount(wipe_cache=True)
    check()


def test_mkdir_rmdir(mnt):
    d = mnt.path("d")
    os.mkdir(d, 0o750)
    st = os.stat(d)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o750 & ~current_umask()
    assert st.st_nlink == 2
    root_links = os.stat(mnt.mnt).st_nlink
    expect_errno(errno.EEXIST, os.mkdir, d)
    expect_errno(errno.ENOENT, os.mkdir, mnt.path("x", "y"))
    os.mkdir(os.path.join(d, "sub"))
    assert os.stat(d).st_nlink == 3
    write_file(os.path.join(d, "file"), b"1")
    assert os.stat(d).st_nlink == 3
    expect_errno(errno.ENOTEMPTY, os.rmdir, d)
    expect_errno(errno.ENOTDIR, os.rmdir, os.path.join(d, "file"))
    expect_errno(errno.ENOTDIR, os.mkdir, os.path.join(d, "file", "x"))
    expect_errno(errno.EISDIR, os.unlink, os.path.join(d, "sub"))
    expect_errno(errno.ENOENT, os.rmdir, mnt.path("missing"))
    expect_errno(errno.EINVAL, os.rmdir, os.path.join(d, "sub", "."))
    os.rmdir(os.path.join(d, "sub"))
    assert os.stat(d).st_nlink == 2
    expect_errno(errno.ENOTEMPTY, os.rmdir, d)
    os.unlink(os.path.join(d, "file"))
    os.rmdir(d)
    expect_errno(errno.ENOENT, os.stat, d)
    assert os.stat(mnt.mnt).st_nlink == root_links - 1
    # a directory removed while it is the cwd of a process
    os.mkdir(d)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.rmdir(d)
    assert os.fstat(fd).st_nlink in (0, 1)  # Linux reports 0
    expect_errno(errno.ENOENT, os.open, "x", os.O_CREAT | os.O_WRONLY,
                 dir_fd=fd)
    os.close(fd)


def test_unlink_open_file(mnt):
    p = mnt.path("u")
    data = h.rand_bytes(2, 3 * MIB)
    write_file(p, data)
    mnt.remount()    # make it come from the cache/store, not only memory
    fd = os.open(p, os.O_RDWR)
    fd2 = os.open(p, os.O_RDONLY)
    os.unlink(p)
    expect_errno(errno.ENOENT, os.stat, p)
    assert os.listdir(mnt.mnt) == []
    assert os.fstat(fd).st_nlink == 0
    assert os.pread(fd, 100, MIB) == data[MIB:MIB + 100]
    os.pwrite(fd, b"new", 2 * MIB)
    os.pwrite(fd, b"tail", 5 * MIB)
    assert os.fstat(fd2).st_size == 5 * MIB + 4
    os.close(fd)
    # readable through the other descriptor until the last close
    got = b""
    while True:
        b = os.pread(fd2, MIB, len(got))
        if not b:
            break
        got += b
    want = bytearray(data) + bytes(2 * MIB + 4)
    want[2 * MIB:2 * MIB + 3] = b"new"
    want[5 * MIB:5 * MIB + 4] = b"tail"
    assert got == bytes(want)
    # a new file under the same name is a different file
    write_file(p, b"other")
    assert os.pread(fd2, 3, 2 * MIB) == b"new"
    os.close(fd2)
    assert read_file(p) == b"other"
    # the unlinked file's data does not come back after a remount
    mnt.remount(wipe_cache=True)
    assert os.listdir(mnt.mnt) == ["u"]
    assert read_file(p) == b"other"


def test_symlink_readlink(mnt):
    targets = {
        "rel": "some/relative/target",
        "abs": "/etc/hostname",
        "dangling": "does-not-exist",
        "dot": ".",
        "long": "x/" * 1000 + "end",
        "utf8": "ziel-\u00e4\u00f6\u00fc-\u2603",
    }
    for name, t in targets.items():
        os.symlink(t, mnt.path(name))
    for name, t in targets.items():
        assert os.readlink(mnt.path(name)) == t
        st = os.lstat(mnt.path(name))
        assert stat.S_ISLNK(st.st_mode)
        assert st.st_size == len(os.fsencode(t))
    expect_errno(errno.EEXIST, os.symlink, "x", mnt.path("rel"))
    write_file(mnt.path("file"), b"content")
    os.symlink("file", mnt.path("tofile"))
    assert read_file(mnt.path("tofile")) == b"content"
    expect_errno(errno.EINVAL, os.readlink, mnt.path("file"))
    expect_errno(errno.ENOENT, os.stat, mnt.path("dangling"))
    os.mkdir(mnt.path("dir"))
    os.symlink("dir", mnt.path("todir"))
    write_file(mnt.path("todir", "inner"), b"in")
    assert read_file(mnt.path("dir", "inner")) == b"in"
    os.symlink("loop", mnt.path("loop"))
    expect_errno(errno.ELOOP, os.stat, mnt.path("loop"))
    # a target of PATH_MAX - 1 bytes is fine, PATH_MAX is not
    os.symlink("a" * 4095, mnt.path("max"))
    assert os.readlink(mnt.path("max")) == "a" * 4095
    expect_errno(errno.ENAMETOOLONG, os.symlink, "a" * 4096,
                 mnt.path("toolong"))
    mnt.remount(wipe_cache=True)
    for name, t in targets.items():
        assert os.readlink(mnt.path(name)) == t


def test_hard_links(mnt):
    a = mnt.path("a")
    write_file(a, b"shared")
    os.mkdir(mnt.path("d"))
    os.link(a, mnt.path("b"))
    os.link(a, mnt.path("d", "c"))
    for p in ("a", "b", "d/c"):
        st = os.stat(mnt.path(p))
        assert st.st_nlink == 3
        assert st.st_ino == os.stat(a).st_ino
    # a write through one name shows through the others
    with open(mnt.path("d", "c"), "r+b") as f:
        f.write(b"SH")
    assert read_file(mnt.path("b")) == b"SHared"
    os.chmod(mnt.path("b"), 0o600)
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o600
    expect_errno(errno.EEXIST, os.link, a, mnt.path("b"))
    expect_errno(errno.EPERM, os.link, mnt.path("d"), mnt.path("dlink"))
    expect_errno(errno.ENOENT, os.link, mnt.path("zz"), mnt.path("zz2"))
    os.unlink(a)
    assert os.stat(mnt.path("b")).st_nlink == 2
    os.rename(mnt.path("b"), mnt.path("d", "b"))
    assert os.stat(mnt.path("d", "c")).st_nlink == 2
    # renaming onto another link of the same inode does nothing
    os.rename(mnt.path("d", "b"), mnt.path("d", "c"))
    assert sorted(os.listdir(mnt.path("d"))) == ["b", "c"]
    assert os.stat(mnt.path("d", "c")).st_nlink == 2
    # many links
    for i in range(100):
        os.link(mnt.path("d", "c"), mnt.path(f"l{i}"))
    assert os.stat(mnt.path("d", "c")).st_nlink == 102
    mnt.remount(wipe_cache=True)
    assert os.stat(mnt.path("l50")).st_nlink == 102
    assert os.stat(mnt.path("l50")).st_ino == os.stat(
        mnt.path("d", "b")).st_ino
    assert read_file(mnt.path("l99")) == b"SHared"
    for i in range(100):
        os.unlink(mnt.path(f"l{i}"))
    assert os.stat(mnt.path("d", "b")).st_nlink == 2


# ---- rename ---------------------------------------------------------------

def test_rename_matrix(mnt):
    p = mnt.path
    write_file(p("f1"), b"one")
    write_file(p("f2"), b"two")
    os.makedirs(p("d1", "sub", "deep"))
    write_file(p("d1", "sub", "deep", "x"), b"x")
    os.mkdir(p("empty"))
    os.mkdir(p("full"))
    write_file(p("full", "y"), b"y")

    # file over file: the target is replaced atomically
    ino1 = os.stat(p("f1")).st_ino
    os.rename(p("f1"), p("f2"))
    assert read_file(p("f2")) == b"one"
    assert os.stat(p("f2")).st_ino == ino1
    expect_errno(errno.ENOENT, os.stat, p("f1"))
    # POSIX errors
    expect_errno(errno.EISDIR, os.rename, p("f2"), p("empty"))
    expect_errno(errno.ENOTDIR, os.rename, p("empty"), p("f2"))
    expect_errno(errno.EINVAL, os.rename, p("d1"), p("d1", "sub", "new"))
    expect_errno(errno.EINVAL, os.rename, p("d1"), p("d1", "new"))
    expect_errno(errno.ENOTEMPTY, os.rename, p("d1"), p("full"))
    expect_errno(errno.ENOENT, os.rename, p("nothing"), p("x"))
    expect_errno(errno.ENOENT, os.rename, p("f2"), p("nodir", "x"))
    expect_errno(errno.ENOTDIR, os.rename, p("f2"), p("f2", "x"))
    # a directory over an empty directory
    os.rename(p("d1"), p("empty"))
    assert read_file(p("empty", "sub", "deep", "x")) == b"x"
    expect_errno(errno.ENOENT, os.stat, p("d1"))
    # a directory to another parent: link counts of both parents follow
    root_links = os.stat(mnt.mnt).st_nlink
    os.rename(p("empty", "sub"), p("full", "sub"))
    assert os.stat(p("empty")).st_nlink == 2
    assert os.stat(p("full")).st_nlink == 3
    assert os.stat(mnt.mnt).st_nlink == root_links
    assert os.stat(p("full", "sub", "..")).st_ino == os.stat(
        p("full")).st_ino
    # rename to itself
    os.rename(p("full"), p("full"))
    # a file into a directory and back
    os.rename(p("f2"), p("full", "f2"))
    os.rename(p("full", "f2"), p("f3"))
    assert read_file(p("f3")) == b"one"
    # moving a directory tree keeps every file
    for i in range(50):
        write_file(p("full", "sub", f"n{i}"), str(i).encode())
    os.rename(p("full"), p("empty", "moved"))
    for i in range(50):
        assert read_file(p("empty", "moved", "sub", f"n{i}")) == \
            str(i).encode()
    assert sorted(os.listdir(mnt.mnt)) == ["empty", "f3"]
    mnt.remount(wipe_cache=True)
    assert read_file(p("empty", "moved", "sub", "deep", "x")) == b"x"
    assert read_file(p("empty", "moved", "sub", "n49")) == b"49"


def test_renameat2_noreplace_exchange(mnt):
    p = mnt.path
    write_file(p("a"), b"A")
    write_file(p("b"), b"B")
    os.makedirs(p("d", "inner"))
    write_file(p("d", "f"), b"D")
    os.mkdir(p("e"))

    expect_errno(errno.EEXIST, h.renameat2, p("a"), p("b"),
                 h.RENAME_NOREPLACE)
    assert read_file(p("b")) == b"B"
    h.renameat2(p("a"), p("c"), h.RENAME_NOREPLACE)
    assert read_file(p("c")) == b"A"
    expect_errno(errno.ENOENT, os.stat, p("a"))

    h.renameat2(p("b"), p("c"), h.RENAME_EXCHANGE)
    assert read_file(p("b")) == b"A"
    assert read_file(p("c")) == b"B"
    # file <-> directory
    h.renameat2(p("c"), p("d"), h.RENAME_EXCHANGE)
    assert read_file(p("c", "f")) == b"D"
    assert read_file(p("d")) == b"B"
    assert os.stat(p("c", "inner", "..")).st_ino == os.stat(p("c")).st_ino
    # directory <-> directory in different parents
    h.renameat2(p("c", "inner"), p("e"), h.RENAME_EXCHANGE)
    assert os.path.isdir(p("e")) and os.path.isdir(p("c", "inner"))
    assert os.stat(p("e", "..")).st_ino == os.stat(mnt.mnt).st_ino
    assert os.stat(p("c", "inner", "..")).st_ino == os.stat(p("c")).st_ino
    expect_errno(errno.ENOENT, h.renameat2, p("b"), p("zz"),
                 h.RENAME_EXCHANGE)
    expect_errno(errno.EINVAL, h.renameat2, p("b"), p("c"),
                 h.RENAME_EXCHANGE | h.RENAME_NOREPLACE)
    expect_errno(errno.EINVAL, h.renameat2, p("c"), p("c", "inner"),
                 h.RENAME_EXCHANGE)
    mnt.remount(wipe_cache=True)
    assert read_file(p("b")) == b"A"
    assert read_file(p("d")) == b"B"
    assert read_file(p("c", "f")) == b"D"


# ---- open flags, reads and writes ------------------------------------------

def test_open_flags(mnt):
    p = mnt.path("f")
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"0123456789")
    os.close(fd)
    expect_errno(errno.EEXIST, os.open, p, os.O_CREAT | os.O_EXCL |
                 os.O_WRONLY)
    os.symlink("f", mnt.path("l"))
    expect_errno(errno.EEXIST, os.open, mnt.path("l"), os.O_CREAT |
                 os.O_EXCL | os.O_WRONLY)
    expect_errno(errno.ELOOP, os.open, mnt.path("l"), os.O_RDONLY |
                 os.O_NOFOLLOW)
    # O_APPEND writes at the end whatever the offset
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"ab")
    os.pwrite(fd, b"cd", 0)   # Linux: pwrite with O_APPEND appends
    os.close(fd)
    assert read_file(p) == b"0123456789abcd"
    # two appenders interleave without losing anything
    fa = os.open(p, os.O_WRONLY | os.O_APPEND)
    fb = os.open(p, os.O_WRONLY | os.O_APPEND)
    for i in range(50):
        os.write(fa, b"A" * 100)
        os.write(fb, b"B" * 100)
    os.close(fa)
    os.close(fb)
    assert os.stat(p).st_size == 14 + 10000
    # O_TRUNC empties, also through a second descriptor's view
    fr = os.open(p, os.O_RDONLY)
    os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
    assert os.stat(p).st_size == 0
    assert os.read(fr, 10) == b""
    os.close(fr)
    write_file(p, b"data")
    expect_errno(errno.EISDIR, os.open, mnt.mnt, os.O_WRONLY)
    expect_errno(errno.ENOTDIR, os.open, p, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(p, os.O_RDONLY)
    expect_errno(errno.EBADF, os.write, fd, b"x")
    os.close(fd)
    fd = os.open(p, os.O_WRONLY)
    expect_errno(errno.EBADF, os.read, fd, 1)
    os.close(fd)
    # O_CREAT honours the umask
    old = os.umask(0o027)
    try:
        os.close(os.open(mnt.path("masked"), os.O_CREAT | os.O_WRONLY,
                         0o777))
        os.mkdir(mnt.path("maskdir"), 0o777)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(mnt.path("masked")).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(mnt.path("maskdir")).st_mode) == 0o750


def test_random_offset_reads_and_writes(mnt):
    rng = random.Random(1234)
    p = mnt.path("r")
    model = bytearray()
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    for i in range(400):
        off = rng.choice([rng.randrange(0, 6 * MIB),
                          rng.randrange(0, 4) * MIB - rng.randrange(0, 64),
                          len(model)])
        off = max(off, 0)
        size = rng.choice([1, 7, 4096, 65536, rng.randrange(1, 3 * MIB)])
        data = h.rand_bytes(i, size)
        assert os.pwrite(fd, data, off) == size
        if off > len(model):
            model += bytes(off - len(model))
        model[off:off + size] = data
        if i % 10 == 0:
            roff = rng.randrange(0, len(model) + 10)
            rlen = rng.randrange(1, 2 * MIB)
            assert os.pread(fd, rlen, roff) == bytes(model[roff:roff + rlen])
        if i % 50 == 0:
            cut = rng.randrange(0, len(model) + 1)
            os.ftruncate(fd, cut)
            del model[cut:]
    os.close(fd)
    assert os.stat(p).st_size == len(model)
    assert read_file(p) == bytes(model)
    mnt.remount()
    assert read_file(p) == bytes(model)
    mnt.remount(wipe_cache=True)
    # random reads on a cold cache
    fd = os.open(p, os.O_RDONLY)
    for _ in range(100):
        roff = rng.randrange(0, len(model))
        rlen = rng.randrange(1, 300000)
        assert os.pread(fd, rlen, roff) == bytes(model[roff:roff + rlen])
    os.close(fd)
    assert read_file(p) == bytes(model)


def test_sparse_files(mnt):
    bs = h.DEFAULT_BLOCK_SIZE
    mnt.umount()
    before = set(mnt.data_objects())
    mnt.mount()
    p = mnt.path("s")
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    os.pwrite(fd, b"head", 0)
    os.pwrite(fd, b"tail", 1024 * MIB)
    os.close(fd)
    # a file that is only a hole, and one of explicit zeros
    with open(mnt.path("hole"), "wb") as f:
        f.truncate(64 * MIB)
    write_file(mnt.path("zeros"), bytes(4 * bs))
    st = os.stat(p)
    assert st.st_size == 1024 * MIB + 4
    assert st.st_blocks * 512 <= 8 * bs, f"st_blocks={st.st_blocks}"
    assert os.stat(mnt.path("hole")).st_blocks * 512 <= bs
    with open(p, "rb") as f:
        assert f.read(4) == b"head"
        f.seek(512 * MIB)
        assert f.read(MIB) == bytes(MIB)
        f.seek(1024 * MIB - 10)
        assert f.read() == bytes(10) + b"tail"
    with open(mnt.path("hole"), "rb") as f:
        f.seek(63 * MIB)
        assert f.read() == bytes(MIB)
    mnt.umount()
    new = set(mnt.data_objects()) - before
    # "head" and "tail" are two short blocks; holes and zeros are not stored
    assert len(new) <= 2, f"{len(new)} objects for two written blocks"
    assert mnt.store_bytes() < 4 * MIB
    mnt.mount()
    with open(p, "rb") as f:
        assert f.read(4) == b"head"
        f.seek(1024 * MIB)
        assert f.read() == b"tail"
    assert read_file(mnt.path("zeros")) == bytes(4 * bs)


def test_fsync_fdatasync(mounts):
    # uploads would otherwise wait an hour: fsync must push them now
    m = mounts(opts={"writeback_delay": "3600"})
    before = set(m.data_objects())
    p = m.path("f")
    data = h.rand_bytes(5, 3 * h.DEFAULT_BLOCK_SIZE + 1)   # 4 blocks
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    new = set(m.data_objects()) - before
    assert len(new) >= 4, f"after fsync only {len(new)} new objects"
    after_fsync = set(m.data_objects())
    os.pwrite(fd, b"changed", 100)
    os.fdatasync(fd)
    assert set(m.data_objects()) - after_fsync, \
        "fdatasync uploaded nothing for a changed block"
    os.close(fd)
    # fsync of a directory and of a read-only descriptor work
    dfd = os.open(m.mnt, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    fd = os.open(p, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    m.remount(wipe_cache=True)
    want = bytearray(data)
    want[100:107] = b"changed"
    assert read_file(p) == bytes(want)


# ---- readdir --------------------------------------------------------------

@pytest.mark.slow      # 20 s with the release build, 100 s under ASan
def test_readdir_100k_entries(mnt):
    d = mnt.path("big")
    os.mkdir(d)
    n = 100_000
    names = [f"entry-{i:06d}-{'x' * (i % 40)}" for i in range(n)]
    for name in names:
        os.mknod(os.path.join(d, name), stat.S_IFREG | 0o644)
    got = os.listdir(d)
    assert len(got) == n
    assert sorted(got) == sorted(names)
    # readdirplus: types and stats come with the entries
    count = 0
    with os.scandir(d) as it:
        for e in it:
            assert e.is_file(follow_symlinks=False)
            count += 1
    assert count == n
    assert os.stat(os.path.join(d, names[77777])).st_size == 0
    expect_errno(errno.ENOTEMPTY, os.rmdir, d)
    mnt.remount(wipe_cache=True)
    got = os.listdir(d)
    assert len(got) == n and set(got) == set(names)


libc = h.libc
libc.getdents64.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.getdents64.restype = ctypes.c_ssize_t


def getdents_chunks(fd, bufsize=1024):
    """Yield lists of names, one list per getdents64() call."""
    buf = ctypes.create_string_buffer(bufsize)
    while True:
        n = libc.getdents64(fd, buf, bufsize)
        if n < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        if n == 0:
            return
        raw = buf.raw[:n]
        pos = 0
        names = []
        while pos < n:
            reclen = int.from_bytes(raw[pos + 16:pos + 18], "little")
            name = raw[pos + 19:pos + reclen].split(b"\0", 1)[0]
            names.append(name.decode())
            pos += reclen
        yield names


def test_readdir_stable_while_deleting(mnt):
    d = mnt.path("d")
    os.mkdir(d)
    n = 3000
    for i in range(n):
        os.mknod(os.path.join(d, f"e{i:05d}"))
    rng = random.Random(7)
    deleted = set()
    seen = {}
    added = 0
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    for chunk in getdents_chunks(fd, 1024):
        for name in chunk:
            seen[name] = seen.get(name, 0) + 1
        # delete some entries already seen and some not yet seen
        for _ in range(6):
            k = rng.randrange(n)
            name = f"e{k:05d}"
            if name not in deleted:
                os.unlink(os.path.join(d, name))
                deleted.add(name)
        # and add new ones (may or may not be returned; a bounded number,
        # or a directory that appends at the end would never be done)
        if added < 100:
            os.mknod(os.path.join(d, f"new{added}"))
            added += 1
    os.close(fd)
    dups = {k: v for k, v in seen.items() if v > 1}
    assert not dups, f"entries returned twice: {sorted(dups)[:10]}"
    missing = [f"e{i:05d}" for i in range(n)
               if f"e{i:05d}" not in deleted and f"e{i:05d}" not in seen]
    assert not missing, f"{len(missing)} entries never returned: " \
        f"{missing[:10]}"
    assert "." in seen and ".." in seen
    # seekdir/telldir: offsets resume where they were
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    it = getdents_chunks(fd, 512)
    first = next(it)
    pos = os.lseek(fd, 0, os.SEEK_CUR)
    second = next(it)
    os.lseek(fd, pos, os.SEEK_SET)
    assert next(getdents_chunks(fd, 512)) == second
    os.lseek(fd, 0, os.SEEK_SET)
    assert next(getdents_chunks(fd, 512)) == first
    os.close(fd)


def test_statfs(mnt):
    sv = os.statvfs(mnt.mnt)
    assert sv.f_bsize > 0
    assert sv.f_frsize > 0
    assert sv.f_namemax == 255
    assert sv.f_blocks > 0
    assert 0 <= sv.f_bavail <= sv.f_bfree <= sv.f_blocks
    assert sv.f_files >= sv.f_ffree
    write_file(mnt.path("f"), b"x" * MIB)
    sv2 = os.statvfs(mnt.path("f"))
    assert sv2.f_namemax == 255
    assert sv2.f_bsize == sv.f_bsize


# ---- xattrs ---------------------------------------------------------------

def test_xattrs(mnt):
    p = mnt.path("f")
    write_file(p, b"x")
    assert [n for n in os.listxattr(p) if n.startswith("user.")] == []
    expect_errno(errno.ENODATA, os.getxattr, p, "user.none")
    os.setxattr(p, "user.a", b"alpha")
    os.setxattr(p, "user.b", b"")
    os.setxattr(p, "user.bin", bytes(range(256)))
    assert os.getxattr(p, "user.a") == b"alpha"
    assert os.getxattr(p, "user.b") == b""
    assert os.getxattr(p, "user.bin") == bytes(range(256))
    expect_errno(errno.EEXIST, os.setxattr, p, "user.a", b"x",
                 os.XATTR_CREATE)
    expect_errno(errno.ENODATA, os.setxattr, p, "user.c", b"x",
                 os.XATTR_REPLACE)
    os.setxattr(p, "user.a", b"A2", os.XATTR_REPLACE)
    os.setxattr(p, "user.c", b"C", os.XATTR_CREATE)
    assert os.getxattr(p, "user.a") == b"A2"
    # ERANGE with a buffer too small; size query with a zero buffer
    assert h.getxattr_sized(p, "user.a", 0)[0] == 2
    expect_errno(errno.ERANGE, h.getxattr_sized, p, "user.a", 1)
    assert h.getxattr_sized(p, "user.a", 2) == (2, b"A2")
    need = h.listxattr_sized(p, 0)
    assert need >= len(b"user.a\0user.b\0user.bin\0user.c\0")
    expect_errno(errno.ERANGE, h.listxattr_sized, p, 3)
    assert sorted(n for n in os.listxattr(p) if n.startswith("user.")) == \
        ["user.a", "user.b", "user.bin", "user.c"]
    os.removexattr(p, "user.b")
    expect_errno(errno.ENODATA, os.removexattr, p, "user.b")
    expect_errno(errno.ENODATA, os.getxattr, p, "user.b")
    # big values and many names
    expect_errno(errno.ERANGE, os.setxattr, p, "user." + "x" * 251, b"v")
    os.setxattr(p, "user." + "x" * 250, b"255-byte name")
    big = h.rand_bytes(9, 16000)
    os.setxattr(p, "user.big", big)
    assert os.getxattr(p, "user.big") == big
    for i in range(50):
        os.setxattr(p, f"user.n{i:02d}", str(i).encode())
    # directories carry xattrs; symlinks refuse user.* (kernel rule)
    os.mkdir(mnt.path("d"))
    os.setxattr(mnt.path("d"), "user.dir", b"D")
    os.symlink("f", mnt.path("l"))
    expect_errno(errno.EPERM, os.setxattr, mnt.path("l"), "user.x", b"1",
                 follow_symlinks=False)
    assert os.getxattr(mnt.path("l"), "user.a") == b"A2"   # follows
    # xattrs belong to the inode: hard links share, rename keeps
    os.link(p, mnt.path("f2"))
    os.rename(p, mnt.path("f3"))
    assert os.getxattr(mnt.path("f2"), "user.c") == b"C"
    mnt.remount(wipe_cache=True)
    q = mnt.path("f3")
    assert os.getxattr(q, "user.a") == b"A2"
    assert os.getxattr(q, "user.bin") == bytes(range(256))
    assert os.getxattr(q, "user.big") == big
    assert os.getxattr(q, "user.n49") == b"49"
    assert os.getxattr(mnt.path("d"), "user.dir") == b"D"
    expect_errno(errno.ENODATA, os.getxattr, q, "user.b")
    # unlinking the last name drops the xattrs with the inode
    os.unlink(mnt.path("f2"))
    os.unlink(q)
    write_file(q, b"new")
    assert [n for n in os.listxattr(q) if n.startswith("user.")] == []


@pytest.mark.root
def test_xattrs_trusted_and_security_namespaces(mnt):
    p = mnt.path("f")
    write_file(p, b"x")
    os.setxattr(p, "trusted.t", b"T")
    os.setxattr(p, "security.s", b"S")
    assert os.getxattr(p, "trusted.t") == b"T"
    assert os.getxattr(p, "security.s") == b"S"
    mnt.remount(wipe_cache=True)
    assert os.getxattr(p, "trusted.t") == b"T"



@pytest.mark.parametrize("name", ["security.selinux",
                                  "system.posix_acl_access"])
def test_rare_xattr_answered_then_set(mnt, name):
    """`ls -l` asks for these of every file; metafuse says ENODATA
    without its metadata while no file has one, and must stop as soon as
    one does, and across a remount."""
    p, q = mnt.path("f"), mnt.path("g")
    write_file(p, b"x")
    write_file(q, b"y")
    expect_errno(errno.ENODATA, os.getxattr, p, name)
    if name == "system.posix_acl_access":
        # an ACL that says more than a mode (one equivalent to a mode
        # sets the mode and is not kept: test_acl_sets_the_mode)
        import struct
        value = struct.pack("<I", 2) + b"".join(
            struct.pack("<HHI", tag, perm, uid)
            for tag, perm, uid in ((0x01, 6, 0xFFFFFFFF), (0x02, 4, 65534),
                                   (0x04, 4, 0xFFFFFFFF),
                                   (0x10, 4, 0xFFFFFFFF),
                                   (0x20, 4, 0xFFFFFFFF)))
    else:
        value = b"system_u:object_r:etc_t:s0\0"
    try:
        os.setxattr(p, name, value)
    except OSError as e:
        pytest.skip(f"cannot set {name} here: {e}")
    assert os.getxattr(p, name) == value
    expect_errno(errno.ENODATA, os.getxattr, q, name)
    mnt.remount()
    assert os.getxattr(p, name) == value
    expect_errno(errno.ENODATA, os.getxattr, q, name)


def _caps_value():
    """A valid security.capability (VFS_CAP_REVISION_2, effective,
    CAP_NET_RAW permitted)."""
    import struct
    return struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)


@pytest.mark.root
def test_file_capability_is_dropped_by_a_write(mnt):
    """The kernel asks for security.capability before every write and
    removes it when there is one; metafuse answers the question without
    its metadata while no file has one, and must stop as soon as one
    does, and across a remount."""
    p = mnt.path("cap")
    write_file(p, b"x" * 100)
    expect_errno(errno.ENODATA, os.getxattr, p, "security.capability")
    caps = _caps_value()
    try:
        os.setxattr(p, "security.capability", caps)
    except OSError as e:
        pytest.skip(f"cannot set a file capability here: {e}")
    assert os.getxattr(p, "security.capability") == caps
    with open(p, "r+b") as f:
        f.write(b"y")
    expect_errno(errno.ENODATA, os.getxattr, p, "security.capability")
    os.setxattr(p, "security.capability", caps)
    mnt.remount()
    assert os.getxattr(p, "security.capability") == caps
    with open(p, "r+b") as f:
        f.write(b"z")
    expect_errno(errno.ENODATA, os.getxattr, p, "security.capability")
    assert read_file(p) == b"z" + b"x" * 99

# ---- fallocate ------------------------------------------------------------

def test_fallocate(mnt):
    p = mnt.path("f")
    data = bytearray(h.rand_bytes(3, 3 * MIB))
    write_file(p, data)
    fd = os.open(p, os.O_RDWR)
    # mode 0 inside the file changes nothing
    h.fallocate(fd, 0, 1000, 2 * MIB)
    assert os.fstat(fd).st_size == 3 * MIB
    # mode 0 past the end extends the file with zeros
    h.fallocate(fd, 0, 3 * MIB, 2 * MIB + 10)
    assert os.fstat(fd).st_size == 5 * MIB + 10
    data += bytes(2 * MIB + 10)
    # punch a hole across a block boundary, then whole blocks
    h.fallocate(fd, h.FALLOC_FL_PUNCH_HOLE | h.FALLOC_FL_KEEP_SIZE,
                MIB - 100, 200)
    data[MIB - 100:MIB + 100] = bytes(200)
    h.fallocate(fd, h.FALLOC_FL_PUNCH_HOLE | h.FALLOC_FL_KEEP_SIZE,
                MIB + 100, MIB + MIB // 2)
    data[MIB + 100:2 * MIB + MIB // 2 + 100] = bytes(MIB + MIB // 2)
    # past the end: size is kept
    h.fallocate(fd, h.FALLOC_FL_PUNCH_HOLE | h.FALLOC_FL_KEEP_SIZE,
                4 * MIB, 10 * MIB)
    data[4 * MIB:] = bytes(len(data) - 4 * MIB)
    assert os.fstat(fd).st_size == 5 * MIB + 10
    expect_errno(errno.EOPNOTSUPP, h.fallocate, fd,
                 h.FALLOC_FL_PUNCH_HOLE, 0, 10)
    expect_errno(errno.EINVAL, h.fallocate, fd, 0, 0, 0)
    os.close(fd)
    assert read_file(p) == bytes(data)
    mnt.remount(wipe_cache=True)
    assert read_file(p) == bytes(data)
    # fallocate on an empty new file
    fd = os.open(mnt.path("g"), os.O_CREAT | os.O_RDWR, 0o644)
    h.fallocate(fd, 0, 0, 7 * MIB)
    assert os.fstat(fd).st_size == 7 * MIB
    os.close(fd)
    assert read_file(mnt.path("g")) == bytes(7 * MIB)


def test_punch_hole_frees_whole_blocks(mnt):
    bs = h.DEFAULT_BLOCK_SIZE
    p = mnt.path("f")
    write_file(p, h.rand_bytes(4, 8 * bs))
    mnt.umount()
    before = len(mnt.data_objects())
    mnt.mount()
    fd = os.open(p, os.O_RDWR)
    h.fallocate(fd, h.FALLOC_FL_PUNCH_HOLE | h.FALLOC_FL_KEEP_SIZE,
                2 * bs, 4 * bs)
    os.close(fd)
    assert os.stat(p).st_blocks * 512 <= 5 * bs
    mnt.umount()
    after = len(mnt.data_objects())
    assert after <= before - 4, f"objects {before} -> {after}"
    mnt.mount()
    assert read_file(p)[2 * bs:6 * bs] == bytes(4 * bs)


# ---- locks ----------------------------------------------------------------

def in_child(func):
    """Run func() in a forked child; return what it returned (JSON)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            result = {"ok": func()}
        except BaseException as e:  # report everything to the parent
            result = {"exc": f"{type(e).__name__}: {e}"}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result = json.loads(b"".join(chunks))
    if "exc" in result:
        raise AssertionError(f"child failed: {result['exc']}")
    return result["ok"]


def errno_of(func, *args, **kw):
    try:
        func(*args, **kw)
        return 0
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)


def test_flock_between_processes(mnt):
    p = mnt.path("lock")
    write_file(p, b"x")
    fd = os.open(p, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)

    def try_lock(kind):
        def f():
            cfd = os.open(p, os.O_RDWR)
            return errno_of(fcntl.flock, cfd, kind | fcntl.LOCK_NB)
        return f

    assert in_child(try_lock(fcntl.LOCK_EX)) == "EAGAIN"
    assert in_child(try_lock(fcntl.LOCK_SH)) == "EAGAIN"
    fcntl.flock(fd, fcntl.LOCK_SH)
    assert in_child(try_lock(fcntl.LOCK_SH)) == 0
    assert in_child(try_lock(fcntl.LOCK_EX)) == "EAGAIN"
    fcntl.flock(fd, fcntl.LOCK_UN)
    assert in_child(try_lock(fcntl.LOCK_EX)) == 0
    # a lock dies with the process holding it
    assert in_child(try_lock(fcntl.LOCK_EX)) == 0
    os.close(fd)


def test_fcntl_locks_between_processes(mnt):
    p = mnt.path("lock")
    write_file(p, b"x" * 1000)
    fd = os.open(p, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 0)   # [0,100)
    fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 100, 500)  # [500,600)
    me = os.getpid()

    def child():
        cfd = os.open(p, os.O_RDWR)
        res = {
            "ex_overlap": errno_of(fcntl.lockf, cfd,
                                   fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 50),
            "ex_free": errno_of(fcntl.lockf, cfd,
                                fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 200),
            "sh_on_sh": errno_of(fcntl.lockf, cfd,
                                 fcntl.LOCK_SH | fcntl.LOCK_NB, 10, 550),
            "ex_on_sh": errno_of(fcntl.lockf, cfd,
                                 fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 520),
        }
        # F_GETLK names the parent as holder of [0,100)
        import struct
        flock = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 20, 1, 0)
        got = fcntl.fcntl(cfd, fcntl.F_GETLK, flock)
        ltype, _, start, length, pid = struct.unpack("hhqqi", got)
        res["getlk"] = [ltype == fcntl.F_WRLCK, start, length, pid]
        return res

    res = in_child(child)
    assert res["ex_overlap"] in ("EAGAIN", "EACCES")
    assert res["ex_free"] == 0
    assert res["sh_on_sh"] == 0
    assert res["ex_on_sh"] in ("EAGAIN", "EACCES")
    assert res["getlk"] == [True, 0, 100, me]
    fcntl.lockf(fd, fcntl.LOCK_UN, 100, 0)
    res = in_child(child)
    assert res["ex_overlap"] == 0
    os.close(fd)


# ---- permissions ------------------------------------------------------------

NOBODY = 65534


def as_user(uid, gid, func):
    def wrapped():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        return func()
    return in_child(wrapped)


@pytest.mark.root
def test_permissions_as_other_user(mounts):
    m = mounts(opts={"allow_other": True})
    p = m.path
    os.chmod(m.mnt, 0o755)
    os.mkdir(p("private"), 0o700)
    write_file(p("private", "secret"), b"s")
    write_file(p("readable"), b"r", 0o644)
    os.chmod(p("readable"), 0o644)
    write_file(p("noread"), b"n")
    os.chmod(p("noread"), 0o600)
    write_file(p("groupw"), b"g")
    os.chown(p("groupw"), 0, NOBODY)
    os.chmod(p("groupw"), 0o664)
    os.mkdir(p("pubdir"))
    os.chmod(p("pubdir"), 0o755)
    os.mkdir(p("sticky"))
    os.chmod(p("sticky"), 0o1777)
    write_file(p("sticky", "rootfile"), b"x")
    os.mkdir(p("mine"))
    os.chown(p("mine"), NOBODY, NOBODY)
    os.mkdir(p("noexec"))
    write_file(p("noexec", "f"), b"x")
    os.chmod(p("noexec"), 0o744)
    write_file(p("script"), b"#!/bin/sh\nexit 0\n")
    os.chmod(p("script"), 0o644)

    def checks():
        r = {}
        r["listdir_private"] = errno_of(os.listdir, p("private"))
        r["stat_in_private"] = errno_of(os.stat, p("private", "secret"))
        r["read_readable"] = errno_of(lambda: open(p("readable"),
                                                   "rb").read())
        r["write_readable"] = errno_of(os.open, p("readable"), os.O_WRONLY)
        r["read_noread"] = errno_of(os.open, p("noread"), os.O_RDONLY)
        r["write_groupw"] = errno_of(
            lambda: write_file(p("groupw"), b"by nobody"))
        r["create_in_pubdir"] = errno_of(os.open, p("pubdir", "new"),
                                         os.O_CREAT | os.O_WRONLY, 0o644)
        r["mkdir_in_root"] = errno_of(os.mkdir, p("nobodydir"))
        r["unlink_readable"] = errno_of(os.unlink, p("readable"))
        r["rename_readable"] = errno_of(os.rename, p("readable"),
                                        p("sticky", "stolen"))
        r["chmod_readable"] = errno_of(os.chmod, p("readable"), 0o777)
        r["chown_readable"] = errno_of(os.chown, p("readable"), NOBODY,
                                       NOBODY)
        r["utime_explicit_readable"] = errno_of(
            os.utime, p("readable"), None, ns=(1, 1))
        r["utime_now_readable"] = errno_of(os.utime, p("readable"))
        r["utime_now_groupw"] = errno_of(os.utime, p("groupw"))
        r["setxattr_readable"] = errno_of(os.setxattr, p("readable"),
                                          "user.x", b"1")
        r["sticky_create"] = errno_of(
            lambda: write_file(p("sticky", "nobodyfile"), b"n"))
        r["sticky_unlink_other"] = errno_of(os.unlink,
                                            p("sticky", "rootfile"))
        r["sticky_unlink_own"] = errno_of(os.unlink,
                                          p("sticky", "nobodyfile"))
        r["own_dir_create"] = errno_of(
            lambda: write_file(p("mine", "f"), b"mine"))
        r["own_chmod"] = errno_of(os.chmod, p("mine", "f"), 0o600)
        r["own_chown_away"] = errno_of(os.chown, p("mine", "f"), 0, 0)
        r["own_chgrp_other"] = errno_of(os.chown, p("mine", "f"), -1, 0)
        r["own_utime_explicit"] = errno_of(os.utime, p("mine", "f"), None,
                                           ns=(5, 5))
        r["noexec_traverse"] = errno_of(os.stat, p("noexec", "f"))
        r["noexec_list"] = len(os.listdir(p("noexec")))
        r["access_x_script"] = os.access(p("script"), os.X_OK)
        r["access_w_readable"] = os.access(p("readable"), os.W_OK)
        r["access_r_readable"] = os.access(p("readable"), os.R_OK)
        return r

    r = as_user(NOBODY, NOBODY, checks)
    assert r == {
        "listdir_private": "EACCES",
        "stat_in_private": "EACCES",
        "read_readable": 0,
        "write_readable": "EACCES",
        "read_noread": "EACCES",
        "write_groupw": 0,
        "create_in_pubdir": "EACCES",
        "mkdir_in_root": "EACCES",
        "unlink_readable": "EACCES",
        "rename_readable": "EACCES",
        "chmod_readable": "EPERM",
        "chown_readable": "EPERM",
        "utime_explicit_readable": "EPERM",
        "utime_now_readable": "EACCES",
        "utime_now_groupw": 0,
        "setxattr_readable": "EACCES",
        "sticky_create": 0,
        "sticky_unlink_other": "EPERM",
        "sticky_unlink_own": 0,
        "own_dir_create": 0,
        "own_chmod": 0,
        "own_chown_away": "EPERM",
        "own_chgrp_other": "EPERM",
        "own_utime_explicit": 0,
        "noexec_traverse": "EACCES",
        "noexec_list": 1,
        "access_x_script": False,
        "access_w_readable": False,
        "access_r_readable": True,
    }
    st = os.stat(p("mine", "f"))
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert read_file(p("groupw")) == b"by nobody"
    assert os.path.exists(p("sticky", "rootfile"))


@pytest.mark.root
def test_other_user_denied_without_allow_other(mnt):
    write_file(mnt.path("f"), b"x")
    os.chmod(mnt.path("f"), 0o666)
    res = as_user(NOBODY, NOBODY, lambda: errno_of(os.stat, mnt.path("f")))
    assert res == "EACCES"


@pytest.mark.root
def test_write_by_other_user_clears_setuid(mounts):
    m = mounts(opts={"allow_other": True})
    os.chmod(m.mnt, 0o755)
    write_file(m.path("f"), b"x")
    os.chmod(m.path("f"), 0o6777)
    res = as_user(NOBODY, NOBODY,
                  lambda: errno_of(lambda: write_file(m.path("f"), b"y")))
    assert res == 0
    assert stat.S_IMODE(os.stat(m.path("f")).st_mode) & 0o6000 == 0


# ---- set-id bits and capabilities a change clears -------------------------
# The kernel leaves them to metafuse (FUSE_HANDLE_KILLPRIV_V2, fs_kill.c,
# fs_wire.c); every expected mode is what ext4 shows on the same kernel.

SETID_MODES = (0o6755, 0o6745, 0o6777, 0o6767)


def _killed(mode):
    """ext4's rule: set-user-ID goes; set-group-ID only with group
    execute (without it the bit means mandatory locking)."""
    mode &= ~stat.S_ISUID
    if mode & stat.S_IXGRP:
        mode &= ~stat.S_ISGID
    return mode


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def _setid_file(m, name, mode, data=b"abc"):
    """A file of nobody's with mode (set after the chown, which clears
    set-id bits)."""
    p = m.path(name)
    write_file(p, data)
    os.chown(p, NOBODY, NOBODY)
    os.chmod(p, mode)
    assert _mode(p) == mode
    return p


def _shared(mounts, **opts):
    m = mounts(opts={"allow_other": True, **opts})
    os.chmod(m.mnt, 0o755)
    return m


def _write(p):
    with open(p, "r+b") as f:
        f.write(b"x")


def _append(p):
    with open(p, "ab") as f:
        f.write(b"x")


def _ftruncate(p):
    with open(p, "r+b") as f:
        os.ftruncate(f.fileno(), 1)


def _open_trunc(p):
    os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))


def _fallocate(p):
    fd = os.open(p, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 8192)
    finally:
        os.close(fd)


# each change, and the file's content before it
SETID_CHANGES = {
    "write": (_write, b"abc"),
    "append": (_append, b"abc"),
    "ftruncate": (_ftruncate, b"abc"),
    "truncate": (lambda p: os.truncate(p, 1), b"abc"),
    "open_trunc": (_open_trunc, b"abc"),
    "open_trunc_empty": (_open_trunc, b""),
    "fallocate": (_fallocate, b"abc"),
}


@pytest.mark.root
@pytest.mark.parametrize("change", sorted(SETID_CHANGES))
def test_setid_cleared_by_change_of_other_user(mounts, change):
    """A write or truncate by a user without CAP_FSETID clears set-user-ID,
    and set-group-ID when group execute is set; root's keeps both; the
    result survives a remount."""
    m = _shared(mounts)
    do, data = SETID_CHANGES[change]
    for mode in SETID_MODES:
        p = _setid_file(m, f"user{mode:o}", mode, data)
        assert as_user(NOBODY, NOBODY, lambda: errno_of(do, p)) == 0
        assert _mode(p) == _killed(mode), (change, oct(mode))
        p = _setid_file(m, f"root{mode:o}", mode, data)
        do(p)
        assert _mode(p) == mode, (change, oct(mode))
    m.remount()
    for mode in SETID_MODES:
        assert _mode(m.path(f"user{mode:o}")) == _killed(mode)
        assert _mode(m.path(f"root{mode:o}")) == mode


@pytest.mark.root
def test_setid_cleared_by_write_under_writeback_cache(mounts):
    """Under writeback_cache the kernel writes through the daemon when
    the write must clear set-id bits."""
    if not h.mount_option_supported("writeback_cache"):
        pytest.skip("no writeback_cache")
    m = _shared(mounts, writeback_cache=True)
    for mode in SETID_MODES:
        p = _setid_file(m, f"f{mode:o}", mode)
        assert as_user(NOBODY, NOBODY, lambda: errno_of(_write, p)) == 0
        assert _mode(p) == _killed(mode), oct(mode)
        assert read_file(p) == b"xbc"


@pytest.mark.root
def test_setid_cleared_by_chown(mounts):
    """Any chown of a non-directory clears set-user-ID, and set-group-ID
    with group execute, whoever makes it, even to the same owner or
    chown(f, -1, -1); a directory keeps its bits."""
    m = _shared(mounts)
    chowns = {
        "new_owner": lambda p: os.chown(p, 1, 2),
        "same_owner": lambda p: os.chown(p, NOBODY, NOBODY),
        "nothing": lambda p: os.chown(p, -1, -1),
        "group_only": lambda p: os.chown(p, -1, 2),
    }
    for name, do in chowns.items():
        for mode in SETID_MODES:
            p = _setid_file(m, f"{name}{mode:o}", mode)
            do(p)
            assert _mode(p) == _killed(mode), (name, oct(mode))
    # the owner giving the file to its own group
    p = _setid_file(m, "owner", 0o6775)
    assert as_user(NOBODY, NOBODY,
                   lambda: errno_of(os.chown, p, -1, NOBODY)) == 0
    assert _mode(p) == 0o775
    d = m.path("dir")
    os.mkdir(d)
    os.chmod(d, 0o6775)
    os.chown(d, 1, 2)
    assert _mode(d) == 0o6775
    assert (os.stat(m.path("new_owner6755")).st_uid,
            os.stat(m.path("new_owner6755")).st_gid) == (1, 2)
    m.remount()
    assert _mode(m.path("nothing6745")) == 0o2745
    assert _mode(m.path("same_owner6777")) == 0o777
    assert _mode(d) == 0o6775


@pytest.mark.root
def test_setid_kept_by_changes_that_clear_nothing(mounts):
    """chmod, utime, a read, an xattr and a rename leave set-id bits."""
    m = _shared(mounts)
    p = _setid_file(m, "f", 0o6777)
    os.utime(p, (1, 2))
    assert as_user(NOBODY, NOBODY, lambda: read_file(p).decode()) == "abc"
    os.setxattr(p, "user.a", b"1")
    os.rename(p, m.path("g"))
    assert _mode(m.path("g")) == 0o6777


def _capable_file(m, name, caps, data=b"abc"):
    p = m.path(name)
    write_file(p, data)
    os.chmod(p, 0o777)
    try:
        os.setxattr(p, "security.capability", caps)
    except OSError as e:
        pytest.skip(f"cannot set a file capability here: {e}")
    return p


@pytest.mark.root
def test_file_capability_cleared_by_write_truncate_chown(mounts):
    """A write, truncate or chown removes security.capability whoever
    makes it (ext4 does); chmod, utime and a read do not."""
    m = _shared(mounts)
    caps = _caps_value()
    clears = {name: do for name, (do, _) in SETID_CHANGES.items()}
    clears["chown"] = lambda p: os.chown(p, 1, 2)
    clears["chown_nothing"] = lambda p: os.chown(p, -1, -1)
    for name, do in sorted(clears.items()):
        p = _capable_file(m, f"root_{name}", caps)
        do(p)
        expect_errno(errno.ENODATA, os.getxattr, p, "security.capability")
        if name.startswith("chown"):
            continue
        p = _capable_file(m, f"user_{name}", caps)
        assert as_user(NOBODY, NOBODY, lambda: errno_of(do, p)) == 0
        expect_errno(errno.ENODATA, os.getxattr, p, "security.capability")
    p = _capable_file(m, "kept", caps)
    os.chmod(p, 0o755)
    os.utime(p, (1, 2))
    assert read_file(p) == b"abc"
    m.remount()
    assert os.getxattr(p, "security.capability") == caps
    _write(p)
    expect_errno(errno.ENODATA, os.getxattr, p, "security.capability")
    for name in clears:
        expect_errno(errno.ENODATA, os.getxattr, m.path(f"root_{name}"),
                     "security.capability")


FUSE_WRITE, FUSE_GETXATTR = 16, 22


@pytest.mark.root
def test_no_capability_question_before_each_write(mnt):
    """Under FUSE_HANDLE_KILLPRIV_V2 (fs_wire.c) the kernel stops asking
    for security.capability before every write once a file has been
    written; without it, half the requests of 4 KiB random writes were
    that question.  Counted on the daemon's reads of /dev/fuse."""
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("no strace")
    p = mnt.path("f")
    write_file(p, bytes(64 * 1024))
    out = os.path.join(mnt.root, "strace.txt")
    tracer = subprocess.Popen(
        [strace, "-f", "-qq", "-p", str(mnt.pid), "-e", "trace=read",
         "-e", "signal=none", "-xx", "-s", "8", "-o", out],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # attached once a request shows up in its output
        for _ in range(200):
            os.listdir(mnt.mnt)
            os.close(os.open(p, os.O_RDONLY))
            if os.path.exists(out) and "\\x" in open(out).read():
                break
            time.sleep(0.05)
        else:
            pytest.skip("strace could not trace the daemon here")
        fd = os.open(p, os.O_RDWR)
        try:
            for i in range(200):
                os.pwrite(fd, b"x" * 4096, (i * 7 % 16) * 4096)
        finally:
            os.close(fd)
    finally:
        tracer.terminate()
        tracer.wait()
    ops = []
    for line in open(out):
        hx = re.search(r'(?:read\(\d+, |resumed>)"((?:\\x[0-9a-f]{2}){8})',
                       line)
        if hx:
            b = bytes.fromhex(hx.group(1).replace("\\x", ""))
            ops.append(int.from_bytes(b[4:8], "little"))
    assert ops.count(FUSE_WRITE) >= 200, ops
    assert ops.count(FUSE_GETXATTR) <= 2, ops


# ---- timestamps -------------------------------------------------------------

OLD = (1_000_000_000_000_000_001, 1_000_000_000_000_000_002)


def times(path):
    st = os.lstat(path)
    return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns


def changed_to_now(t, before):
    return before - CLOCK_SLACK_NS <= t <= time.time_ns() + CLOCK_SLACK_NS


def test_timestamp_update_rules(mnt):
    p = mnt.path
    os.mkdir(p("d"))
    write_file(p("d", "f"), b"0123456789")

    def reset(*paths):
        for q in paths:
            os.utime(q, ns=OLD)
        time.sleep(0.02)
        return time.time_ns()

    # write: mtime and ctime of the file; atime untouched
    before = reset(p("d", "f"))
    c0 = times(p("d", "f"))[2]
    with open(p("d", "f"), "r+b") as f:
        f.write(b"x")
    a, m, c = times(p("d", "f"))
    assert a == OLD[0]
    assert changed_to_now(m, before) and c > c0
    # read: atime (atime older than mtime, so even relatime updates it)
    before = reset(p("d", "f"))
    assert read_file(p("d", "f")) == b"x123456789"
    a, m, c = times(p("d", "f"))
    assert m == OLD[1]
    assert changed_to_now(a, before), "read did not update atime"
    # chmod, chown, link, setxattr: ctime only
    for op in (lambda: os.chmod(p("d", "f"), 0o600),
               lambda: os.chown(p("d", "f"), os.getuid(), os.getgid()),
               lambda: os.setxattr(p("d", "f"), "user.t", b"1"),
               lambda: os.link(p("d", "f"), p("d", "g"))):
        before = reset(p("d", "f"))
        c0 = times(p("d", "f"))[2]
        time.sleep(0.02)
        op()
        a, m, c = times(p("d", "f"))
        assert (a, m) == OLD
        assert c > c0 and changed_to_now(c, before)
    # truncate: mtime and ctime
    before = reset(p("d", "f"))
    os.truncate(p("d", "f"), 3)
    a, m, c = times(p("d", "f"))
    assert a == OLD[0] and changed_to_now(m, before)
    # utimens sets ctime to now
    before = time.time_ns()
    os.utime(p("d", "f"), ns=OLD)
    assert changed_to_now(times(p("d", "f"))[2], before)
    # directory: create, unlink, rename, mkdir update mtime and ctime
    for op in (lambda: write_file(p("d", "new"), b""),
               lambda: os.unlink(p("d", "new")),
               lambda: os.rename(p("d", "g"), p("d", "h")),
               lambda: os.mkdir(p("d", "sub")),
               lambda: os.rmdir(p("d", "sub")),
               lambda: os.symlink("x", p("d", "sym"))):
        before = reset(p("d"))
        op()
        a, m, c = times(p("d"))
        assert a == OLD[0]
        assert changed_to_now(m, before) and changed_to_now(c, before)
    # rename to another directory: both parents; the moved file's ctime
    os.mkdir(p("e"))
    before = reset(p("d"), p("e"), p("d", "h"))
    c0 = times(p("d", "h"))[2]
    time.sleep(0.02)
    os.rename(p("d", "h"), p("e", "h"))
    assert changed_to_now(times(p("d"))[1], before)
    assert changed_to_now(times(p("e"))[1], before)
    assert times(p("e", "h"))[1] == OLD[1]
    assert times(p("e", "h"))[2] > c0
    # readdir updates the directory's atime
    before = reset(p("e"))
    os.listdir(p("e"))
    assert changed_to_now(times(p("e"))[0], before), \
        "readdir did not update atime"


def test_nanosecond_timestamps_persist(mnt):
    p = mnt.path("f")
    write_file(p, b"x")
    want = {}
    for i, name in enumerate(("f", "d", "l")):
        if name == "d":
            os.mkdir(mnt.path(name))
        if name == "l":
            os.symlink("f", mnt.path(name))
        t = (1_500_000_000_000_000_000 + i * 1_000_000_007 + 123,
             1_600_000_000_000_000_000 + i * 999_999_999 + 999_999_999)
        h.utimensat(mnt.path(name), divmod(t[0], 10**9),
                    divmod(t[1], 10**9), follow=False)
        want[name] = t
    got = {n: times(mnt.path(n))[:2] for n in want}
    assert got == want
    ctimes = {n: times(mnt.path(n))[2] for n in want}
    mnt.remount(wipe_cache=True)
    assert {n: times(mnt.path(n))[:2] for n in want} == want
    assert {n: times(mnt.path(n))[2] for n in want} == ctimes


# ---- names ----------------------------------------------------------------

def test_name_length_limits(mnt):
    ok = "n" * 255
    bad = "n" * 256
    write_file(mnt.path(ok), b"255")
    os.mkdir(mnt.path("d" * 255))
    os.symlink("t", mnt.path("s" * 255))
    multibyte = "\u00e4" * 127 + "x"   # 255 bytes of UTF-8
    assert len(multibyte.encode()) == 255
    write_file(mnt.path(multibyte), b"mb")
    expect_errno(errno.ENAMETOOLONG, write_file, mnt.path(bad), b"")
    expect_errno(errno.ENAMETOOLONG, os.mkdir, mnt.path(bad))
    expect_errno(errno.ENAMETOOLONG, os.symlink, "t", mnt.path(bad))
    expect_errno(errno.ENAMETOOLONG, os.rename, mnt.path(ok), mnt.path(bad))
    expect_errno(errno.ENAMETOOLONG, os.link, mnt.path(ok), mnt.path(bad))
    expect_errno(errno.ENAMETOOLONG, os.mknod, mnt.path(bad))
    expect_errno(errno.ENAMETOOLONG, os.stat, mnt.path(bad))
    os.rename(mnt.path(ok), mnt.path("r" * 255))
    # odd bytes are fine in names
    odd = b"sp ace\ttab\nnl\x01\xff\xfe"
    write_file(os.path.join(os.fsencode(mnt.mnt), odd), b"odd")
    mnt.remount(wipe_cache=True)
    names = set(os.listdir(os.fsencode(mnt.mnt)))
    assert os.fsencode("r" * 255) in names
    assert os.fsencode(multibyte) in names
    assert odd in names
    assert read_file(mnt.path("r" * 255)) == b"255"
    assert os.path.isdir(mnt.path("d" * 255))


# ---- mmap -----------------------------------------------------------------

def test_mmap_read_and_write(mnt):
    import mmap
    p = mnt.path("m")
    data = bytearray(h.rand_bytes(6, 3 * MIB + 123))
    write_file(p, data)
    mnt.remount(wipe_cache=True)
    with open(p, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
        assert mm[:] == data
        mm[MIB - 5:MIB + 5] = b"M" * 10
        mm[-10:] = b"E" * 10
        data[MIB - 5:MIB + 5] = b"M" * 10
        data[-10:] = b"E" * 10
        mm.flush()
        # write() is visible through the mapping (shared page cache)
        os.pwrite(f.fileno(), b"W" * 4, 4096)
        data[4096:4100] = b"W" * 4
        assert mm[4096:4100] == b"WWWW"
        mm.close()
    assert read_file(p) == bytes(data)
    # a private mapping changes nothing in the file
    with open(p, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE)
        mm[0:4] = b"PRIV"
        mm.close()
    assert read_file(p)[:4] == bytes(data[:4])
    # mapping of a file grown by ftruncate reads zeros in the new part
    with open(p, "r+b") as f:
        f.truncate(len(data) + 8192)
        mm = mmap.mmap(f.fileno(), 0)
        assert mm[len(data):] == bytes(8192)
        mm[len(data):len(data) + 3] = b"end"
        mm.flush()
        mm.close()
    data += b"end" + bytes(8189)
    mnt.remount(wipe_cache=True)
    assert read_file(p) == bytes(data)


def test_concurrent_writers_different_files(mnt):
    """Several processes writing their own files at once."""
    pids = []
    for i in range(4):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                data = h.rand_bytes(100 + i, 5 * MIB + i)
                write_file(mnt.path(f"w{i}"), data)
            except BaseException:
                code = 1
            os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    mnt.remount(wipe_cache=True)
    for i in range(4):
        assert read_file(mnt.path(f"w{i}")) == h.rand_bytes(100 + i,
                                                             5 * MIB + i)


def test_signal_interrupted_reader_does_not_hurt(mnt):
    """A reader killed mid-way leaves the mount healthy."""
    write_file(mnt.path("big"), h.rand_bytes(8, 32 * MIB))
    mnt.remount(wipe_cache=True)
    proc = subprocess.Popen(["cat", mnt.path("big")],
                            stdout=subprocess.DEVNULL)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_file(mnt.path("big")) == h.rand_bytes(8, 32 * MIB)

