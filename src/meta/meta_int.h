/*
 * meta_int.h - internals shared by the files of meta/ only.  Nothing
 * outside src/meta/ may include it.
 *
 *   meta.c          open, schema, statements, transactions, config, stats
 *   meta_ns.c       names, attributes, readdir, purge, xattrs
 *   meta_block.c    block map, patches, inline data, objects, GC
 *   meta_seek.c     SEEK_DATA / SEEK_HOLE from the block map
 *   meta_pend.c     batched write attributes
 *   meta_journal.c  the journal's changesets
 *   meta_fsck.c     the checks of meta.h's invariants
 *   meta_clone.c    clones: blocks shared by two files, a tree copied
 *   meta_snap.c     snapshots: their rows and the objects they hold
 *   meta_vfs.c      the main connection's VFS: a WAL frame in one write
 *
 * struct meta owns the one SQLite connection of a volume.  Every use of
 * the connection happens between meta_txn_begin() and meta_txn_end(),
 * which take and release m->lock.
 */
#ifndef METAFUSE_META_INT_H
#define METAFUSE_META_INT_H

#include "util/compat.h"

#include <assert.h>
#include <pthread.h>
#include <sqlite3.h>
#include <time.h>

#ifndef SQLITE_ENABLE_SESSION
#error "meta/ needs the session extension: build with -DSQLITE_ENABLE_SESSION"
#endif

#include "meta/meta.h"

/* SQL for the epoch recorded when an object's refcount drops to 0. */
#define META_CKPT_SEQ_SQL                                                   \
	"coalesce((SELECT CAST(value AS INTEGER) FROM config"               \
	" WHERE key = 'ckpt_seq'), 0)"

enum meta_txn {
	META_TXN_NONE,	/* lock only: a read that needs no BEGIN */
	META_TXN_READ,	/* BEGIN (deferred) .. COMMIT */
	META_TXN_WRITE,	/* BEGIN IMMEDIATE .. COMMIT or ROLLBACK */
};

struct meta {
	pthread_mutex_t lock;
	sqlite3 *db;		/* protected by lock */
	sqlite3_stmt **st;	/* cached statements; protected by lock */
	uint32_t block_size;	/* immutable after meta_open() */
	char *path;		/* file; NULL in memory; immutable */
	enum meta_txn txn;	/* kind of the open transaction; by lock */
	int64_t txn_changes;	/* total_changes at BEGIN; by lock */
	uint64_t change_count;	/* committed changing writes; by lock */
	sqlite3_session *sess;	/* the journal's change recorder, or NULL;
				 * by lock (meta_journal.c) */
	struct meta_pend *pend;	/* batched write attributes; by lock
				 * (meta_pend.c) */
	/* set by meta_write_done() for meta_txn_end() to note at commit;
	 * by lock */
	uint64_t note_ino, note_size;
	struct timespec note_time;
	struct meta_ckpt *ckpt;	/* WAL checkpoints of a file database, or
				 * NULL (meta.c); immutable after open */
	/* a follower's (meta_journal_on_apply()); set while no apply
	 * runs */
	meta_applied_fn *on_apply;
	void *on_apply_arg;
	struct meta_acache *acache; /* recent inode rows (meta.c); by lock */
};

/* Take the lock and open a transaction of the given kind. 0 or -errno;
 * on failure the lock is not held. */
int meta_txn_begin(struct meta *m, enum meta_txn kind);
/* Commit (rc >= 0) or roll back (rc < 0), release the lock.  Returns rc,
 * or the commit's error. */
int meta_txn_end(struct meta *m, int rc);

/* What a transaction does with batched write attributes (meta_pend.c,
 * invariant 1). */
enum meta_pend_mode {
	META_PEND_FORGET,	/* write them, forget them: any transaction */
	META_PEND_KEEP,		/* write them, keep them: changes only the
				 * size and times of an inode that has no
				 * record */
	META_PEND_IGNORE,	/* neither: reads no size or time, changes
				 * nothing */
};

/* meta_txn_begin() that treats batched write attributes as pm says
 * (meta_txn_begin() is META_PEND_FORGET). */
int meta_txn_begin_pend(struct meta *m, enum meta_txn kind,
			enum meta_pend_mode pm);
/* The bare lock, for the paths that touch only meta_pend.c's records:
 * 0 or -errno (EDEADLK: a callback called back into meta). */
int meta_lock(struct meta *m);
void meta_unlock(struct meta *m);

/*
 * The inode rows read or written last, so that a getattr (the kernel asks
 * for a directory's attributes before every change in it, since each
 * change drops them) needs no statement.  A slot holds a row exactly as
 * the connection would read it now: SQLite's update hook empties the slot
 * of every inode row inserted, updated or deleted, and a rollback empties
 * the slots filled since BEGIN (meta.c).  The lock held for all three.
 * meta_acache_get: a copy of ino's row into *out, or false.
 * meta_acache_put: remember a row just read (or just written by a change).
 */
