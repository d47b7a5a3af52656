"""Encrypted volumes from the outside: mkfs --encrypt, mount, write and
remount on either store; what a wrong or missing passphrase does (one
line, nothing written to the store or the cache); passphrase files;
passwd and its key slots; and the refusal of a store rolled back behind
what the cache saw (encrypted or not), and --force.

The marker scan of every object, the tamper matrix and the crash and
model tests on encrypted volumes are test_encrypt_*.py's (another file).
"""

import os
import subprocess
import time

import pytest

import mfhelpers
from mfhelpers import MIB, Mount, rand_bytes, run

PASS = "correct horse battery staple"


def enc_env(passphrase=PASS, **more):
    env = dict(os.environ)
    env.pop("METAFUSE_PASSPHRASE", None)
    env.pop("METAFUSE_NEW_PASSPHRASE", None)
    env["METAFUSE_TEST_KDF"] = "fast"
    if passphrase is not None:
        env["METAFUSE_PASSPHRASE"] = passphrase
    env.update(more)
    return env


def make(mounts, name="v", mount=True, passphrase=PASS, extra=()):
    # encrypt=False: this file makes its encrypted volumes itself, and the
    # suite's switch (METAFUSE_TEST_ENCRYPT) must not add a passphrase
    m = mounts(name, mkfs=False, env=enc_env(passphrase), encrypt=False)
    args = ["mkfs", "--encrypt", *extra]
    if mfhelpers.STORE_KIND == "s3":
        args += ["--block-size", str(mfhelpers.DEFAULT_BLOCK_SIZE)]
    r = m.cli(*args, m.store)
    assert r.returncode == 0, r.stderr
    assert "volume format 4" in r.stdout, r.stdout
    if mount:
        m.mount()
    return m


def store_state(m):
    """Every object of the store with its size, and the cache's files."""
    cache = []
    for dirpath, _, files in os.walk(m.cache):
        cache += [os.path.join(dirpath, f) for f in files]
    return m.store_ls(""), sorted(cache)


def no_tty_run(m, args, env):
    """Run the program with no controlling terminal (a new session)."""
    return subprocess.run([mfhelpers.BIN, *args], env=env,
                          capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, start_new_session=True,
                          timeout=120)


@pytest.mark.parametrize("cipher", ["aes-256-gcm", "xchacha20-poly1305"])
def test_write_remount_read(mounts, cipher):
    m = make(mounts, extra=["--cipher", cipher])
    big = rand_bytes(1, 3 * MIB + 123)
    mfhelpers.write_file(m.path("big"), big)
    os.mkdir(m.path("dir"))
    mfhelpers.write_file(m.path("dir", "small"), b"small file")
    os.symlink("dir/small", m.path("link"))
    os.setxattr(m.path("big"), "user.k", b"value")
    m.umount()
    # every object but the descriptor is sealed: "MFE1", cipher byte
    for key in m.store_ls(""):
        if key == "volume":
            continue
        with open(os.path.join(m.root, "obj"), "wb"):
            pass
        r = run([mfhelpers.STORE_TOOL, m.store, "get", key,
                 os.path.join(m.root, "obj")], env=m.env)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(m.root, "obj"), "rb") as f:
            head = f.read(8)
        assert head[:4] == b"MFE1", key
        assert head[4] == (2 if cipher == "aes-256-gcm" else 1), key
    m.wipe_cache()
    m.mount()
    assert mfhelpers.read_file(m.path("big")) == big
    assert mfhelpers.read_file(m.path("dir", "small")) == b"small file"
    assert os.readlink(m.path("link")) == "dir/small"
    assert os.getxattr(m.path("big"), "user.k") == b"value"
    m.umount()
    r = m.cli("fsck", "--verify-data", m.store)
    assert r.returncode == 0, r.stdout + r.stderr
    r = m.cli("gc", m.store)
    assert r.returncode == 0, r.stderr


def test_wrong_passphrase_writes_nothing(mounts):
    m = make(mounts)
    mfhelpers.write_file(m.path("f"), b"x" * 5000)
    m.umount()
    before = store_state(m)
    m.env["METAFUSE_PASSPHRASE"] = "not it"
    for args in (["mount", "-o", f"cache_dir={m.cache}", m.store, m.mnt],
                 ["fsck", m.store], ["gc", m.store]):
        r = m.cli(*args)
        assert r.returncode != 0, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "wrong passphrase" in lines[0], r.stderr
    assert not mfhelpers.is_mounted(m.mnt)
    assert store_state(m) == before
    # a cache directory that did not exist is not made either
    fresh = os.path.join(m.root, "fresh-cache")
    r = m.cli("mount", "-o", f"cache_dir={fresh}", m.store, m.mnt)
    assert r.returncode != 0 and not os.path.exists(fresh)


