"""bench_meta.py - the `meta` workload of bench.py: metadata operations
one at a time, each a figure beside passthrough_ll's in the same run.

Phases, on a fresh target, in one directory of N entries (5,000; 1,000
with --quick); not on the S3 peers (s3fs, rclone), whose figures would
take minutes and are not what these are compared with:
  create   N empty files (open O_CREAT, close)            create_ops
  stat     N stats after a remount and dropping the kernel's caches, so
           every lookup and getattr reaches the filesystem   stat_ops
  mkdir    N directories                                   mkdir_ops
  unlink   the N files                                     unlink_ops
  rmdir    the N directories                               rmdir_ops
  untar    a tar of /usr/include (--quick: /usr/include/linux) made at
           run time (once, in the work directory)      extract_s
           then the unmount, until the data is safe    extract_safe_s
  rm -rf   of that tree                                delete_s
           then the unmount                            delete_safe_s

Invariants:
  1. Only measures: nothing here changes a target.
  2. Each figure covers the system calls of its phase only; the remounts
     and cache drops between phases are outside the timing.
"""

import os
import subprocess
import time

# metric -> (unit, higher is better), merged into bench.py's METRICS
META_METRICS = {
    "unlink_ops": ("ops/s", True), "rmdir_ops": ("ops/s", True),
}
META_CHART = ["unlink_ops", "rmdir_ops"]


def include_tarball(ctx, tree):
    """A tar of /usr/<tree> (what the machine has), made once per run of
    bench.py in its work directory; (path, description)."""
    if "include_tar" not in ctx:
        path = os.path.join(ctx["work"], "usr-include.tar")
        subprocess.run(["tar", "-cf", path, "-C", "/usr", tree],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        r = subprocess.run(["tar", "-tf", path], check=True,
                           capture_output=True)
        n = r.stdout.count(b"\n")
        ctx["include_tar"] = (path, f"/usr/{tree}, {n} entries, "
                              f"{os.path.getsize(path) / (1 << 20):.0f} MiB"
                              " of tar")
    return ctx["include_tar"]


def timed(s, metric, n, fn, items):
    t0 = time.perf_counter()
    for x in items:
        fn(x)
    s.put(metric, n / (time.perf_counter() - t0))


def create(path):
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))


def w_meta(s, sz, ctx, drop_caches):
    n = sz["meta"]
    tarball, _ = include_tarball(ctx, sz["meta_tree"])
    m = s.mount()
    d = os.path.join(m, "meta")
    os.mkdir(d)
    files = [os.path.join(d, f"f{i:05d}") for i in range(n)]
    dirs = [os.path.join(d, f"d{i:05d}") for i in range(n)]
    s.start_count()
    timed(s, "create_ops", n, create, files)
    s.unmount("create_safe_s")

    m = s.mount()
    drop_caches()
    timed(s, "stat_ops", n, os.stat, files)
    timed(s, "mkdir_ops", n, os.mkdir, dirs)
    timed(s, "unlink_ops", n, os.unlink, files)
    timed(s, "rmdir_ops", n, os.rmdir, dirs)

    t = os.path.join(m, "include")
    os.mkdir(t)
    t0 = time.perf_counter()
    subprocess.run(["tar", "-xf", tarball, "-C", t], check=True)
    s.put("extract_s", time.perf_counter() - t0)
    s.unmount("extract_safe_s")

    m = s.mount()
    t0 = time.perf_counter()
    subprocess.run(["rm", "-rf", os.path.join(m, "include")], check=True)
    s.put("delete_s", time.perf_counter() - t0)
    s.unmount("delete_safe_s")
