/*
 * cache_upload.c - the upload workers, which send dirty blocks to the
 * store and record them in the index, and the flushes that wait for them
 * (cache_flush_inode(), cache_flush_all(), and the journal's barrier,
 * cache_cut_barrier()).
 *
 * Data model
 *   Dirty entries wait on c->dirty.  A worker picks the first one due
 *   (pick_upload(): writeback_delay after it became dirty; at once under
 *   pressure, when flushed, or when written whole past whole_after),
 *   marks it uploading and uploads the version it holds then
 *   (upload_one()): the pages written since its last upload as a patch
 *   on its chain (build_patch(), while the chain is short: PATCH_MAX,
 *   PATCH_SHARE), or else the whole block, as an object named by the
 *   hash of its content; an all-zero block becomes a hole, and an object
 *   the index knows already is not sent again.  Each worker keeps its
 *   buffers for its life in a struct uploader, and, where the store
 *   stages puts (the local store), a put batch (store.h): it stages the
 *   uploads due one after the other, up to UPLOAD_BATCH, and when no
 *   more are due syncs them together and records each (batch_finish()).
 *   A flush pins the entries it waits for, marked urgent, in a struct
 *   flush_set.
 *
 * Invariants
 *   1. One worker at a time uploads an entry (uploading), and pins it
 *      meanwhile.
 *   2. An upload takes its version under commit_lock, and records its
 *      commit in the index and in memory in one commit_lock section: the
 *      entry turns CLEAN only if no write came since that version.
 *   3. An upload whose entry was dropped meanwhile records nothing in
 *      the index (the block's row, if any, is a newer entry's): its
 *      object is only noted for the garbage collector.
 *   4. While an upload decides to reuse an object or sends it, it holds a
 *      claim on its name (cache_claim()): the collector leaves it alone.
 *   5. A failed upload leaves its entry DIRTY with the pages it took
 *      (dmap_give_back()), to be retried after a backoff (0.5 s, doubled
 *      each time up to 30 s); a flush waiting for it returns the error.
 *   6. A staged upload is recorded in the index only after its batch's
 *      sync made its object durable, and not when the sync failed for
 *      it; until then its entry stays uploading and pinned, and its
 *      name claimed.
 *
 * Locks: commit_lock, then lock, where an upload takes its version and
 * records its commit, and in check_dirty(); lock alone elsewhere;
 * neither across a store call.
 */
#include "util/compat.h"

#include <pthread.h>
#include <time.h>

#include "cache/cache_int.h"
#include "util/log.h"
#include "util/util.h"

/*
 * When a dirty block goes up as a patch instead of whole: while its
 * chain has fewer than PATCH_MAX patches and all of them, this one
 * included, hold at most a quarter of a block (so a cold read of a block
 * fetches at most 1.25 block's worth of objects).
 */
#define PATCH_MAX 8
#define PATCH_SHARE 4

/*
 * The most uploads a worker stages before it syncs them (where the store
 * stages puts: the local store); it syncs sooner when no more are due.
 */
#define UPLOAD_BATCH 16

