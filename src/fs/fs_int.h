/*
 * fs_int.h - what the files of fs/ share; nothing outside src/fs/ may
 * include it.
 *
 *   fs_ops.c    the FUSE operations, the inode table, the purge thread
 *   fs_clone.c  clones: copy_file_range's shared blocks, the tree copy
 *   fs_acl.c    the mode that follows an ACL set as an xattr
 */
#ifndef METAFUSE_FS_INT_H
#define METAFUSE_FS_INT_H

#include "util/compat.h"

#include "cache/cache.h"
#include "fs/fs.h"
#include "meta/meta.h"

/*
 * copy_file_range of len bytes from off_in of src to off_out of dst:
 * whole blocks shared, the partial ones at the edges copied.  Returns
 * the bytes copied (0 at or past src's end), -EOPNOTSUPP when no block
 * can be shared (the offsets are not at the same place in their blocks,
 * the range holds no whole block, inline data, a source never clean):
 * the kernel then copies the bytes itself; or -errno.
 */
ssize_t fs_clone_range(struct meta *m, struct cache *c, uint64_t src,
		       uint64_t off_in, uint64_t dst, uint64_t off_out,
		       uint64_t len);
/*
 * meta_clone_tree() with the tree's dirty blocks uploaded first (and
 * again while a retry finds more).  Errors as meta_clone_tree();
 * -EAGAIN when the tree never stood still.
 */
int fs_clone_tree(struct meta *m, struct cache *c, uint64_t src,
		  uint64_t dparent, const char *name,
		  const struct meta_caller *who, struct meta_attr *out,
		  struct meta_clone_stats *stats);

/* The FUSE requests, answered here (fuse_lowlevel.h must come first).
 * fs_clone_copy_range: copy_file_range; 0 when it replied with a count.
 * fs_clone_ioctl: FS_IOC_CLONE (else ENOTTY), for the caller. */
#ifdef FUSE_LOWLEVEL_H_
int fs_clone_copy_range(fuse_req_t req, struct meta *m, struct cache *c,
			uint64_t src, off_t off_in, uint64_t dst,
			off_t off_out, size_t len, int flags);
void fs_clone_ioctl(fuse_req_t req, struct fuse_session *se,
		    const struct fs_config *cfg, uint64_t ino, unsigned cmd,
		    const void *in_buf, size_t in_bufsz, size_t out_bufsz);
/*
 * system.posix_acl_access: fs_acl_mode() reads an ACL in the xattr form
 * into the mode's permission bits (perm) and whether the ACL says no more
 * than them (equiv); -EINVAL when malformed.  fs_acl_set() sets ino's
 * mode from it and, for an ACL equivalent to the mode, removes any stored
 * one; *store says whether the caller must still store the xattr.
 */
int fs_acl_mode(const void *value, size_t size, unsigned *perm, bool *equiv);
int fs_acl_set(struct meta *m, uint64_t ino, const void *value, size_t size,
	       const struct timespec *now, bool *store);

#endif

/* FS_IOC_CLONE on a descriptor of inode ino, for who: the names are
 * made strings here; r's result fields are set on success. */
int fs_clone_request(struct meta *m, struct cache *c, uint64_t ino,
		     struct fs_clone_req *r, const struct meta_caller *who);

/*
 * system.posix_acl_access: fs_acl_mode() reads an ACL in the xattr form
 * into the mode's permission bits (perm) and whether the ACL says no more
 * than them (equiv); -EINVAL when malformed.  fs_acl_set() sets ino's
 * mode from it and, for an ACL equivalent to the mode, removes any stored
 * one; *store says whether the caller must still store the xattr.
 */
int fs_acl_mode(const void *value, size_t size, unsigned *perm, bool *equiv);
int fs_acl_set(struct meta *m, uint64_t ino, const void *value, size_t size,
	       const struct timespec *now, bool *store);

#endif
