/*
 * cache_int.h - what the files of the block cache share (private to
 * src/cache/; the contract with the layers above is cache.h).
 *
 * The cache is one struct cache holding a struct centry per cached block
 * (its data model, the states of a block and the invariants are in
 * cache.c's design comment).  Its files, one responsibility each:
 *
 *   cache.c          the table, the LRU list and eviction, an entry's life
 *                    (entry_acquire() to entry_destroy()), its cache file
 *                    and descriptor, claims, open and close
 *   cache_rw.c       cache_read(), cache_write() and the disk reserve
 *   cache_cut.c      truncate, punch and forget: entries dropped or cut
 *   cache_load.c     filling an entry from the store (its base object and
 *                    patches), read-ahead and the fetcher threads
 *   cache_upload.c   the upload workers, flushes and the journal's barrier
 *   cache_recover.c  recovery at open, and the clean blocks a clean close
 *                    keeps for it
 *
 * Locks, in this order: commit_lock, then lock.  commit_lock is held
 * across the index transaction that records a write or an upload, and
 * while an upload takes the version it uploads, so "this block is dirty"
 * in memory and in the index change together, a write that races with an
 * upload is never marked clean, and the file size an upload reads covers
 * every write its version counts.  lock protects every field below
 * marked so and is never held across I/O or an index call.  The index
 * (struct cache_index_ops) is thus called with commit_lock alone or with
 * neither, and takes its own locks inside.  Each .c file says which of
 * the two it takes.
 */
#ifndef METAFUSE_CACHE_INT_H
#define METAFUSE_CACHE_INT_H

#include "util/compat.h"

#include <pthread.h>
#include <stdatomic.h>

#include "cache/cache.h"
#include "util/buf.h"

enum ce_state { CE_LOADING, CE_CLEAN, CE_DIRTY };

/* Read-ahead: the most fetches queued (struct cache's ring). */
#define PREFETCH_QUEUE 64
/* The unit in which written bytes are tracked (a page): a bit of
 * centry.dmap, a page of a patch. */
#define DMAP_PAGE 4096U

struct centry {
	uint64_t ino, idx, gen;
	struct centry *hnext;      /* hash chain; protected by lock */
	struct centry *prev, *next; /* lru or dirty list; protected by lock */
	enum ce_state state;       /* protected by lock */
	bool in_table, uploading, urgent, has_file;
	/* on c->hurry (by lock): DIRTY, and urgent or written whole when it
	 * went on it */
	bool in_hurry;
	struct centry *hurry_prev, *hurry_next; /* protected by lock */
	int refs;                  /* pins; protected by lock */
	uint64_t version;          /* protected by lock */
	uint64_t committed_version;
	/* the version a truncate or punch left (0: none): the journal's
	 * barrier waits until it is in the index, see
	 * cache_cut_barrier(); protected by lock */
	uint64_t cut_version;
	uint64_t dirty_since_ns;
	/* [cov_lo, cov_hi): bytes of the block written, as one range, since
	 * it became dirty (a write apart from the range is not counted);
	 * protected by lock.  [0, block_size): written whole, see
	 * pick_upload() */
	uint32_t cov_lo, cov_hi;
	/* what the entry counts in c->dirty_data while DIRTY: the pages its
	 * writes covered since it became dirty, added up (a page written
	 * twice counts twice), at most a block; protected by lock */
	uint32_t dirty_acct;
	/* pages of the block written since its content was last the one
	 * uploaded (a bit per DMAP_PAGE; NULL: none yet), what a patch
	 * would hold; dmap_ok false: unknown (after a crash, a truncate or
	 * a punch), upload whole.  Protected by lock; see dmap_take() for
	 * how an upload takes them over */
	uint64_t *dmap;
	bool dmap_ok;
	uint64_t retry_at_ns;
	uint64_t backoff_ns;
	int last_err;
	uint64_t err_seq;
	/* an open O_RDWR descriptor of the file, kept while the entry
	 * lives (entry_keep_fd(), lent by entry_get_fd()), or -1; set
	 * under lock, closed by entry_destroy() */
	int fd;
};

struct elist {
	struct centry *head, *tail;
	size_t n;
};

struct cache {
	struct cache_config cfg;
	char *blocks_dir;
	struct store *store;
	const struct blob_ctx *blob;
	const struct cache_index_ops *ops;
	void *index_arg;

	pthread_mutex_t commit_lock;
	pthread_mutex_t lock;
	pthread_cond_t state_cond; /* entry state changed, space freed */
	pthread_cond_t work_cond;  /* something for the workers; its clock
				    * is CLOCK_MONOTONIC */
	/* the earliest time (now_mono_ns()) a sleeping upload worker wakes
	 * by itself, UINT64_MAX when none is known: a block that turns dirty
	 * and falls due later need not wake them (upload_sleep_locked());
	 * by lock */
	uint64_t wake_at_ns;

