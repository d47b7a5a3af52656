/*
 * cache.c - the local write-back block cache (contract in cache.h).
 *
 * Data model
 *   One struct centry per cached block (ino, idx), in a hash table, backed
 *   by one cache file dir/blocks/<ino>.<idx>.<gen> holding the block's
 *   bytes (shorter than a block: the rest is zeros).  gen is unique per
 *   entry, so an entry dropped while its file is still in use never
 *   shares a file with its successor; gens only grow within a run and
 *   start above every file recover() keeps, so after a crash the newest
 *   file of a block is its successor's.  Every entry is accounted as one
 *   whole block of disk.
 *
 * States of an entry (the state field, plus flags):
 *
 *            entry_acquire()                 cache_write()
 *   (none) ---------------> LOADING ------> CLEAN ---------> DIRTY
 *                  load_block() ok |          ^                 |
 *                                  |          |  upload_one()   | worker picks
 *                 load fails: freed|          +-- committed ----+ (uploading)
 *                                             |   unchanged     |
 *                      evict_some() <---------+                 |
 *                      (LRU, refs == 0)          upload fails: stays DIRTY,
 *                                                retried after backoff
 *   Any state -> dropped (removed from the table) by cache_truncate(),
 *   cache_punch(), cache_forget_inode(); the memory and file go when the
 *   last pin is released and no upload is running.
 *
 * Invariants (checked by cache_check() in debug builds)
 *   1. CLEAN entries are on the lru list, DIRTY ones on the dirty list,
 *      LOADING and dropped ones on neither.
 *   2. dirty_bytes = block_size * number of DIRTY entries in the table;
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
 * Locks, in this order: commit_lock, then lock.  commit_lock is held
 * across the index transaction that records a write or an upload, and
 * while an upload takes the version it uploads, so "this block is dirty"
 * in memory and in the index change together, a write that races with an
 * upload is never marked clean, and the file size an upload reads covers
 * every write its version counts.  lock protects
 * every field below marked so and is never held across I/O or an index
 * call.
 */
#include "util/compat.h"

#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "util/log.h"
#include "util/util.h"

enum ce_state { CE_LOADING, CE_CLEAN, CE_DIRTY };

/* Read-ahead: queued fetches at most, and how far ahead (bytes) a
 * sequential reader is served. */
#define PREFETCH_QUEUE 64
#define PREFETCH_BYTES (8U << 20)
/* the largest pwrite that fills a cache file from a fetched object */
#define FILL_CHUNK ((size_t)1 << 20)
/*
 * Patches: the unit in which written bytes are tracked (a page), and when
 * a dirty block goes up as a patch instead of whole: while its chain has
 * fewer than PATCH_MAX patches and all of them, this one included, hold
 * at most a quarter of a block (so a cold read of a block fetches at
 * most 1.25 block's worth of objects).
 */
#define DMAP_PAGE 4096U
#define PATCH_MAX 8
#define PATCH_SHARE 4

struct centry {
	uint64_t ino, idx, gen;
	struct centry *hnext;      /* hash chain; protected by lock */
	struct centry *prev, *next; /* lru or dirty list; protected by lock */
	enum ce_state state;       /* protected by lock */
	bool in_table, uploading, urgent, has_file;
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
	 * lives (entry_fd()), or -1; set under lock, closed by
	 * entry_destroy() */
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
	pthread_cond_t work_cond;  /* something for the workers */

	struct centry **buckets;   /* protected by lock */
	size_t nbuckets, nentries; /* protected by lock */
	struct elist lru, dirty;   /* protected by lock */
	uint64_t next_gen;         /* protected by lock */
	uint64_t cached_bytes, dirty_bytes; /* protected by lock */
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

	pthread_t *workers;
	unsigned nworkers;

	/* read-ahead: blocks to fetch before they are read (ring) */
	struct { uint64_t ino, idx; } ahead[PREFETCH_QUEUE]; /* by lock */
	unsigned ahead_head, ahead_n;  /* protected by lock */
	pthread_cond_t ahead_cond;     /* the ring is not empty */
	pthread_t *fetchers;
	unsigned nfetchers;
};

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

static void elist_add_tail(struct elist *l, struct centry *e)
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

static void elist_del(struct elist *l, struct centry *e)
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

static size_t bucket_of(const struct cache *c, uint64_t ino, uint64_t idx)
{
	uint64_t h = ino * 0x9E3779B97F4A7C15ULL ^ (idx + 0x632BE59BD9B4E019ULL);

	h ^= h >> 29;
	h *= 0xBF58476D1CE4E5B9ULL;
	h ^= h >> 32;
	return (size_t)(h & (c->nbuckets - 1));
}

/* Called with lock held. */
static struct centry *table_find(struct cache *c, uint64_t ino, uint64_t idx)
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
static void table_insert(struct cache *c, struct centry *e)
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
 * caller frees it once unpinned (entry_release). */
static void table_remove(struct cache *c, struct centry *e)
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
		c->dirty_bytes -= c->cfg.block_size;
	}
	e->state = CE_LOADING; /* on no list from now on */
}

static void entry_path(const struct cache *c, const struct centry *e,
		       char *path, size_t size)
{
	snprintf(path, size, "%s/%" PRIu64 ".%" PRIu64 ".%" PRIu64,
		 c->blocks_dir, e->ino, e->idx, e->gen);
}

/* Free a dropped entry: remove its file.  Called without lock. */
static void entry_destroy(struct cache *c, struct centry *e)
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
static bool entry_unpin_locked(struct cache *c, struct centry *e)
{
	e->refs--;
	return !e->in_table && e->refs == 0 && !e->uploading;
}

static void entry_release(struct cache *c, struct centry *e)
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
/* Invariants 1 and 2 of the header comment.  Called with lock held. */
static bool cache_check(struct cache *c)
{
	size_t i, n = 0, nd = 0, nc = 0;
	struct centry *e;

	for (i = 0; i < c->nbuckets; i++) {
		for (e = c->buckets[i]; e; e = e->hnext) {
			n++;
			if (e->state == CE_DIRTY)
				nd++;
			else if (e->state == CE_CLEAN)
				nc++;
		}
	}
	return n == c->nentries && nd == c->dirty.n && nc == c->lru.n &&
	       c->dirty_bytes == nd * c->cfg.block_size;
}
#else
#define assert_locked_check(c) ((void)0)
#endif

/* ---- I/O on cache files ---- */

/* Read up to len bytes at off; what the file lacks reads as zeros. */
static int pread_zero(int fd, void *buf, size_t len, off_t off)
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

static int entry_open(struct cache *c, struct centry *e, int flags)
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
static void entry_keep_fd(struct cache *c, struct centry *e, int fd)
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
static int entry_get_fd(struct cache *c, struct centry *e, int *fd)
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

static void entry_put_fd(struct cache *c, struct centry *e, int fd)
{
	bool own;

	pthread_mutex_lock(&c->lock);
	own = e->fd == fd;
	pthread_mutex_unlock(&c->lock);
	if (!own)
		entry_keep_fd(c, e, fd);
}

/*
 * An aligned buffer with room for any object of a block and the
 * alignment's slack (a local store reads into it with O_DIRECT).
 */
static int obj_buf_init(const struct cache *c, struct buf *b)
{
	return buf_init_aligned(b, STORE_DIRECT_ALIGN,
				blob_encoded_max(c->blob, c->cfg.block_size) +
					STORE_DIRECT_ALIGN);
}

/* The block's chain from the index (only its base when the index does
 * not keep patches). */
static int chain_get(struct cache *c, uint64_t ino, uint64_t idx,
		     struct patch_chain *ch)
{
	ch->dirty = 0;
	ch->n = 0;
	ch->patch_bytes = 0;
	if (c->ops->block_chain)
		return c->ops->block_chain(c->index_arg, ino, idx, ch);
	return c->ops->block_get(c->index_arg, ino, idx, ch->base);
}

/* The name of a block's uploaded content: its last patch, or its base
 * ("" when never uploaded).  A patch names the object below it, so this
 * names the whole chain. */
static int content_name(struct cache *c, uint64_t ino, uint64_t idx,
			char *name)
{
	struct patch_chain ch;
	int rc = chain_get(c, ino, idx, &ch);

	if (rc == 0)
		memcpy(name, ch.n ? ch.patch[ch.n - 1] : ch.base,
		       BLOB_NAME_LEN + 1);
	return rc;
}

/* Get object name (of block idx of ino, for messages) into obj and
 * decode it: *p, *plen the checked plaintext (in obj or plain). */
