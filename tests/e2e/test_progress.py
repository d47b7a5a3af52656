"""Progress on a terminal, and nothing new anywhere else.

`fsck --verify-data`, `gc`, a long `umount` and a long first mount (a
restore from the store) draw one line on a terminal, redrawn in place:
what they do, done of total, the rate and the time left; the line is
erased at the end.  Through a pipe their output is what it always was.

The terminal is a real one (a pty, with stdout on a pipe as a user's
`> report` would have it), and the store answers reads slowly enough
(METAFUSE_TEST_STORE_READ_DELAY_US: each get, head and list of the
fault wrapper waits, as a distant service's round trip) for the
commands to take more than the second a meter waits before it shows.
"""

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import threading
import time

import mfhelpers as h
from mfhelpers import write_file, read_file

BS = 64 * 1024
NOBJ = 300


def run_pty(args, env, timeout=180, cols=200, knob=None):
    """args with stderr on a new terminal and stdout on a pipe: (exit
    status, stdout, all the terminal received).  knob: the value of
    METAFUSE_PROGRESS (None: unset)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ,
                struct.pack("HHHH", 50, cols, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST          # as written: no \n -> \r\n
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    env = {k: v for k, v in env.items() if k != "METAFUSE_PROGRESS"}
    if knob is not None:
        env["METAFUSE_PROGRESS"] = knob
    got = []

    def drain():
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:             # EIO: every writer has gone
                return
            if not b:
                return
            got.append(b)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        p = subprocess.Popen([str(a) for a in args],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=slave,
                             env=env)
    finally:
        os.close(slave)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    reader.join(timeout=60)
    os.close(master)
    return (p.returncode, out.decode(errors="replace"),
            b"".join(got).decode(errors="replace"))


# A line of the log on stderr (the S3 store's traffic at close, say),
# which starts by erasing the meter's line on a terminal.
LOG_LINE = re.compile(r"(\r\x1b\[K)?\d{4}-\d\d-\d\dT[\d:.]+Z metafuse\[\d+\] "
                      r"(info|warn): [^\n]*\n")


def without_log(text):
    return LOG_LINE.sub("", text)


def erased_at_end(tty):
    """The last thing on the terminal is the meter's line blanked out."""
    return re.search(r"\r +\r$", tty) is not None


def volume_with_objects(mounts, n):
    """An unmounted volume of n data objects (one file of n 64 KiB
    blocks, no inline data)."""
    m = mounts(mkfs=False, opts={"inline_max": "0"})
    m.mkfs(block_size=BS)
    m.mount()
    write_file(m.path("f"), h.rand_bytes(18, n * BS))
    m.umount()
    assert len(m.data_objects()) == n
    return m


