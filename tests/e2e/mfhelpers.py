"""Helpers shared by the metafuse end-to-end tests.

Everything here works from the outside, through the kernel: a test mounts a
volume with the real `metafuse` binary, uses ordinary system calls on the
mount point, and compares what it sees with what POSIX (or a reference
directory on the local disk) says.

The Mount class owns one volume (store directory, cache directory, mount
point) and guarantees cleanup: Mount.cleanup() lazily unmounts and kills the
daemon whatever state the test left it in, so a failing test never leaves a
stale mount behind.

Only the Python standard library is used; ctypes reaches the libc calls that
the os module lacks (renameat2, fallocate with a mode, utimensat with
UTIME_OMIT, getxattr with a caller-sized buffer).
"""

import contextlib
import ctypes
import ctypes.util
import errno
import glob
import hashlib
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("METAFUSE_BIN") or str(REPO / "build" / "metafuse")
EXERCISER = os.environ.get("METAFUSE_EXERCISER") or str(
    REPO / "build" / "tests" / "syscall_exerciser")

STORE_TOOL = os.environ.get("METAFUSE_STORE_TOOL") or str(
    REPO / "build" / "tests" / "store_tool")

# METAFUSE_TEST_STORE=s3 runs the suite on S3 volumes: each Mount gets
# s3://$METAFUSE_S3_BUCKET/<unique prefix> on $METAFUSE_S3_ENDPOINT (keys
# from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, as scripts/s3server.sh
# exports them).
STORE_KIND = os.environ.get("METAFUSE_TEST_STORE", "file")

MIB = 1024 * 1024
# The block size of the suite's volumes when a test does not choose one:
# mkfs's default for the kind of store (1 MiB in a directory, 4 MiB on
# S3), so that each pass tests what users of that store get.  Tests that
# count objects or bytes per file work from it.
DEFAULT_BLOCK_SIZE = 4 * MIB if STORE_KIND == "s3" else MIB

# METAFUSE_TEST_ENCRYPT=1 makes every Mount of the suite an encrypted
# volume (mkfs --encrypt), so that any e2e file runs encrypted unchanged;
# Mount(..., encrypt=True/False) chooses for one volume whatever the
# switch says.  The passphrase is METAFUSE_PASSPHRASE when the environment
# has one, else TEST_PASSPHRASE; METAFUSE_TEST_KDF=fast gives the key slot
# libsodium's minimum Argon2id limits (stored in the slot, so every later
# open is fast too), so the suite does not spend a second per command.
ENCRYPT = os.environ.get("METAFUSE_TEST_ENCRYPT", "") not in ("", "0")
TEST_PASSPHRASE = "metafuse test passphrase"

# Most tests want uploads to happen while they run.
DEFAULT_OPTS = {"writeback_delay": "0.2"}

# Lines of a daemon log (or of any captured stderr) that always fail a test.
SANITIZER_PATTERNS = [
    re.compile(p) for p in (
        r"AddressSanitizer", r"LeakSanitizer", r"ThreadSanitizer",
        r"MemorySanitizer", r"UndefinedBehaviorSanitizer",
        r"runtime error:", r"Assertion .* failed", r"\bassertion failed\b",
        r"double free", r"stack smashing", r"Segmentation fault",
    )
]
# Lines that fail a test unless the test allowed them.
ERROR_PATTERN = re.compile(r"\berror:|\bfatal\b|\bFATAL\b|\bpanic\b")


class MountError(Exception):
    pass


# ---- processes ------------------------------------------------------------