static int fetch_object(struct cache *c, const struct centry *e,
			const char *name, struct buf *obj, struct buf *plain,
			const uint8_t **p, size_t *plen)
{
	char key[BLOB_DATA_KEY_LEN + 1];
	int rc;

	blob_data_key(name, key);
	buf_reset(obj);
	buf_reset(plain);
	rc = store_get(c->store, key, 0, 0, obj);
	if (rc) {
		log_error("block %" PRIu64 " of inode %" PRIu64
			  ": cannot get object %s: %s",
			  e->idx, e->ino, key, strerror(-rc));
		return rc == -ENOENT ? -EIO : rc;
	}
	/* a raw object's plaintext is written from obj itself */
	rc = blob_decode_named_view(c->blob, name, obj->data, obj->len, plain,
				    p, plen);
	if (rc) {
		log_error("block %" PRIu64 " of inode %" PRIu64
			  ": object %s is damaged (checksum mismatch)",
			  e->idx, e->ino, key);
		return -EIO;
	}
	if (*plen > c->cfg.block_size) {
		log_error("object %s is larger than a block", key);
		return -EIO;
	}
	pthread_mutex_lock(&c->lock);
	c->stats.fetches++;
	c->stats.fetch_bytes += obj->len;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* Apply patch i of chain ch, plaintext p of plen bytes, to the file fd
 * holding *len bytes of the block. */
static int apply_patch(struct cache *c, const struct centry *e, int fd,
		       const struct patch_chain *ch, unsigned i,
		       const uint8_t *p, size_t plen, size_t *len)
{
	const char *below = i ? ch->patch[i - 1] : ch->base;
	struct patch_iter it = { 0, 0 };
	struct patch_view v;
	struct patch_ext x;
	const uint8_t *d;
	int rc;

	if (patch_parse(p, plen, below, c->cfg.block_size, &v)) {
		log_error("block %" PRIu64 " of inode %" PRIu64 ": object %s "
			  "is not a patch on %s", e->idx, e->ino,
			  ch->patch[i], below);
		return -EIO;
	}
	if (v.new_len != *len && ftruncate(fd, (off_t)v.new_len))
		return -errno;
	*len = v.new_len;
	while (patch_next(&v, &it, &x, &d)) {
		rc = pwrite_all(fd, d, x.len, (off_t)x.off);
		if (rc)
			return rc;
	}
	return 0;
}

/* One patch of a chain, fetched by a thread of its own. */
struct chain_get {
	struct cache *c;
	const struct centry *e;
	const char *name;
	struct buf obj, plain;
	const uint8_t *p;
	size_t plen;
	int rc;
	pthread_t thread;
	bool threaded;
};

static void *chain_get_run(void *arg)
{
	struct chain_get *g = arg;

	g->rc = fetch_object(g->c, g->e, g->name, &g->obj, &g->plain, &g->p,
			     &g->plen);
	return NULL;
}

/* Start fetching the patches of ch, each in a thread (on a real service
 * a chain fetched one object after the other costs a round trip per
 * patch); together they hold at most a quarter of a block.  NULL: out of
 * memory. */
static struct chain_get *chain_get_start(struct cache *c,
					 const struct centry *e,
					 const struct patch_chain *ch)
{
	struct chain_get *g = calloc(ch->n, sizeof(*g));

	for (unsigned i = 0; g && i < ch->n; i++) {
		g[i].c = c;
		g[i].e = e;
		g[i].name = ch->patch[i];
		g[i].obj = (struct buf)BUF_INIT;
		g[i].plain = (struct buf)BUF_INIT;
		g[i].threaded = pthread_create(&g[i].thread, NULL,
					       chain_get_run, &g[i]) == 0;
	}
	return g;
}

/* Wait for patch i (fetching it here when its thread did not start). */
static int chain_get_wait(struct chain_get *g)
{
	if (g->threaded) {
		pthread_join(g->thread, NULL);
		g->threaded = false;
	} else {
		chain_get_run(g);
	}
	return g->rc;
}

/* Wait for all, free all. */
static void chain_get_free(struct chain_get *g, unsigned n)
{
	for (unsigned i = 0; g && i < n; i++) {
		if (g[i].threaded)
			pthread_join(g[i].thread, NULL);
		buf_free(&g[i].obj);
		buf_free(&g[i].plain);
	}
	free(g);
}

/*
 * Fill a new entry's file with the block's content from the store (or
 * nothing: a hole): its base object, then its patches in order, fetched
 * while the base is.  reuse,
 * when not NULL, is the caller's buffer from obj_buf_init() (a fetcher
 * keeps one for its life: block-sized buffers allocated per load by
 * several threads leave the heap fragmented, 28 MiB per thread with
 * 4 MiB blocks); else one is made for this load.  *dirty: whether the
 * index says the block was written since that content went up.
 */
static int load_block(struct cache *c, struct centry *e, struct buf *reuse,
		      bool *dirty)
{
	struct buf own = BUF_INIT, plain = BUF_INIT, *obj = reuse ? reuse : &own;
	struct patch_chain *ch = malloc(sizeof(*ch));
	struct chain_get *patches = NULL;
	const uint8_t *p = NULL;
	size_t plen = 0, len;
	int rc, fd;

	if (!ch)
		return -ENOMEM;
	rc = chain_get(c, e->ino, e->idx, ch);
	if (rc == -ENOENT) {
		ch->base[0] = 0;
		ch->n = 0;
		rc = 0;
	}
	if (rc)
		goto out_chain;
	*dirty = ch->dirty != 0;
	fd = entry_open(c, e, O_RDWR | O_CREAT | O_TRUNC);
	if (fd < 0) {
		rc = fd;
		goto out_chain;
	}
	e->has_file = true;
	if (!ch->base[0])
		goto out_close;
	if (!reuse && obj_buf_init(c, &own)) {
		rc = -ENOMEM;
		goto out_close;
	}
	if (ch->n && !(patches = chain_get_start(c, e, ch))) {
		rc = -ENOMEM;
		goto out_free;
	}
	rc = fetch_object(c, e, ch->base, obj, &plain, &p, &plen);
	/* in pieces of at most FILL_CHUNK: one 4 MiB pwrite into a new file
	 * made the kernel's copy into the page cache (large folios) 47% of
	 * the daemon's CPU in a cold read, against 2% in 1 MiB pieces */
	for (size_t done = 0; !rc && done < plen; done += FILL_CHUNK)
		rc = pwrite_all(fd, p + done, MF_MIN(plen - done, FILL_CHUNK),
				(off_t)done);
	len = plen;
	for (unsigned i = 0; !rc && i < ch->n; i++) {
		rc = chain_get_wait(&patches[i]);
		if (!rc)
			rc = apply_patch(c, e, fd, ch, i, patches[i].p,
					 patches[i].plen, &len);
	}
	chain_get_free(patches, ch->n);
out_free:
	buf_free(&plain);
	buf_free(&own);
out_close:
	if (rc)
		close(fd);
	else
		entry_keep_fd(c, e, fd);
out_chain:
	free(ch);
	return rc;
}

/* Evict clean, unpinned entries in LRU order while over target bytes. */
static void evict_to(struct cache *c, uint64_t target)
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
		table_remove(c, e);
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

static void evict_some(struct cache *c)
{
	evict_to(c, c->cfg.cache_size);
}

/*
 * Pin the entry of (ino, idx), creating it when missing.  A new entry is
 * filled from the store when load, else starts empty (the caller is about
 * to overwrite the whole block), through obj when not NULL (see
 * load_block()).
 */
static int entry_acquire_buf(struct cache *c, uint64_t ino, uint64_t idx,
			     bool load, struct buf *obj, struct centry **out)
{
	struct centry *e;
	int rc;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		e = table_find(c, ino, idx);
		if (!e)
			break;
		if (e->state != CE_LOADING) {
			e->refs++;
			if (e->state == CE_CLEAN) {
				elist_del(&c->lru, e);
				elist_add_tail(&c->lru, e);
			}
			pthread_mutex_unlock(&c->lock);
			*out = e;
			return 0;
		}
		pthread_cond_wait(&c->state_cond, &c->lock);
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		pthread_mutex_unlock(&c->lock);
		return -ENOMEM;
	}
	e->ino = ino;
	e->idx = idx;
	e->fd = -1;
	e->gen = c->next_gen++;
	e->state = CE_LOADING;
	e->refs = 1;
	table_insert(c, e);
	c->cached_bytes += c->cfg.block_size;
	pthread_mutex_unlock(&c->lock);

	if (load) {
		bool dirty = false;

		rc = load_block(c, e, obj, &dirty);
		pthread_mutex_lock(&c->lock);
		/* a dirty block is in the cache until its upload: only a
		 * drop (and a newer entry's write) may race with this load */
		if (rc == 0 && dirty && e->in_table)
			log_error("block %" PRIu64 " of inode %" PRIu64
				  ": the index says it was written, but the "
				  "cache does not hold it (a bug); it reads "
				  "as last uploaded", idx, ino);
		pthread_mutex_unlock(&c->lock);
	} else {
		rc = entry_open(c, e, O_RDWR | O_CREAT | O_TRUNC);
		if (rc >= 0) {
			e->has_file = true;
			entry_keep_fd(c, e, rc);
			rc = 0;
		}
	}

	pthread_mutex_lock(&c->lock);
	if (rc) {
		if (e->in_table)
			table_remove(c, e);
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
		*out = e;
		return 0;
	}
	e->state = CE_CLEAN;
	/* its file is the uploaded content, or will be written whole */
	e->dmap_ok = true;
	elist_add_tail(&c->lru, e);
	pthread_cond_broadcast(&c->state_cond);
	assert_locked_check(c);
	pthread_mutex_unlock(&c->lock);
	evict_some(c);
	*out = e;
	return 0;
}

static int entry_acquire(struct cache *c, uint64_t ino, uint64_t idx,
			 bool load, struct centry **out)
{
	return entry_acquire_buf(c, ino, idx, load, NULL, out);
}

/* ---- reads and writes ---- */

static bool inline_on(const struct cache *c)
{
	return c->cfg.inline_max && c->ops->inline_write;
}

/*
 * A reader of block idx whose previous block is cached is probably
 * reading sequentially: queue the fetch of the blocks after idx (up to
 * PREFETCH_BYTES or two per fetcher, whichever is more, within the file)
 * that are not cached yet, for the fetcher threads, so that the store's
 * latency and the decoding of several blocks overlap with the reader.
 */
static void read_ahead(struct cache *c, uint64_t ino, uint64_t idx,
		       uint64_t file_size)
{
	uint64_t bs = c->cfg.block_size, last, i;
	/* enough blocks to keep every fetcher busy twice over, whatever
	 * the block size */
	unsigned want = MF_MAX(2U * c->nfetchers,
			       PREFETCH_BYTES / c->cfg.block_size), q;
	bool queued = false;

	/* never more than a quarter of the cache: what is fetched ahead
	 * must still be there when the reader comes */
	want = (unsigned)MF_MIN((uint64_t)want, c->cfg.cache_size / bs / 4);
	if (idx == 0 || !c->nfetchers || file_size == 0 || want == 0)
		return;
	last = (file_size - 1) / bs;
	pthread_mutex_lock(&c->lock);
	if (!table_find(c, ino, idx - 1))
		goto out;
	for (i = idx + 1; i <= last && i <= idx + want; i++) {
		if (table_find(c, ino, i))
			continue;
		for (q = 0; q < c->ahead_n; q++) {
			unsigned k = (c->ahead_head + q) % PREFETCH_QUEUE;

			if (c->ahead[k].ino == ino && c->ahead[k].idx == i)
				break;
		}
		if (q < c->ahead_n)
			continue;
		if (c->ahead_n == PREFETCH_QUEUE)
			break;
		q = (c->ahead_head + c->ahead_n++) % PREFETCH_QUEUE;
		c->ahead[q].ino = ino;
		c->ahead[q].idx = i;
		queued = true;
	}
	if (queued)
		pthread_cond_broadcast(&c->ahead_cond);
out:
	pthread_mutex_unlock(&c->lock);
}

