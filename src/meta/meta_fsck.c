/*
 * meta_fsck.c - check, and optionally repair, the invariants of meta.h.
 *
 * Purpose
 *   meta_fsck() finds every violation of invariants 1-7 of meta.h (plus
 *   the internal ones the rest of src/meta/ relies on: names unique in a
 *   directory, one entry per directory, inode.parent, freed_epoch) and
 *   reports each as one line of text.  With repair it fixes them in the
 *   same transaction.
 *
 * Data model
 *   Besides the tables meta.h describes, two TEMP tables live for one run:
 *     fsck_reach(ino)             directories reachable from the root
 *     fsck_links(ino, n, parent)  entries per inode, and the parent of
 *                                 one of them (the only one, for
 *                                 directories, once check 4 has run)
 *   The checks are the rows of checks[], walked in order by
 *   fsck_locked().  Most are a query that returns one row per problem,
 *   a function that reports a row, and the SQL that repairs it (see
 *   struct fsck_check); the ones that need C logic (0 and 5) are
 *   functions, called from their row.
 *
 * Method: the checks run in an order where each repair only helps the
 * later ones.
 *    0. the root exists, is a directory, and has a link count >= 2
 *    1. entries repeating a name of their directory        -> deleted
 *    2. entries naming missing inodes                      -> deleted
 *    3. entries in missing or non-directory parents        -> deleted
 *    4. entries naming the root, extra entries of a directory -> deleted
 *       (the entry matching inode.parent is kept, else the oldest)
 *    5. reachability: a recursive CTE from the root fills fsck_reach; an
 *       unreachable directory still in use is followed up its entries to
 *       the top of its detached tree (or into its cycle), and that top is
 *       linked, or moved, into /lost+found as "#<ino>"; its subtree then
 *       joins fsck_reach.  Non-directories with nlink > 0 and no entry
 *       are linked there too.  fsck_links is then filled again.
 *    6. inode.parent of every directory
 *    7. link counts (invariant 1)
 *    8. block rows of missing or non-regular inodes         -> deleted
 *    9. inline data of missing or non-regular inodes, or beside block
 *       rows (the blocks were written later)                -> deleted
 *   10. block rows past EOF (invariant 5)                   -> deleted
 *   11. nblocks (invariant 4)
 *   12. patch rows without a block row with a hash (invariant 6), and
 *       blocks with more than PATCH_CHAIN_MAX patches      -> deleted
 *       (such a block then reads as its base: wrong, but no worse than
 *       unreadable, and reported)
 *   13. holds of snapshots that do not exist               -> deleted
 *   14. refcounts (invariant 3: block, patch and hold rows) and
 *       freed_epoch
 *   15. object rows missing for a name some block, patch or hold
 *       holds                                              -> made
 *
 * Invariants of this file
 *   1. Without repair, nothing but the TEMP tables is written: the run is
 *      a deferred (read) transaction.
 *   2. Report lines are collected while the lock is held and handed to
 *      report() only after it is released.
 *   3. With repair, a problem is counted once, where it is first seen: its
 *      repair hides it from the later checks (without repair, one problem
 *      may be counted by several checks).  A repair that moves a directory
 *      fixes the link counts it changes itself.
 *   4. A check's rows are all collected before the first is repaired.
 */
#include "util/compat.h"

#include <stdarg.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "meta/meta_int.h"
#include "util/log.h"

#define IS_DIR_SQL(col) "(" col " & 61440) = 16384"	/* S_IFDIR */
#define IS_REG_SQL(col) "(" col " & 61440) = 32768"	/* S_IFREG */

struct fsck {
	struct meta *m;
	bool repair;
	int problems;
	struct buf lines;	/* report lines, each ended by a NUL */
	uint64_t lf;		/* /lost+found once needed, else 0 */
	struct timespec now;
};

/* Named parameters of the statements below, besides :bs (the block size)
 * and :chain_max (PATCH_CHAIN_MAX); unused ones are ignored. */
struct fargs {
	int64_t a, b, c;
	const char *name;	/* :name, a BLOB */
	size_t name_len;
	const char *hash;	/* :hash, TEXT */
};

/* A result row: up to three integers, then one text or blob column. */
struct row {
	int64_t v[3];
	size_t len;
	char text[META_NAME_MAX + 1];
};

struct rows {
	struct row *r;
	size_t n, cap;
};

/*
 * One check, a row of checks[]: either run, a check in C that does it
 * all, or the three parts check_rows() puts together.
 */
