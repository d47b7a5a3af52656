"""Crash loops: a mixed workload killed with kill -9 at random moments.

After each kill the dead mount is lazily unmounted (as a user would with
`fusermount3 -u -z`), the volume is mounted again, and:

  - with the cache kept (durability promise 2), every file whose last
    operation completed before the kill reads back exactly as written:
    writes reach the local cache before write() returns;
  - with the cache deleted (promise 3), every file fsync'ed and not
    touched since reads back exactly, and the tree is a consistent state
    (fsck clean after the final unmount).

Seeded: METAFUSE_SEED=N replays a run (the seed is printed on failure);
METAFUSE_CRASH_ITERS=N sets the number of kills per run.
"""

import errno
import os
import time
import random
import re
import shutil
import threading

import pytest

import mfhelpers as h

BLOCK = 64 * 1024
DIRS = ["", "d1", "d2", "d1/sub"]
NAMES = ["a", "b", "c", "d", "e"]
# what the daemon logs when the journal in the store is not whole, or the
# cache and the index disagree: never expected, whatever a kill cut short
BROKEN = re.compile(r"follows a gap|is damaged|does not apply|\(a bug\)")


class Workload:
    """Random operations on the mount, with a shadow of what each file
    holds and which files are known durable (fsync'ed, untouched since)."""

    def __init__(self, mnt, rng):
        self.mnt = mnt
        self.rng = rng
        self.shadow = {}       # rel path -> bytearray (what was written)
        self.durable = {}      # rel path -> bytes at its last fsync
        self.uncertain = set()  # paths the interrupted op touched
        self.history = []      # (kill round, op, paths, details)
        self.round = 0

    def p(self, rel):
        return os.path.join(self.mnt, rel)

    def setup(self):
        for d in DIRS[1:]:
            os.makedirs(self.p(d), exist_ok=True)

    def pick(self, existing=0.7):
        rng = self.rng
        if self.shadow and rng.random() < existing:
            return rng.choice(sorted(self.shadow))
        return os.path.join(rng.choice(DIRS), rng.choice(NAMES))

    def step(self):
        """One operation; returns the paths it touches (set before it runs:
        on a crash they are the uncertain ones)."""
        rng = self.rng
        kind = rng.choices(["write", "fsync_write", "rename", "unlink",
                            "truncate"], [40, 25, 12, 10, 8])[0]
        if kind in ("write", "fsync_write", "truncate"):
            rel = self.pick()
            self.uncertain = {rel}
            data = self.shadow.get(rel, bytearray())
            fd = os.open(self.p(rel), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if kind == "truncate":
                    size = rng.randrange(0, 6 * BLOCK)
                    self.note(kind, rel, f"{len(data)} -> {size}")
                    os.ftruncate(fd, size)
                    if size < len(data):
                        del data[size:]
                    else:
                        data.extend(bytes(size - len(data)))
                else:
                    off = rng.choice([0, len(data), rng.randrange(
                        0, 6 * BLOCK)])
                    size = rng.choice([1, 4096, rng.randrange(1, 3 * BLOCK)])
                    buf = h.rand_bytes(rng.randrange(1 << 30), size)
                    self.note(kind, rel, f"[{off}, {off + size}) of "
                              f"{len(data)}")
                    n = os.pwrite(fd, buf, off)
                    assert n == size
                    if off > len(data):
                        data.extend(bytes(off - len(data)))
                    data[off:off + size] = buf
                self.shadow[rel] = data
                self.durable.pop(rel, None)
                if kind == "fsync_write":
                    os.fsync(fd)
                    self.note("fsynced", rel)
                    self.durable[rel] = bytes(data)
            finally:
                os.close(fd)
        elif kind == "rename":
            a = self.pick(existing=1.0)
            b = self.pick(existing=0.3)
            if a == b or a not in self.shadow:
                return
            self.uncertain = {a, b}
            self.note(kind, f"{a} -> {b}")
            os.rename(self.p(a), self.p(b))
            self.shadow[b] = self.shadow.pop(a)
            self.durable.pop(a, None)
            self.durable.pop(b, None)
        elif kind == "unlink":
            a = self.pick(existing=1.0)
            if a not in self.shadow:
                return
            self.uncertain = {a}
            self.note(kind, a)
            os.unlink(self.p(a))
            del self.shadow[a]
            self.durable.pop(a, None)
        self.uncertain = set()

    def note(self, kind, what, detail=""):
        self.history.append((self.round, kind, what, detail))

    def told(self, rel):
        """What was done to the path rel, for a failure message."""
        return "\n".join(f"  round {r}: {k} {w} {d}"
                         for r, k, w, d in self.history
                         if rel in w.split(" -> "))

    def files_on_mount(self):
        out = {}
        for dirpath, _, filenames in os.walk(self.mnt):
            for n in filenames:
                full = os.path.join(dirpath, n)
                out[os.path.relpath(full, self.mnt)] = h.read_file(full)
        return out


def kill_later(m, delay, done):
    if not done.wait(delay):
        m.kill()


WIPE = pytest.mark.parametrize("wipe", [False, True],
                               ids=["cache-kept", "cache-lost"])


@WIPE
@pytest.mark.timeout(900)
def test_crash_loop(mounts, wipe):
    crash_loop(mounts, wipe, 8)


@WIPE
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_crash_loop_50(mounts, wipe):
    """The issue's figure: 50 kills per run."""
    crash_loop(mounts, wipe, 50)


def crash_loop(mounts, wipe, iters):
    iters = int(os.environ.get("METAFUSE_CRASH_ITERS") or iters)
    seed = int(os.environ.get("METAFUSE_SEED") or
               random.SystemRandom().randrange(1 << 32))
    print(f"crash loop seed: METAFUSE_SEED={seed} ({iters} kills, "
          f"{'cache deleted' if wipe else 'cache kept'})")
    rng = random.Random(seed)
    m = mounts(block_size=BLOCK, opts={"writeback_delay": "0.3",
                                       "journal_interval": "0.5"})
    m.allow_errors(".*")  # a killed daemon's log may say anything
    w = Workload(m.mnt, rng)
    w.setup()

    def fail(msg):
        pytest.fail(f"METAFUSE_SEED={seed}: {msg}", pytrace=False)

    for it in range(iters):
        done = threading.Event()
        killer = threading.Thread(target=kill_later,
                                  args=(m, rng.uniform(0.05, 1.5), done))
        killer.start()
        ops = 0
        try:
            while True:
                w.step()
                ops += 1
                if ops > 5000:
                    break
        except OSError as e:
            if e.errno not in (errno.ENOTCONN, errno.ECONNABORTED,
                               errno.EIO, errno.ENOENT):
                done.set()
                killer.join()
                fail(f"kill {it}: unexpected error {e!r}")
        done.set()
        killer.join()
        m.kill()
        h.force_unmount(m.mnt)
        if wipe:
            m.wipe_cache()
        if os.environ.get("METAFUSE_CRASH_KEEP") and m.is_local:
            # the store as this remount finds it, to look at afterwards
            shutil.copytree(m.store, f"{m.root}/store-{it}")
        try:
            m.mount()
        except h.MountError as e:
            fail(f"kill {it}: remount failed: {e}")
        got = w.files_on_mount()
        # a kill may cut an entry short, never lose one or break the chain
        bad = [ln for ln in m.log_text().splitlines()
               if BROKEN.search(ln)]
        if bad:
            fail(f"kill {it}: the daemon found its state broken:\n"
                 + "\n".join(bad))
        if wipe:
            for rel, want in w.durable.items():
                if rel in w.uncertain:
                    continue
                if got.get(rel) != want:
                    g = got.get(rel)
                    at = None if g is None else next(
                        (i for i, (x, y) in enumerate(zip(g, want))
                         if x != y), min(len(g), len(want)))
                    fail(f"kill {it} (after {ops} ops): fsync'ed {rel} "
                         f"lost: want {len(want)} bytes, got "
                         f"{None if g is None else len(g)}, first "
                         f"difference at byte {at}; what was done to "
                         f"it:\n{w.told(rel)}")
        else:
            for rel in set(w.shadow) | set(got):
                if rel in w.uncertain:
                    continue
                want = w.shadow.get(rel)
                if got.get(rel) != (None if want is None else bytes(want)):
                    fail(f"kill {it} (after {ops} ops): {rel} differs "
                         f"from what was written before the kill: want "
                         f"{None if want is None else len(want)} bytes, "
                         f"got {None if rel not in got else len(got[rel])}")
        # the next round starts from what is there now
        w.shadow = {k: bytearray(v) for k, v in got.items()}
        w.durable = {}
        w.uncertain = set()
        w.round = it + 1
        w.setup()
    m.umount()
    r = m.cli("fsck", m.store)
    if r.returncode != 0:
        fail(f"fsck after the loop:\n{r.stdout}{r.stderr}")
    # and everything made it to the store
    m.wipe_cache()
    m.mount()
    got = w.files_on_mount()
    want = {k: bytes(v) for k, v in w.shadow.items()}
    if got != want:
        fail("after the final unmount and cache wipe the files differ")


def write_fsync(path, data):
    h.write_file(path, data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("lose", ["cache", "blocks"])
def test_cut_block_lost_then_grown(mounts, lose):
    """A truncate cuts a block and the journal records it, then a crash
    loses the cut before its upload: the whole cache directory, or just
    the block files.  The block's last upload still holds the bytes past
    the new end; when the file grows they must read as zeros, before and
    after the next crash.  They came back (the crash loop found it as an
    fsync'ed file with the right size and wrong bytes from the old end
    on)."""
    m = mounts(block_size=BLOCK, opts={"writeback_delay": "600"})
    m.allow_errors(".*")  # a killed daemon's log may say anything
    f, g = m.path("f"), m.path("g")
    data = h.rand_bytes(40, 2 * BLOCK)
    write_fsync(f, data)                   # in the store
    os.truncate(f, BLOCK + 100)            # block 1 cut, not uploaded
    write_fsync(g, b"x" * 5000)            # the journal goes up
    m.kill()
    h.force_unmount(m.mnt)
    if lose == "cache":
        m.wipe_cache()
    else:
        shutil.rmtree(os.path.join(m.cache, "blocks"))
    m.mount()
    assert h.read_file(f) == data[:BLOCK + 100]
    tail = h.rand_bytes(41, 10)
    fd = os.open(f, os.O_WRONLY)
    try:
        os.pwrite(fd, tail, BLOCK + 1000)  # past the end, in block 1
        os.fsync(fd)
    finally:
        os.close(fd)
    want = data[:BLOCK + 100] + bytes(900) + tail
    assert h.read_file(f) == want
    m.kill()
    h.force_unmount(m.mnt)
    m.wipe_cache()
    m.mount()
    assert h.read_file(f) == want
    m.umount()
    m.fsck_verified()


@pytest.mark.parametrize("how", ["truncate", "punch"])
def test_cut_block_lost_inside_grown_file(mounts, how):
    """A truncate (or a hole punched) cuts a block, the file grows past
    it, and the journal goes up before the cut block does; then a crash
    loses the cache.  Within the file's new size nothing tells the cut
    block's old bytes apart, so they came back where zeros belong.  The
    journal now sends no change before the blocks cut by it are in the
    store: the cut bytes read as zeros (or the file as it was before)."""
    m = mounts(block_size=BLOCK, opts={"writeback_delay": "600"})
    m.allow_errors(".*")  # a killed daemon's log may say anything
    f, g = m.path("f"), m.path("g")
    data = h.rand_bytes(42, 3 * BLOCK)
    write_fsync(f, data)                   # in the store
    fd = os.open(f, os.O_WRONLY)
    try:
        if how == "truncate":
            os.truncate(f, BLOCK + 100)    # block 1 cut
            cut = bytearray(data[:BLOCK + 100]) + bytes(3 * BLOCK - 100)
        else:
            h.fallocate(fd, h.FALLOC_FL_PUNCH_HOLE | h.FALLOC_FL_KEEP_SIZE,
                        BLOCK + 100, 1000)
            cut = bytearray(data) + bytes(BLOCK)
            cut[BLOCK + 100:BLOCK + 1100] = bytes(1000)
        os.pwrite(fd, b"end", 4 * BLOCK - 3)  # grows past block 1
    finally:
        os.close(fd)
    cut[4 * BLOCK - 3:] = b"end"
    write_fsync(g, b"x" * 5000)            # the journal goes up
    m.kill()
    h.force_unmount(m.mnt)
    m.wipe_cache()
    m.mount()
    got = h.read_file(f)
    assert len(got) == 4 * BLOCK       # the journal has the new size
    assert got[BLOCK:2 * BLOCK] == bytes(cut[BLOCK:2 * BLOCK])
    assert got[:3 * BLOCK] == bytes(cut[:3 * BLOCK])
    # the write past the end was not fsync'ed: its bytes or zeros
    assert got[3 * BLOCK:] in (bytes(cut[3 * BLOCK:]), bytes(BLOCK))
    m.umount()
    m.fsck_verified()


def test_crash_between_delete_and_purge(mounts):
    """A deleted file is purged by a thread a moment later, in a batch.
    A crash in between leaves it an orphan with its dirty blocks in the
    cache: the next mount must purge it quietly, as a file deleted while
    open, and not take its blocks for written data the crash lost."""
    m = mounts(block_size=BLOCK, opts={"writeback_delay": "600"})
    m.allow_errors(".*")  # a killed daemon's log may say anything
    m.env["METAFUSE_TEST_PURGE_GATHER_MS"] = "60000"
    m.umount()
    m.mount()
    f, g = m.path("f"), m.path("g")
    h.write_file(f, h.rand_bytes(43, 3 * BLOCK + 100))  # dirty, not sent
    write_fsync(g, b"kept")
    os.unlink(f)
    time.sleep(0.5)  # the kernel's FORGET of f, which queues it
    m.kill()
    h.force_unmount(m.mnt)
    del m.env["METAFUSE_TEST_PURGE_GATHER_MS"]
    before = len(m.log_text())
    m.mount()
    tail = m.log_text()[before:]
    assert "not in the cache directory" not in tail, tail
    assert "deleted before a crash" in tail, tail
    assert not os.path.exists(f)
    assert h.read_file(g) == b"kept"
    m.umount()
    m.fsck_verified()


def test_read_only_mount_keeps_crash_marker(mounts):
    """A crash, then a read-only mount of the same cache, then a
    read-write one: the read-write mount must still finish the crashed
    mount's work (a checkpoint of what it recorded but never sent, the
    sweep).  The read-only mount's clean end removed the crash marker, so
    a file written before the crash and never journaled was gone once the
    cache was."""
    m = mounts(block_size=BLOCK,
               opts={"writeback_delay": "600", "journal_interval": "600"})
    m.allow_errors(".*")  # a killed daemon's log may say anything
    data = h.rand_bytes(43, 3 * BLOCK)
    h.write_file(m.path("f"), data)        # in the cache and meta.db only
    m.kill()
    h.force_unmount(m.mnt)
    m.mount(opts={"ro": True})
    assert h.read_file(m.path("f")) == data
    m.umount()
    m.mount()
    assert "did not end cleanly" in m.log_text()
    m.umount()
    m.wipe_cache()
    m.mount()
    assert h.read_file(m.path("f")) == data
    m.umount()
    m.fsck_verified()
