/*
 * t_meta.c - unit tests of the metadata layer's namespace (src/meta/meta.h,
 * meta_ns.c): mknod, link, unlink, rmdir, rename, orphans, attributes,
 * atime, readdir and xattrs.
 *
 * Purpose: every public function of the namespace and every documented
 * error code, on an in-memory database.  The block map is in
 * t_meta_block.c, whole-database matters (open, config, batched writes,
 * threads, persistence) in t_meta_db.c, fsck repairs in t_meta_fsck.c.
 *
 * Data model: each test opens its own database (t_meta.h helpers).  Times
 * passed to meta are fixed values, so every timestamp can be compared
 * exactly.
 *
 * Invariants: a test leaves no database open.
 */
#include "util/compat.h"

#include "t_meta.h"

/* ---- namespace ---- */

/* The errors of mknod: existing names, missing or non-directory parents,
 * bad types and names; any bytes but '/' and NUL make a name. */
static void mknod_errors(struct meta *m, uint64_t dir, uint64_t file)
{
	struct timespec t1 = ts(1000, 123456789);
	struct meta_attr a;
	char name[300];

	CHECK_RC(meta_mknod(m, dir, "f", S_IFREG | 0644, 0, 0, 0, NULL, &t1,
			    &a), -EEXIST);
	CHECK_RC(meta_mknod(m, dir, "f", S_IFDIR | 0755, 0, 0, 0, NULL, &t1,
			    &a), -EEXIST);
	CHECK_RC(meta_mknod(m, file, "x", S_IFREG | 0644, 0, 0, 0, NULL, &t1,
			    &a), -ENOTDIR);
	CHECK_RC(meta_mknod(m, 99999, "x", S_IFREG | 0644, 0, 0, 0, NULL, &t1,
			    &a), -ENOENT);
	CHECK_RC(meta_mknod(m, dir, "x", 0644, 0, 0, 0, NULL, &t1, &a),
		 -EINVAL);
	CHECK_RC(meta_mknod(m, dir, "", S_IFREG | 0644, 0, 0, 0, NULL, &t1,
			    &a), -EINVAL);
	CHECK_RC(meta_mknod(m, dir, ".", S_IFREG | 0644, 0, 0, 0, NULL, &t1,
			    &a), -EINVAL);
	CHECK_RC(meta_mknod(m, dir, "..", S_IFDIR | 0644, 0, 0, 0, NULL, &t1,
			    &a), -EINVAL);
	CHECK_RC(meta_mknod(m, dir, "a/b", S_IFREG | 0644, 0, 0, 0, NULL, &t1,
			    &a), -EINVAL);
	memset(name, 'n', sizeof(name));
	name[256] = 0;
	CHECK_RC(meta_mknod(m, dir, name, S_IFREG | 0644, 0, 0, 0, NULL, &t1,
			    &a), -ENAMETOOLONG);
	CHECK_RC(meta_lookup(m, dir, name, &a), -ENAMETOOLONG);
	name[255] = 0;
	CHECK_RC(meta_mknod(m, dir, name, S_IFREG | 0644, 0, 0, 0, NULL, &t1,
			    &a), 0);
	CHECK_EQ_U64(lk(m, dir, name), a.ino);

	/* any bytes but '/' and NUL make a name */
	CHECK_RC(meta_mknod(m, dir, "\xff\x01 \xc3\xa9", S_IFREG | 0644, 0, 0,
			    0, NULL, &t1, &a), 0);
	CHECK_EQ_U64(lk(m, dir, "\xff\x01 \xc3\xa9"), a.ino);
}

/* The errors of lookup, "." and "..", and of getattr and parent. */
static void mknod_lookup(struct meta *m, uint64_t dir, uint64_t file)
{
	struct meta_attr a;
	uint64_t ino;

	CHECK_RC(meta_lookup(m, dir, "nope", &a), -ENOENT);
	CHECK_RC(meta_lookup(m, file, "x", &a), -ENOTDIR);
	CHECK_RC(meta_lookup(m, 99999, "x", &a), -ENOENT);
	CHECK_RC(meta_lookup(m, dir, "", &a), -EINVAL);
	CHECK_RC(meta_lookup(m, dir, ".", &a), 0);
	CHECK_EQ_U64(a.ino, dir);
	CHECK_RC(meta_lookup(m, dir, "..", &a), 0);
	CHECK_EQ_U64(a.ino, 1);
	CHECK_RC(meta_lookup(m, 1, "..", &a), 0);
	CHECK_EQ_U64(a.ino, 1);
	CHECK_RC(meta_lookup(m, file, "..", &a), -ENOTDIR);
	CHECK_RC(meta_getattr(m, 99999, &a), -ENOENT);
	CHECK_RC(meta_parent(m, file, &ino), -ENOTDIR);
	CHECK_RC(meta_parent(m, 99999, &ino), -ENOENT);
}

