"""bench_report.py - what bench.py writes after its runs: the metrics
(unit, and whether higher is better), the medians, the ratios to
passthrough_ll, to the best peer and of each encrypted target to its
plain twin, the verdicts on the issues' goals, results.md, summary.csv
and the chart.

Invariants:
  1. Only reads the runs' rows: nothing here measures.
  2. A figure missing from a run is left empty, never zero.
"""

import csv
import os
import shutil
import statistics
import subprocess
import time

from bench_meta import META_CHART, META_METRICS
from bench_history import HISTORY_METRICS
from bench_scale import SCALE_CHART, SCALE_METRICS, scale_verdicts

MiB = 1 << 20


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# metric -> (unit, higher is better)
METRICS = {
    "write_MBps": ("MB/s", True), "write_fsync_s": ("s", False),
    "write_safe_s": ("s", False),
    "read_MBps": ("MB/s", True),
    "randwrite_iops": ("ops/s", True), "randwrite_fsync_s": ("s", False),
    "randwrite_safe_s": ("s", False),
    "randwrite_bound_bytes": ("B", None), "randread_iops": ("ops/s", True),
    "create_ops": ("ops/s", True), "create_safe_s": ("s", False),
    "stat_ops": ("ops/s", True), "read_ops": ("ops/s", True),
    "rename_dir_ms": ("ms", False), "delete_ops": ("ops/s", True),
    "total_s": ("s", False),
    "mkdir_ops": ("ops/s", True), "mkdir_safe_s": ("s", False),
    "find_s": ("s", False),
    "extract_s": ("s", False), "extract_safe_s": ("s", False),
    "delete_s": ("s", False), "delete_safe_s": ("s", False),
    "peak_rss_MiB": ("MiB", None),
    "cp_ms": ("ms", False), "clone_ms": ("ms", False),
    "cp_store_objects": ("objects", None), "cp_store_bytes": ("B", None),
    "clone_store_objects": ("objects", None),
    "clone_store_bytes": ("B", None),
    "snapshot_ms": ("ms", False), "snapshot_dirty_ms": ("ms", False),
    "snapshot_store_bytes": ("B", None),
    "write_cpu_s_per_GiB": ("CPU s/GiB", False),
    "read_cpu_s_per_GiB": ("CPU s/GiB", False),
    "randwrite_cpu_s_per_GiB": ("CPU s/GiB", False),
    "create_cpu_s_per_GiB": ("CPU s/GiB", False),
    "mount_s": ("s", False),
    "lag_median_ms": ("ms", False), "lag_worst_ms": ("ms", False),
    "store_put": ("requests", None), "store_get": ("requests", None),
    "store_delete": ("requests", None), "store_bytes_put": ("B", None),
    "store_stored": ("B", None), "store_requests": ("requests", None),
    "store_head": ("requests", None), "store_post": ("requests", None),
    **META_METRICS, **SCALE_METRICS, **HISTORY_METRICS,
}

# the headline figures, the ones the chart shows
CHART_METRICS = ["write_MBps", "read_MBps", "randwrite_iops",
                 "randread_iops", "create_ops", "stat_ops", "read_ops",
                 "rename_dir_ms", "delete_ops", "total_s", "mkdir_ops",
                 "find_s", "extract_s", "extract_safe_s", "delete_s"]
CHART_METRICS += META_CHART + SCALE_CHART


# ---------------------------------------------------------------- summary

