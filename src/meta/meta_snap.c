/*
 * meta_snap.c - snapshots at the metadata level: named states of the
 * volume whose objects stay in the store until the snapshot is deleted.
 *
 * Purpose
 *   A snapshot is a holder of objects like a file's block: it counts in
 *   object.refcount, so garbage collection (meta_gc_list(), store_sweep())
 *   keeps every object it names without knowing about snapshots.  This
 *   file makes and drops the holds; volume/snapshot.c keeps the
 *   snapshot's copy of the database in the store.
 *
 * Data model
 *   snapshot(id, name, ns, jseq)   one row per snapshot: id never reused
 *                                  (AUTOINCREMENT: it names the copy's
 *                                  keys in the store), name unique by
 *                                  the code's check (a changeset applies
 *                                  row by row, see meta.c on dentry),
 *                                  ns its Unix time in ns, jseq the
 *                                  journal entry that carries it
 *   snap_hold(snap, hash)          one row per distinct object the
 *                                  snapshot names (block and patch rows
 *                                  at its creation), WITHOUT ROWID
 *
 * Invariants
 *   1. object.refcount counts snap_hold rows besides block and patch
 *      rows (meta.h invariant 3; meta_fsck() recounts them).
 *   2. Creating a snapshot is one transaction: the row, its holds and
 *      the raised counts; its copy (copy_path) is pinned before the lock
 *      is released, so it is exactly the state of that transaction, and
 *      every object it names is held.
 *   3. Dropping one is one transaction: holds gone, counts down, and an
 *      object whose count reaches 0 gets freed_epoch as a block's does,
 *      so the normal GC frees it.
 *   4. The copy holds no snapshot: a copy of every snapshot's holds in
 *      each later copy would grow them without end.  Its counts are
 *      those of its block and patch rows alone, and it keeps no object
 *      row they do not name (a snapshot's mount collects nothing).
 */
#include "util/compat.h"

#include <unistd.h>

#include "meta/meta_int.h"
#include "util/log.h"

/* every distinct object named by block and patch rows */
#define NAMED_SQL                                                          \
	"SELECT hash FROM block WHERE hash IS NOT NULL"                    \
	" UNION SELECT hash FROM patch"

int meta_snap_name_check(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;

	if (!name || !*name)
		return -EINVAL;
	if (strlen(name) > META_SNAP_NAME_MAX)
		return -ENAMETOOLONG;
	for (; *p; p++)
		if (*p == '/' || *p < 0x20 || *p == 0x7f)
			return -EINVAL;
	return 0;
}

/* Run one-off SQL with ?1 bound to a, ?2 to text (either may be unused). */
static int run1(struct meta *m, const char *sql, int64_t a, const char *text)
{
	sqlite3_stmt *st;
	int rc = meta_prepare(m, sql, &st);

	if (rc)
		return rc;
	if (sqlite3_bind_parameter_count(st) >= 1)
		sqlite3_bind_int64(st, 1, a);
	if (sqlite3_bind_parameter_count(st) >= 2)
		sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
	rc = meta_step(m, st);
	sqlite3_finalize(st);
	return rc;
}

/* The last journal entry cut (config "jrnl_seq"; lock held). */
static uint64_t jrnl_seq_locked(struct meta *m)
{
	sqlite3_stmt *st;
	uint64_t v = 0;

	if (meta_prepare(m, "SELECT CAST(value AS INTEGER) FROM config"
			 " WHERE key = 'jrnl_seq'", &st))
		return 0;
	if (meta_step(m, st) > 0)
		v = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The row, holds and counts of a new snapshot (lock held, in BEGIN). */
static int create_locked(struct meta *m, const char *name, int64_t time_ns,
			 uint64_t *id, uint64_t *jseq)
{
	sqlite3_stmt *st;
	int rc;

	rc = run1(m, "SELECT 1 FROM snapshot WHERE name = ?2", 0, name);
	if (rc)
		return rc < 0 ? rc : -EEXIST;
	/* the journal entry that will carry it: the next cut */
	*jseq = jrnl_seq_locked(m) + 1;
	rc = meta_prepare(m, "INSERT INTO snapshot(name, ns, jseq)"
			  " VALUES (?1, ?2, ?3)", &st);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, time_ns);
	sqlite3_bind_int64(st, 3, (int64_t)*jseq);
	rc = meta_step(m, st);
	sqlite3_finalize(st);
	if (rc < 0)
		return rc;
	*id = (uint64_t)sqlite3_last_insert_rowid(m->db);
	rc = run1(m, "INSERT INTO snap_hold(snap, hash) SELECT ?1, hash"
		  " FROM (" NAMED_SQL ")", (int64_t)*id, NULL);
	if (rc >= 0)
		rc = run1(m, "UPDATE object SET refcount = refcount + 1,"
			  " freed_epoch = NULL WHERE hash IN (SELECT hash"
			  " FROM snap_hold WHERE snap = ?1)", (int64_t)*id,
			  NULL);
	return rc < 0 ? rc : 0;
}