static bool all_zero(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* One upload of an entry, as upload_one() takes it through its steps. */
struct upload {
	struct centry *e;
	uint64_t v;               /* the version uploaded */
	uint64_t *snap;           /* the entry's dmap, taken over */
	bool snap_ok;
	uint8_t *block;           /* what goes up: a patch, or the block */
	size_t blen;              /* the block's bytes within the file */
	size_t plen;              /* the patch's bytes (0: whole block) */
	bool whole;               /* block is read into u->enc's payload */
	char below[BLOB_NAME_LEN + 1]; /* what the patch applies to */
	char hash[BLOB_NAME_LEN + 1];
	bool claimed;             /* a claim on hash is held */
	bool dedup;               /* the index knows the object already */
	bool staged;              /* in the batch, waiting for its sync */
	uint64_t obj_size;        /* the encoded bytes put (0: none) */
};

/* What an upload worker keeps for its life: its buffers, and the uploads
 * staged in its batch (n of them, max at once: 1 where the store does
 * not stage puts). */
struct uploader {
	uint8_t *block;          /* a block, or a patch (at most a block) */
	struct buf enc;          /* the encoded object */
	struct patch_chain chain;
	struct patch_ext *ext;   /* room for a patch's extents */
	struct store_batch *batch;
	struct upload ups[UPLOAD_BATCH];
	int results[UPLOAD_BATCH];
	size_t n, max;
};

static void uploader_free(struct uploader *u)
{
	size_t i;

	buf_free(&u->enc);
	free(u->block);
	free(u->ext);
	for (i = 0; i < UPLOAD_BATCH; i++)
		free(u->ups[i].snap);
	store_batch_free(u->batch);
}

static int uploader_init(struct cache *c, struct uploader *u)
{
	size_t npages = c->cfg.block_size / DMAP_PAGE, i;
	bool ok;

	memset(u, 0, sizeof(*u));
	u->enc = (struct buf)BUF_INIT;
	u->block = malloc(c->cfg.block_size);
	u->ext = calloc(npages, sizeof(*u->ext));
	u->max = store_batch_native(c->store) ? UPLOAD_BATCH : 1;
	ok = u->block && u->ext && !store_batch_new(c->store, &u->batch);
	for (i = 0; ok && i < UPLOAD_BATCH; i++) {
		u->ups[i].snap = calloc(cache_dmap_words(c), sizeof(uint64_t));
		ok = u->ups[i].snap != NULL;
	}
	/* page-aligned, so that a local store can write it with O_DIRECT */
	if (!ok || buf_init_aligned(&u->enc, STORE_DIRECT_ALIGN,
				    blob_encoded_max(c->blob,
						     c->cfg.block_size))) {
		uploader_free(u);
		return -ENOMEM;
	}
	return 0;
}

/*
 * With lock held: the upload of e takes over the pages written so far
 * (writes from now on mark a fresh map, relative to what this upload
 * commits), or gives them back when it failed (dmap_give_back()).
 */
static void dmap_take(struct cache *c, struct centry *e, struct upload *u)
{
	size_t words = cache_dmap_words(c);

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
			   const struct upload *u, int rc)
{
	size_t words = cache_dmap_words(c), i;

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

/* ---- one upload ---- */

/*
 * Build in u->block a patch of e's pages in u->snap over the chain's top,
 * for a block of blen bytes.  Returns its size, or 0 when the block
 * should go up whole (no chain to patch, too many patches, too much
 * patched) or the file could not be read (*rc).
 */
static size_t build_patch(struct cache *c, struct upload *up, int fd,
			  size_t blen, struct uploader *u, int *rc)
{
	struct patch_chain *ch = &u->chain;
	struct centry *e = up->e;
	uint32_t bs = c->cfg.block_size, npages = bs / DMAP_PAGE, pg;
	size_t n = 0, data = 0, pos;
	uint64_t limit = bs / PATCH_SHARE;

	*rc = 0;
	if (!up->snap_ok || !c->cfg.patches || !c->ops->block_chain ||
	    !c->ops->block_patch)
		return 0;
	/* too many pages written for a patch (a sequential writer): no need
	 * to ask the index */
	for (pg = 0; pg < (npages + 63) / 64; pg++)
		data += (size_t)__builtin_popcountll(up->snap[pg]) * DMAP_PAGE;
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

		if (!(up->snap[pg / 64] >> (pg % 64) & 1) || off >= blen)
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
	snprintf(up->below, sizeof(up->below), "%s",
		 ch->n ? ch->patch[ch->n - 1] : ch->base);
	*rc = patch_write_header(u->block, up->below, (uint32_t)blen, u->ext,
				 n);
	for (size_t i = 0; !*rc && i < n; i++) {
		*rc = cache_pread_zero(fd, u->block + pos, u->ext[i].len,
				 (off_t)u->ext[i].off);
		pos += u->ext[i].len;
	}
	return *rc ? 0 : pos;
}

/* Read what goes up of up->e's block: its bytes within the file's size,
 * as a patch when build_patch() makes one, else whole, into the room
 * of u->enc's payload.  Called without lock. */
static int upload_read(struct cache *c, struct uploader *u,
		       struct upload *up)
{
	struct centry *e = up->e;
	uint64_t bs = c->cfg.block_size, size;
	int rc, fd = -1;

	rc = c->ops->file_size(c->index_arg, e->ino, &size);
	if (rc == -ENOENT) {
		size = 0;
		rc = 0;
	}
	if (rc)
		return rc;
	if (size > e->idx * bs)
		up->blen = (size_t)MF_MIN(bs, size - e->idx * bs);
	if (!up->blen)
		return 0;
	rc = entry_get_fd(c, e, &fd);
	if (rc)
		return rc;
	up->plen = build_patch(c, up, fd, up->blen, u, &rc);
	if (!rc && !up->plen) {
		/* read where the object's payload goes */
		buf_reset(&u->enc);
		up->block = u->enc.data + BLOB_HEADER_SIZE;
		up->whole = true;
		rc = cache_pread_zero(fd, up->block, up->blen, 0);
	}
	entry_put_fd(c, e, fd);
	return rc;
}

/*
 * cache_claim() without the wait: false when another holds the claim on
 * hash (or memory runs out).  A worker with uploads staged claims no
 * other way: waiting then, for a claim that another worker's batch
 * holds while it waits for one of ours, would never end.
 */
static bool claim_try(struct cache *c, const char *hash)
{
	bool ok;
	size_t i;

	pthread_mutex_lock(&c->lock);
	for (i = 0; i < c->nclaims; i++)
		if (!strcmp(c->claims[i], hash))
			break;
	if (i == c->nclaims && c->nclaims == c->capclaims) {
		size_t ncap = c->capclaims ? c->capclaims * 2 : 16;
		void *p = realloc(c->claims, ncap * sizeof(*c->claims));

		if (p) {
			c->claims = p;
			c->capclaims = ncap;
		}
	}
	ok = i == c->nclaims && c->nclaims < c->capclaims;
	if (ok)
		memcpy(c->claims[c->nclaims++], hash, BLOB_NAME_LEN + 1);
	pthread_mutex_unlock(&c->lock);
	return ok;
}

static void log_put_failed(const struct upload *up, const char *key,
			   int rc)
{
	log_error("upload of block %" PRIu64 " of inode %" PRIu64
		  " (%s) failed: %s", up->e->idx, up->e->ino, key,
		  strerror(-rc));
}

/* Send what upload_read() read, as an object named by its content and
 * claimed from then on (up->claimed: the caller unclaims it), unless it
 * is all zeros (a hole) or the index knows the object (up->dedup).  With
 * stage, into the worker's batch (up->staged): durable only after its
 * sync; -EAGAIN when the batch must be synced first (claim_try()).
 * Called without lock. */
static int upload_put(struct cache *c, struct uploader *u,
		      struct upload *up, bool stage)
{
	char key[BLOB_DATA_KEY_LEN + 1];
	struct buf *enc = &u->enc;
	size_t len = up->plen ? up->plen : up->blen;
	int rc;

	if (!up->plen && (!up->blen || all_zero(up->block, up->blen)))
		return 0;
	blob_name(c->blob, up->block, len, up->hash);
	if (stage && u->n) {
		if (!claim_try(c, up->hash))
			return -EAGAIN;
	} else {
		cache_claim(c, up->hash);
	}
	up->claimed = true;
	if (c->ops->object_known(c->index_arg, up->hash) == 1) {
		up->dedup = true;
		return 0;
	}
	if (up->whole) {
		rc = blob_encode_named_in_place(c->blob, enc, len, u->block,
						c->cfg.block_size);
	} else {
		buf_reset(enc);
		rc = blob_encode_named(c->blob, up->block, len, enc);
	}
	if (rc)
		return rc;
	blob_data_key(up->hash, key);
	up->obj_size = enc->len;
	if (stage) {
		rc = store_batch_put(u->batch, key, enc->data, enc->len);
		up->staged = rc == 0;
		return rc;
	}
	rc = store_put(c->store, key, enc->data, enc->len);
	if (rc) {
		log_put_failed(up, key, rc);
		up->obj_size = 0;
	}
	return rc;
}

/*
 * Called with commit_lock held: record the upload in the index, as a
 * patch on the chain's top or as the block's content (still: written
 * since the version uploaded, the block stays dirty there).  -ESTALE
 * when the entry is no longer current (dropped meanwhile).
 */
static int upload_record(struct cache *c, const struct upload *up,
			 bool still, bool current)
{
	struct centry *e = up->e;
	int rc;

	if (current && up->plen) {
		rc = c->ops->block_patch(c->index_arg, e->ino, e->idx,
					 up->below, up->hash, up->obj_size,
					 still);
		if (rc == -EILSEQ)
			log_warn("block %" PRIu64 " of inode %" PRIu64
				 " changed in the index while its patch went"
				 " up; it is uploaded whole", e->idx, e->ino);
		return rc;
	}
	if (current)
		return c->ops->block_commit(c->index_arg, e->ino, e->idx,
					    up->claimed ? up->hash : NULL,
					    up->obj_size, still);
	/*
	 * Dropped while it uploaded (punch, truncate, delete; every drop
	 * holds commit_lock).  The index row of this block, if there is
	 * one now, belongs to a newer entry written since: committing our
	 * content to it would mark that entry's data clean with our stale
	 * object, and its own commit would then be refused as stale.  Only
	 * record the object, so the collector deletes it.
	 */
	if (up->claimed && !up->dedup && c->ops->object_note)
		c->ops->object_note(c->index_arg, up->hash, up->obj_size);
	return -ESTALE;
}

/* Called with commit_lock and lock held, rc what upload_record() said:
 * count the upload and, unless a write came since its version (still),
 * turn the entry CLEAN. */
static int upload_settle_locked(struct cache *c, struct upload *up, int rc,
				bool still)
{
	struct centry *e = up->e;

	if (rc == 0 || rc == -ESTALE) {
		e->committed_version = up->v;
		c->stats.uploads++;
		c->stats.upload_bytes += up->obj_size;
		if (up->dedup)
			c->stats.dedup_hits++;
		if (up->plen)
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
		cache_table_remove(c, e);
		rc = 0;
	} else if (rc == -ESTALE) {
		rc = 0;
	}
	if (rc == 0 && !still && e->state == CE_DIRTY) {
		elist_del(&c->dirty, e);
		hurry_del(c, e);
		c->dirty_bytes -= c->cfg.block_size;
		c->dirty_data -= e->dirty_acct;
		e->state = CE_CLEAN;
		/* a flush that came during the upload marked it urgent;
		 * kept, that flag sent the block's next write up at once */
		e->urgent = false;
		elist_add_tail(&c->lru, e);
	}
	return rc;
}

/* Record the upload and settle the entry, in one commit_lock section
 * with the look at whether a write came since (invariant 2). */
static int upload_commit(struct cache *c, struct upload *up)
{
	bool still, current;
	int rc;

	pthread_mutex_lock(&c->commit_lock);
	pthread_mutex_lock(&c->lock);
	still = up->e->version != up->v;
	current = up->e->in_table;
	pthread_mutex_unlock(&c->lock);
	rc = upload_record(c, up, still, current);
	pthread_mutex_lock(&c->lock);
	rc = upload_settle_locked(c, up, rc, still);
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->commit_lock);
	return rc;
}

/* Record a put that ended with rc (durable when 0), and let go of its
 * claim.  Called without lock. */
static int upload_end(struct cache *c, struct upload *up, int rc)
{
	if (rc == 0)
		rc = upload_commit(c, up);
	if (up->claimed)
		cache_unclaim(c, up->hash);
	up->claimed = false;
	return rc;
}

/*
 * Upload the content of up->e as of version up->v and record it in the
 * index: the pages written since the last upload as a patch
 * (build_patch()), or the whole block.  With stage, a put that goes to
 * the batch returns 0 with up->staged set: upload_end() records it after
 * the batch's sync.  Called by a worker that set e->uploading, pinned e
 * and took over its dmap into up (upload_start()), without lock.
 * -EILSEQ: the chain changed under the patch (go whole).
 */
static int upload_one(struct cache *c, struct uploader *u, struct upload *up,
		      bool stage)
{
	int rc;

	up->block = u->block;
	up->blen = up->plen = up->obj_size = 0;
	up->whole = up->claimed = up->dedup = up->staged = false;
	rc = upload_read(c, u, up);
	if (rc == 0)
		rc = upload_put(c, u, up, stage);
	if (rc == 0 && up->staged)
		return 0;
	return upload_end(c, up, rc);
}

/* An upload's end, rc its put's or its record's: once more whole when
 * its patch's chain changed meanwhile (put at once). */
static int upload_retry(struct cache *c, struct uploader *u,
			struct upload *up, int rc)
{
	if (rc != -EILSEQ)
		return rc;
	up->snap_ok = false;
	return upload_one(c, u, up, false);
}

/* ---- the workers ---- */

/* Whether e is due for upload at now: writeback_delay after it became
 * dirty, at once when now (but not before a retry's time); else lowers
 * *best_wait to when it will be. */
static bool upload_due(const struct centry *e, uint64_t delay, bool now_due,
		       uint64_t now, uint64_t *best_wait)
{
	uint64_t due = now_due ? 0 : e->dirty_since_ns + delay;

	if (e->retry_at_ns > due)
		due = e->retry_at_ns;
	if (due <= now)
		return true;
	if (due - now < *best_wait)
		*best_wait = due - now;
	return false;
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
	uint64_t delay = c->cfg.writeback_delay_ns;
	bool pressure = dirty_pressure(c) || c->flushers;
	bool early = c->dirty_data > c->cfg.whole_after;
	struct centry *e, *next;

	/* the entries a flush waits for and those written whole, wherever
	 * they are on the dirty list; off hurry once they are neither */
	for (e = c->hurry.head; e; e = next) {
		next = e->hurry_next;
		if (!e->urgent && !entry_whole(c, e)) {
			hurry_del(c, e);
			continue;
		}
		if (!e->uploading &&
		    upload_due(e, delay, pressure || e->urgent || early,
			       now, &best_wait))
			return e; /* early: it is urgent, or else whole */
	}
	/*
	 * The others, by when they became dirty: once one is not due by
	 * time, none after it is (this scan went on to the end of the list
	 * before, for every upload, past thousands of small files of an
	 * untar not yet due, to reach the blocks written whole).  One
	 * waiting to be retried may stand before others due sooner.
	 */
	for (e = c->dirty.head; e; e = e->next) {
		bool hurried = e->urgent || entry_whole(c, e);

		if (e->uploading || e->in_hurry)
			continue;
		if (upload_due(e, delay, pressure || e->urgent ||
			       (early && entry_whole(c, e)), now, &best_wait))
			return e;
		if (!pressure && !hurried &&
		    e->retry_at_ns <= e->dirty_since_ns + delay)
			break;
	}
	*wait_ns = best_wait;
	return NULL;
}

/*
 * Called with lock held: sleep until something may be due, wait_ns at
 * most (UINT64_MAX: until woken), and never more than a second.  A timed
 * sleep lowers c->wake_at_ns to its end, so that a write whose block
 * falls due later wakes no one (each wake-up scans the dirty list: woken
 * by every small file of an untar, the workers scanned thousands of
 * entries each time, 12% of the daemon's CPU); any wake-up forgets it
 * again, which can only cost a wake-up more.
 */
static void upload_sleep_locked(struct cache *c, uint64_t wait_ns)
{
	struct timespec ts;
	uint64_t end;

	if (wait_ns == UINT64_MAX) {
		pthread_cond_wait(&c->work_cond, &c->lock);
		c->wake_at_ns = UINT64_MAX;
		return;
	}
	if (wait_ns > 1000000000ULL)
		wait_ns = 1000000000ULL;
	end = now_mono_ns() + wait_ns;
	if (end < c->wake_at_ns)
		c->wake_at_ns = end;
	ts.tv_sec = (time_t)(end / 1000000000ULL);
	ts.tv_nsec = (long)(end % 1000000000ULL);
	pthread_cond_timedwait(&c->work_cond, &c->lock, &ts);
	c->wake_at_ns = UINT64_MAX;
}

/* Called with lock held, returns without: start the upload of e (pinned,
 * uploading, its pages and the version it uploads taken into up). */
static void upload_start(struct cache *c, struct centry *e,
			 struct upload *up)
{
	e->uploading = true;
	c->uploading++;
	e->refs++;
	/*
	 * The version is taken under commit_lock: a write counts itself in
	 * it, then records the file's new size in the index, both under
	 * commit_lock.  Taken between the two, upload_one() read the old
	 * size, cut the block there, and the commit, its version covering
	 * the write, marked it clean: the grown part never went up.
	 */
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_lock(&c->commit_lock);
	pthread_mutex_lock(&c->lock);
	up->e = e;
	up->v = e->version;
	/* taken now, not after the upload: a flush that comes while it
	 * runs (for a write after v) marks the entry urgent again, and
	 * clearing that afterwards left the flush waiting for
	 * writeback_delay */
	e->urgent = false;
	dmap_take(c, e, up);
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->commit_lock);
}