static void *fetcher(void *arg)
{
	struct cache *c = arg;
	struct buf obj = BUF_INIT, *reuse = &obj;

	/* without its own buffer a fetcher still works, a buffer per load */
	if (obj_buf_init(c, &obj))
		reuse = NULL;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		char hash[BLOB_NAME_LEN + 1];
		uint64_t ino, idx;
		struct centry *e;
		int rc;

		while (!c->stopping && c->ahead_n == 0)
			pthread_cond_wait(&c->ahead_cond, &c->lock);
		if (c->stopping)
			break;
		ino = c->ahead[c->ahead_head].ino;
		idx = c->ahead[c->ahead_head].idx;
		c->ahead_head = (c->ahead_head + 1) % PREFETCH_QUEUE;
		c->ahead_n--;
		if (table_find(c, ino, idx))
			continue;
		pthread_mutex_unlock(&c->lock);
		/* a hole or a block never uploaded: nothing to fetch */
		rc = c->ops->block_get(c->index_arg, ino, idx, hash);
		if (rc == 0 && hash[0] &&
		    entry_acquire_buf(c, ino, idx, true, reuse, &e) == 0)
			entry_release(c, e);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	buf_free(&obj);
	return NULL;
}

ssize_t cache_read(struct cache *c, uint64_t ino, uint64_t off, size_t len,
		   uint64_t file_size, void *out)
{
	uint64_t bs = c->cfg.block_size, pos, end;
	struct buf inl = BUF_INIT;
	uint8_t *dst = out;
	int rc = 0;

	if (off >= file_size)
		return 0;
	if (len > file_size - off)
		len = (size_t)(file_size - off);
	end = off + len;
	for (pos = off; pos < end;) {
		uint64_t idx = pos / bs, boff = pos % bs;
		size_t blen = (size_t)MF_MIN(bs - boff, end - pos);
		char hash[BLOB_NAME_LEN + 1];
		struct centry *e;
		bool cached;
		int fd;

		pthread_mutex_lock(&c->lock);
		cached = table_find(c, ino, idx) != NULL;
		pthread_mutex_unlock(&c->lock);
		if (!cached && idx == 0 && inline_on(c)) {
			rc = c->ops->inline_read(c->index_arg, ino, &inl);
			if (rc == 0) {
				size_t have = boff < inl.len ? (size_t)MF_MIN(
					inl.len - boff, blen) : 0;

				memcpy(dst, inl.data + boff, have);
				memset(dst + have, 0, blen - have);
				goto next;
			}
			if (rc != -ENOENT)
				break;
			rc = 0;
		}
		if (!cached) {
			/* holes are read without creating an entry */
			rc = c->ops->block_get(c->index_arg, ino, idx, hash);
			if (rc == 0 && !hash[0] && inline_on(c)) {
				/* dirty, so cached (a block 0 that was
				 * inline a moment ago included) */
				pthread_mutex_lock(&c->lock);
				cached = table_find(c, ino, idx) != NULL;
				pthread_mutex_unlock(&c->lock);
			}
			if (!cached &&
			    (rc == -ENOENT || (rc == 0 && !hash[0]))) {
				memset(dst, 0, blen);
				goto next;
			}
			if (rc)
				break;
		}
		rc = entry_acquire(c, ino, idx, true, &e);
		if (rc)
			break;
		if (pos == off)
			read_ahead(c, ino, idx, file_size);
		rc = entry_get_fd(c, e, &fd);
		if (rc == 0) {
			rc = pread_zero(fd, dst, blen, (off_t)boff);
			entry_put_fd(c, e, fd);
		}
		entry_release(c, e);
		if (rc)
			break;
next:
		dst += blen;
		pos += blen;
	}
	buf_free(&inl);
	if (rc && pos == off)
		return rc;
	return (ssize_t)(pos - off);
}

/* Free bytes on the cache's disk (UINT64_MAX when unknown). */
static uint64_t disk_free(struct cache *c)
{
	struct statvfs sv;

	if (statvfs(c->blocks_dir, &sv))
		return UINT64_MAX;
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

/*
 * disk_free() for a write of need bytes, without a statvfs per write:
 * within 50 ms of the last one, and while what it saw minus a whole
 * block for every write since stays well above what the caller checks,
 * the space cannot have dropped below it.  Near the reserve every call
 * asks the disk, as before.
 */
static uint64_t disk_free_guess(struct cache *c, uint64_t need,
				uint64_t reserve)
{
	uint64_t now = now_mono_ns(), f;

	pthread_mutex_lock(&c->lock);
	if (c->free_seen_ns && now - c->free_seen_ns < 50000000ULL &&
	    c->free_seen > c->free_taken + need + 2 * reserve) {
		c->free_taken += need;
		f = c->free_seen - c->free_taken;
		pthread_mutex_unlock(&c->lock);
		return f;
	}
	pthread_mutex_unlock(&c->lock);
	f = disk_free(c);
	pthread_mutex_lock(&c->lock);
	c->free_seen = f;
	c->free_seen_ns = f == UINT64_MAX ? 0 : now;
	c->free_taken = 0;
	pthread_mutex_unlock(&c->lock);
	return f;
}

/*
 * Wait until n more dirty blocks fit in the cache.  -ENOSPC after a long
 * wait (the store is not taking uploads), or at once when the cache's disk
 * is so full that the metadata database and the checkpoints (which live
 * on the same disk) could no longer be written: a reserve is kept for them
 * so that uploads can still be recorded and the volume unmounted.
 */
static int wait_for_room(struct cache *c, uint64_t n)
{
	uint64_t need = n * c->cfg.block_size;
	uint64_t deadline = now_mono_ns() + 120ULL * 1000000000ULL;
	uint64_t reserve = MF_MAX(4ULL * c->cfg.block_size, 8ULL << 20);
	int rc = 0;

	if (disk_free_guess(c, need, reserve) < need + reserve) {
		evict_to(c, 0);
		if (disk_free(c) < need + reserve) {
			log_error("cache disk of %s is full: write refused",
				  c->blocks_dir);
			return -ENOSPC;
		}
	}
	evict_some(c);
	pthread_mutex_lock(&c->lock);
	while (c->dirty_bytes + need > c->cfg.cache_size && c->dirty.n) {
		struct timespec ts;

		if (now_mono_ns() > deadline) {
			log_error("cache full of data not yet uploaded "
				  "(%" PRIu64 " bytes dirty): write refused",
				  c->dirty_bytes);
			rc = -ENOSPC;
			break;
		}
		pthread_cond_broadcast(&c->work_cond);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&c->state_cond, &c->lock, &ts);
	}
	pthread_mutex_unlock(&c->lock);
	evict_some(c);
	return rc;
}

static int write_entry(struct cache *c, struct centry *e, const void *data,
		       size_t len, uint64_t boff)
{
	int fd, rc = entry_get_fd(c, e, &fd);

	if (rc)
		return rc;
	rc = pwrite_all(fd, data, len, (off_t)boff);
	entry_put_fd(c, e, fd);
	return rc;
}

/*
 * Record that [lo, hi) of e's block was written (fresh: e was clean, the
 * range starts anew).  True when the block thereby became written whole.
 */
static size_t dmap_words(const struct cache *c)
{
	return (c->cfg.block_size / DMAP_PAGE + 63) / 64;
}

/* Record that [lo, hi) of e's block was written (fresh: e was clean, its
 * file the uploaded content).  Called with lock held. */
static void dmap_mark(struct cache *c, struct centry *e, bool fresh,
		      uint32_t lo, uint32_t hi)
{
	uint32_t pg;

	if (fresh) {
		e->dmap_ok = true;
		if (e->dmap)
			memset(e->dmap, 0, dmap_words(c) * sizeof(*e->dmap));
	}
	if (!e->dmap_ok || hi <= lo)
		return;
	if (!e->dmap) {
		e->dmap = calloc(dmap_words(c), sizeof(*e->dmap));
		if (!e->dmap) {
			e->dmap_ok = false; /* uploaded whole */
			return;
		}
	}
	for (pg = lo / DMAP_PAGE; pg <= (hi - 1) / DMAP_PAGE; pg++)
		e->dmap[pg / 64] |= (uint64_t)1 << (pg % 64);
}

static bool cover(struct centry *e, bool fresh, uint32_t lo, uint32_t hi,
		  uint64_t bs)
{
	bool was_whole = !fresh && e->cov_lo == 0 && e->cov_hi == bs;

	if (fresh) {
		e->cov_lo = lo;
		e->cov_hi = hi;
	} else if (lo <= e->cov_hi && hi >= e->cov_lo) {
		e->cov_lo = MF_MIN(e->cov_lo, lo);
		e->cov_hi = MF_MAX(e->cov_hi, hi);
	}
	return !was_whole && e->cov_lo == 0 && e->cov_hi == bs;
}

/* Whether a truncate, punch or delete took one of ents out of the table
 * (it may have done so while the entry loaded).  Called with lock held. */
static bool any_dropped(struct centry *const *ents, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!ents[i]->in_table)
			return true;
	return false;
}

