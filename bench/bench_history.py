"""bench_history.py - the `history` workload of bench.py: what the history
window (`metafuse tune --history`, `mount --at`) costs.

On a metafuse target only:
  mount --at  a volume with a window of a day and N empty files (100,000;
           2,000 with --quick) in directories of 1,000, unmounted; the
           instant after that unmount recorded, then one more change (so
           the past state is not simply the newest).  The page cache
           dropped, `metafuse mount --at INSTANT` with a fresh cache
           directory until it returns: mount_at_s; then `ls` of the root
           (mount_at_ls_s), which must show the N/1,000 directories and
           not the later change.
  overhead the small-file workload (bench.py's `small`: N files of 4 KiB
           created, unmounted, mounted, read, their directory renamed,
           every file deleted, unmounted) on a fresh volume without a
           window and on one with a window of a day: what the store then
           holds, objects and bytes (small_plain_store_objects,
           small_plain_store_bytes, small_history_store_objects,
           small_history_store_bytes), and the difference in bytes
           (history_overhead_bytes): the journal entries and checkpoints
           the window keeps, and the data the deleted files still hold.

Invariants:
  1. Only measures: the workload changes only its own fresh target.
  2. The past mount is timed alone, after the volume's own mount ended.
"""

import json
import os
import subprocess
import time

# metric -> (unit, higher is better), merged into bench.py's METRICS
HISTORY_METRICS = {
    "history_files": ("files", None),
    "mount_at_s": ("s", False), "mount_at_ls_s": ("s", False),
    "small_plain_store_objects": ("objects", None),
    "small_plain_store_bytes": ("B", None),
    "small_history_store_objects": ("objects", None),
    "small_history_store_bytes": ("B", None),
    "history_overhead_bytes": ("B", None),
}


def run(cmd, env=None):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, env=env)


def s3_opts(t, s3_fmt):
    return s3_fmt.format(endpoint=t.s3cfg["endpoint"]) if t.s3 else ""


def tune(t, duration, s3_fmt):
    cmd = [t.binary, "tune", "--history", duration]
    if t.s3:
        cmd += ["-o", s3_opts(t, s3_fmt)]
    run(cmd + [t.url], env=t.env())


def store_total(t, rclone_harness):
    """(objects, bytes) of everything in the target's store."""
    if t.s3:
        prefix = t.url.split("/", 3)[3]
        r = rclone_harness(t.s3cfg, "size", "--json",
                           f"bench:{t.s3cfg['bucket']}/{prefix}")
        j = json.loads(r.stdout)
        return j["count"], j["bytes"]
    n = size = 0
    for root, _, files in os.walk(t.url):
        for f in files:
            if f.endswith("~"):
                continue
            try:
                size += os.lstat(os.path.join(root, f)).st_size
                n += 1
            except FileNotFoundError:
                pass
    return n, size


def iso(ns):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + \
        ".%09dZ" % (ns % 10**9)


def mount_at(s, n, s3_fmt, drop_caches):
    t = s.t
    tune(t, "1d", s3_fmt)
    m = s.mount()
    for i in range(n):
        if i % 1000 == 0:
            d = os.path.join(m, f"d{i // 1000:04d}")
            os.mkdir(d)
        os.close(os.open(os.path.join(d, f"f{i:07d}"),
                         os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    s.unmount()
    at = time.time_ns()
    time.sleep(0.05)
    m = s.mount()
    with open(os.path.join(m, "later"), "wb") as f:
        f.write(b"after the instant\n")
    s.unmount()
    pmnt = os.path.join(t.dir, "past")
    pcache = os.path.join(t.dir, "past-cache")
    os.makedirs(pmnt, exist_ok=True)
    subprocess.run(["rm", "-rf", pcache], check=True)
    opts = f"cache_dir={pcache}"
    if t.s3:
        opts += "," + s3_opts(t, s3_fmt)
    drop_caches()
    t0 = time.perf_counter()
    run([t.binary, "mount", "--at", iso(at), "-o", opts, t.url, pmnt],
        env=t.env())
    s.put("mount_at_s", time.perf_counter() - t0)
    try:
        t0 = time.perf_counter()
        names = os.listdir(pmnt)
        s.put("mount_at_ls_s", time.perf_counter() - t0)
        if "later" in names or len(names) != (n + 999) // 1000:
            raise RuntimeError(f"mount --at shows {len(names)} entries")
    finally:
        run([t.binary, "umount", pmnt])
    s.put("history_files", n)


def small_files(s, n):
    """bench.py's small-file workload, its figures left out."""
    data = os.urandom(4096 * n)
    m = s.mount()
    d = os.path.join(m, "small")
    os.mkdir(d)
    for i in range(n):
        with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
            f.write(data[4096 * i:4096 * (i + 1)])
    s.unmount()
    m = s.mount()
    d = os.path.join(m, "small")
    for i in range(n):
        with open(os.path.join(d, f"f{i:05d}"), "rb") as f:
            f.read()
    os.rename(d, d + ".renamed")
    for i in range(n):
        os.unlink(os.path.join(d + ".renamed", f"f{i:05d}"))
    os.rmdir(d + ".renamed")
    s.unmount()


def w_history(s, sz, ctx, Metafuse, rclone_harness, drop_caches, s3_fmt):
    """mount --at of a volume of many files; the store overhead of a
    window of a day under the small-file workload."""
    if not isinstance(s.t, Metafuse):
        return
    mount_at(s, sz["history_files"], s3_fmt, drop_caches)
    sizes = {}
    for label, window in (("plain", None), ("history", "1d")):
        s.t.fresh()
        if window:
            tune(s.t, window, s3_fmt)
        small_files(s, sz["small"])
        objects, nbytes = store_total(s.t, rclone_harness)
        s.put(f"small_{label}_store_objects", objects)
        s.put(f"small_{label}_store_bytes", nbytes)
        sizes[label] = nbytes
    s.put("history_overhead_bytes", sizes["history"] - sizes["plain"])
