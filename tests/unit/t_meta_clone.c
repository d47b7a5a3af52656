/*
 * t_meta_clone.c - unit tests of the clones of the metadata layer
 * (src/meta/meta_clone.c): blocks shared by two files
 * (meta_clone_blocks()) and trees copied (meta_clone_tree()).
 *
 * Purpose: each documented result and error, with every object's
 * refcount checked after each step, fsck clean after each change, and
 * the objects listed as garbage exactly when their last holder is gone.
 *
 * Data model: each test opens its own in-memory database (t_meta.h).
 * Object names are 64 copies of one character (hash_of()).
 *
 * Invariants: a test leaves no database open.
 */
#include "util/compat.h"

#include "t_meta.h"

static const struct meta_caller root = { 0, 0, NULL, 0 };

/* Block idx of ino written and uploaded as object hash. */
static void put_block(struct meta *m, uint64_t ino, uint64_t idx,
		      const char *hash)
{
	struct timespec t = ts(200, 0);

	CHECK_RC(meta_write_done(m, ino, (idx + 1) * BS, &t, &idx, 1), 0);
	CHECK_RC(meta_block_commit(m, ino, idx, hash, 100, 0), 0);
}

/* A patch (object hash) uploaded over block idx whose top is below. */
static void put_patch(struct meta *m, uint64_t ino, uint64_t idx,
		      const char *below, const char *hash)
{
	struct timespec t = ts(200, 0);

	CHECK_RC(meta_write_done(m, ino, (idx + 1) * BS, &t, &idx, 1), 0);
	CHECK_RC(meta_block_patch(m, ino, idx, below, hash, 10, 0), 0);
}

static void fsck_clean(struct meta *m)
{
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
}

static const char *hash_at(struct meta *m, uint64_t ino, uint64_t idx,
			   char *hash)
{
	int dirty = 0;

	if (meta_block_get(m, ino, idx, hash, &dirty))
		strcpy(hash, "-");
	return hash;
}

static void remove_file(struct meta *m, uint64_t parent, const char *name)
{
	uint64_t ino = 0;

	CHECK_RC(meta_unlink(m, parent, name, NULL, &ino), 0);
	CHECK_RC(meta_inode_purge(m, ino), 0);
}

