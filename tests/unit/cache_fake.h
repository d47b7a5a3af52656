/*
 * cache_fake.h - what the unit tests of the block cache share
 * (t_cache.c, t_cache_race.c): an in-memory block index standing in for
 * the metadata (struct fake, behind struct cache_index_ops, so the cache
 * is tested alone), and the fixture that opens a cache over it and over
 * a real local store wrapped in the fault injector (struct env).  The
 * functions are static inline: each test file uses its own subset.
 */
#ifndef METAFUSE_CACHE_FAKE_H
#define METAFUSE_CACHE_FAKE_H

#include "util/compat.h"

#include <pthread.h>
#include <stdlib.h>

#include "cache/cache.h"
#include "check.h"
#include "util/util.h"

#define BS 4096
#define MAXB 4096

/* ---- a tiny in-memory block index ---- */

struct fblock {
	uint64_t ino, idx;
	char hash[BLOB_NAME_LEN + 1];
	int dirty;
	int used;
	unsigned npatch;
	char patch[PATCH_CHAIN_MAX][BLOB_NAME_LEN + 1];
};

struct fobj {
	char hash[BLOB_NAME_LEN + 1];
	int refs;
};

struct fake {
	pthread_mutex_t lock;
	struct fblock b[MAXB];
	struct fobj o[MAXB];
	uint64_t size[64];
	int commits, estale, patches;
	/* write_done waits while pause_wd (in_wd: one is waiting) */
	bool pause_wd, in_wd;
	pthread_cond_t cond;
};

static inline struct fblock *fb_find(struct fake *f, uint64_t ino, uint64_t idx,
				     int create)
{
	int i, freei = -1;

	for (i = 0; i < MAXB; i++) {
		if (f->b[i].used && f->b[i].ino == ino && f->b[i].idx == idx)
			return &f->b[i];
		if (!f->b[i].used && freei < 0)
			freei = i;
	}
	if (!create || freei < 0)
		return NULL;
	memset(&f->b[freei], 0, sizeof(f->b[freei]));
	f->b[freei].used = 1;
	f->b[freei].ino = ino;
	f->b[freei].idx = idx;
	return &f->b[freei];
}

static inline struct fobj *fo_find(struct fake *f, const char *hash, int create)
{
	int i, freei = -1;

	for (i = 0; i < MAXB; i++) {
		if (f->o[i].hash[0] && !strcmp(f->o[i].hash, hash))
			return &f->o[i];
		if (!f->o[i].hash[0] && freei < 0)
			freei = i;
	}
	if (!create || freei < 0)
		return NULL;
	memcpy(f->o[freei].hash, hash, BLOB_NAME_LEN + 1);
	f->o[freei].refs = 0;
	return &f->o[freei];
}