static void test_mknod(void)
{
	struct meta *m = open_mem();
	struct timespec t1 = ts(1000, 123456789);
	struct meta_attr a, p;
	char target[5000];
	struct buf b = BUF_INIT;
	uint64_t dir, file, ino;

	if (!m)
		return;
	CHECK_RC(meta_mknod(m, 1, "d", S_IFDIR | 0750, 0, 10, 20, NULL, &t1,
			    &a), 0);
	dir = a.ino;
	CHECK(dir > META_ROOT_INO);
	CHECK_EQ_U64(a.mode, S_IFDIR | 0750);
	CHECK_EQ_U64(a.uid, 10);
	CHECK_EQ_U64(a.gid, 20);
	CHECK_EQ_U64(a.nlink, 2);
	CHECK(ts_eq(a.atime, t1) && ts_eq(a.mtime, t1) && ts_eq(a.ctime, t1));
	p = ga(m, 1);
	CHECK_EQ_U64(p.nlink, 3);
	CHECK(ts_eq(p.mtime, t1) && ts_eq(p.ctime, t1));
	CHECK_EQ_U64(parent_of(m, dir), 1);
	a = ga(m, dir);
	CHECK_EQ_U64(a.mode, S_IFDIR | 0750);
	CHECK(ts_eq(a.ctime, t1));

	CHECK_RC(meta_mknod(m, dir, "f", S_IFREG | 0644, 77, 1, 2, NULL, &t1,
			    &a), 0);
	file = a.ino;
	CHECK_EQ_U64(a.nlink, 1);
	CHECK_EQ_U64(a.rdev, 0); /* only devices keep rdev */
	CHECK_EQ_U64(a.size, 0);
	CHECK_EQ_U64(a.nblocks, 0);
	CHECK_EQ_U64(nlink_of(m, dir), 2); /* a file adds no link */
	CHECK_RC(meta_lookup(m, dir, "f", &a), 0);
	CHECK_EQ_U64(a.ino, file);
	CHECK_EQ_U64(a.mode, S_IFREG | 0644);

	CHECK_RC(meta_mknod(m, dir, "c", S_IFCHR | 0600, 0x0501, 0, 0, NULL,
			    &t1, &a), 0);
	CHECK_EQ_U64(a.rdev, 0x0501);
	CHECK_EQ_U64(ga(m, a.ino).rdev, 0x0501);
	CHECK_RC(meta_mknod(m, dir, "b", S_IFBLK | 0600, 0x0802, 0, 0, NULL,
			    &t1, &a), 0);
	CHECK_EQ_U64(ga(m, a.ino).mode, S_IFBLK | 0600);
	CHECK_RC(meta_mknod(m, dir, "p", S_IFIFO | 0600, 0, 0, 0, NULL, &t1,
			    &a), 0);
	CHECK_EQ_U64(ga(m, a.ino).mode, S_IFIFO | 0600);
	CHECK_RC(meta_mknod(m, dir, "s", S_IFSOCK | 0600, 0, 0, 0, NULL, &t1,
			    &a), 0);
	CHECK_EQ_U64(ga(m, a.ino).mode, S_IFSOCK | 0600);
	CHECK_RC(meta_mknod(m, dir, "l", S_IFLNK | 0777, 0, 0, 0, "../x/y",
			    &t1, &a), 0);
	CHECK_EQ_U64(a.size, 6);
	CHECK_RC(meta_readlink(m, a.ino, &b), 0);
	CHECK(b.len == 6 && !memcmp(b.data, "../x/y", 6));
	CHECK_RC(meta_readlink(m, file, &b), -EINVAL);
	CHECK_RC(meta_readlink(m, 99999, &b), -ENOENT);

	/* symlink targets: required, not empty, at most 4095 bytes */
	CHECK_RC(meta_mknod(m, dir, "l2", S_IFLNK | 0777, 0, 0, 0, NULL, &t1,
			    &a), -EINVAL);
	CHECK_RC(meta_mknod(m, dir, "l2", S_IFLNK | 0777, 0, 0, 0, "", &t1,
			    &a), -ENOENT);
	memset(target, 't', 4096);
	target[4096] = 0;
	CHECK_RC(meta_mknod(m, dir, "l2", S_IFLNK | 0777, 0, 0, 0, target,
			    &t1, &a), -ENAMETOOLONG);
	target[4095] = 0;
	CHECK_RC(meta_mknod(m, dir, "l2", S_IFLNK | 0777, 0, 0, 0, target,
			    &t1, &a), 0);
	buf_reset(&b);
	CHECK_RC(meta_readlink(m, a.ino, &b), 0);
	CHECK_EQ_U64(b.len, 4095);

	mknod_errors(m, dir, file);
	mknod_lookup(m, dir, file);

	/* a removed directory takes no new entries */
	ino = mk(m, 1, "gone", S_IFDIR | 0755);
	CHECK_RC(meta_rmdir(m, 1, "gone", &t1, NULL), 0);
	CHECK_RC(meta_mknod(m, ino, "x", S_IFREG | 0644, 0, 0, 0, NULL, &t1,
			    &a), -ENOENT);
	/* a NULL out pointer is fine */
	CHECK_RC(meta_mknod(m, 1, "noout", S_IFREG | 0644, 0, 0, 0, NULL, &t1,
			    NULL), 0);
	buf_free(&b);
	meta_close(m);
}

static void test_setgid(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(5, 0);
	struct meta_attr a, in;
	uint64_t sg;

	if (!m)
		return;
	CHECK_RC(meta_mknod(m, 1, "sg", S_IFDIR | 0775, 0, 0, 50, NULL, &t,
			    &a), 0);
	sg = a.ino;
	memset(&in, 0, sizeof(in));
	in.mode = 02775;
	CHECK_RC(meta_setattr(m, sg, &in, META_SET_MODE, &t, &a), 0);
	CHECK_EQ_U64(a.mode, S_IFDIR | 02775);

	CHECK_RC(meta_mknod(m, sg, "f", S_IFREG | 0644, 0, 1000, 1000, NULL,
			    &t, &a), 0);
	CHECK_EQ_U64(a.gid, 50);
	CHECK_EQ_U64(a.mode, S_IFREG | 0644); /* files get the gid only */
	CHECK_EQ_U64(a.uid, 1000);
	CHECK_RC(meta_mknod(m, sg, "d", S_IFDIR | 0755, 0, 1000, 1000, NULL,
			    &t, &a), 0);
	CHECK_EQ_U64(a.gid, 50);
	CHECK_EQ_U64(a.mode, S_IFDIR | 02755);
	CHECK_EQ_U64(ga(m, a.ino).mode, S_IFDIR | 02755);
	/* and it passes on again */
	CHECK_RC(meta_mknod(m, a.ino, "dd", S_IFDIR | 0700, 0, 1, 1, NULL, &t,
			    &a), 0);
	CHECK_EQ_U64(a.gid, 50);
	CHECK_EQ_U64(a.mode, S_IFDIR | 02700);
	/* without the bit, the caller's gid */
	CHECK_RC(meta_mknod(m, 1, "plain", S_IFREG | 0644, 0, 1, 2, NULL, &t,
			    &a), 0);
	CHECK_EQ_U64(a.gid, 2);
	meta_close(m);
}

