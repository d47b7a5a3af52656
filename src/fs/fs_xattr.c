/*
 * fs_xattr.c - the xattr requests (set, get, list, remove).
 *
 * xattrs live in the metadata (meta_setxattr() and the others), except
 * that a few names the kernel and ls ask about all the time are answered
 * ENODATA without the metadata while no inode has them (rare_xattrs,
 * fs->rare_unused).  An access ACL set as an xattr also sets the mode
 * (fs_acl.c).  Under FUSE_HANDLE_KILLPRIV_V2 a write, truncate or chown
 * removes security.capability here (fs_xattr_kill_caps()), as the kernel
 * would.
 *
 * Invariants
 *   1. fs->rare_unused[i] is true only while no inode has rare_xattrs[i]:
 *      it is cleared before the first setxattr of the name reaches the
 *      metadata, and never set again while mounted.
 */
#include "util/compat.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <linux/limits.h>
#include <string.h>
#include <sys/xattr.h>

#include "fs/fs_int.h"
#include "util/util.h"

/*
 * xattrs asked for over and over that few volumes have: the kernel asks
 * for security.capability before every write (file_remove_privs), and
 * `ls -l` for security.selinux and system.posix_acl_access of every
 * file (77% of its system-call time on 10,000 files went to those two
 * failing).  While no inode has one, the answer needs no trip to meta.
 */
static const char *const rare_xattrs[] = {
	"security.capability", /* first: fs_xattr_kill_caps() */
	"security.selinux",
	"system.posix_acl_access",
	"system.posix_acl_default",
};
#define NRARE (sizeof(rare_xattrs) / sizeof(rare_xattrs[0]))
_Static_assert(NRARE == FS_NRARE, "FS_NRARE counts rare_xattrs");

static int rare_xattr(const char *name)
{
	size_t i;

	for (i = 0; i < NRARE; i++)
		if (!strcmp(name, rare_xattrs[i]))
			return (int)i;
	return -1;
}

void fs_xattr_init(struct fs *fs)
{
	bool used[NRARE];
	size_t i;

	if (meta_xattr_names_used(fs->cfg.meta, rare_xattrs, NRARE, used) == 0)
		for (i = 0; i < NRARE; i++)
			fs->rare_unused[i] = !used[i];
}

int fs_xattr_kill_caps(struct fs *fs, uint64_t ino, const struct timespec *now)
{
	struct buf v = BUF_INIT;
	bool none;
	int rc;

	pthread_mutex_lock(&fs->lock);
	none = fs->rare_unused[0];
	pthread_mutex_unlock(&fs->lock);
	if (none)
		return 0;
	/* a read first: removing takes a write transaction */
	rc = meta_getxattr(fs->cfg.meta, ino, rare_xattrs[0], &v);
	buf_free(&v);
	if (rc == 0)
		rc = meta_removexattr(fs->cfg.meta, ino, rare_xattrs[0], now);
	return rc == -ENODATA ? 0 : rc;
}

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size, int flags)
{
	struct fs *fs = fs_of(req);
	struct timespec now = now_realtime();
	unsigned mflags = 0;
	int rc, rare;

	if (flags & XATTR_CREATE)
		mflags |= META_XATTR_CREATE;
	if (flags & XATTR_REPLACE)
		mflags |= META_XATTR_REPLACE;
	if (strlen(name) > XATTR_NAME_MAX) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	if (size > XATTR_SIZE_MAX) {
		fuse_reply_err(req, E2BIG);
		return;
	}
	rare = rare_xattr(name);
	if (rare >= 0) {
		pthread_mutex_lock(&fs->lock);
		fs->rare_unused[rare] = false;
		pthread_mutex_unlock(&fs->lock);
	}
	if (!strcmp(name, "system.posix_acl_access")) {
		bool store;

		/* the mode follows the ACL (fs_acl.c) */
		rc = fs_acl_set(fs->cfg.meta, ino_of(ino), value, size, &now,
				&store);
		if (rc || !store) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	rc = meta_setxattr(fs->cfg.meta, ino_of(ino), name, value, size,
			   mflags, &now);
	fuse_reply_err(req, -rc);
}

static void reply_xattr_buf(fuse_req_t req, const struct buf *b, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, b->len);
	else if (b->len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, (const char *)b->data, b->len);
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			   size_t size)
{
	struct fs *fs = fs_of(req);
	struct buf v = BUF_INIT;
	int rc, rare = rare_xattr(name);
	bool none = false;

	if (rare >= 0) {
		pthread_mutex_lock(&fs->lock);
		none = fs->rare_unused[rare];
		pthread_mutex_unlock(&fs->lock);
	}
	if (none) {
		/* the kernel holds ino: it exists */
		fuse_reply_err(req, ENODATA);
		return;
	}
	rc = meta_getxattr(fs->cfg.meta, ino_of(ino), name, &v);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply_xattr_buf(req, &v, size);
	buf_free(&v);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = fs_of(req);
	struct buf v = BUF_INIT;
	int rc = meta_listxattr(fs->cfg.meta, ino_of(ino), &v);

	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply_xattr_buf(req, &v, size);
	buf_free(&v);
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino,
			      const char *name)
{
	struct fs *fs = fs_of(req);
	struct timespec now = now_realtime();

	fuse_reply_err(req, -meta_removexattr(fs->cfg.meta, ino_of(ino), name,
					      &now));
}
