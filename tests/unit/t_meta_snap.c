/*
 * t_meta_snap.c - unit tests of snapshots at the metadata level
 * (src/meta/meta_snap.c): the holds a snapshot keeps in object.refcount
 * through create and drop, beside clones and shared (deduplicated)
 * objects; fsck's recount with holds; the bytes a snapshot alone keeps;
 * the copy of the database taken in the same transaction.
 *
 * Data model: in-memory databases, or file databases in tmpdir
 * (t_meta.h).  Object names are 64 copies of one character; every block
 * is uploaded with 100 stored bytes, every patch with 10.
 *
 * Invariants: a test leaves no database open.
 */
#include "util/compat.h"

#include "t_meta.h"

/* Block idx of ino written and uploaded as object hash (100 bytes). */
static void put_block(struct meta *m, uint64_t ino, uint64_t idx,
		      const char *hash)
{
	struct timespec t = ts(200, 0);

	CHECK_RC(meta_write_done(m, ino, (idx + 1) * BS, &t, &idx, 1), 0);
	CHECK_RC(meta_block_commit(m, ino, idx, hash, 100, 0), 0);
}

/* A patch (object hash, 10 bytes) uploaded over block idx. */
static void put_patch(struct meta *m, uint64_t ino, uint64_t idx,
		      const char *below, const char *hash)
{
	struct timespec t = ts(200, 0);

	CHECK_RC(meta_write_done(m, ino, (idx + 1) * BS, &t, &idx, 1), 0);
	CHECK_RC(meta_block_patch(m, ino, idx, below, hash, 10, 0), 0);
}

static void remove_file(struct meta *m, uint64_t parent, const char *name)
{
	uint64_t ino = 0;

	CHECK_RC(meta_unlink(m, parent, name, NULL, &ino), 0);
	CHECK_RC(meta_inode_purge(m, ino), 0);
}

static void fsck_clean(struct meta *m)
{
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
}

static struct meta_snap snap_named(struct meta *m, const char *name)
{
	struct meta_snap sn;

	memset(&sn, 0, sizeof(sn));
	CHECK_RC(meta_snap_find(m, name, &sn), 0);
	return sn;
}

/*
 * f: blocks h1, h2 (patched with h4), h1 again (dedup); g: a clone of f;
 * h: block h3.  Snapshot s1 holds h1 h2 h3 h4 once each; the files go,
 * the snapshot keeps the objects; dropping it frees them.
 */