static void test_link_unlink(void)
{
	struct meta *m = open_mem();
	struct timespec t2 = ts(2000, 5), t3 = ts(3000, 6);
	struct meta_attr a;
	uint64_t d, f, sub, ino, orphan_seen;

	if (!m)
		return;
	d = mk(m, 1, "d", S_IFDIR | 0755);
	f = mk(m, d, "f", S_IFREG | 0644);
	sub = mk(m, d, "sub", S_IFDIR | 0755);

	CHECK_RC(meta_link(m, f, 1, "f2", &t2, &a), 0);
	CHECK_EQ_U64(a.ino, f);
	CHECK_EQ_U64(a.nlink, 2);
	CHECK(ts_eq(a.ctime, t2));
	a = ga(m, f);
	CHECK_EQ_U64(a.nlink, 2);
	CHECK(ts_eq(a.ctime, t2));
	CHECK(ts_eq(ga(m, 1).mtime, t2) && ts_eq(ga(m, 1).ctime, t2));
	CHECK_EQ_U64(nlink_of(m, 1), 3); /* a file link adds no dir link */
	CHECK_EQ_U64(lk(m, 1, "f2"), f);

	CHECK_RC(meta_link(m, sub, 1, "x", &t2, &a), -EPERM);
	CHECK_RC(meta_link(m, f, 1, "f2", &t2, &a), -EEXIST);
	CHECK_RC(meta_link(m, 99999, 1, "x", &t2, &a), -ENOENT);
	CHECK_RC(meta_link(m, f, f, "x", &t2, &a), -ENOTDIR);
	CHECK_RC(meta_link(m, f, 99999, "x", &t2, &a), -ENOENT);
	CHECK_RC(meta_link(m, f, 1, "", &t2, &a), -EINVAL);

	ino = 0;
	CHECK_RC(meta_unlink(m, 1, "f2", &t3, &ino), 0);
	CHECK_EQ_U64(ino, f);
	a = ga(m, f);
	CHECK_EQ_U64(a.nlink, 1);
	CHECK(ts_eq(a.ctime, t3));
	CHECK(ts_eq(ga(m, 1).mtime, t3));
	CHECK_EQ_U64(lk(m, 1, "f2"), 0);

	CHECK_RC(meta_unlink(m, d, "sub", &t3, &ino), -EISDIR);
	CHECK_RC(meta_unlink(m, d, "nope", &t3, &ino), -ENOENT);
	CHECK_RC(meta_unlink(m, f, "x", &t3, &ino), -ENOTDIR);
	CHECK_RC(meta_unlink(m, 99999, "x", &t3, &ino), -ENOENT);

	CHECK_RC(meta_unlink(m, d, "f", &t3, &ino), 0);
	a = ga(m, f); /* the inode stays until purged */
	CHECK_EQ_U64(a.nlink, 0);
	CHECK_RC(meta_link(m, f, 1, "back", &t3, &a), -ENOENT);
	CHECK_RC(meta_inode_purge(m, d), -EBUSY);
	CHECK_RC(meta_inode_purge(m, f), 0);
	CHECK_RC(meta_getattr(m, f, &a), -ENOENT);
	CHECK_RC(meta_inode_purge(m, f), -ENOENT);
	/* in a batch: the unlinked go, the linked and the gone are left */
	{
		uint64_t g1 = mk(m, d, "g1", S_IFREG | 0644);
		uint64_t g2 = mk(m, d, "g2", S_IFREG | 0644);
		uint64_t batch[4];

		CHECK_RC(meta_unlink(m, d, "g1", &t3, &ino), 0);
		CHECK_RC(meta_unlink(m, d, "g2", &t3, &ino), 0);
		batch[0] = g1;
		batch[1] = d;
		batch[2] = 99999;
		batch[3] = g2;
		CHECK_RC(meta_inodes_purge(m, batch, 4), 0);
		CHECK_RC(meta_getattr(m, g1, &a), -ENOENT);
		CHECK_RC(meta_getattr(m, g2, &a), -ENOENT);
		CHECK_RC(meta_getattr(m, d, &a), 0);
		CHECK_RC(meta_inodes_purge(m, batch, 0), 0);
	}

	/* rmdir */
	mk(m, sub, "x", S_IFREG | 0644);
	CHECK_RC(meta_rmdir(m, d, "sub", &t3, &ino), -ENOTEMPTY);
	CHECK_RC(meta_unlink(m, sub, "x", &t3, &ino), 0);
	orphan_seen = ino;
	mk(m, d, "file", S_IFREG | 0644);
	CHECK_RC(meta_rmdir(m, d, "file", &t3, &ino), -ENOTDIR);
	CHECK_RC(meta_rmdir(m, d, "nope", &t3, &ino), -ENOENT);
	CHECK_RC(meta_rmdir(m, 99999, "x", &t3, &ino), -ENOENT);
	CHECK_EQ_U64(nlink_of(m, d), 3);
	ino = 0;
	CHECK_RC(meta_rmdir(m, d, "sub", &t2, &ino), 0);
	CHECK_EQ_U64(ino, sub);
	CHECK_EQ_U64(nlink_of(m, d), 2);
	CHECK(ts_eq(ga(m, d).mtime, t2));
	a = ga(m, sub);
	CHECK_EQ_U64(a.nlink, 0);
	CHECK(ts_eq(a.ctime, t2));
	CHECK_EQ_U64(lk(m, d, "sub"), 0);
	CHECK_RC(meta_inode_purge(m, sub), 0);
	CHECK_RC(meta_inode_purge(m, orphan_seen), 0);
	CHECK_RC(meta_inode_purge(m, 1), -EBUSY);
	meta_close(m);
}

static int orphan_cb(uint64_t ino, void *arg)
{
	struct meta *m = *(struct meta **)arg;

	/* the lock is not held: purging from here must work */
	return meta_inode_purge(m, ino);
}

struct count_cb {
	size_t n;
	uint64_t last;
	size_t stop_at;
};

static int count_ino_cb(uint64_t ino, void *arg)
{
	struct count_cb *c = arg;

	CHECK(ino > c->last);
	c->last = ino;
	c->n++;
	return c->stop_at && c->n == c->stop_at ? 42 : 0;
}

static void test_orphans(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(1, 0);
	struct count_cb c = { 0 };
	char name[32];
	int i;

	if (!m)
		return;
	for (i = 0; i < 600; i++) {
		snprintf(name, sizeof(name), "o%d", i);
		mk(m, 1, name, i % 10 ? S_IFREG | 0644 : S_IFDIR | 0755);
	}
	mk(m, 1, "keep", S_IFREG | 0644);
	for (i = 0; i < 600; i++) {
		snprintf(name, sizeof(name), "o%d", i);
		if (i % 10)
			CHECK_RC(meta_unlink(m, 1, name, &t, NULL), 0);
		else
			CHECK_RC(meta_rmdir(m, 1, name, &t, NULL), 0);
	}
	CHECK_RC(meta_orphans(m, count_ino_cb, &c), 0);
	CHECK_EQ_U64(c.n, 600);
	memset(&c, 0, sizeof(c));
	c.stop_at = 300;
	CHECK_RC(meta_orphans(m, count_ino_cb, &c), 42);
	CHECK_EQ_U64(c.n, 300);
	CHECK_RC(meta_orphans(m, orphan_cb, &m), 0);
	memset(&c, 0, sizeof(c));
	CHECK_RC(meta_orphans(m, count_ino_cb, &c), 0);
	CHECK_EQ_U64(c.n, 0);
	CHECK(lk(m, 1, "keep") != 0);
	meta_close(m);
}

/* ---- rename ---- */

/* The volume the rename steps share: each starts where the one before
 * left it. */
struct rename_fx {
	struct meta *m;
	struct timespec t;
	uint64_t p1, p2;
	uint64_t f;		/* a file, two names once rename_same() ran */
	uint64_t d, sub, deep;	/* d/sub/deep */
	uint64_t full;		/* a directory that is not empty */
};

