/*
 * t_meta_block.c - unit tests of the metadata layer's block map
 * (src/meta/meta.h, meta_block.c): blocks, patches, forgetting dirty
 * blocks, inline data, objects, garbage collection and the stats.
 *
 * Purpose: every public function of the block map and every documented
 * error code, with the refcount of each object checked after each step;
 * on an in-memory database, and on a file for what fsck and the stats
 * read back after a reopen.
 *
 * Data model: each test opens its own database (t_meta.h helpers); file
 * databases live in a private mkdtemp() directory removed at the end.
 * Object names are 64 copies of one character (hash_of()).
 *
 * Invariants: a test leaves no database open.
 */
#include "util/compat.h"

#include "t_meta.h"

/* ---- block map, objects, GC ---- */

struct dirty_list {
	struct meta *m;
	size_t n, stop_at;
	uint64_t ino[1024], idx[1024];
};

static int dirty_cb(uint64_t ino, uint64_t idx, void *arg)
{
	struct dirty_list *l = arg;
	char hash[META_HASH_LEN + 1];
	int dirty = 0;

	if (l->n < ARRAY_SIZE(l->ino)) {
		l->ino[l->n] = ino;
		l->idx[l->n] = idx;
	}
	l->n++;
	/* re-entrant: the lock is not held */
	CHECK_RC(meta_block_get(l->m, ino, idx, hash, &dirty), 0);
	CHECK(dirty == 1);
	return l->stop_at && l->n == l->stop_at ? 7 : 0;
}

/* The volume the block steps share: each starts where the one before
 * left it. */
struct blocks_fx {
	struct meta *m;
	struct timespec t;
	char h1[65], h2[65], h3[65], h4[65];
	uint64_t idx[3];
	uint64_t f, g;		/* regular files in the root */
	uint64_t d;		/* a directory */
};

/* Commits: a clean block references its object; two blocks share one;
 * a block written again during its upload stays dirty. */
static void blocks_commit(struct blocks_fx *x)
{
	struct meta *m = x->m;
	const char *h1 = x->h1, *h2 = x->h2;
	uint64_t f = x->f;
	struct meta_stats st;
	char hash[65];
	int dirty;

	/* commit: clean, referenced */
	CHECK_RC(meta_block_commit(m, f, 0, h1, 100, 0), 0);
	CHECK_RC(meta_block_get(m, f, 0, hash, &dirty), 0);
	CHECK(!strcmp(hash, h1) && dirty == 0);
	CHECK_EQ_U64(refcount_of(m, h1), 1);
	/* dedup: two blocks, one object */
	CHECK_RC(meta_block_commit(m, f, 1, h1, 100, 0), 0);
	CHECK_EQ_U64(refcount_of(m, h1), 2);
	/* still dirty: written again during the upload */
	CHECK_RC(meta_block_commit(m, f, 2, h2, 200, 1), 0);
	CHECK_RC(meta_block_get(m, f, 2, hash, &dirty), 0);
	CHECK(!strcmp(hash, h2) && dirty == 1);
	CHECK_EQ_U64(refcount_of(m, h2), 1);
	CHECK_RC(meta_stats(m, &st), 0);
	CHECK(st.objects == 2 && st.object_bytes == 300);
	CHECK(st.blocks == 3 && st.dirty_blocks == 1);
	/* the same hash again on a dirty block: counts stay right */
	CHECK_RC(meta_block_commit(m, f, 2, h2, 200, 0), 0);
	CHECK_EQ_U64(refcount_of(m, h2), 1);
}

/* Stale: not dirty (or gone) -> -ESTALE, object known with 0 refs. */
static void blocks_stale(struct blocks_fx *x)
{
	struct meta *m = x->m;
	const char *h1 = x->h1, *h3 = x->h3, *h4 = x->h4;
	uint64_t f = x->f;
	char hash[65];
	int dirty;

	CHECK_RC(meta_block_commit(m, f, 0, h3, 300, 0), -ESTALE);
	CHECK_EQ_U64(refcount_of(m, h3), 0);
	CHECK_EQ_U64(refcount_of(m, h1), 2);
	CHECK_RC(meta_block_get(m, f, 0, hash, &dirty), 0);
	CHECK(!strcmp(hash, h1));
	CHECK_RC(meta_block_commit(m, f, 9, h4, 1, 0), -ESTALE);
	CHECK_EQ_U64(refcount_of(m, h4), 0);
	CHECK_RC(meta_block_commit(m, f, 9, NULL, 0, 0), -ESTALE);
	CHECK_RC(meta_block_commit(m, 99999, 0, h4, 1, 0), -ESTALE);
	/* an existing referenced object is left alone by a stale commit */
	CHECK_RC(meta_block_commit(m, f, 9, h1, 1, 0), -ESTALE);
	CHECK_EQ_U64(refcount_of(m, h1), 2);
}

