"""The command line: help, version, and bad input that must get one clear
line on stderr and a non-zero exit, without losing anything."""

import errno
import os
import re
import shutil
import subprocess
import time

import pytest

import mfhelpers as h
from mfhelpers import MIB, Mount, is_mounted, read_file, write_file

VALID_OPTIONS = ["cache_dir", "cache_size", "writeback_delay", "max_dirty",
                 "ro", "allow_other"]


def one_line_error(r):
    """A failed command: non-zero exit and one clear line on stderr."""
    assert r.returncode != 0, f"expected failure, got 0: {r.stdout}"
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {r.stderr!r}"
    return lines[0]


def test_help_and_version(workdir):
    m = Mount(os.path.join(workdir, "v"))
    for args in (["--help"], ["-h"]):
        r = m.cli(*args)
        assert r.returncode == 0, r.stderr
        out = r.stdout + r.stderr
        for cmd in ("mkfs", "mount", "umount", "fsck"):
            assert cmd in out, f"{cmd} missing from --help"
    r = m.cli("--version")
    assert r.returncode == 0
    assert any(c.isdigit() for c in r.stdout), r.stdout
    assert "metafuse" in r.stdout.lower()
    for cmd in ("mkfs", "mount", "umount", "fsck"):
        r = m.cli(cmd, "--help")
        assert r.returncode == 0, f"{cmd} --help: {r.stderr}"
        assert cmd in (r.stdout + r.stderr)
    r = m.cli("mount", "--help")
    for opt in VALID_OPTIONS:
        assert re.search(rf"\b{opt}\b", r.stdout + r.stderr), \
            f"mount --help lacks {opt}"
    r = m.cli("mkfs", "--help")
    assert "--block-size" in r.stdout + r.stderr


def test_unknown_command_and_no_arguments(workdir):
    m = Mount(os.path.join(workdir, "v"))
    r = m.cli("frobnicate")
    assert r.returncode != 0 and r.stderr.strip()
    r = m.cli()
    assert r.returncode != 0 and (r.stderr + r.stdout).strip()
    r = m.cli("mount", "--no-such-flag", m.store, m.mnt)
    assert r.returncode != 0 and r.stderr.strip()


def test_mkfs_default_block_size_local(mounts):
    """Untold, mkfs gives a directory store 1 MiB blocks (test_s3.py
    checks S3's 4 MiB)."""
    m = mounts(mkfs=False)
    r = m.mkfs()
    assert f"(block size {MIB})" in r.stdout, r.stdout
    m.mount()
    write_file(m.path("f"), h.rand_bytes(2, MIB + 1))
    m.umount()
    # one full block and one byte: two objects
    assert len(m.data_objects()) == 2
    m.mount()
    assert read_file(m.path("f")) == h.rand_bytes(2, MIB + 1)
    m.umount()


def test_mkfs_file_url_and_block_size(mounts, workdir):
    m = mounts(mkfs=False)
    r = m.cli("mkfs", "--block-size", "4M", "file://" + m.store)
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(os.path.join(m.store, "volume"))
    m.store = "file://" + m.store
    m.mount()
    write_file(m.path("f"), h.rand_bytes(1, 9 * 1024 * 1024))
    m.umount()
    # 9 MiB in 4 MiB blocks: three objects
    assert len(m.data_objects()) == 3
    m.mount()
    assert read_file(m.path("f")) == h.rand_bytes(1, 9 * 1024 * 1024)
    m.umount()
    for bad in ("0", "abc", "3", "1T"):
        r = m.cli("mkfs", "--block-size", bad, os.path.join(workdir, bad))
        one_line_error(r)