def run(args, timeout=120, env=None, input=None, cwd=None):
    """Run a command, capture text output, never raise on exit status."""
    return subprocess.run(
        [str(a) for a in args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, errors="replace",
        timeout=timeout, env=env, input=input, cwd=cwd)


def pid_alive(pid):
    """True when pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = data.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace")
                    for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def pids_with_arg(arg):
    """Pids of live processes having exactly arg among their arguments
    (our paths are unique temporary ones, so these are ours)."""
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        if arg in proc_cmdline(int(name)) and pid_alive(int(name)):
            out.append(int(name))
    return out


def vm_hwm_kib(pid):
    """Peak resident set size of pid in KiB (VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# ---- mounts ---------------------------------------------------------------

def _unescape_mountinfo(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mounted_paths():
    """Mount points from /proc/self/mountinfo (works even when the FUSE
    daemon is dead and stat() on the mount point fails with ENOTCONN)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            out.append(_unescape_mountinfo(fields[4]))
    return out


def is_mounted(path):
    return os.path.realpath(path) in mounted_paths()


def mount_fstype(path):
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if _unescape_mountinfo(fields[4]) == real:
                sep = fields.index("-")
                return fields[sep + 1]
    return None


def force_unmount(path):
    """Detach path however broken the mount is (lazy unmount)."""
    for _ in range(5):
        if not is_mounted(path):
            return
        r = run(["fusermount3", "-u", "-z", path], timeout=30)
        if r.returncode != 0 and is_mounted(path):
            run(["umount", "-l", path], timeout=30)


def wait_for_mount(path, timeout=30, proc=None):
    """Wait until path is a mount point that answers stat()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise MountError(f"daemon exited with {proc.returncode} "
                             f"before {path} was mounted")
        try:
            if os.path.ismount(path) or is_mounted(path):
                os.stat(path)
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise MountError(f"{path} not mounted after {timeout} s")


def sanitizer_env(env, log_dir):
    """env with sanitizer reports written to files under log_dir (a
    daemonized process has no terminal to report to)."""
    env = dict(env)
    prefix = os.path.join(log_dir, "sanitizer")
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
                "TSAN_OPTIONS"):
        cur = env.get(var, "")
        if var in ("ASAN_OPTIONS", "UBSAN_OPTIONS") or cur:
            env[var] = (cur + ":" if cur else "") + f"log_path={prefix}"
    return env


def sanitizer_reports(log_dir):
    """Contents of the sanitizer report files under log_dir."""
    out = []
    # os.walk, not a recursive glob: glob follows symlinks to directories,
    # and the trees tests make have symlink cycles (the model test's
    # reference tree), which made the walk exponential
    found = []
    for dirpath, _, files in os.walk(log_dir):
        found += [os.path.join(dirpath, f) for f in files
                  if f.startswith("sanitizer")]
    for path in sorted(found):
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        if text.strip():
            out.append(f"--- {path}\n{text}")
    return out


def format_opts(opts):
    parts = []
    for k, v in opts.items():
        if v is None or v is False:
            continue
        parts.append(k if v is True else f"{k}={v}")
    return ",".join(parts)


class Mount:
    """One metafuse volume and its mount, always cleaned up.

    root/      the test's private directory
      store/   the volume (STORE)
      cache/   cache_dir (the daemon's log is cache/metafuse.log)
      mnt/     the mount point
    """

    def __init__(self, root, store=None, cache=None, mnt=None, opts=None,
                 env=None, use_cache_opt=True, encrypt=None):
        self.root = str(root)
        self.encrypt = ENCRYPT if encrypt is None else bool(encrypt)
        if store is None and STORE_KIND == "s3":
            store = "s3://%s/t-%s" % (os.environ["METAFUSE_S3_BUCKET"],
                                      os.urandom(8).hex())
        self.store = store if store is not None else os.path.join(
            self.root, "store")
        self.cache = cache if cache is not None else os.path.join(
            self.root, "cache")
        self.mnt = mnt if mnt is not None else os.path.join(self.root, "mnt")
        os.makedirs(self.mnt, exist_ok=True)
        self.opts = dict(DEFAULT_OPTS)
        if use_cache_opt:
            self.opts["cache_dir"] = self.cache
        if opts:
            self.opts.update(opts)
        self.env = sanitizer_env(env if env is not None else os.environ,
                                 self.root)
        if self.store.startswith("s3://") and \
                os.environ.get("METAFUSE_S3_ENDPOINT"):
            self.env.setdefault("AWS_ENDPOINT_URL",
                                os.environ["METAFUSE_S3_ENDPOINT"])
        if self.encrypt:
            self.env.setdefault("METAFUSE_PASSPHRASE", TEST_PASSPHRASE)
            self.env.setdefault("METAFUSE_TEST_KDF", "fast")
        self.passphrase = self.env.get("METAFUSE_PASSPHRASE")
        self.proc = None        # Popen of a foreground (-f) daemon
        self.pid = None         # the daemon's pid
        self.saved_logs = []    # logs of wiped cache directories
        self.fg_logs = []       # stderr files of foreground daemons
        self.extra_logs = []    # more log files or globs to scan
        self.allowed = []       # regexes of allowed error lines
        self.mounts = 0
        self.killed = False     # kill() was used: a dead daemon is expected

    # -- commands

    def cli(self, *args, timeout=120):
        return run([BIN, *args], timeout=timeout, env=self.env)

    def mkfs(self, block_size=None, check=True):
        args = ["mkfs"]
        if self.encrypt:
            args.append("--encrypt")
        if block_size is None and STORE_KIND == "s3":
            block_size = DEFAULT_BLOCK_SIZE
        if block_size is not None:
            args += ["--block-size", str(block_size)]
        r = self.cli(*args, self.store)
        if check and r.returncode != 0:
            raise MountError(f"mkfs failed ({r.returncode}): {r.stderr}")
        return r

    def fsck_verified(self):
        """fsck --verify-data of the (unmounted) volume, which must find
        every object sound; returns its report."""
        r = self.cli("fsck", "--verify-data", self.store)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "verified" in r.stdout, r.stdout
        return r.stdout

    def mount(self, foreground=False, opts=None, timeout=60, store=True):
        """Mount; with foreground=True run `mount -f` under Popen (the test
        gets the daemon pid in self.pid), else the daemonizing form, which
        must return only once the mount answers."""
        o = dict(self.opts)
        if opts:
            o.update(opts)
        args = [BIN, "mount"]
        if foreground:
            args.append("-f")
        optstr = format_opts(o)
        if optstr:
            args += ["-o", optstr]
        if store:
            args.append(self.store)
        args.append(self.mnt)
        self.mounts += 1
        if foreground:
            logpath = os.path.join(self.root, f"fg-{self.mounts}.log")
            self.fg_logs.append(logpath)
            log = open(logpath, "wb")
            self.proc = subprocess.Popen(args, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL,
                                         env=self.env,
                                         start_new_session=True)
            log.close()
            self.pid = self.proc.pid
            try:
                wait_for_mount(self.mnt, timeout, self.proc)
            except MountError as e:
                with open(logpath, errors="replace") as f:
                    raise MountError(f"{e}\n{f.read()[-4000:]}") from None
            return self
        r = run(args, timeout=timeout, env=self.env)
        if r.returncode != 0:
            raise MountError(f"mount failed ({r.returncode}): "
                             f"{r.stderr.strip()}\n{self.log_tail()}")
        # the contract: usable as soon as the command returned
        if not (os.path.ismount(self.mnt) or is_mounted(self.mnt)):
            raise MountError(f"`metafuse mount` returned 0 but {self.mnt} "
                             f"is not a mount point")
        os.stat(self.mnt)
        pids = pids_with_arg(self.mnt)
        self.pid = pids[0] if len(pids) == 1 else None
        return self

    def umount(self, timeout=600):
        """`metafuse umount`: must return only after everything is uploaded
        and the daemon exited."""
        if self.proc is not None:
            # Reap the foreground daemon while umount waits for it, as any
            # supervising parent would (an unreaped child stays a zombie).
            p = subprocess.Popen([BIN, "umount", self.mnt],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True,
                                 errors="replace", env=self.env)
            deadline = time.monotonic() + timeout
            while p.poll() is None and time.monotonic() < deadline:
                self.proc.poll()
                time.sleep(0.02)
            if p.poll() is None:
                p.kill()
            out, err = p.communicate()
            r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        else:
            r = run([BIN, "umount", self.mnt], timeout=timeout, env=self.env)
        if r.returncode != 0:
            raise MountError(f"umount failed ({r.returncode}): "
                             f"{r.stderr.strip()}\n{self.log_tail()}")
        if is_mounted(self.mnt):
            raise MountError(f"{self.mnt} still mounted after umount")
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                raise MountError("foreground daemon still running 5 s "
                                 "after `metafuse umount` returned") from None
            self.proc = None
            if rc != 0:
                raise MountError(f"foreground daemon exited with {rc}\n"
                                 f"{self.log_tail()}")
        elif self.pid is not None and pid_alive(self.pid):
            raise MountError(f"daemon {self.pid} still alive after "
                             f"`metafuse umount` returned")
        self.pid = None
        return r

    def remount(self, wipe_cache=False, **kw):
        self.umount()
        if wipe_cache:
            self.wipe_cache()
        return self.mount(**kw)

    def wipe_cache(self):
        assert not is_mounted(self.mnt), "wipe_cache while mounted"
        self.save_log()
        shutil.rmtree(self.cache, ignore_errors=True)

    def save_log(self):
        for path in self.log_files():
            if path in self.fg_logs:
                continue
            try:
                with open(path, errors="replace") as f:
                    self.saved_logs.append(f.read())
            except OSError:
                pass

    def kill(self, sig=signal.SIGKILL):
        """Kill the daemon (simulated crash); the mount is left dead."""
        self.killed = True
        pids = set(pids_with_arg(self.mnt))
        if self.pid:
            pids.add(self.pid)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # until the pid is gone for good (pid 1 may reap orphans late)
        deadline = time.monotonic() + 15
        while any(os.path.exists(f"/proc/{p}") for p in pids) and \
                time.monotonic() < deadline:
            time.sleep(0.05)

    def check_alive(self):
        """A problem description when the daemon died under a live mount
        (a crash: under ASan+UBSan with halt_on_error a daemonized mount's
        report goes to its stderr, /dev/null, so this is all one sees)."""
        if self.killed or not is_mounted(self.mnt):
            return None
        try:
            os.statvfs(self.mnt)   # always asks the daemon (stat may not)
        except OSError as e:
            if e.errno in (errno.ENOTCONN, errno.ECONNABORTED):
                rc = self.proc.poll() if self.proc is not None else None
                return (f"daemon of {self.mnt} died while mounted "
                        f"({os.strerror(e.errno)}"
                        + (f", exit status {rc}" if rc is not None else "")
                        + ")")
        return None

    def cleanup(self):
        """Leave nothing behind, whatever happened: kill the daemon, lazily
        unmount, reap the foreground process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        for pid in pids_with_arg(self.mnt):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        force_unmount(self.mnt)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # a killed daemon may need a moment to release the mount
        deadline = time.monotonic() + 10
        while is_mounted(self.mnt) and time.monotonic() < deadline:
            force_unmount(self.mnt)
            time.sleep(0.1)

    # -- logs

    def allow_errors(self, *patterns):
        """Error lines matching any of the regexes do not fail the test."""
        self.allowed.extend(re.compile(p) for p in patterns)

    def log_files(self):
        files = [os.path.join(self.cache, "metafuse.log")]
        files += self.fg_logs
        for pattern in self.extra_logs:
            files += glob.glob(pattern)
        return [f for f in files if os.path.exists(f)]

    def log_text(self):
        parts = list(self.saved_logs)
        for path in self.log_files():
            try:
                with open(path, errors="replace") as f:
                    parts.append(f.read())
            except OSError:
                pass
        return "\n".join(parts)

    def log_tail(self, n=40):
        lines = self.log_text().splitlines()
        return "\n".join(lines[-n:])

    def log_problems(self):
        problems = []
        for line in self.log_text().splitlines():
            if any(p.search(line) for p in SANITIZER_PATTERNS):
                problems.append(line)
            elif ERROR_PATTERN.search(line) and not any(
                    p.search(line) for p in self.allowed):
                problems.append(line)
        return problems

    # -- the store

    @property
    def is_local(self):
        return "://" not in self.store or self.store.startswith("file://")

    @property
    def store_dir(self):
        """The local store's directory; a test that needs one is skipped
        on another kind of store."""
        if not self.is_local:
            import pytest
            pytest.skip("needs the store's files (a local store)")
        s = self.store
        return s[len("file://"):] if s.startswith("file://") else s

    def store_ls(self, prefix):
        """{key: size} of the objects under prefix, through the store
        layer (any kind of store)."""
        r = run([STORE_TOOL, self.store, "ls", prefix], env=self.env)
        if r.returncode != 0:
            raise MountError(f"store_tool ls failed: {r.stderr}")
        out = {}
        for line in r.stdout.splitlines():
            key, size = line.rsplit("\t", 1)
            out[key] = int(size)
        return out

    def store_get(self, key):
        """The bytes of object key as the store holds them (sealed on an
        encrypted volume), through the store layer (any kind of store)."""
        tmp = os.path.join(self.root, "store-tool.obj")
        r = run([STORE_TOOL, self.store, "get", key, tmp], env=self.env)
        if r.returncode != 0:
            raise MountError(f"store_tool get {key} failed: {r.stderr}")
        try:
            return read_file(tmp)
        finally:
            os.unlink(tmp)

    def store_put(self, key, data):
        """Store data under key as is (a test damaging or swapping an
        object), through the store layer."""
        tmp = os.path.join(self.root, "store-tool.obj")
        write_file(tmp, data)
        try:
            r = run([STORE_TOOL, self.store, "put", key, tmp], env=self.env)
        finally:
            os.unlink(tmp)
        if r.returncode != 0:
            raise MountError(f"store_tool put {key} failed: {r.stderr}")

    def store_del(self, key):
        r = run([STORE_TOOL, self.store, "del", key], env=self.env)
        if r.returncode != 0:
            raise MountError(f"store_tool del {key} failed: {r.stderr}")

    def data_objects(self):
        """{key: size} of every block object in the store."""
        if not self.is_local:
            return {k: v for k, v in self.store_ls("data/").items()
                    if re.fullmatch(r"data/[0-9a-f]{2}/[0-9a-f]{64}", k)}
        out = {}
        base = os.path.join(self.store_dir, "data")
        for path in glob.glob(os.path.join(base, "*", "*")):
            name = os.path.basename(path)
            if re.fullmatch(r"[0-9a-f]{64}", name):
                out[os.path.relpath(path, self.store_dir)] = \
                    os.path.getsize(path)
        return out

    def store_bytes(self, sub="data"):
        if not self.is_local:
            return sum(self.store_ls(sub + "/" if sub else "").values())
        total = 0
        for dirpath, _, files in os.walk(os.path.join(self.store_dir,
                                                      sub)):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except FileNotFoundError:
                    pass
        return total

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)


_HELP_CACHE = {}


def mount_option_supported(name):
    """True when `metafuse mount --help` documents option name (for
    options beyond the issue's list, which tests use only when present)."""
    if "mount" not in _HELP_CACHE:
        r = run([BIN, "mount", "--help"], timeout=30)
        _HELP_CACHE["mount"] = r.stdout + r.stderr
    return re.search(rf"(^|[\s,]){re.escape(name)}\b",
                     _HELP_CACHE["mount"]) is not None


# ---- libc through ctypes --------------------------------------------------

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6",
                   use_errno=True)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                           ctypes.c_char_p, ctypes.c_uint]
libc.fallocate64.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                             ctypes.c_int64]
libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                          ctypes.c_size_t]
libc.getxattr.restype = ctypes.c_ssize_t
libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p,
                           ctypes.c_size_t]