	struct centry **buckets;   /* protected by lock */
	size_t nbuckets, nentries; /* protected by lock */
	/* dirty: in the order the entries became dirty, so by when they
	 * fall due but for those on hurry, the dirty entries a flush waits
	 * for or written whole (pick_upload()); protected by lock */
	struct elist lru, dirty;
	struct {
		struct centry *head;
	} hurry;
	uint64_t next_gen;         /* protected by lock */
	uint64_t cached_bytes, dirty_bytes; /* protected by lock */
	/* the data not yet uploaded, as the writes since each entry became
	 * dirty cover it (the sum of the entries' dirty_acct): what
	 * max_dirty and whole_after weigh, where dirty_bytes counts a whole
	 * block for a file of 100 bytes; protected by lock */
	uint64_t dirty_data;
	uint64_t err_seq;          /* protected by lock */
	/* free space of the cache disk when last asked, and since then the
	 * most that writes may have taken (disk_free_guess()) */
	uint64_t free_seen, free_seen_ns, free_taken; /* by lock */
	unsigned nfds, maxfds;     /* descriptors kept by entries; by lock */
	unsigned flushers;         /* threads in cache_flush_all; by lock */
	/* the journal's barrier is up (new cuts wait), and the truncates
	 * and punches past it; by lock */
	bool barrier;
	unsigned cutting;
	bool stopping;             /* protected by lock */
	char (*claims)[BLOB_NAME_LEN + 1]; /* protected by lock */
	size_t nclaims, capclaims;
	struct cache_stats stats;  /* protected by lock */
	unsigned uploading;        /* entries uploading; by lock */
	uint64_t opened_ns;        /* const after cache_open() */
	/* the block reads of cache_read(), counted without a lock */
	atomic_uint_fast64_t read_hits, read_misses;

	pthread_t *workers;
	unsigned nworkers;

	/* read-ahead: blocks to fetch before they are read (ring) */
	struct { uint64_t ino, idx; } ahead[PREFETCH_QUEUE]; /* by lock */
	unsigned ahead_head, ahead_n;  /* protected by lock */
	pthread_cond_t ahead_cond;     /* the ring is not empty */
	pthread_t *fetchers;
	unsigned nfetchers;
};

/* ---- small helpers (lists called with lock held) ---- */

static inline void elist_add_tail(struct elist *l, struct centry *e)
{
	e->next = NULL;
	e->prev = l->tail;
	if (l->tail)
		l->tail->next = e;
	else
		l->head = e;
	l->tail = e;
	l->n++;
}

static inline void elist_del(struct elist *l, struct centry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail = e->prev;
	e->prev = e->next = NULL;
	l->n--;
}

/* Put e (DIRTY) on c->hurry, if it is not there. */
static inline void hurry_add(struct cache *c, struct centry *e)
{
	if (e->in_hurry)
		return;
	e->in_hurry = true;
	e->hurry_prev = NULL;
	e->hurry_next = c->hurry.head;
	if (c->hurry.head)
		c->hurry.head->hurry_prev = e;
	c->hurry.head = e;
}

/* Take e off c->hurry, if it is there. */
static inline void hurry_del(struct cache *c, struct centry *e)
{
	if (!e->in_hurry)
		return;
	if (e->hurry_prev)
		e->hurry_prev->hurry_next = e->hurry_next;
	else
		c->hurry.head = e->hurry_next;
	if (e->hurry_next)
		e->hurry_next->hurry_prev = e->hurry_prev;
	e->hurry_prev = e->hurry_next = NULL;
	e->in_hurry = false;
}

/*
 * The longest pwrite into a cache file.  The page cache makes its folios
 * as large as the write that creates them, and ext4 walks every block of
 * a folio on each write into it: after a block went into its file in
 * one 1 MiB pwrite (a FUSE write of max_write), each later 4 KiB write
 * into it cost about 40 us in the kernel, against about 10 us in a file
 * written in 128 KiB pieces (passthrough_ll's, FUSE's default
 * max_write); and one 4 MiB pwrite into a new file made the copy into
 * the page cache 47% of a cold read's CPU.
 */
#define CACHE_PWRITE_MAX ((size_t)128 << 10)

/* pwrite_all() in pieces of at most CACHE_PWRITE_MAX. */
int cache_pwrite(int fd, const void *data, size_t len, off_t off);

/*
 * Whether the dirty blocks must go up at once: past max_dirty of data, or
 * when they fill half the cache's room, which counts a whole block for
 * each (a burst of small files, each a block of room and a page of data,
 * left writers waiting for room until the blocks fell due: an untar on
 * S3's 4 MiB blocks took 21 s instead of 9).  Called with lock held.
 */
