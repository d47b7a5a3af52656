#!/usr/bin/env python3
"""bench.py - metafuse against the FUSE ceiling and its peers, one run.

Called by bench/run, which installs the tools, builds metafuse and
passthrough_ll and fetches the tarball; see bench/README.md for what is
measured and how.

Design:
  * A *target* is a place files live: the local disk, passthrough_ll over
    it, metafuse on a local or S3 store, s3fs-fuse, rclone mount.  Each
    knows how to start fresh (empty store), mount, unmount (returning only
    once its data is safe: that time is measured), wipe its local cache
    (for cold reads), find its daemon's pid and count what reached its
    store.
  * A *workload* mounts a fresh target, runs timed phases and records one
    row per figure: (run, target, workload, metric, value).
  * Runs are interleaved: for each run, for each workload, every target in
    turn (the order rotates from run to run), so that drift of a shared
    machine hits all targets alike.  The summary is the median over runs.

Invariants:
  1. Only processes this script started are signalled, by pid; only
     mountpoints it created are unmounted.
  2. Traffic goes to 127.0.0.0/8 only (the S3 endpoint is checked).
  3. A failed workload on one target is recorded as an error and the
     benchmark goes on; the exit status says whether any failed.
"""

import argparse
import collections
import csv
import datetime
import ipaddress
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

from bench_clone import w_clone
from bench_snapshot import w_snapshot
from bench_history import w_history
from bench_follow import w_follow
from bench_meta import w_meta
from bench_report import fmt_csv, summarize
from bench_scale import w_scale

MiB = 1 << 20
GiB = 1 << 30
# metafuse volumes get mkfs's default block size (1 MiB in a directory,
# 4 MiB in S3), read back from what mkfs prints
MKFS_BLOCK_RE = re.compile(rb"\(block size (\d+)\)")

# Option names of metafuse's S3 backend, kept in one place because they may
# still change: {endpoint} is replaced by the endpoint URL.
METAFUSE_S3_OPTS = os.environ.get("METAFUSE_S3_MOUNT_OPTS",
                                  "endpoint={endpoint},path_style")

# passthrough_ll keeps an fd open for every inode the kernel knows, and
# this sandbox's hard limit of open files is 20,000 (raising it needs
# CAP_SYS_RESOURCE): the full tarball (21,116 entries) would fail there
# with EMFILE, so the ports to six other architectures are left out.
TAR_FULL = [f"--exclude=glibc-2.36/sysdeps/{a}" for a in
            ("powerpc", "sparc", "mach", "ia64", "s390", "i386")]

SIZES = {
    "full": dict(seq=1024 * MiB, rand_file=256 * MiB, rand_ops=8192,
                 small=10000, tree=1000, tar_args=TAR_FULL, meta=5000,
                 meta_tree="include", clone_file=1024 * MiB,
                 clone_tree=10000, scale=1000000, history_files=100000,
                 follow_fsyncs=20),
    "quick": dict(seq=64 * MiB, rand_file=32 * MiB, rand_ops=512,
                  small=500, tree=100, tar_args=["glibc-2.36/elf"],
                  meta=1000, meta_tree="include/linux",
                  clone_file=64 * MiB, clone_tree=1000, scale=100000,
                  history_files=2000, follow_fsyncs=5),
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def now():
    return time.perf_counter()


def run(cmd, check=True, quiet=True, env=None, timeout=None):
    r = subprocess.run(cmd, stdout=subprocess.PIPE if quiet else None,
                       stderr=subprocess.PIPE if quiet else None,
                       env=env, timeout=timeout)
    if check and r.returncode != 0:
        err = (r.stderr or b"").decode(errors="replace").strip()[-400:]
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {err}")
    return r


def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        log(f"note: cannot drop caches ({e}); reads are not cold")


def is_mounted(path):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split()[4] == path:
                return True
    return False


def wait_mounted(path, proc=None, timeout=60):
    t_end = time.time() + timeout
    while time.time() < t_end:
        if is_mounted(path):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"daemon exited ({proc.returncode}) "
                               f"before {path} was mounted")
        time.sleep(0.05)
    raise RuntimeError(f"{path} not mounted after {timeout} s")


def find_daemon(mnt):
    """The pid of the process whose command line names mountpoint mnt."""
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if mnt.encode() in args and b"umount" not in args:
            return int(d)
    return None


