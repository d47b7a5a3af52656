"""bench_snapshot.py - the `snapshot` workload of bench.py: the time of
`metafuse snapshot create` on a mounted volume of N files (10,000 full,
1,000 quick: bench.py's clone_tree), and what the store grew by (the
snapshot's copy of the metadata).  metafuse only.

Also runs alone, outside bench/run (no root needed):
    python3 bench/bench_snapshot.py --bin build/metafuse --files 10000
        [--store s3://BUCKET/NEW-PREFIX]   (S3: the endpoint and keys from
                                            the environment, as for mount)

Invariants:
  1. The files are made and the volume unmounted before any timing: the
     snapshot is timed on a clean, freshly mounted volume, then once more
     right after writing files (its uploads are then part of the time).
"""

import os
import subprocess
import sys
import tempfile
import time

DIRTY_FILES = 100


def make_files(root, n, tag=b""):
    payload = os.urandom(8192)
    for i in range(n):
        d = os.path.join(root, f"d{i // 100:04d}")
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
            # above the 4 KiB kept inline: one block each, all different
            f.write(payload + tag + i.to_bytes(8, "little"))


def timed_snapshot(binary, mnt, name, env=None):
    t0 = time.monotonic()
    subprocess.run([binary, "snapshot", "create", mnt, name], check=True,
                   stdout=subprocess.DEVNULL, env=env)
    return (time.monotonic() - t0) * 1000


def w_snapshot(s, sz, ctx, Metafuse):
    """`metafuse snapshot create` of a volume of N files, clean, then
    after DIRTY_FILES more were written: snapshot_ms, snapshot_dirty_ms,
    and the copy's stored bytes on a local store, snapshot_store_bytes."""
    if not isinstance(s.t, Metafuse):
        return
    n = sz["clone_tree"]
    m = s.mount()
    make_files(os.path.join(m, "tree"), n)
    s.unmount()
    m = s.mount()
    s.put("snapshot_ms", timed_snapshot(s.t.binary, m, "clean",
                                        s.t.env()))
    make_files(os.path.join(m, "more"), DIRTY_FILES, b"more")
    s.put("snapshot_dirty_ms", timed_snapshot(s.t.binary, m, "dirty",
                                              s.t.env()))
    s.unmount()
    if not s.t.s3:
        meta = os.path.join(s.t.url, "meta")
        s.put("snapshot_store_bytes", sum(
            os.path.getsize(os.path.join(meta, k)) for k in os.listdir(meta)
            if k.startswith("snap-") or k.startswith("snpp-")) / 2)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/metafuse")
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--store", help="a new store (default: a directory)")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    with tempfile.TemporaryDirectory(prefix="bench-snap-") as d:
        store = a.store or os.path.join(d, "store")
        mnt = os.path.join(d, "mnt")
        cache = os.path.join(d, "cache")
        os.mkdir(mnt)
        subprocess.run([binary, "mkfs", store], check=True,
                       stdout=subprocess.DEVNULL)
        mount = [binary, "mount", "-o", f"cache_dir={cache}", store, mnt]
        subprocess.run(mount, check=True)
        try:
            make_files(os.path.join(mnt, "tree"), a.files)
        finally:
            subprocess.run([binary, "umount", mnt], check=True)
        subprocess.run(mount, check=True)
        try:
            clean = timed_snapshot(binary, mnt, "clean")
            make_files(os.path.join(mnt, "more"), DIRTY_FILES, b"more")
            dirty = timed_snapshot(binary, mnt, "dirty")
        finally:
            subprocess.run([binary, "umount", mnt], check=True)
        copies = None
        if not a.store:
            meta = os.path.join(store, "meta")
            copies = sum(os.path.getsize(os.path.join(meta, k))
                         for k in os.listdir(meta)
                         if k.startswith("snap-") or k.startswith("snpp-"))
    print(f"files: {a.files}")
    print(f"snapshot create, clean volume: {clean:.0f} ms")
    print(f"snapshot create after {DIRTY_FILES} files written: "
          f"{dirty:.0f} ms")
    if copies is not None:
        print(f"store bytes of the two copies of the metadata: {copies}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