static inline bool dirty_pressure(const struct cache *c)
{
	return c->dirty_data > c->cfg.max_dirty ||
	       c->dirty_bytes > c->cfg.cache_size / 2;
}

/* Whether e's block was written whole since it became dirty. */
static inline bool entry_whole(const struct cache *c, const struct centry *e)
{
	return e->cov_lo == 0 && e->cov_hi == c->cfg.block_size;
}

/* Whether small files live inline in the index. */
static inline bool cache_inline_on(const struct cache *c)
{
	return c->cfg.inline_max && c->ops->inline_write;
}

/* The words of a dmap (a bit per DMAP_PAGE of a block). */
static inline size_t cache_dmap_words(const struct cache *c)
{
	return (c->cfg.block_size / DMAP_PAGE + 63) / 64;
}

/* ---- cache.c: the table and the entries ---- */

/* The entry of (ino, idx) in the table, or NULL.  Called with lock held. */
struct centry *cache_table_find(struct cache *c, uint64_t ino, uint64_t idx);
/* Put e in the table (on no list yet).  Called with lock held. */
void cache_table_insert(struct cache *c, struct centry *e);
/* Take e off its list and out of the table (dropped).  Called with lock
 * held; the caller destroys it once unpinned. */
void cache_table_remove(struct cache *c, struct centry *e);
/* Evict clean, unpinned entries in LRU order while over target bytes
 * (cache_evict_some(): over cache_size).  Takes lock. */
void cache_evict_to(struct cache *c, uint64_t target);
void cache_evict_some(struct cache *c);

/* The path of e's cache file into path. */
void entry_path(const struct cache *c, const struct centry *e, char *path,
		size_t size);
/* Free a dropped entry and remove its file.  Called without lock. */
void entry_destroy(struct cache *c, struct centry *e);
/* Unpin e.  Called with lock held: true when the caller must
 * entry_destroy() it after unlocking. */
bool entry_unpin_locked(struct cache *c, struct centry *e);
/* Unpin e, destroying it when it was the last use of a dropped entry. */
void entry_release(struct cache *c, struct centry *e);
/*
 * Pin the entry of (ino, idx), creating it when missing: loaded from the
 * store when load (through obj when not NULL, see cache_load_block()),
 * else empty.  entry_acquire(): obj NULL.
 */
int entry_acquire_buf(struct cache *c, uint64_t ino, uint64_t idx,
		      bool load, struct buf *obj, struct centry **out);
int entry_acquire(struct cache *c, uint64_t ino, uint64_t idx, bool load,
		  struct centry **out);

/* Open e's cache file (flags as open(2)): a new descriptor or -errno. */
int entry_open(struct cache *c, struct centry *e, int flags);
/* Keep fd as e's descriptor when there is room, else close it. */
void entry_keep_fd(struct cache *c, struct centry *e, int fd);
/* A descriptor of e's file (e pinned) into *fd, handed back with
 * entry_put_fd(). */
int entry_get_fd(struct cache *c, struct centry *e, int *fd);
void entry_put_fd(struct cache *c, struct centry *e, int fd);
/* Read up to len bytes at off; what the file lacks reads as zeros. */
int cache_pread_zero(int fd, void *buf, size_t len, off_t off);

/* ---- cache_cut.c ---- */

/* Zero [from, to) within block e's file (to == block end: cut it). */
int cache_zero_in_block(struct cache *c, struct centry *e, uint64_t from,
			uint64_t to);

/* ---- cache_load.c ---- */

/* Fill a new entry's file from the store; *dirty: the index says the
 * block was written since its content went up. */
int cache_load_block(struct cache *c, struct centry *e, struct buf *reuse,
		     bool *dirty);
/* The name of a block's uploaded content ("" when never uploaded). */
int cache_content_name(struct cache *c, uint64_t ino, uint64_t idx,
		       char *name);
/* Queue the fetch of the blocks after idx for a sequential reader. */
void cache_read_ahead(struct cache *c, uint64_t ino, uint64_t idx,
		      uint64_t file_size);
/* The fetcher threads' body (arg: the cache). */
void *cache_fetcher(void *arg);

/* ---- cache_upload.c ---- */

/* The upload workers' body (arg: the cache). */
void *cache_upload_worker(void *arg);

/* ---- cache_recover.c ---- */

/* At open, before any thread runs: match the files of the last run with
 * the index's dirty blocks, adopt the kept clean ones. */
int cache_recover(struct cache *c);
/* At a clean close, after the threads stopped: keep the clean blocks'
 * files for the next open. */
void cache_keep_clean(struct cache *c);

#endif