/* f: blocks 0..3 = h1, h2 (patched with h4), hole, h1; size 4 blocks. */
static void test_clone_blocks(void)
{
	struct meta *m = open_mem();
	char h1[65], h2[65], h3[65], h4[65], h[65];
	struct patch_chain ch;
	struct timespec t = ts(300, 5);
	uint64_t f, g;

	hash_of('1', h1);
	hash_of('2', h2);
	hash_of('3', h3);
	hash_of('4', h4);
	f = mk(m, META_ROOT_INO, "f", S_IFREG | 0644);
	g = mk(m, META_ROOT_INO, "g", S_IFREG | 0644);
	put_block(m, f, 0, h1);
	put_block(m, f, 1, h2);
	put_patch(m, f, 1, h2, h4);
	put_block(m, f, 3, h1);
	/* g had a block where the clone goes: it is released */
	put_block(m, g, 2, h3);
	CHECK_EQ_U64(refcount_of(m, h1), 2);

	CHECK_RC(meta_clone_blocks(m, f, 0, g, 0, 4, 4 * BS, &t), 0);
	CHECK(!strcmp(hash_at(m, g, 0, h), h1));
	CHECK(!strcmp(hash_at(m, g, 1, h), h2));
	CHECK(!strcmp(hash_at(m, g, 2, h), "-")); /* a hole stays one */
	CHECK(!strcmp(hash_at(m, g, 3, h), h1));
	CHECK_RC(meta_block_chain(m, g, 1, &ch), 0);
	CHECK(ch.n == 1 && !strcmp(ch.patch[0], h4) && !ch.dirty);
	CHECK_EQ_U64(refcount_of(m, h1), 4);
	CHECK_EQ_U64(refcount_of(m, h2), 2);
	CHECK_EQ_U64(refcount_of(m, h4), 2);
	CHECK_EQ_U64(refcount_of(m, h3), 0);
	CHECK_EQ_U64(ga(m, g).size, 4 * BS);
	CHECK_EQ_U64(ga(m, g).nblocks, 3);
	CHECK(ts_eq(ga(m, g).mtime, t) && ts_eq(ga(m, g).ctime, t));
	fsck_clean(m);

	/* a write to the clone diverges: f keeps its object */
	put_block(m, g, 0, h3);
	CHECK(!strcmp(hash_at(m, f, 0, h), h1));
	CHECK_EQ_U64(refcount_of(m, h1), 3);
	/* a partial clone into the middle of g, from f's blocks 1..1 */
	CHECK_RC(meta_clone_blocks(m, f, 1, g, 3, 1, 3 * BS + 1, &t), 0);
	CHECK(!strcmp(hash_at(m, g, 3, h), h2));
	CHECK_EQ_U64(ga(m, g).size, 4 * BS); /* max(size, end) */
	CHECK_EQ_U64(refcount_of(m, h1), 2);
	CHECK_EQ_U64(refcount_of(m, h4), 3);
	fsck_clean(m);

	/* deletes in any order: objects go with their last holder */
	remove_file(m, META_ROOT_INO, "f");
	CHECK_EQ_U64(refcount_of(m, h1), 0);
	CHECK_EQ_U64(refcount_of(m, h2), 2);
	fsck_clean(m);
	remove_file(m, META_ROOT_INO, "g");
	CHECK_EQ_U64(refcount_of(m, h2), 0);
	CHECK_EQ_U64(refcount_of(m, h4), 0);
	CHECK_EQ_U64(refcount_of(m, h3), 0);
	CHECK_EQ_U64(gc_count(m, UINT64_MAX, 100), 4);
	fsck_clean(m);
	meta_close(m);
}

static void test_clone_blocks_errors(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(300, 0);
	char h1[65], h2[65], h[65];
	uint64_t f, g, d, in, idx = 1;

	hash_of('1', h1);
	hash_of('2', h2);
	f = mk(m, META_ROOT_INO, "f", S_IFREG | 0644);
	g = mk(m, META_ROOT_INO, "g", S_IFREG | 0644);
	d = mk(m, META_ROOT_INO, "d", S_IFDIR | 0755);
	in = mk(m, META_ROOT_INO, "in", S_IFREG | 0644);
	put_block(m, f, 0, h1);
	put_block(m, f, 1, h2);
	CHECK_RC(meta_inline_write(m, in, 0, "hello", 5, 4096, &t), 1);

	/* a dirty block of src in the range: nothing changes */
	CHECK_RC(meta_write_done(m, f, 2 * BS, &t, &idx, 1), 0);
	CHECK_RC(meta_clone_blocks(m, f, 0, g, 0, 2, 2 * BS, &t), -EAGAIN);
	CHECK_EQ_U64(ga(m, g).size, 0);
	CHECK_EQ_U64(ga(m, g).nblocks, 0);
	/* ... but a range without it clones */
	CHECK_RC(meta_clone_blocks(m, f, 0, g, 0, 1, BS, &t), 0);
	CHECK(!strcmp(hash_at(m, g, 0, h), h1));
	CHECK_RC(meta_block_commit(m, f, 1, h2, 100, 0), 0);

	CHECK_RC(meta_clone_blocks(m, f, 0, in, 0, 1, BS, &t), -EOPNOTSUPP);
	CHECK_RC(meta_clone_blocks(m, in, 0, g, 0, 1, BS, &t), -EOPNOTSUPP);
	CHECK_RC(meta_clone_blocks(m, f, 0, d, 0, 1, BS, &t), -EISDIR);
	CHECK_RC(meta_clone_blocks(m, f, 0, 999, 0, 1, BS, &t), -ENOENT);
	/* end short of the last block, src's range past its size */
	CHECK_RC(meta_clone_blocks(m, f, 0, g, 1, 1, BS, &t), -EINVAL);
	CHECK_RC(meta_clone_blocks(m, f, 1, g, 0, 2, 2 * BS, &t), -EINVAL);
	/* one file: overlapping ranges refused, disjoint ones shared */
	CHECK_RC(meta_clone_blocks(m, f, 0, f, 1, 2, 3 * BS, &t), -EINVAL);
	CHECK_RC(meta_clone_blocks(m, f, 0, f, 2, 2, 4 * BS, &t), 0);
	CHECK(!strcmp(hash_at(m, f, 3, h), h2));
	CHECK_EQ_U64(refcount_of(m, h1), 3);
	CHECK_RC(meta_clone_blocks(m, f, 0, g, 0, 0, 0, &t), 0);
	fsck_clean(m);
	meta_close(m);
}