static inline int fk_block_get(void *arg, uint64_t ino, uint64_t idx,
			       char *hash)
{
	struct fake *f = arg;
	struct fblock *b;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	b = fb_find(f, ino, idx, 0);
	if (!b)
		rc = -ENOENT;
	else
		memcpy(hash, b->hash, BLOB_NAME_LEN + 1);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static inline int fk_write_done(void *arg, uint64_t ino, uint64_t end,
				const uint64_t *idx, size_t n)
{
	struct fake *f = arg;
	size_t i;

	pthread_mutex_lock(&f->lock);
	if (f->pause_wd) {
		f->in_wd = true;
		pthread_cond_broadcast(&f->cond);
		while (f->pause_wd)
			pthread_cond_wait(&f->cond, &f->lock);
		f->in_wd = false;
	}
	if (end > f->size[ino])
		f->size[ino] = end;
	for (i = 0; i < n; i++)
		fb_find(f, ino, idx[i], 1)->dirty = 1;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static inline int fk_file_size(void *arg, uint64_t ino, uint64_t *size)
{
	struct fake *f = arg;

	pthread_mutex_lock(&f->lock);
	*size = f->size[ino];
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static inline int fk_object_known(void *arg, const char *hash)
{
	struct fake *f = arg;
	int known;

	pthread_mutex_lock(&f->lock);
	known = fo_find(f, hash, 0) != NULL;
	pthread_mutex_unlock(&f->lock);
	return known;
}

static inline int fk_block_commit(void *arg, uint64_t ino, uint64_t idx,
				  const char *hash, uint64_t size,
				  int still_dirty)
{
	struct fake *f = arg;
	struct fblock *b;
	struct fobj *o;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	b = fb_find(f, ino, idx, 0);
	if (!b || !b->dirty) {
		if (hash)
			fo_find(f, hash, 1);
		f->estale++;
		rc = -ESTALE;
		goto out;
	}
	if (b->hash[0] && (!hash || strcmp(b->hash, hash))) {
		o = fo_find(f, b->hash, 0);
		if (o)
			o->refs--;
	}
	if (hash && strcmp(b->hash, hash))
		fo_find(f, hash, 1)->refs++;
	if (hash)
		memcpy(b->hash, hash, BLOB_NAME_LEN + 1);
	else
		b->hash[0] = 0;
	b->npatch = 0; /* (their refs are not counted here) */
	b->dirty = still_dirty;
	if (!hash && !still_dirty)
		b->used = 0;
	f->commits++;
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static inline int fk_dirty_blocks(void *arg,
				  int (*cb)(uint64_t ino, uint64_t idx,
					    void *cbarg),
				  void *cbarg)
{
	struct fake *f = arg;
	int i, rc = 0;

	for (i = 0; i < MAXB && !rc; i++)
		if (f->b[i].used && f->b[i].dirty)
			rc = cb(f->b[i].ino, f->b[i].idx, cbarg);
	return rc;
}

static inline int fk_block_chain(void *arg, uint64_t ino, uint64_t idx,
				 struct patch_chain *out)
{
	struct fake *f = arg;
	struct fblock *b;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	b = fb_find(f, ino, idx, 0);
	if (!b) {
		rc = -ENOENT;
	} else {
		memcpy(out->base, b->hash, BLOB_NAME_LEN + 1);
		out->dirty = b->dirty;
		out->n = b->npatch;
		out->patch_bytes = 0;
		memcpy(out->patch, b->patch, sizeof(b->patch));
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static inline int fk_block_patch(void *arg, uint64_t ino, uint64_t idx,
				 const char *below, const char *hash,
				 uint64_t size, int still_dirty)
{
	struct fake *f = arg;
	struct fblock *b;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	b = fb_find(f, ino, idx, 0);
	fo_find(f, hash, 1);
	if (!b || !b->dirty) {
		f->estale++;
		rc = -ESTALE;
	} else if (!b->hash[0] || b->npatch == PATCH_CHAIN_MAX ||
		   strcmp(below, b->npatch ? b->patch[b->npatch - 1] :
			  b->hash)) {
		rc = -EILSEQ;
	} else {
		memcpy(b->patch[b->npatch++], hash, BLOB_NAME_LEN + 1);
		b->dirty = still_dirty;
		f->patches++;
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static inline int fk_dirty_count(void *arg, uint64_t ino, uint64_t *n)
{
	struct fake *f = arg;

	pthread_mutex_lock(&f->lock);
	*n = 0;
	for (int i = 0; i < MAXB; i++)
		if (f->b[i].used && f->b[i].ino == ino && f->b[i].dirty)
			(*n)++;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static const struct cache_index_ops fake_patch_ops = {
	.block_get = fk_block_get,
	.write_done = fk_write_done,
	.file_size = fk_file_size,
	.object_known = fk_object_known,
	.block_commit = fk_block_commit,
	.block_chain = fk_block_chain,
	.block_patch = fk_block_patch,
	.dirty_blocks = fk_dirty_blocks,
	.dirty_count = fk_dirty_count,
};

static const struct cache_index_ops fake_ops = {
	.block_get = fk_block_get,
	.write_done = fk_write_done,
	.file_size = fk_file_size,
	.object_known = fk_object_known,
	.block_commit = fk_block_commit,
	.dirty_blocks = fk_dirty_blocks,
	.dirty_count = fk_dirty_count,
};

/* truncate/punch "apply" callbacks acting on the fake index */
struct trunc_arg {
	struct fake *f;
	uint64_t ino, size;
};

static inline int fk_truncate(void *arg)
{
	struct trunc_arg *t = arg;
	int i;

	pthread_mutex_lock(&t->f->lock);
	t->f->size[t->ino] = t->size;
	for (i = 0; i < MAXB; i++) {
		struct fblock *b = &t->f->b[i];

		if (b->used && b->ino == t->ino &&
		    b->idx >= (t->size + BS - 1) / BS) {
			struct fobj *o = b->hash[0] ?
				fo_find(t->f, b->hash, 0) : NULL;

			if (o)
				o->refs--;
			b->used = 0;
		}
	}
	pthread_mutex_unlock(&t->f->lock);
	return 0;
}

static inline int fk_drop(void *arg, uint64_t first, uint64_t last)
{
	struct trunc_arg *t = arg;
	int i;

	pthread_mutex_lock(&t->f->lock);
	for (i = 0; i < MAXB; i++) {
		struct fblock *b = &t->f->b[i];

		if (b->used && b->ino == t->ino && b->idx >= first &&
		    b->idx <= last)
			b->used = 0;
	}
	pthread_mutex_unlock(&t->f->lock);
	return 0;
}

/* ---- fixtures ---- */

struct env {
	char dir[64];
	char cdir[128];
	struct store *store;
	struct blob_ctx blob;
	struct fake *f;
	struct cache *c;
};

/* the block size of the caches env_open_cache*() open, and whether they
 * upload patches */
static uint32_t env_bs = BS;
static bool env_patches;
/* their max_dirty (0: their cache_size) */
static uint64_t env_max_dirty;

static inline int env_open_cache_whole(struct env *e, uint64_t cache_size,
				       uint64_t delay_ns, uint64_t whole_after)
{
	struct cache_config cfg = {
		.dir = e->cdir,
		.block_size = env_bs,
		.cache_size = cache_size,
		.max_dirty = env_max_dirty ? env_max_dirty : cache_size,
		.whole_after = whole_after,
		.writeback_delay_ns = delay_ns,
		.upload_threads = 2,
		.patches = env_patches,
	};

	return cache_open(&cfg, e->store, &e->blob,
			  env_patches ? &fake_patch_ops : &fake_ops, e->f,
			  &e->c);
}

/* uploads only by the delay, pressure and flushes */
static inline int env_open_cache(struct env *e, uint64_t cache_size,
				 uint64_t delay_ns)
{
	return env_open_cache_whole(e, cache_size, delay_ns, UINT64_MAX);
}

static inline void env_init(struct env *e, uint64_t cache_size,
			    uint64_t delay_ns)
{
	struct store *inner;
	char sdir[128];

	memset(e, 0, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/t_cache-XXXXXX");
	if (!mkdtemp(e->dir))
		abort();
	snprintf(sdir, sizeof(sdir), "%s/store", e->dir);
	snprintf(e->cdir, sizeof(e->cdir), "%s/cache", e->dir);
	if (store_file_open(sdir, 1, &inner) ||
	    store_fault_wrap(inner, &e->store))
		abort();
	blob_random(e->blob.hash_key, sizeof(e->blob.hash_key));
	e->blob.zstd_level = 1;
	e->f = calloc(1, sizeof(*e->f));
	pthread_mutex_init(&e->f->lock, NULL);
	pthread_cond_init(&e->f->cond, NULL);
	CHECK_RC(env_open_cache(e, cache_size, delay_ns), 0);
}

static inline void env_free(struct env *e)
{
	cache_close(e->c, 0);
	store_close(e->store);
	rm_rf(e->dir);
	pthread_mutex_destroy(&e->f->lock);
	pthread_cond_destroy(&e->f->cond);
	free(e->f);
}

static inline void fill(uint8_t *p, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static inline int count_objects_cb(const char *key, uint64_t size, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static inline int count_objects(struct env *e)
{
	int n = 0;

	store_list(e->store, "data/", count_objects_cb, &n);
	return n;
}

/* Close the cache and open it again with an empty directory: every
 * block is fetched again. */
static inline void reopen_cold(struct env *e)
{
	CHECK_RC(cache_close(e->c, 0), 0);
	e->c = NULL;
	rm_rf(e->cdir);
	CHECK_RC(env_open_cache(e, 64 * env_bs, 3600ULL * 1000000000ULL), 0);
}

#endif
