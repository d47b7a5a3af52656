"""Tampering with an encrypted volume's objects: EIO or a refusal, never
wrong data.

Every object but the descriptor `volume` is sealed (the layout of
src/blob/crypt.h):

    0 magic "MFE1" | 4 cipher | 5 reserved | 8 nonce (24) |
    32 ciphertext | last 16: tag

with the object's store key in the associated data.  Each case damages one
object of a volume written through a real mount (three files a, b, c, each
fsync'ed: each its own blocks and its own journal entry after the mount's
checkpoint), then looks from outside:

  * a data object (a block of file a): with the cache wiped, reading a
    gives EIO, the other files read back exactly;
  * the checkpoint or a journal entry: a mount on a wiped cache (which
    must read them) is refused with one line and writes nothing to the
    store;
  * an older journal entry copied over a newer sequence number: likewise;
  * the newest journal entries deleted (a rollback): the mount with the
    cache that saw them refuses with one line containing "rolled back";
    `-o force` mounts the state the cache saw; a fresh cache cannot tell
    and mounts the older state (the README says both);
  * the descriptor: one line containing "damaged", whether the change
    breaks its frame's checksum or keeps the frame whole (then the
    descriptor's MAC must catch it).
"""

import errno
import hashlib
import os
import re
import struct

import pytest

from mfhelpers import BIN, rand_bytes, read_file, run

BS = 65536
FILE_SIZE = 150000          # three blocks: two whole and one part
SEAL_HEADER = 32
SEAL_TAG = 16


def is_sealed(obj):
    return (len(obj) >= SEAL_HEADER + SEAL_TAG and obj[:4] == b"MFE1" and
            obj[4] in (1, 2) and obj[5:8] == b"\0\0\0")


def written_volume(mounts, name="v"):
    """An encrypted volume holding files a, b, c, unmounted.  Each file is
    written as its block 0, fsync'ed, then the rest, fsync'ed, so that the
    store's object of its block 0 is known.  Returns the Mount, the
    files' contents, each file's data objects (block 0's first) and the
    journal entries in the store once each file was durable."""
    m = mounts(name, encrypt=True, block_size=BS,
               opts={"checkpoint_interval": "3600"})
    # tampering makes the daemon log what it refused
    m.allow_errors(r".")
    files, objs, jrnl = {}, {}, {}
    before = set(m.data_objects())
    for f in "abc":
        files[f] = rand_bytes(f"tamper-{f}", FILE_SIZE)
        objs[f] = []
        for part in (files[f][:BS], files[f][BS:]):
            with open(m.path(f), "ab") as fh:
                fh.write(part)
                fh.flush()
                os.fsync(fh.fileno())
            now = set(m.data_objects())
            objs[f] += sorted(now - before)
            before = now
        assert len(objs[f]) == 3, f"{f}: data objects {objs[f]}"
        jrnl[f] = journal_keys(m)
    m.umount()
    m.jrnl_after = jrnl
    return m, files, objs


def journal_keys(m):
    return sorted(k for k in m.store_ls("meta/")
                  if re.fullmatch(r"meta/jrnl-[0-9a-f]{16}", k))


def checkpoint_keys(m):
    return sorted(k for k in m.store_ls("meta/")
                  if re.fullmatch(r"meta/ckpt-[0-9a-f]{16}", k))


def try_mount(m, opts=None, args=()):
    """`metafuse mount` (daemonizing): (ok, one-line-checked stderr)."""
    o = dict(m.opts)
    if opts:
        o.update(opts)
    optstr = ",".join(k if v is True else f"{k}={v}" for k, v in o.items()
                      if v is not None and v is not False)
    r = run([BIN, "mount", *args, "-o", optstr, m.store, m.mnt],
            env=m.env, timeout=120)
    return r.returncode == 0, r.stderr


def one_line(stderr):
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line of error, got:\n{stderr}"
    return lines[0]


def expect_eio(path):
    with pytest.raises(OSError) as ei:
        read_file(path)
    assert ei.value.errno == errno.EIO, ei.value


