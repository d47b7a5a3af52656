"""POSIX ACLs set as xattrs: not enforced, but the mode follows an access
ACL, so cp -a, cp -p, rsync -A and tar --acls keep permissions."""

import errno
import os
import stat
import subprocess

from mfhelpers import expect_errno, write_file


def acl_xattr(*entries):
    """system.posix_acl_access's value: version 2, then (tag, perm[, id])
    entries (0x01 user::, 0x02 user:id:, 0x04 group::, 0x08 group:id:,
    0x10 mask::, 0x20 other::)."""
    import struct
    return struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", e[0], e[1], e[2] if len(e) > 2 else 0xFFFFFFFF)
        for e in entries)


def test_acl_sets_the_mode(mnt, tmp_path):
    """cp -a, cp -p, rsync -A and tar set a copy's permissions by setting
    its ACL and chmod only when that fails: the mode must follow the ACL
    (a copy of a 0644 file came out 0600)."""
    p = mnt.path("f")
    write_file(p, b"x")
    os.chmod(p, 0o600)
    # equivalent to mode 0754: the mode changes, nothing is stored
    os.setxattr(p, "system.posix_acl_access",
                acl_xattr((0x01, 7), (0x04, 5), (0x20, 4)))
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o754
    expect_errno(errno.ENODATA, os.getxattr, p, "system.posix_acl_access")
    # with a named entry: kept, and the group bits are the mask's
    full = acl_xattr((0x01, 6), (0x02, 7, 65534), (0x04, 4), (0x10, 5),
                     (0x20, 0))
    os.setxattr(p, "system.posix_acl_access", full)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o650
    assert os.getxattr(p, "system.posix_acl_access") == full
    # a minimal ACL again removes the stored one
    os.setxattr(p, "system.posix_acl_access",
                acl_xattr((0x01, 6), (0x04, 4), (0x20, 4)))
    expect_errno(errno.ENODATA, os.getxattr, p, "system.posix_acl_access")
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
    # malformed: EINVAL, the mode unchanged
    for bad in (b"\x02\0\0\0\x01\0", acl_xattr((0x01, 6)),
                acl_xattr((0x01, 6), (0x04, 4), (0x20, 4), (0x40, 1)),
                acl_xattr((0x01, 6), (0x02, 4, 1), (0x04, 4), (0x20, 4))):
        expect_errno(errno.EINVAL, os.setxattr, p,
                     "system.posix_acl_access", bad)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
    mnt.remount(wipe_cache=True)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644

    # cp -a from another filesystem and within the volume keeps modes
    src = tmp_path / "src"
    src.mkdir()
    os.chmod(src, 0o750)
    for name, mode in (("a", 0o644), ("b", 0o604), ("c", 0o755)):
        (src / name).write_bytes(name.encode())
        os.chmod(src / name, mode)
    old = os.umask(0o077)
    try:
        subprocess.run(["cp", "-a", str(src), mnt.path("copy")], check=True)
        subprocess.run(["cp", "-a", mnt.path("copy"), mnt.path("copy2")],
                       check=True)
    finally:
        os.umask(old)
    for top in ("copy", "copy2"):
        assert stat.S_IMODE(os.stat(mnt.path(top)).st_mode) == 0o750
        for name, mode in (("a", 0o644), ("b", 0o604), ("c", 0o755)):
            assert stat.S_IMODE(os.stat(mnt.path(top, name)).st_mode) == \
                mode, (top, name)