/* A block rewritten: other content, all zeros (a hole), no content yet
 * while still dirty. */
static void blocks_rewrite(struct blocks_fx *x)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	const char *h1 = x->h1, *h2 = x->h2;
	uint64_t *idx = x->idx, f = x->f;
	char hash[65];
	int dirty;

	/* rewrite block 0 with other content */
	CHECK_RC(meta_write_done(m, f, 0, &t, idx, 1), 0);
	CHECK_RC(meta_block_get(m, f, 0, hash, &dirty), 0);
	CHECK(!strcmp(hash, h1) && dirty == 1); /* old hash kept */
	CHECK_RC(meta_block_commit(m, f, 0, h2, 200, 0), 0);
	CHECK_EQ_U64(refcount_of(m, h1), 1);
	CHECK_EQ_U64(refcount_of(m, h2), 2);
	/* all zeros: NULL hash makes a hole */
	CHECK_RC(meta_write_done(m, f, 0, &t, idx + 1, 1), 0);
	CHECK_RC(meta_block_commit(m, f, 1, NULL, 0, 0), 0);
	CHECK_RC(meta_block_get(m, f, 1, hash, &dirty), -ENOENT);
	CHECK_EQ_U64(refcount_of(m, h1), 0);
	CHECK_EQ_U64(ga(m, f).nblocks, 2);
	/* NULL hash, still dirty: row stays, names nothing */
	CHECK_RC(meta_write_done(m, f, 0, &t, idx, 1), 0);
	CHECK_RC(meta_block_commit(m, f, 0, NULL, 0, 1), 0);
	CHECK_RC(meta_block_get(m, f, 0, hash, &dirty), 0);
	CHECK(hash[0] == 0 && dirty == 1);
	CHECK_EQ_U64(refcount_of(m, h2), 1);
	CHECK_RC(meta_block_commit(m, f, 0, h2, 200, 0), 0);
	CHECK_EQ_U64(refcount_of(m, h2), 2);
}

/* Bad object names: too long, empty, short (then merely stale). */
static void blocks_bad_names(struct blocks_fx *x)
{
	struct meta *m = x->m;
	uint64_t f = x->f;
	char longh[80];

	memset(longh, 'a', 65);
	longh[65] = 0;
	CHECK_RC(meta_block_commit(m, f, 0, longh, 1, 0), -EINVAL);
	CHECK_RC(meta_block_commit(m, f, 0, "", 1, 0), -EINVAL);
	CHECK_RC(meta_block_commit(m, f, 0, "abc", 1, 0), -ESTALE);
}

/* Truncate: rows wholly past the end go, refcounts follow; growing drops
 * nothing. */
static void blocks_truncate(struct blocks_fx *x)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	const char *h1 = x->h1, *h2 = x->h2, *h3 = x->h3;
	uint64_t *idx = x->idx, f = x->f;
	struct meta_attr in, a;
	char hash[65];
	int dirty;

	CHECK_RC(meta_write_done(m, f, 0, &t, idx + 2, 1), 0); /* dirty 2 */
	memset(&in, 0, sizeof(in));
	in.size = BS + 1; /* keeps blocks 0 and 1 */
	CHECK_RC(meta_setattr(m, f, &in, META_SET_SIZE, &t, &a), 0);
	CHECK_EQ_U64(a.nblocks, 1); /* 0 only: 1 is a hole */
	CHECK_EQ_U64(refcount_of(m, h2), 1);
	CHECK_RC(meta_block_get(m, f, 2, hash, &dirty), -ENOENT);
	/* the upload of block 2 finishes after the truncate */
	CHECK_RC(meta_block_commit(m, f, 2, h3, 300, 0), -ESTALE);
	in.size = 0;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_SIZE, &t, &a), 0);
	CHECK_EQ_U64(a.nblocks, 0);
	CHECK_EQ_U64(refcount_of(m, h2), 0);
	/* growing drops nothing */
	idx[0] = 0;
	CHECK_RC(meta_write_done(m, f, 2 * BS, &t, idx, 2), 0);
	CHECK_RC(meta_block_commit(m, f, 0, h1, 100, 0), 0);
	in.size = 100 * BS;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_SIZE, &t, &a), 0);
	CHECK_EQ_U64(a.nblocks, 2);
	/* exact block boundary: size 1 block keeps block 0 only */
	in.size = BS;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_SIZE, &t, &a), 0);
	CHECK_EQ_U64(a.nblocks, 1);
	CHECK_EQ_U64(refcount_of(m, h1), 1);
}