/* A plain move within a directory: the entry keeps its cookie. */
static void rename_in_dir(struct rename_fx *x)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	uint64_t p1 = x->p1, f, rep;
	struct rd r1, r2;

	f = x->f = mk(m, p1, "f", S_IFREG | 0644);
	rd_list(m, p1, 0, 0, &r1);
	rep = 99;
	CHECK_RC(meta_rename(m, p1, "f", p1, "f1", 0, &t, &rep), 0);
	CHECK_EQ_U64(rep, 0);
	CHECK_EQ_U64(lk(m, p1, "f"), 0);
	CHECK_EQ_U64(lk(m, p1, "f1"), f);
	CHECK(ts_eq(ga(m, f).ctime, t));
	CHECK(ts_eq(ga(m, p1).mtime, t) && ts_eq(ga(m, p1).ctime, t));
	rd_list(m, p1, 0, 0, &r2);
	CHECK(r1.n == 1 && r2.n == 1 && r1.e[0].cookie == r2.e[0].cookie);
	CHECK(!strcmp(r2.e[0].name, "f1"));
}

/* A file onto an existing file: replaced, the victim loses a link. */
static void rename_replace_file(struct rename_fx *x)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	uint64_t p1 = x->p1, p2 = x->p2, f = x->f, g, rep;

	g = mk(m, p2, "g", S_IFREG | 0644);
	CHECK_RC(meta_rename(m, p1, "f1", p2, "g", 0, &t, &rep), 0);
	CHECK_EQ_U64(rep, g);
	CHECK_EQ_U64(nlink_of(m, g), 0);
	CHECK_EQ_U64(lk(m, p2, "g"), f);
	CHECK_EQ_U64(lk(m, p1, "f1"), 0);
	CHECK(ts_eq(ga(m, p2).mtime, t));
	CHECK_RC(meta_inode_purge(m, g), 0);
	/* a victim with two names keeps one */
	g = mk(m, p2, "g2", S_IFREG | 0644);
	CHECK_RC(meta_link(m, g, p1, "g2link", &t, NULL), 0);
	CHECK_RC(meta_rename(m, p2, "g", p2, "g2", 0, &t, &rep), 0);
	CHECK_EQ_U64(rep, g);
	CHECK_EQ_U64(nlink_of(m, g), 1);
	CHECK_EQ_U64(lk(m, p2, "g2"), f);
}

/* The same inode on both sides: nothing happens. */
static void rename_same(struct rename_fx *x)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	uint64_t p2 = x->p2, f = x->f, rep;

	CHECK_RC(meta_link(m, f, p2, "hard", &t, NULL), 0);
	CHECK_EQ_U64(nlink_of(m, f), 2);
	CHECK_RC(meta_rename(m, p2, "g2", p2, "hard", 0, &t, &rep), 0);
	CHECK_EQ_U64(rep, 0);
	CHECK_EQ_U64(lk(m, p2, "g2"), f);
	CHECK_EQ_U64(lk(m, p2, "hard"), f);
	CHECK_EQ_U64(nlink_of(m, f), 2);
	CHECK_RC(meta_rename(m, p2, "g2", p2, "g2", 0, &t, &rep), 0);
	CHECK_EQ_U64(lk(m, p2, "g2"), f);
	/* ... but NOREPLACE still sees an existing name (as Linux) */
	CHECK_RC(meta_rename(m, p2, "g2", p2, "hard", META_RENAME_NOREPLACE,
			     &t, &rep), -EEXIST);
}

/* A directory across parents: link counts and the parent column; never
 * into its own subtree. */
static void rename_dir(struct rename_fx *x)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	uint64_t p1 = x->p1, p2 = x->p2, d, sub, deep, rep;
	struct meta_attr a;

	d = x->d = mk(m, p1, "d", S_IFDIR | 0755);
	sub = x->sub = mk(m, d, "sub", S_IFDIR | 0755);
	deep = x->deep = mk(m, sub, "deep", S_IFDIR | 0755);
	CHECK_EQ_U64(nlink_of(m, p1), 3);
	CHECK_EQ_U64(nlink_of(m, p2), 2);
	CHECK_RC(meta_rename(m, p1, "d", p2, "d", 0, &t, &rep), 0);
	CHECK_EQ_U64(nlink_of(m, p1), 2);
	CHECK_EQ_U64(nlink_of(m, p2), 3);
	CHECK_EQ_U64(parent_of(m, d), p2);
	CHECK_EQ_U64(parent_of(m, sub), d); /* untouched below */
	CHECK_RC(meta_lookup(m, d, "..", &a), 0);
	CHECK_EQ_U64(a.ino, p2);
	CHECK(ts_eq(ga(m, d).ctime, t));

	/* into its own subtree */
	CHECK_RC(meta_rename(m, p2, "d", d, "x", 0, &t, &rep), -EINVAL);
	CHECK_RC(meta_rename(m, p2, "d", deep, "x", 0, &t, &rep), -EINVAL);
	CHECK_RC(meta_rename(m, 1, "p2", deep, "x", 0, &t, &rep), -EINVAL);
	/* a directory may move up out of itself */
	CHECK_RC(meta_rename(m, sub, "deep", 1, "deep", 0, &t, &rep), 0);
	CHECK_EQ_U64(parent_of(m, deep), 1);
	CHECK_RC(meta_rename(m, 1, "deep", sub, "deep", 0, &t, &rep), 0);
}

/* A directory onto an empty directory (other parent, same parent); onto
 * a non-empty one; a file onto a directory and the other way. */
static void rename_onto_dir(struct rename_fx *x)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	uint64_t p1 = x->p1, p2 = x->p2, d = x->d, e, rep;

	/* dir -> empty dir (other parent) */
	e = mk(m, p1, "empty", S_IFDIR | 0755);
	CHECK_EQ_U64(nlink_of(m, p1), 3);
	CHECK_RC(meta_rename(m, p2, "d", p1, "empty", 0, &t, &rep), 0);
	CHECK_EQ_U64(rep, e);
	CHECK_EQ_U64(nlink_of(m, e), 0);
	CHECK_EQ_U64(nlink_of(m, p1), 3); /* lost empty, gained d */
	CHECK_EQ_U64(nlink_of(m, p2), 2);
	CHECK_EQ_U64(lk(m, p1, "empty"), d);
	CHECK_EQ_U64(parent_of(m, d), p1);
	CHECK_RC(meta_inode_purge(m, e), 0);
	/* dir -> empty dir (same parent) */
	e = mk(m, p1, "e2", S_IFDIR | 0755);
	CHECK_EQ_U64(nlink_of(m, p1), 4);
	CHECK_RC(meta_rename(m, p1, "empty", p1, "e2", 0, &t, &rep), 0);
	CHECK_EQ_U64(rep, e);
	CHECK_EQ_U64(nlink_of(m, p1), 3);
	CHECK_RC(meta_inode_purge(m, e), 0);

	/* dir -> non-empty dir, file -> dir, dir -> file */
	e = x->full = mk(m, p2, "full", S_IFDIR | 0755);
	mk(m, e, "x", S_IFREG | 0644);
	CHECK_RC(meta_rename(m, p1, "e2", p2, "full", 0, &t, &rep),
		 -ENOTEMPTY);
	CHECK_RC(meta_rename(m, p2, "hard", p2, "full", 0, &t, &rep),
		 -EISDIR);
	CHECK_RC(meta_rename(m, p1, "e2", p2, "hard", 0, &t, &rep),
		 -ENOTDIR);
	CHECK_EQ_U64(rep, 0);
	CHECK_EQ_U64(lk(m, p1, "e2"), d);
}