/* Write [off, off+len) into blocks; from_inline: the data of an inline
 * file moving to block 0 (the index drops it and marks block 0 dirty in
 * one transaction). */
static ssize_t write_blocks(struct cache *c, uint64_t ino, uint64_t off,
			    const void *data, size_t len, bool from_inline)
{
	uint64_t bs = c->cfg.block_size, first, last, i, n;
	struct centry *stack_e[8], **ents = stack_e;
	uint64_t stack_idx[8], *marked = stack_idx;
	bool stack_was[8], *was_clean = stack_was;
	const uint8_t *src = data;
	size_t nmarked = 0, got = 0;
	bool became_whole = false;
	int rc = 0;

	if (len == 0)
		return 0;
	first = off / bs;
	last = (off + len - 1) / bs;
	n = last - first + 1;
	if (n > ARRAY_SIZE(stack_e)) {
		ents = calloc(n, sizeof(*ents));
		marked = calloc(n, sizeof(*marked));
		was_clean = calloc(n, sizeof(*was_clean));
		if (!ents || !marked || !was_clean) {
			rc = -ENOMEM;
			goto out_free;
		}
	}
	rc = wait_for_room(c, n);
	if (rc)
		goto out_free;

again:
	for (i = 0; i < n; i++) {
		uint64_t pos = i == 0 ? off : (first + i) * bs;
		uint64_t boff = pos % bs;
		size_t blen = (size_t)MF_MIN(bs - boff, off + len - pos);
		bool whole = boff == 0 && blen == bs;
		int tries;

		for (tries = 0; tries < 2; tries++) {
			if (got == i) {
				rc = entry_acquire(c, ino, first + i, !whole,
						   &ents[i]);
				if (rc == 0)
					got++;
			}
			if (rc == 0)
				rc = write_entry(c, ents[i], src + (pos - off),
						 blen, boff);
			if (rc != -ENOSPC || tries)
				break;
			/* the cache disk is full: clean blocks can go */
			evict_to(c, 0);
		}
		if (rc)
			break;
	}

	pthread_mutex_lock(&c->commit_lock);
	pthread_mutex_lock(&c->lock);
	if (rc == 0 && any_dropped(ents, got)) {
		/*
		 * A truncate or punch dropped one of the blocks after this
		 * write pinned it: its bytes went into a file nobody keeps.
		 * The drop came first, so write again into what the file
		 * holds now (every drop holds commit_lock: once it is held,
		 * the entries stay).
		 */
		pthread_mutex_unlock(&c->lock);
		pthread_mutex_unlock(&c->commit_lock);
		for (i = 0; i < got; i++)
			entry_release(c, ents[i]);
		got = 0;
		goto again;
	}
	for (i = 0; i < got; i++) {
		uint64_t pos = i == 0 ? off : (first + i) * bs;
		uint64_t boff = pos % bs, bend = MF_MIN(bs, boff + off + len - pos);

		ents[i]->version++;
		was_clean[i] = ents[i]->state != CE_DIRTY;
		if (was_clean[i])
			marked[nmarked++] = ents[i]->idx;
		if (cover(ents[i], was_clean[i], (uint32_t)boff,
			  (uint32_t)bend, bs))
			became_whole = true;
		dmap_mark(c, ents[i], was_clean[i], (uint32_t)boff,
			  (uint32_t)bend);
	}
	pthread_mutex_unlock(&c->lock);
	if (rc == 0 && from_inline)
		rc = c->ops->inline_to_block(c->index_arg, ino);
	else if (rc == 0)
		rc = c->ops->write_done(c->index_arg, ino, off + len, marked,
					nmarked);
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < got; i++) {
		struct centry *e = ents[i];

		if (!was_clean[i] || !e->in_table)
			continue;
		if (rc) {
			/* the file no longer matches the store: forget it */
			table_remove(c, e);
			continue;
		}
		elist_del(&c->lru, e);
		e->state = CE_DIRTY;
		e->dirty_since_ns = now_mono_ns();
		elist_add_tail(&c->dirty, e);
		c->dirty_bytes += bs;
	}
	/* workers sleeping with nothing to do learn when the new dirty
	 * blocks fall due */
	if (nmarked || became_whole || c->dirty_bytes > c->cfg.max_dirty)
		pthread_cond_broadcast(&c->work_cond);
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->commit_lock);
	for (i = 0; i < got; i++)
		entry_release(c, ents[i]);
out_free:
	if (ents != stack_e) {
		free(ents);
		free(marked);
		free(was_clean);
	}
	return rc ? rc : (ssize_t)len;
}

/* An inline file grows past inline_max: its data becomes block 0. */
static int inline_move(struct cache *c, uint64_t ino)
{
	struct buf d = BUF_INIT;
	ssize_t n;
	int rc;

	rc = c->ops->inline_read(c->index_arg, ino, &d);
	if (rc == -ENOENT)
		return 0;
	if (rc == 0 && d.len == 0)
		rc = c->ops->inline_cut(c->index_arg, ino, 0, 0, 0);
	else if (rc == 0) {
		n = write_blocks(c, ino, 0, d.data, d.len, true);
		rc = n < 0 ? (int)n : 0;
	}
	buf_free(&d);
	return rc;
}

ssize_t cache_write(struct cache *c, uint64_t ino, uint64_t off,
		    const void *data, size_t len)
{
	if (len && inline_on(c)) {
		int rc = c->ops->inline_write(c->index_arg, ino, off, data, len,
					      c->cfg.inline_max);

		if (rc == 1)
			return (ssize_t)len;
		if (rc == 2)
			rc = inline_move(c, ino);
		if (rc < 0)
			return rc;
	}
	return write_blocks(c, ino, off, data, len, false);
}

/* ---- uploads ---- */

static bool all_zero(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* What an upload worker keeps for its life. */
struct uploader {
	uint8_t *block;          /* a block, or a patch (at most a block) */
	struct buf enc;          /* the encoded object */
	struct patch_chain chain;
	uint64_t *snap;          /* the entry's dmap, taken over */
	bool snap_ok;
	struct patch_ext *ext;   /* room for a patch's extents */
};

/*
 * Build in u->block a patch of e's pages in u->snap over the chain's top,
 * for a block of blen bytes.  Returns its size, or 0 when the block
 * should go up whole (no chain to patch, too many patches, too much
 * patched).
 */
static size_t build_patch(struct cache *c, struct centry *e, int fd,
			  size_t blen, struct uploader *u, int *rc)
{
	struct patch_chain *ch = &u->chain;
	uint32_t bs = c->cfg.block_size, npages = bs / DMAP_PAGE, pg;
	size_t n = 0, data = 0, pos;
	uint64_t limit = bs / PATCH_SHARE;

	*rc = 0;
	if (!u->snap_ok || !c->cfg.patches || !c->ops->block_chain ||
	    !c->ops->block_patch)
		return 0;
	/* too many pages written for a patch (a sequential writer): no need
	 * to ask the index */
	for (pg = 0; pg < (npages + 63) / 64; pg++)
		data += (size_t)__builtin_popcountll(u->snap[pg]) * DMAP_PAGE;
	if (data > limit)
		return 0;
	data = 0;
	/* a block gone from the index meanwhile goes the whole way, which
	 * handles that */
	if (c->ops->block_chain(c->index_arg, e->ino, e->idx, ch) ||
	    !ch->base[0] || ch->n >= PATCH_MAX || ch->patch_bytes >= limit)
		return 0;
	for (pg = 0; pg < npages; pg++) {
		uint32_t off = pg * DMAP_PAGE, len;

		if (!(u->snap[pg / 64] >> (pg % 64) & 1) || off >= blen)
			continue;
		len = (uint32_t)MF_MIN(DMAP_PAGE, blen - off);
		if (n && u->ext[n - 1].off + u->ext[n - 1].len == off) {
			u->ext[n - 1].len += len;
		} else {
			u->ext[n].off = off;
			u->ext[n++].len = len;
		}
		data += len;
		if (ch->patch_bytes + patch_size(n, data) > limit)
			return 0;
	}
	pos = patch_data_off(n);
	*rc = patch_write_header(u->block, ch->n ? ch->patch[ch->n - 1] :
				 ch->base, (uint32_t)blen, u->ext, n);
	for (size_t i = 0; !*rc && i < n; i++) {
		*rc = pread_zero(fd, u->block + pos, u->ext[i].len,
				 (off_t)u->ext[i].off);
		pos += u->ext[i].len;
	}
	return *rc ? 0 : pos;
}

/*
 * Upload the content of e as of version v and record it in the index:
 * the pages written since the last upload as a patch (build_patch()), or
 * the whole block.  Called by a worker that set e->uploading, pinned e
 * and took over its dmap into u.
 */
static int upload_one(struct cache *c, struct centry *e, uint64_t v,
		      struct uploader *u)
{
	char hash[BLOB_NAME_LEN + 1], key[BLOB_DATA_KEY_LEN + 1];
	uint64_t bs = c->cfg.block_size, size, obj_size = 0;
	uint8_t *block = u->block;
	struct buf *enc = &u->enc;
	size_t blen = 0, plen = 0;
	bool whole = false;
	bool claimed = false, dedup = false, still, current;
	int rc, fd = -1;

	rc = c->ops->file_size(c->index_arg, e->ino, &size);
	if (rc == -ENOENT) {
		size = 0;
		rc = 0;
	}
	if (rc)
		return rc;
	if (size > e->idx * bs)
		blen = (size_t)MF_MIN(bs, size - e->idx * bs);
	if (blen) {
		rc = entry_get_fd(c, e, &fd);
		if (rc)
			return rc;
		plen = build_patch(c, e, fd, blen, u, &rc);
		if (!rc && !plen) {
			/* read where the object's payload goes */
			buf_reset(enc);
			block = enc->data + BLOB_HEADER_SIZE;
			whole = true;
			rc = pread_zero(fd, block, blen, 0);
		}
		entry_put_fd(c, e, fd);
		if (rc)
			return rc;
	}
	if (plen || (blen && !all_zero(block, blen))) {
		size_t len = plen ? plen : blen;

		blob_name(c->blob, block, len, hash);
		cache_claim(c, hash);
		claimed = true;
		if (c->ops->object_known(c->index_arg, hash) == 1) {
			dedup = true;
		} else {
			if (whole) {
				rc = blob_encode_named_in_place(
					c->blob, enc, len, u->block, bs);
			} else {
				buf_reset(enc);
				rc = blob_encode_named(c->blob, block, len,
						       enc);
			}
			if (rc)
				goto out_unclaim;
			blob_data_key(hash, key);
			rc = store_put(c->store, key, enc->data, enc->len);
			if (rc) {
				log_error("upload of block %" PRIu64
					  " of inode %" PRIu64 " (%s) failed: %s",
					  e->idx, e->ino, key, strerror(-rc));
				goto out_unclaim;
			}
			obj_size = enc->len;
		}
	}

	pthread_mutex_lock(&c->commit_lock);
	pthread_mutex_lock(&c->lock);
	still = e->version != v;
	current = e->in_table;
	pthread_mutex_unlock(&c->lock);
	if (current && plen) {
		struct patch_chain *ch = &u->chain;

		rc = c->ops->block_patch(c->index_arg, e->ino, e->idx,
					 ch->n ? ch->patch[ch->n - 1] :
					 ch->base, hash, obj_size, still);
		if (rc == -EILSEQ)
			log_warn("block %" PRIu64 " of inode %" PRIu64
				 " changed in the index while its patch went"
				 " up; it is uploaded whole", e->idx, e->ino);
	} else if (current) {
		rc = c->ops->block_commit(c->index_arg, e->ino, e->idx,
					  claimed ? hash : NULL, obj_size,
					  still);
	} else {
		/*
		 * Dropped while it uploaded (punch, truncate, delete; every
		 * drop holds commit_lock).  The index row of this block, if
		 * there is one now, belongs to a newer entry written since:
		 * committing our content to it would mark that entry's data
		 * clean with our stale object, and its own commit would
		 * then be refused as stale.  Only record the object, so the
		 * collector deletes it.
		 */
		rc = -ESTALE;
		if (claimed && !dedup && c->ops->object_note)
			c->ops->object_note(c->index_arg, hash, obj_size);
	}
	pthread_mutex_lock(&c->lock);
	if (rc == 0 || rc == -ESTALE) {
		e->committed_version = v;
		c->stats.uploads++;
		c->stats.upload_bytes += obj_size;
		if (dedup)
			c->stats.dedup_hits++;
		if (plen)
			c->stats.patches++;
	}
	if (rc == -ESTALE && e->in_table) {
		/*
		 * The index has no changes of this block to record: every
		 * drop takes the entry out first, under commit_lock, so the
		 * cache and the index disagree.  What the cache holds
		 * cannot be recorded anywhere.
		 */
		log_error("block %" PRIu64 " of inode %" PRIu64 " is not "
			  "written in the index while the cache holds "
			  "changes (a bug); they are dropped", e->idx, e->ino);
		table_remove(c, e);
		rc = 0;
	} else if (rc == -ESTALE) {
		rc = 0;
	}
	if (rc == 0 && !still && e->state == CE_DIRTY) {
		elist_del(&c->dirty, e);
		c->dirty_bytes -= bs;
		e->state = CE_CLEAN;
		/* a flush that came during the upload marked it urgent;
		 * kept, that flag sent the block's next write up at once */
		e->urgent = false;
		elist_add_tail(&c->lru, e);
	}
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->commit_lock);
out_unclaim:
	if (claimed)
		cache_unclaim(c, hash);
	return rc;
}

