/*
 * t_meta.c - unit tests of the metadata layer (src/meta/meta.h).
 *
 * Purpose: every public function and every documented error code, on an
 * in-memory database and on a real file (reopen persistence, snapshots,
 * fsck of states broken behind meta's back with a second connection).
 *
 * Data model: each test opens its own database; file databases live in a
 * private mkdtemp() directory removed at the end.  Times passed to meta
 * are fixed values, so every timestamp can be compared exactly.
 *
 * Invariants: a test leaves no database open; the fsck scenarios start
 * from the same tree, whose inode numbers are checked (ino_*) before the
 * raw SQL relies on them.
 */
#include "util/compat.h"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "meta/meta.h"
#include "util/buf.h"
#include "util/log.h"

#include "check.h"

#define BS 4096u

static char tmpdir[64];
static bool verbose;

static struct timespec ts(time_t s, long ns)
{
	struct timespec t = { s, ns };

	return t;
}

static bool ts_eq(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* A 64-character object name made of c. */
static const char *hash_of(char c, char *out)
{
	memset(out, c, META_HASH_LEN);
	out[META_HASH_LEN] = 0;
	return out;
}

static void db_path(const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", tmpdir, name);
}

static void rm_db(const char *path)
{
	char p[300];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-pending", path);
	unlink(p);
}

/* Raw SQL through a second connection, behind meta's back. */
static int raw_sql(const char *path, const char *sql)
{
	sqlite3 *db;
	char *err = NULL;
	int rc;

	rc = sqlite3_open(path, &db);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK)
		fprintf(stderr, "raw_sql: %s: %s\n", sql, err ? err : "?");
	sqlite3_free(err);
	sqlite3_close(db);
	return rc;
}

static struct meta *open_mem(void)
{
	struct meta *m = NULL;

	CHECK_RC(meta_open(":memory:", BS, 1000, 1000, &m), 0);
	return m;
}

static uint64_t mk_at(struct meta *m, uint64_t parent, const char *name,
		      uint32_t mode, time_t t)
{
	struct timespec now = ts(t, 0);
	struct meta_attr a;
	int rc;

	rc = meta_mknod(m, parent, name, mode, 0, 1000, 1000,
			S_ISLNK(mode) ? "target" : NULL, &now, &a);
	CHECK_RC(rc, 0);
	return rc ? 0 : a.ino;
}

static uint64_t mk(struct meta *m, uint64_t parent, const char *name,
		   uint32_t mode)
{
	return mk_at(m, parent, name, mode, 100);
}

static struct meta_attr ga(struct meta *m, uint64_t ino)
{
	struct meta_attr a;

	memset(&a, 0, sizeof(a));
	CHECK_RC(meta_getattr(m, ino, &a), 0);
	return a;
}

static uint32_t nlink_of(struct meta *m, uint64_t ino)
{
	return ga(m, ino).nlink;
}

/* Inode named name in parent, 0 when absent. */
static uint64_t lk(struct meta *m, uint64_t parent, const char *name)
{
	struct meta_attr a;

	return meta_lookup(m, parent, name, &a) == 0 ? a.ino : 0;
}

static uint64_t parent_of(struct meta *m, uint64_t dir)
{
	uint64_t p = 0;

	CHECK_RC(meta_parent(m, dir, &p), 0);
	return p;
}

static uint64_t refcount_of(struct meta *m, const char *hash)
{
	uint64_t r = 0;

	return meta_object_get(m, hash, &r) == 0 ? r : UINT64_MAX;
}

/* ---- readdir helpers ---- */

struct rd_ent {
	char name[META_NAME_MAX + 1];
	uint64_t ino;
	uint64_t cookie;
};

struct rd {
	size_t n, stop_after;
	struct rd_ent e[64];
};

static int rd_cb(const char *name, const struct meta_attr *a,
		 uint64_t cookie, void *arg)
{
	struct rd *r = arg;
	struct rd_ent *e;

	if (r->n == ARRAY_SIZE(r->e))
		return 1;
	e = &r->e[r->n++];
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->ino = a->ino;
	e->cookie = cookie;
	return r->stop_after && r->n == r->stop_after;
}

static size_t rd_list(struct meta *m, uint64_t dir, uint64_t off,
		      size_t stop_after, struct rd *r)
{
	memset(r, 0, sizeof(*r));
	r->stop_after = stop_after;
	CHECK_RC(meta_readdir(m, dir, off, rd_cb, r), 0);
	return r->n;
}

static bool rd_has(const struct rd *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (!strcmp(r->e[i].name, name))
			return true;
	return false;
}

/* ---- open, close, config ---- */

