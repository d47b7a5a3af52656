"""bench_scale.py - the `scale` workload of bench.py: a volume of many
empty files, and whether it slows down, grows or costs more as it fills.

N files (1,000,000; 100,000 with --quick; --scale-files N or the
environment variable METAFUSE_BENCH_SCALE_FILES to choose) in 1,000
directories at the root, N/1,000 files each, filled one directory after
the other.  Files are made by os.open(O_CREAT|O_EXCL) and close in a
tight Python loop: a few microseconds of the harness per file against
hundreds in the file system.

On a metafuse target, from a fresh volume:
  create   the N files, timed in tenths: files/s over the first tenth
           (create_first_ops: "the rate at 100,000" at a million), over
           the last (create_last_ops: "the rate at a million"), and over
           all of them (create_ops, the pause below left out); and the
           daemon's CPU time per file (user and system, from
           /proc/PID/stat) over the same windows: create_first_cpu_us,
           create_last_cpu_us, create_cpu_us, less at the mercy of the
           other loads of a shared machine than a rate over minutes
  change   after the first tenth, the creation paused: once the store is
           quiet (nothing dirty, no journal entry waiting, no request for
           6 s, past journal_interval), one file of 100 bytes is created
           and fsync'ed, and the daemon's own counters (`metafuse stats
           --json`) taken again once its journal entry is sent and the
           store quiet again: change_reqs_tenth, change_bytes_tenth
           (requests and bytes up; measured again with another file when
           the daemon wrote a checkpoint meanwhile); rss_tenth_MiB, the
           daemon's VmHWM then
  unmount  create_safe_s; store traffic of the creation (store_*)
  a fresh machine's first mount: the cache directory deleted, the page
           cache dropped: `metafuse mount` until it returns
           (mount_cold_s), then the first `ls` of the root (ls_root_s)
  find     the kernel's caches dropped, `find` over the whole tree:
           find_tree_s, find_entries, find_entries_per_s
  change   the same small change at the full count: change_reqs_full,
           change_bytes_full
  again    unmounted, the cache directory deleted once more and mounted:
           mount_cold_again_s, a fresh machine's mount of a volume whose
           store now holds the checkpoint that the restoring mount wrote
           (the first restore replays every journal entry since mkfs when
           no checkpoint was due meanwhile)
  peak_rss_MiB is the daemon's VmHWM before each unmount (bench.py).

On passthrough_ll, the reference: it keeps an open file for every inode
the kernel knows, and this sandbox's hard limit of open files (20,000,
not raisable without CAP_SYS_RESOURCE) fails a `find` over 100,000 files
with EMFILE (tried).  So it gets a tree of the same shape (directories
of N/1,000 files) of as many directories as stay under 3/4 of the
limit, created through the mount (create_ops) and walked by the same
`find` after a remount and dropping the caches; find_entries_per_s is
the figure compared, find over passthrough_ll taking time in proportion
to the entries it walks.  Other targets skip this workload.

Invariants:
  1. Only measures: nothing under src/ is involved beyond running the
     metafuse binary; the workload changes only its own fresh target.
  2. Timed windows hold only the system calls of their phase: the
     pause for the change, stats queries and cache drops lie outside.
  3. A tree that find does not see whole (a wrong count) fails the
     workload rather than giving a figure.
"""

import json
import os
import resource
import subprocess
import time

DIRS = 1000
CHANGE_BYTES = b"x" * 100
QUIET_S = 6.0  # journal_interval's default and a second

# metric -> (unit, higher is better), merged into bench.py's METRICS
SCALE_METRICS = {
    "files": ("files", None),
    "create_first_ops": ("ops/s", True), "create_last_ops": ("ops/s", True),
    "create_first_cpu_us": ("µs", False), "create_last_cpu_us": ("µs", False),
    "create_cpu_us": ("µs", False),
    "mount_cold_s": ("s", False), "ls_root_s": ("s", False),
    "mount_cold_again_s": ("s", False),
    "find_tree_s": ("s", None), "find_entries": ("entries", None),
    "find_entries_per_s": ("entries/s", True),
    "change_reqs_tenth": ("requests", None),
    "change_bytes_tenth": ("B", None),
    "change_reqs_full": ("requests", None),
    "change_bytes_full": ("B", None),
    "rss_tenth_MiB": ("MiB", None),
}
SCALE_CHART = ["find_entries_per_s"]


def tree_names(root, n, dirs):
    """[(directory, [file paths])] of a tree of n files in dirs
    directories of n // dirs files each."""
    per = n // dirs
    out = []
    for d in range(dirs):
        dp = os.path.join(root, f"d{d:04d}")
        out.append((dp, [os.path.join(dp, f"f{i:06d}") for i in range(per)]))
    return out