/*
 * Called with lock held: the next entry a worker should upload, or NULL
 * with *wait_ns set to how long until one is due.
 *
 * Once dirty data passes whole_after (the mount's: max_dirty / 32, 8 MiB
 * by default), a block written whole goes up at once, not writeback_delay
 * later: a sequential writer has moved past it, and uploading while the
 * writer goes on overlaps the two, where waiting left up to max_dirty for
 * the fsync or close to upload.  Below it, a small file rewritten whole
 * again and again still costs one upload per delay.
 */
static struct centry *pick_upload(struct cache *c, uint64_t *wait_ns)
{
	uint64_t now = now_mono_ns(), best_wait = UINT64_MAX;
	uint64_t bs = c->cfg.block_size;
	bool pressure = c->dirty_bytes > c->cfg.max_dirty || c->flushers;
	bool early = c->dirty_bytes > c->cfg.whole_after;
	struct centry *e;

	for (e = c->dirty.head; e; e = e->next) {
		uint64_t due;

		if (e->uploading)
			continue;
		due = e->dirty_since_ns + c->cfg.writeback_delay_ns;
		if (pressure || e->urgent ||
		    (early && e->cov_lo == 0 && e->cov_hi == bs))
			due = 0;
		if (e->retry_at_ns > due)
			due = e->retry_at_ns;
		if (due <= now)
			return e;
		if (due - now < best_wait)
			best_wait = due - now;
	}
	*wait_ns = best_wait;
	return NULL;
}

static void uploader_free(struct uploader *u)
{
	buf_free(&u->enc);
	free(u->block);
	free(u->snap);
	free(u->ext);
}

static int uploader_init(struct cache *c, struct uploader *u)
{
	size_t npages = c->cfg.block_size / DMAP_PAGE;

	memset(u, 0, sizeof(*u));
	u->enc = (struct buf)BUF_INIT;
	u->block = malloc(c->cfg.block_size);
	u->snap = calloc(dmap_words(c), sizeof(*u->snap));
	u->ext = calloc(npages, sizeof(*u->ext));
	/* page-aligned, so that a local store can write it with O_DIRECT */
	if (!u->block || !u->snap || !u->ext ||
	    buf_init_aligned(&u->enc, STORE_DIRECT_ALIGN,
			     blob_encoded_max(c->blob, c->cfg.block_size))) {
		uploader_free(u);
		return -ENOMEM;
	}
	return 0;
}

/*
 * With lock held: the upload of e takes over the pages written so far
 * (writes from now on mark a fresh map, relative to what this upload
 * commits), or gives them back when it failed.
 */
static void dmap_take(struct cache *c, struct centry *e, struct uploader *u)
{
	size_t words = dmap_words(c);

	u->snap_ok = e->dmap_ok;
	if (e->dmap) {
		memcpy(u->snap, e->dmap, words * sizeof(*u->snap));
		memset(e->dmap, 0, words * sizeof(*e->dmap));
	} else {
		memset(u->snap, 0, words * sizeof(*u->snap));
	}
	e->dmap_ok = true;
}

static void dmap_give_back(struct cache *c, struct centry *e,
			   const struct uploader *u, int rc)
{
	size_t words = dmap_words(c), i;

	if (!u->snap_ok || rc == -EILSEQ) {
		e->dmap_ok = false;
		return;
	}
	if (!e->dmap_ok)
		return;
	if (!e->dmap)
		e->dmap = calloc(words, sizeof(*e->dmap));
	if (!e->dmap) {
		e->dmap_ok = false;
		return;
	}
	for (i = 0; i < words; i++)
		e->dmap[i] |= u->snap[i];
}

static void *upload_worker(void *arg)
{
	struct cache *c = arg;
	struct uploader u;

	if (uploader_init(c, &u)) {
		log_error("upload worker: out of memory");
		return NULL;
	}
	pthread_mutex_lock(&c->lock);
	for (;;) {
		uint64_t wait_ns = UINT64_MAX, v;
		struct centry *e = pick_upload(c, &wait_ns);
		bool destroy;
		int rc;

		if (c->stopping && c->flushers == 0)
			break;
		if (!e) {
			struct timespec ts;

			if (wait_ns == UINT64_MAX) {
				pthread_cond_wait(&c->work_cond, &c->lock);
				continue;
			}
			if (wait_ns > 1000000000ULL)
				wait_ns = 1000000000ULL;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += (long)wait_ns;
			ts.tv_sec += ts.tv_nsec / 1000000000L;
			ts.tv_nsec %= 1000000000L;
			pthread_cond_timedwait(&c->work_cond, &c->lock, &ts);
			continue;
		}
		e->uploading = true;
		e->refs++;
		/*
		 * The version is taken under commit_lock: a write counts
		 * itself in it, then records the file's new size in the
		 * index, both under commit_lock.  Taken between the two,
		 * upload_one() read the old size, cut the block there, and
		 * the commit, its version covering the write, marked it
		 * clean: the grown part never went up.
		 */
		pthread_mutex_unlock(&c->lock);
		pthread_mutex_lock(&c->commit_lock);
		pthread_mutex_lock(&c->lock);
		v = e->version;
		/* taken now, not after the upload: a flush that comes while
		 * it runs (for a write after v) marks the entry urgent
		 * again, and clearing that afterwards left the flush
		 * waiting for writeback_delay */
		e->urgent = false;
		dmap_take(c, e, &u);
		pthread_mutex_unlock(&c->lock);
		pthread_mutex_unlock(&c->commit_lock);

		rc = upload_one(c, e, v, &u);
		if (rc == -EILSEQ) {
			/* the chain changed under the patch: go whole */
			u.snap_ok = false;
			rc = upload_one(c, e, v, &u);
		}

		pthread_mutex_lock(&c->lock);
		e->uploading = false;
		if (rc) {
			dmap_give_back(c, e, &u, rc);
			c->stats.upload_errors++;
			e->last_err = rc;
			e->err_seq = ++c->err_seq;
			e->urgent = false;
			e->backoff_ns = e->backoff_ns ?
				MF_MIN(e->backoff_ns * 2, 30000000000ULL) :
				500000000ULL;
			e->retry_at_ns = now_mono_ns() + e->backoff_ns;
		} else {
			e->backoff_ns = 0;
			e->retry_at_ns = 0;
		}
		destroy = entry_unpin_locked(c, e);
		if (destroy || c->cached_bytes > c->cfg.cache_size) {
			/* a block that became clean may be evicted now,
			 * before a flush waiting for it is told: when a
			 * flush returns, the cache is back within its size */
			pthread_mutex_unlock(&c->lock);
			if (destroy)
				entry_destroy(c, e);
			evict_some(c);
			pthread_mutex_lock(&c->lock);
		}
		pthread_cond_broadcast(&c->state_cond);
	}
	pthread_mutex_unlock(&c->lock);
	uploader_free(&u);
	return NULL;
}