/* Called with lock held (dropped meanwhile): the upload of e ended with
 * rc.  A failure keeps its pages and sets its retry; e is unpinned, and
 * the waiting flushes are told. */
static void upload_done_locked(struct cache *c, struct centry *e,
			       const struct upload *u, int rc)
{
	bool destroy;

	e->uploading = false;
	c->uploading--;
	if (rc) {
		dmap_give_back(c, e, u, rc);
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
		/* a block that became clean may be evicted now, before a
		 * flush waiting for it is told: when a flush returns, the
		 * cache is back within its size */
		pthread_mutex_unlock(&c->lock);
		if (destroy)
			entry_destroy(c, e);
		cache_evict_some(c);
		pthread_mutex_lock(&c->lock);
	}
	pthread_cond_broadcast(&c->state_cond);
}

/* Exchange two of a worker's uploads (each with its own snap). */
static void upload_swap(struct upload *a, struct upload *b)
{
	struct upload t = *a;

	*a = *b;
	*b = t;
}

/*
 * Called without lock: sync the worker's batch and end each upload in
 * it: recorded in the index only now, its object durable (invariant 6).
 */
static void batch_finish(struct cache *c, struct uploader *u)
{
	char key[BLOB_DATA_KEY_LEN + 1];
	size_t i;

	store_batch_sync(u->batch, u->results);
	for (i = 0; i < u->n; i++) {
		struct upload *up = &u->ups[i];
		int rc = u->results[i];

		if (rc) {
			blob_data_key(up->hash, key);
			log_put_failed(up, key, rc);
			up->obj_size = 0;
		}
		rc = upload_retry(c, u, up, upload_end(c, up, rc));
		pthread_mutex_lock(&c->lock);
		upload_done_locked(c, up->e, up, rc);
		pthread_mutex_unlock(&c->lock);
	}
	u->n = 0;
}

