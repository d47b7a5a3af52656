/*
 * cache.c - the local write-back block cache (contract in cache.h): the
 * table of entries, the LRU list and eviction, an entry's life, its cache
 * file and descriptor, claims, open and close.  The other files of the
 * cache are listed in cache_int.h, with the structs and the lock order.
 *
 * Data model
 *   One struct centry per cached block (ino, idx), in a hash table, backed
 *   by one cache file dir/blocks/<ino>.<idx>.<gen> holding the block's
 *   bytes (shorter than a block: the rest is zeros).  gen is unique per
 *   entry, so an entry dropped while its file is still in use never
 *   shares a file with its successor; gens only grow within a run and
 *   start above every file cache_recover() keeps, so after a crash the
 *   newest file of a block is its successor's.  Every entry is accounted
 *   as one whole block of disk.
 *
 * States of an entry (the state field, plus flags):
 *
 *            entry_acquire()                 cache_write()
 *   (none) ---------------> LOADING ------> CLEAN ---------> DIRTY
 *            cache_load_block() ok |          ^                 |
 *                                  |          |  upload_one()   | pick_upload()
 *                 load fails: freed|          +-- committed ----+ (uploading)
 *                                             |   unchanged     |
 *                  cache_evict_to() <---------+                 |
 *                  (LRU, refs == 0)              upload fails: stays DIRTY,
 *                                                retried after backoff
 *   A truncate or punch that zeroes part of a CLEAN block makes it DIRTY
 *   too (mark_dirty_committing()).  Any state -> dropped (removed from
 *   the table) by cache_truncate(), cache_punch(), cache_forget_inode();
 *   the memory and file go when the last pin is released and no upload
 *   is running.
 *
 *   Where each step is: entry_acquire() and cache_evict_to() here (a
 *   loaded entry turns CLEAN in entry_loaded()); cache_load_block() in
 *   cache_load.c; cache_write() in cache_rw.c (the entry turns DIRTY in
 *   write_mark_dirty_locked()); pick_upload() and upload_one() in
 *   cache_upload.c (CLEAN again in upload_settle_locked(), a failure in
 *   upload_done_locked()); the truncate, punch and forget in cache_cut.c.
 *
 * Invariants (checked by cache_check() in debug builds)
 *   1. CLEAN entries are on the lru list, DIRTY ones on the dirty list,
 *      LOADING and dropped ones on neither.
 *   2. dirty_bytes = block_size * number of DIRTY entries in the table,
 *      dirty_data = the sum of their dirty_acct;
 *      cached_bytes = block_size * number of entries not yet freed.
 *   3. the index says a block is dirty iff its entry is DIRTY (outside
 *      the windows that commit_lock closes).
 *   4. an entry's version counts the writes applied to its file;
 *      committed_version is the version last made durable.
 *   5. nfds = the number of entries (in the table or not yet freed)
 *      keeping a descriptor, at most maxfds; a kept descriptor is closed
 *      only by entry_destroy() (or cache_close()), when nobody pins the
 *      entry, so a thread that got it from entry_get_fd() may use it
 *      until it unpins.
 *   6. dmap_ok: the entry's file is its uploaded content (base and
 *      patches) changed only in the pages set in dmap, or, while an
 *      upload runs, in those pages and the ones it took over (dmap_take).
 *
 * Locks: this file takes lock only (commit_lock is taken by cache_rw.c,
 * cache_cut.c and cache_upload.c; the order is in cache_int.h).
 */
#include "util/compat.h"

#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cache/cache_int.h"
#include "util/log.h"
#include "util/util.h"

/* ---- small helpers ---- */

static void mutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
#ifndef NDEBUG
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
#endif
	pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
}

/* A condition variable whose timed waits take CLOCK_MONOTONIC
 * deadlines: a step of the wall clock neither stretches nor cuts them. */
static void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

/* ---- the table ---- */