def test_fsck_verify_data_shows_progress_on_a_terminal(mounts):
    m = volume_with_objects(mounts, NOBJ)
    env = dict(m.env, METAFUSE_TEST_STORE_READ_DELAY_US="40000")
    rc, out, tty = run_pty([h.BIN, "fsck", "--verify-data", m.store], env)
    assert rc == 0, out + tty
    tty = without_log(tty)
    # every figure: objects, bytes of the referenced bytes, rate, time
    line = re.search(r"\rverifying objects: \d+ of %d \(\d+%%\), "
                     r"[\d.]+ [KM]iB of [\d.]+ MiB, [\d.]+ [KM]iB/s, "
                     r"\d+:\d\d left" % NOBJ, tty)
    assert line, repr(tty)
    assert erased_at_end(tty), repr(tty[-300:])
    assert "\n" not in tty, repr(tty)   # the report is on stdout
    assert re.fullmatch(r"checkpoint \d+ \+ \d+ journal entries: %d "
                        r"object\(s\) verified \(\d+ MiB\), 0 problem\(s\)\n"
                        % NOBJ, out), out

    # through a pipe: the same report, and not a byte more
    r = h.run([h.BIN, "fsck", "--verify-data", m.store], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == out
    assert without_log(r.stderr) == "", r.stderr
    # METAFUSE_PROGRESS=0 silences a terminal too
    rc, out0, tty0 = run_pty([h.BIN, "fsck", "--verify-data", m.store],
                             env, knob="0")
    assert rc == 0
    assert out0 == out
    assert without_log(tty0) == "", repr(tty0)


def test_fsck_meter_makes_way_for_the_report(mounts):
    """A damaged object's line goes to stdout on a line of its own when
    stdout is the same terminal: the meter's line is erased first."""
    m = volume_with_objects(mounts, NOBJ)
    key = sorted(m.data_objects())[NOBJ // 2]
    if m.is_local:
        path = os.path.join(m.store_dir, key)
        with open(path, "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 1]))
    else:
        tmp = os.path.join(m.root, "obj")
        assert h.run([h.STORE_TOOL, m.store, "get", key, tmp],
                     env=m.env).returncode == 0
        with open(tmp, "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 1]))
        assert h.run([h.STORE_TOOL, m.store, "put", key, tmp],
                     env=m.env).returncode == 0
    env = dict(m.env, METAFUSE_TEST_STORE_READ_DELAY_US="40000")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    p = subprocess.Popen([h.BIN, "fsck", "--verify-data", m.store],
                         stdin=subprocess.DEVNULL, stdout=slave,
                         stderr=slave, env=env)
    os.close(slave)
    got = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:
            break
        if not b:
            break
        got.append(b)
    os.close(master)
    assert p.wait(timeout=60) == 1
    tty = without_log(b"".join(got).decode(errors="replace"))
    assert "\rverifying objects: " in tty, repr(tty)
    # the report's lines start on a blank line: after "\r", blanks, "\r"
    damaged = [s for s in re.split(r"\r +\r", tty) if "is damaged" in s]
    assert damaged, repr(tty)
    assert damaged[0].startswith("object " + key), repr(tty)
    summary = tty.rsplit("\n", 2)[-2]
    assert re.search(r"(^|\r +\r)checkpoint \d+ [^\r]* 1 problem\(s\)$",
                     summary), repr(tty[-400:])


def test_gc_shows_progress_on_a_terminal(mounts):
    """A crashed mount left objects its metadata in the store never
    named: gc lists them, then deletes them, on the terminal's line."""
    m = mounts(mkfs=False, opts={"inline_max": "0",
                                 "writeback_delay": "0.1",
                                 "journal_interval": "3600",
                                 "checkpoint_interval": "3600"})
    m.mkfs(block_size=BS)
    m.mount()
    write_file(m.path("f"), h.rand_bytes(19, NOBJ * BS))
    deadline = time.monotonic() + 120
    while len(m.data_objects()) < NOBJ:
        assert time.monotonic() < deadline, "the blocks never uploaded"
        time.sleep(0.2)
    m.kill()
    h.force_unmount(m.mnt)

    env = dict(m.env, METAFUSE_TEST_STORE_READ_DELAY_US="200000")
    rc, out, tty = run_pty([h.BIN, "gc", m.store], env)
    assert rc == 0, out + tty
    tty = without_log(tty)
    assert re.fullmatch(r"%d of %d object\(s\) deleted \(\d+ KiB\)\n"
                        % (NOBJ, NOBJ), out), out
    assert re.search(r"\rlisting objects: \d+", tty), repr(tty)
    assert re.search(r"\rdeleting objects: \d+ of %d" % NOBJ, tty), \
        repr(tty)
    assert erased_at_end(tty), repr(tty[-300:])
    assert "\n" not in tty, repr(tty)
    assert len(m.data_objects()) == 0

    # through a pipe (as long, nothing left to delete): nothing new
    r = h.run([h.BIN, "gc", m.store], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == "0 of 0 object(s) deleted (0 KiB)\n", r.stdout
    assert without_log(r.stderr) == "", r.stderr


def test_first_mount_shows_the_restore(mounts):
    """A mount that restores the metadata from the store (an empty cache
    directory) shows the journal entries it replays, from the daemon
    that still has the terminal; the line is gone once mounted."""
    m = mounts(opts={"journal_interval": "0.1"})
    for i in range(30):
        write_file(m.path(f"f{i}"), b"%d" % i)
        time.sleep(0.15)                # one journal entry each
    m.umount()
    entries = len(m.store_ls("meta/jrnl-"))
    assert entries >= 10, entries
    m.wipe_cache()

    env = dict(m.env, METAFUSE_TEST_STORE_READ_DELAY_US="300000")
    args = [h.BIN, "mount", "-o", h.format_opts(m.opts), m.store, m.mnt]
    rc, out, tty = run_pty(args, env)
    m.mounts += 1
    pids = h.pids_with_arg(m.mnt)
    m.pid = pids[0] if len(pids) == 1 else None
    assert rc == 0, out + tty
    assert "restoring metadata from" in tty, repr(tty)
    assert re.search(r"\rreplaying journal entries: \d+ of %d" % entries,
                     tty), repr(tty)
    assert erased_at_end(tty), repr(tty[-300:])
    assert out == ""
    for i in range(30):
        assert read_file(m.path(f"f{i}")) == b"%d" % i

    # through a pipe: nothing
    m.umount()
    m.wipe_cache()
    r = h.run(args, env=env)
    assert r.returncode == 0, r.stderr
    m.mounts += 1
    assert r.stderr == "" and r.stdout == ""
    assert read_file(m.path("f29")) == b"29"
    m.umount()


def test_umount_shows_the_upload(mounts, workdir):
    """`metafuse umount` on a terminal: the bytes left to upload as a
    progress line (of the most ever left), the hint and the store's
    complaint as lines of their own, all erased at the end; what was
    written is in the store."""
    down = os.path.join(workdir, "store-down")
    env = dict(os.environ, METAFUSE_TEST_STORE_DOWN_FILE=down)
    m = mounts(opts={"writeback_delay": "3600"}, env=env)
    m.allow_errors(r"failed: Input/output error",
                   r"cannot send the metadata", r"checkpoint failed",
                   r"cannot write the final checkpoint",
                   r"final upload failed")
    data = h.rand_bytes(20, 4 * h.MIB)
    write_file(m.path("f"), data)
    open(down, "w").close()

    def store_back():
        time.sleep(4)
        os.unlink(down)

    t = threading.Thread(target=store_back)
    t.start()
    rc, out, tty = run_pty([h.BIN, "umount", m.mnt], m.env)
    t.join()
    assert rc == 0, out + tty
    m.pid = None
    assert re.search(r"\ruploading: 0 B of 4\.\d MiB, \d:\d\d elapsed", tty), \
        repr(tty)
    # lines of their own, the meter's line erased before them
    assert re.search(r"\r +\r(metafuse: [^\r\n]*\n)*metafuse: interrupting "
                     r"this wait loses nothing[^\r\n]*\n", tty), repr(tty)
    assert re.search(r"\r +\r(metafuse: [^\r\n]*\n)*metafuse: last problem: "
                     r"upload of block \d+ of inode \d+ [^\r\n]* failed: "
                     r"Input/output error\n", tty), repr(tty)
    assert erased_at_end(tty), repr(tty[-300:])
    m.wipe_cache()
    del m.env["METAFUSE_TEST_STORE_DOWN_FILE"]
    m.mount()
    assert read_file(m.path("f")) == data
