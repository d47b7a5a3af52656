/*
 * cache_rw.c - reads and writes through the cache (cache_read(),
 * cache_write()), and the room a write needs on the cache's disk.
 *
 * Data model
 *   A read or a write of a file is cut into its blocks; each block is
 *   read from or written into the cache file of its entry, pinned
 *   meanwhile (entry_acquire(): loaded from the store unless a write
 *   covers the whole block).  A block the index has no content for reads
 *   as zeros without an entry (a hole; on a follower, a row without
 *   content is the writer's dirty block: -EAGAIN), and small files may
 *   live inline in the
 *   index instead (cache_inline_on()).  For a dirty entry, writes record
 *   the range they covered (cov_lo, cov_hi: a block written whole goes up
 *   early, see pick_upload()) and the pages they touched (dmap: what a
 *   patch would hold).
 *
 * Invariants
 *   1. A write to blocks returns success only once its bytes are in the
 *      cache files and the index has recorded it (write_done, or
 *      inline_to_block for an inline file moving to block 0).
 *   2. A block turns DIRTY in memory and in the index within one
 *      commit_lock section (invariant 3 of cache.c).
 *   3. A write whose block a truncate or punch dropped after the write
 *      pinned it writes again into what the file holds now: its bytes
 *      never end in a file nobody keeps.
 *   4. A write waits while its blocks would take the dirty data past
 *      cache_size (-ENOSPC after two minutes), and fails at once with
 *      -ENOSPC when the cache disk is short of the reserve kept for the
 *      metadata beside it.
 *
 * Locks: commit_lock, then lock, in write_blocks(); lock alone elsewhere.
 */
#include "util/compat.h"

#include <pthread.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache_int.h"
#include "util/log.h"
#include "util/util.h"

/* ---- reads ---- */

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
		cached = cache_table_find(c, ino, idx) != NULL;
		pthread_mutex_unlock(&c->lock);
		if (!cached && idx == 0 && cache_inline_on(c)) {
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
			if (rc == 0 && !hash[0] && cache_inline_on(c)) {
				/* dirty, so cached (a block 0 that was
				 * inline a moment ago included) */
				pthread_mutex_lock(&c->lock);
				cached = cache_table_find(c, ino, idx) != NULL;
				pthread_mutex_unlock(&c->lock);
			}
			if (!cached && rc == 0 && !hash[0] &&
			    c->cfg.follower) {
				/* a row without content: the writer's block,
				 * dirty in its cache only (cache.h) */
				rc = -EAGAIN;
				break;
			}
			if (!cached &&
			    (rc == -ENOENT || (rc == 0 && !hash[0]))) {
				memset(dst, 0, blen);
				rc = 0;
				goto next;
			}
			if (rc)
				break;
		}
		atomic_fetch_add_explicit(cached ? &c->read_hits :
						   &c->read_misses,
					  1, memory_order_relaxed);
		rc = entry_acquire(c, ino, idx, true, &e);
		if (rc)
			break;
		if (pos == off)
			cache_read_ahead(c, ino, idx, file_size);
		rc = entry_get_fd(c, e, &fd);
		if (rc == 0) {
			rc = cache_pread_zero(fd, dst, blen, (off_t)boff);
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
	/*
	 * A block that cannot be read fails the whole read, even after
	 * blocks that could: the kernel takes a short read of a FUSE file
	 * for its end (and shrinks its idea of the size), so returning
	 * the bytes before the bad block would let a reader see a file cut
	 * short, without an error.
	 */
	if (rc)
		return rc;
	return (ssize_t)(pos - off);
}

/* ---- room on the cache disk ---- */

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
		cache_evict_to(c, 0);
		if (disk_free(c) < need + reserve) {
			log_error("cache disk of %s is full: write refused",
				  c->blocks_dir);
			return -ENOSPC;
		}
	}
	cache_evict_some(c);
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
	cache_evict_some(c);
	return rc;
}

/* ---- writes ---- */

/* Write len bytes at boff of pinned entry e's file. */
static int write_entry(struct cache *c, struct centry *e, const void *data,
		       size_t len, uint64_t boff)
{
	int fd, rc = entry_get_fd(c, e, &fd);

	if (rc)
		return rc;
	rc = cache_pwrite(fd, data, len, (off_t)boff);
	entry_put_fd(c, e, fd);
	return rc;
}

/* Record that [lo, hi) of e's block was written (fresh: e was clean, its
 * file the uploaded content).  Returns how many of its pages were not
 * written before (all of them where e's pages are not tracked).  Called
 * with lock held. */
