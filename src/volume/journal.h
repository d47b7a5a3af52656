/*
 * journal.h - the volume's metadata in the store: checkpoints (full
 * copies of the database) and the journal of changes between them.  The
 * layout and invariants are at the top of journal.c.
 */
#ifndef METAFUSE_JOURNAL_H
#define METAFUSE_JOURNAL_H

#include "blob/blob.h"
#include "meta/meta.h"
#include "store/store.h"
#include "util/progress.h"

struct journal;

struct journal_stats {
	uint64_t entries;     /* journal entries uploaded */
	uint64_t checkpoints; /* checkpoints uploaded */
	uint64_t bytes;       /* stored bytes of both */
	uint64_t pending;     /* entries cut but not yet in the store */
	/* the store's newest checkpoint as far as this database knows
	 * (also one an earlier mount wrote): its sequence, when it was
	 * written (Unix seconds; 0: unknown, written by an older metafuse)
	 * and its stored bytes (0: unknown); the journal entries after it
	 * and their stored bytes.  Together the metadata the store holds. */
	uint64_t ckpt_seq;
	uint64_t ckpt_time;
	uint64_t ckpt_bytes;
	uint64_t since_entries;
	uint64_t since_bytes;
};

/* Start recording m's changes; tmp_dir holds checkpoint snapshots. */
int journal_open(struct meta *m, struct store *s, const struct blob_ctx *bc,
		 const char *tmp_dir, struct journal **out);
void journal_close(struct journal *j);
/*
 * Make every change committed to m before the call durable in the store:
 * cut a journal entry and upload it after any earlier entry still
 * pending.  0 once all are in the store; on failure they stay pending
 * (in order) and the next sync or checkpoint retries them.
 */
int journal_sync(struct journal *j);
/*
 * Write a checkpoint covering every change so far; once it is durable,
 * delete older checkpoints and the entries it covers, and set the
 * database's durable_seq (garbage collection's epoch) to its sequence.
 */
int journal_checkpoint(struct journal *j);
/* The numbers as of the end of the last sync or checkpoint; never waits
 * for one that runs (nor for its uploads). */
void journal_get_stats(struct journal *j, struct journal_stats *out);
/* Whether anything changed since the last checkpoint: then the store's
 * newest checkpoint alone is not the live state. */
bool journal_changed_since_checkpoint(struct journal *j);
/* Whether a checkpoint is worth its cost now (the policy is at the top of
 * journal.c): when not, journal_sync() is enough.  When the database
 * cannot tell, true. */
bool journal_checkpoint_due(struct journal *j);
/* The caller knows the store's newest checkpoint is the state at open
 * (a clean previous unmount, nothing restored): no checkpoint needed. */
void journal_assume_checkpointed(struct journal *j);
/*
 * Every cut of the journal (an entry, or a checkpoint's snapshot) then
 * runs as gate(arg, cut, cut_arg), which calls cut(cut_arg) and returns
 * what it returns; the mount passes the cache's barrier
 * (cache_cut_barrier()).  NULL: cut directly (before the cache closes).
 */
void journal_set_gate(struct journal *j,
		      int (*gate)(void *arg, int (*cut)(void *),
				  void *cut_arg),
		      void *arg);
/* Checkpoint part size in bytes (0: the default, 8 MiB); for tests. */
void journal_set_part_size(struct journal *j, size_t bytes);
/*
 * From now on a checkpoint in parts says how far it is through
 * progress(progress_arg) (NULL: not), as JOURNAL_WRITING, in bytes,
 * after each part; called on the thread that writes the checkpoint, with
 * the journal's lock held (progress must not call the journal).
 */
#define JOURNAL_WRITING "writing the metadata checkpoint"
void journal_set_progress(struct journal *j, progress_fn *progress,
			  void *progress_arg);

/* Newest checkpoint sequence in the store; -ENOENT when there is none. */
int checkpoint_latest(struct store *s, uint64_t *seq);
/*
 * Download the newest checkpoint into a new database file at db_path
 * (replacing it).  *seq_out gets its sequence.  -ENOENT: none.  A
 * checkpoint in parts says how far it is through progress(progress_arg)
 * (may be NULL), as JOURNAL_RESTORING, in bytes, after each part.
 */