static size_t bucket_of(const struct cache *c, uint64_t ino, uint64_t idx)
{
	uint64_t h = ino * 0x9E3779B97F4A7C15ULL ^ (idx + 0x632BE59BD9B4E019ULL);

	h ^= h >> 29;
	h *= 0xBF58476D1CE4E5B9ULL;
	h ^= h >> 32;
	return (size_t)(h & (c->nbuckets - 1));
}

/* Called with lock held. */
struct centry *cache_table_find(struct cache *c, uint64_t ino,
				uint64_t idx)
{
	struct centry *e = c->buckets[bucket_of(c, ino, idx)];

	while (e && (e->ino != ino || e->idx != idx))
		e = e->hnext;
	return e;
}

static void table_grow(struct cache *c)
{
	size_t n = c->nbuckets * 2, i;
	struct centry **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return; /* keep the longer chains */
	for (i = 0; i < c->nbuckets; i++) {
		struct centry *e = c->buckets[i], *next;

		for (; e; e = next) {
			size_t b;

			next = e->hnext;
			c->nbuckets = n;
			b = bucket_of(c, e->ino, e->idx);
			c->nbuckets = n / 2;
			e->hnext = nb[b];
			nb[b] = e;
		}
	}
	free(c->buckets);
	c->buckets = nb;
	c->nbuckets = n;
}

/* Called with lock held. */
void cache_table_insert(struct cache *c, struct centry *e)
{
	size_t b;

	if (c->nentries + 1 > 2 * c->nbuckets)
		table_grow(c);
	b = bucket_of(c, e->ino, e->idx);
	e->hnext = c->buckets[b];
	c->buckets[b] = e;
	e->in_table = true;
	c->nentries++;
}

/* Called with lock held.  Takes e off its list and out of the table; the
 * caller frees it once unpinned (entry_release()). */