/*
 * The self-check of a flush: outside commit_lock, a block is dirty in the
 * index exactly when its cache entry is dirty (a write, a truncate and
 * an upload's commit change both in one commit_lock section).  A block
 * dirty in the index only would never be uploaded, nor waited for by
 * fsync, and a crash that lost the cache would bring back its last
 * uploaded content.  Logged as the bug it is; costs one indexed count.
 */
static void check_dirty(struct cache *c, uint64_t ino)
{
	uint64_t in_index = 0, in_cache = 0;
	struct centry *e;
	int rc;

	if (!c->ops->dirty_count)
		return;
	pthread_mutex_lock(&c->commit_lock);
	rc = c->ops->dirty_count(c->index_arg, ino, &in_index);
	pthread_mutex_lock(&c->lock);
	for (e = c->dirty.head; e; e = e->next)
		if (e->ino == ino)
			in_cache++;
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->commit_lock);
	if (rc == 0 && in_index != in_cache)
		log_error("inode %" PRIu64 ": %" PRIu64 " block(s) dirty in "
			  "the index, %" PRIu64 " in the cache (a bug)", ino,
			  in_index, in_cache);
}

struct flush_target {
	struct centry *e;
	uint64_t version;
};

struct flush_set {
	struct flush_target *t;
	size_t n, cap;
};

/* Called with lock held: pin e and hurry its upload; the flush waits
 * until the index has version of it. */
static int flush_add(struct cache *c, struct flush_set *s, struct centry *e,
		     uint64_t version)
{
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 16;
		struct flush_target *nt = realloc(s->t, ncap * sizeof(*nt));

		if (!nt)
			return -ENOMEM;
		s->t = nt;
		s->cap = ncap;
	}
	e->refs++;
	e->urgent = true;
	e->retry_at_ns = 0;
	s->t[s->n].e = e;
	s->t[s->n].version = version;
	s->n++;
	return 0;
}

/* Called with lock held: wait until every target is in the index (or
 * gone); the error of an upload that failed since err_seq start_seq. */
static int flush_wait(struct cache *c, struct flush_set *s,
		      uint64_t start_seq)
{
	size_t i;

	if (s->n)
		pthread_cond_broadcast(&c->work_cond);
	for (i = 0; i < s->n;) {
		struct centry *e = s->t[i].e;

		if (!e->in_table || e->committed_version >= s->t[i].version) {
			i++;
			continue;
		}
		if (e->err_seq > start_seq)
			return e->last_err ? e->last_err : -EIO;
		pthread_cond_wait(&c->state_cond, &c->lock);
	}
	return 0;
}

/* Called with lock held (dropped meanwhile): unpin the targets. */
static void flush_release(struct cache *c, struct flush_set *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		if (entry_unpin_locked(c, s->t[i].e)) {
			pthread_mutex_unlock(&c->lock);
			entry_destroy(c, s->t[i].e);
			pthread_mutex_lock(&c->lock);
		}
	}
	free(s->t);
	s->t = NULL;
	s->n = s->cap = 0;
}

int cache_flush_inode(struct cache *c, uint64_t ino)
{
	struct flush_set s = { 0 };
	uint64_t start_seq;
	struct centry *e;
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	start_seq = c->err_seq;
	for (e = c->dirty.head; e && !rc; e = e->next)
		if (e->ino == ino)
			rc = flush_add(c, &s, e, e->version);
	if (!rc)
		rc = flush_wait(c, &s, start_seq);
	flush_release(c, &s);
	pthread_mutex_unlock(&c->lock);
	if (rc == 0)
		check_dirty(c, ino);
	return rc;
}

int cache_cut_barrier(struct cache *c, int (*fn)(void *), void *arg)
{
	struct flush_set s = { 0 };
	uint64_t start_seq;
	struct centry *e;
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	while (c->barrier)
		pthread_cond_wait(&c->state_cond, &c->lock);
	c->barrier = true;
	while (c->cutting)
		pthread_cond_wait(&c->state_cond, &c->lock);
	start_seq = c->err_seq;
	/* a cut block is dirty until the index has its cut */
	for (e = c->dirty.head; e && !rc; e = e->next)
		if (e->committed_version < e->cut_version)
			rc = flush_add(c, &s, e, e->cut_version);
	if (!rc)
		rc = flush_wait(c, &s, start_seq);
	flush_release(c, &s);
	pthread_mutex_unlock(&c->lock);
	/*
	 * A block the store refuses, it refuses the journal too; one that
	 * cannot be read from the cache disk is lost whatever comes next.
	 * Neither may hold the metadata back.
	 */
	if (rc)
		log_debug("journal barrier: a cut block is not in the store "
			  "(%s); sending the metadata anyway", strerror(-rc));
	rc = fn(arg);
	pthread_mutex_lock(&c->lock);
	c->barrier = false;
	pthread_cond_broadcast(&c->state_cond);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int cache_flush_all(struct cache *c,
		    void (*progress)(uint64_t left, void *arg), void *arg)
{
	uint64_t last = now_mono_ns();

	pthread_mutex_lock(&c->lock);
	c->flushers++;
	pthread_cond_broadcast(&c->work_cond);
	while (c->dirty.n) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&c->state_cond, &c->lock, &ts);
		if (progress && now_mono_ns() - last >= 1000000000ULL) {
			uint64_t left = c->dirty_bytes;

			last = now_mono_ns();
			pthread_mutex_unlock(&c->lock);
			progress(left, arg);
			pthread_mutex_lock(&c->lock);
		}
	}
	c->flushers--;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* ---- size changes ---- */

/* Drop the entries of ino for blocks [first, last] (last inclusive, at
 * most `limit` lookups).  Returns them chained through hnext for
 * destruction by the caller, after unlocking.  Called with lock held. */
static struct centry *drop_range_locked(struct cache *c, uint64_t ino,
					uint64_t first, uint64_t last)
{
	struct centry *dead = NULL, *e;
	uint64_t i;

	if (last - first >= c->nentries) {
		/* fewer entries than blocks: scan the table instead */
		size_t b;

		for (b = 0; b < c->nbuckets; b++) {
			struct centry *next;

			for (e = c->buckets[b]; e; e = next) {
				next = e->hnext;
				if (e->ino != ino || e->idx < first ||
				    e->idx > last)
					continue;
				table_remove(c, e);
				if (e->refs == 0 && !e->uploading) {
					e->hnext = dead;
					dead = e;
				}
			}
		}
		return dead;
	}
	for (i = first; i <= last; i++) {
		e = table_find(c, ino, i);
		if (!e)
			continue;
		table_remove(c, e);
		if (e->refs == 0 && !e->uploading) {
			e->hnext = dead;
			dead = e;
		}
	}
	return dead;
}

static void destroy_chain(struct cache *c, struct centry *dead)
{
	while (dead) {
		struct centry *e = dead;

		dead = e->hnext;
		entry_destroy(c, e);
	}
}

/* Zero [from, to) within block e (to == block end: cut the file). The
 * caller holds commit_lock and then records the block as dirty. */
static int zero_in_block(struct cache *c, struct centry *e, uint64_t from,
			 uint64_t to)
{
	int fd = entry_open(c, e, O_RDWR), rc = 0;
	struct stat st;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto out_close;
	}
	if ((uint64_t)st.st_size <= from)
		goto out_close;
	if (to >= (uint64_t)st.st_size) {
		if (ftruncate(fd, (off_t)from))
			rc = -errno;
		goto out_close;
	}
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)from, (off_t)(to - from))) {
		static const uint8_t zeros[4096];
		uint64_t p;

		for (p = from; p < to && !rc; p += sizeof(zeros))
			rc = pwrite_all(fd, zeros,
					(size_t)MF_MIN(sizeof(zeros), to - p),
					(off_t)p);
	}
out_close:
	close(fd);
	return rc;
}

/* Called with commit_lock held: mark e dirty in the index and in memory
 * after a truncate or punch zeroed part of its file. */