/* Hole punching: ranges of rows go, refcounts follow. */
static void blocks_punch(struct blocks_fx *x)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	const char *h3 = x->h3, *h4 = x->h4;
	uint64_t many[10], g;
	char hash[65];
	int dirty, i;

	g = x->g = mk(m, 1, "g", S_IFREG | 0644);
	for (i = 0; i < 10; i++)
		many[i] = (uint64_t)i;
	CHECK_RC(meta_write_done(m, g, 10 * BS, &t, many, 10), 0);
	for (i = 0; i < 10; i++)
		CHECK_RC(meta_block_commit(m, g, (uint64_t)i,
					   i % 2 ? h3 : h4, 10, 0), 0);
	CHECK_EQ_U64(refcount_of(m, h3), 5);
	CHECK_EQ_U64(refcount_of(m, h4), 5);
	CHECK_RC(meta_block_drop(m, g, 2, 5), 0);
	CHECK_EQ_U64(ga(m, g).nblocks, 6);
	CHECK_EQ_U64(refcount_of(m, h3), 3);
	CHECK_EQ_U64(refcount_of(m, h4), 3);
	CHECK_RC(meta_block_get(m, g, 2, hash, &dirty), -ENOENT);
	CHECK_RC(meta_block_get(m, g, 6, hash, &dirty), 0);
	CHECK_RC(meta_block_drop(m, g, 8, UINT64_MAX), 0);
	CHECK_EQ_U64(ga(m, g).nblocks, 4);
	CHECK_RC(meta_block_drop(m, g, 5, 2), 0); /* empty range */
	CHECK_RC(meta_block_drop(m, 99999, 0, 10), 0);
	CHECK_EQ_U64(ga(m, g).nblocks, 4);
}

/* Dirty blocks: order, batches, stop, re-entrancy; then the cache is
 * lost and dirty rows without a hash go. */
static void blocks_dirty(struct blocks_fx *x, struct dirty_list *dl)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	const char *h3 = x->h3, *h4 = x->h4;
	uint64_t many[700], g = x->g, h;
	char hash[65];
	int dirty;
	size_t i;

	h = mk(m, x->d, "h", S_IFREG | 0644);
	for (i = 0; i < 700; i++)
		many[i] = i;
	CHECK_RC(meta_write_done(m, h, 700 * BS, &t, many, 700), 0);
	CHECK_RC(meta_write_done(m, g, 0, &t, many + 7, 1), 0);
	dl->m = m;
	CHECK_RC(meta_blocks_dirty(m, dirty_cb, dl), 0);
	CHECK_EQ_U64(dl->n, 701);
	CHECK(dl->ino[0] == g && dl->idx[0] == 7);
	for (i = 1; i < 701 && i < 1024; i++)
		CHECK(dl->ino[i] == h && dl->idx[i] == i - 1);
	memset(dl, 0, sizeof(*dl));
	dl->m = m;
	dl->stop_at = 300;
	CHECK_RC(meta_blocks_dirty(m, dirty_cb, dl), 7);
	CHECK_EQ_U64(dl->n, 300);

	/* the cache is lost: dirty rows without a hash go */
	CHECK_RC(meta_write_done(m, g, 0, &t, many, 1), 0);
	CHECK_EQ_U64(meta_blocks_forget_dirty(m), 702);
	CHECK_EQ_U64(ga(m, h).nblocks, 0);
	CHECK_EQ_U64(ga(m, g).nblocks, 4);
	CHECK_RC(meta_block_get(m, g, 0, hash, &dirty), 0);
	CHECK(dirty == 0 && !strcmp(hash, h4));
	CHECK_RC(meta_block_get(m, g, 7, hash, &dirty), 0);
	CHECK(dirty == 0 && !strcmp(hash, h3));
	CHECK_EQ_U64(meta_blocks_forget_dirty(m), 0);
	memset(dl, 0, sizeof(*dl));
	dl->m = m;
	CHECK_RC(meta_blocks_dirty(m, dirty_cb, dl), 0);
	CHECK_EQ_U64(dl->n, 0);
}

