"""Randomized model test: the same random operations on the mount and on a
reference directory on the local disk must give the same results (return
values, errno, attributes), and the two trees must be identical every N
steps and after unmount, cache wipe and remount.

METAFUSE_SEED=N replays a run; METAFUSE_MODEL_OPS=N sets the number of
operations per run (default keeps each run well under a minute);
METAFUSE_MODEL_TRACE=FILE writes every operation of a failing run there.
"""

import errno
import hashlib
import os
import random
import stat
import time

import pytest

import mfhelpers as h

OPS = int(os.environ.get("METAFUSE_MODEL_OPS", "4000"))
COMPARE_EVERY = int(os.environ.get("METAFUSE_MODEL_COMPARE_EVERY", "100"))
REMOUNT_EVERY = int(os.environ.get("METAFUSE_MODEL_REMOUNT_EVERY", "500"))
BLOCK = 64 * 1024
NAMES = ["a", "b", "c", "dd", "e", "f", "g", "hh"]
XNAMES = ["user.x", "user.y", "user.long." + "n" * 40]
FD_SLOTS = 4


class Side:
    """One of the two trees, with its open descriptors."""

    def __init__(self, root):
        self.root = root
        self.fds = {}

    def p(self, rel):
        return os.path.join(self.root, rel)

    def close_all(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def digest(b):
    return hashlib.sha256(b).hexdigest()[:16]


def st_summary(st):
    d = [stat.filemode(st.st_mode), st.st_nlink, st.st_uid, st.st_gid]
    if not stat.S_ISDIR(st.st_mode):
        d.append(st.st_size)
    return d


def do_op(side, op):
    """Apply op to side; return a JSON-able description of the result."""
    kind, args = op[0], op[1:]
    p = side.p
    if kind.startswith("fd_") and kind != "fd_open" and \
            args[0] not in side.fds:
        return "!no-such-slot"   # only when replaying a reduced trace
    try:
        if kind == "write":
            rel, off, size, seed = args
            fd = os.open(p(rel), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                n = os.pwrite(fd, h.rand_bytes(seed, size), off)
            finally:
                os.close(fd)
            return n
        if kind == "append":
            rel, size, seed = args
            fd = os.open(p(rel), os.O_WRONLY | os.O_APPEND)
            try:
                return os.write(fd, h.rand_bytes(seed, size))
            finally:
                os.close(fd)
        if kind == "read":
            rel, off, size = args
            fd = os.open(p(rel), os.O_RDONLY)
            try:
                return digest(os.pread(fd, size, off))
            finally:
                os.close(fd)
        if kind == "truncate":
            rel, size = args
            os.truncate(p(rel), size)
            return 0
        if kind == "punch":
            rel, off, size = args
            fd = os.open(p(rel), os.O_RDWR)
            try:
                h.fallocate(fd, h.FALLOC_FL_PUNCH_HOLE |
                            h.FALLOC_FL_KEEP_SIZE, off, size)
            finally:
                os.close(fd)
            return 0
        if kind == "rename":
            a, b, flags = args
            if flags:
                h.renameat2(p(a), p(b), flags)
            else:
                os.rename(p(a), p(b))
            return 0
        if kind == "link":
            os.link(p(args[0]), p(args[1]))
            return 0
        if kind == "symlink":
            os.symlink(args[0], p(args[1]))
            return 0
        if kind == "unlink":
            os.unlink(p(args[0]))
            return 0
        if kind == "mkdir":
            os.mkdir(p(args[0]), args[1])
            return 0
        if kind == "rmdir":
            os.rmdir(p(args[0]))
            return 0
        if kind == "chmod":
            os.chmod(p(args[0]), args[1])
            return 0
        if kind == "setxattr":
            rel, name, value, flags = args
            os.setxattr(p(rel), name, value, flags)
            return 0
        if kind == "removexattr":
            os.removexattr(p(args[0]), args[1])
            return 0
        if kind == "getxattr":
            return digest(os.getxattr(p(args[0]), args[1]))
        if kind == "listxattr":
            return sorted(n for n in os.listxattr(p(args[0]))
                          if n.startswith("user."))
        if kind == "stat":
            return st_summary(os.lstat(p(args[0])))
        if kind == "listdir":
            return sorted(os.listdir(p(args[0])))
        if kind == "readlink":
            return os.readlink(p(args[0]))
        if kind == "utime":
            rel, ns = args
            os.utime(p(rel), ns=ns, follow_symlinks=False)
            st = os.lstat(p(rel))
            return [st.st_atime_ns, st.st_mtime_ns]
        if kind == "fd_open":
            slot, rel, flags = args
            if slot in side.fds:
                os.close(side.fds.pop(slot))
            side.fds[slot] = os.open(p(rel), flags, 0o644)
            return 0
        if kind == "fd_write":
            slot, off, size, seed = args
            return os.pwrite(side.fds[slot], h.rand_bytes(seed, size), off)
        if kind == "fd_read":
            slot, off, size = args
            return digest(os.pread(side.fds[slot], size, off))
        if kind == "fd_truncate":
            slot, size = args
            os.ftruncate(side.fds[slot], size)
            return 0
        if kind == "fd_stat":
            return st_summary(os.fstat(side.fds[args[0]]))
        if kind == "fd_close":
            os.close(side.fds.pop(args[0]))
            return 0
        raise ValueError(f"unknown op {kind}")
    except OSError as e:
        return "!" + errno.errorcode.get(e.errno, str(e.errno))


class Generator:
    """Random operations, drawn from the state of the reference tree only
    (so a run is reproducible from its seed)."""

    def __init__(self, rng, ref):
        self.rng = rng
        self.ref = ref

    def entries(self):
        out = {"files": [], "dirs": [""], "links": [], "all": []}
        for dirpath, dirnames, filenames in os.walk(self.ref.root):
            rel = os.path.relpath(dirpath, self.ref.root)
            rel = "" if rel == "." else rel
            for n in dirnames + filenames:
                q = os.path.join(rel, n)
                st = os.lstat(os.path.join(dirpath, n))
                out["all"].append(q)
                if stat.S_ISDIR(st.st_mode):
                    out["dirs"].append(q)
                elif stat.S_ISREG(st.st_mode):
                    out["files"].append(q)
                elif stat.S_ISLNK(st.st_mode):
                    out["links"].append(q)
        return out

    def path(self, e, kind="any", existing=0.75):
        rng = self.rng
        pool = {"file": e["files"], "dir": e["dirs"][1:],
                "any": e["all"]}[kind]
        if pool and rng.random() < existing:
            return rng.choice(pool)
        parent = rng.choice(e["dirs"])
        return os.path.join(parent, rng.choice(NAMES))

    def offset(self):
        rng = self.rng
        return rng.choice([0, rng.randrange(0, 8 * BLOCK),
                           rng.randrange(1, 8) * BLOCK - rng.randrange(0, 3),
                           rng.randrange(0, 40 * BLOCK)])

    def size(self):
        rng = self.rng
        return rng.choice([1, 17, 4096, rng.randrange(1, BLOCK + 100),
                           rng.randrange(1, 3 * BLOCK),
                           rng.randrange(1, 16 * BLOCK)])

    def next(self):
        rng = self.rng
        e = self.entries()
        seed = rng.randrange(1 << 30)
        kinds = [("write", 18), ("append", 3), ("read", 10),
                 ("truncate", 6), ("punch", 3), ("rename", 8), ("link", 4),
                 ("symlink", 2), ("unlink", 6), ("mkdir", 5), ("rmdir", 4),
                 ("chmod", 3), ("setxattr", 4), ("removexattr", 2),
                 ("getxattr", 2), ("listxattr", 1), ("stat", 3),
                 ("listdir", 2), ("readlink", 1), ("utime", 1),
                 ("fd_open", 4), ("fd_write", 6), ("fd_read", 3),
                 ("fd_truncate", 1), ("fd_stat", 1), ("fd_close", 2)]
        kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        if kind.startswith("fd_") and kind != "fd_open" and \
                not self.ref.fds:
            kind = "fd_open"
        slot = rng.choice(sorted(self.ref.fds)) if self.ref.fds else 0
        if kind == "write":
            return (kind, self.path(e, "file"), self.offset(), self.size(),
                    seed)
        if kind == "append":
            return (kind, self.path(e, "file"), self.size(), seed)
        if kind == "read":
            return (kind, self.path(e, "file"), self.offset(), self.size())
        if kind == "truncate":
            return (kind, self.path(e, "file"),
                    rng.choice([0, self.offset(), self.offset() + 1]))
        if kind == "punch":
            return (kind, self.path(e, "file"), self.offset(), self.size())
        if kind == "rename":
            flags = rng.choice([0, 0, 0, h.RENAME_NOREPLACE,
                                h.RENAME_EXCHANGE])
            return (kind, self.path(e), self.path(e, existing=0.5), flags)
        if kind == "link":
            return (kind, self.path(e, "file"), self.path(e, existing=0.2))
        if kind == "symlink":
            return (kind, rng.choice(NAMES + ["../" + NAMES[0], "x/y"]),
                    self.path(e, existing=0.2))
        if kind == "unlink":
            return (kind, self.path(e))
        if kind == "mkdir":
            return (kind, self.path(e, existing=0.2),
                    rng.choice([0o755, 0o700, 0o777]))
        if kind == "rmdir":
            return (kind, self.path(e, "dir"))
        if kind == "chmod":
            return (kind, self.path(e), rng.choice(
                [0o644, 0o600, 0o755, 0o4755, 0o1777, 0o000, 0o444]))
        if kind == "setxattr":
            flags = rng.choice([0, 0, os.XATTR_CREATE,
                                os.XATTR_REPLACE])
            return (kind, self.path(e), rng.choice(XNAMES),
                    h.rand_bytes(seed, rng.randrange(0, 200)), flags)
        if kind in ("removexattr", "getxattr"):
            return (kind, self.path(e), rng.choice(XNAMES))
        if kind in ("listxattr", "stat", "readlink"):
            return (kind, self.path(e))
        if kind == "listdir":
            return (kind, self.path(e, "dir"))
        if kind == "utime":
            return (kind, self.path(e), (rng.randrange(1 << 62),
                                         rng.randrange(1 << 62)))
        if kind == "fd_open":
            flags = rng.choice([os.O_RDWR, os.O_RDWR | os.O_CREAT,
                                os.O_RDWR | os.O_APPEND, os.O_RDONLY,
                                os.O_RDWR | os.O_TRUNC,
                                os.O_RDWR | os.O_CREAT | os.O_EXCL])
            return (kind, rng.randrange(FD_SLOTS), self.path(e, "file"),
                    flags)
        if kind == "fd_write":
            return (kind, slot, self.offset(), self.size(), seed)
        if kind == "fd_read":
            return (kind, slot, self.offset(), self.size())
        if kind == "fd_truncate":
            return (kind, slot, rng.choice([0, self.offset()]))
        return (kind, slot)


def describe(op):
    return tuple(f"<{len(a)} bytes>" if isinstance(a, bytes) else a
                 for a in op)


def compare_trees(mnt_side, ref_side, what):
    want = h.snapshot(ref_side.root)
    got = h.snapshot(mnt_side.root)
    return h.diff_snapshots(want, got, "reference", f"mount ({what})")


@pytest.mark.parametrize("variant", ["default", "tiny-cache", "delayed",
                                     "kernel-writeback-cache"])
def test_random_operations_match_reference(mounts, reference, variant):
    seed = int(os.environ.get("METAFUSE_SEED") or
               random.SystemRandom().randrange(1 << 32))
    if variant == "tiny-cache":
        # blocks are evicted and fetched back from the store all the time
        opts = {"writeback_delay": "0", "cache_size": "512K"}
    elif variant == "delayed":
        # nothing uploads on time; max_dirty alone forces uploads
        opts = {"writeback_delay": "3600", "max_dirty": "1M"}
    elif variant == "kernel-writeback-cache":
        if not h.mount_option_supported("writeback_cache"):
            pytest.skip("this metafuse has no writeback_cache option")
        opts = {"writeback_cache": True}
    else:
        opts = {}
    m = mounts(block_size=BLOCK, opts=opts)
    print(f"model test seed: METAFUSE_SEED={seed} ({variant})")
    rng = random.Random(seed)
    os.mkdir(m.path("w"))
    os.mkdir(os.path.join(reference, "w"))
    mside = Side(m.path("w"))
    rside = Side(os.path.join(reference, "w"))
    gen = Generator(rng, rside)
    history = []

    def fail(msg):
        mside.close_all()
        rside.close_all()
        trace = os.environ.get("METAFUSE_MODEL_TRACE")
        if trace:
            with open(trace, "w") as f:
                for i, o, r in history:
                    f.write(f"{i}: {describe(o)} -> {r!r}\n")
        pytest.fail(f"METAFUSE_SEED={seed} ({variant}), after "
                    f"{len(history)} ops: {msg}\nlast ops:\n" +
                    "\n".join(f"  {i}: {describe(o)} -> {r!r}"
                              for i, o, r in history[-15:]),
                    pytrace=False)

    def remount(wipe):
        mside.close_all()
        rside.close_all()
        m.remount(wipe_cache=wipe)
        diff = compare_trees(mside, rside,
                             "after remount" + (" + cache wipe"
                                                if wipe else ""))
        if diff:
            fail("trees differ after remount:\n" + "\n".join(diff))

    for i in range(OPS):
        # a daemon that died leaves the bare mount point: operations would
        # then "succeed" on the underlying directory
        if not os.path.ismount(m.mnt):
            fail(f"the mount is gone (daemon died?)\n{m.log_tail()}")
        op = gen.next()
        want = do_op(rside, op)
        got = do_op(mside, op)
        history.append((i, op, want))
        if want != got:
            fail(f"op {describe(op)}: reference {want!r}, mount {got!r}")
        # attributes of every path the op named
        for a in op[1:]:
            if isinstance(a, str) and not a.startswith("user."):
                w = do_op(rside, ("stat", a))
                g = do_op(mside, ("stat", a))
                if w != g:
                    fail(f"after {describe(op)}: stat {a}: reference {w!r},"
                         f" mount {g!r}")
        if (i + 1) % COMPARE_EVERY == 0:
            diff = compare_trees(mside, rside, f"step {i + 1}")
            if diff:
                fail("trees differ:\n" + "\n".join(diff))
        if (i + 1) % REMOUNT_EVERY == 0 and i + 1 < OPS:
            remount(wipe=(i + 1) // REMOUNT_EVERY % 2 == 0)
    remount(wipe=True)


# ---- snapshots at random points of a run (helper SNAP) ----

SNAP_OPS = int(os.environ.get("METAFUSE_MODEL_SNAP_OPS", "800"))
SNAP_POINTS = 4


def test_snapshots_match_the_model_at_their_moments(mounts, reference):
    """Snapshots made at random points of a random run, each mounted with
    --snapshot after the run: beside the live mount, after a crash of it,
    after gc, after the cache is deleted; each must equal the model's
    tree at its moment."""
    seed = int(os.environ.get("METAFUSE_SEED") or
               random.SystemRandom().randrange(1 << 32))
    m = mounts(block_size=BLOCK)
    print(f"model snapshot test seed: METAFUSE_SEED={seed}")
    rng = random.Random(seed)
    os.mkdir(m.path("w"))
    os.mkdir(os.path.join(reference, "w"))
    mside = Side(m.path("w"))
    rside = Side(os.path.join(reference, "w"))
    gen = Generator(rng, rside)
    points = set(rng.sample(range(1, SNAP_OPS + 1), SNAP_POINTS))
    states = {}

    def fail(msg):
        mside.close_all()
        rside.close_all()
        pytest.fail(f"METAFUSE_SEED={seed}: {msg}", pytrace=False)

    for i in range(SNAP_OPS):
        op = gen.next()
        want = do_op(rside, op)
        got = do_op(mside, op)
        if want != got:
            fail(f"op {i} {describe(op)}: reference {want!r}, mount "
                 f"{got!r}")
        if i + 1 in points:
            # with files open and written: what was written is in it
            name = f"at-{i + 1}"
            r = m.cli("snapshot", "create", m.mnt, name)
            if r.returncode != 0:
                fail(f"snapshot {name}: {r.stderr}")
            states[name] = h.snapshot(rside.root)
    mside.close_all()
    rside.close_all()
    p = mounts(name="past", store=m.store, mkfs=False, mount=False,
               use_cache_opt=False)

    def check_all(what):
        for name, want in sorted(states.items()):
            p.mount(opts={"snapshot": name})
            try:
                got = h.snapshot(p.path("w"))
            finally:
                p.umount()
            diff = h.diff_snapshots(want, got, "model",
                                    f"snapshot {name} ({what})")
            if diff:
                fail(f"snapshot {name} differs {what}:\n" +
                     "\n".join(diff))

    check_all("beside the live mount")
    m.kill()
    h.force_unmount(m.mnt)
    check_all("with the writer crashed")
    m.mount()
    m.umount()
    r = m.cli("gc", m.store)
    assert r.returncode == 0, r.stderr
    check_all("after gc")
    m.wipe_cache()
    m.mount()
    check_all("after the cache was deleted")
    m.umount()
    m.fsck_verified()


# ---- the history window: recorded instants mounted back (mount --at) ----

SLOW = os.environ.get("METAFUSE_SLOW", "") not in ("", "0")
INSTANT_OPS = 2400 if SLOW else 400
INSTANTS = 8 if SLOW else 3


def fsync_tree(root):
    """fsync every regular file under root: its data and, with the first,
    every metadata change is in the store (a journal entry)."""
    for dirpath, _, files in os.walk(root):
        for n in files:
            p = os.path.join(dirpath, n)
            if not stat.S_ISREG(os.lstat(p).st_mode):
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def iso_ns(ns):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + \
        ".%09dZ" % (ns % 10**9)


def check_instants(mounts, m, instants, what, n):
    """Each recorded instant, mounted --at, equals the model then."""
    for k, (t, want) in enumerate(instants):
        p = mounts(f"at{n}-{k}", mkfs=False, mount=False, store=m.store,
                   opts={"at": iso_ns(t)}, env=m.env)
        p.mount()
        try:
            got = h.snapshot(p.path("w"))
            diff = h.diff_snapshots(want, got, "model", f"mount --at ({what})")
        finally:
            p.umount()
        assert not diff, f"instant {k} ({iso_ns(t)}), {what}:\n" + \
            "\n".join(diff)


def test_instants_match_model(mounts, reference):
    """Random operations with instants recorded at random points (each
    after an fsync of everything); after the run each instant mounted with
    --at equals the model's state then: beside the writer, after a crash
    of the writer (kill -9), after `gc`, with the cache deleted."""
    seed = int(os.environ.get("METAFUSE_SEED") or
               random.SystemRandom().randrange(1 << 32))
    print(f"model test seed: METAFUSE_SEED={seed} (instants)")
    rng = random.Random(seed)
    m = mounts(mkfs=False, mount=False)
    args = ["mkfs", "--history", "1h", "--block-size", str(BLOCK)]
    if m.encrypt:
        args.append("--encrypt")
    r = m.cli(*args, m.store)
    assert r.returncode == 0, r.stderr
    m.mount()
    os.mkdir(m.path("w"))
    os.mkdir(os.path.join(reference, "w"))
    mside = Side(m.path("w"))
    rside = Side(os.path.join(reference, "w"))
    gen = Generator(rng, rside)
    points = sorted(rng.sample(range(50, INSTANT_OPS), INSTANTS))
    instants = []
    for i in range(INSTANT_OPS):
        op = gen.next()
        want = do_op(rside, op)
        got = do_op(mside, op)
        assert want == got, f"METAFUSE_SEED={seed}: op {describe(op)}: " \
            f"reference {want!r}, mount {got!r}"
        if points and i == points[0]:
            points.pop(0)
            fsync_tree(m.path("w"))
            instants.append((time.time_ns(), h.snapshot(rside.root)))
            time.sleep(0.01)
    mside.close_all()
    rside.close_all()
    check_instants(mounts, m, instants, "beside the writer", 0)
    m.kill()
    h.force_unmount(m.mnt)
    check_instants(mounts, m, instants, "after a crash of the writer", 1)
    m.wipe_cache()
    m.mount()
    m.umount()
    r = m.cli("gc", m.store)
    assert r.returncode == 0, r.stderr
    check_instants(mounts, m, instants, "after gc, cache deleted", 2)