/* Missing names and parents, bad names and flags, a removed directory;
 * NOREPLACE. */
static void rename_errors(struct rename_fx *x)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	uint64_t p1 = x->p1, p2 = x->p2, f = x->f, e, rep;
	char longname[300];

	CHECK_RC(meta_rename(m, p1, "nope", p2, "x", 0, &t, &rep), -ENOENT);
	CHECK_RC(meta_rename(m, f, "x", p2, "x", 0, &t, &rep), -ENOTDIR);
	CHECK_RC(meta_rename(m, 99999, "x", p2, "x", 0, &t, &rep), -ENOENT);
	CHECK_RC(meta_rename(m, p2, "hard", f, "x", 0, &t, &rep), -ENOTDIR);
	CHECK_RC(meta_rename(m, p2, "hard", 99999, "x", 0, &t, &rep),
		 -ENOENT);
	CHECK_RC(meta_rename(m, p2, "hard", p2, "a/b", 0, &t, &rep), -EINVAL);
	CHECK_RC(meta_rename(m, p2, "hard", p2, "", 0, &t, &rep), -EINVAL);
	CHECK_RC(meta_rename(m, p2, "hard", p2, "x",
			     META_RENAME_NOREPLACE | META_RENAME_EXCHANGE, &t,
			     &rep), -EINVAL);
	CHECK_RC(meta_rename(m, p2, "hard", p2, "x", 1u << 5, &t, &rep),
		 -EINVAL);
	memset(longname, 'z', 256);
	longname[256] = 0;
	CHECK_RC(meta_rename(m, p2, "hard", p2, longname, 0, &t, &rep),
		 -ENAMETOOLONG);
	CHECK_RC(meta_rename(m, p2, longname, p2, "x", 0, &t, &rep),
		 -ENAMETOOLONG);
	/* a removed directory takes no entries */
	e = mk(m, 1, "removed", S_IFDIR | 0755);
	CHECK_RC(meta_rmdir(m, 1, "removed", &t, NULL), 0);
	CHECK_RC(meta_rename(m, p2, "hard", e, "x", 0, &t, &rep), -ENOENT);

	/* NOREPLACE */
	CHECK_RC(meta_rename(m, p2, "hard", p2, "full", META_RENAME_NOREPLACE,
			     &t, &rep), -EEXIST);
	CHECK_RC(meta_rename(m, p2, "hard", p2, "hard2",
			     META_RENAME_NOREPLACE, &t, &rep), 0);
	CHECK_EQ_U64(lk(m, p2, "hard2"), f);
}

/* EXCHANGE: a file with a directory both ways, two directories across
 * parents, within one directory; never into one's own subtree. */
static void rename_exchange(struct rename_fx *x)
{
	struct meta *m = x->m;
	struct timespec t = x->t;
	uint64_t p1 = x->p1, p2 = x->p2, d = x->d, sub = x->sub;
	uint64_t full = x->full, f, h, rep;
	struct meta_attr a;

	CHECK_RC(meta_rename(m, p2, "hard2", p2, "none",
			     META_RENAME_EXCHANGE, &t, &rep), -ENOENT);
	/* file in p2 <-> directory d (with children) in p1 */
	h = lk(m, p2, "hard2");
	CHECK_EQ_U64(nlink_of(m, p1), 3);
	CHECK_EQ_U64(nlink_of(m, p2), 3); /* has "full" */
	CHECK_RC(meta_rename(m, p2, "hard2", p1, "e2", META_RENAME_EXCHANGE,
			     &t, &rep), 0);
	CHECK_EQ_U64(rep, 0);
	CHECK_EQ_U64(lk(m, p2, "hard2"), d);
	CHECK_EQ_U64(lk(m, p1, "e2"), h);
	CHECK_EQ_U64(nlink_of(m, p1), 2);
	CHECK_EQ_U64(nlink_of(m, p2), 4);
	CHECK_EQ_U64(parent_of(m, d), p2);
	CHECK_EQ_U64(nlink_of(m, h), 2);
	CHECK_EQ_U64(nlink_of(m, d), 3);
	CHECK(ts_eq(ga(m, d).ctime, t) && ts_eq(ga(m, h).ctime, t));
	CHECK_EQ_U64(lk(m, d, "sub"), sub);
	/* and back, dir <-> file the other way */
	CHECK_RC(meta_rename(m, p2, "hard2", p1, "e2", META_RENAME_EXCHANGE,
			     &t, &rep), 0);
	CHECK_EQ_U64(lk(m, p1, "e2"), d);
	CHECK_EQ_U64(nlink_of(m, p1), 3);
	CHECK_EQ_U64(nlink_of(m, p2), 3);
	CHECK_EQ_U64(parent_of(m, d), p1);
	/* dir <-> dir across parents: counts unchanged, parents swapped */
	CHECK_RC(meta_rename(m, p1, "e2", p2, "full", META_RENAME_EXCHANGE,
			     &t, &rep), 0);
	CHECK_EQ_U64(lk(m, p2, "full"), d);
	CHECK_EQ_U64(lk(m, p1, "e2"), full);
	CHECK_EQ_U64(parent_of(m, d), p2);
	CHECK_EQ_U64(parent_of(m, full), p1);
	CHECK_EQ_U64(nlink_of(m, p1), 3);
	CHECK_EQ_U64(nlink_of(m, p2), 3);
	/* exchange into one's own subtree, both directions */
	CHECK_RC(meta_rename(m, p2, "full", sub, "deep", META_RENAME_EXCHANGE,
			     &t, &rep), -EINVAL);
	CHECK_RC(meta_rename(m, sub, "deep", p2, "full", META_RENAME_EXCHANGE,
			     &t, &rep), -EINVAL);
	/* exchange within one directory */
	CHECK_RC(meta_mknod(m, p1, "a1", S_IFREG | 0600, 0, 0, 0, NULL, &t,
			    &a), 0);
	f = a.ino;
	CHECK_RC(meta_rename(m, p1, "a1", p1, "e2", META_RENAME_EXCHANGE, &t,
			     &rep), 0);
	CHECK_EQ_U64(lk(m, p1, "e2"), f);
	CHECK_EQ_U64(nlink_of(m, p1), 3);
}

