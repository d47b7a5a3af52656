/*
 * t_cache_race.c - unit tests of the write-back block cache's races: an
 * upload, a load or a write that meets a punch, a truncate, a flush, a
 * write that grows the file or a crash, and the journal's barrier.  Each
 * test holds one side (a held put, a slow read, a paused index call)
 * while the other runs; most reproduce a bug once seen.  The fake index
 * and the fixtures are in cache_fake.h.
 */
#include "util/compat.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache_fake.h"
#include "check.h"
#include "util/util.h"

struct flush_arg {
	struct cache *c;
	uint64_t ino;
};

static void *flush_thread(void *arg)
{
	struct flush_arg *fa = arg;

	cache_flush_inode(fa->c, fa->ino);
	return NULL;
}

/*
 * A block punched while its upload is in flight, then written again: the
 * late upload must not commit its stale object to the new entry's index
 * row (it did: the row became clean with the old content, the new
 * entry's own commit was refused as stale, and the block read back old
 * data once the cache lost it).
 */
static void test_stale_upload_after_punch(void)
{
	struct env e;
	uint8_t *a = malloc(BS), *b = malloc(BS), *out = malloc(BS);
	char want[BLOB_NAME_LEN + 1], got[BLOB_NAME_LEN + 1];
	struct trunc_arg ta;
	struct flush_arg fa;
	pthread_t t;

	env_init(&e, 64 * BS, 3600ULL * 1000000000ULL);
	ta.f = e.f;
	ta.ino = 5;
	ta.size = BS;
	fill(a, BS, 1);
	fill(b, BS, 2);
	CHECK_RC(cache_write(e.c, 5, 0, a, BS), BS);
	store_fault_hold_puts(e.store, 1);
	fa.c = e.c;
	fa.ino = 5;
	pthread_create(&t, NULL, flush_thread, &fa);
	store_fault_wait_held(e.store, 1);   /* A's upload is in flight */
	CHECK_RC(cache_punch(e.c, 5, 0, BS, BS, fk_drop, &ta), 0);
	CHECK_RC(cache_write(e.c, 5, 0, b, BS), BS);
	store_fault_hold_puts(e.store, 0);
	pthread_join(t, NULL);
	CHECK_RC(cache_flush_inode(e.c, 5), 0);
	blob_name(&e.blob, b, BS, want);
	CHECK_RC(fk_block_get(e.f, 5, 0, got), 0);
	CHECK(!strcmp(got, want));
	/* and from the store, once the cache has forgotten it */
	cache_close(e.c, 0);
	rm_rf(e.cdir);
	CHECK_RC(env_open_cache(&e, 64 * BS, 3600ULL * 1000000000ULL), 0);
	CHECK_RC(cache_read(e.c, 5, 0, BS, BS, out), BS);
	CHECK(!memcmp(out, b, BS));
	env_free(&e);
	free(a);
	free(b);
	free(out);
}

/*
 * A flush that comes while the block's upload is in flight marks the
 * entry urgent; once that upload made it clean, the flag must go too.
 * Kept, it sent the block's next write up at once, not writeback_delay
 * later (seen in the e2e suite under ASan).
 */