static void test_open(void)
{
	char path[256], junk[256];
	struct meta *m = NULL;
	struct meta_attr a;
	struct buf b = BUF_INIT;
	FILE *fp;

	m = open_mem();
	if (!m)
		return;
	CHECK_EQ_U64(meta_block_size(m), BS);
	a = ga(m, META_ROOT_INO);
	CHECK_EQ_U64(a.ino, META_ROOT_INO);
	CHECK_EQ_U64(a.mode, S_IFDIR | 0755);
	CHECK_EQ_U64(a.uid, 1000);
	CHECK_EQ_U64(a.gid, 1000);
	CHECK_EQ_U64(a.nlink, 2);
	CHECK_EQ_U64(a.size, 0);
	CHECK_EQ_U64(parent_of(m, META_ROOT_INO), META_ROOT_INO);
	CHECK_RC(meta_config_get(m, "format", &b), 0);
	CHECK(!strcmp(buf_str(&b), "1"));
	buf_reset(&b);
	CHECK_RC(meta_config_get(m, "block_size", &b), 0);
	CHECK(!strcmp(buf_str(&b), "4096"));
	CHECK_EQ_U64(meta_change_count(m), 0);
	meta_close(m);
	meta_close(NULL);

	db_path("open.db", path, sizeof(path));
	m = (struct meta *)1;
	CHECK_RC(meta_open(path, 0, 0, 0, &m), -EINVAL);
	CHECK(m == NULL);
	rm_db(path);
	CHECK_RC(meta_open(path, BS, 7, 8, &m), 0);
	meta_close(m);
	m = NULL;
	CHECK_RC(meta_open(path, 2 * BS, 0, 0, &m), -EINVAL);
	CHECK(m == NULL);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (m) {
		a = ga(m, META_ROOT_INO);
		CHECK_EQ_U64(a.uid, 7); /* from creation, not this open */
		CHECK_EQ_U64(a.gid, 8);
		meta_close(m);
	}
	/* 0: whatever the volume recorded (for offline tools). */
	CHECK_RC(meta_open(path, 0, 0, 0, &m), 0);
	if (m) {
		CHECK_EQ_U64(meta_block_size(m), BS);
		meta_close(m);
	}
	rm_db(path);

	db_path("junk.db", junk, sizeof(junk));
	fp = fopen(junk, "w");
	if (fp) {
		for (int i = 0; i < 1000; i++)
			fputs("not a database ", fp);
		fclose(fp);
	}
	fprintf(stderr, "(an error about a non-database file is expected)\n");
	CHECK_RC(meta_open(junk, BS, 0, 0, &m), -EIO);
	rm_db(junk);
	CHECK(meta_open("/nonexistent/dir/x.db", BS, 0, 0, &m) < 0);

	/* another program's database is left alone */
	db_path("foreign.db", junk, sizeof(junk));
	rm_db(junk);
	CHECK_RC(raw_sql(junk, "CREATE TABLE foo(x); INSERT INTO foo"
			       " VALUES (1)"), SQLITE_OK);
	CHECK_RC(meta_open(junk, BS, 0, 0, &m), -EINVAL);
	CHECK_RC(raw_sql(junk, "CREATE TABLE config(key, value)"),
		 SQLITE_OK);
	CHECK_RC(meta_open(junk, BS, 0, 0, &m), -EINVAL);
	CHECK_RC(raw_sql(junk, "SELECT count(*) FROM inode"), SQLITE_ERROR);
	rm_db(junk);
	buf_free(&b);
}

static void test_config(void)
{
	struct meta *m = open_mem();
	struct buf b = BUF_INIT;
	uint64_t cc;

	if (!m)
		return;
	CHECK_RC(meta_config_get(m, "volume_id", &b), -ENOENT);
	CHECK_RC(meta_config_set(m, "volume_id", "abc"), 0);
	CHECK_RC(meta_config_get(m, "volume_id", &b), 0);
	CHECK(!strcmp(buf_str(&b), "abc"));
	/* appended, not replaced */
	CHECK_RC(meta_config_get(m, "volume_id", &b), 0);
	CHECK(!strcmp(buf_str(&b), "abcabc"));
	CHECK_RC(meta_config_set(m, "volume_id", "xyz"), 0);
	buf_reset(&b);
	CHECK_RC(meta_config_get(m, "volume_id", &b), 0);
	CHECK(!strcmp(buf_str(&b), "xyz"));

	CHECK_EQ_U64(meta_config_get_u64(m, "ckpt_seq", 42), 42);
	CHECK_RC(meta_config_set_u64(m, "ckpt_seq", 18446744073709551615u),
		 0);
	CHECK_EQ_U64(meta_config_get_u64(m, "ckpt_seq", 0),
		     18446744073709551615u);
	CHECK_RC(meta_config_set_u64(m, "ckpt_seq", 0), 0);
	CHECK_EQ_U64(meta_config_get_u64(m, "ckpt_seq", 5), 0);
	CHECK_RC(meta_config_set(m, "bad", "12x"), 0);
	CHECK_EQ_U64(meta_config_get_u64(m, "bad", 9), 9);
	CHECK_RC(meta_config_set(m, "bad", "-1"), 0);
	CHECK_EQ_U64(meta_config_get_u64(m, "bad", 9), 9);
	CHECK_RC(meta_config_set(m, "bad", ""), 0);
	CHECK_EQ_U64(meta_config_get_u64(m, "bad", 9), 9);

	cc = meta_change_count(m);
	CHECK_RC(meta_config_set(m, "block_size", "8192"), -EPERM);
	CHECK_RC(meta_config_set(m, "format", "2"), -EPERM);
	CHECK_RC(meta_config_set(m, NULL, "x"), -EINVAL);
	CHECK_RC(meta_config_set(m, "k", NULL), -EINVAL);
	CHECK_EQ_U64(meta_change_count(m), cc);
	CHECK_RC(meta_config_set(m, "k", "v"), 0);
	CHECK_EQ_U64(meta_change_count(m), cc + 1);

	/* several in one transaction; a forbidden key sets none */
	{
		const char *keys[] = { "a", "b" }, *bad[] = { "c", "format" };
		uint64_t vals[] = { 7, 8 };

		CHECK_RC(meta_config_set_u64s(m, keys, vals, 2), 0);
		CHECK_EQ_U64(meta_change_count(m), cc + 2);
		CHECK_EQ_U64(meta_config_get_u64(m, "a", 0), 7);
		CHECK_EQ_U64(meta_config_get_u64(m, "b", 0), 8);
		CHECK_RC(meta_config_set_u64s(m, bad, vals, 2), -EPERM);
		CHECK_EQ_U64(meta_config_get_u64(m, "c", 0), 0);
	}
	buf_free(&b);
	meta_close(m);
}

/* ---- namespace ---- */