static void test_holds(void)
{
	struct meta *m = open_mem();
	char h1[65], h2[65], h3[65], h4[65], h5[65];
	struct timespec t = ts(300, 0);
	struct meta_snap sn, list[4];
	uint64_t f, g, h;
	size_t n;

	hash_of('1', h1);
	hash_of('2', h2);
	hash_of('3', h3);
	hash_of('4', h4);
	hash_of('5', h5);
	f = mk(m, META_ROOT_INO, "f", S_IFREG | 0644);
	g = mk(m, META_ROOT_INO, "g", S_IFREG | 0644);
	h = mk(m, META_ROOT_INO, "h", S_IFREG | 0644);
	put_block(m, f, 0, h1);
	put_block(m, f, 1, h2);
	put_patch(m, f, 1, h2, h4);
	put_block(m, f, 2, h1);
	put_block(m, h, 0, h3);
	CHECK_RC(meta_clone_blocks(m, f, 0, g, 0, 3, 3 * BS, &t), 0);
	CHECK_EQ_U64(refcount_of(m, h1), 4);

	CHECK_RC(meta_snap_create(m, "s1", 5000, NULL, &sn), 0);
	CHECK(sn.id > 0 && !strcmp(sn.name, "s1") && sn.time_ns == 5000);
	CHECK_EQ_U64(sn.objects, 4);	/* one hold per distinct object */
	CHECK_EQ_U64(sn.alone_bytes, 0); /* the files hold them all too */
	CHECK_EQ_U64(refcount_of(m, h1), 5);
	CHECK_EQ_U64(refcount_of(m, h2), 3);
	CHECK_EQ_U64(refcount_of(m, h3), 2);
	CHECK_EQ_U64(refcount_of(m, h4), 3);
	fsck_clean(m);

	/* the name is taken; bad names; nothing made by either */
	CHECK_RC(meta_snap_create(m, "s1", 6000, NULL, NULL), -EEXIST);
	CHECK_RC(meta_snap_create(m, "", 6000, NULL, NULL), -EINVAL);
	CHECK_RC(meta_snap_create(m, "a/b", 6000, NULL, NULL), -EINVAL);
	CHECK_RC(meta_snap_create(m, "a\nb", 6000, NULL, NULL), -EINVAL);
	{
		char big[300];

		memset(big, 'x', 256);
		big[256] = 0;
		CHECK_RC(meta_snap_create(m, big, 6000, NULL, NULL),
			 -ENAMETOOLONG);
		big[255] = 0;
		CHECK_RC(meta_snap_name_check(big), 0);
	}
	CHECK_RC(meta_snap_list(m, 0, list, 4, &n), 0);
	CHECK_EQ_U64(n, 1);
	CHECK_EQ_U64(refcount_of(m, h1), 5);

	/* a later write and a deleted file: the snapshot keeps what it held;
	 * what only it keeps is counted */
	put_block(m, h, 0, h5);
	CHECK_EQ_U64(refcount_of(m, h3), 1);
	sn = snap_named(m, "s1");
	CHECK_EQ_U64(sn.alone_bytes, 100); /* h3 */
	remove_file(m, META_ROOT_INO, "f");
	remove_file(m, META_ROOT_INO, "g");
	CHECK_EQ_U64(refcount_of(m, h1), 1);
	CHECK_EQ_U64(refcount_of(m, h4), 1);
	CHECK_EQ_U64(gc_count(m, UINT64_MAX, 100), 0);
	sn = snap_named(m, "s1");
	CHECK_EQ_U64(sn.alone_bytes, 100 + 100 + 100 + 10);
	fsck_clean(m);

	/* a second snapshot shares: neither alone keeps h5 */
	CHECK_RC(meta_snap_create(m, "s2", 7000, NULL, &sn), 0);
	CHECK_EQ_U64(sn.objects, 1); /* h5 only: h's block */
	CHECK_EQ_U64(refcount_of(m, h5), 2);
	CHECK_RC(meta_snap_list(m, 0, list, 4, &n), 0);
	CHECK(n == 2 && !strcmp(list[0].name, "s1") &&
	      !strcmp(list[1].name, "s2") && list[0].id < list[1].id);
	CHECK_RC(meta_snap_list(m, list[0].id, list, 4, &n), 0);
	CHECK(n == 1 && !strcmp(list[0].name, "s2"));

	/* drop s1: its objects reach 0 and become garbage */
	sn = snap_named(m, "s1");
	CHECK_RC(meta_snap_drop(m, sn.id), 0);
	CHECK_RC(meta_snap_drop(m, sn.id), -ENOENT);
	CHECK_RC(meta_snap_find(m, "s1", &sn), -ENOENT);
	CHECK_EQ_U64(refcount_of(m, h1), 0);
	CHECK_EQ_U64(refcount_of(m, h2), 0);
	CHECK_EQ_U64(refcount_of(m, h3), 0);
	CHECK_EQ_U64(refcount_of(m, h4), 0);
	CHECK_EQ_U64(refcount_of(m, h5), 2);
	CHECK_EQ_U64(gc_count(m, UINT64_MAX, 100), 4);
	fsck_clean(m);
	/* the name is free again, under a new id */
	CHECK_RC(meta_snap_create(m, "s1", 8000, NULL, &sn), 0);
	CHECK(sn.id > list[0].id);
	remove_file(m, META_ROOT_INO, "h");
	sn = snap_named(m, "s2");
	CHECK_EQ_U64(sn.alone_bytes, 0); /* s1 holds h5 too */
	fsck_clean(m);
	meta_close(m);
}

/* fsck: a count that forgot the holds is found and repaired; holds of a
 * snapshot that is gone are found and deleted. */
