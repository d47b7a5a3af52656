"""mount(8), fstab and umount(8) with metafuse (issue 18).

A volume is mounted through mount(8) -- `-t fuse.metafuse` (the helper
mount.fuse.metafuse, or mount.fuse3 running `metafuse STORE MNT -o OPTS`),
`-t metafuse` (mount.metafuse), an fstab file (`mount -T FILE MNT`,
`mount -T FILE -a`) -- with mount(8)'s and systemd's options accepted and
ignored and an unknown option refused in one line; and umount(8) returns
only once everything is in the store: the tests take the store away
before `umount`, see it wait, give the store back, then delete the cache
directory and mount again to find every byte.

Where the helpers come from: mount(8) and umount(8) look for
/sbin/mount.TYPE and /sbin/umount.NAME and nowhere else (no option or
environment variable moves that), and mount.fuse3 runs `metafuse` from
sh's default PATH (mount(8) removes PATH).  Rather than install into the
machine's /sbin, where a crashed test would leave them and where they
would shadow an installed metafuse, each test runs its mount(8) and
umount(8) in a private mount namespace (`unshare -m`, class Namespace): an
overlay on /usr/sbin (/sbin on a merged-/usr system) adds the links
`meson install` makes (mount.metafuse, mount.fuse.metafuse,
umount.metafuse -> $METAFUSE_BIN), a tmpfs on /usr/local/sbin (first in
sh's default PATH) holds `metafuse`, and a tmpfs on /run/mount holds a
utab of its own.  Commands enter it with nsenter; the test reads and
writes the mount through /proc/PID/root.  Nothing outside changes, and
the namespace goes with its last process.  Every test is skipped, with
the reason, when not root or when unshare, nsenter, overlayfs or
util-linux's mount(8) are missing; so is the mount.fuse3 case without
/sbin/mount.fuse3 (package fuse3).

With METAFUSE_TEST_STORE=s3 the volumes are on S3 (the keys and the
endpoint reach the helpers through the environment, which mount(8)
keeps); test_boot_mount_s3_from_fstab_options_alone mounts with an empty
environment, everything from the fstab line.
"""

import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time

import pytest

import mfhelpers as h
from mfhelpers import BIN, MIB, read_file, write_file

# every test here needs root and may make a mount namespace (class
# Namespace), which scripts/test.sh runs alone
pytestmark = [pytest.mark.root, pytest.mark.namespace]

HELPERS = ("mount.metafuse", "mount.fuse.metafuse", "umount.metafuse")
# the case of a machine without mount.fuse.metafuse: mount.fuse3 runs
# `metafuse STORE MNT -o OPTS`
HELPERS_FUSE3 = ("mount.metafuse", "umount.metafuse")

# mount(8)'s and systemd's options, which metafuse ignores
MOUNT8_OPTS = ("defaults,auto,nofail,_netdev,users,nouser,"
               "x-systemd.automount,x-systemd.mount-timeout=30min,"
               "x-initrd.attach,comment=systemd.automount")