/* A purge releases the blocks' objects. */
static void blocks_purge(struct blocks_fx *x)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	uint64_t f = x->f, g = x->g;
	char hash[65];
	int dirty;

	CHECK_RC(meta_unlink(m, 1, "g", &t, NULL), 0);
	CHECK_RC(meta_inode_purge(m, g), 0);
	CHECK_EQ_U64(refcount_of(m, x->h3), 0);
	CHECK_EQ_U64(refcount_of(m, x->h4), 0);
	CHECK_RC(meta_block_get(m, g, 0, hash, &dirty), -ENOENT);
	CHECK_RC(meta_object_get(m, "nope", &f), -ENOENT);
}

static void test_blocks(void)
{
	struct blocks_fx x = { .m = open_mem(), .t = ts(1, 0),
			       .idx = { 0, 1, 2 } };
	struct dirty_list *dl;
	struct meta_stats st;

	if (!x.m)
		return;
	hash_of('1', x.h1);
	hash_of('2', x.h2);
	hash_of('3', x.h3);
	hash_of('4', x.h4);
	x.f = mk(x.m, 1, "f", S_IFREG | 0644);
	x.d = mk(x.m, 1, "d", S_IFDIR | 0755);
	CHECK_RC(meta_write_done(x.m, x.f, 3 * BS, &x.t, x.idx, 3), 0);
	CHECK_RC(meta_stats(x.m, &st), 0);
	CHECK(st.blocks == 3 && st.dirty_blocks == 3 && st.objects == 0);
	blocks_commit(&x);
	blocks_stale(&x);
	blocks_rewrite(&x);
	blocks_bad_names(&x);
	blocks_truncate(&x);
	blocks_punch(&x);
	dl = calloc(1, sizeof(*dl));
	if (dl) {
		blocks_dirty(&x, dl);
		free(dl);
	} else {
		CHECK(0);
	}
	blocks_purge(&x);
	meta_close(x.m);
}

static int gc_stop_cb(const char *hash, void *arg)
{
	return -EINTR;
}

struct obj_list {
	size_t n;
	uint64_t refs;
};

static int obj_cb(const char *hash, uint64_t refcount, void *arg)
{
	struct obj_list *o = arg;

	o->n++;
	o->refs += refcount;
	return 0;
}

static int gc_forget_cb(const char *hash, void *arg)
{
	CHECK_RC(meta_gc_forget(arg, hash), 1);
	return 0;
}

/*
 * The cache is lost after a truncate cut a block and before the cut went
 * up: the block's last upload reaches past the file's end, and those
 * bytes would come back if the file grew.  Forgetting dirty blocks keeps
 * such a block dirty (the cache cuts it again); the others become clean.
 */
static void test_forget_dirty_tail(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(1, 0);
	uint64_t idx[3] = { 0, 1, 2 }, f, g;
	char h1[65], hash[65];
	struct meta_attr in;
	int dirty;

	if (!m)
		return;
	hash_of('1', h1);
	f = mk(m, 1, "f", S_IFREG | 0644);
	g = mk(m, 1, "g", S_IFREG | 0644);
	CHECK_RC(meta_write_done(m, f, 3 * BS, &t, idx, 3), 0);
	CHECK_RC(meta_write_done(m, g, 2 * BS, &t, idx, 2), 0);
	for (int i = 0; i < 3; i++)
		CHECK_RC(meta_block_commit(m, f, (uint64_t)i, h1, 100, 0), 0);
	for (int i = 0; i < 2; i++)
		CHECK_RC(meta_block_commit(m, g, (uint64_t)i, h1, 100, 0), 0);
	/* f cut inside block 1 (the cache marks the tail dirty), g
	 * written in both blocks; then the cache is lost */
	CHECK_RC(meta_write_done(m, f, 0, &t, idx + 1, 1), 0);
	memset(&in, 0, sizeof(in));
	in.size = BS + 10;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_SIZE, &t, NULL), 0);
	CHECK_RC(meta_write_done(m, g, 0, &t, idx, 2), 0);
	CHECK_EQ_U64(meta_blocks_forget_dirty(m), 3);
	CHECK_RC(meta_block_get(m, f, 0, hash, &dirty), 0);
	CHECK(dirty == 0 && !strcmp(hash, h1));
	CHECK_RC(meta_block_get(m, f, 1, hash, &dirty), 0);
	CHECK(dirty == 1 && !strcmp(hash, h1)); /* past the end: kept */
	CHECK_RC(meta_block_get(m, f, 2, hash, &dirty), -ENOENT);
	CHECK_RC(meta_block_get(m, g, 0, hash, &dirty), 0);
	CHECK(dirty == 0);
	CHECK_RC(meta_block_get(m, g, 1, hash, &dirty), 0);
	CHECK(dirty == 0); /* a whole block: its content is as good */
	meta_close(m);
}

/* Patches: a chain on a block's base, replaced whole, dropped with the
 * block; refcounts follow every step. */