@pytest.mark.parametrize("names", ["blake2b", "hmac-sha256"])
def test_mkfs_block_names(mounts, names):
    """Either kind of block names keeps data across remounts, stores
    identical blocks once, patches a block and passes fsck --verify-data;
    mkfs says which it chose, and only hmac-sha256 needs format 3."""
    m = mounts(mkfs=False)
    r = m.cli("mkfs", "--names", names, "--block-size",
              str(h.DEFAULT_BLOCK_SIZE), m.store)
    assert r.returncode == 0, r.stderr
    fmt = 3 if names == "hmac-sha256" else 2
    assert f"block names: {names} (volume format {fmt})" in r.stdout
    bs = h.DEFAULT_BLOCK_SIZE
    a = h.rand_bytes(5, 2 * bs + 5)
    m.mount()
    write_file(m.path("a"), a)
    write_file(m.path("b"), a)
    m.umount()
    assert len(m.data_objects()) == 3  # two whole blocks and 5 bytes, once
    m.mount()
    with open(m.path("a"), "r+b") as f:  # one page: goes up as a patch
        f.seek(bs + 4096)
        f.write(b"x" * 4096)
    m.umount()
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("a")) == (a[:bs + 4096] + b"x" * 4096 +
                                      a[bs + 8192:])
    assert read_file(m.path("b")) == a
    m.umount()
    m.fsck_verified()


def test_mkfs_default_names_follow_the_cpu(mounts):
    """Untold, mkfs names blocks by HMAC-SHA-256 where the CPU has SHA-256
    instructions (x86: the sha_ni flag), by BLAKE2b elsewhere."""
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    if not re.search(r"^flags\s*:.*\b(sha_ni|sha)\b", flags, re.M) and \
            not re.search(r"^Features\s*:.*\bsha2\b", flags, re.M):
        want = "blake2b"
    else:
        want = "hmac-sha256"
    m = mounts(mkfs=False)
    r = m.mkfs()
    assert f"block names: {want} " in r.stdout, r.stdout
    for bad in ("md5", "", "BLAKE2B"):
        one_line_error(m.cli("mkfs", "--names", bad, m.store + "-x"))


def test_mkfs_refuses_existing_volume(mounts):
    m = mounts()
    write_file(m.path("keep"), b"precious")
    m.umount()
    with open(os.path.join(m.store, "volume"), "rb") as f:
        volume = f.read()
    one_line_error(m.mkfs(check=False))
    r = m.cli("mkfs", "file://" + m.store)
    one_line_error(r)
    with open(os.path.join(m.store, "volume"), "rb") as f:
        assert f.read() == volume
    m.mount()
    assert read_file(m.path("keep")) == b"precious"


def test_mount_missing_store(workdir, mounts):
    m = mounts(mkfs=False)
    missing = os.path.join(workdir, "no-such-store")
    m.store = missing
    r = m.cli("mount", "-o", f"cache_dir={m.cache}", missing, m.mnt)
    line = one_line_error(r)
    assert "no-such-store" in line
    assert not is_mounted(m.mnt)
    assert not os.path.exists(missing), "mount created a missing store"


def test_mount_directory_that_is_not_a_volume(workdir, mounts):
    m = mounts(mkfs=False)
    os.makedirs(m.store)
    write_file(os.path.join(m.store, "unrelated"), b"not a volume")
    r = m.cli("mount", "-o", f"cache_dir={m.cache}", m.store, m.mnt)
    one_line_error(r)
    assert not is_mounted(m.mnt)
    assert os.listdir(m.store) == ["unrelated"], "store was modified"
    # a file, not a directory
    r = m.cli("mount", "-o", f"cache_dir={m.cache}",
              os.path.join(m.store, "unrelated"), m.mnt)
    one_line_error(r)
    # a damaged volume config
    m2 = mounts("v2", mount=False)
    with open(os.path.join(m2.store, "volume"), "wb") as f:
        f.write(b"garbage\0\xff")
    r = m2.cli("mount", "-o", f"cache_dir={m2.cache}", m2.store, m2.mnt)
    one_line_error(r)
    assert not is_mounted(m2.mnt)