libc.listxattr.restype = ctypes.c_ssize_t


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p,
                           ctypes.POINTER(Timespec), ctypes.c_int]


def _check(ret, what):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def renameat2(old, new, flags):
    return _check(libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD,
                                 os.fsencode(new), flags), "renameat2")


def fallocate(fd, mode, offset, length):
    return _check(libc.fallocate64(fd, mode, offset, length), "fallocate")


def utimensat(path, atime, mtime, follow=True):
    """atime/mtime: (sec, nsec) tuples; nsec may be UTIME_NOW/UTIME_OMIT."""
    ts = (Timespec * 2)(Timespec(*atime), Timespec(*mtime))
    return _check(libc.utimensat(AT_FDCWD, os.fsencode(path), ts,
                                 0 if follow else AT_SYMLINK_NOFOLLOW),
                  "utimensat")


def getxattr_sized(path, name, size):
    """getxattr(2) with a buffer of exactly size bytes: (ret, data)."""
    buf = ctypes.create_string_buffer(max(size, 1))
    ret = libc.getxattr(os.fsencode(path), os.fsencode(name),
                        buf if size else None, size)
    _check(ret, "getxattr")
    return ret, buf.raw[:ret] if size else b""


def listxattr_sized(path, size):
    buf = ctypes.create_string_buffer(max(size, 1))
    ret = libc.listxattr(os.fsencode(path), buf if size else None, size)
    _check(ret, "listxattr")
    return ret