def _unescape(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


class Namespace:
    """A private mount namespace where mount(8) finds metafuse's helpers
    (see the module's docstring)."""

    def __init__(self, workdir, helpers=HELPERS):
        self.pid = None
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sleep",
             "infinity"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        mine = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.holder.poll() is not None:
                self.close()
                pytest.skip("unshare -m failed: " +
                            self.holder.stderr.read().decode().strip())
            try:
                if os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != mine:
                    break
            except OSError:
                pass
            time.sleep(0.01)
        else:
            self.close()
            pytest.skip("unshare -m made no namespace")
        self.pid = self.holder.pid
        tmp = os.path.join(workdir, "ns")
        os.makedirs(tmp, exist_ok=True)
        links = "".join(f"ln -s '{BIN}' {tmp}/upper/{n} && "
                        for n in helpers)
        setup = (
            f"mount -t tmpfs tmpfs {tmp} && mkdir {tmp}/upper {tmp}/work && "
            + links +
            f"mount -t overlay overlay -o lowerdir=/usr/sbin,"
            f"upperdir={tmp}/upper,workdir={tmp}/work /usr/sbin && "
            f"mount -t tmpfs tmpfs /usr/local/sbin && "
            f"ln -s '{BIN}' /usr/local/sbin/metafuse && "
            f"mkdir -p /run/mount && mount -t tmpfs tmpfs /run/mount")
        r = self.run(["sh", "-c", setup])
        if r.returncode != 0:
            self.close()
            pytest.skip(f"cannot set up the namespace (overlayfs?): "
                        f"{r.stderr.strip()}")

    def run(self, args, env=None, timeout=120):
        return h.run(["nsenter", "-t", str(self.pid), "-m", "--", *args],
                     env=env, timeout=timeout)

    def popen(self, args, env=None):
        return subprocess.Popen(
            ["nsenter", "-t", str(self.pid), "-m", "--", *args], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def path(self, *parts):
        """A path of the namespace, as the test reaches it."""
        return f"/proc/{self.pid}/root" + os.path.join(*parts)

    def mounts(self):
        """{mount point: (type, source)} in the namespace."""
        out = {}
        with open(f"/proc/{self.pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                out[_unescape(fields[4])] = (fields[sep + 1],
                                             _unescape(fields[sep + 2]))
        return out

    def utab(self):
        try:
            with open(self.path("/run/mount/utab")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def close(self, under=None):
        if self.pid:
            # the tests' mounts, innermost first, without any helper
            for mp in sorted(self.mounts(), reverse=True):
                if under and (mp + "/").startswith(under + "/"):
                    self.run(["umount", "-i", "-l", mp], timeout=30)
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait()


@pytest.fixture
def namespace(mounts, workdir):
    """namespace(helpers=HELPERS): a Namespace, closed at teardown (before
    the mounts fixture kills the daemons and scans their logs)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mount(8), mount namespaces)")
    for tool in ("unshare", "nsenter", "mount", "umount"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (util-linux)")
    if "util-linux" not in h.run(["mount", "--version"]).stdout:
        pytest.skip("mount(8) is not util-linux's")
    made = []

    def make(helpers=HELPERS):
        ns = Namespace(workdir, helpers)
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.close(under=workdir)


def volume(mounts, **kw):
    """A new volume (mkfs done), not mounted; m.opts_str: its -o list."""
    m = mounts(mount=False, **kw)
    m.opts_str = h.format_opts(m.opts)
    return m


def mount8(ns, m, *args, opts=None, env=None):
    """mount(8) in ns: `mount ARGS STORE MNT -o cache_dir=...,OPTS`."""
    o = m.opts_str + ("," + opts if opts else "")
    return ns.run(["mount", *args, m.store, m.mnt, "-o", o],
                  env=env if env is not None else m.env)


def check_mounted(ns, m, fstype="fuse.metafuse"):
    """m is mounted in ns, from m.store, with helper=metafuse in the utab
    (so that umount(8) runs umount.metafuse); returns the daemon's pid."""
    got = ns.mounts().get(m.mnt)
    assert got == (fstype, m.store), (got, ns.mounts())
    line = [ln for ln in ns.utab().splitlines()
            if f"TARGET={m.mnt} " in ln]
    assert len(line) == 1 and "helper=metafuse" in line[0], ns.utab()
    pids = h.pids_with_arg(m.mnt)
    assert len(pids) == 1, pids
    return pids[0]


def umount8(ns, m, pid, *args):
    """umount(8) in ns: 0, the mount gone, the daemon gone, no utab line."""
    r = ns.run(["umount", *args, m.mnt], env=m.env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert m.mnt not in ns.mounts()
    assert not h.pid_alive(pid), "umount(8) returned before the daemon " \
        "had exited"
    assert f"TARGET={m.mnt} " not in ns.utab(), ns.utab()
    return r


def one_line(r):
    assert r.returncode != 0, r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("how", ["fuse.metafuse", "metafuse", "fuse3"])
def test_mount_types_and_ignored_options(namespace, mounts, how):
    """-t fuse.metafuse (mount.fuse.metafuse), -t metafuse
    (mount.metafuse), and -t fuse.metafuse on a machine without
    mount.fuse.metafuse (mount.fuse3 runs `metafuse STORE MNT -o OPTS`
    with PATH removed): mounted, mount(8)'s and systemd's options
    ignored, the mount's source is STORE, and umount(8) waits."""
    if how == "fuse3" and not os.path.exists("/sbin/mount.fuse3"):
        pytest.skip("no /sbin/mount.fuse3 (package fuse3)")
    ns = namespace(HELPERS_FUSE3 if how == "fuse3" else HELPERS)
    m = volume(mounts)
    fstype = "metafuse" if how == "metafuse" else "fuse.metafuse"
    r = mount8(ns, m, "-t", fstype, opts=MOUNT8_OPTS + ",noatime")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    pid = check_mounted(ns, m)
    data = h.rand_bytes(1, 3 * MIB + 5)
    write_file(ns.path(m.mnt, "f"), data)
    os.mkdir(ns.path(m.mnt, "d"))
    write_file(ns.path(m.mnt, "d", "g"), b"small")
    umount8(ns, m, pid)
    m.wipe_cache()
    assert mount8(ns, m, "-t", fstype).returncode == 0
    pid = check_mounted(ns, m)
    assert read_file(ns.path(m.mnt, "f")) == data
    assert read_file(ns.path(m.mnt, "d", "g")) == b"small"
    umount8(ns, m, pid)


def test_fstab_file(namespace, mounts, workdir):
    """An fstab line `STORE MNT fuse.metafuse OPTS 0 0` (and one of type
    metafuse): `mount -T FILE MNT` mounts it, `mount -T FILE -a` mounts
    every line but the noauto one, and umount(8) unmounts."""
    ns = namespace()
    a, b, c = (volume(mounts, name=n) for n in ("a", "b", "c"))
    fstab = os.path.join(workdir, "fstab")
    with open(fstab, "w") as f:
        f.write("# metafuse volumes\n"
                f"{a.store} {a.mnt} fuse.metafuse "
                f"_netdev,x-systemd.automount,{a.opts_str} 0 0\n"
                f"{b.store}\t{b.mnt}\tmetafuse\t"
                f"defaults,nofail,{b.opts_str}\t0\t0\n"
                f"{c.store} {c.mnt} fuse.metafuse noauto,{c.opts_str} 0 0\n")
    r = ns.run(["mount", "-T", fstab, a.mnt], env=a.env)
    assert r.returncode == 0, r.stderr
    pid = check_mounted(ns, a)
    assert "_netdev" in ns.utab()   # systemd orders it as a network fs
    write_file(ns.path(a.mnt, "f"), b"from fstab")
    umount8(ns, a, pid)
    r = ns.run(["mount", "-T", fstab, "-a"], env=a.env)
    assert r.returncode == 0, r.stderr
    pids = [check_mounted(ns, a), check_mounted(ns, b)]
    assert c.mnt not in ns.mounts()
    assert read_file(ns.path(a.mnt, "f")) == b"from fstab"
    umount8(ns, a, pids[0])
    umount8(ns, b, pids[1])


@pytest.mark.parametrize("how", ["fuse.metafuse", "metafuse", "fuse3",
                                 "fstab"])
def test_unknown_option_is_one_line(namespace, mounts, workdir, how):
    """An unknown option, on mount(8)'s command line or in an fstab line:
    one line naming it, a non-zero status, nothing mounted; with mount -s
    it is a warning and the volume mounts."""
    if how == "fuse3" and not os.path.exists("/sbin/mount.fuse3"):
        pytest.skip("no /sbin/mount.fuse3 (package fuse3)")
    ns = namespace(HELPERS_FUSE3 if how == "fuse3" else HELPERS)
    m = volume(mounts)
    if how == "fstab":
        fstab = os.path.join(workdir, "fstab")
        with open(fstab, "w") as f:
            f.write(f"{m.store} {m.mnt} fuse.metafuse "
                    f"{m.opts_str},_netdev,bogus_opt=1 0 0\n")
        r = ns.run(["mount", "-T", fstab, "-a"], env=m.env)
    else:
        fstype = "metafuse" if how == "metafuse" else "fuse.metafuse"
        r = mount8(ns, m, "-t", fstype, opts="_netdev,bogus_opt=1")
    line = one_line(r)
    assert "unknown mount option 'bogus_opt=1'" in line, line
    assert m.mnt not in ns.mounts()
    assert h.pids_with_arg(m.mnt) == []
    if how in ("fuse.metafuse", "metafuse"):
        r = mount8(ns, m, "-s", "-t", how, opts="bogus_opt=1")
        assert r.returncode == 0, r.stderr
        assert "ignoring unknown mount option 'bogus_opt=1'" in r.stderr
        umount8(ns, m, check_mounted(ns, m))


def test_umount_waits_for_the_upload(namespace, mounts, workdir):
    """umount(8) returns only once everything is in the store: with the
    store taken away, it is still waiting (and the daemon alive) seconds
    later; once the store is back it returns, the daemon gone, and a
    mount from the store alone (cache directory deleted) has every
    byte."""
    ns = namespace()
    down = os.path.join(workdir, "store-down")
    env = dict(os.environ, METAFUSE_TEST_STORE_DOWN_FILE=down)
    m = volume(mounts, env=env,
               opts={"writeback_delay": "600", "journal_interval": "600"})
    m.allow_errors(r"failed: Input/output error", r"cannot send the metadata",
                   r"checkpoint failed", r"final upload failed")
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    big = h.rand_bytes(2, 9 * MIB + 123)
    write_file(ns.path(m.mnt, "big"), big)
    for i in range(20):
        write_file(ns.path(m.mnt, f"small{i}"), b"%d" % i * 100)
    open(down, "w").close()
    p = ns.popen(["umount", m.mnt], env=m.env)
    time.sleep(3)
    assert p.poll() is None, "umount(8) returned while the store was " \
        f"down: {p.communicate()}"
    assert h.pid_alive(pid)
    assert m.mnt not in ns.mounts()   # unmounted; uploading
    os.unlink(down)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert not h.pid_alive(pid)
    assert f"TARGET={m.mnt} " not in ns.utab()
    assert "volume" in m.log_text() and "is clean" in m.log_text()
    m.wipe_cache()
    del m.env["METAFUSE_TEST_STORE_DOWN_FILE"]
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    assert read_file(ns.path(m.mnt, "big")) == big
    for i in range(20):
        assert read_file(ns.path(m.mnt, f"small{i}")) == b"%d" % i * 100
    umount8(ns, m, pid)


def test_umount_flags(namespace, mounts):
    """umount -r of a busy mount remounts it read-only (nosuid and nodev
    kept); umount -l detaches at once, and the daemon uploads and exits
    once the last file is closed; umount -f aborts the connection and
    still waits for the upload."""
    ns = namespace()
    m = volume(mounts, opts={"writeback_delay": "600"})
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    write_file(ns.path(m.mnt, "a"), b"a" * 100000)
    # nsenter execs sh, which execs sleep: one process, cwd in the mount
    busy = ns.popen(["sh", "-c", f"cd '{m.mnt}' && echo in && "
                     "exec sleep 600"])
    try:
        assert busy.stdout.readline() == "in\n"
        r = ns.run(["umount", m.mnt], env=m.env)
        assert one_line(r).endswith("Device or resource busy"), r.stderr
        r = ns.run(["umount", "-r", m.mnt], env=m.env)
        assert r.returncode == 0, r.stderr
        assert "remounted read-only" in r.stderr
        opts = ns.run(["findmnt", "-n", "-o", "VFS-OPTIONS",
                       m.mnt]).stdout.strip().split(",")
        assert "ro" in opts and "nosuid" in opts and "nodev" in opts, opts
        with pytest.raises(OSError):
            write_file(ns.path(m.mnt, "b"), b"b")
        r = ns.run(["umount", "-l", m.mnt], env=m.env)
        assert r.returncode == 0, r.stderr
        assert m.mnt not in ns.mounts()
        assert h.pid_alive(pid)   # a file is still in use
    finally:
        busy.kill()
        busy.communicate()
    deadline = time.monotonic() + 60
    while h.pid_alive(pid):
        assert time.monotonic() < deadline, "daemon still alive"
        time.sleep(0.05)
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    write_file(ns.path(m.mnt, "c"), b"c" * 200000)
    umount8(ns, m, pid, "-f")
    m.wipe_cache()
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    assert read_file(ns.path(m.mnt, "a")) == b"a" * 100000
    assert read_file(ns.path(m.mnt, "c")) == b"c" * 200000
    umount8(ns, m, pid)


def test_shutdown_without_unmount(namespace, mounts):
    """A shutdown that does not unmount: SIGTERM (systemd's first word to
    every process) makes the daemon unmount and upload; SIGKILL leaves the
    written data in the cache, umount(8) of the dead mount says so, and
    the next mount uploads it.  Lines the ended mounts left in the utab
    do not outlive the next mount."""
    ns = namespace()
    m = volume(mounts, opts={"writeback_delay": "600",
                             "journal_interval": "600"})
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    write_file(ns.path(m.mnt, "t"), b"before SIGTERM")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while h.pid_alive(pid):
        assert time.monotonic() < deadline, "daemon still alive"
        time.sleep(0.05)
    assert m.mnt not in ns.mounts()
    assert "is clean" in m.log_text()
    m.wipe_cache()

    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)   # one utab line: the stale one dropped
    assert read_file(ns.path(m.mnt, "t")) == b"before SIGTERM"
    write_file(ns.path(m.mnt, "k"), b"before SIGKILL")
    m.kill()
    m.killed = False
    # the dead mount: umount(8) unmounts it and says the upload is left
    r = ns.run(["umount", m.mnt], env=m.env)
    assert "ended before everything was in the store" in one_line(r)
    assert m.mnt not in ns.mounts()
    # umount(8) keeps the utab line of a helper that failed; the next
    # mount drops it (check_mounted: one line)
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    assert read_file(ns.path(m.mnt, "k")) == b"before SIGKILL"
    umount8(ns, m, pid)
    m.wipe_cache()
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    assert read_file(ns.path(m.mnt, "k")) == b"before SIGKILL"
    umount8(ns, m, pid)


def test_umount_says_when_the_daemon_is_killed(namespace, mounts, workdir):
    """A daemon killed while umount(8) waits for its upload (a shutdown
    that would not wait longer): umount(8) fails with one line saying
    what is left is in the cache, and the next mount uploads it."""
    ns = namespace()
    down = os.path.join(workdir, "store-down")
    env = dict(os.environ, METAFUSE_TEST_STORE_DOWN_FILE=down)
    m = volume(mounts, env=env,
               opts={"writeback_delay": "600", "journal_interval": "600"})
    m.allow_errors(r"failed: Input/output error", r"cannot send the metadata",
                   r"checkpoint failed", r"final upload failed")
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    data = h.rand_bytes(3, 2 * MIB + 9)
    write_file(ns.path(m.mnt, "f"), data)
    open(down, "w").close()
    p = ns.popen(["umount", m.mnt], env=m.env)
    deadline = time.monotonic() + 30
    while m.mnt in ns.mounts():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "ended before everything was in the " \
        f"store: what is left stays in the cache {m.cache}" in lines[0], err
    os.unlink(down)
    del m.env["METAFUSE_TEST_STORE_DOWN_FILE"]
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    umount8(ns, m, pid)
    m.wipe_cache()
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    assert read_file(ns.path(m.mnt, "f")) == data
    umount8(ns, m, pid)


def test_metafuse_umount_drops_the_utab_line(namespace, mounts):
    """`metafuse umount` of a mount made through mount(8) waits as ever,
    and leaves no line in the utab."""
    ns = namespace()
    m = volume(mounts)
    assert mount8(ns, m, "-t", "metafuse").returncode == 0
    pid = check_mounted(ns, m)
    r = ns.run([BIN, "umount", m.mnt], env=m.env)
    assert r.returncode == 0, r.stderr
    assert not h.pid_alive(pid)
    assert m.mnt not in ns.mounts()
    assert f"TARGET={m.mnt} " not in ns.utab(), ns.utab()


def test_helpers_run_by_hand(namespace, mounts):
    """The helpers' own flags: -f mounts nothing, -n writes no utab line,
    -t of another type is refused in one line; umount.metafuse of a mount
    that is not metafuse's (-t) unmounts it without waiting for anyone."""
    ns = namespace()
    m = volume(mounts)
    helper = "/sbin/mount.metafuse"
    r = ns.run([helper, m.store, m.mnt, "-f", "-o", m.opts_str], env=m.env)
    assert r.returncode == 0 and m.mnt not in ns.mounts(), r.stderr
    r = ns.run([helper, m.store, m.mnt, "-t", "ext4", "-o", m.opts_str],
               env=m.env)
    assert "type 'ext4' is not metafuse's" in one_line(r)
    assert m.mnt not in ns.mounts()
    r = ns.run([helper, m.store, m.mnt, "-n", "-o", m.opts_str], env=m.env)
    assert r.returncode == 0, r.stderr
    assert ns.mounts()[m.mnt] == ("fuse.metafuse", m.store)
    assert f"TARGET={m.mnt} " not in ns.utab()
    pid = h.pids_with_arg(m.mnt)[0]
    r = ns.run(["/sbin/umount.metafuse", m.mnt, "-t", "fuse.metafuse"],
               env=m.env)
    assert r.returncode == 0, r.stderr
    assert not h.pid_alive(pid) and m.mnt not in ns.mounts()

    other = os.path.join(m.root, "tmpfs")
    os.mkdir(other)
    assert ns.run(["mount", "-t", "tmpfs", "tmpfs", other]).returncode == 0
    r = ns.run(["/sbin/umount.metafuse", other, "-t", "tmpfs"])
    assert r.returncode == 0, r.stderr
    assert other not in ns.mounts()


def test_mount_in_another_namespace(namespace, mounts):
    """mount -N NS / umount -N NS: libmount passes -N to the helpers,
    which mount and unmount (and wait) in that namespace."""
    ns = namespace()
    m = volume(mounts)
    # unshare execs sleep in a namespace cloned from ns: one process
    inner = ns.popen(["unshare", "-m", "--propagation", "private", "sh",
                      "-c", "echo in && exec sleep 600"])
    try:
        assert inner.stdout.readline() == "in\n"
        target = f"/proc/{inner.pid}/ns/mnt"
        r = mount8(ns, m, "-N", target, "-t", "fuse.metafuse")
        assert r.returncode == 0, r.stderr
        with open(f"/proc/{inner.pid}/mountinfo") as f:
            assert f" {m.mnt} " in f.read()
        assert m.mnt not in ns.mounts()
        pid = h.pids_with_arg(m.mnt)[0]
        write_file(f"/proc/{inner.pid}/root{m.mnt}/f", b"elsewhere")
        r = ns.run(["umount", "-N", target, m.mnt], env=m.env)
        assert r.returncode == 0, r.stderr
        assert not h.pid_alive(pid)
        with open(f"/proc/{inner.pid}/mountinfo") as f:
            assert f" {m.mnt} " not in f.read()
    finally:
        inner.kill()
        inner.communicate()
    m.wipe_cache()
    assert mount8(ns, m, "-t", "fuse.metafuse").returncode == 0
    pid = check_mounted(ns, m)
    assert read_file(ns.path(m.mnt, "f")) == b"elsewhere"
    umount8(ns, m, pid)


def test_default_cache_dir_without_home(namespace, mounts):
    """mount(8) runs its helpers without HOME: the default cache directory
    is then the one a login shell gets, ~/.cache/metafuse/VOLUME-ID under
    the home directory of the password database."""
    ns = namespace()
    m = volume(mounts, use_cache_opt=False)
    env = {k: v for k, v in m.env.items()
           if k not in ("HOME", "XDG_CACHE_HOME")}
    base = os.path.join(pwd.getpwuid(0).pw_dir, ".cache", "metafuse")
    before = set(os.listdir(base)) if os.path.isdir(base) else set()
    made = []
    try:
        assert mount8(ns, m, "-t", "fuse.metafuse", env=env).returncode == 0
        pid = check_mounted(ns, m)
        made = [d for d in set(os.listdir(base)) - before
                if m.mnt in open(os.path.join(base, d, "metafuse.log"),
                                 errors="replace").read()]
        assert len(made) == 1, (before, os.listdir(base))
        assert re.fullmatch(r"[0-9a-f]{32}", made[0]), made
        m.extra_logs.append(os.path.join(base, made[0], "metafuse.log"))
        umount8(ns, m, pid)
    finally:
        for d in made:
            m.save_log()
            shutil.rmtree(os.path.join(base, d), ignore_errors=True)
        m.extra_logs.clear()


def test_boot_mount_s3_from_fstab_options_alone(namespace, mounts, workdir):
    """A boot mount of an S3 volume gets nothing from an environment: the
    fstab line's credentials= (a file only root reads) and endpoint= are
    enough; a credentials file others can read is refused in one line."""
    if h.STORE_KIND != "s3":
        pytest.skip("about S3 volumes (METAFUSE_TEST_STORE=s3)")
    ns = namespace()
    m = volume(mounts)
    creds = os.path.join(workdir, "aws-credentials")
    with open(creds, "w") as f:
        f.write("[default]\n"
                f"aws_access_key_id = {os.environ['AWS_ACCESS_KEY_ID']}\n"
                "aws_secret_access_key = "
                f"{os.environ['AWS_SECRET_ACCESS_KEY']}\n")
    os.chmod(creds, 0o644)
    fstab = os.path.join(workdir, "fstab")
    with open(fstab, "w") as f:
        f.write(f"{m.store} {m.mnt} fuse.metafuse _netdev,"
                f"x-systemd.automount,credentials={creds},endpoint="
                f"{os.environ['METAFUSE_S3_ENDPOINT']},{m.opts_str} 0 0\n")
    bare = {"PATH": os.environ["PATH"]}
    for k, v in m.env.items():
        if k.endswith("SAN_OPTIONS"):
            bare[k] = v
    r = ns.run(["mount", "-T", fstab, m.mnt], env=bare)
    assert creds in one_line(r)
    assert m.mnt not in ns.mounts()
    os.chmod(creds, stat.S_IRUSR | stat.S_IWUSR)
    r = ns.run(["mount", "-T", fstab, m.mnt], env=bare)
    assert r.returncode == 0, r.stderr
    pid = check_mounted(ns, m)
    write_file(ns.path(m.mnt, "f"), b"booted")
    umount8(ns, m, pid)
    m.wipe_cache()
    r = ns.run(["mount", "-T", fstab, m.mnt], env=bare)
    assert r.returncode == 0, r.stderr
    pid = check_mounted(ns, m)
    assert read_file(ns.path(m.mnt, "f")) == b"booted"
    umount8(ns, m, pid)


def test_mistyped_command_is_not_a_mount(mounts):
    """`metafuse STORE MOUNTPOINT` means mount only when STORE is a path
    or a URL: a mistyped command is still one line saying so."""
    m = volume(mounts)
    r = m.cli("mout", m.mnt)
    assert one_line(r) == "metafuse: unknown command 'mout' (try " \
        "'metafuse --help')"
    assert r.returncode == 2
    assert not h.is_mounted(m.mnt)
