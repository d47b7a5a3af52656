/*
 * t_cache.c - unit tests of the write-back block cache: reads and writes,
 * when uploads go, eviction and read-ahead, truncate and punch, damaged
 * objects and failing uploads, dedup and recovery, the clean blocks a
 * clean close keeps, concurrent writers, the flush's self-check and
 * patches.  The races of an upload, a load or a write with a cut, a
 * flush or a crash are in t_cache_race.c; the fake index and the
 * fixtures in cache_fake.h.
 */
#include "util/compat.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache_fake.h"
#include "check.h"
#include "util/log.h"
#include "util/util.h"

/* Whether the block is dirty in the index (-1: no such block), read
 * under the index's lock: workers commit meanwhile. */
static int fb_dirty(struct fake *f, uint64_t ino, uint64_t idx)
{
	struct fblock *b;
	int d;

	pthread_mutex_lock(&f->lock);
	b = fb_find(f, ino, idx, 0);
	d = b ? b->dirty : -1;
	pthread_mutex_unlock(&f->lock);
	return d;
}

static bool all_zero_prefix(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- tests ---- */

static void test_write_read(void)
{
	struct env e;
	uint8_t *in = malloc(10 * BS), *out = malloc(10 * BS);

	env_init(&e, 64 * BS, 5000000000ULL);
	fill(in, 10 * BS, 1);
	CHECK_RC(cache_write(e.c, 2, 100, in, 3 * BS), 3 * BS);
	CHECK_EQ_U64(e.f->size[2], 100 + 3 * BS);
	memset(out, 0xaa, 10 * BS);
	CHECK_RC(cache_read(e.c, 2, 0, 10 * BS, e.f->size[2], out),
		 100 + 3 * BS);
	CHECK(all_zero_prefix(out, 100));
	CHECK_MEM(out + 100, in, 3 * BS);
	/* nothing uploaded yet: the delay has not passed */
	CHECK_RC(count_objects(&e), 0);
	CHECK_RC(cache_flush_inode(e.c, 2), 0);
	CHECK_RC(count_objects(&e), 4);
	CHECK(!fb_find(e.f, 2, 0, 0)->dirty);
	CHECK(fb_find(e.f, 2, 3, 0)->hash[0]);
	/* a read of a range past EOF is empty */
	CHECK_RC(cache_read(e.c, 2, 100 + 3 * BS, 10, e.f->size[2], out), 0);
	env_free(&e);
	free(in);
	free(out);
}

/* With nobody flushing, written blocks reach the store once the delay
 * has passed. */
static void test_delay_uploads(void)
{
	struct env e;
	uint8_t *in = malloc(3 * BS);
	int i;

	env_init(&e, 64 * BS, 50000000ULL);
	fill(in, 3 * BS, 5);
	CHECK_RC(cache_write(e.c, 2, 0, in, 3 * BS), 3 * BS);
	for (i = 0; i < 500 && count_objects(&e) < 3; i++)
		usleep(10000);
	CHECK_RC(count_objects(&e), 3);
	CHECK(i > 0);
	env_free(&e);
	free(in);
}

static void write_pieces(struct env *e, uint64_t ino, uint64_t off,
			 const uint8_t *in, size_t len)
{
	size_t done;

	for (done = 0; done < len; done += 512)
		CHECK_RC(cache_write(e->c, ino, off + done, in + done,
				     MF_MIN(512, len - done)),
			 (ssize_t)MF_MIN(512, len - done));
}

/* Past whole_after, a block written whole (in pieces, one range) goes up
 * without waiting for the delay; one written in two ranges with a gap, or
 * in part, waits.  At or below whole_after, nothing goes early. */
static void test_whole_blocks_go_early(void)
{
	struct env e;
	uint8_t *in = malloc(8 * BS);
	int i;

	fill(in, 8 * BS, 9);
	env_init(&e, 64 * BS, 3600000000000ULL);
	cache_close(e.c, 0);
	CHECK_RC(env_open_cache_whole(&e, 64 * BS, 3600000000000ULL,
				      2 * BS), 0);
	/* two whole blocks: dirty == whole_after, not past it */
	write_pieces(&e, 3, 0, in, 2 * BS);
	usleep(200000);
	CHECK_RC(count_objects(&e), 0);
	/* block 1 of inode 4 backwards in pieces: one range, whole */
	for (i = BS / 512 - 1; i >= 0; i--)
		CHECK_RC(cache_write(e.c, 4, BS + (uint64_t)i * 512,
				     in + 2 * BS + i * 512, 512), 512);
	/* block 0 of inode 4 in two ranges with a gap filled last: the
	 * range tracked is the first one and what touches it */
	write_pieces(&e, 4, 0, in + 3 * BS, BS / 2);
	write_pieces(&e, 4, BS / 2 + 1024, in + 3 * BS + BS / 2 + 1024,
		     BS / 2 - 1024);
	/* block 2 of inode 4 in part */
	write_pieces(&e, 4, 2 * BS, in + 4 * BS, BS - 512);
	for (i = 0; i < 500 && count_objects(&e) < 3; i++)
		usleep(10000);
	CHECK_RC(count_objects(&e), 3); /* inode 3's two, inode 4's block 1 */
	usleep(200000);
	CHECK_RC(count_objects(&e), 3);
	CHECK(!fb_dirty(e.f, 3, 0) && !fb_dirty(e.f, 3, 1));
	CHECK(!fb_dirty(e.f, 4, 1));
	CHECK(fb_dirty(e.f, 4, 0) && fb_dirty(e.f, 4, 2));
	/* once clean, a block rewritten in part starts a new range */
	write_pieces(&e, 3, 0, in + 5 * BS, 512);
	usleep(200000);
	CHECK(fb_find(e.f, 3, 0, 0)->dirty);
	env_free(&e);
	free(in);
}

/* max_dirty weighs the pages written, not whole blocks: small files far
 * below it wait for their delay (they used to count a block each, and
 * an untar uploaded everything at once); data past it goes at once. */
static void test_max_dirty_weighs_data(void)
{
	uint32_t bs = 16 * BS;
	uint8_t *in = malloc(8 * (size_t)bs);
	struct env e;
	uint64_t ino;
	int i;

	env_bs = bs;
	env_max_dirty = 4 * (uint64_t)bs;
	fill(in, 8 * (size_t)bs, 21);
	env_init(&e, 128 * (uint64_t)bs, 3600000000000ULL);
	/* 32 files of 1000 bytes: 32 pages, half of max_dirty; 32 blocks,
	 * a quarter of the cache */
	for (ino = 10; ino < 42; ino++)
		CHECK_RC(cache_write(e.c, ino, 0, in + ino, 1000), 1000);
	/* written again in their page: nothing more */
	for (ino = 10; ino < 42; ino++)
		CHECK_RC(cache_write(e.c, ino, 1000, in, 24), 24);
	usleep(300000);
	CHECK_RC(count_objects(&e), 0);
	/* 3 blocks more, in pieces of 512 bytes, each page counted once:
	 * past max_dirty, uploads start at once */
	write_pieces(&e, 50, 0, in, 3 * (size_t)bs);
	for (i = 0; i < 500 && count_objects(&e) == 0; i++)
		usleep(10000);
	CHECK(count_objects(&e) > 0);
	env_free(&e);
	env_bs = BS;
	env_max_dirty = 0;
	free(in);
}

/* Small files that fill half the cache's room (a block each) go up at
 * once, far below max_dirty: else writers would wait for room until
 * they fell due. */
static void test_room_pressure(void)
{
	uint32_t bs = 16 * BS;
	uint8_t *in = malloc(2000);
	struct env e;
	uint64_t ino;
	int i;

	env_bs = bs;
	env_max_dirty = 64 * (uint64_t)bs;
	fill(in, 2000, 22);
	env_init(&e, 32 * (uint64_t)bs, 3600000000000ULL);
	for (ino = 10; ino < 26; ino++) /* half the room: not past it */
		CHECK_RC(cache_write(e.c, ino, 0, in + ino, 1000), 1000);
	usleep(300000);
	CHECK_RC(count_objects(&e), 0);
	/* 8 more: uploads (at least) until half the room is free again */
	for (ino = 26; ino < 34; ino++)
		CHECK_RC(cache_write(e.c, ino, 0, in + ino, 1000), 1000);
	for (i = 0; i < 500 && count_objects(&e) < 8; i++)
		usleep(10000);
	CHECK(count_objects(&e) >= 8);
	env_free(&e);
	env_bs = BS;
	env_max_dirty = 0;
	free(in);
}

static void test_evict_and_fetch(void)
{
	struct cache_stats st;
	struct env e;
	uint8_t *in = malloc(BS), *out = malloc(BS);
	int i;

	env_init(&e, 8 * BS, 0);
	for (i = 0; i < 32; i++) {
		fill(in, BS, (unsigned)i + 10);
		CHECK_RC(cache_write(e.c, 3, (uint64_t)i * BS, in, BS), BS);
	}
	CHECK_RC(cache_flush_all(e.c, NULL, NULL), 0);
	for (i = 0; i < 32; i++) {
		fill(in, BS, (unsigned)i + 10);
		CHECK_RC(cache_read(e.c, 3, (uint64_t)i * BS, BS, 32 * BS,
				    out), BS);
		CHECK_MEM(out, in, BS);
	}
	/* read-ahead may still be loading a block or two, counted until
	 * it is in and the LRU makes room again */
	for (i = 0; i < 200; i++) {
		cache_get_stats(e.c, &st);
		if (st.cached_bytes <= 8 * BS)
			break;
		usleep(10000);
	}
	CHECK(st.fetches > 0);
	CHECK(st.evictions > 0);
	CHECK(st.cached_bytes <= 8 * BS);
	env_free(&e);
	free(in);
	free(out);
}

/*
 * Read-ahead keeps every fetcher busy whatever the block size: with
 * 4 MiB blocks (as on S3) and 2 fetchers, a sequential reader at block 1
 * has blocks 2 to 5 fetched ahead (two per fetcher), not only the 8 MiB
 * (two blocks) a fixed byte window would give.
 */
static void test_read_ahead_big_blocks(void)
{
	const uint32_t big = 4U << 20;
	struct cache_stats st;
	struct env e;
	uint8_t *in = malloc(big), *out = malloc(big);
	uint64_t last = 0;
	int i;

	env_bs = big;
	env_init(&e, 64ULL * big, 3600000000000ULL);
	for (i = 0; i < 12; i++) {
		fill(in, big, (unsigned)i + 40);
		CHECK_RC(cache_write(e.c, 5, (uint64_t)i * big, in, big), big);
	}
	CHECK_RC(cache_flush_all(e.c, NULL, NULL), 0);
	CHECK_RC(cache_close(e.c, 0), 0);
	rm_rf(e.cdir); /* cold: every block from the store */
	CHECK_RC(env_open_cache(&e, 64ULL * big, 3600000000000ULL), 0);
	for (i = 0; i < 2; i++) {
		CHECK_RC(cache_read(e.c, 5, (uint64_t)i * big, big,
				    12ULL * big, out), big);
		fill(in, big, (unsigned)i + 40);
		CHECK_MEM(out, in, big);
	}
	/* wait until the fetchers are done (no new fetch for 300 ms) */
	for (i = 0; i < 100; i++) {
		cache_get_stats(e.c, &st);
		if (i % 6 == 5) {
			if (st.fetches == last)
				break;
			last = st.fetches;
		}
		usleep(50000);
	}
	CHECK_EQ_U64(st.fetches, 6); /* blocks 0 and 1, then 2 to 5 */
	env_free(&e);
	env_bs = BS;
	free(in);
	free(out);
}

static void test_truncate_and_punch(void)
{
	struct env e;
	uint8_t *in = malloc(4 * BS), *out = malloc(4 * BS);
	struct trunc_arg ta;

	env_init(&e, 64 * BS, 0);
	fill(in, 4 * BS, 3);
	CHECK_RC(cache_write(e.c, 4, 0, in, 4 * BS), 4 * BS);
	CHECK_RC(cache_flush_inode(e.c, 4), 0);
	/* shrink into block 1, then grow again: the tail reads zeros */
	ta.f = e.f;
	ta.ino = 4;
	ta.size = BS + 10;
	CHECK_RC(cache_truncate(e.c, 4, 4 * BS, BS + 10, fk_truncate, &ta), 0);
	CHECK(fb_find(e.f, 4, 2, 0) == NULL);
	ta.size = 4 * BS;
	CHECK_RC(cache_truncate(e.c, 4, BS + 10, 4 * BS, fk_truncate, &ta), 0);
	CHECK_RC(cache_read(e.c, 4, 0, 4 * BS, 4 * BS, out), 4 * BS);
	CHECK_MEM(out, in, BS + 10);
	CHECK(all_zero_prefix(out + BS + 10, 3 * BS - 10));
	CHECK_RC(cache_flush_inode(e.c, 4), 0);

	/* punch [BS/2, 3*BS): block 1 and 2 dropped, block 0 half zeroed */
	fill(in, 4 * BS, 4);
	CHECK_RC(cache_write(e.c, 4, 0, in, 4 * BS), 4 * BS);
	CHECK_RC(cache_punch(e.c, 4, BS / 2, 3 * BS - BS / 2, 4 * BS,
			     fk_drop, &ta), 0);
	CHECK_RC(cache_read(e.c, 4, 0, 4 * BS, 4 * BS, out), 4 * BS);
	CHECK_MEM(out, in, BS / 2);
	CHECK(all_zero_prefix(out + BS / 2, 3 * BS - BS / 2));
	CHECK_MEM(out + 3 * BS, in + 3 * BS, BS);
	CHECK(fb_find(e.f, 4, 1, 0) == NULL);
	CHECK_RC(cache_flush_inode(e.c, 4), 0);
	/* a range inside one block that starts at the block's start */
	fill(in, 4 * BS, 5);
	CHECK_RC(cache_write(e.c, 4, 0, in, 4 * BS), 4 * BS);
	CHECK_RC(cache_punch(e.c, 4, 2 * BS, 100, 4 * BS, fk_drop, &ta), 0);
	CHECK_RC(cache_read(e.c, 4, 0, 4 * BS, 4 * BS, out), 4 * BS);
	CHECK_MEM(out, in, 2 * BS);
	CHECK(all_zero_prefix(out + 2 * BS, 100));
	CHECK_MEM(out + 2 * BS + 100, in + 2 * BS + 100, 2 * BS - 100);
	/* and one inside a block, ending before its end */
	CHECK_RC(cache_punch(e.c, 4, 3 * BS + 10, 20, 4 * BS, fk_drop, &ta),
		 0);
	CHECK_RC(cache_read(e.c, 4, 3 * BS, BS, 4 * BS, out), BS);
	CHECK_MEM(out, in + 3 * BS, 10);
	CHECK(all_zero_prefix(out + 10, 20));
	CHECK_MEM(out + 30, in + 3 * BS + 30, BS - 30);
	CHECK_RC(cache_flush_inode(e.c, 4), 0);
	/* an all-zero block is stored as a hole */
	memset(in, 0, BS);
	CHECK_RC(cache_write(e.c, 4, 3 * BS, in, BS), BS);
	CHECK_RC(cache_flush_inode(e.c, 4), 0);
	CHECK(fb_find(e.f, 4, 3, 0) == NULL);
	env_free(&e);
	free(in);
	free(out);
}

static void test_damage_and_faults(void)
{
	struct env e;
	uint8_t *in = malloc(BS), *out = malloc(BS);
	int i;

	env_init(&e, 4 * BS, 0);
	for (i = 0; i < 8; i++) {
		fill(in, BS, (unsigned)i + 40);
		CHECK_RC(cache_write(e.c, 5, (uint64_t)i * BS, in, BS), BS);
	}
	CHECK_RC(cache_flush_all(e.c, NULL, NULL), 0);
	/* block 0 was evicted; its object now reads back damaged */
	store_fault_corrupt_reads(e.store, 1);
	CHECK_RC(cache_read(e.c, 5, 0, BS, 8 * BS, out), -EIO);
	store_fault_corrupt_reads(e.store, 0);
	CHECK_RC(cache_read(e.c, 5, 0, BS, 8 * BS, out), BS);
	fill(in, BS, 40);
	CHECK_MEM(out, in, BS);
	/* block 0 is cached now, block 1 is not and reads damaged: the read
	 * of both fails whole (a short read would be taken for the end of
	 * the file) */
	uint8_t *two = malloc(2 * BS);
	store_fault_corrupt_reads(e.store, 1);
	CHECK_RC(cache_read(e.c, 5, 0, 2 * BS, 8 * BS, two), -EIO);
	store_fault_corrupt_reads(e.store, 0);
	CHECK_RC(cache_read(e.c, 5, 0, 2 * BS, 8 * BS, two), 2 * BS);
	fill(in, BS, 41);
	CHECK_MEM(two + BS, in, BS);
	free(two);

	/* uploads failing: fsync reports it; later it succeeds */
	store_fault_arm(e.store, STORE_OP_PUT, 0, -1, EIO);
	fill(in, BS, 99);
	CHECK_RC(cache_write(e.c, 6, 0, in, BS), BS);
	CHECK(cache_flush_inode(e.c, 6) < 0);
	CHECK(fb_find(e.f, 6, 0, 0)->dirty);
	store_fault_arm(e.store, STORE_OP_PUT, 0, 0, 0);
	CHECK_RC(cache_flush_inode(e.c, 6), 0);
	CHECK(!fb_find(e.f, 6, 0, 0)->dirty);
	env_free(&e);
	free(in);
	free(out);
}

static void test_dedup_and_recovery(void)
{
	struct env e;
	uint8_t *in = malloc(BS), *out = malloc(BS);

	env_init(&e, 64 * BS, 3600ULL * 1000000000ULL);
	fill(in, BS, 7);
	CHECK_RC(cache_write(e.c, 7, 0, in, BS), BS);
	CHECK_RC(cache_write(e.c, 8, 0, in, BS), BS);
	CHECK_RC(cache_flush_all(e.c, NULL, NULL), 0);
	CHECK_RC(count_objects(&e), 1);
	CHECK_RC(fo_find(e.f, fb_find(e.f, 7, 0, 0)->hash, 0)->refs, 2);

	/* a write that is not uploaded survives a "crash" of the cache */
	fill(in, BS, 8);
	CHECK_RC(cache_write(e.c, 9, 0, in, BS), BS);
	CHECK_RC(cache_close(e.c, 1), 0);
	CHECK(fb_find(e.f, 9, 0, 0)->dirty);
	/* a long delay: only the flush uploads, the next write stays dirty */
	CHECK_RC(env_open_cache(&e, 64 * BS, 3600ULL * 1000000000ULL), 0);
	CHECK_RC(cache_flush_all(e.c, NULL, NULL), 0);
	CHECK(!fb_find(e.f, 9, 0, 0)->dirty);
	CHECK_RC(count_objects(&e), 2);
	CHECK_RC(cache_read(e.c, 9, 0, BS, BS, out), BS);
	CHECK_MEM(out, in, BS);

	/* a dirty block whose cache file is lost keeps its old content */
	fill(in, BS, 9);
	CHECK_RC(cache_write(e.c, 9, 0, in, BS), BS);
	CHECK_RC(cache_close(e.c, 1), 0);
	{
		char blocks[256];

		snprintf(blocks, sizeof(blocks), "%s/blocks", e.cdir);
		rm_rf(blocks);
	}
	CHECK_RC(env_open_cache(&e, 64 * BS, 0), 0);
	CHECK(!fb_find(e.f, 9, 0, 0)->dirty);
	CHECK_RC(cache_read(e.c, 9, 0, BS, BS, out), BS);
	fill(in, BS, 8);
	CHECK_MEM(out, in, BS);
	env_free(&e);
	free(in);
	free(out);
}

/*
 * A clean close leaves the clean blocks for the next open, which serves
 * them without a fetch while the index still names their content; a
 * block whose index entry changed meanwhile is fetched again, and a
 * crash (abandon) keeps no clean block.
 */
static void test_clean_blocks_kept(void)
{
	struct cache_stats st;
	struct env e;
	size_t len = 2 * BS + BS / 2;
	uint8_t *in = malloc(3 * BS), *x = malloc(BS), *out = malloc(3 * BS);

	env_init(&e, 64 * BS, 3600ULL * 1000000000ULL);
	fill(in, len, 21);
	fill(x, BS, 22);
	CHECK_RC(cache_write(e.c, 10, 0, in, len), (ssize_t)len);
	CHECK_RC(cache_write(e.c, 11, 0, x, BS), BS);
	CHECK_RC(cache_flush_all(e.c, NULL, NULL), 0);
	CHECK_RC(cache_close(e.c, 0), 0);
	CHECK_RC(env_open_cache(&e, 64 * BS, 3600ULL * 1000000000ULL), 0);
	CHECK_RC(cache_read(e.c, 10, 0, 3 * BS, len, out), (ssize_t)len);
	CHECK_MEM(out, in, len);
	cache_get_stats(e.c, &st);
	CHECK_EQ_U64(st.fetches, 0);
	CHECK_EQ_U64(st.cached_bytes, 4 * BS);

	/* many at once: files renamed while the directory is read */
	{
		uint8_t *many = malloc(48 * BS), *back = malloc(48 * BS);

		fill(many, 48 * BS, 24);
		CHECK_RC(cache_write(e.c, 12, 0, many, 48 * BS), 48 * BS);
		CHECK_RC(cache_flush_all(e.c, NULL, NULL), 0);
		CHECK_RC(cache_close(e.c, 0), 0);
		CHECK_RC(env_open_cache(&e, 64 * BS,
					3600ULL * 1000000000ULL), 0);
		CHECK_RC(cache_read(e.c, 12, 0, 48 * BS, 48 * BS, back),
			 48 * BS);
		CHECK_MEM(back, many, 48 * BS);
		cache_get_stats(e.c, &st);
		CHECK_EQ_U64(st.fetches, 0);
		free(many);
		free(back);
	}

	/* block 1 now names other content (as after a restore) */
	CHECK_RC(cache_close(e.c, 0), 0);
	memcpy(fb_find(e.f, 10, 1, 0)->hash, fb_find(e.f, 11, 0, 0)->hash,
	       BLOB_NAME_LEN + 1);
	CHECK_RC(env_open_cache(&e, 64 * BS, 3600ULL * 1000000000ULL), 0);
	CHECK_RC(cache_read(e.c, 10, BS, BS, len, out), BS);
	CHECK_MEM(out, x, BS);
	CHECK_RC(cache_read(e.c, 10, 0, BS, len, out), BS);
	CHECK_MEM(out, in, BS);
	cache_get_stats(e.c, &st);
	CHECK_EQ_U64(st.fetches, 1);

	/* a crash keeps the dirty block and no clean one */
	fill(in, BS, 23);
	CHECK_RC(cache_write(e.c, 10, 2 * BS, in, BS / 2), BS / 2);
	CHECK_RC(cache_close(e.c, 1), 0);
	CHECK_RC(env_open_cache(&e, 64 * BS, 3600ULL * 1000000000ULL), 0);
	cache_get_stats(e.c, &st);
	CHECK_EQ_U64(st.cached_bytes, BS);
	CHECK_RC(cache_read(e.c, 10, 2 * BS, BS, len, out), BS / 2);
	CHECK_MEM(out, in, BS / 2);
	CHECK_RC(cache_read(e.c, 11, 0, BS, BS, out), BS);
	CHECK_MEM(out, x, BS);
	cache_get_stats(e.c, &st);
	CHECK(st.fetches >= 1);

	/* kept by another boot (a power loss came between): not believed */
	CHECK_RC(cache_flush_all(e.c, NULL, NULL), 0);
	CHECK_RC(cache_close(e.c, 0), 0);
	{
		char kept[256];
		FILE *fk;

		snprintf(kept, sizeof(kept), "%s/blocks/kept", e.cdir);
		fk = fopen(kept, "r+");
		CHECK(fk != NULL);
		if (fk) {
			fputs("0", fk); /* no boot id starts like this */
			fclose(fk);
		}
	}
	CHECK_RC(env_open_cache(&e, 64 * BS, 3600ULL * 1000000000ULL), 0);
	cache_get_stats(e.c, &st);
	CHECK_EQ_U64(st.cached_bytes, 0);
	CHECK_RC(cache_read(e.c, 11, 0, BS, BS, out), BS);
	CHECK_MEM(out, x, BS);
	env_free(&e);
	free(in);
	free(x);
	free(out);
}

struct par {
	struct env *e;
	uint64_t ino;
};

static void *par_writer(void *arg)
{
	struct par *p = arg;
	uint8_t buf[1000];
	int i;

	for (i = 0; i < 400; i++) {
		fill(buf, sizeof(buf), (unsigned)(p->ino * 1000 + (uint64_t)i));
		if (cache_write(p->e->c, p->ino, (uint64_t)(i * 997) % (20 * BS),
				buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			return (void *)1;
	}
	return NULL;
}

static void test_concurrency(void)
{
	struct env e;
	pthread_t t[4];
	struct par p[4];
	uint8_t *out = malloc(21 * BS), *ref = calloc(1, 21 * BS);
	uint8_t buf[1000];
	int i, j, bad = 0;

	/* writers race with uploads (delay 0) and evictions (small cache) */
	env_init(&e, 48 * BS, 0);
	for (i = 0; i < 4; i++) {
		p[i].e = &e;
		p[i].ino = 20 + (uint64_t)i;
		pthread_create(&t[i], NULL, par_writer, &p[i]);
	}
	for (i = 0; i < 4; i++) {
		void *r;

		pthread_join(t[i], &r);
		bad += r != NULL;
	}
	CHECK_RC(bad, 0);
	CHECK_RC(cache_flush_all(e.c, NULL, NULL), 0);
	for (i = 0; i < 4; i++) {
		uint64_t ino = 20 + (uint64_t)i;

		memset(ref, 0, 21 * BS);
		for (j = 0; j < 400; j++) {
			fill(buf, sizeof(buf), (unsigned)(ino * 1000 + (uint64_t)j));
			memcpy(ref + (uint64_t)(j * 997) % (20 * BS), buf,
			       sizeof(buf));
		}
		CHECK(!fb_find(e.f, ino, 0, 0) || !fb_find(e.f, ino, 0, 0)->dirty);
		CHECK_RC(cache_read(e.c, ino, 0, 21 * BS, e.f->size[ino], out),
			 (ssize_t)e.f->size[ino]);
		CHECK_MEM(out, ref, e.f->size[ino]);
	}
	env_free(&e);
	free(out);
	free(ref);
}

/* File ino reads back as the len bytes of want. */
static void check_file(struct env *e, uint64_t ino, const uint8_t *want,
		       size_t len)
{
	uint8_t *got = malloc(len + 1);

	CHECK_RC(cache_read(e->c, ino, 0, len + 1, len, got), (ssize_t)len);
	CHECK_MEM(got, want, len);
	free(got);
}

/*
 * The flush's self-check: a block the index holds dirty while the cache
 * has no dirty entry for it would never be uploaded nor waited for by
 * fsync.  A flush says so in the log (as a bug), and says nothing while
 * the two agree, with blocks dirty or not.
 */
static bool flush_logs_bug(struct env *e, uint64_t ino)
{
	char path[160];
	struct buf b = BUF_INIT;
	bool bug;

	snprintf(path, sizeof(path), "%s/flush.log", e->dir);
	unlink(path);
	CHECK_RC(log_set_file(path), 0);
	CHECK_RC(cache_flush_inode(e->c, ino), 0);
	CHECK_RC(log_set_file("/dev/stderr"), 0);
	CHECK_RC(read_file(path, &b), 0);
	bug = b.len && memmem(b.data, b.len, "(a bug)", 7);
	buf_free(&b);
	return bug;
}

static void test_flush_self_check(void)
{
	struct env e;
	uint8_t *a = malloc(2 * BS);

	env_init(&e, 64 * BS, 3600ULL * 1000000000ULL);
	fill(a, 2 * BS, 21);
	CHECK_RC(cache_write(e.c, 21, 0, a, 2 * BS), 2 * BS);
	CHECK(!flush_logs_bug(&e, 21));
	CHECK_RC(cache_write(e.c, 21, 10, a, 100), 100);
	CHECK(!flush_logs_bug(&e, 21));
	/* block 1 dirty in the index behind the cache's back */
	pthread_mutex_lock(&e.f->lock);
	fb_find(e.f, 21, 1, 0)->dirty = 1;
	pthread_mutex_unlock(&e.f->lock);
	CHECK(flush_logs_bug(&e, 21));
	env_free(&e);
	free(a);
}

/*
 * A block written in a few pages since its upload goes up as a patch of
 * those pages, read back cold as base plus patches; whole again after a
 * truncate, a failed upload keeps its pages, a long chain is replaced.
 */
static void test_patches(void)
{
	struct cache_stats st0, st;
	const uint32_t bs = 64 * 1024;
	size_t len = 4 * bs;
	uint8_t *model = malloc(6 * bs), *in = malloc(bs);
	struct trunc_arg ta;
	struct env e;
	int i;

	env_bs = bs;
	env_patches = true;
	env_init(&e, 64 * bs, 3600ULL * 1000000000ULL);
	fill(model, len, 3);
	CHECK_RC(cache_write(e.c, 1, 0, model, len), (ssize_t)len);
	CHECK_RC(cache_flush_inode(e.c, 1), 0);
	cache_get_stats(e.c, &st0);
	CHECK_EQ_U64(st0.patches, 0);

	/* two pages of block 1 (one write crossing into a third) */
	fill(in, 200, 4);
	memcpy(model + bs + 5000, in, 100);
	CHECK_RC(cache_write(e.c, 1, bs + 5000, in, 100), 100);
	memcpy(model + bs + 40000, in + 100, 100);
	CHECK_RC(cache_write(e.c, 1, bs + 40000, in + 100, 100), 100);
	memcpy(model + bs + 8190, in, 10);
	CHECK_RC(cache_write(e.c, 1, bs + 8190, in, 10), 10);
	CHECK_RC(cache_flush_inode(e.c, 1), 0);
	cache_get_stats(e.c, &st);
	CHECK_EQ_U64(st.patches, 1);
	CHECK_EQ_U64(st.uploads, st0.uploads + 1);
	/* pages 1, 2 and 9: 3 pages, not a block */
	CHECK(st.upload_bytes - st0.upload_bytes <= 3 * 4096 + 200);
	CHECK_EQ_U64(fb_find(e.f, 1, 1, 0)->npatch, 1);
	reopen_cold(&e);
	check_file(&e, 1, model, len);

	/* (stats count from each open) past the end of the last block,
	 * which grows: a patch */
	fill(in, 300, 5);
	memcpy(model + len + 1000, in, 300);
	memset(model + len, 0, 1000);
	CHECK_RC(cache_write(e.c, 1, len + 1000, in, 300), 300);
	len += 1300;
	CHECK_RC(cache_flush_inode(e.c, 1), 0);
	cache_get_stats(e.c, &st);
	CHECK_EQ_U64(st.patches, 0); /* block 4 is new: whole */
	memcpy(model + 3 * bs + 7, in, 50);
	CHECK_RC(cache_write(e.c, 1, 3 * bs + 7, in, 50), 50);
	memcpy(model + len - 20, in, 40);
	CHECK_RC(cache_write(e.c, 1, len - 20, in, 40), 40);
	len += 20;
	CHECK_RC(cache_flush_inode(e.c, 1), 0);
	cache_get_stats(e.c, &st);
	CHECK_EQ_U64(st.patches, 2);
	reopen_cold(&e);
	check_file(&e, 1, model, len);

	/* a truncate into block 2: its next upload is whole */
	ta.f = e.f;
	ta.ino = 1;
	ta.size = 2 * bs + 100;
	CHECK_RC(cache_truncate(e.c, 1, len, ta.size, fk_truncate, &ta), 0);
	len = ta.size;
	CHECK_RC(cache_write(e.c, 1, 2 * bs + 50, in, 10), 10);
	memcpy(model + 2 * bs + 50, in, 10);
	CHECK_RC(cache_flush_inode(e.c, 1), 0);
	cache_get_stats(e.c, &st);
	CHECK_EQ_U64(st.patches, 0);
	CHECK_EQ_U64(st.uploads, 1);
	reopen_cold(&e);
	check_file(&e, 1, model, len);

	/* a failed patch upload gives its pages back to the next one */
	store_fault_arm(e.store, STORE_OP_PUT, 0, -1, EIO);
	CHECK_RC(cache_write(e.c, 1, 3, in, 5), 5);
	memcpy(model + 3, in, 5);
	CHECK(cache_flush_inode(e.c, 1) < 0);
	store_fault_arm(e.store, STORE_OP_PUT, 0, 0, 0);
	CHECK_RC(cache_write(e.c, 1, 30000, in, 5), 5);
	memcpy(model + 30000, in, 5);
	CHECK_RC(cache_flush_inode(e.c, 1), 0);
	cache_get_stats(e.c, &st);
	CHECK_EQ_U64(st.patches, 1);
	reopen_cold(&e);
	check_file(&e, 1, model, len);

	/* patch after patch: the chain stays short */
	for (i = 0; i < 12; i++) {
		fill(in, 64, 10 + (unsigned)i);
		CHECK_RC(cache_write(e.c, 1, (uint64_t)i * 4096 + 1, in, 64),
			 64);
		memcpy(model + i * 4096 + 1, in, 64);
		CHECK_RC(cache_flush_inode(e.c, 1), 0);
		CHECK(fb_find(e.f, 1, 0, 0)->npatch <= 8);
	}
	cache_get_stats(e.c, &st);
	/* 7 on the one there, one whole, 4 on that */
	CHECK_EQ_U64(st.patches, 11);
	reopen_cold(&e);
	check_file(&e, 1, model, len);

	/* a patch missing from the store: its block reads as EIO, never as
	 * its base; the others are fine */
	{
		struct fblock *b = fb_find(e.f, 1, 0, 0);
		char key[BLOB_DATA_KEY_LEN + 1];

		CHECK(b->npatch == 4);
		blob_data_key(b->patch[1], key);
		CHECK_RC(store_del(e.store, key), 0);
		reopen_cold(&e);
		CHECK_RC(cache_read(e.c, 1, 0, 10, len, in), -EIO);
		CHECK_RC(cache_read(e.c, 1, bs, 10, len, in), 10);
		CHECK_MEM(in, model + bs, 10);
	}
	env_free(&e);

	/* off: whole uploads only */
	env_patches = false;
	env_init(&e, 64 * bs, 3600ULL * 1000000000ULL);
	CHECK_RC(cache_write(e.c, 2, 0, model, 2 * bs), (ssize_t)(2 * bs));
	CHECK_RC(cache_flush_inode(e.c, 2), 0);
	CHECK_RC(cache_write(e.c, 2, 10, in, 10), 10);
	CHECK_RC(cache_flush_inode(e.c, 2), 0);
	cache_get_stats(e.c, &st);
	CHECK_EQ_U64(st.patches, 0);
	env_free(&e);
	env_bs = BS;
	free(model);
	free(in);
}

/*
 * On a store that stages puts (the local store), a flush's uploads go up
 * in batches, each recorded only once its batch's sync made its object
 * durable: a failed sync records nothing, leaves every block dirty and
 * no object behind, and the next flush puts them all.  Identical blocks
 * in one flush (one name, claimed by one staged upload) go up once.
 */
static void test_batched_uploads(void)
{
	struct store_fault_counts c0, c1;
	uint8_t *in = malloc(BS), *out = malloc(BS);
	struct env e;
	int i, rc;

	env_init(&e, 64 * BS, 3600ULL * 1000000000ULL);
	CHECK(store_batch_native(e.store));
	for (i = 0; i < 24; i++) {
		fill(in, BS, i < 16 ? (unsigned)i + 200 : 300);
		CHECK_RC(cache_write(e.c, 7, (uint64_t)i * BS, in, BS), BS);
	}
	store_fault_get_counts(e.store, &c0);
	store_fault_arm(e.store, STORE_OP_SYNC, 0, -1, EIO);
	CHECK_RC(cache_flush_inode(e.c, 7), -EIO);
	for (i = 0; i < 24; i++)
		CHECK(fb_find(e.f, 7, (uint64_t)i, 0)->dirty);
	CHECK_EQ_U64(count_objects(&e), 0);
	store_fault_arm(e.store, STORE_OP_SYNC, 0, 0, 0);
	/* a batch of each worker still going when the first flush
	 * returned may fail once more, and fail a flush */
	rc = cache_flush_inode(e.c, 7);
	for (i = 0; i < 2 && rc == -EIO; i++)
		rc = cache_flush_inode(e.c, 7);
	CHECK_RC(rc, 0);
	store_fault_get_counts(e.store, &c1);
	for (i = 0; i < 24; i++)
		CHECK(!fb_find(e.f, 7, (uint64_t)i, 0)->dirty);
	CHECK_EQ_U64(count_objects(&e), 17);
	/* fewer syncs than puts: the puts went up together */
	CHECK(c1.calls[5] - c0.calls[5] > 0);
	CHECK(c1.calls[5] - c0.calls[5] < c1.calls[0] - c0.calls[0]);
	reopen_cold(&e);
	for (i = 0; i < 24; i++) {
		fill(in, BS, i < 16 ? (unsigned)i + 200 : 300);
		CHECK_RC(cache_read(e.c, 7, (uint64_t)i * BS, BS, 24 * BS,
				    out), BS);
		CHECK_MEM(out, in, BS);
	}
	env_free(&e);
	free(in);
	free(out);
}

int main(void)
{
	if (blob_global_init())
		return 1;
	test_write_read();
	test_delay_uploads();
	test_whole_blocks_go_early();
	test_max_dirty_weighs_data();
	test_room_pressure();
	test_evict_and_fetch();
	test_read_ahead_big_blocks();
	test_truncate_and_punch();
	test_damage_and_faults();
	test_dedup_and_recovery();
	test_clean_blocks_kept();
	test_concurrency();
	test_flush_self_check();
	test_patches();
	test_batched_uploads();
	return check_done("t_cache");
}