/* An upload worker: uploads the dirty blocks as they fall due, until the
 * cache stops and no flush waits.  Where the store stages puts, it
 * stages up to UPLOAD_BATCH uploads while more are due, then syncs them
 * together (batch_finish()). */
void *cache_upload_worker(void *arg)
{
	struct cache *c = arg;
	struct uploader u;

	if (uploader_init(c, &u)) {
		log_error("upload worker: out of memory");
		return NULL;
	}
	pthread_mutex_lock(&c->lock);
	for (;;) {
		uint64_t wait_ns = UINT64_MAX;
		bool stop = c->stopping && c->flushers == 0;
		struct centry *e = u.n < u.max && !stop ?
			pick_upload(c, &wait_ns) : NULL;
		struct upload *up;
		int rc;

		if (u.n && !e) {
			pthread_mutex_unlock(&c->lock);
			batch_finish(c, &u);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		if (stop)
			break;
		if (!e) {
			upload_sleep_locked(c, wait_ns);
			continue;
		}
		up = &u.ups[u.n];
		upload_start(c, e, up);
		rc = upload_one(c, &u, up, u.max > 1);
		if (rc == -EAGAIN) {
			/* its name is claimed: sync ours, then wait for it */
			batch_finish(c, &u);
			upload_swap(&u.ups[0], up);
			up = &u.ups[0];
			rc = upload_one(c, &u, up, u.max > 1);
		}
		if (rc == 0 && up->staged) {
			u.n++;
			pthread_mutex_lock(&c->lock);
			continue;
		}
		rc = upload_retry(c, &u, up, rc);
		pthread_mutex_lock(&c->lock);
		upload_done_locked(c, e, up, rc);
	}
	pthread_mutex_unlock(&c->lock);
	uploader_free(&u);
	return NULL;
}

/* ---- flushes ---- */

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

/* The entries a flush waits for, pinned, each until the index has the
 * version of it given. */
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
	if (e->state == CE_DIRTY)
		hurry_add(c, e);
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

/* The truncates and punches wait at the barrier in cut_enter(), and it
 * waits for those past it (cutting), in cache_cut.c. */
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