/* fsck counts every holder of a shared object: a count that forgot the
 * clone is found and repaired. */
static void test_clone_fsck(void)
{
	struct timespec t = ts(300, 0);
	char path[128], h1[65], h2[65];
	struct meta *m = NULL;
	uint64_t f, g;

	hash_of('1', h1);
	hash_of('2', h2);
	db_path("fsck.db", path, sizeof(path));
	CHECK_RC(meta_open(path, BS, 1000, 1000, &m), 0);
	f = mk(m, META_ROOT_INO, "f", S_IFREG | 0644);
	g = mk(m, META_ROOT_INO, "g", S_IFREG | 0644);
	put_block(m, f, 0, h1);
	put_block(m, f, 1, h2);
	put_patch(m, f, 1, h2, h1);
	CHECK_RC(meta_clone_blocks(m, f, 0, g, 0, 2, 2 * BS, &t), 0);
	CHECK_EQ_U64(refcount_of(m, h1), 4);
	meta_close(m);
	CHECK_RC(raw_sql(path, "UPDATE object SET refcount = 2"), SQLITE_OK);
	CHECK_RC(meta_open(path, BS, 1000, 1000, &m), 0);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 1);
	CHECK_RC(meta_fsck(m, 1, NULL, NULL), 1);
	CHECK_EQ_U64(refcount_of(m, h1), 4);
	CHECK_EQ_U64(refcount_of(m, h2), 2);
	fsck_clean(m);
	meta_close(m);
	rm_db(path);
}

/* d: a (2 blocks, xattr, also named a2), b (inline), s (symlink),
 * e/c (1 block), p (fifo) */
struct tree_fx {
	uint64_t d, a, b, s, e, c;
	char h1[65], h2[65];
};

static void tree_make(struct meta *m, struct tree_fx *x)
{
	struct timespec t = ts(150, 0);
	struct meta_attr a;

	hash_of('1', x->h1);
	hash_of('2', x->h2);
	x->d = mk(m, META_ROOT_INO, "d", S_IFDIR | 0755);
	x->a = mk(m, x->d, "a", S_IFREG | 04755);
	x->b = mk(m, x->d, "b", S_IFREG | 0600);
	x->s = mk(m, x->d, "s", S_IFLNK | 0777);
	x->e = mk(m, x->d, "e", S_IFDIR | 0700);
	x->c = mk(m, x->e, "c", S_IFREG | 0644);
	mk(m, x->d, "p", S_IFIFO | 0644);
	put_block(m, x->a, 0, x->h1);
	put_block(m, x->a, 1, x->h2);
	put_block(m, x->c, 0, x->h1);
	CHECK_RC(meta_setxattr(m, x->a, "user.k", "v", 1, 0, &t), 0);
	CHECK_RC(meta_link(m, x->a, x->d, "a2", &t, &a), 0);
	CHECK_RC(meta_inline_write(m, x->b, 0, "tiny", 4, 4096, &t), 1);
}