struct fsck_check {
	const char *name;	/* for the reader; the list above says more */
	int (*run)(struct fsck *f);
	/* a query with one struct row per problem */
	const char *find;
	/* adds the line of a row; why: this check's words, if any */
	int (*report)(struct fsck *f, const struct row *r, const char *why);
	const char *why;
	/* run for each row, with repair only: :a, :b, :c are the row's
	 * integers, :name (a BLOB) and :hash (TEXT) its text */
	const char *repair;
};

static void rows_free(struct rows *rs)
{
	free(rs->r);
	rs->r = NULL;
	rs->n = rs->cap = 0;
}

static MF_PRINTF(2, 3) int problem(struct fsck *f, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	f->problems++;
	return buf_append(&f->lines, line, strlen(line) + 1);
}

/* The text column of r, with control bytes shown as '?'. */
static const char *printable(const struct row *r, char *out)
{
	size_t i;

	for (i = 0; i < r->len; i++) {
		unsigned char c = (unsigned char)r->text[i];

		out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	out[i] = 0;
	return out;
}

static void bind_one_i64(sqlite3_stmt *st, const char *pname, int64_t v)
{
	int i = sqlite3_bind_parameter_index(st, pname);

	if (i > 0)
		sqlite3_bind_int64(st, i, v);
}

static void bind_args(struct fsck *f, sqlite3_stmt *st, const struct fargs *x)
{
	int i;

	bind_one_i64(st, ":bs", f->m->block_size);
	bind_one_i64(st, ":chain_max", PATCH_CHAIN_MAX);
	if (!x)
		return;
	bind_one_i64(st, ":a", x->a);
	bind_one_i64(st, ":b", x->b);
	bind_one_i64(st, ":c", x->c);
	i = sqlite3_bind_parameter_index(st, ":name");
	if (i > 0)
		sqlite3_bind_blob(st, i, x->name, (int)x->name_len,
				  SQLITE_STATIC);
	i = sqlite3_bind_parameter_index(st, ":hash");
	if (i > 0)
		sqlite3_bind_text(st, i, x->hash, -1, SQLITE_STATIC);
}

/* Run sql to completion. */
static int fexec(struct fsck *f, const char *sql, const struct fargs *x)
{
	sqlite3_stmt *st;
	int rc;

	rc = meta_prepare(f->m, sql, &st);
	if (rc)
		return rc;
	bind_args(f, st, x);
	while ((rc = meta_step(f->m, st)) > 0)
		;
	sqlite3_finalize(st);
	return rc;
}

/* First column of the first row into *v: 1, 0 if no row, or -errno. */
static int fone(struct fsck *f, const char *sql, const struct fargs *x,
		int64_t *v)
{
	sqlite3_stmt *st;
	int rc;

	rc = meta_prepare(f->m, sql, &st);
	if (rc)
		return rc;
	bind_args(f, st, x);
	rc = meta_step(f->m, st);
	if (rc > 0 && v)
		*v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc;
}

/* All rows of sql into out, collected before any repair changes them. */
static int fcollect(struct fsck *f, const char *sql, const struct fargs *x,
		    struct rows *out)
{
	sqlite3_stmt *st;
	struct row *r;
	int rc, ncol, i;

	rc = meta_prepare(f->m, sql, &st);
	if (rc)
		return rc;
	bind_args(f, st, x);
	ncol = sqlite3_column_count(st);
	while ((rc = meta_step(f->m, st)) > 0) {
		if (out->n == out->cap) {
			size_t cap = out->cap ? out->cap * 2 : 16;

			r = realloc(out->r, cap * sizeof(*r));
			if (!r) {
				rc = -ENOMEM;
				break;
			}
			out->r = r;
			out->cap = cap;
		}
		r = &out->r[out->n++];
		memset(r->v, 0, sizeof(r->v));
		for (i = 0; i < ncol && i < 3; i++)
			r->v[i] = sqlite3_column_int64(st, i);
		r->len = 0;
		if (ncol > 3 && sqlite3_column_type(st, 3) != SQLITE_NULL) {
			const void *p = sqlite3_column_blob(st, 3);

			r->len = (size_t)sqlite3_column_bytes(st, 3);
			r->len = MF_MIN(r->len, (size_t)META_NAME_MAX);
			if (r->len)
				memcpy(r->text, p, r->len);
		}
		r->text[r->len] = 0;
	}
	sqlite3_finalize(st);
	return rc;
}


/* ---- 0: the root ---- */

static int check_root(struct fsck *f)
{
	static const char create[] =
		"INSERT INTO inode(ino, mode, uid, gid, nlink, size, rdev,"
		" nblocks, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s,"
		" ctime_ns, parent, target) VALUES (1, :a, 0, 0, 2, 0, 0, 0,"
		" :b, :c, :b, :c, :b, :c, 1, NULL)";
	struct fargs x = { .a = S_IFDIR | 0755, .b = f->now.tv_sec,
			   .c = f->now.tv_nsec };
	int64_t mode = 0;
	int rc;

	rc = fone(f, "SELECT mode FROM inode WHERE ino = 1", NULL, &mode);
	if (rc < 0)
		return rc;
	if (rc == 0) {
		rc = problem(f, "root directory (inode 1) is missing");
		if (!rc && f->repair)
			rc = fexec(f, create, &x);
		return rc;
	}
	if (S_ISDIR((mode_t)mode)) {
		/* /lost+found cannot be made in a "removed" root */
		rc = fone(f, "SELECT 1 FROM inode WHERE ino = 1"
			     " AND nlink < 2", NULL, NULL);
		if (rc <= 0)
			return rc;
		rc = problem(f, "root directory has a link count below 2");
		if (!rc && f->repair)
			rc = fexec(f, "UPDATE inode SET nlink = 2"
				      " WHERE ino = 1", NULL);
		return rc;
	}
	rc = problem(f, "root inode 1 is not a directory (mode %llo)",
		     (unsigned long long)mode);
	if (!rc && f->repair)
		rc = fexec(f, "UPDATE inode SET mode = :a, size = 0,"
			      " parent = 1, target = NULL WHERE ino = 1",
			   &x);
	return rc;
}

/* ---- 5: reachability ---- */

static int links_fill(struct fsck *f)
{
	int rc = fexec(f, "DELETE FROM temp.fsck_links", NULL);

	if (rc)
		return rc;
	return fexec(f, "INSERT INTO temp.fsck_links(ino, n, parent)"
			" SELECT ino, count(*), min(parent) FROM dentry"
			" GROUP BY ino", NULL);
}

/* Add directory top and every directory below it to fsck_reach. */
static int reach_from(struct fsck *f, uint64_t top)
{
	struct fargs x = { .a = (int64_t)top };

	return fexec(f,
		"WITH RECURSIVE r(ino) AS (VALUES (:a)"
		" UNION SELECT d.ino FROM dentry AS d"
		" JOIN r ON d.parent = r.ino"
		" JOIN inode AS i ON i.ino = d.ino"
		" WHERE " IS_DIR_SQL("i.mode") ")"
		" INSERT OR IGNORE INTO temp.fsck_reach(ino)"
		" SELECT ino FROM r", &x);
}

static int lost_found(struct fsck *f)
{
	static const char lf_name[] = "lost+found";
	struct fargs x = { .name = lf_name, .name_len = strlen(lf_name) };
	struct meta_attr a;
	int64_t ino = 0;
	int rc;

	if (f->lf)
		return 0;
	rc = fone(f, "SELECT d.ino FROM dentry AS d JOIN inode AS i"
		     " ON i.ino = d.ino WHERE d.parent = 1"
		     " AND d.name = :name AND " IS_DIR_SQL("i.mode"),
		  &x, &ino);
	if (rc < 0)
		return rc;
	if (rc == 0) {
		rc = meta_mknod_locked(f->m, META_ROOT_INO, lf_name,
				       S_IFDIR | 0700, 0, 0, 0, NULL,
				       &f->now, &a);
		if (rc) {
			log_error("fsck: cannot create /lost+found: error %d",
				  -rc);
			return rc;
		}
		ino = (int64_t)a.ino;
	}
	f->lf = (uint64_t)ino;
	return reach_from(f, f->lf);
}

/* A free name "#<ino>" (or "#<ino>.<n>") in /lost+found into name. */
static int lf_name(struct fsck *f, uint64_t ino, char *name, size_t size)
{
	struct fargs x = { .a = (int64_t)f->lf, .name = name };
	int n, rc;

	for (n = 0; n < 1000; n++) {
		if (n == 0)
			snprintf(name, size, "#%" PRIu64, ino);
		else
			snprintf(name, size, "#%" PRIu64 ".%d", ino, n);
		x.name_len = strlen(name);
		rc = fone(f, "SELECT 1 FROM dentry WHERE parent = :a"
			     " AND name = :name", &x, NULL);
		if (rc <= 0)
			return rc;
	}
	return -EEXIST;
}

/*
 * Link ino into /lost+found.  old_parent != 0: a directory whose single
 * entry is moved out of old_parent; otherwise a new entry is made.
 */
static int lf_link(struct fsck *f, uint64_t ino, bool dir,
		   uint64_t old_parent, char *name, size_t size)
{
	struct fargs x = { 0 };
	int rc;

	rc = lost_found(f);
	if (!rc)
		rc = lf_name(f, ino, name, size);
	if (rc)
		return rc;
	x.a = (int64_t)ino;
	x.b = (int64_t)f->lf;
	x.name = name;
	x.name_len = strlen(name);
	if (old_parent)
		rc = fexec(f, "UPDATE dentry SET parent = :b, name = :name"
			      " WHERE ino = :a", &x);
	else
		rc = fexec(f, "INSERT INTO dentry(parent, name, ino)"
			      " VALUES (:b, :name, :a)", &x);
	if (rc || !dir)
		goto out_touch;
	x.c = (int64_t)old_parent;
	rc = fexec(f, "UPDATE inode SET parent = :b WHERE ino = :a", &x);
	if (!rc && old_parent)
		rc = fexec(f, "UPDATE inode SET nlink = nlink - 1"
			      " WHERE ino = :c AND nlink > 0", &x);
	if (!rc)
		rc = fexec(f, "UPDATE inode SET nlink = nlink + 1"
			      " WHERE ino = :b", &x);
	if (!rc)
		rc = fexec(f, "UPDATE temp.fsck_links SET parent = :b"
			      " WHERE ino = :a", &x);
out_touch:
	if (rc)
		return rc;
	x.a = f->now.tv_sec;
	x.c = f->now.tv_nsec;
	return fexec(f, "UPDATE inode SET mtime_s = :a, mtime_ns = :c,"
			" ctime_s = :a, ctime_ns = :c WHERE ino = :b", &x);
}

/*
 * Follow entries up from unreachable directory d to the top of its
 * detached tree (*top has no entry, *in_cycle false), or into a cycle
 * (*top is on it, its entry is in *top_parent).  bound: the number of
 * unreachable directories, so more steps than that mean a cycle.
 */
static int find_top(struct fsck *f, uint64_t d, size_t bound, uint64_t *top,
		    uint64_t *top_parent, bool *in_cycle)
{
	struct fargs x = { 0 };
	int64_t p = 0;
	size_t steps;
	int rc;

	*top = d;
	for (steps = 0;; steps++) {
		x.a = (int64_t)*top;
		rc = fone(f, "SELECT parent FROM temp.fsck_links"
			     " WHERE ino = :a", &x, &p);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			*top_parent = 0;
			*in_cycle = false;
			return 0;
		}
		x.a = p;
		rc = fone(f, "SELECT 1 FROM temp.fsck_reach WHERE ino = :a",
			  &x, NULL);
		if (rc < 0)
			return rc;
		/* rc > 0 cannot happen (d would be reachable); cut there. */
		if (rc > 0 || steps > bound) {
			*top_parent = (uint64_t)p;
			*in_cycle = true;
			return 0;
		}
		*top = (uint64_t)p;
	}
}