def expect_errno(err, func, *args, **kw):
    """Call func and require it to fail with errno err."""
    try:
        func(*args, **kw)
    except OSError as e:
        assert e.errno == err, (
            f"{func.__name__}{args}: expected {errno.errorcode[err]}, got "
            f"{errno.errorcode.get(e.errno, e.errno)} ({e})")
        return e
    raise AssertionError(f"{func.__name__}{args}: expected "
                         f"{errno.errorcode[err]}, but it succeeded")


# ---- content --------------------------------------------------------------

def rand_bytes(seed, length):
    """Deterministic, incompressible bytes for seed."""
    r = random.Random(seed)
    if length < 1 << 28:
        return r.randbytes(length)
    # randbytes() takes at most 2**31 bits at once
    return b"".join(r.randbytes(min(1 << 27, length - off))
                    for off in range(0, length, 1 << 27))


def file_sha256(path, chunk=MIB):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


# ---- tree snapshots -------------------------------------------------------

def user_xattrs(path):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return out
        raise
    for name in sorted(names):
        if name.startswith("user."):
            out[name] = os.getxattr(path, name, follow_symlinks=False)
    return out


def _stat_fields(st, times):
    d = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode),
         "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink}
    if not stat.S_ISDIR(st.st_mode):
        d["size"] = st.st_size
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        d["rdev"] = st.st_rdev
    if times:
        d["atime_ns"] = st.st_atime_ns
        d["mtime_ns"] = st.st_mtime_ns
        d["ctime_ns"] = st.st_ctime_ns
    return d


