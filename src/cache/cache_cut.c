/*
 * cache_cut.c - truncate, punch, replace and forget: the cache's side
 * of a file that shrinks or grows (cache_truncate()), loses a range
 * (cache_punch()), gets whole blocks of another file (cache_replace(),
 * for clones), or goes away (cache_forget_inode()).
 *
 * Data model
 *   A cut zeroes, in the entry's cache file, the part of a block it
 *   leaves in the file (the new last block of a shrink; the head and tail
 *   blocks a punch covers in part), which makes the block dirty with its
 *   cut_version set (mark_dirty_committing()); it drops the entries of
 *   the blocks it covers whole: out of the table at once, freed when
 *   their last pin goes (drop_range_locked(), destroy_chain()).  The
 *   caller's apply callback changes the index meanwhile.
 *
 * Invariants
 *   1. Every drop happens under commit_lock, as do a cut's zeroing, its
 *      marking dirty and its apply: while a write or an upload holds
 *      commit_lock, the entries it pins stay in the table or out of it
 *      (eviction takes only unpinned entries).
 *   2. A block a cut zeroed goes up whole (dmap_ok false), and the
 *      journal's barrier (cache_cut_barrier() in cache_upload.c) waits
 *      until the index names its cut content (cut_version).
 *   3. No truncate or punch starts while the barrier is up (cut_enter()),
 *      and the barrier waits for those already past it (c->cutting).
 *   4. A dropped entry never comes back: a write that raced with the drop
 *      writes again (write_blocks()), a load never joins the cache
 *      (entry_loaded()), an upload records nothing (upload_record()).
 *
 * Locks: commit_lock, then lock; lock alone at the barrier.
 */
#include "util/compat.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache_int.h"
#include "util/util.h"

/* Drop the entries of ino for blocks [first, last] (last inclusive;
 * the table is scanned instead of looked up block by block when it has
 * fewer entries than that).  Returns those nobody uses any more, chained
 * through hnext, for destroy_chain() after unlocking.  Called with lock
 * held. */
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
				cache_table_remove(c, e);
				if (e->refs == 0 && !e->uploading) {
					e->hnext = dead;
					dead = e;
				}
			}
		}
		return dead;
	}
	for (i = first; i <= last; i++) {
		e = cache_table_find(c, ino, i);
		if (!e)
			continue;
		cache_table_remove(c, e);
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

/* Zero [from, to) within block e (to == block end: cut the file).  A
 * truncate or punch holds commit_lock and then records the block as dirty
 * (recovery calls it too, at open, with no other thread running). */
int cache_zero_in_block(struct cache *c, struct centry *e, uint64_t from,
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
			cache_table_remove(c, e);
		} else {
			elist_del(&c->lru, e);
			e->state = CE_DIRTY;
			e->dirty_since_ns = now_mono_ns();
			elist_add_tail(&c->dirty, e);
			c->dirty_bytes += c->cfg.block_size;
			/* what changed is not known page by page */
			e->dirty_acct = (uint32_t)c->cfg.block_size;
			c->dirty_data += e->dirty_acct;
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
	cached = cache_table_find(c, ino, idx) != NULL;
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
		rc = cache_zero_in_block(c, tail, new_size % bs, bs);
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
	if (!rc && cache_inline_on(c))
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
	if (cache_inline_on(c)) {
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

		rc = cache_zero_in_block(c, head, off % bs, to);
		if (!rc)
			rc = mark_dirty_committing(c, head);
	}
	if (!rc && tail) {
		rc = cache_zero_in_block(c, tail, 0, end % bs);
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

void cache_forget_range(struct cache *c, uint64_t ino, uint64_t first,
			uint64_t last)
{
	struct centry *dead;

	pthread_mutex_lock(&c->commit_lock);
	pthread_mutex_lock(&c->lock);
	dead = drop_range_locked(c, ino, first, last);
	pthread_cond_broadcast(&c->state_cond);
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->commit_lock);
	destroy_chain(c, dead);
}

int cache_replace(struct cache *c, uint64_t ino, uint64_t first,
		  uint64_t last, int (*apply)(void *), void *apply_arg)
{
	struct centry *dead = NULL;
	int rc;

	/* the index first: when it refuses, the cached blocks stay */
	pthread_mutex_lock(&c->commit_lock);
	rc = apply(apply_arg);
	if (!rc) {
		pthread_mutex_lock(&c->lock);
		dead = drop_range_locked(c, ino, first, last);
		pthread_cond_broadcast(&c->state_cond);
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&c->commit_lock);
	destroy_chain(c, dead);
	return rc;
}
