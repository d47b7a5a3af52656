/*
 * meta_int.h - internals shared by the files of meta/ only (meta.c,
 * meta_fsck.c).  Nothing outside src/meta/ may include it.
 *
 * struct meta owns the one SQLite connection of a volume.  Every use of
 * the connection happens between meta_txn_begin() and meta_txn_end(),
 * which take and release m->lock.
 */
#ifndef METAFUSE_META_INT_H
#define METAFUSE_META_INT_H

#include "util/compat.h"

#include <pthread.h>
#include <sqlite3.h>

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
};

/* Take the lock and open a transaction of the given kind. 0 or -errno;
 * on failure the lock is not held. */
int meta_txn_begin(struct meta *m, enum meta_txn kind);
/* Commit (rc >= 0) or roll back (rc < 0), release the lock.  Returns rc,
 * or the commit's error. */
int meta_txn_end(struct meta *m, int rc);
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

/* Free the session (meta_close). */
void meta_journal_stop(struct meta *m);

#endif