static int check_reach_dirs(struct fsck *f)
{
	struct rows rs = { 0 };
	char name[48];
	struct fargs x = { 0 };
	uint64_t top, top_parent;
	bool in_cycle;
	size_t i;
	int rc;

	rc = fcollect(f,
		"SELECT i.ino, i.nlink FROM inode AS i"
		" LEFT JOIN temp.fsck_links AS l ON l.ino = i.ino"
		" WHERE " IS_DIR_SQL("i.mode")
		" AND i.ino NOT IN (SELECT ino FROM temp.fsck_reach)"
		" AND (i.nlink > 0 OR l.ino IS NOT NULL OR EXISTS"
		" (SELECT 1 FROM dentry WHERE parent = i.ino))"
		" ORDER BY i.ino", NULL, &rs);
	for (i = 0; !rc && i < rs.n; i++) {
		x.a = rs.r[i].v[0];
		rc = fone(f, "SELECT 1 FROM temp.fsck_reach WHERE ino = :a",
			  &x, NULL);
		if (rc < 0)
			break;
		if (rc > 0) {
			rc = 0; /* reconnected with an earlier one */
			continue;
		}
		rc = find_top(f, (uint64_t)x.a, rs.n, &top, &top_parent,
			      &in_cycle);
		if (rc)
			break;
		if (!f->repair) {
			rc = problem(f, "directory %" PRIu64 " is unreachable"
				     " (%s)", top, in_cycle ?
				     "in a cycle of directories" :
				     "no entry names it");
		} else {
			rc = lf_link(f, top, true, in_cycle ? top_parent : 0,
				     name, sizeof(name));
			if (!rc)
				rc = problem(f, "directory %" PRIu64 " was"
					     " unreachable (%s): now"
					     " /lost+found/%s", top,
					     in_cycle ? "in a cycle" :
					     "no entry", name);
		}
		if (!rc)
			rc = reach_from(f, top);
	}
	rows_free(&rs);
	return rc;
}