static void test_rename(void)
{
	struct rename_fx x = { .m = open_mem(), .t = ts(7000, 77) };

	if (!x.m)
		return;
	x.p1 = mk(x.m, 1, "p1", S_IFDIR | 0755);
	x.p2 = mk(x.m, 1, "p2", S_IFDIR | 0755);
	rename_in_dir(&x);
	rename_replace_file(&x);
	rename_same(&x);
	rename_dir(&x);
	rename_onto_dir(&x);
	rename_errors(&x);
	rename_exchange(&x);
	meta_close(x.m);
}

/* A directory of many entries moves in one step, children untouched. */
static void test_rename_big_dir(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(1, 0);
	struct rd r1, r2;
	char name[32];
	uint64_t big, d2;
	int i;

	if (!m)
		return;
	big = mk(m, 1, "big", S_IFDIR | 0755);
	d2 = mk(m, 1, "d2", S_IFDIR | 0755);
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "e%d", i);
		mk(m, big, name, S_IFREG | 0644);
	}
	rd_list(m, big, 0, 50, &r1);
	CHECK_RC(meta_rename(m, 1, "big", d2, "moved", 0, &t, NULL), 0);
	rd_list(m, big, 0, 50, &r2);
	CHECK_EQ_U64(r2.n, 50);
	CHECK(!memcmp(r1.e, r2.e, sizeof(r1.e)));
	CHECK_EQ_U64(parent_of(m, big), d2);
	CHECK(lk(m, big, "e1999") != 0);
	meta_close(m);
}

/* ---- attributes ---- */

static void test_setattr(void)
{
	struct meta *m = open_mem();
	struct timespec now = ts(5000, 1), t9 = ts(9, 9), t8 = ts(8, 8);
	struct meta_attr in, a;
	uint64_t f, d, l;

	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 0644);
	d = mk(m, 1, "d", S_IFDIR | 0755);
	l = mk(m, 1, "l", S_IFLNK | 0777);
	memset(&in, 0, sizeof(in));

	in.mode = S_IFDIR | 04711; /* the type bits are ignored */
	CHECK_RC(meta_setattr(m, f, &in, META_SET_MODE, &now, &a), 0);
	CHECK_EQ_U64(a.mode, S_IFREG | 04711);
	CHECK(ts_eq(a.ctime, now));
	CHECK(ts_eq(a.mtime, ts(100, 0)));
	in.uid = 55;
	in.gid = 66;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_UID, &now, &a), 0);
	CHECK(a.uid == 55 && a.gid == 1000);
	CHECK_RC(meta_setattr(m, f, &in, META_SET_GID, &now, &a), 0);
	CHECK(a.uid == 55 && a.gid == 66);
	in.atime = t9;
	in.mtime = t8;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_ATIME | META_SET_MTIME,
			      &now, &a), 0);
	CHECK(ts_eq(a.atime, t9) && ts_eq(a.mtime, t8) && ts_eq(a.ctime, now));
	in.ctime = t9;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_CTIME, &now, &a), 0);
	CHECK(ts_eq(a.ctime, t9));
	a = ga(m, f);
	CHECK(ts_eq(a.ctime, t9) && a.uid == 55 && a.mode == (S_IFREG | 04711));
	/* nothing to set: nothing changes, not even ctime */
	CHECK_RC(meta_setattr(m, f, &in, 0, &now, &a), 0);
	CHECK(ts_eq(a.ctime, t9));
	CHECK_RC(meta_setattr(m, f, &in, META_SET_MODE, &now, NULL), 0);

	in.size = 12345;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_SIZE, &now, &a), 0);
	CHECK_EQ_U64(a.size, 12345);
	CHECK_RC(meta_setattr(m, d, &in, META_SET_SIZE, &now, &a), -EISDIR);
	CHECK_RC(meta_setattr(m, l, &in, META_SET_SIZE, &now, &a), -EINVAL);
	in.size = (uint64_t)INT64_MAX + 1;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_SIZE, &now, &a), -EFBIG);
	CHECK_RC(meta_setattr(m, 99999, &in, META_SET_MODE, &now, &a),
		 -ENOENT);
	CHECK_RC(meta_setattr(m, f, &in, 1u << 12, &now, &a), -EINVAL);
	CHECK_EQ_U64(ga(m, f).size, 12345);

	/* directories and symlinks take mode/owner/times */
	in.mode = 0700;
	CHECK_RC(meta_setattr(m, d, &in, META_SET_MODE, &now, &a), 0);
	CHECK_EQ_U64(a.mode, S_IFDIR | 0700);
	CHECK_RC(meta_setattr(m, l, &in, META_SET_UID, &now, &a), 0);
	meta_close(m);
}