static uint32_t dmap_mark(struct cache *c, struct centry *e, bool fresh,
			  uint32_t lo, uint32_t hi)
{
	uint32_t pg, n = 0;

	if (fresh) {
		e->dmap_ok = true;
		if (e->dmap)
			memset(e->dmap, 0,
			       cache_dmap_words(c) * sizeof(*e->dmap));
	}
	if (hi <= lo)
		return 0;
	if (e->dmap_ok && !e->dmap) {
		e->dmap = calloc(cache_dmap_words(c), sizeof(*e->dmap));
		if (!e->dmap)
			e->dmap_ok = false; /* uploaded whole */
	}
	for (pg = lo / DMAP_PAGE; pg <= (hi - 1) / DMAP_PAGE; pg++) {
		uint64_t bit = (uint64_t)1 << (pg % 64);

		if (!e->dmap_ok) {
			n++;
		} else if (!(e->dmap[pg / 64] & bit)) {
			e->dmap[pg / 64] |= bit;
			n++;
		}
	}
	return n;
}

/*
 * Record that [lo, hi) of e's block was written (fresh: e was clean, the
 * range starts anew).  True when the block thereby became written whole.
 * Called with lock held.
 */
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

/*
 * The blocks of one write, as write_blocks() takes them through its
 * steps: ents[0, got) pinned (and written); marked[0, nmarked) the
 * blocks among them that were clean, for the index to mark dirty.
 */
struct write_set {
	uint64_t ino, off, first, n; /* blocks first to first + n - 1 */
	const uint8_t *src;
	size_t len;
	struct centry **ents;
	uint64_t *marked;
	bool *was_clean;
	size_t nmarked, got;
	bool became_whole;        /* a block is written whole now */
	struct centry *stack_e[8];
	uint64_t stack_idx[8];
	bool stack_was[8];
};

static int write_set_init(struct cache *c, struct write_set *w,
			  uint64_t ino, uint64_t off, const void *data,
			  size_t len)
{
	uint64_t bs = c->cfg.block_size;

	w->ino = ino;
	w->off = off;
	w->src = data;
	w->len = len;
	w->first = off / bs;
	w->n = (off + len - 1) / bs - w->first + 1;
	w->ents = w->stack_e;
	w->marked = w->stack_idx;
	w->was_clean = w->stack_was;
	w->nmarked = w->got = 0;
	w->became_whole = false;
	if (w->n <= ARRAY_SIZE(w->stack_e))
		return 0;
	w->ents = calloc(w->n, sizeof(*w->ents));
	w->marked = calloc(w->n, sizeof(*w->marked));
	w->was_clean = calloc(w->n, sizeof(*w->was_clean));
	if (!w->ents || !w->marked || !w->was_clean)
		return -ENOMEM;
	return 0;
}

static void write_set_free(struct write_set *w)
{
	if (w->ents != w->stack_e) {
		free(w->ents);
		free(w->marked);
		free(w->was_clean);
	}
}

/* Pin the blocks of w in order and write each one's part into its file;
 * w->got: how many are pinned.  A cache disk full (-ENOSPC) evicts the
 * clean blocks and tries the block once more.  Called without lock. */
static int write_fill(struct cache *c, struct write_set *w)
{
	uint64_t bs = c->cfg.block_size, i;
	int rc = 0;

	for (i = 0; i < w->n; i++) {
		uint64_t pos = i == 0 ? w->off : (w->first + i) * bs;
		uint64_t boff = pos % bs;
		size_t blen = (size_t)MF_MIN(bs - boff, w->off + w->len - pos);
		bool whole = boff == 0 && blen == bs;
		int tries;

		for (tries = 0; tries < 2; tries++) {
			/* a retry after a failed write_entry() must write
			 * again, not stop at the error it retries */
			rc = 0;
			if (w->got == i) {
				rc = entry_acquire(c, w->ino, w->first + i,
						   !whole, &w->ents[i]);
				if (rc == 0)
					w->got++;
			}
			if (rc == 0)
				rc = write_entry(c, w->ents[i],
						 w->src + (pos - w->off), blen,
						 boff);
			if (rc != -ENOSPC || tries)
				break;
			/* the cache disk is full: clean blocks can go */
			cache_evict_to(c, 0);
		}
		if (rc)
			break;
	}
	return rc;
}

/* The range [*lo, *hi) of block i of w (0: the first) that w writes. */
static void write_span(const struct cache *c, const struct write_set *w,
		       uint64_t i, uint32_t *lo, uint32_t *hi)
{
	uint64_t bs = c->cfg.block_size;
	uint64_t pos = i == 0 ? w->off : (w->first + i) * bs;
	uint64_t boff = pos % bs;

	*lo = (uint32_t)boff;
	*hi = (uint32_t)MF_MIN(bs, boff + w->off + w->len - pos);
}

/* Called with lock held: count the write in each pinned entry (its
 * version, the range and pages it covered, and in dirty_data where it
 * is dirty already) and list the blocks that were clean. */
