/*
 * fs.h - the filesystem: FUSE low-level operations over meta and cache.
 *
 * fs/ is the only module that includes <fuse_lowlevel.h>.  The cli builds
 * the lower layers, fills struct fs_config, and runs fs_run(), which
 * mounts, answers requests on a multi-threaded session loop until the
 * filesystem is unmounted, and returns.
 */
#ifndef METAFUSE_FS_H
#define METAFUSE_FS_H

#include "util/compat.h"

#include "blob/blob.h"
#include "cache/cache.h"
#include "meta/meta.h"
#include "store/store.h"
#include "volume/journal.h"
#include "volume/volume.h"

#include <linux/ioctl.h>

struct fs;

/*
 * `metafuse clone`'s request: an ioctl on a descriptor of the source (a
 * file or directory the caller opened for reading; or, with
 * FS_CLONE_NAMED, the directory holding the source, named src_name),
 * that makes the copy dst_name in the directory whose inode number is
 * dparent, in the same volume (meta_clone_tree(), for the caller).  The
 * result fields are filled on success.  ENOTTY: not a metafuse mount of
 * this version.
 */
struct fs_clone_req {
	uint64_t dparent;
	uint32_t flags;		/* enum fs_clone_flags */
	uint32_t reserved;	/* 0 */
	char src_name[256];
	char dst_name[256];
	uint64_t ino;		/* out: the copy's inode number */
	uint64_t inodes;	/* out: inodes made */
	uint64_t blocks;	/* out: blocks shared */
};

enum fs_clone_flags {
	FS_CLONE_NAMED = 1 << 0,
};

#define FS_IOC_CLONE _IOWR('M', 0xc1, struct fs_clone_req)

/*
 * `metafuse snapshot`'s requests: ioctls on a descriptor of the mount's
 * root (fs/fs_snap.c), answered only to root and the mount's owner.
 * FS_IOC_SNAP makes (FS_SNAP_CREATE) or deletes (FS_SNAP_DELETE) the
 * snapshot name, durable in the store before the answer; the result
 * fields are filled on success.  Errors: EEXIST, ENOENT, EINVAL or
 * ENAMETOOLONG for the name, EROFS on a read-only or past mount, EPERM
 * for another user, else the store's (the daemon's log says more).
 * FS_IOC_SNAP_LIST gives up to FS_SNAP_LIST_MAX snapshots with ids above
 * after, oldest first.  ENOTTY: not a metafuse mount of this version.
 */
enum fs_snap_op {
	FS_SNAP_CREATE = 1,
	FS_SNAP_DELETE = 2,
};

struct fs_snap_entry {
	uint64_t id;
	int64_t time_ns;	/* Unix ns */
	uint64_t objects;	/* objects it holds */
	uint64_t alone_bytes;	/* stored bytes only it keeps */
	char name[256];
};

struct fs_snap_req {
	uint32_t op;		/* enum fs_snap_op */
	uint32_t reserved;	/* 0 */
	struct fs_snap_entry e;	/* in: e.name; out: the rest (create) */
};

#define FS_SNAP_LIST_MAX 8
struct fs_snap_list {
	uint64_t after;		/* in */
	uint32_t n;		/* out */
	uint32_t reserved;
	struct fs_snap_entry e[FS_SNAP_LIST_MAX];
};

#define FS_IOC_SNAP _IOWR('M', 0xc2, struct fs_snap_req)
#define FS_IOC_SNAP_LIST _IOWR('M', 0xc3, struct fs_snap_list)

/*
 * `metafuse tune --history`'s request: an ioctl on a descriptor of the
 * mount, from root or the mount's owner, that sets the volume's history
 * window (fs_config.set_history).  EROFS on a read-only or past mount,
 * EPERM for another user; a refusal with a reason is the ioctl's result 1
 * with the line in err.
 */
struct fs_history_req {
	uint64_t history_s; /* in: the new window in seconds (0: off) */
	uint64_t old_s;     /* out: the window it replaces */
	char err[256];      /* out: why not (result 1) */
};

#define FS_IOC_HISTORY _IOWR('M', 0xc7, struct fs_history_req)

struct fs_config {
	struct meta *meta;
	struct cache *cache;
	struct store *store;
	const struct blob_ctx *blob;
	struct journal *journal; /* metadata to the store */
	struct volume *volume;	 /* its descriptor (snapshots raise its
				  * format; fs_snap.c) */
	bool read_only;
	/* let the kernel cache writes (faster small writes; a crash of the
	 * daemon then loses what the kernel had not passed on) */
	bool writeback_cache;
	double attr_timeout;
	double entry_timeout;
	/* FS_IOC_HISTORY: the daemon sets the window (NULL: refused) */
	int (*set_history)(void *arg, uint64_t history_s, uint64_t *old_s,
			   struct buf *err);
	void *history_arg;
	/* a follower (cli/follow.c): another mount writes the volume, this
	 * one applies its journal; opens keep no page cache, and a read of
	 * a file whose inode went away is ESTALE */
	bool follow;
};

int fs_new(const struct fs_config *cfg, struct fs **out);
void fs_free(struct fs *fs);

/*
 * Mount at mountpoint with the FUSE options fuse_opts ("-o" list without
 * the -o; may be NULL), then call ready(ready_arg, 0) (or with -errno if
 * mounting failed; fs_run then returns that error) and serve requests
 * until unmounted.
 */
int fs_run(struct fs *fs, const char *mountpoint, const char *fuse_opts,
	   void (*ready)(void *arg, int rc), void *ready_arg);
/* Ask a running fs_run to return (signal-safe). */
void fs_exit(struct fs *fs);

/* Make every metadata change so far durable in the store (a journal
 * entry), coalescing concurrent callers. */
int fs_sync(struct fs *fs);
/* Purge inodes left with no links by a crash. */
int fs_purge_orphans(struct fs *fs);

/*
 * A follower's (fs_notify.c), from its own thread, never from a request,
 * after the metadata applied a changeset: the cached blocks whose rows
 * changed are dropped, and the kernel forgets the attributes and pages
 * of the inodes and the names that changed
 * (fuse_lowlevel_notify_inval_inode / _entry), so the next access asks
 * the daemon.  Before the mount answers and after it ended, only the
 * cache hears it.
 */
void fs_follow_changed(struct fs *fs, const struct meta_changes *ch);

#endif