static void test_mknod(void)
{
	struct meta *m = open_mem();
	struct timespec t1 = ts(1000, 123456789);
	struct meta_attr a, p;
	char name[300], target[5000];
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

	/* errors */
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

	/* lookup */
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

static void test_rename(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(7000, 77);
	struct meta_attr a;
	uint64_t p1, p2, f, g, d, e, full, sub, deep, rep, h;
	struct rd r1, r2;

	if (!m)
		return;
	p1 = mk(m, 1, "p1", S_IFDIR | 0755);
	p2 = mk(m, 1, "p2", S_IFDIR | 0755);

	/* plain move within a directory, the entry keeps its cookie */
	f = mk(m, p1, "f", S_IFREG | 0644);
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

	/* file -> existing file: replaced, victim loses a link */
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

	/* same inode on both sides: nothing happens */
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

	/* directory across parents: link counts and parent column */
	d = mk(m, p1, "d", S_IFDIR | 0755);
	sub = mk(m, d, "sub", S_IFDIR | 0755);
	deep = mk(m, sub, "deep", S_IFDIR | 0755);
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
	full = e = mk(m, p2, "full", S_IFDIR | 0755);
	mk(m, e, "x", S_IFREG | 0644);
	CHECK_RC(meta_rename(m, p1, "e2", p2, "full", 0, &t, &rep),
		 -ENOTEMPTY);
	CHECK_RC(meta_rename(m, p2, "hard", p2, "full", 0, &t, &rep),
		 -EISDIR);
	CHECK_RC(meta_rename(m, p1, "e2", p2, "hard", 0, &t, &rep),
		 -ENOTDIR);
	CHECK_EQ_U64(rep, 0);
	CHECK_EQ_U64(lk(m, p1, "e2"), d);

	/* other errors */
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
	{
		char longname[300];

		memset(longname, 'z', 256);
		longname[256] = 0;
		CHECK_RC(meta_rename(m, p2, "hard", p2, longname, 0, &t,
				     &rep), -ENAMETOOLONG);
		CHECK_RC(meta_rename(m, p2, longname, p2, "x", 0, &t, &rep),
			 -ENAMETOOLONG);
	}
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

	/* EXCHANGE */
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
	meta_close(m);
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

static void test_blocks(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(1, 0);
	char h1[65], h2[65], h3[65], h4[65], hash[65], longh[80];
	uint64_t idx[3] = { 0, 1, 2 }, f, g, d;
	struct dirty_list *dl;
	struct meta_attr in, a;
	struct meta_stats st;
	int dirty;

	if (!m)
		return;
	hash_of('1', h1);
	hash_of('2', h2);
	hash_of('3', h3);
	hash_of('4', h4);
	f = mk(m, 1, "f", S_IFREG | 0644);
	d = mk(m, 1, "d", S_IFDIR | 0755);
	CHECK_RC(meta_write_done(m, f, 3 * BS, &t, idx, 3), 0);
	CHECK_RC(meta_stats(m, &st), 0);
	CHECK(st.blocks == 3 && st.dirty_blocks == 3 && st.objects == 0);

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

	/* stale: not dirty (or gone) -> -ESTALE, object known with 0 refs */
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

	/* bad names */
	memset(longh, 'a', 65);
	longh[65] = 0;
	CHECK_RC(meta_block_commit(m, f, 0, longh, 1, 0), -EINVAL);
	CHECK_RC(meta_block_commit(m, f, 0, "", 1, 0), -EINVAL);
	CHECK_RC(meta_block_commit(m, f, 0, "abc", 1, 0), -ESTALE);

	/* truncate: rows wholly past the end go, refcounts follow */
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

	/* hole punching */
	g = mk(m, 1, "g", S_IFREG | 0644);
	{
		uint64_t many[10];
		int i;

		for (i = 0; i < 10; i++)
			many[i] = (uint64_t)i;
		CHECK_RC(meta_write_done(m, g, 10 * BS, &t, many, 10), 0);
		for (i = 0; i < 10; i++)
			CHECK_RC(meta_block_commit(m, g, (uint64_t)i,
						   i % 2 ? h3 : h4, 10, 0), 0);
	}
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

	/* dirty blocks: order, batches, stop, re-entrancy */
	dl = calloc(1, sizeof(*dl));
	if (dl) {
		uint64_t many[700];
		uint64_t h;
		size_t i;

		h = mk(m, d, "h", S_IFREG | 0644);
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
		free(dl);
	} else {
		CHECK(0);
	}

	/* purge releases the blocks' objects */
	CHECK_RC(meta_unlink(m, 1, "g", &t, NULL), 0);
	CHECK_RC(meta_inode_purge(m, g), 0);
	CHECK_EQ_U64(refcount_of(m, h3), 0);
	CHECK_EQ_U64(refcount_of(m, h4), 0);
	CHECK_RC(meta_block_get(m, g, 0, hash, &dirty), -ENOENT);
	CHECK_RC(meta_object_get(m, "nope", &f), -ENOENT);
	meta_close(m);
}

struct gc_list {
	struct meta *m;
	size_t n;
	bool forget;
	char first[META_HASH_LEN + 1];
};

static int gc_cb(const char *hash, void *arg)
{
	struct gc_list *g = arg;

	if (g->n++ == 0)
		snprintf(g->first, sizeof(g->first), "%s", hash);
	if (g->forget)
		CHECK_RC(meta_gc_forget(g->m, hash), 1);
	return 0;
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

static size_t gc_count(struct meta *m, uint64_t durable, size_t limit)
{
	struct gc_list g = { .m = m };

	CHECK_RC(meta_gc_list(m, durable, limit, gc_cb, &g), 0);
	return g.n;
}

static int gc_forget_cb(const char *hash, void *arg)
{
	CHECK_RC(meta_gc_forget(arg, hash), 1);
	return 0;
}

/* Inline data: the contract of meta_inline_*() in meta.h. */
/* Patches: a chain on a block's base, replaced whole, dropped with the
 * block; refcounts follow every step. */
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

/* ---- change counter, threads ---- */

static void test_change_count(void)
{
	struct meta *m = open_mem();
	struct timespec t = ts(1, 0);
	struct meta_attr a;
	struct meta_stats st;
	struct buf b = BUF_INIT;
	uint64_t c0, f;

	if (!m)
		return;
	c0 = meta_change_count(m);
	f = mk(m, 1, "f", S_IFREG | 0644);
	CHECK_EQ_U64(meta_change_count(m), c0 + 1);
	/* reads and failed writes change nothing */
	meta_getattr(m, f, &a);
	meta_lookup(m, 1, "f", &a);
	meta_stats(m, &st);
	meta_listxattr(m, f, &b);
	CHECK_RC(meta_mknod(m, 1, "f", S_IFREG, 0, 0, 0, NULL, &t, &a),
		 -EEXIST);
	CHECK_RC(meta_rename(m, 1, "f", 1, "f", 0, &t, NULL), 0);
	CHECK_EQ_U64(meta_change_count(m), c0 + 1);
	CHECK_RC(meta_unlink(m, 1, "f", &t, NULL), 0);
	CHECK_EQ_U64(meta_change_count(m), c0 + 2);
	CHECK_RC(meta_fsck(m, 1, NULL, NULL), 0);
	CHECK_EQ_U64(meta_change_count(m), c0 + 2);
	buf_free(&b);
	meta_close(m);
}

/* ---- batched write attributes (meta_pend.c) ---- */

/* Writes with no new dirty block change size and times without a
 * transaction; every reader sees them at once. */
static void test_batched_writes(void)
{
	struct meta *m = open_mem();
	struct timespec t1 = ts(500, 1), t2 = ts(600, 2), t3 = ts(700, 3);
	struct meta_attr a, in;
	uint64_t idx0 = 0, f, g, cc;

	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 0644);
	g = mk(m, 1, "g", S_IFREG | 0644);
	CHECK_RC(meta_write_done(m, f, 100, &t1, &idx0, 1), 0);
	CHECK_RC(meta_write_done(m, g, 10, &t1, &idx0, 1), 0);
	cc = meta_change_count(m);
	CHECK_RC(meta_write_done(m, f, 300, &t2, NULL, 0), 0);
	CHECK_RC(meta_write_done(m, g, 20, &t2, NULL, 0), 0);
	/* the journal learns something changed */
	CHECK(meta_change_count(m) > cc);
	a = ga(m, f);
	CHECK_EQ_U64(a.size, 300);
	CHECK(ts_eq(a.mtime, t2) && ts_eq(a.ctime, t2));
	CHECK_EQ_U64(ga(m, g).size, 20);
	/* a write that ends before the end keeps the size */
	CHECK_RC(meta_write_done(m, f, 50, &t3, NULL, 0), 0);
	a = ga(m, f);
	CHECK_EQ_U64(a.size, 300);
	CHECK(ts_eq(a.mtime, t3));
	/* a shrink between two writes is not undone by the second */
	CHECK_RC(meta_write_done(m, f, 310, &t2, NULL, 0), 0);
	memset(&in, 0, sizeof(in));
	in.size = 40;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_SIZE, &t3, &a), 0);
	CHECK_RC(meta_write_done(m, f, 45, &t1, NULL, 0), 0);
	a = ga(m, f);
	CHECK_EQ_U64(a.size, 45);
	CHECK(ts_eq(a.mtime, t1));
	/* a directory or a missing inode is still refused */
	CHECK_RC(meta_write_done(m, 1, 1, &t1, NULL, 0), -EISDIR);
	CHECK_RC(meta_write_done(m, 99999, 1, &t1, NULL, 0), -ENOENT);
	/* a file in blocks is never taken for an inline one */
	CHECK_RC(meta_inline_write(m, f, 0, "x", 1, 4096, &t1), 0);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
	meta_close(m);
}