def flip(obj, where):
    """obj with one byte changed at the named place of the seal."""
    n = len(obj)
    pos = {"header": 4, "nonce": 8,
           "ciphertext": SEAL_HEADER + (n - SEAL_HEADER - SEAL_TAG) // 2,
           "tag": n - 1}[where]
    b = bytearray(obj)
    b[pos] ^= 0x01
    return bytes(b)


def damage(m, key, how):
    obj = m.store_get(key)
    assert is_sealed(obj), f"{key} is not sealed: {obj[:16]!r}"
    if how == "truncate":
        m.store_put(key, obj[:len(obj) // 2])
    else:
        m.store_put(key, flip(obj, how))


def test_every_object_sealed(mounts):
    """Every object of the store but the descriptor has the seal's header,
    with a nonce of its own."""
    m, _, _ = written_volume(mounts)
    keys = sorted(m.store_ls(""))
    assert "volume" in keys
    nonces = set()
    for key in keys:
        if key == "volume":
            continue
        obj = m.store_get(key)
        assert is_sealed(obj), f"{key} is not sealed: {obj[:16]!r}"
        nonces.add(obj[8:32])
    assert len(nonces) == len(keys) - 1, "two objects share a nonce"


HOWS = ("header", "nonce", "ciphertext", "tag", "truncate")


@pytest.mark.parametrize("how", HOWS)
def test_data_object_damaged(mounts, how):
    m, files, objs = written_volume(mounts)
    damage(m, objs["a"][0], how)
    m.wipe_cache()
    m.mount()
    expect_eio(m.path("a"))
    expect_eio(m.path("a"))       # still EIO: nothing wrong was cached
    assert read_file(m.path("b")) == files["b"]
    assert read_file(m.path("c")) == files["c"]
    m.umount()


@pytest.mark.parametrize("how", ("ciphertext", "truncate"))
def test_fsck_verify_data_names_a_damaged_object(mounts, how):
    """fsck --verify-data reports an object that fails its authentication
    as damaged, by name, and goes on (it is not the store that failed)."""
    m, files, objs = written_volume(mounts)
    key = objs["b"][0]
    damage(m, key, how)
    r = m.cli("fsck", "--verify-data", m.store)
    assert r.returncode == 1, r.stdout + r.stderr
    assert key in r.stdout and "damaged" in r.stdout, r.stdout
    assert "verified" in r.stdout, r.stdout


def test_data_object_damaged_later_block(mounts):
    """Block 1 of a damaged: reading a from its start must end in EIO, not
    in a file cut short after block 0."""
    m, files, objs = written_volume(mounts)
    damage(m, objs["a"][1], "ciphertext")
    m.wipe_cache()
    m.mount()
    try:
        got = read_file(m.path("a"))
    except OSError as e:
        assert e.errno == errno.EIO, e
    else:
        assert got == files["a"], \
            f"read {len(got)} of {len(files['a'])} bytes and no error"
    m.umount()


def test_data_object_swapped(mounts):
    """A block of a copied over the key of a block of b: b reads EIO (the
    key is in the associated data), a and c read back exactly."""
    m, files, objs = written_volume(mounts)
    m.store_put(objs["b"][0], m.store_get(objs["a"][0]))
    m.wipe_cache()
    m.mount()
    expect_eio(m.path("b"))
    assert read_file(m.path("a")) == files["a"]
    assert read_file(m.path("c")) == files["c"]
    m.umount()


def refused_on_fresh_cache(m):
    """A mount that must read the store's metadata is refused with one
    line and leaves the store as it was."""
    m.wipe_cache()
    before = m.store_ls("")
    ok, err = try_mount(m)
    if ok:
        m.cleanup()
    assert not ok, "mounted a volume whose metadata was tampered with"
    one_line(err)
    assert m.store_ls("") == before, "a refused mount wrote to the store"


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("kind", ("checkpoint", "journal"))
def test_metadata_object_damaged(mounts, kind, how):
    m, _, _ = written_volume(mounts)
    keys = checkpoint_keys(m) if kind == "checkpoint" else journal_keys(m)
    assert keys, f"no {kind} object in the store"
    damage(m, keys[-1], how)
    refused_on_fresh_cache(m)


def test_journal_entry_replayed(mounts):
    """The oldest journal entry copied over the newest's sequence number:
    it does not open under that key."""
    m, _, _ = written_volume(mounts)
    keys = journal_keys(m)
    assert len(keys) >= 2, keys
    m.store_put(keys[-1], m.store_get(keys[0]))
    refused_on_fresh_cache(m)


def test_journal_rolled_back(mounts):
    """The newest journal entries deleted: the cache that saw them refuses
    the older state with one line ("rolled back", naming force); -o force
    mounts what the cache saw; a fresh cache cannot tell and mounts the
    older state (both as the README says)."""
    m, files, _ = written_volume(mounts)
    keys = journal_keys(m)
    newer = [k for k in keys if k not in m.jrnl_after["a"]]
    assert newer and len(newer) < len(keys), (keys, m.jrnl_after)
    for key in newer:               # the entries that made b and c
        m.store_del(key)
    # the same store elsewhere, for a fresh cache (the forced mount below
    # writes to m's store)
    m2 = mounts("v2", mkfs=False, encrypt=True)
    m2.allow_errors(r".")
    if m2.is_local:
        os.makedirs(m2.store_dir)
    for key in m.store_ls(""):
        m2.store_put(key, m.store_get(key))

    before = m.store_ls("")
    ok, err = try_mount(m)
    if ok:
        m.cleanup()
    assert not ok, "mounted a rolled back volume with the cache that " \
        "had seen its newer state"
    line = one_line(err)
    assert "rolled back" in line, line
    assert "force" in line, line
    assert m.store_ls("") == before, "a refused mount wrote to the store"

    # forced, the mount keeps what its cache saw (the README: the
    # cache's newer metadata goes to the store again)
    ok, err = try_mount(m, opts={"force": True})
    assert ok, err
    m.pid = None
    for f in "abc":
        assert read_file(m.path(f)) == files[f], f
    m.umount()

    m2.mount()
    assert read_file(m2.path("a")) == files["a"]
    assert not os.path.exists(m2.path("b"))
    assert not os.path.exists(m2.path("c"))
    m2.umount()


# ---- the descriptor ---------------------------------------------------------

def blob_reframe(framed, payload):
    """A raw blob frame (blob.h) around payload, with a valid checksum."""
    hdr = bytearray(framed[:24])
    assert hdr[:4] == b"MFB1" and hdr[4] == 0, "not a raw frame"
    hdr[8:24] = struct.pack("<QQ", len(payload), len(payload))
    h = hashlib.blake2b(digest_size=16)
    h.update(bytes(hdr))
    h.update(payload)
    return bytes(hdr) + h.digest() + payload


def descriptor_refused(m):
    """mount and fsck each say one line containing "damaged"."""
    ok, err = try_mount(m)
    if ok:
        m.cleanup()
    assert not ok, "mounted a volume with a tampered descriptor"
    assert "damaged" in one_line(err), err
    r = m.cli("fsck", m.store)
    assert r.returncode != 0, r.stdout
    assert "damaged" in one_line(r.stderr), r.stderr


def test_descriptor_byte_flipped(mounts):
    m, _, _ = written_volume(mounts)
    desc = bytearray(m.store_get("volume"))
    desc[len(desc) // 2 + 20] ^= 0x01     # inside its text
    m.store_put("volume", bytes(desc))
    descriptor_refused(m)


def test_descriptor_line_changed_frame_whole(mounts):
    """A changed block size in a descriptor whose frame is still whole
    (checksum recomputed): only the descriptor's MAC can tell."""
    m, _, _ = written_volume(mounts)
    desc = m.store_get("volume")
    if desc[4] != 0:
        pytest.skip("the descriptor is compressed")
    text = desc[40:]
    new = re.sub(rb"block_size=(\d+)",
                 lambda mo: b"block_size=%d" % (2 * int(mo.group(1))), text)
    assert new != text, text
    m.store_put("volume", blob_reframe(desc, new))
    descriptor_refused(m)