static int check_reach_files(struct fsck *f)
{
	struct rows rs = { 0 };
	char name[48];
	size_t i;
	int rc;

	rc = fcollect(f,
		"SELECT ino, nlink FROM inode"
		" WHERE NOT " IS_DIR_SQL("mode") " AND nlink > 0"
		" AND ino NOT IN (SELECT ino FROM temp.fsck_links)"
		" ORDER BY ino", NULL, &rs);
	for (i = 0; !rc && i < rs.n; i++) {
		uint64_t ino = (uint64_t)rs.r[i].v[0];

		if (!f->repair) {
			rc = problem(f, "inode %" PRIu64 " (nlink %lld) is"
				     " unreachable", ino,
				     (long long)rs.r[i].v[1]);
			continue;
		}
		rc = lf_link(f, ino, false, 0, name, sizeof(name));
		if (!rc)
			rc = problem(f, "inode %" PRIu64 " (nlink %lld) was"
				     " unreachable: now /lost+found/%s", ino,
				     (long long)rs.r[i].v[1], name);
	}
	rows_free(&rs);
	return rc;
}

static int check_reach(struct fsck *f)
{
	int rc;

	rc = fexec(f, "DELETE FROM temp.fsck_reach", NULL);
	if (!rc)
		rc = links_fill(f);
	if (!rc)
		rc = reach_from(f, META_ROOT_INO);
	if (!rc)
		rc = check_reach_dirs(f);
	if (!rc)
		rc = check_reach_files(f);
	/* for the checks after this one: lf_link() added entries */
	if (!rc)
		rc = links_fill(f);
	return rc;
}