def summarize(rows, targets, out, mode, runs, notes):
    med = {}
    keys = []
    for r in rows:
        if r["value"] is None:
            continue
        k = (r["workload"], r["metric"])
        if k not in keys:
            keys.append(k)
        med.setdefault((k, r["target"]), []).append(float(r["value"]))
    med = {k: statistics.median(v) for k, v in med.items()}
    names = [t.name for t in targets]
    mf = [n for n in names if n.startswith("metafuse")]
    peers = [n for n in names if n in ("s3fs", "rclone")]
    mf_s3 = [t.name for t in targets if t.s3 and t.name in mf]
    if not mf_s3:
        peers = []
    # (encrypted target, its plain twin) measured in the same run
    pairs = [(t.name, t.plain) for t in targets
             if getattr(t, "plain", None) in names]

    def ratio(k, a, b):
        unit, hib = METRICS.get(k[1], ("", None))
        va, vb = med.get((k, a)), med.get((k, b))
        if hib is None or not va or not vb:
            return None
        return va / vb if hib else vb / va

    def best_peer(k):
        unit, hib = METRICS.get(k[1], ("", None))
        vals = [(med[(k, p)], p) for p in peers if (k, p) in med]
        if hib is None or not vals:
            return None
        return (max(vals) if hib else min(vals))[1]

    # summary CSV
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        head = ["workload", "metric", "unit"] + names
        head += [f"{m}/passthrough_ll" for m in mf]
        head += [f"{m}/best_peer" for m in mf_s3 if peers]
        head += [f"{e}/{p}" for e, p in pairs]
        w.writerow(head)
        for k in keys:
            row = list(k) + [METRICS.get(k[1], ("",))[0]]
            row += [fmt_csv(med.get((k, n))) for n in names]
            row += [fmt_csv(ratio(k, m, "passthrough_ll")) for m in mf]
            if peers:
                for m in mf_s3:
                    bp = best_peer(k)
                    row.append(fmt_csv(ratio(k, m, bp) if bp else None))
            row += [fmt_csv(ratio(k, e, p)) for e, p in pairs]
            w.writerow(row)

    # Markdown
    md = [f"# metafuse benchmark ({mode}, median of {runs} run"
          f"{'s' if runs > 1 else ''})", ""]
    md += notes + [""]
    head = ["workload", "metric", "unit"] + names
    head += [f"{m} ÷ passthrough_ll" for m in mf]
    if peers:
        head += [f"{m} ÷ best peer" for m in mf_s3]
    head += [f"{e} ÷ {p}" for e, p in pairs]
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + "---|" * len(head))
    for k in keys:
        row = list(k) + [METRICS.get(k[1], ("",))[0]]
        row += [fmt_md(med.get((k, n))) for n in names]
        row += [fmt_ratio(ratio(k, m, "passthrough_ll")) for m in mf]
        if peers:
            for m in mf_s3:
                bp = best_peer(k)
                r = ratio(k, m, bp) if bp else None
                row.append(fmt_ratio(r) + (f" ({bp})" if r else ""))
        row += [fmt_ratio(ratio(k, e, p)) for e, p in pairs]
        md.append("| " + " | ".join(row) + " |")
    md += ["", "Ratios are speed ratios: above 1 means metafuse is faster "
           "(for times, the inverse ratio of the times).", ""]
    md += verdicts(med, mf, peers)
    md += scale_verdicts(med, mf)
    md += enc_verdicts(med, pairs)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")

    chart(med, keys, mf, mf_s3 if peers else [], best_peer, ratio, out)
    return med


def verdicts(med, mf, peers):
    out = ["## Against the targets of issue 5", ""]

    def v(w, m, t):
        return med.get(((w, m), t))

    for m in mf:
        def ck(what, ok, detail):
            mark = "n/a" if ok is None else ("pass" if ok else "**FAIL**")
            out.append(f"- {m}: {what}: {mark} ({detail})")
        for w, k in (("seq", "write_MBps"), ("seq", "read_MBps")):
            a, b = v(w, k, m), v(w, k, "passthrough_ll")
            if m in ("metafuse", "metafuse-alt") and a and b:
                ck(f"sequential {k.split('_')[0]} >= 0.8 of passthrough_ll",
                   a / b >= 0.8, f"{a / b:.2f}")
        a, b = v("rand", "randwrite_iops", m), v("rand", "randwrite_iops",
                                                 "passthrough_ll")
        if a and b:
            ck("random 4K write ops/s >= 0.5 of passthrough_ll",
               a / b >= 0.5, f"{a / b:.2f}")
        a, b = v("rand", "store_bytes_put", m), v("rand",
                                                  "randwrite_bound_bytes", m)
        if a is not None and b:
            over = (f", {(a - b) / 1024:,.1f} KiB over: the objects' "
                    "headers and the metadata" if a > b else "")
            ck("random 4K write bytes to store <= blocks touched x block "
               "size", a <= b,
               f"{a / MiB:.1f} MiB vs {b / MiB:.1f} MiB{over}")
        a, b = v("small", "total_s", m), v("small", "total_s",
                                          "passthrough_ll")
        if a and b:
            ck("small files within 2x of passthrough_ll", a <= 2 * b,
               f"{a / b:.2f}x the time")
        for p, need in (("s3fs", 5), ("rclone", 2)):
            b = v("small", "total_s", p)
            if a and b and m != "metafuse":
                ck(f"small files >= {need}x {p}", b / a >= need,
                   f"{b / a:.2f}x")
        a = v("small", "rename_dir_ms", m)
        if a is not None:
            ck("rename of the small-files directory < 50 ms", a < 50,
               f"{a:.1f} ms")
        b = v("seq", "write_MBps", "s3fs")
        a = v("seq", "write_MBps", m)
        c = v("seq", "write_MBps", "s3-ceiling")
        if a and b and m != "metafuse":
            ceil = ""
            if c:
                ceil = (f"; {m} at {a / c:.2f} of s3-ceiling, the server's "
                        f"own limit, {c:,.0f} MB/s")
                if 2 * b > c:
                    ceil += (f": 2x s3fs, {2 * b:,.0f} MB/s, is above it, "
                             "beyond any client of this server here")
            ck("sequential write >= 2x s3fs", a / b >= 2,
               f"{a / b:.2f}x{ceil}")
        for k, limit, what in (("cp", 10, "cp of the large file"),
                               ("clone", 1000, "metafuse clone of the tree")):
            a = v("clone", f"{k}_ms", m)
            if a is not None:
                ck(f"{what} < {limit:,} ms", a < limit, f"{a:,.1f} ms")
            o = v("clone", f"{k}_store_objects", m)
            if o is not None:
                b = v("clone", f"{k}_store_bytes", m) or 0
                ck(f"{what}: the store grows by at most one block", o <= 1,
                   f"{o:.0f} object(s), {b:,.0f} B")
        a = v("follow", "lag_worst_ms", m)
        if a is not None:
            # bench_follow.py runs at the default follow_interval, 5 s
            ck("a follower shows an fsync within its interval (5 s) and "
               "a second", a < 6000, f"worst {a:,.0f} ms, median "
               f"{v('follow', 'lag_median_ms', m) or 0:,.0f} ms")
        rss = [val for ((w, k), t), val in med.items()
               if t == m and k == "peak_rss_MiB"]
        if rss:
            ck("peak RSS < 150 MiB on every workload", max(rss) < 150,
               f"max {max(rss):.1f} MiB")
    return out