bool meta_acache_get(struct meta *m, uint64_t ino, struct meta_attr *out);
void meta_acache_put(struct meta *m, const struct meta_attr *a);

/* Log an SQLite failure with its message and map it to -errno. */
int meta_sql_err(struct meta *m, int rc, const char *what);
/* Step st once: 1 for a row, 0 when done, -errno on error (logged). */
int meta_step(struct meta *m, sqlite3_stmt *st);
/* Prepare a one-off statement (the caller finalizes it). */
int meta_prepare(struct meta *m, const char *sql, sqlite3_stmt **out);
/* meta_mknod() inside an open write transaction. */
int meta_mknod_locked(struct meta *m, uint64_t parent, const char *name,
		      uint32_t mode, uint64_t rdev, uint32_t uid,
		      uint32_t gid, const char *target,
		      const struct timespec *now, struct meta_attr *out);

/*
 * Batched write attributes (meta_pend.c; the lock held for all but open
 * and close).  meta_pend_open maps <path>-pending and applies what a
 * crash left there; meta_pend_flush_locked writes the dirty records in a
 * transaction of its own (no transaction may be open) and forgets them
 * all when forget, else keeps them clean; meta_pend_known_locked: ino has
 * a record (a regular file whose data is in blocks);
 * meta_pend_write_locked: records a write of [.., end) at now without a
 * transaction, false when ino has no record; meta_pend_note_locked:
 * records ino's size and time just committed.
 */
int meta_pend_open(struct meta *m);
void meta_pend_close(struct meta *m);
int meta_pend_flush_locked(struct meta *m, bool forget);
bool meta_pend_known_locked(struct meta *m, uint64_t ino);
bool meta_pend_write_locked(struct meta *m, uint64_t ino, uint64_t end,
			    const struct timespec *now);
void meta_pend_note_locked(struct meta *m, uint64_t ino, uint64_t size,
			   const struct timespec *now);

/* A database copy outside the lock (meta_journal.c): a read-only
 * connection to m's file, and a copy of src (in its open read
 * transaction, if any) to the file path. */
int meta_copy_reader(struct meta *m, sqlite3 **reader);
int meta_copy_to(struct meta *m, sqlite3 *src, const char *path);

/* The name of the VFS that writes each WAL frame in one pwrite (SQLite's
 * unix VFS otherwise; meta_vfs.c), or NULL (the default VFS) when it
 * could not be registered. */
const char *meta_vfs_name(void);

/* Free the session (meta_close). */
void meta_journal_stop(struct meta *m);

#define META_ID_BATCH 256	/* inos / blocks per lock */

/*
 * The statements every connection prepares once, in m->st[] (their SQL:
 * stmt_sql[] in meta.c).  A statement is used only with the lock held
 * and is reset before the lock is released (invariant 5 of meta.c).
 */
enum meta_stmt {
	ST_BEGIN,
	ST_BEGIN_READ,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_CONFIG_GET,
	ST_CONFIG_SET,
	ST_INODE_GET,
	ST_INODE_PARENT,
	ST_INODE_TARGET,
	ST_INODE_INSERT,
	ST_INODE_PUT,
	ST_INODE_NLINK,
	ST_INODE_DIR_TOUCH,
	ST_INODE_MOVED,
	ST_INODE_CTIME,
	ST_INODE_ATIME,
	ST_INODE_WRITE,
	ST_INODE_NBLOCKS,
	ST_INODE_DELETE,
	ST_ORPHANS,
	ST_DENTRY_FIND,
	ST_DENTRY_EXISTS,
	ST_DENTRY_INSERT,
	ST_DENTRY_DELETE,
	ST_DENTRY_MOVE,
	ST_DENTRY_SET_INO,
	ST_DENTRY_ANY,
	ST_READDIR,
	ST_XATTR_GET,
	ST_XATTR_INSERT,
	ST_XATTR_UPDATE,
	ST_XATTR_LIST,
	ST_XATTR_DELETE,
	ST_XATTR_PURGE,
	ST_INLINE_GET,
	ST_INLINE_SET,
	ST_INLINE_DELETE,
	ST_INLINE_ANY,
	ST_SEEK_BLOCKS,
	ST_LAST_COOKIE,
	ST_BLOCK_GET,
	ST_BLOCK_DIRTY,
	ST_BLOCK_INSERT,
	ST_BLOCK_SET,
	ST_BLOCK_DELETE,
	ST_BLOCK_UNREF_RANGE,
	ST_BLOCK_DELETE_RANGE,
	ST_PATCH_LIST,
	ST_PATCH_INSERT,
	ST_PATCH_UNREF_RANGE,
	ST_PATCH_DELETE_RANGE,
	ST_BLOCKS_DIRTY,
	ST_BLOCKS_PATCHED,
	ST_DIRTY_COUNT,
	ST_INODE_DIRTY_COUNT,
	ST_FORGET_NBLOCKS,
	ST_FORGET_DELETE,
	ST_FORGET_CLEAN,
	ST_OBJECT_GET,
	ST_OBJECT_REF,
	ST_OBJECT_UNREF,
	ST_OBJECT_ENSURE,
	ST_GC_LIST,
	ST_GC_WAITING,
	ST_DB_BYTES,
	ST_GC_FORGET,
	ST_OBJECTS,
	ST_STATS,
	ST_COUNT
};