void cache_table_remove(struct cache *c, struct centry *e)
{
	struct centry **pp = &c->buckets[bucket_of(c, e->ino, e->idx)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	e->hnext = NULL;
	e->in_table = false;
	c->nentries--;
	if (e->state == CE_CLEAN)
		elist_del(&c->lru, e);
	else if (e->state == CE_DIRTY) {
		elist_del(&c->dirty, e);
		hurry_del(c, e);
		c->dirty_bytes -= c->cfg.block_size;
		c->dirty_data -= e->dirty_acct;
	}
	e->state = CE_LOADING; /* on no list from now on */
}

/* ---- an entry's life ---- */

void entry_path(const struct cache *c, const struct centry *e, char *path,
		size_t size)
{
	snprintf(path, size, "%s/%" PRIu64 ".%" PRIu64 ".%" PRIu64,
		 c->blocks_dir, e->ino, e->idx, e->gen);
}

/* Free a dropped entry: remove its file.  Called without lock. */
void entry_destroy(struct cache *c, struct centry *e)
{
	char path[PATH_MAX];

	if (e->has_file) {
		entry_path(c, e, path, sizeof(path));
		if (unlink(path) && errno != ENOENT)
			log_warn("cache: cannot remove %s: %s", path,
				 strerror(errno));
	}
	if (e->fd >= 0)
		close(e->fd);
	pthread_mutex_lock(&c->lock);
	if (e->fd >= 0)
		c->nfds--;
	c->cached_bytes -= c->cfg.block_size;
	pthread_cond_broadcast(&c->state_cond);
	pthread_mutex_unlock(&c->lock);
	free(e->dmap);
	free(e);
}

/* Called with lock held: true when e is out of the table and nobody uses
 * it any more, so the caller must entry_destroy() it after unlocking. */
bool entry_unpin_locked(struct cache *c, struct centry *e)
{
	e->refs--;
	return !e->in_table && e->refs == 0 && !e->uploading;
}

void entry_release(struct cache *c, struct centry *e)
{
	bool destroy;

	pthread_mutex_lock(&c->lock);
	destroy = entry_unpin_locked(c, e);
	pthread_mutex_unlock(&c->lock);
	if (destroy)
		entry_destroy(c, e);
}

#ifndef NDEBUG
#define assert_locked_check(c) assert(cache_check(c))
/* Invariants 1 and 2 of the design comment.  Called with lock held. */
static bool cache_check(struct cache *c)
{
	size_t i, n = 0, nd = 0, nc = 0;
	uint64_t data = 0;
	struct centry *e;

	for (i = 0; i < c->nbuckets; i++) {
		for (e = c->buckets[i]; e; e = e->hnext) {
			n++;
			if (e->state == CE_DIRTY) {
				nd++;
				data += e->dirty_acct;
			} else if (e->state == CE_CLEAN) {
				nc++;
			}
		}
	}
	return n == c->nentries && nd == c->dirty.n && nc == c->lru.n &&
	       c->dirty_bytes == nd * c->cfg.block_size &&
	       c->dirty_data == data;
}
#else
#define assert_locked_check(c) ((void)0)
#endif

/* ---- an entry's cache file and descriptor ---- */

/* Read up to len bytes at off; what the file lacks reads as zeros. */
int cache_pread_zero(int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

int cache_pwrite(int fd, const void *data, size_t len, off_t off)
{
	const uint8_t *p = data;
	int rc = 0;

	for (size_t done = 0; !rc && done < len; done += CACHE_PWRITE_MAX)
		rc = pwrite_all(fd, p + done,
				MF_MIN(len - done, CACHE_PWRITE_MAX),
				off + (off_t)done);
	return rc;
}

int entry_open(struct cache *c, struct centry *e, int flags)
{
	char path[PATH_MAX];
	int fd;

	entry_path(c, e, path, sizeof(path));
	fd = open(path, flags | O_CLOEXEC, 0600);
	if (fd < 0) {
		int err = errno;

		log_error("cache: cannot open %s: %s", path, strerror(err));
		return -err;
	}
	return fd;
}

/*
 * Keep fd (O_RDWR, of e's file) as e's descriptor when e has none and
 * fewer than maxfds are kept; else close it.  Opening a cache file for
 * every 4 KiB write or read cost more than the pwrite.
 */
void entry_keep_fd(struct cache *c, struct centry *e, int fd)
{
	bool kept = false;

	pthread_mutex_lock(&c->lock);
	if (e->fd < 0 && c->nfds < c->maxfds) {
		e->fd = fd;
		c->nfds++;
		kept = true;
	}
	pthread_mutex_unlock(&c->lock);
	if (!kept)
		close(fd);
}

/* A descriptor of e's file (pinned by the caller) for pread/pwrite and
 * the like, into *fd; the caller calls entry_put_fd() when done. */
int entry_get_fd(struct cache *c, struct centry *e, int *fd)
{
	int rc;

	pthread_mutex_lock(&c->lock);
	*fd = e->fd;
	pthread_mutex_unlock(&c->lock);
	if (*fd >= 0)
		return 0;
	rc = entry_open(c, e, O_RDWR);
	if (rc < 0)
		return rc;
	*fd = rc;
	return 0;
}

void entry_put_fd(struct cache *c, struct centry *e, int fd)
{
	bool own;

	pthread_mutex_lock(&c->lock);
	own = e->fd == fd;
	pthread_mutex_unlock(&c->lock);
	if (!own)
		entry_keep_fd(c, e, fd);
}

/* ---- eviction ---- */

/* Evict clean, unpinned entries in LRU order while over target bytes. */
void cache_evict_to(struct cache *c, uint64_t target)
{
	struct centry *victims = NULL, *e;
	uint64_t freeing = 0;

	pthread_mutex_lock(&c->lock);
	while (c->cached_bytes - freeing > target) {
		for (e = c->lru.head; e; e = e->next)
			if (e->refs == 0 && !e->uploading)
				break;
		if (!e)
			break;
		cache_table_remove(c, e);
		e->hnext = victims;
		victims = e;
		c->stats.evictions++;
		/* cached_bytes drops in entry_destroy() */
		freeing += c->cfg.block_size;
	}
	pthread_mutex_unlock(&c->lock);
	while (victims) {
		e = victims;
		victims = e->hnext;
		entry_destroy(c, e);
	}
}

void cache_evict_some(struct cache *c)
{
	cache_evict_to(c, c->cfg.cache_size);
}

/* ---- pinning an entry ---- */

/* Called with lock held: pin the entry of (ino, idx) once it is no longer
 * LOADING (waiting meanwhile), moved to the LRU's tail when CLEAN; NULL
 * when the table has none. */
static struct centry *entry_pin_locked(struct cache *c, uint64_t ino,
				       uint64_t idx)
{
	struct centry *e;

	for (;;) {
		e = cache_table_find(c, ino, idx);
		if (!e)
			return NULL;
		if (e->state != CE_LOADING)
			break;
		pthread_cond_wait(&c->state_cond, &c->lock);
	}
	e->refs++;
	if (e->state == CE_CLEAN) {
		elist_del(&c->lru, e);
		elist_add_tail(&c->lru, e);
	}
	return e;
}

/* Called with lock held: a new entry of (ino, idx), LOADING, pinned, in
 * the table and counted in cached_bytes; NULL: out of memory. */
static struct centry *entry_new_locked(struct cache *c, uint64_t ino,
				       uint64_t idx)
{
	struct centry *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->ino = ino;
	e->idx = idx;
	e->fd = -1;
	e->gen = c->next_gen++;
	e->state = CE_LOADING;
	e->refs = 1;
	cache_table_insert(c, e);
	c->cached_bytes += c->cfg.block_size;
	return e;
}

/* Fill the file of a new entry e (LOADING, pinned by the caller): from
 * the store when load (through obj, see cache_load_block()), else
 * empty.  Called without lock. */
static int entry_fill(struct cache *c, struct centry *e, bool load,
		      struct buf *obj)
{
	bool dirty = false;
	int rc;

	if (!load) {
		rc = entry_open(c, e, O_RDWR | O_CREAT | O_TRUNC);
		if (rc < 0)
			return rc;
		e->has_file = true;
		entry_keep_fd(c, e, rc);
		return 0;
	}
	rc = cache_load_block(c, e, obj, &dirty);
	pthread_mutex_lock(&c->lock);
	/* a dirty block is in the cache until its upload: only a drop (and
	 * a newer entry's write) may race with this load */
	if (rc == 0 && dirty && e->in_table)
		log_error("block %" PRIu64 " of inode %" PRIu64
			  ": the index says it was written, but the "
			  "cache does not hold it (a bug); it reads "
			  "as last uploaded", e->idx, e->ino);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* A new entry e is filled (rc 0: it turns CLEAN, unless dropped
 * meanwhile) or failed (rc < 0: it goes, unpinned).  Takes lock. */
static int entry_loaded(struct cache *c, struct centry *e, int rc)
{
	pthread_mutex_lock(&c->lock);
	if (rc) {
		if (e->in_table)
			cache_table_remove(c, e);
		pthread_cond_broadcast(&c->state_cond);
		pthread_mutex_unlock(&c->lock);
		entry_release(c, e);
		return rc;
	}
	if (!e->in_table) {
		/*
		 * Dropped while it loaded (a truncate, punch or delete of
		 * the block): what it loaded may be the content the drop
		 * removed, so it never joins the cache, where a read after
		 * the file grew again would have found it.  The caller, who
		 * raced with the drop, still gets it; it goes when unpinned.
		 */
		pthread_cond_broadcast(&c->state_cond);
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	e->state = CE_CLEAN;
	/* its file is the uploaded content, or will be written whole */
	e->dmap_ok = true;
	elist_add_tail(&c->lru, e);
	pthread_cond_broadcast(&c->state_cond);
	assert_locked_check(c);
	pthread_mutex_unlock(&c->lock);
	cache_evict_some(c);
	return 0;
}

/*
 * Pin the entry of (ino, idx), creating it when missing.  A new entry is
 * filled from the store when load, else starts empty (the caller is about
 * to overwrite the whole block), through obj when not NULL (see
 * cache_load_block()).  Threads that want an entry while it loads wait
 * for it.
 */
int entry_acquire_buf(struct cache *c, uint64_t ino, uint64_t idx,
		      bool load, struct buf *obj, struct centry **out)
{
	struct centry *e;
	int rc;

	pthread_mutex_lock(&c->lock);
	e = entry_pin_locked(c, ino, idx);
	if (e) {
		pthread_mutex_unlock(&c->lock);
		*out = e;
		return 0;
	}
	e = entry_new_locked(c, ino, idx);
	pthread_mutex_unlock(&c->lock);
	if (!e)
		return -ENOMEM;
	rc = entry_loaded(c, e, entry_fill(c, e, load, obj));
	if (rc == 0)
		*out = e;
	return rc;
}

int entry_acquire(struct cache *c, uint64_t ino, uint64_t idx, bool load,
		  struct centry **out)
{
	return entry_acquire_buf(c, ino, idx, load, NULL, out);
}

/* ---- claims ---- */

static ssize_t claim_find(struct cache *c, const char *hash)
{
	size_t i;

	for (i = 0; i < c->nclaims; i++)
		if (!strcmp(c->claims[i], hash))
			return (ssize_t)i;
	return -1;
}

void cache_claim(struct cache *c, const char *hash)
{
	pthread_mutex_lock(&c->lock);
	while (claim_find(c, hash) >= 0)
		pthread_cond_wait(&c->state_cond, &c->lock);
	while (c->nclaims == c->capclaims) {
		size_t ncap = c->capclaims ? c->capclaims * 2 : 16;
		void *p = realloc(c->claims, ncap * sizeof(*c->claims));

		if (p) {
			c->claims = p;
			c->capclaims = ncap;
		} else {
			/* wait for a claim to go rather than fail */
			pthread_cond_wait(&c->state_cond, &c->lock);
		}
	}
	memcpy(c->claims[c->nclaims++], hash, BLOB_NAME_LEN + 1);
	pthread_mutex_unlock(&c->lock);
}

void cache_unclaim(struct cache *c, const char *hash)
{
	ssize_t i;

	pthread_mutex_lock(&c->lock);
	i = claim_find(c, hash);
	if (i >= 0) {
		c->nclaims--;
		if ((size_t)i != c->nclaims)
			memcpy(c->claims[i], c->claims[c->nclaims],
			       BLOB_NAME_LEN + 1);
	}
	pthread_cond_broadcast(&c->state_cond);
	pthread_mutex_unlock(&c->lock);
}

void cache_get_stats(struct cache *c, struct cache_stats *out)
{
	const struct centry *e;
	uint64_t oldest = 0;

	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	out->cached_bytes = c->cached_bytes;
	out->dirty_bytes = c->dirty_bytes;
	out->entries = c->nentries;
	out->uploads_in_flight = c->uploading;
	for (e = c->dirty.head; e; e = e->next) {
		/* recovered blocks have no time: as old as this run */
		uint64_t t = MF_MAX(e->dirty_since_ns, c->opened_ns);

		if (!oldest || t < oldest)
			oldest = t;
	}
	out->oldest_dirty_ns = oldest;
	pthread_mutex_unlock(&c->lock);
	out->read_hits = atomic_load_explicit(&c->read_hits,
					      memory_order_relaxed);
	out->read_misses = atomic_load_explicit(&c->read_misses,
						memory_order_relaxed);
}

/* ---- open and close ---- */

/* Take cfg, within the bounds the cache works in, and the descriptors it
 * may keep. */
static void cache_set_config(struct cache *c, const struct cache_config *cfg)
{
	struct rlimit rl;

	c->cfg = *cfg;
	c->cfg.dir = NULL;
	if (c->cfg.inline_max > c->cfg.block_size)
		c->cfg.inline_max = c->cfg.block_size;
	if (c->cfg.cache_size < 4ULL * cfg->block_size)
		c->cfg.cache_size = 4ULL * cfg->block_size;
	if (c->cfg.max_dirty > c->cfg.cache_size)
		c->cfg.max_dirty = c->cfg.cache_size;
	/* a quarter of what the process may open, at most 1024 */
	c->maxfds = 256;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY)
		c->maxfds = (unsigned)MF_MIN(rl.rlim_cur / 4, 1024);
}

/* Start the upload workers and the fetchers; the caller closes the cache
 * when this fails (cache_close() joins those that started). */
static int cache_start_threads(struct cache *c)
{
	unsigned n = c->cfg.upload_threads, i;
	int rc = 0;

	c->workers = calloc(n, sizeof(*c->workers));
	if (!c->workers)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		rc = -pthread_create(&c->workers[i], NULL,
				     cache_upload_worker, c);
		if (rc)
			break;
		c->nworkers++;
	}
	/* as many parallel fetches as uploads: the same store */
	c->fetchers = calloc(n, sizeof(*c->fetchers));
	if (!c->fetchers && !rc)
		rc = -ENOMEM;
	for (i = 0; !rc && i < n; i++) {
		rc = -pthread_create(&c->fetchers[i], NULL, cache_fetcher, c);
		if (!rc)
			c->nfetchers++;
	}
	return rc;
}

int cache_open(const struct cache_config *cfg, struct store *store,
	       const struct blob_ctx *blob, const struct cache_index_ops *ops,
	       void *index_arg, struct cache **out)
{
	struct cache *c;
	struct buf path = BUF_INIT;
	int rc;

	if (cfg->block_size == 0 || cfg->upload_threads == 0)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	cache_set_config(c, cfg);
	c->store = store;
	c->blob = blob;
	c->ops = ops;
	c->index_arg = index_arg;
	c->next_gen = 1;
	c->opened_ns = now_mono_ns();
	mutex_init(&c->commit_lock);
	mutex_init(&c->lock);
	pthread_cond_init(&c->state_cond, NULL);
	cond_init_mono(&c->work_cond);
	c->wake_at_ns = UINT64_MAX;
	pthread_cond_init(&c->ahead_cond, NULL);
	c->nbuckets = 1024;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	rc = buf_appendf(&path, "%s/blocks", cfg->dir);
	if (!c->buckets || rc) {
		rc = -ENOMEM;
		goto out_free;
	}
	c->blocks_dir = (char *)buf_detach(&path, NULL);
	rc = mkdir_p(c->blocks_dir, 0700);
	if (rc) {
		log_error("cache: cannot create %s: %s", c->blocks_dir,
			  strerror(-rc));
		goto out_free;
	}
	rc = cache_recover(c);
	if (!rc)
		rc = cache_start_threads(c);
	if (rc)
		goto out_free;
	*out = c;
	return 0;
out_free:
	cache_close(c, 1);
	return rc;
}

int cache_close(struct cache *c, int abandon)
{
	unsigned i;
	size_t b;
	int rc = 0;

	if (!c)
		return 0;
	if (!abandon && c->nworkers)
		rc = cache_flush_all(c, NULL, NULL);
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->work_cond);
	pthread_cond_broadcast(&c->ahead_cond);
	pthread_mutex_unlock(&c->lock);
	for (i = 0; i < c->nworkers; i++)
		pthread_join(c->workers[i], NULL);
	free(c->workers);
	for (i = 0; i < c->nfetchers; i++)
		pthread_join(c->fetchers[i], NULL);
	free(c->fetchers);
	if (!abandon && rc == 0 && c->nworkers && c->dirty.n == 0)
		cache_keep_clean(c);
	for (b = 0; c->buckets && b < c->nbuckets; b++) {
		struct centry *e, *next;

		for (e = c->buckets[b]; e; e = next) {
			next = e->hnext;
			if (e->fd >= 0)
				close(e->fd);
			free(e->dmap);
			free(e);
		}
	}
	free(c->buckets);
	free(c->claims);
	free(c->blocks_dir);
	pthread_cond_destroy(&c->state_cond);
	pthread_cond_destroy(&c->work_cond);
	pthread_cond_destroy(&c->ahead_cond);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->commit_lock);
	free(c);
	return rc;
}