def cpu_s(pid):
    """CPU seconds (user and system, all threads) of process pid so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def create_tree(tree, pid, marks=()):
    """Makes the tree; returns (perf_counter(), the daemon's CPU seconds)
    at the start, at each file count in marks (reached at a directory's
    end) and at the end."""
    flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
    stamps = [(time.perf_counter(), cpu_s(pid))]
    done = 0
    for dp, files in tree:
        os.mkdir(dp)
        for p in files:
            os.close(os.open(p, flags, 0o644))
        done += len(files)
        if done in marks:
            stamps.append((time.perf_counter(), cpu_s(pid)))
    stamps.append((time.perf_counter(), cpu_s(pid)))
    return stamps


def put_window(s, name, nfiles, a, b):
    """Files per second and the daemon's CPU microseconds per file
    between stamps a and b."""
    s.put(f"{name}_ops", nfiles / (b[0] - a[0]))
    s.put(f"{name}_cpu_us", (b[1] - a[1]) * 1e6 / nfiles)


def timed_find(s, path, expect, drop_caches):
    drop_caches()
    t0 = time.perf_counter()
    r = subprocess.run(["find", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    n = r.stdout.count(b"\n")
    if r.returncode != 0 or n != expect:
        err = r.stderr.decode(errors="replace").strip()[-300:]
        raise RuntimeError(f"find saw {n} entries of {expect} "
                           f"(status {r.returncode}): {err}")
    s.put("find_tree_s", dt)
    s.put("find_entries", n)
    s.put("find_entries_per_s", n / dt)


# ------------------------------------------------------- metafuse's own

def mf_stats(t):
    r = subprocess.run([t.binary, "stats", "--json", t.mnt],
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("metafuse stats: " +
                           r.stderr.decode(errors="replace").strip())
    return json.loads(r.stdout)


def mf_requests(st):
    return sum(st["requests"].values())


def mf_quiet(t, timeout=600):
    """Stats once nothing waits for the store (no dirty data, no journal
    entry pending, no upload in flight) and no request went out for
    QUIET_S: changes not yet cut into a journal entry are not counted as
    pending, and go out within journal_interval (5 s by default)."""
    t_end = time.time() + timeout
    since, prev = None, None
    while time.time() < t_end:
        st = mf_stats(t)
        idle = (st["dirty_bytes"] == 0 and st["journal_pending"] == 0
                and st["uploads_in_flight"] == 0)
        same = prev is not None and mf_requests(prev) == mf_requests(st) \
            and prev["bytes_up"] == st["bytes_up"]
        if not (idle and same):
            since = time.time()
        elif time.time() - since >= QUIET_S:
            return st
        prev = st
        time.sleep(0.5)
    raise RuntimeError(f"the store did not go quiet in {timeout} s")


def small_change(s, root, name, suffix):
    """One file of 100 bytes created and fsync'ed once the store is
    quiet: the requests and bytes the daemon sent for it, its journal
    entry included.  A window in which the daemon wrote a checkpoint
    (due on its own clock) is measured again with another file."""
    for attempt in range(3):
        a, b = change_once(s, os.path.join(root, f"{name}-{attempt}"))
        if b["checkpoint_seq"] == a["checkpoint_seq"]:
            break
        print(f"  note: a checkpoint was written during the {suffix} "
              "change: measured again", flush=True)
    s.put(f"change_reqs_{suffix}", mf_requests(b) - mf_requests(a))
    s.put(f"change_bytes_{suffix}", b["bytes_up"] - a["bytes_up"])
    return attempt + 1


def change_once(s, path):
    a = mf_quiet(s.t)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    try:
        os.write(fd, CHANGE_BYTES)
        os.fsync(fd)
    finally:
        os.close(fd)
    t_end = time.time() + 60
    while mf_stats(s.t)["journal_entries"] <= a["journal_entries"]:
        if time.time() > t_end:
            raise RuntimeError("the change's journal entry was not sent")
        time.sleep(0.1)
    return a, mf_quiet(s.t)


def w_scale_metafuse(s, n, drop_caches):
    tenth = n // 10
    tree = tree_names(s.mount(), n, DIRS)
    first, rest = tree[:DIRS // 10], tree[DIRS // 10:]
    s.put("files", n)
    s.start_count()
    t = create_tree(first, s.t.pid)
    put_window(s, "create_first", tenth, t[0], t[-1])
    busy = t[-1][0] - t[0][0]
    cpu = t[-1][1] - t[0][1]
    changes = small_change(s, s.t.mnt, "change-tenth", "tenth")
    r = s.t.rss()
    if r is not None:
        s.put("rss_tenth_MiB", r)
    # the mark: where the last tenth begins, counted within `rest`
    t = create_tree(rest, s.t.pid, marks=(n - 2 * tenth,))
    put_window(s, "create_last", tenth, t[-2], t[-1])
    busy += t[-1][0] - t[0][0]
    cpu += t[-1][1] - t[0][1]
    s.put("create_ops", n / busy)
    s.put("create_cpu_us", cpu * 1e6 / n)
    s.unmount("create_safe_s")

    s.t.wipe_cache()  # a fresh machine: no cache directory
    drop_caches()
    t0 = time.perf_counter()
    m = s.mount()
    s.put("mount_cold_s", time.perf_counter() - t0)
    t0 = time.perf_counter()
    subprocess.run(["ls", m], check=True, stdout=subprocess.DEVNULL)
    s.put("ls_root_s", time.perf_counter() - t0)
    # the root, the directories, the files and the first change's files
    timed_find(s, m, 1 + DIRS + n + changes, drop_caches)
    small_change(s, m, "change-full", "full")
    s.unmount()

    # a fresh machine again: this time the store holds the checkpoint
    # that the mount restoring the volume wrote
    s.t.wipe_cache()
    drop_caches()
    t0 = time.perf_counter()
    s.mount()
    s.put("mount_cold_again_s", time.perf_counter() - t0)
    s.unmount()


def w_scale_reference(s, n, drop_caches):
    """passthrough_ll: the largest tree of the same shape it can serve."""
    per = n // DIRS
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    dirs = max(1, min(DIRS, (limit * 3 // 4) // (per + 1)))
    tree = tree_names(s.mount(), per * dirs, dirs)
    s.put("files", per * dirs)
    s.start_count()
    put_window(s, "create", per * dirs, *create_tree(tree, s.t.pid))
    s.unmount("create_safe_s")
    m = s.mount()
    timed_find(s, m, 1 + dirs + per * dirs, drop_caches)
    s.unmount()


def w_scale(s, sz, ctx, drop_caches, metafuse_cls):
    n = sz["scale"]
    if n < DIRS * 10 or n % DIRS:
        raise RuntimeError(f"scale: {n} files: give a multiple of {DIRS} "
                           f"of at least {DIRS * 10}")
    if isinstance(s.t, metafuse_cls):
        w_scale_metafuse(s, n, drop_caches)
    else:
        w_scale_reference(s, n, drop_caches)


def scale_verdicts(med, mf):
    """The goals of issue 19 for the scale workload, for results.md."""
    def v(m, t):
        return med.get((("scale", m), t))

    out = []
    for m in mf:
        n = v("files", m)
        if n is None:
            continue
        if not out:
            out = ["", "## scale: the goals of issue 19", ""]

        def ck(what, ok, detail):
            mark = "n/a" if ok is None else ("pass" if ok else "**FAIL**")
            out.append(f"- {m} ({n:,.0f} files): {what}: {mark} ({detail})")
        a, b = v("create_last_ops", m), v("create_first_ops", m)
        ca, cb = v("create_last_cpu_us", m), v("create_first_cpu_us", m)
        cpu = (f"; the daemon's CPU per file {ca:,.0f} vs {cb:,.0f} µs"
               if ca and cb else "")
        if a and b:
            ck("create rate of the last tenth within 20% of the first's",
               a >= 0.8 * b,
               f"{a:,.0f} vs {b:,.0f} files/s, {a / b:.2f}{cpu}")
        a, b = v("mount_cold_s", m), v("ls_root_s", m)
        if a is not None and b is not None:
            ck("a fresh machine's mount and first ls under 10 s",
               a + b < 10, f"{a:.2f} s + {b:.2f} s")
        a, b = v("find_entries_per_s", m), v("find_entries_per_s",
                                             "passthrough_ll")
        if a and b:
            ck("find within 1.5x passthrough_ll's time per entry",
               b / a <= 1.5, f"{b / a:.2f}x, {a:,.0f} vs {b:,.0f} "
               "entries/s")
        rss = v("peak_rss_MiB", m)
        if rss is not None:
            ck("peak RSS under 150 MiB", rss < 150, f"{rss:.1f} MiB")
        ra, rb = v("change_reqs_tenth", m), v("change_reqs_full", m)
        ba, bb = v("change_bytes_tenth", m), v("change_bytes_full", m)
        if None not in (ra, rb, ba, bb):
            ck("a small change costs the same at a tenth and at the full "
               "count", rb <= ra and bb <= 1.1 * ba + 64,
               f"{ra:.0f} -> {rb:.0f} requests, {ba:,.0f} -> {bb:,.0f} "
               "bytes up")
    return out