def test_mountpoint_missing_or_not_a_directory(mounts):
    m = mounts(mount=False)
    missing = os.path.join(m.root, "no-such-dir")
    r = m.cli("mount", "-o", f"cache_dir={m.cache}", m.store, missing)
    assert "no-such-dir" in one_line_error(r)
    assert not os.path.exists(missing)
    afile = os.path.join(m.root, "afile")
    write_file(afile, b"x")
    r = m.cli("mount", "-o", f"cache_dir={m.cache}", m.store, afile)
    one_line_error(r)
    assert not is_mounted(afile)
    # the volume is still fine afterwards
    m.mount()
    write_file(m.path("ok"), b"ok")
    m.umount()


def test_mountpoint_already_mounted(mounts):
    a = mounts("a")
    b = mounts("b", mount=False)
    write_file(a.path("mine"), b"a's file")
    r = b.cli("mount", "-o", f"cache_dir={b.cache}", b.store, a.mnt)
    one_line_error(r)
    # a's mount is untouched and still answers
    assert read_file(a.path("mine")) == b"a's file"
    # the same volume at the same place again
    r = a.cli("mount", "-o", f"cache_dir={a.cache}", a.store, a.mnt)
    one_line_error(r)
    assert read_file(a.path("mine")) == b"a's file"
    b.mount()
    b.umount()


def test_second_mount_of_same_volume_refused(mounts):
    m = mounts()
    write_file(m.path("f"), b"first mount")
    other_mnt = os.path.join(m.root, "mnt2")
    other_cache = os.path.join(m.root, "cache2")
    os.mkdir(other_mnt)
    r = m.cli("mount", "-o", f"cache_dir={other_cache}", m.store,
              other_mnt)
    try:
        one_line_error(r)
        assert not is_mounted(other_mnt)
    finally:
        h.force_unmount(other_mnt)
    # also with -f (foreground): refused, and exits instead of hanging
    r = m.cli("mount", "-f", "-o", f"cache_dir={other_cache}", m.store,
              other_mnt, timeout=60)
    h.force_unmount(other_mnt)
    assert r.returncode != 0
    assert read_file(m.path("f")) == b"first mount"
    m.remount()
    assert read_file(m.path("f")) == b"first mount"


def test_unknown_option_lists_valid_ones(mounts):
    m = mounts(mount=False)
    r = m.cli("mount", "-o", f"cache_dir={m.cache},bogus_option=1",
              m.store, m.mnt)
    assert r.returncode != 0
    assert "bogus_option" in r.stderr
    for opt in VALID_OPTIONS:
        assert re.search(rf"\b{opt}\b", r.stderr), \
            f"valid option {opt} not listed: {r.stderr!r}"
    assert not is_mounted(m.mnt)


@pytest.mark.parametrize("opt", ["cache_size=abc", "cache_size=-1M",
                                 "writeback_delay=soon",
                                 "writeback_delay=-1", "max_dirty=12Q",
                                 "cache_size="])
def test_bad_option_values(mounts, opt):
    m = mounts(mount=False)
    r = m.cli("mount", "-o", f"cache_dir={m.cache},{opt}", m.store, m.mnt)
    line = one_line_error(r)
    assert opt.split("=")[0] in line
    assert not is_mounted(m.mnt)


def test_usual_fuse_options_pass(mounts):
    m = mounts(opts={"default_permissions": True, "noatime": True,
                     "nodev": True, "nosuid": True})
    write_file(m.path("f"), b"x")
    m.umount()


def test_size_suffixes(mounts):
    m = mounts(opts={"cache_size": "64M", "max_dirty": "8M",
                     "writeback_delay": "0.5", "noatime": True})
    write_file(m.path("f"), b"x" * 100000)
    m.remount(opts={"cache_size": "1G", "max_dirty": "512K"})
    assert read_file(m.path("f")) == b"x" * 100000
    m.remount(opts={"cache_size": "65536", "max_dirty": "4096K"})
    assert read_file(m.path("f")) == b"x" * 100000