static int mark_dirty_committing(struct cache *c, struct centry *e)
{
	bool was_clean;
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	e->version++;
	e->cut_version = e->version;
	was_clean = e->state == CE_CLEAN;
	if (was_clean) /* a punched range is no whole write */
		e->cov_lo = e->cov_hi = 0;
	/* nor a patch: a cut block may also be extended again later, so
	 * its next upload is whole */
	e->dmap_ok = false;
	pthread_mutex_unlock(&c->lock);
	if (was_clean)
		rc = c->ops->write_done(c->index_arg, e->ino, 0, &e->idx, 1);
	pthread_mutex_lock(&c->lock);
	if (was_clean && e->in_table) {
		if (rc) {
			table_remove(c, e);
		} else {
			elist_del(&c->lru, e);
			e->state = CE_DIRTY;
			e->dirty_since_ns = now_mono_ns();
			elist_add_tail(&c->dirty, e);
			c->dirty_bytes += c->cfg.block_size;
			pthread_cond_broadcast(&c->work_cond);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Pin block idx of ino with its content, if it has any (cached or in the
 * index).  *out = NULL for a hole. */
static int acquire_if_exists(struct cache *c, uint64_t ino, uint64_t idx,
			     struct centry **out)
{
	char hash[BLOB_NAME_LEN + 1];
	bool cached;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&c->lock);
	cached = table_find(c, ino, idx) != NULL;
	pthread_mutex_unlock(&c->lock);
	if (!cached) {
		rc = c->ops->block_get(c->index_arg, ino, idx, hash);
		if (rc == -ENOENT)
			return 0;
		if (rc)
			return rc;
	}
	return entry_acquire(c, ino, idx, true, out);
}

/* A truncate or punch waits while the journal's barrier is up, and the
 * barrier waits for those past it (cache_cut_barrier()). */
static void cut_enter(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	while (c->barrier)
		pthread_cond_wait(&c->state_cond, &c->lock);
	c->cutting++;
	pthread_mutex_unlock(&c->lock);
}

static void cut_leave(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	if (--c->cutting == 0)
		pthread_cond_broadcast(&c->state_cond);
	pthread_mutex_unlock(&c->lock);
}

static int truncate_blocks(struct cache *c, uint64_t ino, uint64_t old_size,
			   uint64_t new_size, int (*apply)(void *),
			   void *apply_arg)
{
	uint64_t bs = c->cfg.block_size;
	struct centry *tail = NULL, *dead = NULL;
	int rc = 0;

	if (new_size < old_size && new_size % bs) {
		rc = acquire_if_exists(c, ino, new_size / bs, &tail);
		if (rc)
			return rc;
	}
	pthread_mutex_lock(&c->commit_lock);
	if (tail) {
		rc = zero_in_block(c, tail, new_size % bs, bs);
		if (!rc)
			rc = mark_dirty_committing(c, tail);
		if (rc)
			goto out_unlock;
	}
	if (new_size < old_size) {
		uint64_t first = (new_size + bs - 1) / bs;
		uint64_t last = (old_size + bs - 1) / bs;

		if (last > first) {
			pthread_mutex_lock(&c->lock);
			dead = drop_range_locked(c, ino, first, last - 1);
			pthread_mutex_unlock(&c->lock);
		}
	}
	rc = apply(apply_arg);
	/* inline data never outlives a shrink, even one interrupted by a
	 * crash: cut to the smaller of the two sizes */
	if (!rc && inline_on(c))
		rc = c->ops->inline_cut(c->index_arg, ino,
					MF_MIN(old_size, new_size), UINT64_MAX,
					0);
out_unlock:
	pthread_mutex_unlock(&c->commit_lock);
	if (tail)
		entry_release(c, tail);
	destroy_chain(c, dead);
	return rc;
}

int cache_truncate(struct cache *c, uint64_t ino, uint64_t old_size,
		   uint64_t new_size, int (*apply)(void *), void *apply_arg)
{
	int rc;

	cut_enter(c);
	rc = truncate_blocks(c, ino, old_size, new_size, apply, apply_arg);
	cut_leave(c);
	return rc;
}

static int punch_blocks(struct cache *c, uint64_t ino, uint64_t off,
			uint64_t len, uint64_t file_size,
			int (*apply)(void *, uint64_t first, uint64_t last),
			void *apply_arg)
{
	uint64_t bs = c->cfg.block_size, end, hb, tb, first_whole, end_whole;
	struct centry *head = NULL, *tail = NULL, *dead = NULL;
	bool to_eof;
	int rc = 0;

	if (off >= file_size || len == 0)
		return 0;
	if (inline_on(c)) {
		rc = c->ops->inline_cut(c->index_arg, ino, UINT64_MAX, off, len);
		if (rc)
			return rc;
	}
	end = MF_MIN(off + len, file_size);
	to_eof = end == file_size; /* bytes past EOF need no zeroing */
	hb = off / bs;
	tb = (end - 1) / bs;
	first_whole = off % bs ? hb + 1 : hb;
	end_whole = end % bs && !to_eof ? tb : tb + 1;

	if (off % bs) {
		rc = acquire_if_exists(c, ino, hb, &head);
		if (rc)
			return rc;
	}
	/* the partial last block, unless the head block is it */
	if (end % bs && !to_eof && (tb != hb || off % bs == 0)) {
		rc = acquire_if_exists(c, ino, tb, &tail);
		if (rc)
			goto out_release;
	}
	pthread_mutex_lock(&c->commit_lock);
	if (head) {
		uint64_t to = hb == tb && !to_eof ? end - hb * bs : bs;

		rc = zero_in_block(c, head, off % bs, to);
		if (!rc)
			rc = mark_dirty_committing(c, head);
	}
	if (!rc && tail) {
		rc = zero_in_block(c, tail, 0, end % bs);
		if (!rc)
			rc = mark_dirty_committing(c, tail);
	}
	if (!rc && end_whole > first_whole) {
		pthread_mutex_lock(&c->lock);
		dead = drop_range_locked(c, ino, first_whole, end_whole - 1);
		pthread_mutex_unlock(&c->lock);
		rc = apply(apply_arg, first_whole, end_whole - 1);
	}
	pthread_mutex_unlock(&c->commit_lock);
out_release:
	if (head)
		entry_release(c, head);
	if (tail)
		entry_release(c, tail);
	destroy_chain(c, dead);
	return rc;
}

int cache_punch(struct cache *c, uint64_t ino, uint64_t off, uint64_t len,
		uint64_t file_size,
		int (*apply)(void *, uint64_t first, uint64_t last),
		void *apply_arg)
{
	int rc;

	cut_enter(c);
	rc = punch_blocks(c, ino, off, len, file_size, apply, apply_arg);
	cut_leave(c);
	return rc;
}

void cache_forget_inode(struct cache *c, uint64_t ino)
{
	struct centry *dead;

	pthread_mutex_lock(&c->commit_lock);
	pthread_mutex_lock(&c->lock);
	dead = drop_range_locked(c, ino, 0, UINT64_MAX - 1);
	pthread_cond_broadcast(&c->state_cond);
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->commit_lock);
	destroy_chain(c, dead);
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
	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	out->cached_bytes = c->cached_bytes;
	out->dirty_bytes = c->dirty_bytes;
	out->entries = c->nentries;
	pthread_mutex_unlock(&c->lock);
}

/* ---- open and close ---- */

static int recover_dirty_cb(uint64_t ino, uint64_t idx, void *arg)
{
	struct cache *c = arg;
	struct centry *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->ino = ino;
	e->idx = idx;
	e->fd = -1;
	e->state = CE_DIRTY;
	e->version = 1;
	table_insert(c, e);
	elist_add_tail(&c->dirty, e);
	c->dirty_bytes += c->cfg.block_size;
	c->cached_bytes += c->cfg.block_size;
	return 0;
}

/*
 * The marker of a clean close, blocks/kept: the boot id of the running
 * kernel (its page cache is what the kept files hold, written to disk or
 * not), or "synced" when there is no boot id and the files were synced.
 */
#define KEPT_NAME "kept"
#define BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"

static void kept_path(const struct cache *c, char *path, size_t size)
{
	snprintf(path, size, "%s/%s", c->blocks_dir, KEPT_NAME);
}

/* The boot id, or "" when unknown. */
static void boot_id(struct buf *out)
{
	buf_reset(out);
	if (read_file(BOOT_ID_PATH, out) || out->len < 16)
		buf_reset(out);
	while (out->len && (out->data[out->len - 1] == '\n'))
		out->data[--out->len] = 0;
}

/* Was the last close clean, and are its files to be believed?  Removes
 * the marker: it speaks for the files of one close only. */
static bool kept_trusted(struct cache *c)
{
	struct buf mark = BUF_INIT, boot = BUF_INIT;
	char path[PATH_MAX];
	bool ok;

	kept_path(c, path, sizeof(path));
	if (read_file(path, &mark)) {
		buf_free(&mark);
		return false;
	}
	unlink(path);
	boot_id(&boot);
	ok = !strcmp(buf_str(&mark), "synced") ||
	     (boot.len && !strcmp(buf_str(&mark), buf_str(&boot)));
	buf_free(&mark);
	buf_free(&boot);
	return ok;
}

/*
 * A file kept by a clean close (keep_clean()), named <ino>.<idx>.<gen>.<hash>:
 * serve it again as a clean entry when the index still says block (ino,
 * idx) is clean with that content, under its plain name again (so that a
 * write and a crash later leave nothing that claims a content).  Called
 * with no other thread running.  False: the caller deletes the file.
 */
static bool adopt_clean(struct cache *c, const char *name, uint64_t ino,
			uint64_t idx, uint64_t gen, const char *hash)
{
	char have[BLOB_NAME_LEN + 1], from[PATH_MAX], to[PATH_MAX];
	struct centry *e;

	if (table_find(c, ino, idx))
		return false; /* dirty, or a second file of the block */
	if (content_name(c, ino, idx, have) || strcmp(have, hash))
		return false;
	e = calloc(1, sizeof(*e));
	if (!e)
		return false;
	e->ino = ino;
	e->idx = idx;
	e->gen = gen;
	e->fd = -1;
	snprintf(from, sizeof(from), "%s/%s", c->blocks_dir, name);
	entry_path(c, e, to, sizeof(to));
	if (rename(from, to)) {
		free(e);
		return false;
	}
	e->has_file = true;
	e->state = CE_CLEAN;
	e->dmap_ok = true;
	table_insert(c, e);
	elist_add_tail(&c->lru, e);
	c->cached_bytes += c->cfg.block_size;
	if (gen >= c->next_gen)
		c->next_gen = gen + 1;
	return true;
}

/*
 * A dirty block of recover() whose file is gone (a crash took the cache
 * directory or the file) keeps its last uploaded content, unless that
 * content reaches past the file's end: a truncate cut the block, and the
 * crash came before the cut went up (meta_blocks_forget_dirty() keeps
 * such blocks dirty).  The bytes past the end would come back if the
 * file grew, where zeros belong: fetch the block, cut it at the end, and
 * keep it dirty, to go up whole.  0 when done, 1 when e is no such
 * block, or -errno.  Called before the cache serves anything.
 */
static int refill_tail(struct cache *c, struct centry *e)
{
	uint64_t size, bs = c->cfg.block_size;
	bool dirty = false;
	char path[PATH_MAX];
	int rc;

	rc = c->ops->file_size(c->index_arg, e->ino, &size);
	if (rc)
		return rc == -ENOENT ? 1 : rc;
	if (size >= (e->idx + 1) * bs)
		return 1;
	e->gen = c->next_gen++;
	rc = load_block(c, e, NULL, &dirty);
	if (rc == 0)
		rc = zero_in_block(c, e, size > e->idx * bs ?
				   size - e->idx * bs : 0, bs);
	if (rc) {
		if (e->has_file) {
			entry_path(c, e, path, sizeof(path));
			unlink(path);
			e->has_file = false;
		}
		return rc;
	}
	e->dmap_ok = false; /* its next upload is whole */
	return 0;
}

/*
 * Match cache files left by an earlier run with the blocks the index says
 * are dirty, and adopt the clean files a clean close left (adopt_clean());
 * delete every other file.  Dirty blocks without a file are lost: tell
 * the index they are clean again (their last upload stands), unless
 * refill_tail() can cut them at their file's end.
 */
static int recover(struct cache *c)
{
	struct centry *lost = NULL, *e, *next;
	uint64_t nlost = 0, kept = 0, nrefilled = 0;
	bool trusted;
	struct dirent *de;
	DIR *d;
	size_t b;
	int rc;

	rc = c->ops->dirty_blocks(c->index_arg, recover_dirty_cb, c);
	if (rc)
		return rc;
	trusted = kept_trusted(c);
	d = opendir(c->blocks_dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		unsigned long long ino, idx, gen;
		char path[PATH_MAX], hash[BLOB_NAME_LEN + 2];
		int nch = 0;

		if (de->d_name[0] == '.')
			continue;
		if (trusted &&
		    sscanf(de->d_name, "%llu.%llu.%llu.%65[0-9a-f]%n", &ino,
			   &idx, &gen, hash, &nch) == 4 &&
		    de->d_name[nch] == 0 && strlen(hash) == BLOB_NAME_LEN &&
		    adopt_clean(c, de->d_name, ino, idx, gen, hash)) {
			kept++;
			continue;
		}
		if (sscanf(de->d_name, "%llu.%llu.%llu%n", &ino, &idx, &gen,
			   &nch) == 3 && de->d_name[nch] == 0) {
			e = table_find(c, ino, idx);
			if (e && e->has_file && e->gen == gen)
				continue; /* adopted above, seen again under
					   * its new name */
			if (e && e->state == CE_DIRTY &&
			    (!e->has_file || gen > e->gen)) {
				/*
				 * The newest file of the block is its data.
				 * An older one outlives its entry while an
				 * upload of it runs after a truncate or punch
				 * dropped it; the block's next write made a
				 * new file (a higher gen), and a crash then
				 * left both.
				 */
				if (e->has_file) {
					entry_path(c, e, path, sizeof(path));
					unlink(path);
				}
				e->gen = gen;
				e->has_file = true;
				if (gen >= c->next_gen)
					c->next_gen = gen + 1;
				continue;
			}
		}
		snprintf(path, sizeof(path), "%s/%s", c->blocks_dir,
			 de->d_name);
		unlink(path);
	}
	closedir(d);
	/* gens of kept files are known now: give the others fresh ones */
	for (b = 0; b < c->nbuckets; b++) {
		for (e = c->buckets[b]; e; e = next) {
			next = e->hnext;
			if (e->has_file)
				continue;
			rc = refill_tail(c, e);
			if (rc == 0) {
				nrefilled++;
				continue;
			}
			if (rc < 0)
				log_warn("cache: block %" PRIu64 " of inode "
					 "%" PRIu64 " reaches past the file's "
					 "end and cannot be cut there (%s): "
					 "if the file grows, old bytes may "
					 "show", e->idx, e->ino,
					 strerror(-rc));
			table_remove(c, e);
			c->cached_bytes -= c->cfg.block_size;
			e->hnext = lost;
			lost = e;
		}
	}
	for (e = lost; e; e = next) {
		char hash[BLOB_NAME_LEN + 1];

		next = e->hnext;
		nlost++;
		if (c->ops->block_reset) {
			rc = c->ops->block_reset(c->index_arg, e->ino, e->idx);
			goto reset_done;
		}
		rc = c->ops->block_get(c->index_arg, e->ino, e->idx, hash);
		if (rc == 0)
			rc = c->ops->block_commit(c->index_arg, e->ino,
						  e->idx,
						  hash[0] ? hash : NULL, 0, 0);
reset_done:
		if (rc && rc != -ENOENT && rc != -ESTALE)
			log_warn("cache: cannot reset block %llu of inode "
				 "%llu: %s", (unsigned long long)e->idx,
				 (unsigned long long)e->ino, strerror(-rc));
		free(e);
	}
	if (nlost)
		log_warn("cache: %" PRIu64 " block(s) written before a crash "
			 "were not in the cache directory any more; those "
			 "blocks keep their last uploaded content", nlost);
	if (nrefilled)
		log_info("cache: %" PRIu64 " block(s) cut by a truncate "
			 "before a crash are cut again and uploaded",
			 nrefilled);
	if (c->dirty.n)
		log_info("cache: %zu block(s) written before a restart are "
			 "being uploaded", c->dirty.n);
	if (kept)
		log_info("cache: %" PRIu64 " clean block(s) kept from the "
			 "last mount", kept);
	evict_some(c); /* cache_size may be smaller than last time */
	return 0;
}

int cache_open(const struct cache_config *cfg, struct store *store,
	       const struct blob_ctx *blob, const struct cache_index_ops *ops,
	       void *index_arg, struct cache **out)
{
	struct cache *c;
	struct buf path = BUF_INIT;
	unsigned i;
	int rc;

	if (cfg->block_size == 0 || cfg->upload_threads == 0)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->cfg = *cfg;
	c->cfg.dir = NULL;
	if (c->cfg.inline_max > c->cfg.block_size)
		c->cfg.inline_max = c->cfg.block_size;
	if (c->cfg.cache_size < 4ULL * cfg->block_size)
		c->cfg.cache_size = 4ULL * cfg->block_size;
	if (c->cfg.max_dirty > c->cfg.cache_size)
		c->cfg.max_dirty = c->cfg.cache_size;
	c->store = store;
	c->blob = blob;
	c->ops = ops;
	c->index_arg = index_arg;
	c->next_gen = 1;
	{
		/* a quarter of what the process may open, at most 1024 */
		struct rlimit rl;

		c->maxfds = 256;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
		    rl.rlim_cur != RLIM_INFINITY)
			c->maxfds = (unsigned)MF_MIN(rl.rlim_cur / 4, 1024);
	}
	mutex_init(&c->commit_lock);
	mutex_init(&c->lock);
	pthread_cond_init(&c->state_cond, NULL);
	pthread_cond_init(&c->work_cond, NULL);
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
	rc = recover(c);
	if (rc)
		goto out_free;
	c->workers = calloc(cfg->upload_threads, sizeof(*c->workers));
	if (!c->workers) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (i = 0; i < cfg->upload_threads; i++) {
		rc = -pthread_create(&c->workers[i], NULL, upload_worker, c);
		if (rc)
			break;
		c->nworkers++;
	}
	/* as many parallel fetches as uploads: the same store */
	c->fetchers = calloc(cfg->upload_threads, sizeof(*c->fetchers));
	if (!c->fetchers && !rc)
		rc = -ENOMEM;
	for (i = 0; !rc && i < cfg->upload_threads; i++) {
		rc = -pthread_create(&c->fetchers[i], NULL, fetcher, c);
		if (!rc)
			c->nfetchers++;
	}
	if (rc) {
		cache_close(c, 1);
		return rc;
	}
	*out = c;
	return 0;
out_free:
	cache_close(c, 1);
	return rc;
}

