/*
 * cache_load.c - filling a cache entry from the store, and read-ahead.
 *
 * A block not cached is loaded when read or partly written: its content
 * as the index names it is fetched, decoded, checked and written into
 * the new entry's cache file (cache_load_block()).  A reader that reads
 * sequentially has the next blocks loaded before it asks, by fetcher
 * threads (cache_read_ahead(), cache_fetcher()).
 *
 * Data model
 *   The index names a block's uploaded content as a struct patch_chain
 *   (blob/patch.h): base, the object of the block as last uploaded whole
 *   ("" when never uploaded), then up to PATCH_CHAIN_MAX patches, each
 *   naming the object below it.  A load fetches the base while a thread
 *   per patch fetches the patches (struct chain_get), then applies them
 *   in order.  The read-ahead queue is the ring c->ahead of
 *   PREFETCH_QUEUE blocks, drained by as many fetchers as upload workers,
 *   each keeping an object buffer for its life.
 *
 * Invariants
 *   1. A load writes only into a new entry's file, while the entry is
 *      LOADING and pinned by the loader (entry_acquire_buf() makes other
 *      threads wait), or at open, before any other thread runs
 *      (refill_tail() of cache_recover.c).
 *   2. Only decoded and checked objects reach a cache file; a missing or
 *      damaged object, base or patch, fails the load with -EIO (a
 *      missing one with -ESTALE on a follower, cfg.follower: the
 *      writer collected it): a block never reads as its base without
 *      its patches, nor as zeros.  On a follower a block its index
 *      says is dirty (the writer's, not uploaded yet) is not loaded at
 *      all: -EAGAIN.
 *   3. A fetcher loads a queued block only when it is still not cached
 *      and the index names content for it (a hole, or a block never
 *      uploaded, has nothing to fetch).
 *
 * Locks: lock only (stats, the read-ahead ring, an entry's descriptor),
 * never held across a fetch.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "cache/cache_int.h"
#include "util/log.h"
#include "util/util.h"

/* How far ahead (bytes) a sequential reader is served. */
#define PREFETCH_BYTES (8U << 20)

/* ---- fetching a block's objects ---- */

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
int cache_content_name(struct cache *c, uint64_t ino, uint64_t idx,
		       char *name)
{
	struct patch_chain ch;
	int rc = chain_get(c, ino, idx, &ch);

	if (rc == 0)
		memcpy(name, ch.n ? ch.patch[ch.n - 1] : ch.base,
		       BLOB_NAME_LEN + 1);
	return rc;
}

/* Get object name (of e's block, for messages) into obj and decode it:
 * *p, *plen the checked plaintext (in obj or plain). */
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
	if (rc == -ENOENT && c->cfg.follower) {
		/* a follower: the writer deleted or rewrote the file and
		 * collected its objects since */
		log_info("block %" PRIu64 " of inode %" PRIu64 ": object %s "
			 "is gone from the store (collected by the writer): "
			 "ESTALE", e->idx, e->ino, key);
		return -ESTALE;
	}
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
 * while the base is.  reuse, when not NULL, is the caller's buffer from
 * obj_buf_init() (a fetcher keeps one for its life: block-sized buffers
 * allocated per load by several threads leave the heap fragmented,
 * 28 MiB per thread with 4 MiB blocks); else one is made for this load.
 * *dirty: whether the index says the block was written since that
 * content went up.  The entry's descriptor is kept (entry_keep_fd()).
 */
int cache_load_block(struct cache *c, struct centry *e, struct buf *reuse,
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
	if (*dirty && c->cfg.follower) {
		/* the writer's bytes are in its cache only: what the store
		 * has (older bytes, or none: zeros) is not this block */
		rc = -EAGAIN;
		goto out_chain;
	}
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
	if (!rc)
		rc = cache_pwrite(fd, p, plen, 0);
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

/* ---- read-ahead ---- */

/*
 * A reader of block idx whose previous block is cached is probably
 * reading sequentially: queue the fetch of the blocks after idx (up to
 * PREFETCH_BYTES or two per fetcher, whichever is more, within the file)
 * that are not cached yet, for the fetcher threads, so that the store's
 * latency and the decoding of several blocks overlap with the reader.
 */
void cache_read_ahead(struct cache *c, uint64_t ino, uint64_t idx,
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
	if (!cache_table_find(c, ino, idx - 1))
		goto out;
	for (i = idx + 1; i <= last && i <= idx + want; i++) {
		if (cache_table_find(c, ino, i))
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

/* A fetcher thread: loads the blocks cache_read_ahead() queues, until
 * the cache stops. */
void *cache_fetcher(void *arg)
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
		if (cache_table_find(c, ino, idx))
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