def test_read_only_mount(mounts):
    m = mounts()
    write_file(m.path("f"), b"data")
    m.remount(opts={"ro": True})
    assert read_file(m.path("f")) == b"data"
    for func, args in ((os.open, (m.path("f"), os.O_WRONLY)),
                       (os.open, (m.path("g"), os.O_CREAT | os.O_WRONLY)),
                       (os.mkdir, (m.path("d"),)),
                       (os.unlink, (m.path("f"),)),
                       (os.chmod, (m.path("f"), 0o600)),
                       (os.setxattr, (m.path("f"), "user.x", b"1"))):
        h.expect_errno(errno.EROFS, func, *args)
    m.remount(opts={"ro": False})
    write_file(m.path("g"), b"writable again")


def test_umount_returns_after_upload_and_daemon_exit(mounts):
    m = mounts(opts={"writeback_delay": "3600", "max_dirty": "1G"})
    pid = m.pid
    assert pid is not None, "daemon pid not found"
    data = h.rand_bytes(3, 20 * 1024 * 1024)
    write_file(m.path("f"), data)
    before = len(m.data_objects())
    t0 = time.monotonic()
    m.umount()   # checks that the daemon is gone when it returns
    assert not h.pid_alive(pid)
    # the data is in the store right when umount returned
    assert len(m.data_objects()) >= before + 20
    print(f"umount took {time.monotonic() - t0:.2f} s")
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("f")) == data