/* A journal cut (what fsync sends) carries a batched write: applied to a
 * copy taken at the previous cut, it gives the new size and times. */
static void test_batched_writes_journal(void)
{
	char path[256], snap[256];
	struct timespec t1 = ts(500, 1), t2 = ts(600, 2);
	struct meta *m = NULL, *r = NULL;
	struct buf cs = BUF_INIT;
	struct meta_attr a;
	uint64_t idx0 = 0, f, jseq = 0, cseq = 0;

	db_path("pend-j.db", path, sizeof(path));
	db_path("pend-j-snap.db", snap, sizeof(snap));
	rm_db(path);
	rm_db(snap);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	CHECK_RC(meta_journal_start(m), 0);
	f = mk(m, 1, "f", S_IFREG | 0644);
	CHECK_RC(meta_write_done(m, f, 100, &t1, &idx0, 1), 0);
	CHECK_RC(meta_journal_cut(m, &cs, &jseq, snap, &cseq), 0);
	buf_reset(&cs);
	CHECK_RC(meta_write_done(m, f, 300, &t2, NULL, 0), 0);
	CHECK_RC(meta_journal_cut(m, &cs, &jseq, NULL, NULL), 0);
	CHECK(cs.len > 0);
	CHECK_RC(meta_open(snap, BS, 0, 0, &r), 0);
	if (r) {
		CHECK_EQ_U64(ga(r, f).size, 100);
		CHECK_RC(meta_journal_apply(r, cs.data, cs.len), 0);
		a = ga(r, f);
		CHECK_EQ_U64(a.size, 300);
		CHECK(ts_eq(a.mtime, t2) && ts_eq(a.ctime, t2));
		meta_close(r);
	}
	buf_free(&cs);
	meta_close(m);
	rm_db(path);
	rm_db(snap);
}

/* In a child: open path, write to ino f (a block, then batched writes),
 * maybe shrink it, and die by SIGKILL without closing anything. */
static void crash_child(const char *path, uint64_t f, bool shrink)
{
	struct timespec t1 = ts(500, 1), t2 = ts(600, 2), t3 = ts(700, 3);
	struct meta *m = NULL;
	struct meta_attr in, a;
	uint64_t idx0 = 0;

	if (meta_open(path, BS, 0, 0, &m))
		_exit(2);
	if (meta_write_done(m, f, 100, &t1, &idx0, 1) ||
	    meta_write_done(m, f, 300, &t2, NULL, 0) ||
	    meta_write_done(m, f, 200, &t3, NULL, 0))
		_exit(3);
	if (shrink) {
		memset(&in, 0, sizeof(in));
		in.size = 40;
		in.mtime = t1;
		if (meta_setattr(m, f, &in, META_SET_SIZE | META_SET_MTIME,
				 &t1, &a))
			_exit(4);
	}
	raise(SIGKILL);
	_exit(5);
}

static int run_crash_child(const char *path, uint64_t f, bool shrink)
{
	int status = 0;
	pid_t pid = fork();

	if (pid == 0)
		crash_child(path, f, shrink);
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFSIGNALED(status) ? WTERMSIG(status) : -WEXITSTATUS(status);
}

/* Kill -9 loses no batched write, and brings back no value that a later
 * transaction replaced. */
static void test_batched_writes_crash(void)
{
	char path[256];
	struct meta *m = NULL;
	struct meta_attr a;
	uint64_t f;

	db_path("pend-c.db", path, sizeof(path));
	rm_db(path);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 0644);
	meta_close(m);

	CHECK_RC(run_crash_child(path, f, false), SIGKILL);
	m = NULL;
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	a = ga(m, f);
	CHECK_EQ_U64(a.size, 300);
	CHECK(ts_eq(a.mtime, ts(700, 3)) && ts_eq(a.ctime, ts(700, 3)));
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
	meta_close(m);

	CHECK_RC(run_crash_child(path, f, true), SIGKILL);
	m = NULL;
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	a = ga(m, f);
	CHECK_EQ_U64(a.size, 40);
	CHECK(ts_eq(a.mtime, ts(500, 1)));
	meta_close(m);
	/* and once applied, not again */
	m = NULL;
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (m) {
		CHECK_EQ_U64(ga(m, f).size, 40);
		meta_close(m);
	}
	rm_db(path);
}