#define JOURNAL_RESTORING "restoring the metadata checkpoint"
#define JOURNAL_REPLAYING "replaying journal entries"
int checkpoint_restore(struct store *s, const struct blob_ctx *bc,
		       const char *db_path, uint64_t *seq_out,
		       progress_fn *progress, void *progress_arg);
/*
 * Apply to m (a restored checkpoint) the journal entries after its
 * jrnl_seq, in order, up to the first gap or damaged entry (logged);
 * *applied gets their number.  An error only when the store fails.
 * progress(progress_arg) (may be NULL) hears the entries applied of
 * those to apply, after each, as JOURNAL_REPLAYING.
 */
int journal_replay(struct store *s, const struct blob_ctx *bc,
		   struct meta *m, uint64_t *applied, progress_fn *progress,
		   void *progress_arg);

/*
 * A copy of a database kept in the store under keys of its own (a
 * snapshot's, volume/snapshot.c), written and read as a checkpoint in
 * parts is (invariant 6 of journal.c), but always in parts: its head
 * "<head_prefix><16 hex id>" is a small manifest, with extra (lines
 * "key=value\n", may be NULL) after its own lines, put last; the parts
 * are "<part_prefix><16 hex id>-<8 hex part>".  journal_put_copy() adds
 * the stored bytes to *stored; the journal itself never trims these keys.
 * journal_copy_is_head(): the decoded head is such a manifest.
 * journal_restore_copy() writes the copy whose decoded head is head into
 * a new database file at db_path (replacing it).
 */
int journal_put_copy(struct journal *j, const char *head_prefix,
		     const char *part_prefix, uint64_t id, const char *path,
		     const char *extra, uint64_t *stored);
int journal_copy_is_head(const struct buf *head);
/* The directory journal_open() was given for copies of the database. */
const char *journal_tmp_dir(struct journal *j);
int journal_restore_copy(struct store *s, const struct blob_ctx *bc,
			 const char *head_prefix, const char *part_prefix,
			 uint64_t id, const struct buf *head,
			 const char *db_path);
/*
 * The history window (journal.c, invariant 7): from now on keep every
 * state less than history_s seconds old (0: off, checkpoints trim all
 * older ones as before).  Turning it on lists the store's checkpoints
 * (two requests); each checkpoint then gets a marker beside it.  Turning
 * it off drops what only the window kept (journal_history_drop()).
 */
int journal_set_history(struct journal *j, uint64_t history_s);
/*
 * The window turned off (journal_set_history(j, 0) does it for a mount;
 * tune for an unmounted volume): delete every checkpoint but the newest,
 * the entries it covers and every marker, as a checkpoint without a
 * window would have.
 */
int journal_history_drop(struct store *s);
/*
 * The epoch of garbage collection: objects with freed_epoch below it may
 * be deleted.  Without a window, durable_seq (no request); with one, the
 * oldest checkpoint the window keeps, after trimming what it no longer
 * needs (requests only when that moved).  On error *epoch is 0.
 */
int journal_gc_epoch(struct journal *j, uint64_t *epoch);
/* With a window: the time (Unix ns) of the oldest state it keeps, the
 * oldest moment `mount --at` can have; 0 without a window or when that
 * checkpoint's time is not known (no marker).  No request. */
int64_t journal_history_oldest(struct journal *j);

/*
 * The state of the volume at a past moment (`mount --at`): the state
 * after the newest journal entry written at or before at_ns (Unix ns),
 * restored into a new database at db_path (of a volume of block_size)
 * from the checkpoint and the entries the store keeps for it.  info gets
 * what was restored.  -ERANGE with one line in err naming the oldest
 * moment that can be had (UTC ISO 8601) when at_ns is before it; -EIO
 * when a journal entry the moment needs is missing or damaged; other
 * errors with one line.
 */
struct journal_at {
	uint64_t jseq;     /* the journal entry the state ends with */
	int64_t time_ns;   /* when that entry was written (0: unknown) */
	uint64_t ckpt_seq; /* the checkpoint it was rebuilt from */
	uint64_t applied;  /* entries applied over it */
};
int journal_restore_at(struct store *s, const struct blob_ctx *bc,
		       uint32_t block_size, const char *db_path,
		       int64_t at_ns, struct journal_at *info,
		       struct buf *err);

#endif
