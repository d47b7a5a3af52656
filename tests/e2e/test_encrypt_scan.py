"""What the store's operator can read of an encrypted volume: nothing.

A volume is filled through a real mount with a distinct random marker (16
random bytes in hex) in each place a user puts something: file names,
directory names, file contents (incompressible: the marker embedded in
random bytes, in a file of blocks and in a small file that lives in the
metadata; compressible: repeated text holding the marker), xattr names
and values, and symlink targets.  After fsync and unmount (so that the
checkpoint, the journal and every block are in the store), every object of
the store is read raw, through the store layer (store_tool, any kind of
store) and, on a local store, as the files of its directory, whatever they
are; then every zstd frame found in it (the magic 28 b5 2f fd at any
offset) is decompressed and searched too.  On an encrypted volume no
marker may show up anywhere, nor in any object's name, and no SQLite
header ("SQLite format 3") either.

The same scan of an unencrypted volume must find every marker and the
SQLite header (test_scan_finds_markers_unencrypted): the scan itself can
fail, and does where there is something to see.  The store is scanned
twice: mounted after fsync (the lease, rewritten while a mount holds the
volume, is there then; its host, pid and expiry are in the clear on a
plain volume) and after the unmount.

Decompression uses the python zstandard module when it is installed, else
the zstd program (Debian's zstd package, in scripts/deps.sh).
"""

import os
import shutil
import subprocess

import pytest

from mfhelpers import MIB, rand_bytes, read_file, write_file

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SQLITE_HEADER = b"SQLite format 3"
# a line of the lease, the object a mount rewrites while it holds the
# volume (host, pid, expiry: in the clear on a plain volume)
LEASE_LINE = b"expires="
# the most one frame may decompress to: a block (64 MiB at most) or a
# checkpoint part (8 MiB), with room to spare
MAX_FRAME_OUT = 80 * MIB

try:
    import zstandard
except ImportError:
    zstandard = None


def zstd_decompress_at(data, off):
    """What the zstd frame starting at data[off] decompresses to (b"" when
    it is no frame: a chance occurrence of the magic)."""
    if zstandard is not None:
        try:
            d = zstandard.ZstdDecompressor().decompressobj()
            return d.decompress(data[off:])
        except zstandard.ZstdError:
            return b""
    if not shutil.which("zstd"):
        pytest.fail("neither the python zstandard module nor the zstd "
                    "program is installed (scripts/deps.sh installs zstd)")
    # zstd -d stops with an error at whatever follows the frame; what it
    # wrote to stdout until then is the frame's content
    r = subprocess.run(["zstd", "-d", "-c", "-q", "--no-check"],
                       input=data[off:], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=60)
    return r.stdout[:MAX_FRAME_OUT]


def zstd_frames(data):
    """The decompressed content of every zstd frame in data, at any
    offset."""
    out = []
    off = data.find(ZSTD_MAGIC)
    while off >= 0:
        plain = zstd_decompress_at(data, off)
        if plain:
            out.append(plain)
        off = data.find(ZSTD_MAGIC, off + 1)
    return out


def store_objects(m):
    """[(name, bytes)] of everything the store holds: on a local store
    every file of its directory (objects, and anything else that might be
    there), on any store every object through the store layer."""
    out = []
    if m.is_local:
        base = m.store_dir
        for dirpath, _, files in os.walk(base):
            for f in files:
                path = os.path.join(dirpath, f)
                out.append((os.path.relpath(path, base), read_file(path)))
    for key in sorted(m.store_ls("")):
        out.append((key, m.store_get(key)))
    return out


def scan(m, needles):
    """{needle: [where it was found]} over every object of m's store,
    raw and inside every zstd frame, and over the objects' names."""
    found = {n: [] for n in needles}
    objects = store_objects(m)
    assert objects, "the store holds no object at all"
    for name, data in objects:
        frames = zstd_frames(data)
        for n in needles:
            if n in name.encode():
                found[n].append(f"the name of {name}")
            if n in data:
                found[n].append(f"{name} (raw)")
            for i, plain in enumerate(frames):
                if n in plain:
                    found[n].append(f"{name} (zstd frame {i})")
    return found