static void test_patches(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(1, 0);
	char h1[65], p1[65], p2[65], p3[65], many[PATCH_CHAIN_MAX + 1][65];
	uint64_t idx[2] = { 0, 1 }, f, ino = 0;
	struct patch_chain *ch = malloc(sizeof(*ch));
	struct meta_attr in, a;
	unsigned i;

	if (!m || !ch)
		goto out;
	hash_of('1', h1);
	hash_of('a', p1);
	hash_of('b', p2);
	hash_of('c', p3);
	f = mk(m, 1, "f", S_IFREG | 0644);
	CHECK_RC(meta_write_done(m, f, 2 * BS, &t, idx, 2), 0);
	/* a block without uploaded content takes no patch */
	CHECK_RC(meta_block_patch(m, f, 0, h1, p1, 10, 0), -EILSEQ);
	CHECK_EQ_U64(refcount_of(m, p1), 0);
	CHECK_RC(meta_block_commit(m, f, 0, h1, 100, 0), 0);
	/* a clean block takes none either: the upload is stale */
	CHECK_RC(meta_block_patch(m, f, 0, h1, p1, 10, 0), -ESTALE);

	CHECK_RC(meta_write_done(m, f, 0, &t, idx, 1), 0);
	CHECK_RC(meta_block_patch(m, f, 0, h1, p1, 10, 1), 0);
	CHECK_RC(meta_block_chain(m, f, 0, ch), 0);
	CHECK(!strcmp(ch->base, h1) && ch->n == 1 && ch->dirty == 1);
	CHECK(!strcmp(ch->patch[0], p1) && ch->patch_bytes == 10);
	CHECK_EQ_U64(refcount_of(m, p1), 1);
	/* the next patch sits on p1, not on the base */
	CHECK_RC(meta_block_patch(m, f, 0, h1, p2, 20, 0), -EILSEQ);
	CHECK_EQ_U64(refcount_of(m, p2), 0);
	CHECK_RC(meta_block_patch(m, f, 0, p1, p2, 20, 0), 0);
	CHECK_RC(meta_block_chain(m, f, 0, ch), 0);
	CHECK(ch->n == 2 && !strcmp(ch->patch[1], p2) && ch->dirty == 0);
	CHECK_EQ_U64(ch->patch_bytes, 30);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);

	/* a lost dirty block keeps base and patches */
	CHECK_RC(meta_write_done(m, f, 0, &t, idx, 1), 0);
	CHECK_RC(meta_block_reset(m, f, 0), 0);
	CHECK_RC(meta_block_chain(m, f, 0, ch), 0);
	CHECK(ch->n == 2 && ch->dirty == 0 && !strcmp(ch->base, h1));
	/* a whole upload replaces the chain: its objects become garbage */
	CHECK_RC(meta_write_done(m, f, 0, &t, idx, 1), 0);
	CHECK_RC(meta_block_commit(m, f, 0, p3, 100, 0), 0);
	CHECK_RC(meta_block_chain(m, f, 0, ch), 0);
	CHECK(ch->n == 0 && !strcmp(ch->base, p3));
	CHECK_EQ_U64(refcount_of(m, h1), 0);
	CHECK_EQ_U64(refcount_of(m, p1), 0);
	CHECK_EQ_U64(refcount_of(m, p2), 0);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);

	/* a chain holds at most PATCH_CHAIN_MAX patches */
	for (i = 0; i <= PATCH_CHAIN_MAX; i++) {
		snprintf(many[i], sizeof(many[i]), "%064x", i + 1);
		CHECK_RC(meta_write_done(m, f, 0, &t, idx, 1), 0);
		CHECK_RC(meta_block_patch(m, f, 0, i ? many[i - 1] : p3,
					  many[i], 1, 0),
			 i < PATCH_CHAIN_MAX ? 0 : -EILSEQ);
	}
	CHECK_RC(meta_block_chain(m, f, 0, ch), 0);
	CHECK_EQ_U64(ch->n, PATCH_CHAIN_MAX);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);

	/* a truncate that drops the block drops its patches */
	CHECK_RC(meta_block_commit(m, f, 1, h1, 100, 0), 0);
	memset(&in, 0, sizeof(in));
	in.size = 0;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_SIZE, &t, &a), 0);
	CHECK_EQ_U64(refcount_of(m, many[0]), 0);
	CHECK_EQ_U64(refcount_of(m, p3), 0);
	CHECK_RC(meta_block_chain(m, f, 0, ch), -ENOENT);
	/* and so does deleting the file */
	CHECK_RC(meta_write_done(m, f, BS, &t, idx, 1), 0);
	CHECK_RC(meta_block_commit(m, f, 0, h1, 100, 0), 0);
	CHECK_RC(meta_write_done(m, f, BS, &t, idx, 1), 0);
	CHECK_RC(meta_block_patch(m, f, 0, h1, p1, 10, 0), 0);
	CHECK_EQ_U64(refcount_of(m, p1), 1);
	CHECK_RC(meta_unlink(m, 1, "f", &t, &ino), 0);
	CHECK_RC(meta_inode_purge(m, f), 0);
	CHECK_EQ_U64(refcount_of(m, p1), 0);
	CHECK_EQ_U64(refcount_of(m, h1), 0);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