def snapshot(root, content=True, times=False, xattrs=True, root_attrs=True):
    """A comparable description of the tree under root: per relative path
    its type, permission bits, owner, link count, size, content hash,
    symlink target, user xattrs, optionally times, and the hard-link groups
    (without inode numbers)."""
    snap = {}
    by_ino = {}

    def visit(rel, path):
        st = os.lstat(path)
        d = _stat_fields(st, times)
        if stat.S_ISREG(st.st_mode):
            if content:
                d["sha256"] = file_sha256(path)
            by_ino.setdefault(st.st_ino, []).append(rel)
        elif stat.S_ISLNK(st.st_mode):
            d["target"] = os.readlink(path)
        if xattrs and not stat.S_ISLNK(st.st_mode):
            d["xattrs"] = user_xattrs(path)
        snap[rel] = d
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(path)):
                visit(os.path.join(rel, name) if rel != "." else name,
                      os.path.join(path, name))

    visit(".", root)
    if not root_attrs:
        snap.pop(".")
    for paths in by_ino.values():
        if len(paths) > 1:
            group = tuple(sorted(paths))
            for p in paths:
                snap[p]["links"] = group
    return snap


def stat_snapshot(root):
    """Times and attributes only (reads no file content)."""
    return snapshot(root, content=False, times=True, xattrs=False)