static void test_write_atime(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(200, 0), t400 = ts(400, 0);
	struct timespec day = ts(300 + 86401, 0);
	uint64_t idx[4] = { 0, 1, 2, 2 }, f, d, cc;
	struct meta_attr a, in;
	char hash[META_HASH_LEN + 1];
	int dirty;

	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 0644);
	d = mk(m, 1, "d", S_IFDIR | 0755);
	CHECK_RC(meta_write_done(m, f, 3 * BS - 10, &t, idx, 4), 0);
	a = ga(m, f);
	CHECK_EQ_U64(a.size, 3 * BS - 10);
	CHECK_EQ_U64(a.nblocks, 3);
	CHECK(ts_eq(a.mtime, t) && ts_eq(a.ctime, t));
	CHECK(ts_eq(a.atime, ts(100, 0)));
	CHECK_RC(meta_block_get(m, f, 2, hash, &dirty), 0);
	CHECK(dirty == 1 && hash[0] == 0);
	CHECK_RC(meta_block_get(m, f, 3, hash, &dirty), -ENOENT);
	/* the size never shrinks; blocks marked again are not counted */
	CHECK_RC(meta_write_done(m, f, 10, &t, idx, 1), 0);
	a = ga(m, f);
	CHECK_EQ_U64(a.size, 3 * BS - 10);
	CHECK_EQ_U64(a.nblocks, 3);
	CHECK_RC(meta_write_done(m, f, 0, &t, NULL, 0), 0);
	/* blocks past the end would break invariant 5 */
	idx[0] = 3;
	CHECK_RC(meta_write_done(m, f, 3 * BS, &t, idx, 1), -EINVAL);
	CHECK_RC(meta_write_done(m, f, 3 * BS + 1, &t, idx, 1), 0);
	CHECK_EQ_U64(ga(m, f).nblocks, 4);
	CHECK_RC(meta_write_done(m, d, 1, &t, NULL, 0), -EISDIR);
	CHECK_RC(meta_write_done(m, 99999, 1, &t, NULL, 0), -ENOENT);
	CHECK_RC(meta_write_done(m, f, (uint64_t)INT64_MAX + 1, &t, NULL, 0),
		 -EFBIG);

	/* relatime */
	memset(&in, 0, sizeof(in));
	in.atime = ts(150, 0);
	CHECK_RC(meta_setattr(m, f, &in, META_SET_ATIME | META_SET_CTIME,
			      &t, &a), 0); /* atime 150 < mtime 200 */
	CHECK_RC(meta_touch_atime(m, f, &t), 0);
	CHECK(ts_eq(ga(m, f).atime, t)); /* atime <= mtime: updated */
	cc = meta_change_count(m);
	CHECK_RC(meta_touch_atime(m, f, &t), 0);
	/* atime == mtime == ctime: updated again (to the same value) */
	in.atime = ts(300, 0);
	in.ctime = ts(250, 0);
	CHECK_RC(meta_setattr(m, f, &in, META_SET_ATIME | META_SET_CTIME,
			      &t, &a), 0);
	cc = meta_change_count(m);
	CHECK_RC(meta_touch_atime(m, f, &t400), 0);
	CHECK(ts_eq(ga(m, f).atime, ts(300, 0))); /* newer, recent: no-op */
	CHECK_EQ_U64(meta_change_count(m), cc);
	CHECK_RC(meta_touch_atime(m, f, &day), 0);
	CHECK(ts_eq(ga(m, f).atime, day)); /* more than a day old */
	CHECK_EQ_U64(meta_change_count(m), cc + 1);
	CHECK_RC(meta_touch_atime(m, 99999, &t), -ENOENT);
	meta_close(m);
}

/* ---- readdir ---- */

static int getattr_cb(const char *name, const struct meta_attr *a,
		      uint64_t cookie, void *arg)
{
	struct meta *m = arg;
	struct meta_attr b;

	/* the lock is not held during callbacks */
	CHECK_RC(meta_getattr(m, a->ino, &b), 0);
	CHECK_EQ_U64(b.ino, a->ino);
	return 0;
}

struct big_rd {
	unsigned char *seen;
	size_t n, page, dup, bad;
	uint64_t last;
};

static int big_cb(const char *name, const struct meta_attr *a,
		  uint64_t cookie, void *arg)
{
	struct big_rd *b = arg;
	unsigned long i = strtoul(name + 1, NULL, 10);

	if (cookie <= b->last)
		b->bad++;
	b->last = cookie;
	if (i >= 100000 || name[0] != 'n')
		b->bad++;
	else if (b->seen[i]++)
		b->dup++;
	return ++b->n == b->page;
}

static void test_readdir(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(1, 0);
	struct big_rd big = { 0 };
	struct rd r, r2;
	uint64_t d, f, off, pages = 0;
	char name[32];
	size_t i, total;
	int j;

	if (!m)
		return;
	d = mk(m, 1, "d", S_IFDIR | 0755);
	f = mk(m, d, "f", S_IFREG | 0644);
	CHECK_RC(meta_readdir(m, f, 0, rd_cb, &r), -ENOTDIR);
	CHECK_RC(meta_readdir(m, 99999, 0, rd_cb, &r), -ENOENT);
	CHECK_RC(meta_readdir(m, f, UINT64_MAX, rd_cb, &r), -ENOTDIR);
	CHECK_RC(meta_unlink(m, d, "f", &t, NULL), 0);
	CHECK_EQ_U64(rd_list(m, d, 0, 0, &r), 0);

	for (j = 0; j < 10; j++) {
		snprintf(name, sizeof(name), "e%d", j);
		mk(m, d, name, j == 4 ? S_IFDIR | 0755 : S_IFREG | 0644);
	}
	CHECK_EQ_U64(rd_list(m, d, 0, 0, &r), 10);
	CHECK(r.e[0].cookie >= 3);
	for (i = 0; i < r.n; i++) {
		snprintf(name, sizeof(name), "e%zu", i);
		CHECK(!strcmp(r.e[i].name, name));
		CHECK_EQ_U64(r.e[i].ino, lk(m, d, name));
		if (i)
			CHECK(r.e[i].cookie > r.e[i - 1].cookie);
	}
	/* offsets 1 and 2 are "." and "..": still from the start */
	CHECK_EQ_U64(rd_list(m, d, 1, 0, &r2), 10);
	CHECK_EQ_U64(rd_list(m, d, 2, 0, &r2), 10);
	CHECK_EQ_U64(rd_list(m, d, UINT64_MAX, 0, &r2), 0);
	CHECK_EQ_U64(rd_list(m, d, r.e[9].cookie, 0, &r2), 0);
	CHECK_EQ_U64(rd_list(m, d, r.e[4].cookie, 0, &r2), 5);
	CHECK(!strcmp(r2.e[0].name, "e5"));

	/* stable cookies while entries come and go between calls */
	CHECK_EQ_U64(rd_list(m, d, 0, 5, &r), 5); /* e0..e4 seen */
	off = r.e[4].cookie;
	CHECK_RC(meta_unlink(m, d, "e2", &t, NULL), 0); /* seen */
	CHECK_RC(meta_unlink(m, d, "e7", &t, NULL), 0); /* not yet seen */
	mk(m, d, "new1", S_IFREG | 0644);
	CHECK_RC(meta_rename(m, d, "e8", d, "e8b", 0, &t, NULL), 0);
	mk(m, d, "new2", S_IFREG | 0644);
	CHECK_RC(meta_unlink(m, d, "new2", &t, NULL), 0);
	CHECK_EQ_U64(rd_list(m, d, off, 0, &r2), 5);
	CHECK(!strcmp(r2.e[0].name, "e5") && !strcmp(r2.e[1].name, "e6") &&
	      !strcmp(r2.e[2].name, "e8b") && !strcmp(r2.e[3].name, "e9") &&
	      !strcmp(r2.e[4].name, "new1"));
	CHECK(!rd_has(&r2, "e7") && !rd_has(&r2, "e2"));
	CHECK(r2.e[0].cookie > off);
	/* callbacks may call meta */
	CHECK_RC(meta_readdir(m, d, 0, getattr_cb, m), 0);

	/* 100,000 entries in pages of 100 */
	d = mk(m, 1, "big", S_IFDIR | 0755);
	for (j = 0; j < 100000; j++) {
		snprintf(name, sizeof(name), "n%d", j);
		mk(m, d, name, S_IFREG | 0644);
	}
	big.seen = calloc(100000, 1);
	if (!big.seen) {
		CHECK(0);
		meta_close(m);
		return;
	}
	off = 0;
	total = 0;
	for (;;) {
		big.n = 0;
		big.page = 100;
		CHECK_RC(meta_readdir(m, d, off, big_cb, &big), 0);
		total += big.n;
		if (big.n == 0)
			break;
		CHECK(big.n == 100);
		off = big.last;
		pages++;
	}
	CHECK_EQ_U64(total, 100000);
	CHECK_EQ_U64(pages, 1000);
	CHECK_EQ_U64(big.dup, 0);
	CHECK_EQ_U64(big.bad, 0);
	for (j = 0; j < 100000; j++)
		if (big.seen[j] != 1)
			break;
	CHECK_EQ_U64(j, 100000);
	free(big.seen);
	meta_close(m);
}