out:
	free(ch);
	if (m)
		meta_close(m);
}

/* Inline data: the contract of meta_inline_*() in meta.h. */
static void test_inline(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(7, 0);
	struct buf b = BUF_INIT;
	char hash[META_HASH_LEN + 1];
	uint64_t f, g, idx0 = 0;
	int dirty = 0;

	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 0644);
	/* an empty file becomes inline; a gap reads as zeros */
	CHECK_RC(meta_inline_write(m, f, 0, "abc", 3, 16, &t), 1);
	CHECK_RC(meta_inline_write(m, f, 5, "xy", 2, 16, &t), 1);
	CHECK_RC(meta_inline_read(m, f, &b), 0);
	CHECK(b.len == 7 && !memcmp(b.data, "abc\0\0xy", 7));
	CHECK_EQ_U64(ga(m, f).size, 7);
	CHECK(ts_eq(ga(m, f).mtime, t));
	CHECK_RC(meta_block_get(m, f, 0, hash, &dirty), -ENOENT);
	/* shrink, then grow: the cut bytes stay zeros */
	CHECK_RC(meta_inline_cut(m, f, 2, UINT64_MAX, 0), 0);
	CHECK_RC(meta_setattr(m, f, &(struct meta_attr){ .size = 2 },
			      META_SET_SIZE, &t, NULL), 0);
	CHECK_RC(meta_inline_write(m, f, 6, "z", 1, 16, &t), 1);
	CHECK_RC(meta_inline_read(m, f, &b), 0);
	CHECK(b.len == 7 && !memcmp(b.data, "ab\0\0\0\0z", 7));
	/* punch */
	CHECK_RC(meta_inline_cut(m, f, UINT64_MAX, 1, 1), 0);
	CHECK_RC(meta_inline_read(m, f, &b), 0);
	CHECK(b.len == 7 && !memcmp(b.data, "a\0\0\0\0\0z", 7));
	/* past max: 2, then to block 0 (dirty) in one transaction */
	CHECK_RC(meta_inline_write(m, f, 10, "0123456789", 10, 16, &t), 2);
	CHECK_RC(meta_inline_to_block(m, f), 0);
	CHECK_RC(meta_inline_read(m, f, &b), -ENOENT);
	CHECK_RC(meta_block_get(m, f, 0, hash, &dirty), 0);
	CHECK(dirty == 1 && hash[0] == 0);
	CHECK_EQ_U64(ga(m, f).nblocks, 1);
	/* a file with blocks or data never becomes inline */
	CHECK_RC(meta_inline_write(m, f, 0, "q", 1, 16, &t), 0);
	g = mk(m, 1, "g", S_IFREG | 0644);
	CHECK_RC(meta_write_done(m, g, 100, &t, &idx0, 1), 0);
	CHECK_RC(meta_inline_write(m, g, 0, "q", 1, 16, &t), 0);
	/* not for directories; a purge removes the data */
	CHECK_RC(meta_inline_write(m, 1, 0, "q", 1, 16, &t), 0);
	g = mk(m, 1, "h", S_IFREG | 0644);
	CHECK_RC(meta_inline_write(m, g, 0, "q", 1, 16, &t), 1);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
	CHECK_RC(meta_unlink(m, 1, "h", &t, NULL), 0);
	CHECK_RC(meta_inode_purge(m, g), 0);
	CHECK_RC(meta_inline_read(m, g, &b), -ENOENT);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
	buf_free(&b);
	meta_close(m);
}