@pytest.mark.root
@pytest.mark.namespace
def test_umount_names_a_namespace_that_holds_the_mount(mounts):
    """A mount namespace made while the volume is mounted keeps a copy of
    the mount, and the kernel ends the FUSE connection only when that
    copy goes too: umount waits for it.  It must say why it waits, and
    then finish once the namespace is gone."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare(1)")
    m = mounts()
    write_file(m.path("f"), b"held")
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private",
                               "sleep", "600"])
    try:
        time.sleep(0.5)
        um = subprocess.Popen([h.BIN, "umount", m.mnt],
                              stderr=subprocess.PIPE, text=True)
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = um.stderr.readline()
            lines.append(line)
            if "another mount namespace" in line or not line:
                break
        assert any("another mount namespace" in x for x in lines), lines
        assert um.poll() is None, "umount returned while the copy held"
    finally:
        holder.kill()
        holder.wait()
    assert um.wait(timeout=60) == 0
    m.pid = None
    m.mount()
    assert read_file(m.path("f")) == b"held"


def test_foreground_mount_stays_until_unmounted(mounts):
    m = mounts(mount=False)
    m.mount(foreground=True)
    assert m.proc.poll() is None
    write_file(m.path("f"), b"fg")
    time.sleep(0.5)
    assert m.proc.poll() is None, "foreground daemon exited by itself"
    m.umount()   # checks exit status 0
    m.mount()
    assert read_file(m.path("f")) == b"fg"


def test_umount_of_something_not_mounted(mounts):
    m = mounts(mount=False)
    r = m.cli("umount", m.mnt)
    one_line_error(r)
    r = m.cli("umount", os.path.join(m.root, "nonexistent"))
    one_line_error(r)


def test_daemon_mount_failure_is_reported_not_hung(mounts):
    """A daemonizing mount that cannot start returns non-zero promptly."""
    m = mounts(mount=False)
    blocker = os.path.join(m.root, "cache-is-a-file")
    write_file(blocker, b"x")
    t0 = time.monotonic()
    r = m.cli("mount", "-o", f"cache_dir={blocker}", m.store, m.mnt,
              timeout=60)
    one_line_error(r)
    assert time.monotonic() - t0 < 30
    assert not is_mounted(m.mnt)


def test_default_volume_under_xdg_data_home(workdir, mounts):
    xdg_data = os.path.join(workdir, "xdg-data")
    xdg_cache = os.path.join(workdir, "xdg-cache")
    home = os.path.join(workdir, "home")
    os.makedirs(home)
    env = dict(os.environ, XDG_DATA_HOME=xdg_data, XDG_CACHE_HOME=xdg_cache,
               HOME=home)
    store = os.path.join(xdg_data, "metafuse", "default")
    m = mounts("v", mkfs=False, store=store, env=env, use_cache_opt=False)
    m.extra_logs.append(os.path.join(xdg_cache, "metafuse", "*",
                                     "metafuse.log"))
    assert not os.path.exists(store)
    m.mount(store=False)
    assert os.path.isfile(os.path.join(store, "volume")), \
        "default volume not created"
    assert os.path.isdir(os.path.join(xdg_cache, "metafuse")), \
        "default cache dir not under $XDG_CACHE_HOME/metafuse"
    logs = [p for p in m.log_files() if p.startswith(xdg_cache)]
    assert logs, "no metafuse.log under $XDG_CACHE_HOME/metafuse/<id>"
    write_file(m.path("hello"), b"default volume")
    m.umount()
    assert not os.path.exists(os.path.join(home, ".local")), \
        "used ~/.local despite XDG_DATA_HOME"
    # the second mount reuses it
    m.mount(store=False)
    assert read_file(m.path("hello")) == b"default volume"
    m.umount()
    # and the explicit path names the same volume
    m.mount()
    assert read_file(m.path("hello")) == b"default volume"
    m.umount()


def test_fsck(mounts, workdir):
    m = mounts()
    write_file(m.path("f"), h.rand_bytes(4, 3 * 1024 * 1024))
    os.mkdir(m.path("d"))
    os.symlink("f", m.path("d", "l"))
    m.umount()
    r = m.cli("fsck", m.store)
    assert r.returncode == 0, f"fsck of a clean volume: {r.stdout}{r.stderr}"
    r = m.cli("fsck", "file://" + m.store)
    assert r.returncode == 0
    r = m.cli("fsck", os.path.join(workdir, "missing"))
    assert r.returncode == 2, f"fsck of a missing store: {r.returncode}"
    # a missing data object is a problem fsck must see
    objs = sorted(m.data_objects())
    os.unlink(os.path.join(m.store, objs[0]))
    r = m.cli("fsck", m.store)
    assert r.returncode == 1, f"fsck with a missing object: {r.returncode}" \
        f" {r.stdout}{r.stderr}"
    m.allow_errors(".*")


def test_mount_as_subprocess_with_closed_stdio(mounts):
    """A daemonizing mount must not keep the caller's pipes open (scripts
    read its output to the end)."""
    m = mounts(mount=False)
    args = [h.BIN, "mount", "-o", h.format_opts(m.opts), m.store, m.mnt]
    p = subprocess.Popen(args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=m.env)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("mount kept stdout/stderr open after daemonizing")
    assert p.returncode == 0, err
    assert is_mounted(m.mnt)
    m.umount()


def test_simultaneous_mounts_of_one_volume_one_wins(mounts):
    """Two mounts of one volume started at the same instant: exactly one
    gets it (the lease is read back after a settling pause), the other
    fails with one line, round after round."""
    m = mounts(mount=False)
    for rnd in range(6):
        procs, mnts = [], []
        for k in range(2):
            mnt = os.path.join(m.root, f"race-mnt{k}")
            cache = os.path.join(m.root, f"race-cache{k}")
            os.makedirs(mnt, exist_ok=True)
            shutil.rmtree(cache, ignore_errors=True)
            mnts.append(mnt)
            procs.append(subprocess.Popen(
                [h.BIN, "mount", "-o", f"cache_dir={cache}", m.store, mnt],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env=m.env))
        results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        won = [mnt for mnt, (rc, _) in zip(mnts, results) if rc == 0]
        try:
            assert len(won) == 1, f"round {rnd}: {len(won)} mounts won " \
                f"the volume: {results}"
            loser = [err for rc, err in results if rc != 0][0]
            assert "already mounted" in loser, loser
            assert len(loser.strip().splitlines()) == 1, loser
        finally:
            for mnt in mnts:
                if is_mounted(mnt):
                    r = h.run([h.BIN, "umount", mnt])
                    assert r.returncode == 0, r.stderr