/*
 * ---- 1-4, 6-14: the reports of the checks of the table ----
 *
 * Each adds the line of one row its check's query returned (the comment
 * names the row's columns); why: the check's words, when it has some.
 */

/* 1-4: a row (id, parent, ino, name) of dentry */
static int report_entry(struct fsck *f, const struct row *r, const char *why)
{
	char name[META_NAME_MAX + 1];

	return problem(f, "entry \"%s\" (id %lld) in directory %lld,"
		       " inode %lld: %s", printable(r, name),
		       (long long)r->v[0], (long long)r->v[1],
		       (long long)r->v[2], r->v[2] == META_ROOT_INO ?
				"names the root directory" : why);
}

/* 6: (ino, recorded parent or -1, parent of its entry) */
static int report_parent(struct fsck *f, const struct row *r,
			 const char *why)
{
	return problem(f, "directory %lld records parent %lld, but its"
		       " entry is in %lld", (long long)r->v[0],
		       (long long)r->v[1], (long long)r->v[2]);
}

/* 7, 11: (ino, the value of column why, the right value) */
static int report_count(struct fsck *f, const struct row *r, const char *why)
{
	return problem(f, "inode %lld has %s %lld, should be %lld",
		       (long long)r->v[0], why, (long long)r->v[1],
		       (long long)r->v[2]);
}

/* 8: (ino, block rows, inode missing) */
static int report_block_owner(struct fsck *f, const struct row *r,
			      const char *why)
{
	return problem(f, "%lld block rows belong to %s inode %lld",
		       (long long)r->v[1], r->v[2] ? "missing" : "non-regular",
		       (long long)r->v[0]);
}

/* 9: (ino, inode missing, block rows) */
static int report_inline(struct fsck *f, const struct row *r,
			 const char *why)
{
	if (r->v[2])
		return problem(f, "inode %lld has both inline data and "
			       "%lld block rows", (long long)r->v[0],
			       (long long)r->v[2]);
	return problem(f, "inline data belongs to %s inode %lld",
		       r->v[1] ? "missing" : "non-regular",
		       (long long)r->v[0]);
}

/* 10: (ino, block rows past the end, size) */
static int report_block_eof(struct fsck *f, const struct row *r,
			    const char *why)
{
	return problem(f, "inode %lld (size %lld) has %lld block rows"
		       " past its end", (long long)r->v[0],
		       (long long)r->v[2], (long long)r->v[1]);
}