def enc_verdicts(med, pairs):
    """Issue 16: an encrypted volume against the plain one of the same run
    (speed ratios; CPU s/GiB beside them) and the mount time."""
    if not pairs:
        return []
    out = ["", "## Encrypted volumes against plain ones (issue 16)", ""]
    figs = (("seq", "write_MBps", "write_cpu_s_per_GiB",
             "sequential write with fsync"),
            ("seq", "read_MBps", "read_cpu_s_per_GiB", "cold read"),
            ("rand", "randwrite_iops", "randwrite_cpu_s_per_GiB",
             "random 4K writes"),
            ("small", "total_s", "create_cpu_s_per_GiB", "small files"))
    for e, p in pairs:
        for w, k, cpu, what in figs:
            a, b = med.get(((w, k), e)), med.get(((w, k), p))
            if not a or not b:
                continue
            hib = METRICS[k][1]
            r = a / b if hib else b / a
            ca, cb = med.get(((w, cpu), e)), med.get(((w, cpu), p))
            cpu_txt = (f"; CPU {ca:.2f} vs {cb:.2f} s/GiB"
                       if ca is not None and cb is not None else "")
            mark = "pass" if r >= 0.9 else "**FAIL**"
            out.append(f"- {e}: {what} >= 0.9 of {p}: {mark} "
                       f"({r:.2f}{cpu_txt})")
        a, b = med.get((("mount", "mount_s"), e)), \
            med.get((("mount", "mount_s"), p))
        if a is not None and b is not None:
            mark = "pass" if a - b <= 1.5 else "**FAIL**"
            out.append(f"- {e}: mount at most 1.5 s slower than {p}: "
                       f"{mark} ({a:.2f} s vs {b:.2f} s, real Argon2id "
                       f"limits)")
    return out


def fmt_csv(x):
    return "" if x is None else f"{x:.6g}"


def fmt_md(x):
    if x is None:
        return "–"
    if abs(x) >= 1e6:
        return f"{x / MiB:,.1f} Mi"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def fmt_ratio(x):
    return "–" if x is None else f"{x:.2f}"


def chart(med, keys, mf, mf_s3, best_peer, ratio, out):
    if not shutil.which("gnuplot"):
        log("note: no gnuplot, no chart")
        return
    cols = [(m, "passthrough_ll") for m in mf]
    cols += [(m, "peer") for m in mf_s3]
    if not cols:
        return
    lines = []
    used = [False] * len(cols)
    for k in keys:
        if k[1] not in CHART_METRICS:
            continue
        vals = []
        for m, ref in cols:
            if ref == "peer":
                bp = best_peer(k)
                r = ratio(k, m, bp) if bp else None
            else:
                r = ratio(k, m, ref)
            vals.append("NaN" if r is None else f"{r:.4f}")
            used[len(vals) - 1] |= r is not None
        lines.append(f"{k[0]}.{k[1]} " + " ".join(vals))
    dat = os.path.join(out, "chart.dat")
    with open(dat, "w") as f:
        f.write("\n".join(lines) + "\n")
    titles = [f"{m} / {'best peer' if r == 'peer' else r}" for m, r in cols]
    plots = ", ".join(
        f"'{dat}' using {i + 2}:xtic(1) title '{t}'"
        for i, t in enumerate(titles) if used[i])
    if not plots:
        os.unlink(dat)
        return
    gp = f"""
set terminal pngcairo size 1400,700 font ',10' noenhanced
set output '{os.path.join(out, "chart.png")}'
set title 'metafuse speed ratios (above 1: metafuse faster)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y 2
set yrange [0.01:*]
set grid ytics
set xtics rotate by -45 scale 0
set key top left
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc 'black'
plot {plots}
"""
    r = subprocess.run(["gnuplot"], input=gp, text=True,
                       capture_output=True)
    if r.returncode != 0:
        log(f"note: gnuplot failed: {r.stderr.strip()}")
    os.unlink(dat)