def test_no_passphrase_without_terminal(mounts):
    m = make(mounts)
    m.umount()
    before = store_state(m)
    env = dict(m.env)
    env.pop("METAFUSE_PASSPHRASE")
    r = no_tty_run(m, ["mount", "-o", f"cache_dir={m.cache}", m.store,
                          m.mnt], env)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for word in ("METAFUSE_PASSPHRASE", "passphrase_file", "terminal"):
        assert word in lines[0], r.stderr
    assert store_state(m) == before
    # mkfs without one either
    r = no_tty_run(m, ["mkfs", "--encrypt",
                          os.path.join(m.root, "other")], env)
    assert r.returncode != 0 and "METAFUSE_PASSPHRASE" in r.stderr
    # an empty passphrase is refused
    env["METAFUSE_PASSPHRASE"] = ""
    r = no_tty_run(m, ["mkfs", "--encrypt",
                          os.path.join(m.root, "other")], env)
    assert r.returncode != 0


def test_passphrase_file(mounts):
    m = make(mounts, mount=False)
    pf = os.path.join(m.root, "pass")
    with open(pf, "w") as f:
        f.write(PASS + "\r\n")       # one line ending is dropped
    os.chmod(pf, 0o644)
    m.env.pop("METAFUSE_PASSPHRASE")
    with pytest.raises(mfhelpers.MountError,
                       match="readable by others.*chmod 600"):
        m.mount(opts={"passphrase_file": pf})
    os.chmod(pf, 0o600)
    m.mount(opts={"passphrase_file": pf})
    mfhelpers.write_file(m.path("f"), b"via file")
    m.umount()
    r = m.cli("fsck", "-o", f"passphrase_file={pf}", m.store)
    assert r.returncode == 0, r.stderr
    # mkfs --passphrase-file; a file of a newline only is empty
    other = Mount(os.path.join(m.root, "o"), env=m.env, encrypt=False)
    with open(pf, "w") as f:
        f.write("\n")
    r = other.cli("mkfs", "--encrypt", "--passphrase-file", pf, other.store)
    assert r.returncode != 0 and "empty passphrase" in r.stderr