/* 12: (ino, idx, patch rows, what is wrong with them) */
static int report_patches(struct fsck *f, const struct row *r,
			  const char *why)
{
	return problem(f, "block %lld of inode %lld has %lld patch rows %s",
		       (long long)r->v[1], (long long)r->v[0],
		       (long long)r->v[2], r->text);
}

/* 13: (snapshot, holds, 0, "") */
static int report_hold(struct fsck *f, const struct row *r, const char *why)
{
	return problem(f, "%lld objects are held by snapshot %lld, which"
		       " does not exist", (long long)r->v[1],
		       (long long)r->v[0]);
}

/* 14: (refcount, block, patch and hold rows, freed_epoch or -1, hash) */
static int report_refcount(struct fsck *f, const struct row *r,
			   const char *why)
{
	char hash[META_NAME_MAX + 1];

	if (r->v[0] != r->v[1])
		return problem(f, "object %s has refcount %lld, but %lld"
			       " block, patch and snapshot rows name it",
			       printable(r, hash), (long long)r->v[0],
			       (long long)r->v[1]);
	if (r->v[0] == 0)
		return problem(f, "object %s is unreferenced but has no"
			       " freed epoch", printable(r, hash));
	return problem(f, "object %s (refcount %lld) has freed epoch %lld",
		       printable(r, hash), (long long)r->v[0],
		       (long long)r->v[2]);
}

/* 15: (block, patch and hold rows, 0, 0, hash) */
static int report_no_object(struct fsck *f, const struct row *r,
			    const char *why)
{
	char hash[META_NAME_MAX + 1];

	return problem(f, "object %s is named by %lld block, patch or"
		       " snapshot rows but has no object row",
		       printable(r, hash), (long long)r->v[0]);
}

/* ---- the checks, in the order of the list above ---- */

static const char drop_entry[] = "DELETE FROM dentry WHERE id = :a";

