/*
 * t_meta.h - helpers shared by the unit tests of the metadata layer
 * (t_meta.c, t_meta_block.c, t_meta_db.c, t_meta_fsck.c).
 *
 * Purpose: open a database, make and inspect inodes, list a directory or
 * the garbage, and break a database file behind meta's back; each helper
 * CHECKs what it does, so that a test reads as its steps.
 *
 * Data model: file databases live in tmpdir, a private mkdtemp()
 * directory that each test program makes (tmpdir_make()) and removes at
 * the end.  Times passed to meta are fixed values, so every timestamp can
 * be compared exactly.
 *
 * Invariants: helpers are static inline (each program uses some of
 * them); none keeps a database open.
 */
#ifndef METAFUSE_T_META_H
#define METAFUSE_T_META_H

#include "util/compat.h"

#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "meta/meta.h"
#include "util/buf.h"

#include "check.h"

#define BS 4096u

static char tmpdir[64];

/* Make the private directory of the file databases: 0, or -1 (printed). */
static inline int tmpdir_make(const char *prog)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/%s.XXXXXX", prog);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return -1;
	}
	return 0;
}

static inline struct timespec ts(time_t s, long ns)
{
	struct timespec t = { s, ns };

	return t;
}

static inline bool ts_eq(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* A 64-character object name made of c. */
static inline const char *hash_of(char c, char *out)
{
	memset(out, c, META_HASH_LEN);
	out[META_HASH_LEN] = 0;
	return out;
}

static inline void db_path(const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", tmpdir, name);
}

static inline void rm_db(const char *path)
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
static inline int raw_sql(const char *path, const char *sql)
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

static inline struct meta *open_mem(void)
{
	struct meta *m = NULL;

	CHECK_RC(meta_open(":memory:", BS, 1000, 1000, &m), 0);
	return m;
}

static inline uint64_t mk_at(struct meta *m, uint64_t parent, const char *name,
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

static inline uint64_t mk(struct meta *m, uint64_t parent, const char *name,
		   uint32_t mode)
{
	return mk_at(m, parent, name, mode, 100);
}

static inline struct meta_attr ga(struct meta *m, uint64_t ino)
{
	struct meta_attr a;

	memset(&a, 0, sizeof(a));
	CHECK_RC(meta_getattr(m, ino, &a), 0);
	return a;
}

static inline uint32_t nlink_of(struct meta *m, uint64_t ino)
{
	return ga(m, ino).nlink;
}

/* Inode named name in parent, 0 when absent. */
static inline uint64_t lk(struct meta *m, uint64_t parent, const char *name)
{
	struct meta_attr a;

	return meta_lookup(m, parent, name, &a) == 0 ? a.ino : 0;
}

static inline uint64_t parent_of(struct meta *m, uint64_t dir)
{
	uint64_t p = 0;

	CHECK_RC(meta_parent(m, dir, &p), 0);
	return p;
}

static inline uint64_t refcount_of(struct meta *m, const char *hash)
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

static inline int rd_cb(const char *name, const struct meta_attr *a,
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

static inline size_t rd_list(struct meta *m, uint64_t dir, uint64_t off,
		      size_t stop_after, struct rd *r)
{
	memset(r, 0, sizeof(*r));
	r->stop_after = stop_after;
	CHECK_RC(meta_readdir(m, dir, off, rd_cb, r), 0);
	return r->n;
}

static inline bool rd_has(const struct rd *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (!strcmp(r->e[i].name, name))
			return true;
	return false;
}

/* ---- garbage list helpers ---- */

struct gc_list {
	struct meta *m;
	size_t n;
	bool forget;
	char first[META_HASH_LEN + 1];
};

static inline int gc_cb(const char *hash, void *arg)
{
	struct gc_list *g = arg;

	if (g->n++ == 0)
		snprintf(g->first, sizeof(g->first), "%s", hash);
	if (g->forget)
		CHECK_RC(meta_gc_forget(g->m, hash), 1);
	return 0;
}

static inline size_t gc_count(struct meta *m, uint64_t durable, size_t limit)
{
	struct gc_list g = { .m = m };

	CHECK_RC(meta_gc_list(m, durable, limit, gc_cb, &g), 0);
	return g.n;
}

#endif