def test_passwd_and_slots(mounts):
    m = make(mounts)
    body = rand_bytes(5, 200000)
    mfhelpers.write_file(m.path("f"), body)
    fd = os.open(m.path("f"), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    keys_before = m.store_ls("")
    # passwd through the mount point while mounted
    m.env["METAFUSE_NEW_PASSPHRASE"] = "second"
    r = m.cli("passwd", m.mnt) if m.is_local else m.cli("passwd", m.store)
    assert r.returncode == 0, r.stderr
    assert "slot 0" in r.stdout
    after = m.store_ls("")
    # only the descriptor changed: no data object rewritten
    data = {k: v for k, v in keys_before.items() if k.startswith("data/")}
    assert data and {k: after.get(k) for k in data} == data
    m.umount()
    # the old passphrase no longer opens it
    r = m.cli("fsck", m.store)
    assert r.returncode != 0 and "wrong passphrase" in r.stderr
    m.env["METAFUSE_PASSPHRASE"] = "second"
    m.wipe_cache()
    m.mount()
    assert mfhelpers.read_file(m.path("f")) == body
    m.umount()
    # --add a recovery passphrase: both open
    m.env["METAFUSE_NEW_PASSPHRASE"] = "recovery"
    r = m.cli("passwd", "--add", m.store)
    assert r.returncode == 0 and "slot 1" in r.stdout, r.stderr
    for pw in ("second", "recovery"):
        m.env["METAFUSE_PASSPHRASE"] = pw
        assert m.cli("fsck", m.store).returncode == 0, pw
    # --remove the slot "second" opens; then "recovery" is the last one
    m.env["METAFUSE_PASSPHRASE"] = "second"
    r = m.cli("passwd", "--remove", m.store)
    assert r.returncode == 0 and "slot 0" in r.stdout, r.stderr
    assert "wrong passphrase" in m.cli("fsck", m.store).stderr
    m.env["METAFUSE_PASSPHRASE"] = "recovery"
    before = m.store_ls("volume")
    r = m.cli("passwd", "--remove", m.store)
    assert r.returncode != 0 and "last key slot" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert m.store_ls("volume") == before
    # at most 8 slots
    for i in range(7):
        m.env["METAFUSE_NEW_PASSPHRASE"] = f"extra{i}"
        assert m.cli("passwd", "--add", m.store).returncode == 0
    r = m.cli("passwd", "--add", m.store)
    assert r.returncode != 0 and "key slots" in r.stderr
    # a wrong current passphrase changes nothing
    m.env["METAFUSE_PASSPHRASE"] = "nope"
    before = m.store_ls("volume")
    r = m.cli("passwd", m.store)
    assert r.returncode != 0 and "wrong passphrase" in r.stderr
    assert m.store_ls("volume") == before


def test_passwd_on_plain_volume(mounts):
    m = mounts(mount=False, encrypt=False)
    r = m.cli("passwd", m.store)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not encrypted" in lines[0], r.stderr


def test_plain_mkfs_unchanged(mounts):
    m = mounts(mkfs=False, mount=False, encrypt=False)
    out = m.mkfs().stdout
    assert "volume format 3" in out or "volume format 2" in out, out
    r = run([mfhelpers.STORE_TOOL, m.store, "get", "volume",
             os.path.join(m.root, "desc")], env=m.env)
    assert r.returncode == 0
    with open(os.path.join(m.root, "desc"), "rb") as f:
        text = f.read()
    assert b"hash_key=" in text and b"format=4" not in text


def newest_entries(m):
    return sorted(k for k in m.store_ls("meta/")
                  if k.startswith("meta/jrnl-"))


@pytest.mark.parametrize("encrypted", [False, True])
def test_rollback_refused_then_forced(mounts, encrypted):
    if encrypted:
        m = make(mounts, mount=False)
    else:
        m = mounts(mount=False, encrypt=False)
    m.opts["journal_interval"] = "0.2"
    m.mount()
    for i in range(3):
        mfhelpers.write_file(m.path(f"f{i}"), b"%d" % i)
        os.sync()
        deadline = time.monotonic() + 10
        while len(newest_entries(m)) <= i and \
                time.monotonic() < deadline:
            time.sleep(0.1)
    m.umount()
    entries = newest_entries(m)
    assert entries, m.store_ls("meta/")
    r = run([mfhelpers.STORE_TOOL, m.store, "del", entries[-1]], env=m.env)
    assert r.returncode == 0
    before = store_state(m)[0]
    with pytest.raises(mfhelpers.MountError) as e:
        m.mount()
    msg = str(e.value).splitlines()[0]
    assert "rolled back" in msg and "--force" in msg, msg
    assert store_state(m)[0] == before
    # forced: the cache's newer state is the volume's again
    m.mount(opts={"force": True})
    m.allow_errors()
    for i in range(3):
        assert mfhelpers.read_file(m.path(f"f{i}")) == b"%d" % i
    m.umount()
    # and the next mount, with no force, is happy; so is a fresh cache
    m.mount()
    m.umount()
    m.wipe_cache()
    m.mount()
    for i in range(3):
        assert mfhelpers.read_file(m.path(f"f{i}")) == b"%d" % i
    m.umount()


def pty_run(args, env, answers, timeout=60):
    """Run the program on a new terminal, typing each answer after its
    prompt; returns (exit status, everything the terminal showed)."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(mfhelpers.BIN, [mfhelpers.BIN, *args], env)
    shown, since, pending = b"", b"", list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
            since += chunk
        if pending and pending[0][0].encode() in since and \
                since.rstrip().endswith(b":"):
            os.write(fd, pending.pop(0)[1].encode() + b"\n")
            since = b""
    end = time.monotonic() + 10
    done, status = os.waitpid(pid, os.WNOHANG)
    while not done and time.monotonic() < end:
        time.sleep(0.05)
        done, status = os.waitpid(pid, os.WNOHANG)
    if not done:                       # stuck at a prompt: a failure
        os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_terminal_prompt(mounts):
    m = mounts(mkfs=False, mount=False, env=enc_env(passphrase=None),
               encrypt=False)
    # different twice: refused, nothing made
    rc, shown = pty_run(["mkfs", "--encrypt", m.store], m.env,
                        [("volume:", "typed-one"), ("Again:", "typed-two")])
    assert rc != 0 and "differ" in shown, shown
    assert "typed" not in shown        # no echo
    assert m.store_ls("") == {}
    rc, shown = pty_run(["mkfs", "--encrypt", m.store], m.env,
                        [("volume:", "typed-pw"), ("Again:", "typed-pw")])
    assert rc == 0, shown
    assert "typed" not in shown
    rc, shown = pty_run(["fsck", m.store], m.env, [("Passphrase for", "typed-pw")])
    assert rc == 0, shown


@pytest.mark.local_store
def test_passwd_through_a_mount_of_a_relative_store(mounts):
    """A store given as a relative path is in the mount table as an
    absolute one, so passwd MOUNTPOINT from another directory finds it."""
    m = make(mounts, mount=False)
    rel = os.path.relpath(m.store, m.root)
    r = subprocess.run([mfhelpers.BIN, "mount", "-o",
                        mfhelpers.format_opts(m.opts), rel, m.mnt],
                       cwd=m.root, env=m.env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m.mounts += 1
    with open("/proc/self/mounts") as f:
        sources = [ln.split()[0] for ln in f
                   if ln.split()[1] == os.path.realpath(m.mnt)]
    assert sources == [os.path.realpath(m.store)], sources
    env = dict(m.env, METAFUSE_NEW_PASSPHRASE="moved")
    r = subprocess.run([mfhelpers.BIN, "passwd", m.mnt], cwd="/",
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m.umount()
    m.env["METAFUSE_PASSPHRASE"] = "moved"
    r = m.cli("fsck", m.store)
    assert r.returncode == 0, r.stderr