static void write_count_locked(struct cache *c, struct write_set *w)
{
	uint64_t bs = c->cfg.block_size, i;

	for (i = 0; i < w->got; i++) {
		struct centry *e = w->ents[i];
		uint32_t boff, bend, pages;
		uint64_t acct;
		bool fresh;

		write_span(c, w, i, &boff, &bend);
		e->version++;
		fresh = w->was_clean[i] = e->state != CE_DIRTY;
		if (fresh)
			w->marked[w->nmarked++] = e->idx;
		if (cover(e, fresh, boff, bend, bs)) {
			w->became_whole = true;
			if (!fresh) /* fresh: write_mark_dirty_locked() */
				hurry_add(c, e);
		}
		/* counted in dirty_data once the entry is DIRTY (MF_MIN
		 * evaluates its arguments twice: dmap_mark() goes first) */
		pages = dmap_mark(c, e, fresh, boff, bend);
		acct = (fresh ? 0 : e->dirty_acct) +
		       (uint64_t)DMAP_PAGE * pages;
		acct = MF_MIN(bs, acct);
		if (!fresh)
			c->dirty_data += acct - e->dirty_acct;
		e->dirty_acct = (uint32_t)acct;
	}
}

/* Called with lock held, once the index recorded the write (rc 0) or
 * failed to (rc < 0): the blocks that were clean turn DIRTY, or are
 * dropped, their files no longer matching the store. */
static void write_mark_dirty_locked(struct cache *c, struct write_set *w,
				    int rc)
{
	size_t i;

	uint64_t due = UINT64_MAX;

	for (i = 0; i < w->got; i++) {
		struct centry *e = w->ents[i];

		if (!w->was_clean[i] || !e->in_table)
			continue;
		if (rc) {
			/* the file no longer matches the store: forget it */
			cache_table_remove(c, e);
			continue;
		}
		elist_del(&c->lru, e);
		e->state = CE_DIRTY;
		e->dirty_since_ns = now_mono_ns();
		elist_add_tail(&c->dirty, e);
		c->dirty_bytes += c->cfg.block_size;
		c->dirty_data += e->dirty_acct; /* write_count_locked() */
		if (entry_whole(c, e))
			hurry_add(c, e);
		due = e->dirty_since_ns + c->cfg.writeback_delay_ns;
	}
	/* workers sleeping learn of what falls due before they wake by
	 * themselves (upload_sleep_locked()) */
	if ((w->nmarked && due < c->wake_at_ns) || w->became_whole ||
	    dirty_pressure(c))
		pthread_cond_broadcast(&c->work_cond);
}

/* Unpin the entries of w. */
static void write_unpin(struct cache *c, struct write_set *w)
{
	for (size_t i = 0; i < w->got; i++)
		entry_release(c, w->ents[i]);
	w->got = 0;
}

/*
 * Write [off, off+len) of ino into its blocks' cache files and record the
 * write in the index; from_inline: the data of an inline file moving to
 * block 0 (the index drops it and marks block 0 dirty in one
 * transaction).
 *
 * Returns len, or -errno (-ENOSPC: no room, see wait_for_room()): then
 * the index has not recorded the write; the blocks it found clean are
 * dropped, those already dirty keep what was written into them (their
 * next upload sends it).
 *
 * Called with no lock held.  Pins the blocks, loading those it writes in
 * part, and writes their files without a lock; then holds commit_lock,
 * and lock except across the index's call, while it counts the write in
 * the entries and the index records it, so that a block turns dirty in
 * memory and in the index together.
 */
static ssize_t write_blocks(struct cache *c, uint64_t ino, uint64_t off,
			    const void *data, size_t len, bool from_inline)
{
	struct write_set w;
	int rc;

	if (len == 0)
		return 0;
	rc = write_set_init(c, &w, ino, off, data, len);
	if (rc == 0)
		rc = wait_for_room(c, w.n);
	if (rc)
		goto out_free;
again:
	rc = write_fill(c, &w);
	pthread_mutex_lock(&c->commit_lock);
	pthread_mutex_lock(&c->lock);
	if (rc == 0 && any_dropped(w.ents, w.got)) {
		/*
		 * A truncate or punch dropped one of the blocks after this
		 * write pinned it: its bytes went into a file nobody keeps.
		 * The drop came first, so write again into what the file
		 * holds now (every drop holds commit_lock: once it is held,
		 * the entries stay).
		 */
		pthread_mutex_unlock(&c->lock);
		pthread_mutex_unlock(&c->commit_lock);
		write_unpin(c, &w);
		goto again;
	}
	write_count_locked(c, &w);
	pthread_mutex_unlock(&c->lock);
	if (rc == 0 && from_inline)
		rc = c->ops->inline_to_block(c->index_arg, ino);
	else if (rc == 0)
		rc = c->ops->write_done(c->index_arg, ino, off + len, w.marked,
					w.nmarked);
	pthread_mutex_lock(&c->lock);
	write_mark_dirty_locked(c, &w, rc);
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->commit_lock);
	write_unpin(c, &w);
out_free:
	write_set_free(&w);
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
	if (len && cache_inline_on(c)) {
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
