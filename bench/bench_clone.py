"""bench_clone.py - the `clone` workload of bench.py: `cp` of a large
file inside the volume (copy_file_range: metafuse shares its blocks) and
a copy of a tree of small files (`metafuse clone`; `cp -a` on the other
targets), the time of each and what the store grew by once unmounted.
Not run on s3fs and rclone, where both are byte copies minutes long.

Invariants:
  1. The files are made and the volume unmounted before any timing.
  2. Each copy is timed alone, on a fresh mount.
"""

import json
import os
import subprocess
import time


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def tree_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return total


def data_stored(t, Metafuse, rclone_harness):
    """(objects, bytes) of data in a metafuse target's store; None for
    the other targets."""
    if not isinstance(t, Metafuse):
        return None
    if t.s3:
        prefix = t.url.split("/", 3)[3]
        r = rclone_harness(t.s3cfg, "size", "--json",
                           f"bench:{t.s3cfg['bucket']}/{prefix}/data")
        j = json.loads(r.stdout)
        return j["count"], j["bytes"]
    n = 0
    for _, _, files in os.walk(os.path.join(t.url, "data")):
        n += sum(1 for f in files if not f.endswith("~"))
    return n, tree_bytes(os.path.join(t.url, "data"))


def w_clone(s, sz, ctx, Metafuse, fio, rclone_harness):
    """cp of a large file inside the volume (copy_file_range: metafuse
    shares its blocks) and a copy of a tree of small files (metafuse
    clone; cp -a on the other targets): the time of each, and what the
    store grew by once unmounted."""
    n, files = sz["clone_file"], sz["clone_tree"]
    if s.t.s3 and not isinstance(s.t, Metafuse):
        return  # s3fs, rclone: a byte copy by the kernel, minutes long
    m = s.mount()
    big = os.path.join(m, "big")
    fio(["--rw=write", "--bs=1M", f"--size={n}", "--refill_buffers=1"], big)
    tree = os.path.join(m, "tree")
    os.mkdir(tree)
    payload = os.urandom(8192 * 100)
    for i in range(files):
        if i % 100 == 0:
            d = os.path.join(tree, f"d{i // 100:03d}")
            os.mkdir(d)
        with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
            # above the 4 KiB kept inline: one block each, all different
            f.write(payload[8192 * (i % 100):8192 * (i % 100 + 1)] +
                    i.to_bytes(8, "little"))
    s.unmount()
    for name, copy in (("cp", lambda: run(["cp", big, big + ".copy"])),
                       ("clone", lambda: run(
                           [s.t.binary, "clone", tree, tree + ".copy"]
                           if isinstance(s.t, Metafuse) else
                           ["cp", "-a", tree, tree + ".copy"]))):
        before = data_stored(s.t, Metafuse, rclone_harness)
        m = s.mount()
        t0 = time.monotonic()
        copy()
        s.put(f"{name}_ms", (time.monotonic() - t0) * 1000)
        s.unmount()
        after = data_stored(s.t, Metafuse, rclone_harness)
        if before and after:
            s.put(f"{name}_store_objects", after[0] - before[0])
            s.put(f"{name}_store_bytes", after[1] - before[1])