/*
 * The copy without snapshots (invariant 4): their holds leave the
 * counts, objects no row names leave the table, and the file shrinks.
 * Only the copy's own connection: m is not locked.
 */
static int copy_strip(struct meta *m, const char *path)
{
	/* a file read once and removed: no journal, no sync */
	static const char sql[] =
		"PRAGMA journal_mode=OFF;"
		"PRAGMA synchronous=OFF;"
		"BEGIN;"
		"UPDATE object SET refcount = refcount - c.n FROM"
		" (SELECT hash, count(*) AS n FROM snap_hold GROUP BY hash)"
		" AS c WHERE object.hash = c.hash;"
		"DELETE FROM object WHERE refcount <= 0;"
		"DELETE FROM snap_hold;"
		"DELETE FROM snapshot;"
		"COMMIT;"
		"VACUUM;";
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
				 SQLITE_OPEN_NOMUTEX, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		log_error("meta: snapshot copy %s: %s", path,
			  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	if (sqlite3_close(db) != SQLITE_OK && rc == SQLITE_OK)
		rc = SQLITE_IOERR;
	(void)m;
	return rc == SQLITE_OK ? 0 : -EIO;
}

/* BEGIN IMMEDIATE .. COMMIT by hand: the lock stays held after it. */
static int exec(struct meta *m, const char *sql)
{
	int rc = sqlite3_exec(m->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : meta_sql_err(m, rc, sql);
}

int meta_snap_create(struct meta *m, const char *name, int64_t time_ns,
		     const char *copy_path, struct meta_snap *out)
{
	sqlite3 *reader = NULL;
	uint64_t id = 0, jseq = 0;
	int rc = meta_snap_name_check(name);

	if (rc)
		return rc;
	if (copy_path && m->path) {
		rc = meta_copy_reader(m, &reader);
		if (rc)
			return rc;
	}
	rc = meta_txn_begin(m, META_TXN_NONE);
	if (rc)
		goto out;
	rc = exec(m, "BEGIN IMMEDIATE");
	if (!rc) {
		rc = create_locked(m, name, time_ns, &id, &jseq);
		if (!rc)
			rc = exec(m, "COMMIT");
		if (rc && !sqlite3_get_autocommit(m->db))
			sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
	}
	if (!rc)
		m->change_count++;
	/* invariant 2: the copy is of this very state */
	if (!rc && copy_path && !m->path)
		rc = meta_copy_to(m, m->db, copy_path);
	else if (!rc && reader &&
		 sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM config",
			      NULL, NULL, NULL) != SQLITE_OK)
		rc = meta_sql_err(m, SQLITE_ERROR, "snapshot copy");
	meta_txn_end(m, 0);
	if (!rc && reader) {
		rc = meta_copy_to(m, reader, copy_path);
		sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL);
	}
	if (!rc && copy_path)
		rc = copy_strip(m, copy_path);
	if (rc && id)
		meta_snap_drop(m, id); /* the copy failed: nothing made */
	if (!rc && out)
		rc = meta_snap_get(m, id, out);
out:
	if (reader)
		sqlite3_close(reader);
	if (rc && copy_path)
		unlink(copy_path);
	return rc;
}