/* ---- xattrs ---- */

static void test_xattr(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(42, 4), t43 = ts(43, 0);
	static char big[65537];
	const char bin[] = { 'a', 0, 'b', 0, 0 };
	char name[300];
	struct buf b = BUF_INIT;
	uint64_t f, cc;
	static const char *const names[] = { "user.ab", "user.a", "user." };
	static const char *const bad[] = { "user.a", "" };
	bool used[3];

	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 0644);
	CHECK_RC(meta_getxattr(m, f, "user.a", &b), -ENODATA);
	CHECK_RC(meta_getxattr(m, 99999, "user.a", &b), -ENOENT);
	CHECK_RC(meta_xattr_names_used(m, names, 3, used), 0);
	CHECK(!used[0] && !used[1] && !used[2]);
	CHECK_RC(meta_xattr_names_used(m, bad, 2, used), -ERANGE);
	CHECK_RC(meta_xattr_names_used(m, names, 0, used), -EINVAL);
	CHECK_RC(meta_setxattr(m, f, "user.a", "v1", 2, 0, &t), 0);
	CHECK_RC(meta_xattr_names_used(m, names, 3, used), 0);
	CHECK(!used[0] && used[1] && !used[2]);
	CHECK(ts_eq(ga(m, f).ctime, t));
	CHECK_RC(meta_getxattr(m, f, "user.a", &b), 0);
	CHECK(b.len == 2 && !memcmp(b.data, "v1", 2));
	CHECK_RC(meta_setxattr(m, f, "user.a", "v2", 2, META_XATTR_CREATE,
			       &t), -EEXIST);
	CHECK_RC(meta_setxattr(m, f, "user.b", "v2", 2, META_XATTR_REPLACE,
			       &t), -ENODATA);
	CHECK_RC(meta_setxattr(m, f, "user.a", "longer", 6,
			       META_XATTR_REPLACE, &t), 0);
	buf_reset(&b);
	CHECK_RC(meta_getxattr(m, f, "user.a", &b), 0);
	CHECK(b.len == 6 && !memcmp(b.data, "longer", 6));
	CHECK_RC(meta_setxattr(m, f, "user.b", bin, sizeof(bin),
			       META_XATTR_CREATE, &t), 0);
	buf_reset(&b);
	CHECK_RC(meta_getxattr(m, f, "user.b", &b), 0);
	CHECK(b.len == sizeof(bin) && !memcmp(b.data, bin, sizeof(bin)));
	/* an empty value is a value */
	CHECK_RC(meta_setxattr(m, f, "trusted.empty", NULL, 0, 0, &t), 0);
	buf_reset(&b);
	CHECK_RC(meta_getxattr(m, f, "trusted.empty", &b), 0);
	CHECK_EQ_U64(b.len, 0);
	/* appended to out */
	CHECK_RC(meta_getxattr(m, f, "user.a", &b), 0);
	CHECK_RC(meta_getxattr(m, f, "user.a", &b), 0);
	CHECK(b.len == 12 && !memcmp(b.data, "longerlonger", 12));

	buf_reset(&b);
	CHECK_RC(meta_listxattr(m, f, &b), 0);
	CHECK(b.len == sizeof("trusted.empty\0user.a\0user.b") &&
	      !memcmp(b.data, "trusted.empty\0user.a\0user.b\0", b.len));
	buf_reset(&b);
	CHECK_RC(meta_listxattr(m, mk(m, 1, "g", S_IFREG | 0644), &b), 0);
	CHECK_EQ_U64(b.len, 0);
	CHECK_RC(meta_listxattr(m, 99999, &b), -ENOENT);

	/* limits and flags */
	CHECK_RC(meta_setxattr(m, f, "user.x", "v", 1,
			       META_XATTR_CREATE | META_XATTR_REPLACE, &t),
		 -EINVAL);
	CHECK_RC(meta_setxattr(m, f, "", "v", 1, 0, &t), -ERANGE);
	memset(name, 'x', 256);
	name[256] = 0;
	CHECK_RC(meta_setxattr(m, f, name, "v", 1, 0, &t), -ERANGE);
	CHECK_RC(meta_getxattr(m, f, name, &b), -ERANGE);
	name[255] = 0;
	CHECK_RC(meta_setxattr(m, f, name, "v", 1, 0, &t), 0);
	CHECK_RC(meta_setxattr(m, f, "user.big", big, 65536, 0, &t), 0);
	CHECK_RC(meta_setxattr(m, f, "user.big", big, 65537, 0, &t), -E2BIG);
	CHECK_RC(meta_setxattr(m, 99999, "user.x", "v", 1, 0, &t), -ENOENT);

	/* remove */
	cc = meta_change_count(m);
	CHECK_RC(meta_removexattr(m, f, "user.zzz", &t), -ENODATA);
	CHECK_RC(meta_removexattr(m, 99999, "user.a", &t), -ENOENT);
	CHECK_EQ_U64(meta_change_count(m), cc);
	CHECK_RC(meta_removexattr(m, f, "user.a", &t43), 0);
	CHECK(ts_eq(ga(m, f).ctime, ts(43, 0)));
	CHECK_RC(meta_getxattr(m, f, "user.a", &b), -ENODATA);
	CHECK_RC(meta_removexattr(m, f, "user.a", &t), -ENODATA);

	/* purge takes the xattrs along */
	CHECK_RC(meta_unlink(m, 1, "f", &t, NULL), 0);
	CHECK_RC(meta_inode_purge(m, f), 0);
	CHECK_RC(meta_getxattr(m, f, "user.b", &b), -ENOENT);
	buf_free(&b);
	meta_close(m);
}

int main(void)
{
	test_mknod();
	test_setgid();
	test_link_unlink();
	test_orphans();
	test_rename();
	test_rename_big_dir();
	test_setattr();
	test_write_atime();
	test_readdir();
	test_xattr();
	return check_done("t_meta");
}
