"""bench_follow.py - the `follow` workload of bench.py: a follower
(`metafuse mount -o ro,follow`, its own cache directory) beside the
writer of the same volume, and how long after the writer's fsync
returned the follower shows what it made durable: the median and the
worst of N fsyncs (20; 5 with --quick), at the default follow_interval (5 s).  metafuse
targets only (the others have no followers).

Invariants:
  1. Each fsync comes at a random moment of the follower's round (a
     random pause before it), so the figures cover the whole interval.
  2. The follower is watched through a directory listing, which its
     kernel does not cache: the lag is the follower's, not a timeout's.
  3. Both mounts are unmounted before the figures are recorded, on
     failure too.
"""

import os
import random
import statistics
import time

INTERVAL = 5.0          # the default follow_interval
POLL = 0.005


def w_follow(s, sz, ctx, Metafuse, run):
    """Lag of a follower after each of N fsyncs of the writer."""
    t = s.t
    if not isinstance(t, Metafuse):
        return
    n = sz["follow_fsyncs"]
    w = s.mount()
    fmnt = os.path.join(t.dir, "follower", "mnt")
    fcache = os.path.join(t.dir, "follower-cache")
    os.makedirs(fmnt, exist_ok=True)
    opts = f"ro,follow,cache_dir={fcache}"
    if t.s3:
        opts += "," + ctx["s3_opts"].format(endpoint=t.s3cfg["endpoint"])
    rng = random.Random(17)
    lags = []
    try:
        run([t.binary, "mount", "-o", opts, t.url, fmnt], env=t.env())
        try:
            for i in range(n):
                time.sleep(rng.uniform(0, INTERVAL))
                name = f"lag-{i:03d}"
                fd = os.open(os.path.join(w, name),
                             os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.write(fd, b"x" * 100)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                t0 = time.monotonic()
                deadline = t0 + 10 * INTERVAL
                while name not in os.listdir(fmnt):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name} not on the follower "
                                           f"after {10 * INTERVAL} s")
                    time.sleep(POLL)
                lags.append(time.monotonic() - t0)
        finally:
            run([t.binary, "umount", fmnt], timeout=600)
    finally:
        s.unmount()
    s.put("lag_median_ms", statistics.median(lags) * 1000)
    s.put("lag_worst_ms", max(lags) * 1000)
