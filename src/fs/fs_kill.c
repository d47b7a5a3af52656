/*
 * fs_kill.c - what a write, truncate or chown takes away from a file
 * when the kernel leaves it to the filesystem (FUSE_HANDLE_KILLPRIV_V2,
 * which fs_wire.c negotiates): its set-id bits and its capability, as a
 * local filesystem clears them.
 *
 * The kernel says per request whether set-id bits go (fs_wire_kill():
 * for a write or truncate, a caller without CAP_FSETID; for a chown,
 * always).  A file capability goes on every write, truncate and chown,
 * whoever the caller (fs_xattr_kill_caps(), which needs no trip to the
 * metadata while no file has one).  Directories keep both.
 *
 * Invariants
 *   1. Without FUSE_HANDLE_KILLPRIV_V2 nothing here changes anything:
 *      the kernel clears set-id bits and capabilities itself.
 *   2. Set-group-ID goes only with group execute (mode_killed()).
 */
#include "util/compat.h"

#include <string.h>
#include <sys/stat.h>

#include "fs/fs_int.h"
#include "util/util.h"

/*
 * The mode once a write or truncate by a caller without CAP_FSETID, or a
 * chown, has cleared the set-id bits, as a local filesystem does:
 * set-user-ID always, set-group-ID only with group execute (without it,
 * the bit marks mandatory locking, not a privilege).
 */
static uint32_t mode_killed(uint32_t mode)
{
	mode &= ~(uint32_t)S_ISUID;
	if (mode & S_IXGRP)
		mode &= ~(uint32_t)S_ISGID;
	return mode;
}

/*
 * Before a write: what the kernel, under FUSE_HANDLE_KILLPRIV_V2, left
 * to us (fs_wire.c): the set-id bits when the request says so, and any
 * file capability.  0 or -errno.
 */
int fs_kill_on_write(struct fs *fs, uint64_t ino)
{
	struct meta_attr in, out;
	struct timespec now;
	uint32_t mode;
	int rc;

	if (!fs_wire_killpriv(fs))
		return 0;
	now = now_realtime();
	if (fs_wire_kill() & FS_KILL_SUIDGID) {
		/* every write of such a user asks: meta_getmode() leaves the
		 * batching of writes' sizes alone (meta_getattr() ends it,
		 * a transaction per write) */
		rc = meta_getmode(fs->cfg.meta, ino, &mode);
		if (rc)
			return rc;
		if (mode_killed(mode) != mode) {
			memset(&in, 0, sizeof(in));
			in.mode = mode_killed(mode);
			rc = meta_setattr(fs->cfg.meta, ino, &in,
					  META_SET_MODE, &now, &out);
			if (rc)
				return rc;
		}
	}
	return fs_xattr_kill_caps(fs, ino, &now);
}

/*
 * A truncate or chown of a non-directory cur under
 * FUSE_HANDLE_KILLPRIV_V2, or the kernel's own request to clear its
 * privileges (a SETATTR of nothing, fs_wire.c): removes its capability,
 * and adds to *set and in the mode without the set-id bits when the
 * request says so (the kernel says so for every chown, and for a
 * truncate by a caller without CAP_FSETID) and the caller sets no mode
 * itself.  The one inexact case: the SETATTR of nothing that follows the
 * kernel's removal of the capability of a file a caller with CAP_FSETID
 * writes clears set-id bits a local filesystem would keep (the request
 * is the same as chown(f, -1, -1)'s, which must clear them).  0 or
 * -errno.
 */
int fs_kill_on_setattr(struct fs *fs, const struct meta_attr *cur,
			   unsigned *set, struct meta_attr *in,
			   const struct timespec *now)
{
	if (!fs_wire_killpriv(fs) || S_ISDIR(cur->mode))
		return 0;
	if (!(*set & (META_SET_SIZE | META_SET_UID | META_SET_GID)) &&
	    !(fs_wire_kill() & FS_KILL_SUIDGID))
		return 0;
	if ((fs_wire_kill() & FS_KILL_SUIDGID) && !(*set & META_SET_MODE) &&
	    mode_killed(cur->mode) != cur->mode) {
		*set |= META_SET_MODE;
		in->mode = mode_killed(cur->mode);
	}
	return fs_xattr_kill_caps(fs, cur->ino, now);
}