static void test_clone_tree(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(500, 7);
	struct meta_clone_stats st;
	struct meta_attr out, a;
	struct tree_fx x;
	struct buf v = BUF_INIT;
	uint64_t d2, a2, e2;
	char h[65];

	tree_make(m, &x);
	CHECK_RC(meta_clone_tree(m, x.d, META_ROOT_INO, "d2", &root, &t, &out,
				 &st, NULL, 0, NULL), 0);
	d2 = out.ino;
	CHECK(d2 == lk(m, META_ROOT_INO, "d2") && S_ISDIR(out.mode));
	CHECK_EQ_U64(st.inodes, 7); /* d a b s e c p; a2 is a link */
	CHECK_EQ_U64(st.blocks, 3);
	CHECK_EQ_U64(out.nlink, 3);
	CHECK_EQ_U64(nlink_of(m, META_ROOT_INO), 4);
	CHECK(ts_eq(ga(m, META_ROOT_INO).mtime, t));
	a2 = lk(m, d2, "a");
	CHECK(a2 && a2 != x.a && lk(m, d2, "a2") == a2);
	a = ga(m, a2);
	CHECK_EQ_U64(a.nlink, 2);
	CHECK(a.mode == (S_IFREG | 04755) && a.uid == 1000);
	CHECK(ts_eq(a.mtime, ga(m, x.a).mtime) && ts_eq(a.ctime, t));
	CHECK_EQ_U64(a.size, 2 * BS);
	CHECK(!strcmp(hash_at(m, a2, 1, h), x.h2));
	CHECK_RC(meta_getxattr(m, a2, "user.k", &v), 0);
	CHECK(v.len == 1 && v.data[0] == 'v');
	buf_reset(&v);
	CHECK_RC(meta_inline_read(m, lk(m, d2, "b"), &v), 0);
	CHECK(v.len == 4 && !memcmp(v.data, "tiny", 4));
	buf_reset(&v);
	CHECK_RC(meta_readlink(m, lk(m, d2, "s"), &v), 0);
	CHECK(v.len == 6 && !memcmp(v.data, "target", 6));
	e2 = lk(m, d2, "e");
	CHECK(parent_of(m, e2) == d2);
	CHECK(!strcmp(hash_at(m, lk(m, e2, "c"), 0, h), x.h1));
	CHECK(S_ISFIFO(ga(m, lk(m, d2, "p")).mode));
	CHECK_EQ_U64(refcount_of(m, x.h1), 4);
	CHECK_EQ_U64(refcount_of(m, x.h2), 2);
	fsck_clean(m);
	/* the copy diverges, and each side frees only what it alone holds */
	put_block(m, a2, 0, x.h2);
	CHECK(!strcmp(hash_at(m, x.a, 0, h), x.h1));
	remove_file(m, x.e, "c");
	CHECK_RC(meta_unlink(m, x.d, "a", NULL, &a.ino), 0);
	remove_file(m, x.d, "a2");
	CHECK_EQ_U64(refcount_of(m, x.h1), 1);
	CHECK_EQ_U64(refcount_of(m, x.h2), 2);
	fsck_clean(m);
	buf_free(&v);
	meta_close(m);
}