/* fsck: inline data of a missing or non-regular inode, or beside blocks */
static void test_inline_fsck(void)
{
	char path[128];
	struct meta *m = NULL;
	uint64_t f, idx0 = 0;
	struct timespec t = ts(7, 0);

	db_path("inline.db", path, sizeof(path));
	rm_db(path);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 0644);
	CHECK_RC(meta_write_done(m, f, 10, &t, &idx0, 1), 0);
	meta_close(m);
	CHECK_RC(raw_sql(path, "INSERT INTO inline_data VALUES (999, x'01');"
			 "INSERT INTO inline_data VALUES (1, x'02');"), 0);
	{
		char sql[128];

		snprintf(sql, sizeof(sql), "INSERT INTO inline_data VALUES "
			 "(%llu, x'03')", (unsigned long long)f);
		CHECK_RC(raw_sql(path, sql), 0);
	}
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 3);
	CHECK_RC(meta_fsck(m, 1, NULL, NULL), 3);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
	meta_close(m);
	rm_db(path);
}

static void test_gc(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(1, 0);
	char h1[65], h2[65], name[65];
	struct gc_list g = { 0 };
	struct obj_list o = { 0 };
	uint64_t idx[2] = { 0, 1 }, f, i;

	if (!m)
		return;
	hash_of('a', h1);
	hash_of('b', h2);
	f = mk(m, 1, "f", S_IFREG | 0644);
	CHECK_RC(meta_write_done(m, f, 2 * BS, &t, idx, 2), 0);
	CHECK_RC(meta_block_commit(m, f, 0, h1, 10, 0), 0);
	CHECK_RC(meta_block_commit(m, f, 1, h2, 10, 0), 0);
	CHECK_EQ_U64(gc_count(m, UINT64_MAX, SIZE_MAX), 0);

	/* freed at ckpt_seq 0 (unset): needs a durable checkpoint > 0 */
	CHECK_RC(meta_block_drop(m, f, 0, 0), 0);
	CHECK_EQ_U64(refcount_of(m, h1), 0);
	CHECK_EQ_U64(gc_count(m, 0, SIZE_MAX), 0);
	CHECK_EQ_U64(gc_count(m, 1, SIZE_MAX), 1);
	/* freed at ckpt_seq 5 */
	CHECK_RC(meta_config_set_u64(m, "ckpt_seq", 5), 0);
	CHECK_RC(meta_setattr(m, f, &(struct meta_attr){ .size = 0 },
			      META_SET_SIZE, &t, NULL), 0);
	CHECK_EQ_U64(refcount_of(m, h2), 0);
	CHECK_EQ_U64(gc_count(m, 5, SIZE_MAX), 1);
	CHECK_EQ_U64(gc_count(m, 6, SIZE_MAX), 2);
	CHECK_EQ_U64(gc_count(m, 6, 1), 1);
	CHECK_EQ_U64(gc_count(m, 6, 0), 0);
	g.m = m;
	CHECK_RC(meta_gc_list(m, 6, SIZE_MAX, gc_cb, &g), 0);
	CHECK(!strcmp(g.first, h1)); /* oldest epoch first */
	CHECK_RC(meta_gc_list(m, 6, SIZE_MAX, gc_stop_cb, NULL), -EINTR);

	/* referenced again: no longer garbage, epoch cleared */
	CHECK_RC(meta_write_done(m, f, 1, &t, idx, 1), 0);
	CHECK_RC(meta_block_commit(m, f, 0, h1, 10, 0), 0);
	CHECK_EQ_U64(refcount_of(m, h1), 1);
	CHECK_EQ_U64(gc_count(m, UINT64_MAX, SIZE_MAX), 1);
	CHECK_RC(meta_gc_forget(m, h1), 0); /* referenced: kept */
	CHECK_EQ_U64(refcount_of(m, h1), 1);
	/* and freed again at the current epoch */
	CHECK_RC(meta_config_set_u64(m, "ckpt_seq", 9), 0);
	CHECK_RC(meta_block_drop(m, f, 0, 0), 0);
	CHECK_EQ_U64(gc_count(m, 9, SIZE_MAX), 1); /* h2 only */
	CHECK_EQ_U64(gc_count(m, 10, SIZE_MAX), 2);

	CHECK_RC(meta_gc_forget(m, h2), 1);
	CHECK_EQ_U64(refcount_of(m, h2), UINT64_MAX); /* gone */
	CHECK_RC(meta_gc_forget(m, h2), 0);
	CHECK_RC(meta_gc_forget(m, NULL), -EINVAL);

	/* many: batches, and forgetting from inside the callback */
	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "%064" PRIx64, i + 1000);
		CHECK_RC(meta_write_done(m, f, 1, &t, idx, 1), 0);
		CHECK_RC(meta_block_commit(m, f, 0, name, 1, 0), 0);
	}
	CHECK_RC(meta_block_drop(m, f, 0, 0), 0);
	CHECK_EQ_U64(gc_count(m, 10, SIZE_MAX), 301);
	CHECK_EQ_U64(gc_count(m, 10, 250), 250);
	CHECK_RC(meta_objects(m, obj_cb, &o), 0);
	CHECK_EQ_U64(o.n, 0);
	memset(&g, 0, sizeof(g));
	g.m = m;
	g.forget = true;
	CHECK_RC(meta_gc_list(m, 10, SIZE_MAX, gc_cb, &g), 0);
	CHECK_EQ_U64(g.n, 301);
	CHECK_EQ_U64(gc_count(m, UINT64_MAX, SIZE_MAX), 0);

	/* meta_objects: referenced objects only, with their counts */
	for (i = 0; i < 200; i++) {
		uint64_t j = i;

		CHECK_RC(meta_write_done(m, f, (i + 1) * BS, &t, &j, 1), 0);
		snprintf(name, sizeof(name), "%064" PRIx64, i % 150);
		CHECK_RC(meta_block_commit(m, f, i, name, 1, 0), 0);
	}
	memset(&o, 0, sizeof(o));
	CHECK_RC(meta_objects(m, obj_cb, &o), 0);
	CHECK_EQ_U64(o.n, 150);
	CHECK_EQ_U64(o.refs, 200);
	meta_close(m);
}