int meta_snap_drop(struct meta *m, uint64_t id)
{
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = run1(m, "SELECT 1 FROM snapshot WHERE id = ?1", (int64_t)id,
		  NULL);
	if (rc == 0)
		rc = -ENOENT;
	if (rc > 0)
		rc = run1(m, "UPDATE object"
			  " SET refcount = max(refcount - 1, 0),"
			  " freed_epoch = CASE WHEN refcount <= 1 THEN "
			  META_CKPT_SEQ_SQL " ELSE freed_epoch END"
			  " WHERE hash IN (SELECT hash FROM snap_hold"
			  " WHERE snap = ?1)", (int64_t)id, NULL);
	if (rc >= 0)
		rc = run1(m, "DELETE FROM snap_hold WHERE snap = ?1",
			  (int64_t)id, NULL);
	if (rc >= 0)
		rc = run1(m, "DELETE FROM snapshot WHERE id = ?1", (int64_t)id,
			  NULL);
	return meta_txn_end(m, rc < 0 ? rc : 0);
}

/* The columns of a struct meta_snap, for id ?1 or after it. */
#define SNAP_COLS_SQL                                                       \
	"SELECT s.id, s.name, s.ns, s.jseq,"                               \
	" (SELECT count(*) FROM snap_hold WHERE snap = s.id),"             \
	" (SELECT coalesce(sum(o.size), 0) FROM snap_hold AS h"            \
	"  JOIN object AS o ON o.hash = h.hash"                            \
	"  WHERE h.snap = s.id AND o.refcount = 1)"                        \
	" FROM snapshot AS s"

static void col_snap(sqlite3_stmt *st, struct meta_snap *out)
{
	const unsigned char *name = sqlite3_column_text(st, 1);

	memset(out, 0, sizeof(*out));
	out->id = (uint64_t)sqlite3_column_int64(st, 0);
	snprintf(out->name, sizeof(out->name), "%s",
		 name ? (const char *)name : "");
	out->time_ns = sqlite3_column_int64(st, 2);
	out->jseq = (uint64_t)sqlite3_column_int64(st, 3);
	out->objects = (uint64_t)sqlite3_column_int64(st, 4);
	out->alone_bytes = (uint64_t)sqlite3_column_int64(st, 5);
}

/* Rows of sql (?1 = a, ?2 = text) into out[0..max); *n how many. */
static int snap_rows(struct meta *m, const char *sql, int64_t a,
		     const char *text, struct meta_snap *out, size_t max,
		     size_t *n)
{
	sqlite3_stmt *st;
	int rc = meta_txn_begin(m, META_TXN_READ);

	*n = 0;
	if (rc)
		return rc;
	rc = meta_prepare(m, sql, &st);
	if (!rc) {
		sqlite3_bind_int64(st, 1, a);
		if (text)
			sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (int64_t)max);
		while (*n < max && (rc = meta_step(m, st)) > 0)
			col_snap(st, &out[(*n)++]);
		sqlite3_finalize(st);
	}
	return meta_txn_end(m, rc < 0 ? rc : 0);
}

int meta_snap_get(struct meta *m, uint64_t id, struct meta_snap *out)
{
	size_t n;
	int rc = snap_rows(m, SNAP_COLS_SQL " WHERE s.id = ?1 LIMIT ?3",
			   (int64_t)id, NULL, out, 1, &n);

	return rc ? rc : n ? 0 : -ENOENT;
}

int meta_snap_find(struct meta *m, const char *name, struct meta_snap *out)
{
	size_t n;
	int rc = snap_rows(m, SNAP_COLS_SQL " WHERE s.name = ?2 AND ?1 = ?1"
			   " LIMIT ?3", 0, name, out, 1, &n);

	return rc ? rc : n ? 0 : -ENOENT;
}

int meta_snap_list(struct meta *m, uint64_t after_id, struct meta_snap *out,
		   size_t max, size_t *n)
{
	return snap_rows(m, SNAP_COLS_SQL " WHERE s.id > ?1 ORDER BY s.id"
			 " LIMIT ?3", (int64_t)after_id, NULL, out, max, n);
}