static void test_clone_tree_errors(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(500, 0);
	uint32_t grp[1] = { 1000 };
	struct meta_caller other = { 2000, 2000, NULL, 0 };
	struct meta_caller member = { 3000, 3000, grp, 1 };
	struct meta_attr out, a;
	uint64_t dirty[4], idx = 0, f;
	struct buf v = BUF_INIT;
	size_t nd = 0;
	struct tree_fx x;

	tree_make(m, &x);
	CHECK_RC(meta_clone_tree(m, x.d, META_ROOT_INO, "d", &root, &t, NULL,
				 NULL, NULL, 0, NULL), -EEXIST);
	CHECK_RC(meta_clone_tree(m, x.d, x.e, "in", &root, &t, NULL, NULL,
				 NULL, 0, NULL), -EINVAL);
	CHECK_RC(meta_clone_tree(m, x.d, x.d, "in", &root, &t, NULL, NULL,
				 NULL, 0, NULL), -EINVAL);
	CHECK_RC(meta_clone_tree(m, x.d, x.a, "in", &root, &t, NULL, NULL,
				 NULL, 0, NULL), -ENOTDIR);
	CHECK_RC(meta_clone_tree(m, 999, META_ROOT_INO, "z", &root, &t, NULL,
				 NULL, NULL, 0, NULL), -ENOENT);
	CHECK_RC(meta_clone_tree(m, x.d, META_ROOT_INO, "a/b", &root, &t,
				 NULL, NULL, NULL, 0, NULL), -EINVAL);
	/* not allowed to write the root (owned by 1000, 0755) */
	CHECK_RC(meta_clone_tree(m, x.c, META_ROOT_INO, "z", &other, &t, NULL,
				 NULL, NULL, 0, NULL), -EACCES);
	/* in group 1000, a directory of it made writable: b (0600) and e
	 * (0700) are not readable, so the tree is refused */
	a.mode = S_IFDIR | 0775;
	CHECK_RC(meta_setattr(m, x.d, &a, META_SET_MODE, &t, NULL), 0);
	CHECK_RC(meta_clone_tree(m, x.d, x.d, "z", &member, &t, NULL, NULL,
				 NULL, 0, NULL), -EINVAL);
	f = mk(m, META_ROOT_INO, "w", S_IFDIR | 0777);
	CHECK_RC(meta_clone_tree(m, x.d, f, "z", &member, &t, NULL, NULL,
				 NULL, 0, NULL), -EACCES);
	CHECK(lk(m, f, "z") == 0);
	/* a readable file: the copy is the caller's, group kept (member),
	 * set-user-ID and a file capability dropped, user xattrs kept */
	CHECK_RC(meta_setxattr(m, x.a, "security.capability", "c", 1, 0, &t),
		 0);
	CHECK_RC(meta_clone_tree(m, x.a, f, "z", &member, &t, &out, NULL,
				 NULL, 0, NULL), 0);
	CHECK(out.uid == 3000 && out.gid == 1000);
	CHECK(out.mode == (S_IFREG | 0755));
	CHECK_RC(meta_getxattr(m, out.ino, "security.capability", &v),
		 -ENODATA);
	CHECK_RC(meta_getxattr(m, out.ino, "user.k", &v), 0);
	CHECK_RC(meta_clone_tree(m, x.a, f, "r", &root, &t, &out, NULL, NULL,
				 0, NULL), 0);
	CHECK_RC(meta_getxattr(m, out.ino, "security.capability", &v), 0);
	CHECK_RC(meta_clone_tree(m, x.a, f, "y", &other, &t, &out, NULL,
				 NULL, 0, NULL), 0);
	CHECK(out.uid == 2000 && out.gid == 2000);
	/* a device node: root only */
	CHECK_RC(meta_mknod(m, f, "dev", S_IFCHR | 0666, 0x0101, 2000, 2000,
			    NULL, &t, &a), 0);
	CHECK_RC(meta_clone_tree(m, a.ino, f, "x", &other, &t, NULL, NULL,
				 NULL, 0, NULL), -EPERM);
	CHECK_RC(meta_clone_tree(m, a.ino, f, "x", &root, &t, &out, NULL,
				 NULL, 0, NULL), 0);
	CHECK(out.rdev == 0x0101);
	/* dirty blocks: refused with their files named, nothing made */
	CHECK_RC(meta_write_done(m, x.c, BS, &t, &idx, 1), 0);
	CHECK_RC(meta_clone_tree(m, x.d, META_ROOT_INO, "d3", &root, &t, NULL,
				 NULL, dirty, 4, &nd), -EAGAIN);
	CHECK(nd == 1 && dirty[0] == x.c);
	CHECK(lk(m, META_ROOT_INO, "d3") == 0);
	CHECK_EQ_U64(refcount_of(m, x.h2), 4);
	fsck_clean(m);
	buf_free(&v);
	meta_close(m);
}

int main(void)
{
	if (tmpdir_make("t_meta_clone"))
		return 1;
	test_clone_blocks();
	test_clone_blocks_errors();
	test_clone_tree();
	test_clone_tree_errors();
	test_clone_fsck();
	rmdir(tmpdir);
	return check_done("t_meta_clone");
}