/*
 * A clean close keeps the files of clean blocks for the next open, named
 * after the content they hold (the hash of the object their block names
 * in the index), so that a remount serves them without fetching them
 * again.  A name is a claim on the content: the next open believes it
 * only while the kernel that holds the files' pages still runs (same
 * boot id in the marker), since a power loss, the only way to lose
 * written pages that were not synced, means a new boot; without a boot
 * id the files are synced first.  A crash keeps nothing clean: a file
 * without such a name may hold a write that never reached the index.
 */
static void keep_clean(struct cache *c)
{
	char hash[BLOB_NAME_LEN + 1], from[PATH_MAX], to[PATH_MAX + 80];
	struct buf mark = BUF_INIT;
	uint64_t kept = 0;
	size_t b;

	boot_id(&mark);
	if (!mark.len) {
		int dfd = open(c->blocks_dir, O_RDONLY | O_DIRECTORY |
			       O_CLOEXEC);

		if (dfd < 0 || syncfs(dfd)) {
			log_warn("cache: cannot sync %s: %s; no block kept",
				 c->blocks_dir, strerror(errno));
			if (dfd >= 0)
				close(dfd);
			return;
		}
		close(dfd);
		buf_appends(&mark, "synced");
	}
	for (b = 0; b < c->nbuckets; b++) {
		struct centry *e;

		for (e = c->buckets[b]; e; e = e->hnext) {
			if (e->state != CE_CLEAN || !e->has_file)
				continue;
			if (content_name(c, e->ino, e->idx, hash) ||
			    !hash[0])
				continue;
			entry_path(c, e, from, sizeof(from));
			snprintf(to, sizeof(to), "%s.%s", from, hash);
			if (rename(from, to) == 0)
				kept++;
		}
	}
	if (kept) {
		kept_path(c, from, sizeof(from));
		if (write_file_atomic(from, mark.data, mark.len, 0600))
			log_warn("cache: cannot write %s", from);
		else
			log_info("cache: %" PRIu64 " clean block(s) kept for "
				 "the next mount", kept);
	}
	buf_free(&mark);
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
		keep_clean(c);
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