static void test_flush_during_upload(void)
{
	struct env e;
	uint8_t *a = malloc(BS);
	struct flush_arg fa;
	pthread_t t1, t2;
	int before;

	env_init(&e, 64 * BS, 3600ULL * 1000000000ULL);
	fill(a, BS, 3);
	CHECK_RC(cache_write(e.c, 6, 0, a, BS), BS);
	store_fault_hold_puts(e.store, 1);
	fa.c = e.c;
	fa.ino = 6;
	pthread_create(&t1, NULL, flush_thread, &fa);
	store_fault_wait_held(e.store, 1);   /* the upload is in flight */
	pthread_create(&t2, NULL, flush_thread, &fa);
	usleep(100000);                      /* t2 has marked it urgent */
	store_fault_hold_puts(e.store, 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	before = count_objects(&e);
	CHECK_RC(cache_write(e.c, 6, 100, "zzzz", 4), 4);
	usleep(300000);
	CHECK_RC(count_objects(&e), before);
	CHECK_RC(cache_flush_inode(e.c, 6), 0);
	CHECK_RC(count_objects(&e), before + 1);
	env_free(&e);
	free(a);
}

/* Copy the files of directory from (no subdirectories) into to. */
static void copy_flat_dir(const char *from, const char *to)
{
	char src[512], dst[512];
	struct dirent *de;
	DIR *d = opendir(from);

	CHECK(d != NULL);
	if (!d)
		return;
	CHECK_RC(mkdir_p(to, 0700), 0);
	while ((de = readdir(d))) {
		struct buf b = BUF_INIT;

		if (de->d_name[0] == '.')
			continue;
		snprintf(src, sizeof(src), "%s/%s", from, de->d_name);
		snprintf(dst, sizeof(dst), "%s/%s", to, de->d_name);
		CHECK_RC(read_file(src, &b), 0);
		CHECK_RC(write_file_atomic(dst, b.data, b.len, 0600), 0);
		buf_free(&b);
	}
	closedir(d);
}

/*
 * A crash while a block punched during its upload has been written
 * again: the cache directory holds the dropped entry's file (kept until
 * its upload ends) beside the new one, and the index says the block is
 * dirty.  The next open must serve the new file, whatever order the
 * directory lists them in.  It took the first one listed: a crash loop
 * on S3 read back old bytes of a file whose size was right.  The crash
 * is simulated by copying the cache directory and the index while the
 * upload is held, and opening the copy; eight blocks, so that without
 * the fix some stale file is listed first.
 */
static void test_crash_with_stale_file(void)
{
	struct env e;
	uint8_t *a = malloc(BS), *b = malloc(BS), *out = malloc(BS);
	char blocks[256], snap[256];
	struct fblock (*fb)[MAXB] = malloc(sizeof(*fb));
	struct trunc_arg ta;
	struct flush_arg fa;
	uint64_t ino;
	pthread_t t;

	env_init(&e, 64 * BS, 3600ULL * 1000000000ULL);
	snprintf(blocks, sizeof(blocks), "%s/blocks", e.cdir);
	snprintf(snap, sizeof(snap), "%s/snap", e.dir);
	for (ino = 20; ino < 28; ino++) {
		ta = (struct trunc_arg){ e.f, ino, BS };
		fill(a, BS, (unsigned)ino);
		fill(b, BS, (unsigned)ino + 100);
		CHECK_RC(cache_write(e.c, ino, 0, a, BS), BS);
		store_fault_hold_puts(e.store, 1);
		fa = (struct flush_arg){ e.c, ino };
		pthread_create(&t, NULL, flush_thread, &fa);
		store_fault_wait_held(e.store, 1);
		CHECK_RC(cache_punch(e.c, ino, 0, BS, BS, fk_drop, &ta), 0);
		CHECK_RC(cache_write(e.c, ino, 0, b, BS), BS);
		/* the crash */
		copy_flat_dir(blocks, snap);
		pthread_mutex_lock(&e.f->lock);
		memcpy(*fb, e.f->b, sizeof(*fb));
		pthread_mutex_unlock(&e.f->lock);
		store_fault_hold_puts(e.store, 0);
		pthread_join(t, NULL);
		cache_close(e.c, 1);
		e.c = NULL;
		rm_rf(blocks);
		CHECK_RC(rename(snap, blocks), 0);
		memcpy(e.f->b, *fb, sizeof(*fb));
		CHECK(fb_find(e.f, ino, 0, 0) && fb_find(e.f, ino, 0, 0)->dirty);
		CHECK_RC(env_open_cache(&e, 64 * BS, 3600ULL * 1000000000ULL),
			 0);
		CHECK_RC(cache_read(e.c, ino, 0, BS, BS, out), BS);
		CHECK_MEM(out, b, BS);
		/* and that is what goes up */
		CHECK_RC(cache_flush_inode(e.c, ino), 0);
		reopen_cold(&e);
		CHECK_RC(cache_read(e.c, ino, 0, BS, BS, out), BS);
		CHECK_MEM(out, b, BS);
	}
	env_free(&e);
	free(fb);
	free(a);
	free(b);
	free(out);
}

/*
 * A block dropped by a truncate while a read loads it from the store:
 * the loaded content must not stay in the cache.  It did (a loading
 * entry was skipped by the drop), so once the file grew again the block
 * read back its old bytes instead of zeros.
 */
struct read_arg {
	struct cache *c;
	uint64_t ino, off, size;
	uint8_t *out;
	ssize_t rc;
};

static void *read_thread(void *arg)
{
	struct read_arg *ra = arg;

	ra->rc = cache_read(ra->c, ra->ino, ra->off, BS, ra->size, ra->out);
	return NULL;
}

/* A new env with ino's two blocks (a, 2 * BS bytes, filled here) in the
 * store only, and every read from the store slow (300 ms), so that a
 * test can race with a load. */
static void cold_file_slow_store(struct env *e, uint64_t ino, uint8_t *a)
{
	env_init(e, 64 * BS, 3600ULL * 1000000000ULL);
	fill(a, 2 * BS, (unsigned)ino);
	CHECK_RC(cache_write(e->c, ino, 0, a, 2 * BS), 2 * BS);
	CHECK_RC(cache_flush_inode(e->c, ino), 0);
	reopen_cold(e);
	store_fault_read_delay(e->store, 300000);
}

static void test_truncate_during_load(void)
{
	struct env e;
	uint8_t *a = malloc(2 * BS), *out = malloc(BS), *zero = calloc(1, BS);
	struct trunc_arg ta;
	struct read_arg ra;
	pthread_t t;

	cold_file_slow_store(&e, 12, a);
	ra = (struct read_arg){ e.c, 12, BS, 2 * BS, out, 0 };
	pthread_create(&t, NULL, read_thread, &ra);
	usleep(100000);            /* the read is in its get */
	ta = (struct trunc_arg){ e.f, 12, 0 };
	CHECK_RC(cache_truncate(e.c, 12, 2 * BS, 0, fk_truncate, &ta), 0);
	pthread_join(t, NULL);
	CHECK_RC(ra.rc, BS);       /* raced with the truncate: either */
	store_fault_read_delay(e.store, 0);
	ta.size = 2 * BS;
	CHECK_RC(cache_truncate(e.c, 12, 0, 2 * BS, fk_truncate, &ta), 0);
	memset(out, 0xaa, BS);
	CHECK_RC(cache_read(e.c, 12, BS, BS, 2 * BS, out), BS);
	CHECK_MEM(out, zero, BS);
	env_free(&e);
	free(a);
	free(out);
	free(zero);
}

/*
 * An upload that starts while a write that grows the file has counted
 * itself in the block's version but not yet recorded the new size in the
 * index: the upload must not read the old size.  It did: it sent the
 * block cut at the old size and, its version covering the write, marked
 * it clean, so the grown part never reached the store and came back as
 * zeros once the cache was lost (the file's size right, its bytes not;
 * seen in the e2e suite with writeback_cache on S3).
 */
struct write_arg {
	struct cache *c;
	uint64_t ino, off;
	const uint8_t *data;
	size_t len;
};

static void *write_thread(void *arg)
{
	struct write_arg *wa = arg;

	cache_write(wa->c, wa->ino, wa->off, wa->data, wa->len);
	return NULL;
}

static void test_upload_during_growing_write(void)
{
	struct env e;
	uint8_t *a = malloc(2 * 4096), *out = malloc(2 * 4096);
	struct write_arg wa;
	struct flush_arg fa;
	pthread_t tw, tf;

	env_bs = 16 * 4096;       /* both writes in block 0 */
	env_init(&e, 64 * env_bs, 3600ULL * 1000000000ULL);
	fill(a, 2 * 4096, 4);
	CHECK_RC(cache_write(e.c, 7, 0, a, 4096), 4096);
	pthread_mutex_lock(&e.f->lock);
	e.f->pause_wd = true;
	pthread_mutex_unlock(&e.f->lock);
	wa = (struct write_arg){ e.c, 7, 4096, a + 4096, 4096 };
	pthread_create(&tw, NULL, write_thread, &wa);
	pthread_mutex_lock(&e.f->lock);
	while (!e.f->in_wd)       /* the write is in the file and counted */
		pthread_cond_wait(&e.f->cond, &e.f->lock);
	pthread_mutex_unlock(&e.f->lock);
	fa.c = e.c;
	fa.ino = 7;
	pthread_create(&tf, NULL, flush_thread, &fa);
	usleep(200000);           /* the upload has started */
	pthread_mutex_lock(&e.f->lock);
	e.f->pause_wd = false;
	pthread_cond_broadcast(&e.f->cond);
	pthread_mutex_unlock(&e.f->lock);
	pthread_join(tw, NULL);
	pthread_join(tf, NULL);
	CHECK_RC(cache_flush_inode(e.c, 7), 0);
	CHECK_EQ_U64(e.f->size[7], 2 * 4096);
	reopen_cold(&e);
	memset(out, 0xaa, 2 * 4096);
	CHECK_RC(cache_read(e.c, 7, 0, 2 * 4096, 2 * 4096, out), 2 * 4096);
	CHECK(!memcmp(out, a, 2 * 4096));
	env_free(&e);
	env_bs = BS;
	free(a);
	free(out);
}

/* Block idx of ino (size bytes in all) reads as the n bytes of want,
 * from the cache, then from the store once flushed and cold. */
static void read_back_block(struct env *e, uint64_t ino, uint64_t idx,
			    uint64_t size, const uint8_t *want, size_t n)
{
	uint8_t *out = malloc(BS);

	for (int cold = 0; cold < 2; cold++) {
		if (cold) {
			CHECK_RC(cache_flush_inode(e->c, ino), 0);
			reopen_cold(e);
		}
		memset(out, 0xaa, BS);
		CHECK_RC(cache_read(e->c, ino, idx * BS, BS, size, out),
			 (ssize_t)n);
		CHECK_MEM(out, want, n);
	}
	free(out);
}

/*
 * A write whose block a truncate drops while the write loads it: the
 * truncate came first, so the write's bytes must be there afterwards, in
 * the cache and in the store.  They were not: the write went into the
 * dropped entry's file, which nobody keeps, while the index recorded the
 * block as written, so it read back as zeros.
 */
static void test_write_during_truncate(void)
{
	struct env e;
	uint8_t *a = malloc(2 * BS), *want = calloc(1, BS);
	struct trunc_arg ta;
	struct write_arg wa;
	pthread_t t;

	cold_file_slow_store(&e, 13, a);
	/* 1,000 bytes into block 1, which is not cached: it is loaded */
	wa = (struct write_arg){ e.c, 13, BS + 100, a + 7, 1000 };
	pthread_create(&t, NULL, write_thread, &wa);
	usleep(100000);            /* the write is in its get */
	ta = (struct trunc_arg){ e.f, 13, 0 };
	CHECK_RC(cache_truncate(e.c, 13, 2 * BS, 0, fk_truncate, &ta), 0);
	pthread_join(t, NULL);
	store_fault_read_delay(e.store, 0);
	CHECK_EQ_U64(e.f->size[13], BS + 1100);
	memcpy(want + 100, a + 7, 1000);
	read_back_block(&e, 13, 1, BS + 1100, want, 1100);
	env_free(&e);
	free(a);
	free(want);
}

/* A fresh env (uploads only when flushed) with a file ino of two blocks
 * a (filled here) in the store, then cut to BS + 100: block 1 dirty. */
static void uploaded_then_cut(struct env *e, uint64_t ino, uint8_t *a)
{
	struct trunc_arg ta = { NULL, ino, BS + 100 };

	env_init(e, 64 * BS, 3600ULL * 1000000000ULL);
	ta.f = e->f;
	fill(a, 2 * BS, (unsigned)ino);
	CHECK_RC(cache_write(e->c, ino, 0, a, 2 * BS), 2 * BS);
	CHECK_RC(cache_flush_inode(e->c, ino), 0);
	CHECK_RC(cache_truncate(e->c, ino, 2 * BS, BS + 100, fk_truncate, &ta),
		 0);
	CHECK(fb_find(e->f, ino, 1, 0) && fb_find(e->f, ino, 1, 0)->dirty);
}

/*
 * A truncate cuts block 1, and the cache directory is lost before the cut
 * goes up: the block's last upload still holds the bytes past the new
 * end.  When the file grows again they must read as zeros.  They came
 * back (the block kept its last uploaded content, whole), and a write
 * past the end then went up as a patch on them.  Now the reopened cache
 * fetches such a block, cuts it at the file's end and uploads it whole.
 */
static void test_cut_block_lost(void)
{
	struct env e;
	uint8_t *a = malloc(2 * BS), *want = calloc(1, BS);
	char blocks[256];

	uploaded_then_cut(&e, 31, a);
	snprintf(blocks, sizeof(blocks), "%s/blocks", e.cdir);
	/* the crash, and the cache directory's blocks with it */
	cache_close(e.c, 1);
	e.c = NULL;
	rm_rf(blocks);
	CHECK_RC(env_open_cache(&e, 64 * BS, 3600ULL * 1000000000ULL), 0);
	/* the file grows: a write past its end, in block 1 */
	CHECK_RC(cache_write(e.c, 31, BS + 1000, a + 7, 10), 10);
	memcpy(want, a + BS, 100);
	memcpy(want + 1000, a + 7, 10);
	read_back_block(&e, 31, 1, BS + 1010, want, 1010);
	env_free(&e);
	free(a);
	free(want);
}

static uint64_t put_calls(struct env *e)
{
	struct store_fault_counts n;

	store_fault_get_counts(e->store, &n);
	return n.calls[__builtin_ctz(STORE_OP_PUT)];
}

/* What the journal's cut saw, called by cache_cut_barrier(). */
struct probe {
	struct env *e;
	uint64_t ino, idx;
	char hash[BLOB_NAME_LEN + 1];
	int dirty;
	int calls;
	atomic_int *truncated; /* set by a truncate racing the barrier */
	int truncated_seen;
};

static int probe_cut(void *arg)
{
	struct probe *p = arg;
	struct fblock *b;

	pthread_mutex_lock(&p->e->f->lock);
	b = fb_find(p->e->f, p->ino, p->idx, 0);
	snprintf(p->hash, sizeof(p->hash), "%s", b ? b->hash : "");
	p->dirty = b ? b->dirty : -1;
	pthread_mutex_unlock(&p->e->f->lock);
	p->truncated_seen = p->truncated ? atomic_load(p->truncated) : 0;
	p->calls++;
	return 7;
}

struct barrier_arg {
	struct cache *c;
	struct probe *p;
	int rc;
};

static void *barrier_thread(void *arg)
{
	struct barrier_arg *ba = arg;

	ba->rc = cache_cut_barrier(ba->c, probe_cut, ba->p);
	return NULL;
}

struct cut_arg {
	struct cache *c;
	struct trunc_arg ta;
	uint64_t old_size;
	atomic_int done;
};

static void *truncate_thread(void *arg)
{
	struct cut_arg *ca = arg;

	cache_truncate(ca->c, ca->ta.ino, ca->old_size, ca->ta.size,
		       fk_truncate, &ca->ta);
	atomic_store(&ca->done, 1);
	return NULL;
}

/*
 * The journal's barrier: a truncate cuts block 1 of an uploaded file; a
 * journal cut must not record that before the index names the cut block
 * (after a lost cache, the block's old upload would show its bytes past
 * the cut once the file grew over them).  The barrier uploads it first,
 * holds back a truncate that comes meanwhile, and does not hold the cut
 * back when the store refuses the block.
 */
static void test_cut_barrier(void)
{
	struct env e;
	uint8_t *a = malloc(2 * BS), *cut = calloc(1, BS);
	char want[BLOB_NAME_LEN + 1];
	struct probe p = { .e = &e, .ino = 32, .idx = 1 };
	struct barrier_arg ba = { .p = &p };
	struct cut_arg ca;
	struct trunc_arg ta;
	uint64_t puts0;
	pthread_t tb, tt;
	int i;

	uploaded_then_cut(&e, 32, a);
	ta = (struct trunc_arg){ e.f, 32, BS + 100 };
	/* the cut goes up before the journal's cut, which runs once */
	CHECK_RC(cache_cut_barrier(e.c, probe_cut, &p), 7);
	memcpy(cut, a + BS, 100);
	blob_name(&e.blob, cut, 100, want);
	CHECK_EQ_U64(p.calls, 1);
	CHECK_EQ_U64(p.dirty, 0);
	CHECK(!strcmp(p.hash, want));
	/* nothing cut since: the barrier uploads nothing */
	CHECK_RC(cache_write(e.c, 32, 0, "new", 3), 3);
	CHECK_RC(cache_cut_barrier(e.c, probe_cut, &p), 7);
	CHECK_EQ_U64(p.dirty, 0);  /* block 1 */
	CHECK(fb_find(e.f, 32, 0, 0)->dirty);

	/* a truncate while the barrier waits for an upload waits too */
	ta.size = BS + 50;
	CHECK_RC(cache_truncate(e.c, 32, BS + 100, BS + 50, fk_truncate, &ta),
		 0);
	store_fault_hold_puts(e.store, 1);
	ba.c = e.c;
	puts0 = put_calls(&e);
	pthread_create(&tb, NULL, barrier_thread, &ba);
	/* its upload is held (bounded: a barrier that uploads nothing
	 * must fail the checks below, not hang) */
	for (i = 0; i < 500 && put_calls(&e) == puts0; i++)
		usleep(10000);
	ca = (struct cut_arg){ e.c, { e.f, 32, BS + 10 }, BS + 50, 0 };
	p.truncated = &ca.done;
	pthread_create(&tt, NULL, truncate_thread, &ca);
	usleep(100000);
	CHECK_EQ_U64(atomic_load(&ca.done), 0);
	store_fault_hold_puts(e.store, 0);
	pthread_join(tb, NULL);
	pthread_join(tt, NULL);
	CHECK_RC(ba.rc, 7);
	CHECK_EQ_U64(p.truncated_seen, 0);
	CHECK_EQ_U64(atomic_load(&ca.done), 1);
	p.truncated = NULL;

	/* the store refuses the cut block: the journal's cut still runs */
	store_fault_arm(e.store, STORE_OP_PUT, 0, -1, EIO);
	p.calls = 0;
	CHECK_RC(cache_cut_barrier(e.c, probe_cut, &p), 7);
	CHECK_EQ_U64(p.calls, 1);
	CHECK_EQ_U64(p.dirty, 1);
	store_fault_arm(e.store, STORE_OP_PUT, 0, 0, 0);
	env_free(&e);
	free(a);
	free(cut);
}

int main(void)
{
	if (blob_global_init())
		return 1;
	test_crash_with_stale_file();
	test_truncate_during_load();
	test_stale_upload_after_punch();
	test_flush_during_upload();
	test_upload_during_growing_write();
	test_write_during_truncate();
	test_cut_block_lost();
	test_cut_barrier();
	return check_done("t_cache_race");
}