static const struct fsck_check checks[] = {
	/* 0 */
	{ .name = "root", .run = check_root },
	/* 1: unique by the code's checks, not by the schema (meta.c) */
	{ .name = "repeated names",
	  .find = "SELECT d.id, d.parent, d.ino, d.name FROM dentry AS d"
		  " WHERE EXISTS (SELECT 1 FROM dentry AS o WHERE"
		  "  o.parent = d.parent AND o.name = d.name AND o.id < d.id)"
		  " ORDER BY d.id",
	  .report = report_entry,
	  .why = "repeats a name already in its directory",
	  .repair = drop_entry },
	/* 2 */
	{ .name = "dangling entries",
	  .find = "SELECT d.id, d.parent, d.ino, d.name FROM dentry AS d"
		  " WHERE NOT EXISTS (SELECT 1 FROM inode WHERE ino = d.ino)"
		  " ORDER BY d.id",
	  .report = report_entry,
	  .why = "names a missing inode",
	  .repair = drop_entry },
	/* 3 */
	{ .name = "entries in no directory",
	  .find = "SELECT d.id, d.parent, d.ino, d.name FROM dentry AS d"
		  " LEFT JOIN inode AS p ON p.ino = d.parent"
		  " WHERE p.ino IS NULL OR NOT " IS_DIR_SQL("p.mode")
		  " ORDER BY d.id",
	  .report = report_entry,
	  .why = "parent is missing or not a directory",
	  .repair = drop_entry },
	/* 4 */
	{ .name = "extra entries of a directory",
	  .find = "WITH k AS (SELECT d.ino AS ino,"
		  "  CASE WHEN d.ino = 1 THEN 0 ELSE coalesce("
		  "   min(CASE WHEN d.parent = i.parent THEN d.id END),"
		  "   min(d.id)) END AS keep"
		  "  FROM dentry AS d JOIN inode AS i ON i.ino = d.ino"
		  "  WHERE " IS_DIR_SQL("i.mode")
		  "  GROUP BY d.ino HAVING count(*) > 1 OR d.ino = 1)"
		  " SELECT d.id, d.parent, d.ino, d.name FROM dentry AS d"
		  " JOIN k ON k.ino = d.ino WHERE d.id != k.keep"
		  " ORDER BY d.id",
	  .report = report_entry,
	  .why = "a second entry of a directory",
	  .repair = drop_entry },
	/* 5 */
	{ .name = "reachability", .run = check_reach },
	/* 6 */
	{ .name = "directory parents",
	  .find = "SELECT i.ino, coalesce(i.parent, -1), l.parent"
		  " FROM inode AS i JOIN temp.fsck_links AS l"
		  " ON l.ino = i.ino WHERE " IS_DIR_SQL("i.mode")
		  " AND i.parent IS NOT l.parent"
		  " UNION ALL SELECT ino, coalesce(parent, -1), 1"
		  " FROM inode WHERE ino = 1 AND parent IS NOT 1",
	  .report = report_parent,
	  .repair = "UPDATE inode SET parent = :c WHERE ino = :a" },
	/* 7: orphans (no entry, not the root) are left alone: nlink 0 is
	 * right for them, and nlink > 0 was an unreachable inode (5) */
	{ .name = "link counts",
	  .find = "SELECT ino, nlink, want FROM (SELECT i.ino, i.nlink,"
		  " CASE WHEN " IS_DIR_SQL("i.mode") " THEN 2 + (SELECT"
		  "  count(*) FROM dentry AS d JOIN inode AS c"
		  "  ON c.ino = d.ino WHERE d.parent = i.ino"
		  "  AND " IS_DIR_SQL("c.mode") ")"
		  " ELSE l.n END AS want"
		  " FROM inode AS i LEFT JOIN temp.fsck_links AS l"
		  " ON l.ino = i.ino WHERE l.ino IS NOT NULL OR i.ino = 1)"
		  " WHERE nlink != want ORDER BY ino",
	  .report = report_count,
	  .why = "nlink",
	  .repair = "UPDATE inode SET nlink = :c WHERE ino = :a" },
	/* 8 */
	{ .name = "block owners",
	  .find = "SELECT b.ino, count(*), i.ino IS NULL FROM block AS b"
		  " LEFT JOIN inode AS i ON i.ino = b.ino"
		  " WHERE i.ino IS NULL OR NOT " IS_REG_SQL("i.mode")
		  " GROUP BY b.ino",
	  .report = report_block_owner,
	  .repair = "DELETE FROM block WHERE ino = :a" },
	/* 9: blocks win: they were written after the inline data */
	{ .name = "inline data",
	  .find = "SELECT d.ino, i.ino IS NULL,"
		  " (SELECT count(*) FROM block AS b WHERE b.ino = d.ino)"
		  " FROM inline_data AS d LEFT JOIN inode AS i"
		  " ON i.ino = d.ino"
		  " WHERE i.ino IS NULL OR NOT " IS_REG_SQL("i.mode")
		  " OR EXISTS (SELECT 1 FROM block AS b WHERE b.ino = d.ino)",
	  .report = report_inline,
	  .repair = "DELETE FROM inline_data WHERE ino = :a" },
	/* 10 */
	{ .name = "blocks past EOF",
	  .find = "SELECT ino, n, size FROM (SELECT b.ino AS ino,"
		  " count(*) AS n, i.size AS size FROM block AS b"
		  " JOIN inode AS i ON i.ino = b.ino"
		  " WHERE " IS_REG_SQL("i.mode")
		  " AND b.idx >= i.size / :bs + (i.size % :bs != 0)"
		  " GROUP BY b.ino)",
	  .report = report_block_eof,
	  .repair = "DELETE FROM block WHERE ino = :a"
		    " AND idx >= :c / :bs + (:c % :bs != 0)" },
	/* 11 */
	{ .name = "nblocks",
	  .find = "SELECT i.ino, i.nblocks, coalesce(c.n, 0) FROM inode AS i"
		  " LEFT JOIN (SELECT ino, count(*) AS n FROM block"
		  " GROUP BY ino) AS c ON c.ino = i.ino"
		  " WHERE i.nblocks != coalesce(c.n, 0)",
	  .report = report_count,
	  .why = "nblocks",
	  .repair = "UPDATE inode SET nblocks = :c WHERE ino = :a" },
	/* 12 */
	{ .name = "patch rows",
	  .find = "SELECT ino, idx, n, CASE WHEN orphan THEN"
		  " 'but no uploaded block to apply them to'"
		  " ELSE 'more than a chain may have' END FROM"
		  " (SELECT p.ino AS ino, p.idx AS idx, count(*) AS n,"
		  " NOT EXISTS (SELECT 1 FROM block AS b WHERE b.ino = p.ino"
		  " AND b.idx = p.idx AND b.hash IS NOT NULL) AS orphan"
		  " FROM patch AS p GROUP BY p.ino, p.idx)"
		  " WHERE orphan OR n > :chain_max",
	  .report = report_patches,
	  .repair = "DELETE FROM patch WHERE ino = :a AND idx = :b" },
	/* 13 */
	{ .name = "snapshot holds",
	  .find = "SELECT h.snap, count(*), 0, '' FROM snap_hold AS h"
		  " WHERE NOT EXISTS (SELECT 1 FROM snapshot WHERE id = h.snap)"
		  " GROUP BY h.snap",
	  .report = report_hold,
	  .repair = "DELETE FROM snap_hold WHERE snap = :a" },
	/* 14 */
	{ .name = "refcounts",
	  .find = "SELECT o.refcount, coalesce(c.n, 0),"
		  " coalesce(o.freed_epoch, -1), o.hash FROM object AS o"
		  " LEFT JOIN (SELECT hash, count(*) AS n FROM"
		  " (SELECT hash FROM block WHERE hash IS NOT NULL"
		  " UNION ALL SELECT hash FROM patch"
		  " UNION ALL SELECT hash FROM snap_hold) GROUP BY hash) AS c"
		  " ON c.hash = o.hash"
		  " WHERE o.refcount != coalesce(c.n, 0)"
		  " OR (o.refcount = 0 AND o.freed_epoch IS NULL)"
		  " OR (o.refcount > 0 AND o.freed_epoch IS NOT NULL)",
	  .report = report_refcount,
	  .repair = "UPDATE object SET refcount = :b,"
		    " freed_epoch = CASE WHEN :b > 0 THEN NULL"
		    " WHEN refcount > 0 OR freed_epoch IS NULL"
		    " THEN " META_CKPT_SEQ_SQL
		    " ELSE freed_epoch END WHERE hash = :hash" },
	/* 15 */
	{ .name = "missing object rows",
	  .find = "SELECT count(*), 0, 0, b.hash FROM"
		  " (SELECT hash FROM block WHERE hash IS NOT NULL"
		  " UNION ALL SELECT hash FROM patch"
		  " UNION ALL SELECT hash FROM snap_hold) AS b"
		  " WHERE NOT EXISTS"
		  " (SELECT 1 FROM object WHERE hash = b.hash)"
		  " GROUP BY b.hash",
	  .report = report_no_object,
	  .repair = "INSERT INTO object(hash, refcount, size, freed_epoch)"
		    " VALUES (:hash, :a, 0, NULL)" },
};