/* The counters meta_stats() keeps match a recount (done by meta_open). */
static void test_stats(void)
{
	struct timespec t = ts(1, 0);
	struct meta_stats a, b;
	struct meta_attr in;
	struct meta *m = NULL;
	char path[256], name[32], h[65];
	uint64_t idx[4] = { 0, 1, 2, 3 }, inos[60], j;
	int i;

	db_path("stats.db", path, sizeof(path));
	rm_db(path);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	CHECK_RC(meta_stats(m, &a), 0);
	CHECK(a.inodes == 1 && a.blocks == 0 && a.objects == 0);
	memset(&in, 0, sizeof(in));
	for (i = 0; i < 60; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		inos[i] = mk(m, 1, name, S_IFREG | 0644);
		CHECK_RC(meta_write_done(m, inos[i], 4 * BS, &t, idx, 4), 0);
		for (j = 0; j < 4; j++) {
			if ((i + (int)j) % 3 == 0)
				continue; /* stays dirty */
			snprintf(h, sizeof(h), "%064d",
				 (i * 4 + (int)j) % 37);
			CHECK_RC(meta_block_commit(m, inos[i], j, h,
						   (uint64_t)(i + 1), j == 3),
				 0);
		}
	}
	CHECK_RC(meta_stats(m, &a), 0);
	CHECK_EQ_U64(a.inodes, 61);
	CHECK_EQ_U64(a.blocks, 240);
	CHECK_EQ_U64(a.objects, 37);
	for (i = 0; i < 60; i += 4) {
		in.size = (uint64_t)(i % 3) * BS;
		CHECK_RC(meta_setattr(m, inos[i], &in, META_SET_SIZE, &t, NULL),
			 0);
	}
	for (i = 1; i < 60; i += 5)
		CHECK_RC(meta_block_drop(m, inos[i], 1, 2), 0);
	for (i = 2; i < 60; i += 7) {
		snprintf(name, sizeof(name), "f%d", i);
		CHECK_RC(meta_unlink(m, 1, name, &t, NULL), 0);
		CHECK_RC(meta_inode_purge(m, inos[i]), 0);
	}
	CHECK(meta_blocks_forget_dirty(m) > 0);
	CHECK_RC(meta_write_done(m, inos[3], 0, &t, idx, 2), 0);
	CHECK_RC(meta_gc_list(m, UINT64_MAX, 5, gc_forget_cb, m), 0);
	CHECK_RC(meta_stats(m, &a), 0);
	CHECK(a.dirty_blocks == 2);
	meta_close(m);
	m = NULL;
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (m) {
		CHECK_RC(meta_stats(m, &b), 0);
		CHECK_EQ_U64(b.inodes, a.inodes);
		CHECK_EQ_U64(b.blocks, a.blocks);
		CHECK_EQ_U64(b.dirty_blocks, a.dirty_blocks);
		CHECK_EQ_U64(b.objects, a.objects);
		CHECK_EQ_U64(b.object_bytes, a.object_bytes);
		CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
		meta_close(m);
	}
	rm_db(path);
}

int main(void)
{
	if (tmpdir_make("t_meta_block"))
		return 1;
	test_blocks();
	test_forget_dirty_tail();
	test_patches();
	test_inline();
	test_inline_fsck();
	test_gc();
	test_stats();
	rmdir(tmpdir);
	return check_done("t_meta_block");
}