struct thr {
	struct meta *m;
	int id;
	int errors;
};

static void *thr_main(void *arg)
{
	struct thr *th = arg;
	struct timespec t = ts(1, 0);
	struct meta_attr a;
	char name[32];
	int i;

	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "t%d-%d", th->id, i);
		if (meta_mknod(th->m, 1, name, S_IFREG | 0644, 0, 0, 0, NULL,
			       &t, &a))
			th->errors++;
		if (meta_getattr(th->m, a.ino, &a) || meta_lookup(th->m, 1,
								 name, &a))
			th->errors++;
		if (i % 2 && meta_unlink(th->m, 1, name, &t, NULL))
			th->errors++;
	}
	return NULL;
}

static void test_threads(void)
{
	struct meta *m = open_mem();
	struct thr th[4];
	pthread_t tid[4];
	struct rd r;
	int i;

	if (!m)
		return;
	for (i = 0; i < 4; i++) {
		th[i] = (struct thr){ .m = m, .id = i };
		CHECK_RC(pthread_create(&tid[i], NULL, thr_main, &th[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		CHECK_EQ_U64(th[i].errors, 0);
	}
	CHECK_EQ_U64(rd_list(m, 1, 0, 0, &r), 64); /* capped by rd */
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
	meta_close(m);
}

/* ---- persistence and snapshots (file database) ---- */

/*
 * A database made with UNIQUE(parent, name) on dentry (before the schema
 * dropped it) is rebuilt without it at open: entries, ids and the
 * AUTOINCREMENT sequence kept, and names that swap rows then work.
 */
static void test_dentry_unique_dropped(void)
{
	char path[256];
	struct timespec t = ts(5, 0);
	struct meta *m = NULL;
	struct meta_attr a;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	struct rd r;
	uint64_t d, f, last_cookie, gone;

	db_path("unique.db", path, sizeof(path));
	rm_db(path);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	d = mk(m, 1, "d", S_IFDIR | 0755);
	f = mk(m, d, "f", S_IFREG | 0644);
	gone = mk(m, d, "g", S_IFREG | 0644);
	CHECK_RC(meta_unlink(m, d, "g", &t, NULL), 0);
	CHECK_RC(meta_inode_purge(m, gone), 0);
	meta_close(m);
	m = NULL;
	/* make it look like an old database */
	CHECK_RC(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_RC(sqlite3_exec(db,
		"BEGIN;"
		"CREATE TABLE old_d (id INTEGER PRIMARY KEY AUTOINCREMENT,"
		" parent INTEGER NOT NULL, name BLOB NOT NULL,"
		" ino INTEGER NOT NULL, UNIQUE (parent, name));"
		"INSERT INTO old_d SELECT id, parent, name, ino FROM dentry;"
		"CREATE TEMP TABLE s AS SELECT seq FROM sqlite_sequence"
		" WHERE name = 'dentry';"
		"DROP TABLE dentry;"
		"ALTER TABLE old_d RENAME TO dentry;"
		"UPDATE sqlite_sequence SET seq = (SELECT seq FROM temp.s)"
		" WHERE name = 'dentry';"
		"CREATE INDEX dentry_parent_id ON dentry(parent, id);"
		"COMMIT;", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	CHECK_RC(meta_lookup(m, d, "f", &a), 0);
	CHECK_EQ_U64(a.ino, f);
	rd_list(m, d, 0, 0, &r);
	CHECK_EQ_U64(r.n, 1);
	last_cookie = r.n ? r.e[0].cookie : 0;
	/* no id comes back: the deleted "g" had the highest */
	mk(m, d, "h", S_IFREG | 0644);
	rd_list(m, d, 0, 0, &r);
	CHECK_EQ_U64(r.n, 2);
	CHECK(r.n == 2 && r.e[1].cookie > last_cookie + 1);
	meta_close(m);
	CHECK_RC(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_RC(sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_master WHERE"
				    " name = 'dentry'", -1, &st, NULL),
		 SQLITE_OK);
	CHECK_RC(sqlite3_step(st), SQLITE_ROW);
	CHECK(!strstr((const char *)sqlite3_column_text(st, 0), "UNIQUE"));
	sqlite3_finalize(st);
	sqlite3_close(db);
	/* the code keeps names unique; fsck finds and drops a repeat */
	{
		char sql[160];

		snprintf(sql, sizeof(sql), "INSERT INTO dentry(parent, name,"
			 " ino) VALUES (%llu, CAST('f' AS BLOB), %llu)",
			 (unsigned long long)d, (unsigned long long)f);
		CHECK_RC(raw_sql(path, sql), 0);
	}
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (m) {
		CHECK(meta_fsck(m, 0, NULL, NULL) >= 1);
		CHECK(meta_fsck(m, 1, NULL, NULL) >= 1);
		CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
		CHECK_RC(meta_lookup(m, d, "f", &a), 0);
		CHECK_EQ_U64(a.ino, f);
		CHECK_EQ_U64(a.nlink, 1);
		rd_list(m, d, 0, 0, &r);
		CHECK_EQ_U64(r.n, 2);  /* f and h, f once */
		meta_close(m);
	}
	rm_db(path);
}

static void test_persistence(void)
{
	char path[256], snap[256];
	struct timespec t = ts(77, 7);
	char h1[65], hash[65];
	struct meta *m = NULL, *s = NULL;
	struct meta_attr a;
	struct buf b = BUF_INIT;
	struct rd r;
	uint64_t d, f, gone_ino, gone_cookie, last_ino, last_cookie, idx = 0;
	int dirty;

	db_path("persist.db", path, sizeof(path));
	db_path("snap.db", snap, sizeof(snap));
	rm_db(path);
	rm_db(snap);
	hash_of('p', h1);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	d = mk(m, 1, "dir", S_IFDIR | 0755);
	f = mk(m, d, "file", S_IFREG | 0600);
	CHECK_RC(meta_write_done(m, f, 10, &t, &idx, 1), 0);
	CHECK_RC(meta_block_commit(m, f, 0, h1, 33, 0), 0);
	CHECK_RC(meta_setxattr(m, f, "user.k", "val", 3, 0, &t), 0);
	CHECK_RC(meta_config_set(m, "volume_id", "vol-1"), 0);
	gone_ino = mk(m, d, "gone", S_IFREG | 0600);
	rd_list(m, d, 0, 0, &r);
	CHECK_EQ_U64(r.n, 2);
	gone_cookie = r.e[1].cookie;
	CHECK_RC(meta_unlink(m, d, "gone", &t, NULL), 0);
	CHECK_RC(meta_inode_purge(m, gone_ino), 0);

	/* snapshot: refuses an existing path, copies the state */
	CHECK_RC(meta_snapshot(m, path), -EEXIST);
	CHECK_RC(meta_snapshot(m, ""), -EINVAL);
	CHECK(meta_snapshot(m, "/nonexistent/dir/snap.db") < 0);
	CHECK_RC(meta_snapshot(m, snap), 0);
	mk(m, d, "after-snap", S_IFREG | 0600);
	/* the highest ids, freed before close */
	last_ino = mk(m, d, "last", S_IFREG | 0600);
	rd_list(m, d, 0, 0, &r);
	CHECK_EQ_U64(r.n, 3);
	last_cookie = r.e[2].cookie;
	CHECK_RC(meta_unlink(m, d, "last", &t, NULL), 0);
	CHECK_RC(meta_inode_purge(m, last_ino), 0);
	meta_close(m);
	m = NULL;

	/* reopen: everything is still there */
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		goto out_rm;
	CHECK_EQ_U64(lk(m, 1, "dir"), d);
	CHECK_RC(meta_lookup(m, d, "file", &a), 0);
	CHECK(a.ino == f && a.size == 10 && a.nblocks == 1);
	CHECK(ts_eq(a.mtime, t));
	CHECK_RC(meta_block_get(m, f, 0, hash, &dirty), 0);
	CHECK(!strcmp(hash, h1) && dirty == 0);
	CHECK_EQ_U64(refcount_of(m, h1), 1);
	CHECK_RC(meta_getxattr(m, f, "user.k", &b), 0);
	CHECK(b.len == 3 && !memcmp(b.data, "val", 3));
	buf_reset(&b);
	CHECK_RC(meta_config_get(m, "volume_id", &b), 0);
	CHECK(!strcmp(buf_str(&b), "vol-1"));
	CHECK(lk(m, d, "after-snap") != 0);
	/* ids are never reused, even the highest one, across a reopen */
	CHECK_RC(meta_mknod(m, d, "new", S_IFREG | 0600, 0, 0, 0, NULL, &t,
			    &a), 0);
	CHECK(a.ino > last_ino && a.ino > gone_ino);
	rd_list(m, d, 0, 0, &r);
	CHECK(r.n == 3 && r.e[2].cookie > last_cookie);
	CHECK(r.e[1].cookie > gone_cookie);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
	meta_close(m);

	/* the snapshot is a complete database of its own */
	CHECK_RC(meta_open(snap, BS, 0, 0, &s), 0);
	if (s) {
		CHECK_EQ_U64(lk(s, 1, "dir"), d);
		CHECK_EQ_U64(lk(s, d, "file"), f);
		CHECK_EQ_U64(lk(s, d, "after-snap"), 0);
		CHECK_EQ_U64(refcount_of(s, h1), 1);
		CHECK_RC(meta_fsck(s, 0, NULL, NULL), 0);
		meta_close(s);
	}
	/* an in-memory database can be snapshotted too */
	rm_db(snap);
	s = open_mem();
	if (s) {
		mk(s, 1, "x", S_IFREG | 0644);
		CHECK_RC(meta_snapshot(s, snap), 0);
		meta_close(s);
		s = NULL;
		CHECK_RC(meta_open(snap, BS, 0, 0, &s), 0);
		if (s)
			CHECK(lk(s, 1, "x") != 0);
		meta_close(s);
	}
out_rm:
	buf_free(&b);
	rm_db(path);
	rm_db(snap);
}

/* ---- fsck ---- */

/*
 * The tree every scenario starts from (inode numbers are fixed):
 *   /a (2)  /a/f (3, 2 blocks: H1 H2)  /a/b (4)  /a/b/g (5, also /hl)
 *   /x (6)  /x/y (7)  /s -> target (8)  orphan 9 (nlink 0, 1 block: H3)
 */
enum { INO_A = 2, INO_F, INO_B, INO_G, INO_X, INO_Y, INO_S, INO_O };

#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222222222222222222222222222"
#define H3 "3333333333333333333333333333333333333333333333333333333333333333"
#define H4 "4444444444444444444444444444444444444444444444444444444444444444"
#define H5 "5555555555555555555555555555555555555555555555555555555555555555"

static bool build_tree(struct meta *m)
{
	struct timespec t = ts(10, 0);
	uint64_t idx[2] = { 0, 1 };
	bool ok;

	ok = mk(m, 1, "a", S_IFDIR | 0755) == INO_A &&
	     mk(m, INO_A, "f", S_IFREG | 0644) == INO_F &&
	     mk(m, INO_A, "b", S_IFDIR | 0755) == INO_B &&
	     mk(m, INO_B, "g", S_IFREG | 0644) == INO_G &&
	     mk(m, 1, "x", S_IFDIR | 0755) == INO_X &&
	     mk(m, INO_X, "y", S_IFDIR | 0755) == INO_Y &&
	     mk(m, 1, "s", S_IFLNK | 0777) == INO_S &&
	     mk(m, 1, "o", S_IFREG | 0644) == INO_O;
	CHECK(ok);
	CHECK_RC(meta_link(m, INO_G, 1, "hl", &t, NULL), 0);
	CHECK_RC(meta_write_done(m, INO_F, 2 * BS, &t, idx, 2), 0);
	CHECK_RC(meta_block_commit(m, INO_F, 0, H1, 10, 0), 0);
	CHECK_RC(meta_block_commit(m, INO_F, 1, H2, 10, 0), 0);
	/* block 1 of f is H2 with patch H5 */
	CHECK_RC(meta_write_done(m, INO_F, 2 * BS, &t, idx + 1, 1), 0);
	CHECK_RC(meta_block_patch(m, INO_F, 1, H2, H5, 10, 0), 0);
	CHECK_RC(meta_write_done(m, INO_O, 5, &t, idx, 1), 0);
	CHECK_RC(meta_block_commit(m, INO_O, 0, H3, 10, 0), 0);
	CHECK_RC(meta_unlink(m, 1, "o", &t, NULL), 0);
	return ok;
}

struct lines {
	size_t n;
	bool print;
};

static void report_cb(const char *line, void *arg)
{
	struct lines *l = arg;

	CHECK(line[0] != 0 && !strchr(line, '\n'));
	if (l->print)
		fprintf(stderr, "    fsck: %s\n", line);
	l->n++;
}

struct scenario {
	const char *name;
	const char *sql;
	int want; /* problems a repairing run finds; -1: some */
};

static const struct scenario scenarios[] = {
	{ "file nlink", "UPDATE inode SET nlink = 5 WHERE ino = 3", 1 },
	{ "dir nlink", "UPDATE inode SET nlink = 7 WHERE ino = 2", 1 },
	{ "root nlink", "UPDATE inode SET nlink = 9 WHERE ino = 1", 1 },
	{ "dangling entry", "INSERT INTO dentry(parent, name, ino) VALUES"
	  " (2, CAST('ghost' AS BLOB), 99999)", 1 },
	{ "entry in a file", "INSERT INTO dentry(parent, name, ino) VALUES"
	  " (3, CAST('in-file' AS BLOB), 5)", 1 },
	{ "entry in a missing dir", "INSERT INTO dentry(parent, name, ino)"
	  " VALUES (5555, CAST('lost' AS BLOB), 3)", 1 },
	{ "unreachable file", "DELETE FROM dentry WHERE parent = 2 AND"
	  " name = CAST('f' AS BLOB)", 1 },
	{ "detached directory", "DELETE FROM dentry WHERE ino = 4", 2 },
	{ "directory cycle", "UPDATE dentry SET parent = 7 WHERE ino = 6",
	  -1 },
	{ "directory hard link", "INSERT INTO dentry(parent, name, ino)"
	  " VALUES (1, CAST('dup' AS BLOB), 4)", 1 },
	{ "entry naming the root", "INSERT INTO dentry(parent, name, ino)"
	  " VALUES (2, CAST('loop' AS BLOB), 1)", 1 },
	{ "dir parent column", "UPDATE inode SET parent = 6 WHERE ino = 4",
	  1 },
	{ "refcount", "UPDATE object SET refcount = 7 WHERE hash = '" H1 "'",
	  1 },
	{ "refcount of an orphan's object",
	  "UPDATE object SET refcount = 0, freed_epoch = 0"
	  " WHERE hash = '" H3 "'", 1 },
	{ "missing object row", "DELETE FROM object WHERE hash = '" H2 "'",
	  1 },
	{ "freed epoch", "INSERT INTO object VALUES ('" H4 "', 0, 1, NULL)",
	  1 },
	{ "epoch on a live object",
	  "UPDATE object SET freed_epoch = 3 WHERE hash = '" H1 "'", 1 },
	{ "nblocks", "UPDATE inode SET nblocks = 9 WHERE ino = 3", 1 },
	{ "block past EOF", "INSERT INTO block VALUES (3, 100, '" H1 "', 0)",
	  1 },
	{ "blocks of a missing inode", "INSERT INTO block VALUES"
	  " (99999, 0, '" H1 "', 0), (99999, 1, NULL, 1)", 1 },
	{ "blocks of a directory", "INSERT INTO block VALUES"
	  " (2, 0, '" H2 "', 0)", 1 },
	{ "patch refcount", "UPDATE object SET refcount = 2 WHERE hash = '"
	  H5 "'", 1 },
	{ "patch without object row", "DELETE FROM object WHERE hash = '"
	  H5 "'", 1 },
	{ "patch without its block", "INSERT INTO patch VALUES"
	  " (3, 0, 1, '" H4 "'), (3, 0, 2, '" H4 "')", 1 },
	{ "patches of a block without hash", "INSERT INTO block VALUES"
	  " (3, 2, NULL, 1); UPDATE inode SET size = 3 * 4096,"
	  " nblocks = 3 WHERE ino = 3;"
	  " INSERT INTO patch VALUES (3, 2, 1, '" H4 "')", 1 },
	{ "chain too long", "WITH RECURSIVE c(n) AS (SELECT 2 UNION ALL"
	  " SELECT n + 1 FROM c WHERE n < 17) INSERT INTO patch"
	  " SELECT 3, 1, n, '" H4 "' FROM c", 2 }, /* + H5's refcount */
	{ "patches past EOF", "UPDATE inode SET size = 4096"
	  " WHERE ino = 3", -1 },
	{ "linked inode with nlink 0",
	  "UPDATE inode SET nlink = 0 WHERE ino = 5", 1 },
	{ "root missing", "DELETE FROM inode WHERE ino = 1", -1 },
	{ "root nlink 0 and a detached directory",
	  "UPDATE inode SET nlink = 0 WHERE ino = 1;"
	  "DELETE FROM dentry WHERE ino = 4", -1 },
	{ "root not a directory",
	  "UPDATE inode SET mode = 33188 WHERE ino = 1", -1 },
	{ "everything at once",
	  "UPDATE inode SET nlink = 5 WHERE ino = 3;"
	  "INSERT INTO dentry(parent, name, ino) VALUES"
	  " (2, CAST('ghost' AS BLOB), 99999);"
	  "DELETE FROM dentry WHERE ino = 4;"
	  "UPDATE dentry SET parent = 7 WHERE ino = 6;"
	  "UPDATE object SET refcount = 7 WHERE hash = '" H1 "';"
	  "DELETE FROM object WHERE hash = '" H2 "';"
	  "UPDATE inode SET nblocks = 9 WHERE ino = 3;"
	  "INSERT INTO block VALUES (3, 100, '" H1 "', 0);"
	  "INSERT INTO block VALUES (99999, 0, '" H1 "', 0);"
	  "INSERT INTO dentry(parent, name, ino) VALUES"
	  " (1, CAST('dup' AS BLOB), 7)", -1 },
};

/* Scenario-specific checks after the repair. */
static void check_repaired(struct meta *m, const struct scenario *sc)
{
	struct meta_attr a;
	char name[32];
	uint64_t lf;

	if (!strcmp(sc->name, "unreachable file")) {
		lf = lk(m, 1, "lost+found");
		CHECK(lf != 0);
		CHECK_EQ_U64(ga(m, lf).mode, S_IFDIR | 0700);
		CHECK_EQ_U64(lk(m, lf, "#3"), INO_F);
		CHECK_EQ_U64(nlink_of(m, INO_F), 1);
		CHECK_EQ_U64(nlink_of(m, 1), 5); /* a, x, lost+found */
	} else if (!strcmp(sc->name, "detached directory")) {
		lf = lk(m, 1, "lost+found");
		CHECK_EQ_U64(lk(m, lf, "#4"), INO_B);
		CHECK_EQ_U64(lk(m, INO_B, "g"), INO_G);
		CHECK_EQ_U64(parent_of(m, INO_B), lf);
		CHECK_EQ_U64(nlink_of(m, lf), 3);
		CHECK_EQ_U64(nlink_of(m, INO_A), 2);
	} else if (!strcmp(sc->name, "directory cycle")) {
		lf = lk(m, 1, "lost+found");
		snprintf(name, sizeof(name), "#%d", INO_Y);
		CHECK(lk(m, lf, "#6") == INO_X || lk(m, lf, name) == INO_Y);
		CHECK(lk(m, INO_X, "y") == INO_Y || lk(m, INO_Y, "x") == INO_X);
		CHECK_EQ_U64(nlink_of(m, 1), 4); /* a, lost+found */
	} else if (!strcmp(sc->name, "missing object row")) {
		CHECK_EQ_U64(refcount_of(m, H2), 1);
	} else if (!strcmp(sc->name, "dir parent column")) {
		CHECK_EQ_U64(parent_of(m, INO_B), INO_A);
	} else if (!strcmp(sc->name, "directory hard link")) {
		CHECK_EQ_U64(lk(m, 1, "dup"), 0);
		CHECK_EQ_U64(lk(m, INO_A, "b"), INO_B);
	} else if (!strcmp(sc->name, "root missing")) {
		a = ga(m, 1);
		CHECK_EQ_U64(a.mode, S_IFDIR | 0755);
		CHECK_EQ_U64(lk(m, 1, "a"), INO_A);
	} else if (!strcmp(sc->name, "block past EOF")) {
		CHECK_EQ_U64(ga(m, INO_F).nblocks, 2);
		CHECK_EQ_U64(refcount_of(m, H1), 1);
	} else if (!strcmp(sc->name, "refcount")) {
		CHECK_EQ_U64(refcount_of(m, H1), 1);
	} else if (!strcmp(sc->name, "freed epoch")) {
		/* now collectable */
		CHECK_EQ_U64(gc_count(m, 1, SIZE_MAX), 1);
	}
	/* an orphan is never a problem, and survives */
	CHECK_EQ_U64(nlink_of(m, INO_O), 0);
	/* the volume stays usable */
	CHECK(mk(m, 1, "after-repair", S_IFREG | 0644) != 0);
}

static void run_scenario(const struct scenario *sc)
{
	char path[256];
	struct lines l = { 0 };
	struct meta *m = NULL;
	int failed = check_failed;
	uint64_t cc;
	int n1, n2, n3;

	db_path("fsck.db", path, sizeof(path));
	rm_db(path);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	if (!build_tree(m)) {
		meta_close(m);
		return;
	}
	CHECK_RC(meta_fsck(m, 0, report_cb, &l), 0);
	meta_close(m);
	m = NULL;
	CHECK_RC(raw_sql(path, sc->sql), SQLITE_OK);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		goto out_rm;

	/* a check changes nothing: twice the same answer */
	cc = meta_change_count(m);
	n1 = meta_fsck(m, 0, report_cb, &l);
	n2 = meta_fsck(m, 0, NULL, NULL);
	CHECK(n1 > 0);
	CHECK_RC(n2, n1);
	CHECK_EQ_U64(l.n, (size_t)n1);
	CHECK_EQ_U64(meta_change_count(m), cc);

	memset(&l, 0, sizeof(l));
	l.print = verbose;
	n3 = meta_fsck(m, 1, report_cb, &l);
	if (sc->want >= 0)
		CHECK_RC(n3, sc->want);
	else
		CHECK(n3 > 0);
	CHECK_EQ_U64(l.n, (size_t)(n3 > 0 ? n3 : 0));
	CHECK_EQ_U64(meta_change_count(m), cc + 1);

	/* a second run finds nothing (and prints what it would find) */
	memset(&l, 0, sizeof(l));
	l.print = true;
	CHECK_RC(meta_fsck(m, 0, report_cb, &l), 0);
	CHECK_RC(meta_fsck(m, 1, report_cb, &l), 0);
	check_repaired(m, sc);
	/* the repair is durable */
	meta_close(m);
	m = NULL;
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (m)
		CHECK_RC(meta_fsck(m, 0, report_cb, &l), 0);
	meta_close(m);
out_rm:
	rm_db(path);
	if (check_failed != failed || verbose)
		fprintf(stderr, "  ^ fsck scenario \"%s\"\n", sc->name);
}

static void test_fsck(void)
{
	struct meta *m = open_mem();
	size_t i;

	if (m) {
		CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
		CHECK(build_tree(m));
		CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
		CHECK_RC(meta_fsck(m, 1, NULL, NULL), 0);
		meta_close(m);
	}
	for (i = 0; i < ARRAY_SIZE(scenarios); i++)
		run_scenario(&scenarios[i]);
}

int main(void)
{
	verbose = getenv("T_META_VERBOSE") != NULL;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/t_meta.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_open();
	test_config();
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
	test_blocks();
	test_forget_dirty_tail();
	test_patches();
	test_inline();
	test_inline_fsck();
	test_gc();
	test_stats();
	test_change_count();
	test_batched_writes();
	test_batched_writes_journal();
	test_batched_writes_crash();
	test_threads();
	test_dentry_unique_dropped();
	test_persistence();
	test_fsck();
	rmdir(tmpdir);
	return check_done("t_meta");
}