def fill(m, markers):
    """Write each marker where a user puts things; fsync all of it."""
    mk = markers
    d = m.path(f"dir-{mk['dirname']}")
    os.mkdir(d)
    # incompressible, several blocks' worth on a 1 MiB block size, the
    # marker in the first block, across the boundary of the first two
    # and in the last
    bs = 1 * MIB
    big = bytearray(rand_bytes(mk["incompressible"], 2 * bs + 70000))
    for off in (1000, bs - 16, len(big) - 100):
        big[off:off + 32] = mk["incompressible"]
    write_file(os.path.join(d, f"file-{mk['filename']}"), bytes(big))
    # incompressible and small: lives in the metadata (inline_max)
    small = bytearray(rand_bytes(mk["inline"], 3000))
    small[1500:1532] = mk["inline"]
    write_file(m.path("small"), bytes(small))
    # compressible: repeated text holding the marker
    text = b"".join(b"line %d of a compressible file %s\n" %
                    (i, mk["compressible"]) for i in range(8000))
    write_file(m.path("text"), text)
    # xattrs: a name and a value
    os.setxattr(m.path("text"), "user.x" + mk["xattrname"].decode(),
                b"value")
    os.setxattr(m.path("small"), "user.v", b"v=" + mk["xattrvalue"])
    # symlink target (dangling: only its text is stored)
    os.symlink("target-" + mk["symlink"].decode(), m.path("link"))
    # a name given by a rename, and a file name inside the directory above
    write_file(m.path("renamed-src"), b"x" * 10)
    os.rename(m.path("renamed-src"), m.path("ren-" + mk["rename"].decode()))
    for p in (os.path.join(d, f"file-{mk['filename']}"), m.path("small"),
              m.path("text")):
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return {"big": bytes(big), "small": bytes(small), "text": text}


def check_back(m, markers, content):
    """The volume reads back whole from the store alone (the markers
    really went to the store, so not finding them means something)."""
    mk = markers
    d = m.path(f"dir-{mk['dirname']}")
    assert read_file(os.path.join(d, f"file-{mk['filename']}")) == \
        content["big"]
    assert read_file(m.path("small")) == content["small"]
    assert read_file(m.path("text")) == content["text"]
    assert os.getxattr(m.path("text"), "user.x" + mk["xattrname"].decode()) \
        == b"value"
    assert os.getxattr(m.path("small"), "user.v") == b"v=" + mk["xattrvalue"]
    assert os.readlink(m.path("link")) == "target-" + mk["symlink"].decode()
    assert os.path.exists(m.path("ren-" + mk["rename"].decode()))


PLACES = ("dirname", "filename", "incompressible", "inline", "compressible",
          "xattrname", "xattrvalue", "symlink", "rename")


def fill_and_scan(mounts, encrypt):
    markers = {p: os.urandom(16).hex().encode() for p in PLACES}
    m = mounts(encrypt=encrypt, block_size=MIB)
    content = fill(m, markers)
    needles = list(markers.values()) + [SQLITE_HEADER, LEASE_LINE]
    # mounted (the lease is there, the journal holds the changes), then
    # unmounted (everything is in the store)
    found = scan(m, needles)
    m.umount()
    for n, where in scan(m, needles).items():
        found[n] += where
    # the volume still reads back whole from the store alone
    m.wipe_cache()
    m.mount()
    check_back(m, markers, content)
    m.umount()
    return markers, found


def test_scan_finds_nothing_encrypted(mounts):
    markers, found = fill_and_scan(mounts, encrypt=True)
    leaks = [f"{place} marker in {where}" for place, mk in markers.items()
             for where in found[mk]]
    leaks += [f"SQLite header in {where}" for where in found[SQLITE_HEADER]]
    leaks += [f"a lease line in {where}" for where in found[LEASE_LINE]]
    assert not leaks, "the store shows plaintext:\n" + "\n".join(leaks)


def test_scan_finds_markers_unencrypted(mounts):
    """The scan can fail: on a plain volume it finds every marker (raw or
    in a zstd frame) and the checkpoint's SQLite header."""
    markers, found = fill_and_scan(mounts, encrypt=False)
    missing = [place for place, mk in markers.items() if not found[mk]]
    assert not missing, f"the scan missed plaintext markers: {missing}"
    assert found[SQLITE_HEADER], "the scan missed the SQLite header"
    assert found[LEASE_LINE], "the scan missed the lease's lines"
    # the compressible text is only in the store compressed: the frames
    # were found and decompressed
    assert any("zstd" in w for w in found[markers["compressible"]]), \
        found[markers["compressible"]]


def test_switch_encrypts_every_volume(mounts, monkeypatch):
    """METAFUSE_TEST_ENCRYPT=1 (mfhelpers.ENCRYPT) makes a volume of the
    mounts fixture encrypted without the test asking: its objects are
    sealed, and it mounts again with the passphrase the helpers gave."""
    import mfhelpers
    monkeypatch.setattr(mfhelpers, "ENCRYPT", True)
    m = mounts()
    assert m.encrypt
    write_file(m.path("f"), b"x" * 10000)
    m.umount()
    keys = [k for k in m.store_ls("") if k != "volume"]
    assert keys
    for key in keys:
        assert m.store_get(key)[:4] == b"MFE1", key
    m.wipe_cache()
    m.mount()
    assert read_file(m.path("f")) == b"x" * 10000
    m.umount()
