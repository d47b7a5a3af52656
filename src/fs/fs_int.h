/*
 * fs_int.h - what the files of fs/ share; nothing outside src/fs/ may
 * include it.
 *
 *   fs_ops.c    the FUSE operations, the inode table, the purge thread
 *   fs_xattr.c  the xattr requests, and the few xattrs answered without
 *               the metadata
 *   fs_clone.c  clones: copy_file_range's shared blocks, the tree copy
 *   fs_acl.c    the mode that follows an ACL set as an xattr
 *   fs_notify.c a follower's invalidations of the kernel's caches
 *   fs_wire.c   FUSE_HANDLE_KILLPRIV_V2 and its per-request kill flags,
 *               which libfuse 3.14 does not pass on
 *   fs_kill.c   the set-id bits and capabilities a write, truncate or
 *               chown clears under it
 */
#ifndef METAFUSE_FS_INT_H
#define METAFUSE_FS_INT_H

#include "util/compat.h"

#include <pthread.h>
#include <stdatomic.h>

#include "cache/cache.h"
#include "fs/fs.h"
#include "meta/meta.h"

/*
 * The filesystem's state: the inode table (one struct fs_inode per inode
 * the kernel knows or has open) and the purge thread are fs_ops.c's; the
 * rare xattrs' flags fs_xattr.c's.  Lock order: fs->lock, then nothing
 * (handlers hold it only around table updates, never across a meta or
 * cache call or a reply).
 */
struct fs_inode {
	uint64_t ino;
	uint64_t nlookup; /* protected by fs->lock */
	uint64_t nopen;   /* protected by fs->lock */
	bool atime_done;  /* relatime already applied since last change */
	struct fs_inode *next;
};

/* the inode table's first size; it doubles past one inode per bucket */
#define FS_BUCKETS 4096

/* how many xattrs fs_xattr.c answers without the metadata while no inode
 * has them */
#define FS_NRARE 4

struct fs {
	struct fs_config cfg;
	uint32_t bs;
	pthread_mutex_t lock;
	struct fs_inode **table;  /* nbuckets chains; protected by lock */
	size_t nbuckets, ninodes; /* protected by lock */
	/* no inode has the rare xattr i (fs_xattr.c; known at fs_new(),
	 * false for good after a setxattr of it): a getxattr of it gets
	 * ENODATA without a trip to meta; protected by lock */
	bool rare_unused[FS_NRARE];

	struct purger {
		pthread_mutex_t lock;
		pthread_cond_t cond;
		uint64_t *q;       /* inodes to purge; by lock */
		size_t n, cap;     /* by lock */
		bool stop;         /* by lock */
		bool running;      /* the thread runs (else purge at once) */
		uint64_t gather_ns; /* how long a batch may gather */
		pthread_t thread;
	} purge;

	struct fuse_session *se;
	/* fs_notify.c: the kernel may hear invalidations (se is mounted
	 * and its loop runs); protected by notify_lock, held across a
	 * notification, so fs_run() never ends the session under one */
	pthread_mutex_t notify_lock;
	bool notify_live;

	/* fs_wire.c: the INIT request (written by the worker that reads it,
	 * before any other request comes), and whether the kernel leaves
	 * clearing set-id bits and capabilities to us */
	struct fs_wire {
		_Atomic uint64_t init_unique;
		uint32_t offered;  /* fuse_init_in.flags */
		atomic_bool init_done;
		atomic_bool killpriv;
	} wire;
};


#ifdef FUSE_LOWLEVEL_H_
static inline struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}
#endif

static inline uint64_t ino_of(uint64_t ino)
{
	return ino == 1 /* FUSE_ROOT_ID */ ? META_ROOT_INO : ino;
}

/* fs_notify.c: whether the kernel may hear invalidations now (fs_run()
 * says so once mounted, and no longer before the session ends). */
void fs_notify_live(struct fs *fs, bool live);

/*
 * fs_wire.c.  fs_wire_install(): after fuse_session_mount(), the session
 * reads and writes /dev/fuse through fs_wire.c; -errno.
 * fs_wire_killpriv(): the kernel took FUSE_HANDLE_KILLPRIV_V2: a write,
 * truncate or chown of a regular file must clear its set-id bits and
 * capability here (fs_kill_*() in fs_ops.c).
 * fs_wire_kill(): FS_KILL_SUIDGID when the WRITE, SETATTR or OPEN this
 * thread is processing asks for set-id bits to be cleared (its caller
 * lacks CAP_FSETID); 0 otherwise.
 */
enum fs_kill_flags { FS_KILL_SUIDGID = 1 << 0 };
int fs_wire_install(struct fs *fs);
bool fs_wire_killpriv(struct fs *fs);
unsigned fs_wire_kill(void);
#ifdef FUSE_LOWLEVEL_H_
/* the read and writev fs_wire_install() gives the session, whose
 * userdata is the struct fs (for tests/unit/t_fs_wire.c) */
const struct fuse_custom_io *fs_wire_io(void);
#endif

/*
 * fs_kill.c, under FUSE_HANDLE_KILLPRIV_V2 (else they do nothing).
 * fs_kill_on_write(): before a write to ino, clears its set-id bits when
 * the request asks, and its capability.  fs_kill_on_setattr(): for a
 * SETATTR of cur (its current attributes) that sets *set from in: removes
 * the capability of a non-directory on a truncate or chown, and adds the
 * mode without set-id bits to *set and in when the request asks and sets
 * no mode itself; the caller applies it with the rest.  0 or -errno.
 */
int fs_kill_on_write(struct fs *fs, uint64_t ino);
int fs_kill_on_setattr(struct fs *fs, const struct meta_attr *cur,
		       unsigned *set, struct meta_attr *in,
		       const struct timespec *now);

/* fs_xattr.c: fs->rare_unused from the metadata, at fs_new(). */
void fs_xattr_init(struct fs *fs);
/* Remove ino's security.capability if it has one (a write, truncate or
 * chown under FUSE_HANDLE_KILLPRIV_V2); no trip to meta while no inode
 * has one.  0 or -errno. */
int fs_xattr_kill_caps(struct fs *fs, uint64_t ino, const struct timespec *now);
#ifdef FUSE_LOWLEVEL_H_
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size, int flags);
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
#endif

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

/* FS_IOC_SNAP and FS_IOC_SNAP_LIST (fs_snap.c), handed on by
 * fs_clone_ioctl(); it replies. */
#ifdef FUSE_LOWLEVEL_H_
void fs_snap_ioctl(fuse_req_t req, const struct fs_config *cfg, unsigned cmd,
		   const void *in_buf, size_t in_bufsz, size_t out_bufsz);
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