static void test_fsck(void)
{
	char path[128], h1[65], h2[65];
	struct meta *m = NULL;
	struct meta_snap sn;
	uint64_t f;

	hash_of('1', h1);
	hash_of('2', h2);
	db_path("fsck.db", path, sizeof(path));
	CHECK_RC(meta_open(path, BS, 1000, 1000, &m), 0);
	f = mk(m, META_ROOT_INO, "f", S_IFREG | 0644);
	put_block(m, f, 0, h1);
	put_block(m, f, 1, h2);
	CHECK_RC(meta_snap_create(m, "s", 1, NULL, &sn), 0);
	remove_file(m, META_ROOT_INO, "f");
	CHECK_EQ_U64(refcount_of(m, h1), 1);
	fsck_clean(m);
	meta_close(m);

	CHECK_RC(raw_sql(path, "UPDATE object SET refcount = 0,"
			 " freed_epoch = 0"), SQLITE_OK);
	CHECK_RC(meta_open(path, BS, 1000, 1000, &m), 0);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 2);
	CHECK_RC(meta_fsck(m, 1, NULL, NULL), 2);
	CHECK_EQ_U64(refcount_of(m, h1), 1);
	CHECK_EQ_U64(refcount_of(m, h2), 1);
	fsck_clean(m);
	meta_close(m);

	/* the snapshot row lost: its holds are a finding, then garbage */
	CHECK_RC(raw_sql(path, "DELETE FROM snapshot"), SQLITE_OK);
	CHECK_RC(meta_open(path, BS, 1000, 1000, &m), 0);
	CHECK(meta_fsck(m, 0, NULL, NULL) >= 1);
	CHECK(meta_fsck(m, 1, NULL, NULL) >= 1);
	CHECK_EQ_U64(refcount_of(m, h1), 0);
	CHECK_EQ_U64(gc_count(m, UINT64_MAX, 100), 2);
	fsck_clean(m);
	meta_close(m);
	rm_db(path);
}

/* The copy is the database as of the snapshot's own transaction: it has
 * the snapshot and the files of that moment, not what came after. */
static void test_copy(void)
{
	char path[128], copy[128], h1[65], h2[65];
	struct meta *m = NULL, *c = NULL;
	struct meta_snap sn;
	uint64_t f;
	int pass;

	hash_of('1', h1);
	hash_of('2', h2);
	for (pass = 0; pass < 2; pass++) {
		db_path("copy.db", path, sizeof(path));
		db_path("snap.db", copy, sizeof(copy));
		if (pass == 0)
			CHECK_RC(meta_open(path, BS, 1000, 1000, &m), 0);
		else
			m = open_mem();
		f = mk(m, META_ROOT_INO, "f", S_IFREG | 0644);
		put_block(m, f, 0, h1);
		CHECK_RC(meta_snap_create(m, "s", 1, copy, &sn), 0);
		put_block(m, f, 0, h2);
		mk(m, META_ROOT_INO, "later", S_IFREG | 0644);
		meta_close(m);

		CHECK_RC(meta_open(copy, BS, 0, 0, &c), 0);
		CHECK(lk(c, META_ROOT_INO, "f") == f);
		CHECK(lk(c, META_ROOT_INO, "later") == 0);
		/* invariant 4: no snapshot in the copy, counts of its rows */
		CHECK_EQ_U64(refcount_of(c, h1), 1);
		CHECK_EQ_U64(refcount_of(c, h2), UINT64_MAX); /* no row */
		CHECK_RC(meta_snap_find(c, "s", &sn), -ENOENT);
		CHECK_EQ_U64(gc_count(c, UINT64_MAX, 100), 0);
		fsck_clean(c);
		meta_close(c);
		rm_db(copy);
		rm_db(path);
	}
	/* a second snapshot's copy holds neither its own holds nor the
	 * first one's, nor the objects only the first one keeps */
	db_path("snap.db", copy, sizeof(copy));
	m = open_mem();
	f = mk(m, META_ROOT_INO, "f", S_IFREG | 0644);
	put_block(m, f, 0, h1);
	CHECK_RC(meta_snap_create(m, "s1", 1, NULL, &sn), 0);
	put_block(m, f, 0, h2);
	CHECK_RC(meta_snap_create(m, "s2", 2, copy, &sn), 0);
	CHECK_EQ_U64(refcount_of(m, h1), 1);
	CHECK_EQ_U64(refcount_of(m, h2), 2);
	meta_close(m);
	CHECK_RC(meta_open(copy, BS, 0, 0, &c), 0);
	CHECK_EQ_U64(refcount_of(c, h1), UINT64_MAX);
	CHECK_EQ_U64(refcount_of(c, h2), 1);
	fsck_clean(c);
	meta_close(c);
	rm_db(copy);
	/* a copy path that cannot be written: nothing made */
	m = open_mem();
	CHECK_RC(meta_snap_create(m, "s", 1, "/nonexistent/dir/x.db", &sn) < 0,
		 1);
	CHECK_RC(meta_snap_find(m, "s", &sn), -ENOENT);
	meta_close(m);
}

int main(void)
{
	if (tmpdir_make("t_meta_snap"))
		return 1;
	test_holds();
	test_fsck();
	test_copy();
	rmdir(tmpdir);
	return check_done("t_meta_snap");
}