/* A check of the table: report each row its query finds, and repair it. */
static int check_rows(struct fsck *f, const struct fsck_check *c)
{
	struct rows rs = { 0 };
	size_t i;
	int rc;

	rc = fcollect(f, c->find, NULL, &rs);
	for (i = 0; !rc && i < rs.n; i++) {
		const struct row *r = &rs.r[i];
		struct fargs x = { .a = r->v[0], .b = r->v[1], .c = r->v[2],
				   .name = r->text, .name_len = r->len,
				   .hash = r->text };

		rc = c->report(f, r, c->why);
		if (!rc && f->repair)
			rc = fexec(f, c->repair, &x);
	}
	rows_free(&rs);
	return rc;
}

static int fsck_locked(struct fsck *f)
{
	const struct fsck_check *c;
	int rc;

	rc = fexec(f, "CREATE TEMP TABLE IF NOT EXISTS fsck_reach"
		      " (ino INTEGER PRIMARY KEY)", NULL);
	if (!rc)
		rc = fexec(f, "CREATE TEMP TABLE IF NOT EXISTS fsck_links"
			      " (ino INTEGER PRIMARY KEY, n INTEGER NOT NULL,"
			      " parent INTEGER)", NULL);
	for (c = checks; !rc && c < checks + ARRAY_SIZE(checks); c++)
		rc = c->run ? c->run(f) : check_rows(f, c);
	if (!rc)
		rc = fexec(f, "DROP TABLE temp.fsck_reach", NULL);
	if (!rc)
		rc = fexec(f, "DROP TABLE temp.fsck_links", NULL);
	return rc;
}

int meta_fsck(struct meta *m, int repair,
	      void (*report)(const char *line, void *arg), void *arg)
{
	struct fsck f = { .m = m, .repair = repair != 0 };
	size_t off;
	int rc;

	clock_gettime(CLOCK_REALTIME, &f.now);
	rc = meta_txn_begin(m, f.repair ? META_TXN_WRITE : META_TXN_READ);
	if (rc)
		return rc;
	rc = fsck_locked(&f);
	/* The TEMP tables are not a change of the volume. */
	if (!rc && f.problems == 0)
		m->txn_changes = sqlite3_total_changes64(m->db);
	rc = meta_txn_end(m, rc);
	if (!rc && report) {
		for (off = 0; off < f.lines.len;
		     off += strlen((const char *)f.lines.data + off) + 1)
			report((const char *)f.lines.data + off, arg);
	}
	buf_free(&f.lines);
	return rc ? rc : f.problems;
}