def diff_snapshots(a, b, name_a="a", name_b="b", limit=30):
    """Human-readable differences between two snapshots ([] if equal)."""
    out = []
    for p in sorted(set(a) | set(b)):
        if p not in a:
            out.append(f"{p}: only in {name_b}: {b[p]}")
        elif p not in b:
            out.append(f"{p}: only in {name_a}: {a[p]}")
        elif a[p] != b[p]:
            keys = sorted(set(a[p]) | set(b[p]))
            diffs = [f"{k}: {a[p].get(k)!r} != {b[p].get(k)!r}"
                     for k in keys if a[p].get(k) != b[p].get(k)]
            out.append(f"{p}: " + "; ".join(diffs))
        if len(out) >= limit:
            out.append("...")
            break
    return out


@contextlib.contextmanager
def helper_process(args, workdir, name):
    """Run a helper that writes its port to a file; yield the port."""
    port_file = os.path.join(workdir, f"{name}.port")
    log = open(os.path.join(workdir, f"{name}.log"), "wb")
    p = subprocess.Popen([sys.executable, *map(str, args),
                          "--port-file", port_file],
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(port_file):
            assert p.poll() is None, f"{name} died"
            assert time.monotonic() < deadline, f"no {name} port"
            time.sleep(0.05)
        with open(port_file) as f:
            yield int(f.read())
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