def peak_rss_mib(pid):
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def proc_cpu_s(pid):
    """utime + stime of process pid (all its threads, live and gone), in
    seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """The CPU seconds a daemon spends from now until it exits (or end()):
    a thread samples /proc/PID/stat every 10 ms, because the daemon does
    the last of its uploads during the unmount and then is gone."""

    def __init__(self, pid):
        self.pid = pid
        self.t0 = self.last = proc_cpu_s(pid)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _sample(self):
        try:
            self.last = proc_cpu_s(self.pid)
            return True
        except (OSError, ValueError, IndexError):
            return False

    def _loop(self):
        while not self.done.wait(0.01) and self._sample():
            pass

    def end(self):
        self.done.set()
        self.thread.join()
        self._sample()
        return self.last - self.t0


def tree_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for n in files:
            try:
                total += os.lstat(os.path.join(root, n)).st_size
            except OSError:
                pass
    return total


class StoreWatch:
    """Counts requests to a local-directory store from inotify events.

    metafuse's file backend writes an object as a temp file ending in '~'
    and renames it over the key, so a put is a MOVED_TO, a delete a DELETE
    and a get (or head) an OPEN of a key; opens of temp files and of
    directories (listings) are not counted.  Bytes are the size of each
    object when it arrives.  Best effort: an event in a directory created
    a moment before may be missed before its watch is set.
    """

    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()
        self.c = dict(put=0, get=0, delete=0, bytes_put=0)
        self.proc = subprocess.Popen(
            ["inotifywait", "-m", "-r", "-e", "moved_to,delete,open",
             "--format", "%e|%w%f", root],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:  # wait for the watches
            if "established" in line:
                break
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        for line in self.proc.stdout:
            ev, _, path = line.rstrip("\n").partition("|")
            if "ISDIR" in ev or path.endswith("~"):
                continue
            with self.lock:
                if ev.startswith("MOVED_TO"):
                    self.c["put"] += 1
                    try:
                        self.c["bytes_put"] += os.stat(path).st_size
                    except OSError:
                        pass
                elif ev.startswith("DELETE"):
                    self.c["delete"] += 1
                elif ev.startswith("OPEN"):
                    self.c["get"] += 1

    def snapshot(self):
        time.sleep(0.3)  # let queued events arrive
        with self.lock:
            return dict(self.c)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


# ---------------------------------------------------------------- trash

# Deleting a target's old files right before it runs would bill it for the
# harness's cleanup: on ext4 without a journal (this machine's disk), every
# inode allocation skips the inodes freed in the last 60 s (300 s more while
# their inode table block is dirty), so a metafuse run that creates 2,000
# block files after the harness deleted the last run's 20,000 spent a third
# of its CPU there.  Old files go to a trash directory instead, emptied at
# the end of the run, or earlier when the disk runs short of space.
TRASH_MIN_FREE = 20 * 1024 * MiB
_trash = dict(dir=None, n=0)


def trash_init(work):
    _trash["dir"] = os.path.join(work, "trash")
    empty_trash()
    os.makedirs(_trash["dir"])


def empty_trash():
    if _trash["dir"] and os.path.exists(_trash["dir"]):
        shutil.rmtree(_trash["dir"], ignore_errors=True)


def discard(path):
    """Moves path out of the way (deleted at the end of the run)."""
    if not os.path.lexists(path):
        return
    if not _trash["dir"]:
        shutil.rmtree(path, ignore_errors=True)
        return
    st = os.statvfs(_trash["dir"])
    if st.f_bavail * st.f_frsize < TRASH_MIN_FREE:
        log("note: the disk runs short of space; emptying the trash now")
        empty_trash()
        os.makedirs(_trash["dir"])
    _trash["n"] += 1
    os.rename(path, os.path.join(_trash["dir"], str(_trash["n"])))


# ---------------------------------------------------------------- targets

class Target:
    name = "?"
    fuse = True
    s3 = False

    def __init__(self, work):
        self.dir = os.path.join(work, self.name)
        self.mnt = os.path.join(self.dir, "mnt")
        self.pid = None
        self.proc = None
        self.watch = None

    def fresh(self):
        """Unmounted, empty state."""
        discard(self.dir)
        os.makedirs(self.mnt)

    def mount(self):
        raise NotImplementedError

    def unmount(self):
        """Returns once the data is safe in the store."""
        raise NotImplementedError

    def wipe_cache(self):
        pass

    def rss(self):
        return peak_rss_mib(self.pid)

    def counters(self):
        """Cumulative store counters: dict or None."""
        return self.watch.snapshot() if self.watch else None

    def close(self):
        if self.watch:
            self.watch.stop()
            self.watch = None

    def _fuse_unmount(self):
        run(["fusermount3", "-u", self.mnt])
        if self.proc is not None:
            self.proc.wait(timeout=600)
            self.proc = None
        self.pid = None


class Disk(Target):
    name = "disk"
    fuse = False
    skip = ("scale",)

    def mount(self):
        return self.mnt

    def unmount(self):
        os.sync()


class Passthrough(Target):
    name = "passthrough_ll"

    def __init__(self, work, binary):
        super().__init__(work)
        self.binary = binary
        self.src = os.path.join(self.dir, "src")

    def fresh(self):
        super().fresh()
        os.makedirs(self.src)

    def mount(self):
        self.proc = subprocess.Popen(
            [self.binary, "-f", "-o", f"source={self.src}", self.mnt],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_mounted(self.mnt, self.proc)
        self.pid = self.proc.pid
        return self.mnt

    def unmount(self):
        self._fuse_unmount()
        os.sync()


# The passphrase of the encrypted targets (metafuse-enc, metafuse-s3-enc).
# Their workloads run on key slots made with METAFUSE_TEST_KDF=fast
# (libsodium's minimum Argon2id limits), so that a key derivation per
# mount stays out of the figures and out of the daemon's peak memory; the
# `mount` workload makes its volume with mkfs's real limits instead.
ENC_PASSPHRASE = "metafuse bench passphrase"
# --quick keeps the encrypted targets to the figures
ENC_QUICK_WORKLOADS = ("seq", "rand", "small", "mount")


class Metafuse(Target):
    def __init__(self, work, binary, name="metafuse", s3=None, opts="",
                 encrypt=False, plain=None):
        self.name = name
        super().__init__(work)
        self.binary = binary
        self.s3cfg = s3
        self.s3 = s3 is not None
        self.opts = opts
        self.encrypt = encrypt
        self.plain = plain      # the plain target an encrypted one is to
        self.cache = os.path.join(self.dir, "cache")
        self.seq = 0
        self.real_kdf = False   # next fresh(): mkfs with the real limits

    def env(self, mkfs=False):
        env = dict(self.s3cfg["env"] if self.s3 else os.environ)
        if self.encrypt:
            env["METAFUSE_PASSPHRASE"] = ENC_PASSPHRASE
            env.pop("METAFUSE_TEST_KDF", None)
            if mkfs and not self.real_kdf:
                env["METAFUSE_TEST_KDF"] = "fast"
        return env

    def close(self):
        super().close()
        if self.s3 and self.seq:
            s3_purge(self.s3cfg, self.url.split("/", 3)[3])

    def fresh(self):
        self.close()
        super().fresh()
        if self.s3:
            self.seq += 1
            self.url = (f"s3://{self.s3cfg['bucket']}/{self.s3cfg['prefix']}"
                        f"/{self.name}-{os.getpid()}-{self.seq}")
        else:
            self.url = os.path.join(self.dir, "store")
        cmd = [self.binary, "mkfs"]
        if self.encrypt:
            cmd.append("--encrypt")
        if self.s3:
            cmd += ["-o", METAFUSE_S3_OPTS.format(
                endpoint=self.s3cfg["endpoint"])]
        r = run(cmd + [self.url], env=self.env(mkfs=True))
        self.real_kdf = False
        m = MKFS_BLOCK_RE.search(r.stdout)
        if not m:
            raise RuntimeError(f"mkfs printed no block size: {r.stdout!r}")
        self.block_size = int(m.group(1))
        if not self.s3:
            self.watch = StoreWatch(self.url)

    def mount(self):
        opts = f"cache_dir={self.cache}"
        if self.s3:
            opts += "," + METAFUSE_S3_OPTS.format(
                endpoint=self.s3cfg["endpoint"])
        if self.opts:
            opts += "," + self.opts
        run([self.binary, "mount", "-o", opts, self.url, self.mnt],
            env=self.env())
        self.pid = find_daemon(self.mnt)
        return self.mnt

    def unmount(self):
        run([self.binary, "umount", self.mnt], timeout=1800)
        self.pid = None

    def wipe_cache(self):
        discard(self.cache)

    def counters(self):
        if self.s3:
            return s3_counters(self.s3cfg, self.url.split("/", 3)[3])
        return super().counters()


def free_port():
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


# The harness's own requests (rclone size, purge, mkdir) carry this user
# agent, so that the server's access log can leave them out.
HARNESS_UA = "metafuse-bench-harness"

# radosgw's (beast) access line: '... beast: 0x..: ADDR - USER [TIME]
# "METHOD TARGET HTTP/1.1" STATUS BYTES - "AGENT" - latency=...', BYTES
# being the body bytes of the request plus those of the response.
ACCESS_RE = re.compile(r' beast: \S+ \S+ - \S+ \[[^\]]*\] "(\w+) \S+ [^"]*" '
                       r'\d+ (\d+) \S+ ("[^"]*"|-) ')


class AccessLog:
    """Requests the S3 server answered, from its access log (the targets
    run one at a time, so a window of the log is one target's traffic)."""

    def __init__(self, path):
        self.path, self.pos, self.part = path, 0, b""
        self.c = collections.Counter()

    def snapshot(self):
        time.sleep(0.3)  # the server writes its log from a thread
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = self.part + f.read()
        self.pos += len(data) - len(self.part)
        lines = data.split(b"\n")
        self.part = lines.pop()
        for line in lines:
            m = ACCESS_RE.search(line.decode(errors="replace"))
            if not m or m.group(3) == f'"{HARNESS_UA}"':
                continue
            method, nbytes = m.group(1).lower(), int(m.group(2))
            self.c["requests"] += 1
            self.c[method] += 1
            if method in ("put", "post"):  # a PUT's or POST's answer has
                self.c["bytes_put"] += nbytes  # no body (bar a few bytes)
        return dict(self.c)


def rclone_harness(cfg, *args):
    return run(["rclone", "--user-agent", HARNESS_UA] + list(args),
               check=False, env=cfg["env"])


def s3_counters(cfg, prefix):
    """Bytes stored under prefix (the server's data usage: rclone size)
    and, with the server's access log, requests and bytes sent to it."""
    out = {}
    r = rclone_harness(cfg, "size", "--json",
                       f"bench:{cfg['bucket']}/{prefix}")
    try:
        out["stored"] = json.loads(r.stdout)["bytes"]
    except (ValueError, KeyError):
        pass
    if cfg.get("access"):
        out.update(cfg["access"].snapshot())
    return out or None


def s3_purge(cfg, prefix):
    rclone_harness(cfg, "purge", f"bench:{cfg['bucket']}/{prefix}")


class S3fs(Target):
    name = "s3fs"
    s3 = True
    skip = ("meta", "scale")  # compared with passthrough_ll only

    def __init__(self, work, cfg):
        super().__init__(work)
        self.cfg = cfg
        self.seq = 0

    def fresh(self):
        self.close()
        super().fresh()
        self.seq += 1
        self.prefix = f"{self.cfg['prefix']}/s3fs-{os.getpid()}-{self.seq}"
        self.passwd = os.path.join(self.dir, "passwd")
        fd = os.open(self.passwd, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (f"{self.cfg['key']}:{self.cfg['secret']}\n").encode())
        os.close(fd)

    def mount(self):
        self.proc = subprocess.Popen(
            ["s3fs", "-f", f"{self.cfg['bucket']}:/{self.prefix}", self.mnt,
             "-o", f"url={self.cfg['endpoint']},use_path_request_style,"
             f"passwd_file={self.passwd}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_mounted(self.mnt, self.proc)
        self.pid = self.proc.pid
        return self.mnt

    def unmount(self):
        self._fuse_unmount()

    def counters(self):
        return s3_counters(self.cfg, self.prefix)

    def close(self):
        if self.seq:
            s3_purge(self.cfg, self.prefix)


class S3Ceiling(Target):
    """Not a file system: the S3 server's own limit for the sequential
    write.  store_tool putrate PUTs the same bytes from memory, 4 MiB
    objects from 4 threads, over metafuse's S3 client: no FUSE, no cache
    file, no block names to hash.  On a machine where the server shares
    the cores, no client writes faster; the verdict on "2x s3fs" is read
    against it."""
    name = "s3-ceiling"
    fuse = False
    s3 = True
    only = ("seq",)

    def __init__(self, work, cfg, tool):
        super().__init__(work)
        self.cfg, self.tool, self.seq = cfg, tool, 0

    def fresh(self):
        super().fresh()
        self.seq += 1

    def put_rate(self, nbytes):
        prefix = f"{self.cfg['prefix']}/ceiling-{os.getpid()}-{self.seq}"
        count = max(1, nbytes // (4 * MiB))
        r = run([self.tool, f"s3://{self.cfg['bucket']}/{prefix}",
                 "putrate", "x", str(count), "4M", "4"],
                env=dict(self.cfg["env"], AWS_ENDPOINT_URL=self.cfg["endpoint"]))
        return count * 4 * MiB / MiB / float(r.stdout.split()[0])

    def rss(self):
        return None


class Rclone(Target):
    name = "rclone"
    s3 = True
    skip = ("meta", "scale")

    def __init__(self, work, cfg):
        super().__init__(work)
        self.cfg = cfg
        self.seq = 0
        self.cache = os.path.join(self.dir, "cache")

    def fresh(self):
        self.close()
        super().fresh()
        self.seq += 1
        self.prefix = f"{self.cfg['prefix']}/rclone-{os.getpid()}-{self.seq}"

    def mount(self):
        self.rc = f"127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            ["rclone", "mount", f"bench:{self.cfg['bucket']}/{self.prefix}",
             self.mnt, "--vfs-cache-mode", "full",
             "--cache-dir", self.cache,
             "--rc", "--rc-addr", self.rc, "--rc-no-auth"],
            env=self.cfg["env"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        wait_mounted(self.mnt, self.proc)
        self.pid = self.proc.pid
        return self.mnt

    def unmount(self):
        # rclone does not upload at unmount: what its VFS cache holds is
        # uploaded after --vfs-write-back (5 s) or at its next start.  So
        # wait, through its remote control, until nothing is queued or in
        # flight: then the data is in the store.
        t_end = time.time() + 1800
        while time.time() < t_end:
            r = run(["rclone", "rc", "--url", f"http://{self.rc}/",
                     "vfs/stats"], check=False, env=self.cfg["env"])
            try:
                dc = json.loads(r.stdout)["diskCache"]
                if dc["uploadsInProgress"] == 0 and dc["uploadsQueued"] == 0:
                    break
            except (ValueError, KeyError):
                raise RuntimeError("rclone rc vfs/stats: " +
                                   r.stdout.decode(errors="replace")[:200])
            time.sleep(0.1)
        self._fuse_unmount()

    def wipe_cache(self):
        discard(self.cache)

    def counters(self):
        return s3_counters(self.cfg, self.prefix)

    def close(self):
        if self.seq:
            s3_purge(self.cfg, self.prefix)


# -------------------------------------------------------------- workloads

class Recorder:
    def __init__(self):
        self.rows = []

    def add(self, runno, target, workload, metric, value):
        self.rows.append(dict(run=runno, target=target, workload=workload,
                              metric=metric, value=value))


def fio(args, path):
    run(["fio", "--name=bench", f"--filename={path}", "--ioengine=psync",
         "--fallocate=none",
         "--output-format=json", "--output=/dev/null"] + args)


class Session:
    """One workload on one target: mounts, unmounts, figures."""

    def __init__(self, t, rec, runno, workload):
        self.t, self.rec, self.runno, self.w = t, rec, runno, workload
        self.rss = 0.0
        self.c0 = None

    def put(self, metric, value):
        self.rec.add(self.runno, self.t.name, self.w, metric, value)

    def mount(self, cold=False):
        if cold:
            self.t.wipe_cache()
            drop_caches()
        return self.t.mount()

    def start_count(self):
        self.c0 = self.t.counters()

    def cpu_start(self):
        """Start counting the metafuse daemon's CPU time (cpu_end())."""
        self.cpu = None
        if isinstance(self.t, Metafuse) and self.t.pid:
            try:
                self.cpu = CpuWatch(self.t.pid)
            except OSError:
                pass

    def cpu_end(self, metric, nbytes):
        """CPU seconds per GiB of nbytes since cpu_start(), through the
        unmount when it came in between."""
        if getattr(self, "cpu", None):
            self.put(metric, self.cpu.end() / (nbytes / GiB))
            self.cpu = None

    def unmount(self, safe_metric=None):
        r = self.t.rss()
        if r is not None:
            self.rss = max(self.rss, r)
        t0 = now()
        self.t.unmount()
        dt = now() - t0
        if safe_metric:
            self.put(safe_metric, dt)
        if self.c0 is not None:
            c1 = self.t.counters()
            if c1:
                for k, v in c1.items():
                    self.put(f"store_{k}", v - self.c0.get(k, 0))
            self.c0 = None

    def finish(self):
        if self.rss:
            self.put("peak_rss_MiB", self.rss)


def fsync_path(path):
    """fsync at the end of a write workload, timed apart from the writes
    (the issue's figure includes it; the split shows where time goes)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def w_seq(s, sz, ctx):
    n = sz["seq"]
    if isinstance(s.t, S3Ceiling):
        s.put("write_MBps", s.t.put_rate(n))
        return
    m = s.mount()
    s.start_count()
    s.cpu_start()
    t0 = now()
    fio(["--rw=write", "--bs=1M", f"--size={n}", "--refill_buffers=1"],
        os.path.join(m, "seq"))
    t1 = now()
    fsync_path(os.path.join(m, "seq"))
    s.put("write_MBps", n / MiB / (now() - t0))
    s.put("write_fsync_s", now() - t1)
    s.unmount("write_safe_s")
    s.cpu_end("write_cpu_s_per_GiB", n)
    m = s.mount(cold=True)
    s.cpu_start()
    t0 = now()
    fio(["--rw=read", "--bs=1M", f"--size={n}", "--readonly"],
        os.path.join(m, "seq"))
    s.put("read_MBps", n / MiB / (now() - t0))
    s.unmount()
    s.cpu_end("read_cpu_s_per_GiB", n)


def w_rand(s, sz, ctx):
    n, ops = sz["rand_file"], sz["rand_ops"]
    m = s.mount()
    f = os.path.join(m, "rand")
    fio(["--rw=write", "--bs=1M", f"--size={n}", "--refill_buffers=1"], f)
    s.unmount()
    m = s.mount()
    iolog = os.path.join(ctx["work"], "rand.iolog")
    s.start_count()
    s.cpu_start()
    t0 = now()
    fio(["--rw=randwrite", "--bs=4k", f"--size={n}", f"--number_ios={ops}",
         "--refill_buffers=1", f"--write_iolog={iolog}"],
        os.path.join(m, "rand"))
    t1 = now()
    fsync_path(os.path.join(m, "rand"))
    s.put("randwrite_iops", ops / (now() - t0))
    s.put("randwrite_fsync_s", now() - t1)
    s.unmount("randwrite_safe_s")
    s.cpu_end("randwrite_cpu_s_per_GiB", ops * 4096)
    if not isinstance(s.t, Metafuse):
        return randread(s, n, ops)
    blocks = set()
    with open(iolog) as f:
        for line in f:
            p = line.split()  # v2: file write off len; v3: time first
            if len(p) >= 4 and p[-3] == "write":
                blocks.add(int(p[-2]) // s.t.block_size)
    s.put("randwrite_bound_bytes", len(blocks) * s.t.block_size)
    randread(s, n, ops)


def randread(s, n, ops):
    m = s.mount(cold=True)
    t0 = now()
    fio(["--rw=randread", "--bs=4k", f"--size={n}", f"--number_ios={ops}",
         "--readonly"], os.path.join(m, "rand"))
    s.put("randread_iops", ops / (now() - t0))
    s.unmount()


def w_small(s, sz, ctx):
    n = sz["small"]
    data = os.urandom(4096 * n)
    m = s.mount()
    d = os.path.join(m, "small")
    os.mkdir(d)
    names = [os.path.join(d, f"f{i:05d}") for i in range(n)]
    s.start_count()
    s.cpu_start()
    t0 = now()
    for i, p in enumerate(names):
        with open(p, "wb") as f:
            f.write(data[4096 * i:4096 * (i + 1)])
    create = now() - t0
    s.put("create_ops", n / create)
    s.unmount("create_safe_s")
    s.cpu_end("create_cpu_s_per_GiB", 4096 * n)
    m = s.mount()
    drop_caches()
    t0 = now()
    run(["ls", "-l", d])
    stat = now() - t0
    s.put("stat_ops", n / stat)
    drop_caches()
    t0 = now()
    for p in names:
        with open(p, "rb") as f:
            f.read()
    read = now() - t0
    s.put("read_ops", n / read)
    d2 = d + ".renamed"
    t0 = now()
    os.rename(d, d2)
    s.put("rename_dir_ms", (now() - t0) * 1000)
    t0 = now()
    for i in range(n):
        os.unlink(os.path.join(d2, f"f{i:05d}"))
    os.rmdir(d2)
    delete = now() - t0
    s.put("delete_ops", n / delete)
    s.put("total_s", create + stat + read + delete)
    s.unmount()


def w_tree(s, sz, ctx):
    n = sz["tree"]
    top = 10
    m = s.mount()
    d = os.path.join(m, "tree")
    s.start_count()
    t0 = now()
    os.mkdir(d)
    made = 0
    dirs = []
    for i in range(top):
        p = os.path.join(d, f"d{i}")
        dirs.append(p)
        dirs += [os.path.join(p, f"d{j}") for j in range(n // top - 1)]
    for p in dirs:
        os.mkdir(p)
        # S3 peers keep no empty directory: one small file in each
        with open(os.path.join(p, "f"), "wb") as f:
            f.write(b"x" * 100)
        made += 2
    s.put("mkdir_ops", len(dirs) / (now() - t0))
    s.unmount("mkdir_safe_s")
    m = s.mount()
    drop_caches()
    t0 = now()
    r = run(["find", d])
    s.put("find_s", now() - t0)
    if r.stdout.count(b"\n") != made + 1:
        raise RuntimeError("find saw the wrong number of entries")
    s.unmount()


def w_tar(s, sz, ctx):
    tarball = ctx["tarball"]
    members = sz["tar_args"]
    m = s.mount()
    d = os.path.join(m, "src")
    os.mkdir(d)
    s.start_count()
    t0 = now()
    run(["tar", "-xf", tarball, "-C", d] + members)
    dt = now() - t0
    s.put("extract_s", dt)
    s.unmount("extract_safe_s")
    m = s.mount()
    t0 = now()
    run(["rm", "-rf", d])
    s.put("delete_s", now() - t0)
    s.unmount("delete_safe_s")


def w_mount(s, sz, ctx):
    """mkfs done, the time `metafuse mount` takes to return (the median of
    three mounts, the first on an empty cache): an encrypted volume made
    with mkfs's real Argon2id limits pays its key derivation here."""
    s.t.real_kdf = True
    s.t.fresh()
    times = []
    for _ in range(3):
        t0 = now()
        s.mount()
        times.append(now() - t0)
        s.unmount()
    s.put("mount_s", statistics.median(times))


WORKLOADS = [("seq", w_seq), ("rand", w_rand), ("small", w_small),
             ("tree", w_tree), ("tar", w_tar),
             ("meta", lambda s, sz, ctx: w_meta(s, sz, ctx, drop_caches)),
             ("clone", lambda s, sz, ctx: w_clone(s, sz, ctx, Metafuse, fio,
                                                  rclone_harness)),
             ("snapshot", lambda s, sz, ctx: w_snapshot(s, sz, ctx,
                                                        Metafuse)),
             ("scale", lambda s, sz, ctx: w_scale(s, sz, ctx, drop_caches,
                                                  Metafuse)),
             ("mount", w_mount),
             ("follow", lambda s, sz, ctx: w_follow(
                 s, sz, dict(ctx, s3_opts=METAFUSE_S3_OPTS), Metafuse,
                 run)),
             ("history", lambda s, sz, ctx: w_history(
                 s, sz, ctx, Metafuse, rclone_harness, drop_caches,
                 METAFUSE_S3_OPTS))]
# workloads --quick leaves out unless named with --workloads (CI's smoke
# test runs --quick: scale's 100,000 files take minutes)
QUICK_SKIPS = ("scale",)


def runs_on(t, wname, mode):
    """Whether workload wname runs on target t."""
    if wname not in getattr(t, "only", (wname,)) or \
            wname in getattr(t, "skip", ()):
        return False
    if wname in ("mount", "history", "follow"):
        return isinstance(t, Metafuse)
    if mode == "quick" and getattr(t, "encrypt", False):
        return wname in ENC_QUICK_WORKLOADS
    return True

def first_touch_probe(work, mib=512):
    """MB/s of writing mib MiB into the page cache of a new file, twice
    (the file deleted in between).  On a VM whose host takes back free
    guest memory (virtio-balloon free page reporting), the first pass runs
    into memory the host must map again and can be several times slower:
    whichever target first touches such memory pays for it."""
    rates = []
    chunk = bytes(MiB)
    for _ in range(2):
        path = os.path.join(work, "first-touch")
        t0 = now()
        with open(path, "wb") as f:
            for _ in range(mib):
                f.write(chunk)
        rates.append(mib * MiB / 1e6 / (now() - t0))
        os.unlink(path)
    return rates


def machine_md(out, ctx):
    def cmd(c):
        try:
            return subprocess.run(c, capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    osr = "?"
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osr = line.split("=", 1)[1].strip().strip('"')
    fstype = cmd(["stat", "-f", "-c", "%T", ctx["work"]])
    fstype += journal_note(ctx["work"])
    vers = []
    for p in ("fio", "s3fs", "rclone", "libfuse3-3", "gnuplot-nox"):
        v = cmd(["dpkg-query", "-W", "-f=${Version}", p])
        vers.append(f"{p} {v or 'not installed'}")
    balloon = ("virtio-balloon present; "
               if os.path.isdir("/sys/bus/virtio/drivers/virtio_balloon")
               else "")
    touch = ctx.get("first_touch") or first_touch_probe(ctx["work"])
    reporting = os.environ.get("METAFUSE_BENCH_PAGE_REPORTING")
    if reporting:
        balloon += f"free page reporting {reporting}; "
    text = f"""# Machine of this run

- date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}
- CPUs: {os.cpu_count()} ({cpu})
- RAM: {mem}
- kernel: {platform.release()}
- OS: {osr}
- file system under the scratch directory: {fstype} (a virtual disk)
- commit of the tree (metafuse and the harness): {ctx['commit']}
- tarball: {ctx['tarball_name']}
- packages: {', '.join(vers)}
- memory: {balloon}writing 512 MiB into the page cache of a new file ran
  at {touch[0]:,.0f} MB/s, then at {touch[1]:,.0f} MB/s once more (first
  touch of memory the host had taken back is slow: a source of noise in
  every write figure)
- the machine is shared with other engineers' builds and tests; targets
  are interleaved so that drift hits all alike
"""
    with open(os.path.join(out, "machine.md"), "w") as f:
        f.write(text)


# ------------------------------------------------------------------- main

def settle():
    """Before a target's workload: write back the dirty pages of earlier
    targets (discard() moves their directories to the trash, so what they
    wrote last, a cache filled by a cold read say, stays dirty), which the
    kernel otherwise flushes 30 s later on the CPU and disk of whichever
    target runs then; then settle_s3()."""
    os.sync()
    settle_s3()


def settle_s3():
    """Free now the data of the S3 objects deleted so far (the last
    target's, by fresh()): radosgw's garbage collector otherwise does it
    in the background up to 20 s later, on the CPU of whichever target is
    being measured then.  Only for a server of scripts/s3server.sh, whose
    directory bench/run passes in METAFUSE_S3_SERVER_DIR."""
    d = os.environ.get("METAFUSE_S3_SERVER_DIR")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                          "scripts", "s3server.sh")
    if d and os.path.exists(script):
        subprocess.run(["bash", script, "gc", d], check=True,
                       stdout=subprocess.DEVNULL)


def s3_config(args):
    ep = os.environ.get("METAFUSE_S3_ENDPOINT")
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (ep and key and secret):
        return None, ("S3 targets skipped: set METAFUSE_S3_ENDPOINT, "
                      "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (bench/run "
                      "does when scripts/s3server.sh starts a server)")
    host = urllib.parse.urlparse(ep).hostname or ""
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host == "localhost"
    if not local:
        return None, f"S3 targets skipped: endpoint {ep} is not loopback"
    bucket = os.environ.get("METAFUSE_S3_BUCKET", "metafuse-bench")
    env = dict(os.environ)
    # rclone's AWS SDK fails on a custom CA bundle with its own transport
    env.pop("AWS_CA_BUNDLE", None)
    env.update({
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Ceph",
        "RCLONE_CONFIG_BENCH_ENDPOINT": ep,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": key,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": secret,
        "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
    })
    cfg = dict(endpoint=ep, key=key, secret=secret, bucket=bucket,
               prefix="bench", env=env)
    log_path = os.environ.get("METAFUSE_S3_ACCESS_LOG")
    if log_path and os.path.exists(log_path):
        cfg["access"] = AccessLog(log_path)
    rclone_harness(cfg, "mkdir", f"bench:{bucket}")
    return cfg, None


def journal_note(path):
    """', without a journal' for an ext4 without one (see the trash)."""
    dev = os.stat(path).st_dev
    link = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    if not os.path.exists(link) or not os.path.isdir("/proc/fs/ext4"):
        return ""
    name = os.path.basename(os.path.realpath(link))
    if not os.path.isdir(f"/proc/fs/ext4/{name}"):
        return ""
    jbd = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") \
        else []
    return "" if any(j.startswith(name + "-") for j in jbd) \
        else " (ext4 without a journal)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=SIZES, default="full")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--metafuse", required=True)
    ap.add_argument("--passthrough", required=True)
    ap.add_argument("--tarball", required=True)
    ap.add_argument("--tarball-name", default="?")
    ap.add_argument("--commit", default="?")
    ap.add_argument("--metafuse-alt", default="")
    ap.add_argument("--store-tool", default="")
    ap.add_argument("--targets", default="")
    ap.add_argument("--workloads", default="")
    ap.add_argument("--scale-files", type=int, default=0)
    a = ap.parse_args()
    sz = SIZES[a.mode]
    if a.scale_files:
        sz = dict(sz, scale=a.scale_files)
    os.makedirs(a.out, exist_ok=True)
    ctx = dict(work=a.work, tarball=a.tarball, tarball_name=a.tarball_name,
               commit=a.commit)

    notes = []
    targets = [Disk(a.work), Passthrough(a.work, a.passthrough),
               Metafuse(a.work, a.metafuse)]
    enc = encrypt_supported(a.metafuse)
    if enc:
        targets.append(Metafuse(a.work, a.metafuse, "metafuse-enc",
                                encrypt=True, plain="metafuse"))
    else:
        notes.append("- metafuse-enc and metafuse-s3-enc skipped: this "
                     "metafuse has no `mkfs --encrypt`.")
    if a.metafuse_alt:  # a candidate build, measured in the same run
        targets.append(Metafuse(a.work, a.metafuse_alt, "metafuse-alt"))
        notes.append("- metafuse-alt: a candidate build (METAFUSE_ALT_BIN) "
                     "measured in the same run as metafuse.")
    cfg, why = s3_config(a)
    if cfg:
        h = run([a.metafuse, "mount", "--help"], check=False)
        if b"s3://" in h.stdout + h.stderr:
            targets.append(Metafuse(a.work, a.metafuse, "metafuse-s3",
                                    s3=cfg))
            if enc:
                targets.append(Metafuse(a.work, a.metafuse,
                                        "metafuse-s3-enc", s3=cfg,
                                        encrypt=True, plain="metafuse-s3"))
            if a.metafuse_alt:
                targets.append(Metafuse(a.work, a.metafuse_alt,
                                        "metafuse-alt-s3", s3=cfg))
        else:
            why = ("metafuse-s3 skipped: this metafuse has no S3 backend "
                   "(its mount --help names no s3:// store)")
            log(why)
            notes.append(f"- {why}.")
        targets += [S3fs(a.work, cfg), Rclone(a.work, cfg)]
        if a.store_tool and os.access(a.store_tool, os.X_OK):
            targets.append(S3Ceiling(a.work, cfg, a.store_tool))
        else:
            notes.append("- s3-ceiling skipped: no store_tool (build/tests/"
                         "store_tool, METAFUSE_STORE_TOOL).")
    else:
        log(why)
        notes.append(f"- {why}.")
    if a.targets:
        keep = a.targets.split(",")
        targets = [t for t in targets if t.name in keep]
    workloads = [w for w in WORKLOADS
                 if a.mode == "full" or w[0] not in QUICK_SKIPS]
    if a.workloads:
        keep = a.workloads.split(",")
        workloads = [w for w in WORKLOADS if w[0] in keep]

    raise_nofile()
    trash_init(a.work)
    rec = Recorder()
    failures = 0
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        for runno in range(1, a.runs + 1):
            order = targets[runno - 1:] + targets[:runno - 1]
            for wname, fn in workloads:
                for t in order:
                    if not runs_on(t, wname, a.mode):
                        continue
                    log(f"run {runno}/{a.runs} {wname} on {t.name}")
                    s = Session(t, rec, runno, wname)
                    t0 = now()
                    try:
                        t.fresh()
                        settle()
                        fn(s, sz, ctx)
                        s.finish()
                    except Exception as e:  # record and go on
                        failures += 1
                        log(f"ERROR {wname} on {t.name}: {e}")
                        rec.add(runno, t.name, wname, "error", None)
                        cleanup_target(t)
                        keep_log(t, a.out, f"{t.name}-run{runno}-{wname}")
                    log(f"  {now() - t0:.1f} s")
    finally:
        for t in targets:
            cleanup_target(t)
            t.close()
        empty_trash()

    with open(os.path.join(a.out, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["run", "target", "workload",
                                          "metric", "value"])
        w.writeheader()
        for r in rec.rows:
            w.writerow(dict(r, value=fmt_csv(r["value"])))
    bsz = sorted({f"{t.name} {t.block_size // MiB} MiB" for t in targets
                  if getattr(t, "block_size", None)})
    if bsz:
        notes.append("- Block sizes (mkfs's default for the store): "
                     + ", ".join(bsz) + ".")
    notes.append(f"- Sizes: {describe_sizes(sz)}.")
    notes.append(f"- Tarball: {a.tarball_name}; extracted: "
                 f"{describe_tar(a.tarball, sz['tar_args'])}.")
    if "include_tar" in ctx:
        notes.append(f"- meta's tree: {ctx['include_tar'][1]}.")
    summarize(rec.rows, targets, a.out, a.mode, a.runs, notes)
    machine_md(a.out, ctx)
    log(f"results in {a.out}: results.md, summary.csv, runs.csv, "
        f"chart.png, machine.md; {failures} workload(s) failed")
    return 1 if failures else 0


def encrypt_supported(binary):
    r = run([binary, "mkfs", "--help"], check=False)
    return b"--encrypt" in r.stdout + r.stderr


def raise_nofile():
    """passthrough_ll keeps an fd open for every inode the kernel knows,
    so the tarball (21,116 entries) needs more than a usual limit: every
    daemon inherits the highest limit the kernel allows."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            n = int(f.read())
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    except (OSError, ValueError) as e:
        log(f"note: cannot raise the open files limit ({e})")


def on_sigterm(signum, frame):
    raise KeyboardInterrupt  # unwinds through the cleanup in main


def describe_tar(tarball, args):
    r = run(["tar", "-tvf", tarball] + args)
    lines = r.stdout.decode(errors="replace").splitlines()
    size = sum(int(line.split()[2]) for line in lines)
    return (f"{' '.join(args)} ({len(lines)} entries, "
            f"{size / MiB:.0f} MiB)")


def describe_sizes(sz):
    return (f"sequential {sz['seq'] // MiB} MiB; random 4 KiB "
            f"{sz['rand_ops']} writes then {sz['rand_ops']} reads in a "
            f"{sz['rand_file'] // MiB} MiB file; {sz['small']} files of "
            f"4 KiB; {sz['tree']} directories; meta: {sz['meta']} "
            f"entries; scale: {sz['scale']:,} files")


def keep_log(t, out, name):
    """A failed metafuse leaves its daemon log in the output directory."""
    src = os.path.join(getattr(t, "cache", ""), "metafuse.log")
    if isinstance(t, Metafuse) and os.path.exists(src):
        os.makedirs(os.path.join(out, "logs"), exist_ok=True)
        dst = os.path.join(out, "logs", name + ".log")
        shutil.copyfile(src, dst)
        log(f"  daemon log kept in {dst}")


def cleanup_target(t):
    """Unmount what this target mounted; kill only its own daemon."""
    if is_mounted(t.mnt):
        if isinstance(t, Metafuse):
            run([t.binary, "umount", t.mnt], check=False, timeout=600)
        if is_mounted(t.mnt):
            run(["fusermount3", "-u", t.mnt], check=False)
        if is_mounted(t.mnt):
            run(["fusermount3", "-uz", t.mnt], check=False)
    if t.proc is not None:
        try:
            t.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            t.proc.kill()
            t.proc.wait()
        t.proc = None
    t.pid = None


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