/* The inode's attributes: 0, -ENOENT, or -errno (meta_ns.c). */
int meta_inode_get_locked(struct meta *m, uint64_t ino, struct meta_attr *a);
/* meta_ns.c: add the name (len bytes) of ino in parent; with the lock
 * held, inside a write transaction (meta_clone.c uses it too). */
int meta_dentry_insert(struct meta *m, uint64_t parent, const void *name,
		       size_t len, uint64_t ino);
/* Remove block rows [first, last] of ino and their patches, releasing
 * their objects and lowering ino's nblocks (meta_block.c). */
int meta_blocks_drop_locked(struct meta *m, uint64_t ino, uint64_t first,
			    uint64_t last);

/* The number of blocks a file of size bytes spans. */
static inline uint64_t meta_blocks_for(const struct meta *m, uint64_t size)
{
	return size / m->block_size + (size % m->block_size != 0);
}

/* *now, or the clock when now is NULL. */
static inline struct timespec meta_now(const struct timespec *now)
{
	struct timespec ts;

	if (now)
		return *now;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

/* ---- statement helpers ---- */

/* Run a statement that returns no rows we want, then reset it. */
static inline int meta_run(struct meta *m, sqlite3_stmt *st)
{
	int rc = meta_step(m, st);

	sqlite3_reset(st);
	return rc < 0 ? rc : 0;
}

/*
 * Bindings cannot fail for our inputs (indexes are static, sizes are far
 * below SQLITE_MAX_LENGTH and SQLITE_STATIC never allocates); debug builds
 * check it anyway.
 */
static inline void bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
	int rc = sqlite3_bind_int64(st, i, v);

	assert(rc == SQLITE_OK);
	(void)rc;
}

static inline void bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
	bind_i64(st, i, v > INT64_MAX ? -1 : (int64_t)v);
}

static inline void bind_null(sqlite3_stmt *st, int i)
{
	int rc = sqlite3_bind_null(st, i);

	assert(rc == SQLITE_OK);
	(void)rc;
}

static inline void bind_blob(sqlite3_stmt *st, int i, const void *p,
			     size_t n)
{
	int rc;

	/* A NULL pointer would bind SQL NULL, not an empty value. */
	if (n == 0)
		rc = sqlite3_bind_zeroblob(st, i, 0);
	else
		rc = sqlite3_bind_blob(st, i, p, (int)n, SQLITE_STATIC);
	assert(rc == SQLITE_OK);
	(void)rc;
}

static inline void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	int rc = sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);

	assert(rc == SQLITE_OK);
	(void)rc;
}

static inline void bind_time(sqlite3_stmt *st, int i,
			     const struct timespec *ts)
{
	bind_i64(st, i, (int64_t)ts->tv_sec);
	bind_i64(st, i + 1, (int64_t)ts->tv_nsec);
}

static inline uint64_t col_u64(sqlite3_stmt *st, int c)
{
	return (uint64_t)sqlite3_column_int64(st, c);
}

/* The 14 columns of ATTR_COLS() (meta.c), from column c on. */
static inline void col_attr(sqlite3_stmt *st, int c, struct meta_attr *a)
{
	a->ino = col_u64(st, c);
	a->mode = (uint32_t)col_u64(st, c + 1);
	a->uid = (uint32_t)col_u64(st, c + 2);
	a->gid = (uint32_t)col_u64(st, c + 3);
	a->nlink = (uint32_t)col_u64(st, c + 4);
	a->size = col_u64(st, c + 5);
	a->rdev = col_u64(st, c + 6);
	a->nblocks = col_u64(st, c + 7);
	a->atime.tv_sec = (time_t)sqlite3_column_int64(st, c + 8);
	a->atime.tv_nsec = (long)sqlite3_column_int64(st, c + 9);
	a->mtime.tv_sec = (time_t)sqlite3_column_int64(st, c + 10);
	a->mtime.tv_nsec = (long)sqlite3_column_int64(st, c + 11);
	a->ctime.tv_sec = (time_t)sqlite3_column_int64(st, c + 12);
	a->ctime.tv_nsec = (long)sqlite3_column_int64(st, c + 13);
}

/* Copy an object name column into hash[META_HASH_LEN + 1]. */
static inline void col_hash(sqlite3_stmt *st, int c, char *hash)
{
	const unsigned char *t = sqlite3_column_text(st, c);
	size_t n = t ? (size_t)sqlite3_column_bytes(st, c) : 0;

	n = MF_MIN(n, (size_t)META_HASH_LEN);
	if (n)
		memcpy(hash, t, n);
	hash[n] = 0;
}

#endif
