/*
 * meta.c - the metadata layer: one SQLite database behind one mutex.
 *
 * Purpose
 *   Every file-system operation that touches names, attributes, xattrs or
 *   the block map is one call here, and every call that writes is one
 *   SQLite transaction (BEGIN IMMEDIATE .. COMMIT, ROLLBACK on any error),
 *   so a crash leaves either the old or the new state, never a mix.  The
 *   exception is a write that dirties no new block: its size and times
 *   wait in meta_pend.c for the next transaction (crash-safe there).
 *   SQLite result codes are turned into -errno here and nowhere else.
 *
 * Data model (the SQL is schema_sql below)
 *   config(key, value)      text pairs; "format" and "block_size" are
 *                           written once by meta_open() and read-only
 *   inode(ino, mode, uid, gid, nlink, size, rdev, nblocks,
 *         atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns,
 *         parent, target)   parent: the directory holding a directory's
 *                           entry (root: 1; NULL for non-directories);
 *                           target: a symlink's target (BLOB)
 *   dentry(id, parent, name, ino)
 *                           indexes (parent, name) and (parent, id);
 *                           readdir cookie = id + 2.  (parent, name) is
 *                           unique by the code's checks, not by a
 *                           constraint: a changeset in which two rows
 *                           swap names (renames in a cycle between two
 *                           journal cuts) must apply row by row, and a
 *                           UNIQUE constraint refuses the first row of
 *                           any order.  fsck checks it; older databases
 *                           lose the constraint at open (drop_unique).
 *   xattr(ino, name, value) key (ino, name), WITHOUT ROWID
 *   block(ino, idx, hash, dirty)
 *                           key (ino, idx), WITHOUT ROWID; partial index
 *                           on the dirty rows
 *   patch(ino, idx, n, hash) key (ino, idx, n), WITHOUT ROWID: the
 *                           patches of a block (blob/patch.h), applied
 *                           over its hash in order of n (1, 2, ..)
 *   object(hash, refcount, size, freed_epoch)
 *                           key hash, WITHOUT ROWID; partial index
 *                           (freed_epoch, hash) on refcount = 0 rows
 *   temp.stat_counts        one row of meta_stats() counters, kept by
 *                           TEMP triggers (stats_sql): per connection,
 *                           never written to the file
 *   An existing database without our "format" key is refused, never
 *   extended (check_ours()).
 *
 * Invariants (besides 1-5 of meta.h, which meta_fsck() checks)
 *   1. Inode numbers and dentry ids are never reused (AUTOINCREMENT): an
 *      inode number the kernel still holds, or a readdir cookie, never
 *      comes to mean something else.
 *   2. A directory has exactly one dentry, and inode.parent names the
 *      directory holding it.  meta_rename() walks inode.parent upward for
 *      its subtree check, so moving a directory costs O(depth), never
 *      O(size of the directory).
 *   3. A block row with hash NULL is dirty.
 *   4. object.freed_epoch is NULL iff refcount > 0; when the count drops
 *      to 0 it becomes config "ckpt_seq" (0 when unset).
 *   5. Every cached statement is reset before the lock is released
 *      (asserted by meta_txn_end() in debug builds).
 *
 * Locking
 *   m->lock serialises every use of the connection, which is opened with
 *   SQLITE_OPEN_NOMUTEX.  Read-only functions take the lock without an
 *   explicit BEGIN: with one connection, nothing else can write between
 *   their statements.  Callbacks (readdir, orphans, dirty blocks, gc list,
 *   objects) are called with the lock released: rows are fetched in
 *   batches, and the walk resumes after the last key seen, so a callback
 *   may call back into meta (for example, purge the orphan it is given).
 *   meta_snapshot() of a file database reads through a second read-only
 *   connection and does not take the lock at all.
 */
#include "util/compat.h"

#include <assert.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "meta/meta_int.h"
#include "util/log.h"

#define META_FORMAT "1"
#define META_SYMLINK_MAX 4095		/* PATH_MAX - 1 */
#define META_XATTR_NAME_MAX 255
#define META_XATTR_SIZE_MAX 65536
#define META_LINK_MAX (UINT32_MAX - 1)
#define META_MAX_DEPTH 1000000		/* parent-chain walk bound */
#define RD_BATCH 64			/* readdir entries per lock */
#define ID_BATCH 256			/* inos / blocks per lock */
#define HASH_BATCH 128			/* object names per lock */

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS config ("
	" key TEXT PRIMARY KEY NOT NULL,"
	" value TEXT NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS inode ("
	" ino INTEGER PRIMARY KEY AUTOINCREMENT,"
	" mode INTEGER NOT NULL,"
	" uid INTEGER NOT NULL,"
	" gid INTEGER NOT NULL,"
	" nlink INTEGER NOT NULL,"
	" size INTEGER NOT NULL DEFAULT 0,"
	" rdev INTEGER NOT NULL DEFAULT 0,"
	" nblocks INTEGER NOT NULL DEFAULT 0,"
	" atime_s INTEGER NOT NULL, atime_ns INTEGER NOT NULL,"
	" mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
	" ctime_s INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,"
	" parent INTEGER,"
	" target BLOB);"
	"CREATE INDEX IF NOT EXISTS inode_orphan ON inode(ino)"
	" WHERE nlink = 0;"
	"CREATE TABLE IF NOT EXISTS dentry ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" parent INTEGER NOT NULL,"
	" name BLOB NOT NULL,"
	" ino INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS dentry_parent_id ON dentry(parent, id);"
	"CREATE TABLE IF NOT EXISTS xattr ("
	" ino INTEGER NOT NULL,"
	" name BLOB NOT NULL,"
	" value BLOB NOT NULL,"
	" PRIMARY KEY (ino, name)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS block ("
	" ino INTEGER NOT NULL,"
	" idx INTEGER NOT NULL,"
	" hash TEXT,"
	" dirty INTEGER NOT NULL,"
	" PRIMARY KEY (ino, idx)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS block_dirty ON block(ino, idx)"
	" WHERE dirty = 1;"
	"CREATE TABLE IF NOT EXISTS patch ("
	" ino INTEGER NOT NULL,"
	" idx INTEGER NOT NULL,"
	" n INTEGER NOT NULL,"
	" hash TEXT NOT NULL,"
	" PRIMARY KEY (ino, idx, n)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS inline_data ("
	" ino INTEGER PRIMARY KEY,"
	" data BLOB NOT NULL);"
	"CREATE TABLE IF NOT EXISTS object ("
	" hash TEXT PRIMARY KEY NOT NULL,"
	" refcount INTEGER NOT NULL,"
	" size INTEGER NOT NULL,"
	" freed_epoch INTEGER) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS object_gc ON object(freed_epoch, hash)"
	" WHERE refcount = 0;";

/*
 * meta_stats() counters, kept by TEMP triggers in a TEMP one-row table:
 * per connection, never in the file, a snapshot or a session on "main";
 * they roll back with their transaction.  Counted once by meta_open(), so
 * statfs costs one row read instead of scans of every table.
 */
static const char stats_sql[] =
	"CREATE TEMP TABLE stat_counts ("
	" id INTEGER PRIMARY KEY CHECK (id = 0),"
	" inodes INTEGER NOT NULL, blocks INTEGER NOT NULL,"
	" dirty INTEGER NOT NULL, objects INTEGER NOT NULL,"
	" bytes INTEGER NOT NULL);"
	"INSERT INTO temp.stat_counts SELECT 0,"
	" (SELECT count(*) FROM main.inode),"
	" (SELECT count(*) FROM main.block),"
	" (SELECT count(*) FROM main.block WHERE dirty = 1),"
	" (SELECT count(*) FROM main.object WHERE refcount > 0),"
	" (SELECT coalesce(sum(size), 0) FROM main.object"
	"  WHERE refcount > 0);"
	"CREATE TEMP TRIGGER stat_inode_ins AFTER INSERT ON main.inode"
	" BEGIN UPDATE stat_counts SET inodes = inodes + 1; END;"
	"CREATE TEMP TRIGGER stat_inode_del AFTER DELETE ON main.inode"
	" BEGIN UPDATE stat_counts SET inodes = inodes - 1; END;"
	"CREATE TEMP TRIGGER stat_block_ins AFTER INSERT ON main.block"
	" BEGIN UPDATE stat_counts SET blocks = blocks + 1,"
	" dirty = dirty + (NEW.dirty = 1); END;"
	"CREATE TEMP TRIGGER stat_block_del AFTER DELETE ON main.block"
	" BEGIN UPDATE stat_counts SET blocks = blocks - 1,"
	" dirty = dirty - (OLD.dirty = 1); END;"
	"CREATE TEMP TRIGGER stat_block_upd AFTER UPDATE OF dirty"
	" ON main.block WHEN (OLD.dirty = 1) != (NEW.dirty = 1)"
	" BEGIN UPDATE stat_counts"
	" SET dirty = dirty + (NEW.dirty = 1) - (OLD.dirty = 1); END;"
	"CREATE TEMP TRIGGER stat_object_ins AFTER INSERT ON main.object"
	" WHEN NEW.refcount > 0"
	" BEGIN UPDATE stat_counts SET objects = objects + 1,"
	" bytes = bytes + NEW.size; END;"
	"CREATE TEMP TRIGGER stat_object_del AFTER DELETE ON main.object"
	" WHEN OLD.refcount > 0"
	" BEGIN UPDATE stat_counts SET objects = objects - 1,"
	" bytes = bytes - OLD.size; END;"
	"CREATE TEMP TRIGGER stat_object_upd AFTER UPDATE OF refcount, size"
	" ON main.object WHEN (OLD.refcount > 0) != (NEW.refcount > 0)"
	" OR OLD.size != NEW.size"
	" BEGIN UPDATE stat_counts"
	" SET objects = objects + (NEW.refcount > 0) - (OLD.refcount > 0),"
	" bytes = bytes + (NEW.refcount > 0) * NEW.size"
	" - (OLD.refcount > 0) * OLD.size; END;";

/* The 14 columns read by col_attr(), with an optional table prefix. */
#define ATTR_COLS(p)                                                        \
	p "ino, " p "mode, " p "uid, " p "gid, " p "nlink, " p "size, "    \
	p "rdev, " p "nblocks, " p "atime_s, " p "atime_ns, " p "mtime_s, " \
	p "mtime_ns, " p "ctime_s, " p "ctime_ns"


enum stmt_id {
	ST_BEGIN,
	ST_BEGIN_READ,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_CONFIG_GET,
	ST_CONFIG_SET,
	ST_INODE_GET,
	ST_INODE_PARENT,
	ST_INODE_TARGET,
	ST_INODE_INSERT,
	ST_INODE_PUT,
	ST_INODE_NLINK,
	ST_INODE_DIR_TOUCH,
	ST_INODE_MOVED,
	ST_INODE_CTIME,
	ST_INODE_ATIME,
	ST_INODE_WRITE,
	ST_INODE_NBLOCKS,
	ST_INODE_DELETE,
	ST_ORPHANS,
	ST_DENTRY_FIND,
	ST_DENTRY_EXISTS,
	ST_DENTRY_INSERT,
	ST_DENTRY_DELETE,
	ST_DENTRY_MOVE,
	ST_DENTRY_SET_INO,
	ST_DENTRY_ANY,
	ST_READDIR,
	ST_XATTR_GET,
	ST_XATTR_INSERT,
	ST_XATTR_UPDATE,
	ST_XATTR_LIST,
	ST_XATTR_DELETE,
	ST_XATTR_PURGE,
	ST_INLINE_GET,
	ST_INLINE_SET,
	ST_INLINE_DELETE,
	ST_LAST_COOKIE,
	ST_BLOCK_GET,
	ST_BLOCK_DIRTY,
	ST_BLOCK_INSERT,
	ST_BLOCK_SET,
	ST_BLOCK_DELETE,
	ST_BLOCK_UNREF_RANGE,
	ST_BLOCK_DELETE_RANGE,
	ST_PATCH_LIST,
	ST_PATCH_INSERT,
	ST_PATCH_UNREF_RANGE,
	ST_PATCH_DELETE_RANGE,
	ST_BLOCKS_DIRTY,
	ST_BLOCKS_PATCHED,
	ST_DIRTY_COUNT,
	ST_INODE_DIRTY_COUNT,
	ST_FORGET_NBLOCKS,
	ST_FORGET_DELETE,
	ST_FORGET_CLEAN,
	ST_OBJECT_GET,
	ST_OBJECT_REF,
	ST_OBJECT_UNREF,
	ST_OBJECT_ENSURE,
	ST_GC_LIST,
	ST_GC_WAITING,
	ST_DB_BYTES,
	ST_GC_FORGET,
	ST_OBJECTS,
	ST_STATS,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_BEGIN_READ] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_CONFIG_GET] = "SELECT value FROM config WHERE key = ?1",
	[ST_CONFIG_SET] = "INSERT INTO config(key, value) VALUES (?1, ?2)"
			  " ON CONFLICT(key) DO UPDATE SET value = ?2",
	[ST_INODE_GET] = "SELECT " ATTR_COLS("") " FROM inode WHERE ino = ?1",
	[ST_INODE_PARENT] = "SELECT mode, parent FROM inode WHERE ino = ?1",
	[ST_INODE_TARGET] = "SELECT mode, target FROM inode WHERE ino = ?1",
	[ST_INODE_INSERT] =
		"INSERT INTO inode(mode, uid, gid, nlink, size, rdev, nblocks,"
		" atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns,"
		" parent, target) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0,"
		" ?7, ?8, ?7, ?8, ?7, ?8, ?9, ?10)",
	[ST_INODE_PUT] =
		"UPDATE inode SET mode = ?2, uid = ?3, gid = ?4, size = ?5,"
		" atime_s = ?6, atime_ns = ?7, mtime_s = ?8, mtime_ns = ?9,"
		" ctime_s = ?10, ctime_ns = ?11 WHERE ino = ?1",
	[ST_INODE_NLINK] = "UPDATE inode SET nlink = ?2, ctime_s = ?3,"
			   " ctime_ns = ?4 WHERE ino = ?1",
	[ST_INODE_DIR_TOUCH] =
		"UPDATE inode SET nlink = nlink + ?2, mtime_s = ?3,"
		" mtime_ns = ?4, ctime_s = ?3, ctime_ns = ?4 WHERE ino = ?1",
	[ST_INODE_MOVED] = "UPDATE inode SET ctime_s = ?2, ctime_ns = ?3,"
			   " parent = ?4 WHERE ino = ?1",
	[ST_INODE_CTIME] = "UPDATE inode SET ctime_s = ?2, ctime_ns = ?3"
			   " WHERE ino = ?1",
	[ST_INODE_ATIME] = "UPDATE inode SET atime_s = ?2, atime_ns = ?3"
			   " WHERE ino = ?1",
	[ST_INODE_WRITE] = "UPDATE inode SET size = ?2, mtime_s = ?3,"
			   " mtime_ns = ?4, ctime_s = ?3, ctime_ns = ?4"
			   " WHERE ino = ?1",
	[ST_INODE_NBLOCKS] = "UPDATE inode SET nblocks = nblocks + ?2"
			     " WHERE ino = ?1",
	[ST_INODE_DELETE] = "DELETE FROM inode WHERE ino = ?1",
	[ST_ORPHANS] = "SELECT ino FROM inode WHERE nlink = 0 AND ino > ?1"
		       " ORDER BY ino LIMIT ?2",
	[ST_DENTRY_FIND] = "SELECT d.id, " ATTR_COLS("i.")
			   " FROM dentry AS d JOIN inode AS i"
			   " ON i.ino = d.ino"
			   " WHERE d.parent = ?1 AND d.name = ?2",
	[ST_DENTRY_EXISTS] = "SELECT 1 FROM dentry"
			     " WHERE parent = ?1 AND name = ?2",
	[ST_DENTRY_INSERT] = "INSERT INTO dentry(parent, name, ino)"
			     " VALUES (?1, ?2, ?3)",
	[ST_DENTRY_DELETE] = "DELETE FROM dentry WHERE id = ?1",
	[ST_DENTRY_MOVE] = "UPDATE dentry SET parent = ?2, name = ?3"
			   " WHERE id = ?1",
	[ST_DENTRY_SET_INO] = "UPDATE dentry SET ino = ?2 WHERE id = ?1",
	[ST_DENTRY_ANY] = "SELECT 1 FROM dentry WHERE parent = ?1 LIMIT 1",
	[ST_READDIR] = "SELECT d.id, d.name, " ATTR_COLS("i.")
		       " FROM dentry AS d JOIN inode AS i ON i.ino = d.ino"
		       " WHERE d.parent = ?1 AND d.id > ?2"
		       " ORDER BY d.id LIMIT ?3",
	[ST_XATTR_GET] = "SELECT value FROM xattr WHERE ino = ?1"
			 " AND name = ?2",
	[ST_XATTR_INSERT] = "INSERT INTO xattr(ino, name, value)"
			    " VALUES (?1, ?2, ?3)",
	[ST_XATTR_UPDATE] = "UPDATE xattr SET value = ?3 WHERE ino = ?1"
			    " AND name = ?2",
	[ST_XATTR_LIST] = "SELECT name FROM xattr WHERE ino = ?1"
			  " ORDER BY name",
	[ST_XATTR_DELETE] = "DELETE FROM xattr WHERE ino = ?1 AND name = ?2",
	[ST_XATTR_PURGE] = "DELETE FROM xattr WHERE ino = ?1",
	[ST_INLINE_GET] = "SELECT data FROM inline_data WHERE ino = ?1",
	[ST_INLINE_SET] = "INSERT OR REPLACE INTO inline_data(ino, data)"
			  " VALUES (?1, ?2)",
	[ST_INLINE_DELETE] = "DELETE FROM inline_data WHERE ino = ?1",
	[ST_LAST_COOKIE] =
		"SELECT seq FROM sqlite_sequence WHERE name = 'dentry'",
	[ST_BLOCK_GET] = "SELECT hash, dirty FROM block WHERE ino = ?1"
			 " AND idx = ?2",
	[ST_BLOCK_DIRTY] = "UPDATE block SET dirty = 1 WHERE ino = ?1"
			   " AND idx = ?2",
	[ST_BLOCK_INSERT] = "INSERT INTO block(ino, idx, hash, dirty)"
			    " VALUES (?1, ?2, NULL, 1)",
	[ST_BLOCK_SET] = "UPDATE block SET hash = ?3, dirty = ?4"
			 " WHERE ino = ?1 AND idx = ?2",
	[ST_BLOCK_DELETE] = "DELETE FROM block WHERE ino = ?1 AND idx = ?2",
	[ST_BLOCK_UNREF_RANGE] =
		"UPDATE object SET refcount = max(refcount - c.n, 0),"
		" freed_epoch = CASE WHEN refcount <= c.n"
		" THEN " META_CKPT_SEQ_SQL
		" ELSE freed_epoch END"
		" FROM (SELECT hash, count(*) AS n FROM block"
		" WHERE ino = ?1 AND idx BETWEEN ?2 AND ?3"
		" AND hash IS NOT NULL GROUP BY hash) AS c"
		" WHERE object.hash = c.hash",
	[ST_BLOCK_DELETE_RANGE] = "DELETE FROM block WHERE ino = ?1"
				  " AND idx BETWEEN ?2 AND ?3",
	[ST_PATCH_LIST] = "SELECT p.hash, coalesce(o.size, 0) FROM patch AS p"
			 " LEFT JOIN object AS o ON o.hash = p.hash"
			 " WHERE p.ino = ?1 AND p.idx = ?2 ORDER BY p.n",
	[ST_PATCH_INSERT] = "INSERT INTO patch(ino, idx, n, hash)"
			   " VALUES (?1, ?2, ?3, ?4)",
	[ST_PATCH_UNREF_RANGE] =
		"UPDATE object SET refcount = max(refcount - c.n, 0),"
		" freed_epoch = CASE WHEN refcount <= c.n"
		" THEN " META_CKPT_SEQ_SQL
		" ELSE freed_epoch END"
		" FROM (SELECT hash, count(*) AS n FROM patch"
		" WHERE ino = ?1 AND idx BETWEEN ?2 AND ?3"
		" GROUP BY hash) AS c"
		" WHERE object.hash = c.hash",
	[ST_PATCH_DELETE_RANGE] = "DELETE FROM patch WHERE ino = ?1"
				  " AND idx BETWEEN ?2 AND ?3",
	[ST_BLOCKS_DIRTY] = "SELECT ino, idx FROM block WHERE dirty = 1"
			    " AND (ino, idx) > (?1, ?2)"
			    " ORDER BY ino, idx LIMIT ?3",
	[ST_BLOCKS_PATCHED] = "SELECT DISTINCT ino, idx FROM patch"
			      " WHERE (ino, idx) > (?1, ?2)"
			      " ORDER BY ino, idx LIMIT ?3",
	[ST_DIRTY_COUNT] = "SELECT count(*) FROM block WHERE dirty = 1",
	[ST_INODE_DIRTY_COUNT] = "SELECT count(*) FROM block"
				 " WHERE ino = ?1 AND dirty = 1",
	[ST_FORGET_NBLOCKS] =
		"UPDATE inode SET nblocks = nblocks - c.n"
		" FROM (SELECT ino, count(*) AS n FROM block"
		" WHERE dirty = 1 AND hash IS NULL GROUP BY ino) AS c"
		" WHERE inode.ino = c.ino",
	[ST_FORGET_DELETE] = "DELETE FROM block WHERE dirty = 1"
			     " AND hash IS NULL",
	/* a block reaching past its file's end stays dirty: its content
	 * may predate a truncate (the cache cuts it again, cache.c) */
	[ST_FORGET_CLEAN] = "UPDATE block SET dirty = 0 WHERE dirty = 1"
			    " AND (idx + 1) * ?1 <= (SELECT size FROM inode"
			    " WHERE inode.ino = block.ino)",
	[ST_OBJECT_GET] = "SELECT refcount FROM object WHERE hash = ?1",
	[ST_OBJECT_REF] = "INSERT INTO object(hash, refcount, size,"
			  " freed_epoch) VALUES (?1, 1, ?2, NULL)"
			  " ON CONFLICT(hash) DO UPDATE SET"
			  " refcount = refcount + 1, freed_epoch = NULL",
	[ST_OBJECT_UNREF] =
		"UPDATE object SET refcount = refcount - 1,"
		" freed_epoch = CASE WHEN refcount = 1"
		" THEN " META_CKPT_SEQ_SQL
		" ELSE freed_epoch END WHERE hash = ?1 AND refcount > 0",
	[ST_OBJECT_ENSURE] =
		"INSERT INTO object(hash, refcount, size, freed_epoch)"
		" VALUES (?1, 0, ?2, " META_CKPT_SEQ_SQL ")"
		" ON CONFLICT(hash) DO NOTHING",
	[ST_GC_LIST] = "SELECT freed_epoch, hash FROM object"
		       " WHERE refcount = 0 AND freed_epoch < ?1"
		       " AND (freed_epoch, hash) > (?2, ?3)"
		       " ORDER BY freed_epoch, hash LIMIT ?4",
	[ST_GC_WAITING] = "SELECT count(*), coalesce(sum(size), 0) FROM object"
			  " WHERE refcount = 0 AND freed_epoch >= ?1",
	[ST_DB_BYTES] = "SELECT (p.page_count - f.freelist_count) * s.page_size"
			" FROM pragma_page_count() AS p,"
			" pragma_freelist_count() AS f,"
			" pragma_page_size() AS s",
	[ST_GC_FORGET] = "DELETE FROM object WHERE hash = ?1"
			 " AND refcount = 0",
	[ST_OBJECTS] = "SELECT hash, refcount FROM object WHERE refcount > 0"
		       " AND hash > ?1 ORDER BY hash LIMIT ?2",
	[ST_STATS] = "SELECT inodes, blocks, dirty, objects, bytes"
		     " FROM temp.stat_counts",
};

/* ---- SQLite plumbing ---- */

int meta_sql_err(struct meta *m, int rc, const char *what)
{
	log_error("meta: %s: %s (sqlite %d)", what,
		  m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(rc), rc);
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

int meta_step(struct meta *m, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return meta_sql_err(m, rc, sqlite3_sql(st));
}

int meta_prepare(struct meta *m, const char *sql, sqlite3_stmt **out)
{
	int rc = sqlite3_prepare_v2(m->db, sql, -1, out, NULL);

	if (rc != SQLITE_OK) {
		*out = NULL;
		return meta_sql_err(m, rc, sql);
	}
	return 0;
}

/* Run a statement that returns no rows we want, then reset it. */
static int run(struct meta *m, sqlite3_stmt *st)
{
	int rc = meta_step(m, st);

	sqlite3_reset(st);
	return rc < 0 ? rc : 0;
}

/*
 * Bindings cannot fail for our inputs (indexes are static, sizes are far
 * below SQLITE_MAX_LENGTH and SQLITE_STATIC never allocates); debug builds
 * check it anyway.
 */
static void bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
	int rc = sqlite3_bind_int64(st, i, v);

	assert(rc == SQLITE_OK);
	(void)rc;
}

static void bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
	bind_i64(st, i, v > INT64_MAX ? -1 : (int64_t)v);
}

static void bind_null(sqlite3_stmt *st, int i)
{
	int rc = sqlite3_bind_null(st, i);

	assert(rc == SQLITE_OK);
	(void)rc;
}

static void bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
	int rc;

	/* A NULL pointer would bind SQL NULL, not an empty value. */
	if (n == 0)
		rc = sqlite3_bind_zeroblob(st, i, 0);
	else
		rc = sqlite3_bind_blob(st, i, p, (int)n, SQLITE_STATIC);
	assert(rc == SQLITE_OK);
	(void)rc;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	int rc = sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);

	assert(rc == SQLITE_OK);
	(void)rc;
}

static void bind_time(sqlite3_stmt *st, int i, const struct timespec *ts)
{
	bind_i64(st, i, (int64_t)ts->tv_sec);
	bind_i64(st, i + 1, (int64_t)ts->tv_nsec);
}

static uint64_t col_u64(sqlite3_stmt *st, int c)
{
	return (uint64_t)sqlite3_column_int64(st, c);
}

static void col_attr(sqlite3_stmt *st, int c, struct meta_attr *a)
{
	a->ino = col_u64(st, c);
	a->mode = (uint32_t)col_u64(st, c + 1);
	a->uid = (uint32_t)col_u64(st, c + 2);
	a->gid = (uint32_t)col_u64(st, c + 3);
	a->nlink = (uint32_t)col_u64(st, c + 4);
	a->size = col_u64(st, c + 5);
	a->rdev = col_u64(st, c + 6);
	a->nblocks = col_u64(st, c + 7);
	a->atime.tv_sec = (time_t)sqlite3_column_int64(st, c + 8);
	a->atime.tv_nsec = (long)sqlite3_column_int64(st, c + 9);
	a->mtime.tv_sec = (time_t)sqlite3_column_int64(st, c + 10);
	a->mtime.tv_nsec = (long)sqlite3_column_int64(st, c + 11);
	a->ctime.tv_sec = (time_t)sqlite3_column_int64(st, c + 12);
	a->ctime.tv_nsec = (long)sqlite3_column_int64(st, c + 13);
}

/* Copy an object name column into hash[META_HASH_LEN + 1]. */
static void col_hash(sqlite3_stmt *st, int c, char *hash)
{
	const unsigned char *t = sqlite3_column_text(st, c);
	size_t n = t ? (size_t)sqlite3_column_bytes(st, c) : 0;

	n = MF_MIN(n, (size_t)META_HASH_LEN);
	if (n)
		memcpy(hash, t, n);
	hash[n] = 0;
}

/* ---- locking and transactions ---- */

static int meta_lock(struct meta *m)
{
	int rc = pthread_mutex_lock(&m->lock);

	if (rc) {
		/* EDEADLK: a callback called back into meta under the lock. */
		log_error("meta: cannot take the lock (error %d)", rc);
		return -rc;
	}
	return 0;
}

static void meta_unlock(struct meta *m)
{
	int rc = pthread_mutex_unlock(&m->lock);

	assert(rc == 0);
	(void)rc;
}

#ifndef NDEBUG
static bool no_busy_stmt(struct meta *m)
{
	sqlite3_stmt *st;

	for (st = sqlite3_next_stmt(m->db, NULL); st;
	     st = sqlite3_next_stmt(m->db, st))
		if (sqlite3_stmt_busy(st))
			return false;
	return true;
}
#endif

/* What a transaction does with batched write attributes (meta_pend.c,
 * invariant 1). */
enum pend_mode {
	PEND_FORGET,	/* write them, forget them: any transaction */
	PEND_KEEP,	/* write them, keep them: changes only the size and
			 * times of an inode that has no record */
	PEND_IGNORE,	/* neither: reads no size or time, changes nothing */
};

static int txn_begin(struct meta *m, enum meta_txn kind, enum pend_mode pm)
{
	int rc = meta_lock(m);

	if (rc)
		return rc;
	if (pm != PEND_IGNORE)
		rc = meta_pend_flush_locked(m, pm == PEND_FORGET);
	if (rc) {
		meta_unlock(m);
		return rc;
	}
	m->note_ino = 0;
	m->txn = kind;
	if (kind == META_TXN_NONE)
		return 0;
	m->txn_changes = sqlite3_total_changes64(m->db);
	rc = run(m, m->st[kind == META_TXN_WRITE ? ST_BEGIN : ST_BEGIN_READ]);
	if (rc) {
		m->txn = META_TXN_NONE;
		meta_unlock(m);
	}
	return rc;
}

int meta_txn_begin(struct meta *m, enum meta_txn kind)
{
	return txn_begin(m, kind, PEND_FORGET);
}

int meta_txn_end(struct meta *m, int rc)
{
	int crc;

	if (m->txn != META_TXN_NONE) {
		if (rc >= 0) {
			crc = run(m, m->st[ST_COMMIT]);
			if (crc)
				rc = crc;
			else if (m->txn == META_TXN_WRITE &&
				 sqlite3_total_changes64(m->db) !=
					 m->txn_changes)
				m->change_count++;
			if (!crc && m->note_ino)
				meta_pend_note_locked(m, m->note_ino,
						      m->note_size,
						      &m->note_time);
		}
		/* Some errors (FULL, NOMEM, IOERR) already rolled back. */
		if (rc < 0 && !sqlite3_get_autocommit(m->db))
			run(m, m->st[ST_ROLLBACK]);
	}
	assert(no_busy_stmt(m));
	m->txn = META_TXN_NONE;
	m->note_ino = 0;
	meta_unlock(m);
	return rc;
}

/* ---- open / close ---- */

static int exec_sql(struct meta *m, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(m->db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		log_error("meta: %s: %s", sql, err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		switch (rc & 0xff) {
		case SQLITE_FULL:
			return -ENOSPC;
		case SQLITE_NOMEM:
			return -ENOMEM;
		default:
			return -EIO;
		}
	}
	return 0;
}

static struct timespec ts_now(const struct timespec *now)
{
	struct timespec ts;

	if (now)
		return *now;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

static int config_get_locked(struct meta *m, const char *key,
			     struct buf *out)
{
	sqlite3_stmt *st = m->st[ST_CONFIG_GET];
	int rc;

	bind_text(st, 1, key);
	rc = meta_step(m, st);
	if (rc > 0)
		rc = buf_append(out, sqlite3_column_text(st, 0),
				(size_t)sqlite3_column_bytes(st, 0));
	else if (rc == 0)
		rc = -ENOENT;
	sqlite3_reset(st);
	return rc;
}

static int config_set_locked(struct meta *m, const char *key,
			     const char *value)
{
	sqlite3_stmt *st = m->st[ST_CONFIG_SET];

	bind_text(st, 1, key);
	bind_text(st, 2, value);
	return run(m, st);
}

static int create_root(struct meta *m, uint32_t uid, uint32_t gid)
{
	static const char sql[] =
		"INSERT INTO inode(ino, mode, uid, gid, nlink, size, rdev,"
		" nblocks, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s,"
		" ctime_ns, parent, target) VALUES (?1, ?2, ?3, ?4, 2, 0, 0,"
		" 0, ?5, ?6, ?5, ?6, ?5, ?6, ?1, NULL)";
	struct timespec now = ts_now(NULL);
	sqlite3_stmt *st;
	int rc;

	rc = meta_prepare(m, sql, &st);
	if (rc)
		return rc;
	bind_i64(st, 1, META_ROOT_INO);
	bind_i64(st, 2, S_IFDIR | 0755);
	bind_i64(st, 3, uid);
	bind_i64(st, 4, gid);
	bind_time(st, 5, &now);
	rc = run(m, st);
	sqlite3_finalize(st);
	return rc;
}

/* Create the schema and the root, or check an existing database. */
static int init_schema(struct meta *m, uint32_t block_size, uint32_t uid,
		       uint32_t gid)
{
	struct buf val = BUF_INIT;
	char num[24];
	int rc;

	rc = config_get_locked(m, "format", &val);
	if (rc == -ENOENT) {
		if (block_size == 0) {
			log_error("meta: a new volume needs a block size");
			return -EINVAL;
		}
		snprintf(num, sizeof(num), "%" PRIu32, block_size);
		rc = config_set_locked(m, "format", META_FORMAT);
		if (!rc)
			rc = config_set_locked(m, "block_size", num);
		if (!rc)
			rc = create_root(m, uid, gid);
		if (!rc)
			m->block_size = block_size;
		return rc;
	}
	if (rc)
		goto out_free_val;
	if (strcmp(buf_str(&val), META_FORMAT) != 0) {
		log_error("meta: unsupported metadata format \"%s\"",
			  buf_str(&val));
		rc = -EINVAL;
		goto out_free_val;
	}
	buf_reset(&val);
	rc = config_get_locked(m, "block_size", &val);
	if (rc)
		goto out_free_val;
	m->block_size = (uint32_t)strtoul(buf_str(&val), NULL, 10);
	if (m->block_size == 0 ||
	    (block_size != 0 && block_size != m->block_size)) {
		log_error("meta: block size %" PRIu32 " does not match the"
			  " volume's %s", block_size, buf_str(&val));
		rc = -EINVAL;
	}
out_free_val:
	buf_free(&val);
	return rc;
}

static int setup_connection(struct meta *m)
{
	sqlite3_busy_timeout(m->db, 2000);
	return exec_sql(m, "PRAGMA journal_mode = WAL;"
			   "PRAGMA synchronous = NORMAL;"
			   "PRAGMA foreign_keys = OFF;"
			   "PRAGMA temp_store = MEMORY;"
			   "PRAGMA cache_size = -16384;");
}

/* An existing database must be ours: never add tables to another one. */
static int check_ours(struct meta *m)
{
	static const char sql[] =
		"SELECT (SELECT count(*) FROM sqlite_schema"
		" WHERE type = 'table'"
		" AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'),"
		" (SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
		" AND name = 'config')";
	sqlite3_stmt *st;
	int64_t tables = 0, config = 0;
	int rc;

	rc = meta_prepare(m, sql, &st);
	if (rc)
		return rc;
	rc = meta_step(m, st);
	if (rc > 0) {
		tables = sqlite3_column_int64(st, 0);
		config = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (rc < 0 || tables == 0)
		return rc < 0 ? rc : 0;
	if (config) {
		rc = meta_prepare(m, "SELECT value FROM config"
				     " WHERE key = 'format'", &st);
		if (rc)
			return rc;
		rc = meta_step(m, st);
		sqlite3_finalize(st);
		if (rc)
			return rc < 0 ? rc : 0;
	}
	log_error("meta: the database holds tables but is not a metafuse"
		  " volume");
	return -EINVAL;
}

static int prepare_all(struct meta *m)
{
	int i, rc;

	for (i = 0; i < ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(m->db, stmt_sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &m->st[i],
					NULL);
		if (rc != SQLITE_OK)
			return meta_sql_err(m, rc, stmt_sql[i]);
	}
	return 0;
}

/*
 * Databases made before the schema lost UNIQUE(parent, name) on dentry
 * (see the data model) get the table rebuilt without it, ids and the
 * AUTOINCREMENT sequence kept.  Runs inside meta_open's transaction,
 * before the journal records anything.
 */
static int drop_unique(struct meta *m)
{
	sqlite3_stmt *st = NULL;
	bool old = false;
	int rc = sqlite3_prepare_v2(m->db, "SELECT sql FROM sqlite_master"
				    " WHERE type = 'table' AND name = 'dentry'",
				    -1, &st, NULL);

	if (rc != SQLITE_OK)
		return meta_sql_err(m, rc, "dentry schema");
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *sql = (const char *)sqlite3_column_text(st, 0);

		old = sql && strstr(sql, "UNIQUE");
	}
	sqlite3_finalize(st);
	if (!old)
		return 0;
	log_info("meta: dropping the UNIQUE constraint of dentry (schema "
		 "upgrade)");
	return exec_sql(m,
		"CREATE TEMP TABLE dentry_seq AS SELECT seq FROM"
		" sqlite_sequence WHERE name = 'dentry';"
		"CREATE TABLE dentry_new ("
		" id INTEGER PRIMARY KEY AUTOINCREMENT,"
		" parent INTEGER NOT NULL,"
		" name BLOB NOT NULL,"
		" ino INTEGER NOT NULL);"
		"INSERT INTO dentry_new(id, parent, name, ino)"
		" SELECT id, parent, name, ino FROM dentry;"
		"DROP TABLE dentry;"
		"ALTER TABLE dentry_new RENAME TO dentry;"
		"UPDATE sqlite_sequence SET seq = max(seq,"
		" (SELECT seq FROM temp.dentry_seq)) WHERE name = 'dentry'"
		" AND EXISTS (SELECT 1 FROM temp.dentry_seq);"
		"DROP TABLE temp.dentry_seq;"
		"CREATE INDEX dentry_parent_id ON dentry(parent, id);");
}

int meta_open(const char *path, uint32_t block_size, uint32_t root_uid,
	      uint32_t root_gid, struct meta **out)
{
	pthread_mutexattr_t ma;
	const char *fname;
	struct meta *m;
	int rc;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->st = calloc(ST_COUNT, sizeof(*m->st));
	if (!m->st) {
		rc = -ENOMEM;
		goto out_free_m;
	}
	rc = -pthread_mutexattr_init(&ma);
	if (rc)
		goto out_free_st;
#ifndef NDEBUG
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
#endif
	rc = -pthread_mutex_init(&m->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	if (rc)
		goto out_free_st;

	rc = sqlite3_open_v2(path, &m->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		rc = meta_sql_err(m, rc, path);
		goto out_close_db;
	}
	rc = setup_connection(m);
	if (rc)
		goto out_close_db;
	rc = exec_sql(m, "BEGIN IMMEDIATE");
	if (rc)
		goto out_close_db;
	rc = check_ours(m);
	if (!rc)
		rc = exec_sql(m, schema_sql);
	if (!rc)
		rc = drop_unique(m);
	if (!rc)
		rc = exec_sql(m, "CREATE INDEX IF NOT EXISTS dentry_name"
				 " ON dentry(parent, name)");
	/* The counters first (they count the root made by init_schema()),
	 * then the statements, which init_schema() uses. */
	if (!rc)
		rc = exec_sql(m, stats_sql);
	if (!rc)
		rc = prepare_all(m);
	if (!rc)
		rc = init_schema(m, block_size, root_uid, root_gid);
	if (!rc)
		rc = exec_sql(m, "COMMIT");
	if (rc) {
		if (!sqlite3_get_autocommit(m->db))
			exec_sql(m, "ROLLBACK");
		goto out_close_db;
	}
	fname = sqlite3_db_filename(m->db, "main");
	if (fname && *fname) {
		m->path = strdup(fname);
		if (!m->path) {
			rc = -ENOMEM;
			goto out_close_db;
		}
	}
	rc = meta_pend_open(m);
	if (rc)
		goto out_close_db;
	*out = m;
	return 0;

out_close_db:
	meta_pend_close(m);
	free(m->path);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(m->st[i]);
	sqlite3_close(m->db);
	pthread_mutex_destroy(&m->lock);
out_free_st:
	free(m->st);
out_free_m:
	free(m);
	return rc;
}

void meta_close(struct meta *m)
{
	int i;

	if (!m)
		return;
	/* what is left stays in the file for the next open otherwise */
	if (meta_lock(m) == 0) {
		meta_pend_flush_locked(m, true);
		meta_unlock(m);
	}
	meta_pend_close(m);
	meta_journal_stop(m);
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(m->st[i]);
	if (sqlite3_close(m->db) != SQLITE_OK)
		log_error("meta: close: %s", sqlite3_errmsg(m->db));
	pthread_mutex_destroy(&m->lock);
	free(m->path);
	free(m->st);
	free(m);
}

uint32_t meta_block_size(const struct meta *m)
{
	return m->block_size;
}

/* ---- config ---- */

int meta_config_get(struct meta *m, const char *key, struct buf *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, config_get_locked(m, key, out));
}

int meta_config_set(struct meta *m, const char *key, const char *value)
{
	int rc;

	if (!key || !value)
		return -EINVAL;
	/* Changing either would silently reinterpret the whole volume. */
	if (!strcmp(key, "format") || !strcmp(key, "block_size"))
		return -EPERM;
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	return meta_txn_end(m, config_set_locked(m, key, value));
}

uint64_t meta_config_get_u64(struct meta *m, const char *key, uint64_t def)
{
	struct buf val = BUF_INIT;
	unsigned long long v;
	const char *s;
	char *end;

	if (meta_config_get(m, key, &val))
		goto out_free_val;
	s = buf_str(&val);
	if (*s < '0' || *s > '9')
		goto out_free_val;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end) {
		log_warn("meta: config %s = \"%s\" is not a number", key, s);
		goto out_free_val;
	}
	def = v;
out_free_val:
	buf_free(&val);
	return def;
}

int meta_config_set_u64(struct meta *m, const char *key, uint64_t value)
{
	return meta_config_set_u64s(m, &key, &value, 1);
}

int meta_config_set_u64s(struct meta *m, const char *const *keys,
			 const uint64_t *values, size_t n)
{
	char num[24];
	size_t i;
	int rc;

	for (i = 0; i < n; i++)
		if (!keys[i] || !strcmp(keys[i], "format") ||
		    !strcmp(keys[i], "block_size"))
			return keys[i] ? -EPERM : -EINVAL;
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	for (i = 0; rc == 0 && i < n; i++) {
		snprintf(num, sizeof(num), "%" PRIu64, values[i]);
		rc = config_set_locked(m, keys[i], num);
	}
	return meta_txn_end(m, rc);
}

/* ---- namespace helpers (lock held) ---- */

/* A name to look up: -EINVAL when empty, -ENAMETOOLONG past the limit. */
static int name_len(const char *name, size_t *len)
{
	size_t n;

	if (!name || !*name)
		return -EINVAL;
	n = strnlen(name, META_NAME_MAX + 1);
	if (n > META_NAME_MAX)
		return -ENAMETOOLONG;
	*len = n;
	return 0;
}

/* A name to create: also no '/', ".", "..". */
static int new_name_len(const char *name, size_t *len)
{
	int rc = name_len(name, len);

	if (rc)
		return rc;
	if (memchr(name, '/', *len) || !strcmp(name, ".") ||
	    !strcmp(name, ".."))
		return -EINVAL;
	return 0;
}

static int inode_get(struct meta *m, uint64_t ino, struct meta_attr *a)
{
	sqlite3_stmt *st = m->st[ST_INODE_GET];
	int rc;

	bind_u64(st, 1, ino);
	rc = meta_step(m, st);
	if (rc > 0)
		col_attr(st, 0, a);
	sqlite3_reset(st);
	return rc > 0 ? 0 : rc == 0 ? -ENOENT : rc;
}

/* -ENOENT when missing (or, with live, removed), -ENOTDIR. */
static int dir_get(struct meta *m, uint64_t ino, struct meta_attr *a,
		   bool live)
{
	int rc = inode_get(m, ino, a);

	if (rc)
		return rc;
	if (!S_ISDIR(a->mode))
		return -ENOTDIR;
	if (live && a->nlink == 0)
		return -ENOENT;
	return 0;
}

/* The error for a name missing from parent: -ENOENT or -ENOTDIR. */
static int missing_entry(struct meta *m, uint64_t parent)
{
	struct meta_attr pa;
	int rc = dir_get(m, parent, &pa, false);

	return rc ? rc : -ENOENT;
}

static int dentry_find(struct meta *m, uint64_t parent, const char *name,
		       size_t len, int64_t *id, struct meta_attr *a)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_FIND];
	int rc;

	bind_u64(st, 1, parent);
	bind_blob(st, 2, name, len);
	rc = meta_step(m, st);
	if (rc > 0) {
		*id = sqlite3_column_int64(st, 0);
		col_attr(st, 1, a);
	}
	sqlite3_reset(st);
	return rc > 0 ? 0 : rc == 0 ? -ENOENT : rc;
}

/* 1 if parent holds name, 0 if not, or -errno. */
static int dentry_exists(struct meta *m, uint64_t parent, const char *name,
			 size_t len)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_EXISTS];
	int rc;

	bind_u64(st, 1, parent);
	bind_blob(st, 2, name, len);
	rc = meta_step(m, st);
	sqlite3_reset(st);
	return rc;
}

static int dentry_insert(struct meta *m, uint64_t parent, const char *name,
			 size_t len, uint64_t ino)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_INSERT];

	bind_u64(st, 1, parent);
	bind_blob(st, 2, name, len);
	bind_u64(st, 3, ino);
	return run(m, st);
}

static int dentry_delete(struct meta *m, int64_t id)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_DELETE];

	bind_i64(st, 1, id);
	return run(m, st);
}

/* 1 if dir has at least one entry, 0 if empty, or -errno. */
static int dir_has_entries(struct meta *m, uint64_t dir)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_ANY];
	int rc;

	bind_u64(st, 1, dir);
	rc = meta_step(m, st);
	sqlite3_reset(st);
	return rc;
}

/* A directory's content changed: mtime = ctime = now, nlink += delta. */
static int dir_touch(struct meta *m, uint64_t dir, int delta,
		     const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_INODE_DIR_TOUCH];

	bind_u64(st, 1, dir);
	bind_i64(st, 2, delta);
	bind_time(st, 3, now);
	return run(m, st);
}

static int set_nlink(struct meta *m, uint64_t ino, uint32_t nlink,
		     const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_INODE_NLINK];

	bind_u64(st, 1, ino);
	bind_i64(st, 2, nlink);
	bind_time(st, 3, now);
	return run(m, st);
}

/* An inode got a new name: ctime = now; parent column for directories. */
static int set_moved(struct meta *m, const struct meta_attr *a,
		     uint64_t newparent, const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_INODE_MOVED];

	bind_u64(st, 1, a->ino);
	bind_time(st, 2, now);
	if (S_ISDIR(a->mode))
		bind_u64(st, 4, newparent);
	else
		bind_null(st, 4);
	return run(m, st);
}

static int nblocks_add(struct meta *m, uint64_t ino, int64_t delta)
{
	sqlite3_stmt *st = m->st[ST_INODE_NBLOCKS];

	if (delta == 0)
		return 0;
	bind_u64(st, 1, ino);
	bind_i64(st, 2, delta);
	return run(m, st);
}

static uint64_t blocks_for(const struct meta *m, uint64_t size)
{
	return size / m->block_size + (size % m->block_size != 0);
}

/* Run statement id, a range [first, last] of blocks of ino. */
static int range_run(struct meta *m, int id, uint64_t ino, uint64_t first,
		     uint64_t last)
{
	sqlite3_stmt *st = m->st[id];

	bind_u64(st, 1, ino);
	bind_u64(st, 2, first);
	bind_u64(st, 3, last);
	return run(m, st);
}

/* Remove the patch rows of blocks [first, last] of ino (last <=
 * INT64_MAX), decrementing the refcounts of the objects they name. */
static int patches_drop(struct meta *m, uint64_t ino, uint64_t first,
			uint64_t last)
{
	int rc = range_run(m, ST_PATCH_UNREF_RANGE, ino, first, last);

	return rc ? rc : range_run(m, ST_PATCH_DELETE_RANGE, ino, first,
				   last);
}

/*
 * Remove block rows [first, last] of ino and their patches, decrementing
 * the refcounts of the objects they name (one UPDATE .. FROM for the
 * whole range) and ino's nblocks.
 */
static int blocks_drop(struct meta *m, uint64_t ino, uint64_t first,
		       uint64_t last)
{
	int rc;

	if (first > INT64_MAX)
		return 0;
	last = MF_MIN(last, (uint64_t)INT64_MAX);
	if (first > last)
		return 0;
	rc = patches_drop(m, ino, first, last);
	if (!rc)
		rc = range_run(m, ST_BLOCK_UNREF_RANGE, ino, first, last);
	if (!rc)
		rc = range_run(m, ST_BLOCK_DELETE_RANGE, ino, first, last);
	if (rc)
		return rc;
	return nblocks_add(m, ino, -sqlite3_changes64(m->db));
}

/* ---- namespace ---- */

int meta_getattr(struct meta *m, uint64_t ino, struct meta_attr *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, inode_get(m, ino, out));
}

static int lookup_locked(struct meta *m, uint64_t parent, const char *name,
			 struct meta_attr *out)
{
	struct meta_attr pa;
	sqlite3_stmt *st;
	size_t len;
	int64_t id;
	int rc;

	rc = name_len(name, &len);
	if (rc)
		return rc;
	/* The kernel asks for these only with export support (NFS). */
	if (!strcmp(name, ".") || !strcmp(name, "..")) {
		rc = dir_get(m, parent, &pa, false);
		if (rc)
			return rc;
		if (name[1] == 0) {
			*out = pa;
			return 0;
		}
		st = m->st[ST_INODE_PARENT];
		bind_u64(st, 1, parent);
		rc = meta_step(m, st);
		if (rc > 0)
			parent = col_u64(st, 1);
		sqlite3_reset(st);
		if (rc < 0)
			return rc;
		return inode_get(m, parent, out);
	}
	rc = dentry_find(m, parent, name, len, &id, out);
	if (rc == -ENOENT)
		return missing_entry(m, parent);
	return rc;
}

int meta_lookup(struct meta *m, uint64_t parent, const char *name,
		struct meta_attr *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, lookup_locked(m, parent, name, out));
}

static bool valid_type(uint32_t type)
{
	switch (type) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK:
		return true;
	default:
		return false;
	}
}

int meta_mknod_locked(struct meta *m, uint64_t parent, const char *name,
		      uint32_t mode, uint64_t rdev, uint32_t uid,
		      uint32_t gid, const char *target,
		      const struct timespec *now, struct meta_attr *out)
{
	uint32_t type = mode & S_IFMT;
	struct meta_attr pa, a;
	size_t len, tlen = 0;
	sqlite3_stmt *st;
	int rc;

	if (!valid_type(type))
		return -EINVAL;
	rc = new_name_len(name, &len);
	if (rc)
		return rc;
	if (type == S_IFLNK) {
		if (!target)
			return -EINVAL;
		tlen = strnlen(target, META_SYMLINK_MAX + 1);
		if (tlen == 0)
			return -ENOENT;
		if (tlen > META_SYMLINK_MAX)
			return -ENAMETOOLONG;
	}
	rc = dir_get(m, parent, &pa, true);
	if (rc)
		return rc;
	rc = dentry_exists(m, parent, name, len);
	if (rc)
		return rc < 0 ? rc : -EEXIST;
	if (type == S_IFDIR && pa.nlink >= META_LINK_MAX)
		return -EMLINK;
	if (pa.mode & S_ISGID) {
		gid = pa.gid;
		if (type == S_IFDIR)
			mode |= S_ISGID;
	}

	memset(&a, 0, sizeof(a));
	a.mode = type | (mode & 07777);
	a.uid = uid;
	a.gid = gid;
	a.nlink = type == S_IFDIR ? 2 : 1;
	a.size = tlen;
	a.rdev = (type == S_IFCHR || type == S_IFBLK) ? rdev : 0;
	a.atime = a.mtime = a.ctime = *now;

	st = m->st[ST_INODE_INSERT];
	bind_i64(st, 1, a.mode);
	bind_i64(st, 2, a.uid);
	bind_i64(st, 3, a.gid);
	bind_i64(st, 4, a.nlink);
	bind_u64(st, 5, a.size);
	bind_u64(st, 6, a.rdev);
	bind_time(st, 7, now);
	if (type == S_IFDIR)
		bind_u64(st, 9, parent);
	else
		bind_null(st, 9);
	if (type == S_IFLNK)
		bind_blob(st, 10, target, tlen);
	else
		bind_null(st, 10);
	rc = run(m, st);
	if (rc)
		return rc;
	a.ino = (uint64_t)sqlite3_last_insert_rowid(m->db);
	rc = dentry_insert(m, parent, name, len, a.ino);
	if (!rc)
		rc = dir_touch(m, parent, type == S_IFDIR, now);
	if (!rc && out)
		*out = a;
	return rc;
}

int meta_mknod(struct meta *m, uint64_t parent, const char *name,
	       uint32_t mode, uint64_t rdev, uint32_t uid, uint32_t gid,
	       const char *target, const struct timespec *now,
	       struct meta_attr *out)
{
	struct timespec t = ts_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = meta_mknod_locked(m, parent, name, mode, rdev, uid, gid, target,
			       &t, out);
	return meta_txn_end(m, rc);
}

static int link_locked(struct meta *m, uint64_t ino, uint64_t newparent,
		       const char *newname, const struct timespec *now,
		       struct meta_attr *out)
{
	struct meta_attr a, pa;
	size_t len;
	int rc;

	rc = new_name_len(newname, &len);
	if (rc)
		return rc;
	rc = inode_get(m, ino, &a);
	if (rc)
		return rc;
	if (S_ISDIR(a.mode))
		return -EPERM;
	/* As the kernel: no new name for an unlinked inode. */
	if (a.nlink == 0)
		return -ENOENT;
	if (a.nlink >= META_LINK_MAX)
		return -EMLINK;
	rc = dir_get(m, newparent, &pa, true);
	if (rc)
		return rc;
	rc = dentry_exists(m, newparent, newname, len);
	if (rc)
		return rc < 0 ? rc : -EEXIST;
	rc = dentry_insert(m, newparent, newname, len, ino);
	if (!rc)
		rc = set_nlink(m, ino, a.nlink + 1, now);
	if (!rc)
		rc = dir_touch(m, newparent, 0, now);
	if (!rc && out) {
		a.nlink++;
		a.ctime = *now;
		*out = a;
	}
	return rc;
}

int meta_link(struct meta *m, uint64_t ino, uint64_t newparent,
	      const char *newname, const struct timespec *now,
	      struct meta_attr *out)
{
	struct timespec t = ts_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = link_locked(m, ino, newparent, newname, &t, out);
	return meta_txn_end(m, rc);
}

static int unlink_locked(struct meta *m, uint64_t parent, const char *name,
			 const struct timespec *now, uint64_t *ino_out,
			 bool dir)
{
	struct meta_attr a;
	size_t len;
	int64_t id;
	int rc;

	rc = name_len(name, &len);
	if (rc)
		return rc;
	rc = dentry_find(m, parent, name, len, &id, &a);
	if (rc == -ENOENT)
		return missing_entry(m, parent);
	if (rc)
		return rc;
	if (!dir && S_ISDIR(a.mode))
		return -EISDIR;
	if (dir) {
		if (!S_ISDIR(a.mode))
			return -ENOTDIR;
		rc = dir_has_entries(m, a.ino);
		if (rc)
			return rc < 0 ? rc : -ENOTEMPTY;
	}
	rc = dentry_delete(m, id);
	if (!rc)
		rc = set_nlink(m, a.ino, dir || !a.nlink ? 0 : a.nlink - 1,
			       now);
	if (!rc)
		rc = dir_touch(m, parent, dir ? -1 : 0, now);
	if (!rc && ino_out)
		*ino_out = a.ino;
	return rc;
}

int meta_unlink(struct meta *m, uint64_t parent, const char *name,
		const struct timespec *now, uint64_t *ino_out)
{
	struct timespec t = ts_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = unlink_locked(m, parent, name, &t, ino_out, false);
	return meta_txn_end(m, rc);
}

int meta_rmdir(struct meta *m, uint64_t parent, const char *name,
	       const struct timespec *now, uint64_t *ino_out)
{
	struct timespec t = ts_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = unlink_locked(m, parent, name, &t, ino_out, true);
	return meta_txn_end(m, rc);
}

/*
 * -EINVAL if directory dir is start or one of its ancestors.  Walks the
 * inode.parent chain from start up to the root: O(depth).
 */
static int check_not_ancestor(struct meta *m, uint64_t dir, uint64_t start)
{
	sqlite3_stmt *st = m->st[ST_INODE_PARENT];
	uint64_t x = start, up = 0;
	unsigned long steps;
	uint32_t mode = 0;
	int rc;

	for (steps = 0; steps < META_MAX_DEPTH; steps++) {
		if (x == dir)
			return -EINVAL;
		if (x == META_ROOT_INO)
			return 0;
		bind_u64(st, 1, x);
		rc = meta_step(m, st);
		if (rc > 0) {
			mode = (uint32_t)col_u64(st, 0);
			up = col_u64(st, 1);
		}
		sqlite3_reset(st);
		if (rc < 0)
			return rc;
		if (rc == 0 || !S_ISDIR(mode))
			break;
		x = up;
	}
	log_error("meta: broken parent chain above directory %" PRIu64
		  " (at %" PRIu64 "); run fsck", start, x);
	return -EIO;
}

struct rename_side {
	uint64_t dir;
	int64_t id;
	struct meta_attr a;
	int delta; /* change of dir's nlink */
};

static int rename_exchange(struct meta *m, struct rename_side *s,
			   struct rename_side *d, const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_DENTRY_SET_INO];
	int rc;

	bind_i64(st, 1, s->id);
	bind_u64(st, 2, d->a.ino);
	rc = run(m, st);
	if (rc)
		return rc;
	bind_i64(st, 1, d->id);
	bind_u64(st, 2, s->a.ino);
	rc = run(m, st);
	if (!rc)
		rc = set_moved(m, &s->a, d->dir, now);
	if (!rc)
		rc = set_moved(m, &d->a, s->dir, now);
	if (s->dir != d->dir) {
		if (S_ISDIR(s->a.mode)) {
			s->delta--;
			d->delta++;
		}
		if (S_ISDIR(d->a.mode)) {
			d->delta--;
			s->delta++;
		}
	}
	return rc;
}

static int rename_replace(struct meta *m, struct rename_side *s,
			  struct rename_side *d, bool have_dst,
			  const char *newname, size_t newlen,
			  const struct timespec *now, uint64_t *replaced)
{
	sqlite3_stmt *st;
	int rc;

	if (have_dst) {
		rc = dentry_delete(m, d->id);
		if (!rc && S_ISDIR(d->a.mode)) {
			rc = set_nlink(m, d->a.ino, 0, now);
			d->delta--;
		} else if (!rc) {
			rc = set_nlink(m, d->a.ino,
				       d->a.nlink ? d->a.nlink - 1 : 0, now);
		}
		if (rc)
			return rc;
		*replaced = d->a.ino;
	}
	st = m->st[ST_DENTRY_MOVE];
	bind_i64(st, 1, s->id);
	bind_u64(st, 2, d->dir);
	bind_blob(st, 3, newname, newlen);
	rc = run(m, st);
	if (!rc)
		rc = set_moved(m, &s->a, d->dir, now);
	if (S_ISDIR(s->a.mode) && s->dir != d->dir) {
		s->delta--;
		d->delta++;
	}
	return rc;
}

static int rename_locked(struct meta *m, uint64_t parent, const char *name,
			 uint64_t newparent, const char *newname,
			 unsigned flags, const struct timespec *now,
			 uint64_t *replaced)
{
	const unsigned both = META_RENAME_NOREPLACE | META_RENAME_EXCHANGE;
	struct rename_side s = { .dir = parent }, d = { .dir = newparent };
	struct meta_attr npa;
	bool have_dst, sdir, ddir;
	size_t len, newlen;
	int rc;

	if ((flags & ~both) || (flags & both) == both)
		return -EINVAL;
	rc = name_len(name, &len);
	if (!rc)
		rc = new_name_len(newname, &newlen);
	if (rc)
		return rc;
	rc = dentry_find(m, parent, name, len, &s.id, &s.a);
	if (rc == -ENOENT)
		return missing_entry(m, parent);
	if (rc)
		return rc;
	rc = dir_get(m, newparent, &npa, true);
	if (rc)
		return rc;
	rc = dentry_find(m, newparent, newname, newlen, &d.id, &d.a);
	if (rc && rc != -ENOENT)
		return rc;
	have_dst = rc == 0;
	if (have_dst && (flags & META_RENAME_NOREPLACE))
		return -EEXIST;
	if (!have_dst && (flags & META_RENAME_EXCHANGE))
		return -ENOENT;
	if (have_dst && d.a.ino == s.a.ino)
		return 0;
	sdir = S_ISDIR(s.a.mode);
	ddir = have_dst && S_ISDIR(d.a.mode);

	if (parent != newparent) {
		if (sdir) {
			rc = check_not_ancestor(m, s.a.ino, newparent);
			if (rc)
				return rc;
		}
		if (ddir && (flags & META_RENAME_EXCHANGE)) {
			rc = check_not_ancestor(m, d.a.ino, parent);
			if (rc)
				return rc;
		}
	}
	if (have_dst && !(flags & META_RENAME_EXCHANGE)) {
		if (sdir && !ddir)
			return -ENOTDIR;
		if (!sdir && ddir)
			return -EISDIR;
		if (ddir) {
			rc = dir_has_entries(m, d.a.ino);
			if (rc)
				return rc < 0 ? rc : -ENOTEMPTY;
		}
	}
	if (sdir && !ddir && parent != newparent &&
	    npa.nlink >= META_LINK_MAX)
		return -EMLINK;

	if (flags & META_RENAME_EXCHANGE)
		rc = rename_exchange(m, &s, &d, now);
	else
		rc = rename_replace(m, &s, &d, have_dst, newname, newlen, now,
				    replaced);
	if (rc)
		return rc;
	if (parent == newparent)
		return dir_touch(m, parent, s.delta + d.delta, now);
	rc = dir_touch(m, parent, s.delta, now);
	if (!rc)
		rc = dir_touch(m, newparent, d.delta, now);
	return rc;
}

int meta_rename(struct meta *m, uint64_t parent, const char *name,
		uint64_t newparent, const char *newname, unsigned flags,
		const struct timespec *now, uint64_t *replaced_ino)
{
	struct timespec t = ts_now(now);
	uint64_t replaced = 0;
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = rename_locked(m, parent, name, newparent, newname, flags, &t,
			   &replaced);
	rc = meta_txn_end(m, rc);
	if (replaced_ino)
		*replaced_ino = rc ? 0 : replaced;
	return rc;
}

static int inode_put(struct meta *m, const struct meta_attr *a)
{
	sqlite3_stmt *st = m->st[ST_INODE_PUT];

	bind_u64(st, 1, a->ino);
	bind_i64(st, 2, a->mode);
	bind_i64(st, 3, a->uid);
	bind_i64(st, 4, a->gid);
	bind_u64(st, 5, a->size);
	bind_time(st, 6, &a->atime);
	bind_time(st, 8, &a->mtime);
	bind_time(st, 10, &a->ctime);
	return run(m, st);
}

static int setattr_locked(struct meta *m, uint64_t ino,
			  const struct meta_attr *in, unsigned to_set,
			  const struct timespec *now, struct meta_attr *out)
{
	const unsigned all = META_SET_MODE | META_SET_UID | META_SET_GID |
			     META_SET_SIZE | META_SET_ATIME | META_SET_MTIME |
			     META_SET_CTIME;
	struct meta_attr a;
	int rc;

	if (to_set & ~all)
		return -EINVAL;
	rc = inode_get(m, ino, &a);
	if (rc)
		return rc;
	if (to_set & META_SET_SIZE) {
		if (S_ISDIR(a.mode))
			return -EISDIR;
		if (!S_ISREG(a.mode))
			return -EINVAL;
		if (in->size > INT64_MAX)
			return -EFBIG;
		if (in->size < a.size) {
			rc = blocks_drop(m, ino, blocks_for(m, in->size),
					 UINT64_MAX);
			if (rc)
				return rc;
		}
		a.size = in->size;
	}
	if (to_set & META_SET_MODE)
		a.mode = (a.mode & S_IFMT) | (in->mode & 07777);
	if (to_set & META_SET_UID)
		a.uid = in->uid;
	if (to_set & META_SET_GID)
		a.gid = in->gid;
	if (to_set & META_SET_ATIME)
		a.atime = in->atime;
	if (to_set & META_SET_MTIME)
		a.mtime = in->mtime;
	if (to_set & META_SET_CTIME)
		a.ctime = in->ctime;
	else if (to_set)
		a.ctime = *now;
	rc = inode_put(m, &a);
	if (!rc && out)
		rc = inode_get(m, ino, out); /* nblocks may have changed */
	return rc;
}

int meta_setattr(struct meta *m, uint64_t ino, const struct meta_attr *in,
		 unsigned to_set, const struct timespec *now,
		 struct meta_attr *out)
{
	struct timespec t = ts_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = setattr_locked(m, ino, in, to_set, &t, out);
	return meta_txn_end(m, rc);
}

/* Mark block idx of ino dirty; 1 if a row was created, 0, or -errno. */
static int block_mark_dirty(struct meta *m, uint64_t ino, uint64_t idx)
{
	sqlite3_stmt *st = m->st[ST_BLOCK_DIRTY];
	int rc;

	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	rc = run(m, st);
	if (rc || sqlite3_changes64(m->db) > 0)
		return rc;
	st = m->st[ST_BLOCK_INSERT];
	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	rc = run(m, st);
	return rc ? rc : 1;
}

static int write_done_locked(struct meta *m, uint64_t ino, uint64_t end,
			     const struct timespec *now, const uint64_t *idx,
			     size_t n)
{
	sqlite3_stmt *st;
	struct meta_attr a;
	uint64_t nblk;
	int64_t added = 0;
	size_t i;
	int rc;

	if (end > INT64_MAX)
		return -EFBIG;
	rc = inode_get(m, ino, &a);
	if (rc)
		return rc;
	if (!S_ISREG(a.mode))
		return S_ISDIR(a.mode) ? -EISDIR : -EINVAL;
	a.size = MF_MAX(a.size, end);
	nblk = blocks_for(m, a.size);
	for (i = 0; i < n; i++)
		if (idx[i] >= nblk)
			return -EINVAL; /* would break invariant 5 */
	st = m->st[ST_INODE_WRITE];
	bind_u64(st, 1, ino);
	bind_u64(st, 2, a.size);
	bind_time(st, 3, now);
	rc = run(m, st);
	for (i = 0; !rc && i < n; i++) {
		rc = block_mark_dirty(m, ino, idx[i]);
		if (rc > 0) {
			added++;
			rc = 0;
		}
	}
	if (!rc)
		rc = nblocks_add(m, ino, added);
	return rc;
}

int meta_write_done(struct meta *m, uint64_t ino, uint64_t end,
		    const struct timespec *now, const uint64_t *idx, size_t n)
{
	struct timespec t = ts_now(now);
	struct meta_attr a;
	int rc;

	/* no new dirty block: only size and times change (meta_pend.c) */
	if (n == 0) {
		bool done;

		rc = meta_lock(m);
		if (rc)
			return rc;
		done = meta_pend_write_locked(m, ino, end, &t);
		meta_unlock(m);
		if (done)
			return 0;
	}
	rc = txn_begin(m, META_TXN_WRITE, PEND_KEEP);
	if (rc)
		return rc;
	rc = write_done_locked(m, ino, end, &t, idx, n);
	if (rc == 0)
		rc = inode_get(m, ino, &a);
	if (rc == 0) {
		/* a file with data in blocks: later writes may batch */
		m->note_ino = ino;
		m->note_size = a.size;
		m->note_time = t;
	}
	return meta_txn_end(m, rc);
}

/* ---- inline data (small files kept in the database) ---- */

/* The inline data of ino into out (replacing it): 1, 0 when none. */
static int inline_get_locked(struct meta *m, uint64_t ino, struct buf *out)
{
	sqlite3_stmt *st = m->st[ST_INLINE_GET];
	int rc;

	buf_reset(out);
	bind_u64(st, 1, ino);
	rc = meta_step(m, st);
	if (rc > 0) {
		int n = sqlite3_column_bytes(st, 0);

		rc = buf_append(out, sqlite3_column_blob(st, 0), (size_t)n);
		rc = rc ? rc : 1;
	}
	sqlite3_reset(st);
	return rc;
}

static int inline_set_locked(struct meta *m, uint64_t ino,
			     const struct buf *data)
{
	sqlite3_stmt *st = m->st[ST_INLINE_SET];

	bind_u64(st, 1, ino);
	sqlite3_bind_blob(st, 2, data->len ? (const void *)data->data : "",
			  (int)data->len, SQLITE_STATIC);
	return run(m, st);
}

static int inline_delete_locked(struct meta *m, uint64_t ino)
{
	sqlite3_stmt *st = m->st[ST_INLINE_DELETE];

	bind_u64(st, 1, ino);
	return run(m, st);
}

/* Put len bytes at off into d, zero-filling a gap. */
static int patch(struct buf *d, uint64_t off, const void *data, size_t len)
{
	size_t end = (size_t)off + len;
	int rc = buf_reserve(d, end > d->len ? end - d->len : 0);

	if (rc)
		return rc;
	if (off > d->len)
		memset(d->data + d->len, 0, (size_t)off - d->len);
	if (data)
		memcpy(d->data + off, data, len);
	else
		memset(d->data + off, 0, len);
	if (end > d->len)
		d->len = end;
	return 0;
}

int meta_inline_write(struct meta *m, uint64_t ino, uint64_t off,
		      const void *data, size_t len, size_t max,
		      const struct timespec *now)
{
	struct timespec t = ts_now(now);
	struct buf d = BUF_INIT;
	struct meta_attr a;
	int rc, have;

	/* a file known to keep its data in blocks (meta_pend.c) */
	rc = meta_lock(m);
	if (rc)
		return rc;
	have = meta_pend_known_locked(m, ino);
	meta_unlock(m);
	if (have)
		return 0;
	/* only ino changes: the other inodes' records stay true */
	rc = txn_begin(m, META_TXN_WRITE, PEND_KEEP);
	if (rc)
		return rc;
	have = inline_get_locked(m, ino, &d);
	if (have < 0) {
		rc = have;
		goto out;
	}
	if (off > max || len > max - off) {
		rc = have ? 2 : 0; /* too big: to blocks, if it is inline */
		goto out;
	}
	rc = inode_get(m, ino, &a);
	if (rc)
		goto out;
	if (!have) {
		/* only an empty file without blocks becomes inline */
		if (!S_ISREG(a.mode) || a.size != 0 || a.nblocks != 0)
			goto out; /* rc 0: not inline */
	} else if (d.len > a.size) {
		d.len = (size_t)a.size; /* bytes a crash left past the size */
	}
	rc = patch(&d, off, data, len);
	if (!rc)
		rc = inline_set_locked(m, ino, &d);
	if (!rc)
		rc = write_done_locked(m, ino, off + len, &t, NULL, 0);
	if (!rc)
		rc = 1;
out:
	buf_free(&d);
	return meta_txn_end(m, rc);
}

int meta_inline_read(struct meta *m, uint64_t ino, struct buf *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	rc = inline_get_locked(m, ino, out);
	return meta_txn_end(m, rc > 0 ? 0 : rc == 0 ? -ENOENT : rc);
}

int meta_inline_to_block(struct meta *m, uint64_t ino)
{
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = inline_delete_locked(m, ino);
	if (!rc && sqlite3_changes64(m->db) > 0) {
		rc = block_mark_dirty(m, ino, 0);
		if (rc > 0)
			rc = nblocks_add(m, ino, 1);
	}
	return meta_txn_end(m, rc);
}

int meta_inline_cut(struct meta *m, uint64_t ino, uint64_t size,
		    uint64_t zero_off, uint64_t zero_len)
{
	struct buf d = BUF_INIT;
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = inline_get_locked(m, ino, &d);
	if (rc <= 0)
		goto out;
	if (size < d.len)
		d.len = (size_t)size;
	if (zero_off < d.len)
		rc = patch(&d, zero_off, NULL,
			   (size_t)MF_MIN(zero_len, d.len - zero_off));
	else
		rc = 0;
	if (!rc)
		rc = size == 0 ? inline_delete_locked(m, ino)
			       : inline_set_locked(m, ino, &d);
out:
	buf_free(&d);
	return meta_txn_end(m, rc);
}

static int ts_cmp(const struct timespec *a, const struct timespec *b)
{
	if (a->tv_sec != b->tv_sec)
		return a->tv_sec < b->tv_sec ? -1 : 1;
	if (a->tv_nsec != b->tv_nsec)
		return a->tv_nsec < b->tv_nsec ? -1 : 1;
	return 0;
}

bool meta_atime_due(const struct meta_attr *a, const struct timespec *now)
{
	return ts_cmp(&a->atime, &a->mtime) <= 0 ||
	       ts_cmp(&a->atime, &a->ctime) <= 0 ||
	       (int64_t)now->tv_sec - (int64_t)a->atime.tv_sec > 24 * 3600;
}

static int touch_atime_locked(struct meta *m, uint64_t ino,
			      const struct timespec *now)
{
	sqlite3_stmt *st;
	struct meta_attr a;
	int rc;

	rc = inode_get(m, ino, &a);
	if (rc)
		return rc;
	if (!meta_atime_due(&a, now))
		return 0;
	st = m->st[ST_INODE_ATIME];
	bind_u64(st, 1, ino);
	bind_time(st, 2, now);
	return run(m, st);
}

int meta_touch_atime(struct meta *m, uint64_t ino, const struct timespec *now)
{
	struct timespec t = ts_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	return meta_txn_end(m, touch_atime_locked(m, ino, &t));
}

static int readlink_locked(struct meta *m, uint64_t ino, struct buf *out)
{
	sqlite3_stmt *st = m->st[ST_INODE_TARGET];
	int rc;

	bind_u64(st, 1, ino);
	rc = meta_step(m, st);
	if (rc > 0) {
		if (S_ISLNK((uint32_t)col_u64(st, 0)))
			rc = buf_append(out, sqlite3_column_blob(st, 1),
					(size_t)sqlite3_column_bytes(st, 1));
		else
			rc = -EINVAL;
	} else if (rc == 0) {
		rc = -ENOENT;
	}
	sqlite3_reset(st);
	return rc;
}

int meta_readlink(struct meta *m, uint64_t ino, struct buf *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, readlink_locked(m, ino, out));
}

struct rd_entry {
	struct meta_attr attr;
	uint64_t cookie;
	char name[META_NAME_MAX + 1];
};

/* Up to RD_BATCH entries of dir with id > after into ents. */
static int readdir_batch(struct meta *m, uint64_t dir, int64_t after,
			 struct rd_entry *ents, size_t *n)
{
	sqlite3_stmt *st = m->st[ST_READDIR];
	struct rd_entry *e;
	size_t len;
	int rc;

	*n = 0;
	bind_u64(st, 1, dir);
	bind_i64(st, 2, after);
	bind_i64(st, 3, RD_BATCH);
	while ((rc = meta_step(m, st)) > 0) {
		e = &ents[(*n)++];
		e->cookie = col_u64(st, 0) + 2;
		len = (size_t)sqlite3_column_bytes(st, 1);
		len = MF_MIN(len, (size_t)META_NAME_MAX);
		if (len)
			memcpy(e->name, sqlite3_column_blob(st, 1), len);
		e->name[len] = 0;
		col_attr(st, 2, &e->attr);
	}
	sqlite3_reset(st);
	return rc;
}

int meta_readdir(struct meta *m, uint64_t dir, uint64_t off,
		 meta_readdir_cb cb, void *arg)
{
	struct rd_entry *ents;
	struct meta_attr a;
	bool first = true;
	int64_t after;
	size_t n = 0, i;
	int rc;

	/* Cookies 1 and 2 are "." and ".."; entry id k has cookie k + 2. */
	if (off < 2)
		after = 0;
	else if (off - 2 > INT64_MAX)
		after = INT64_MAX;
	else
		after = (int64_t)(off - 2);
	ents = malloc(RD_BATCH * sizeof(*ents));
	if (!ents)
		return -ENOMEM;
	for (;;) {
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			break;
		if (first)
			rc = dir_get(m, dir, &a, false);
		if (!rc)
			rc = readdir_batch(m, dir, after, ents, &n);
		rc = meta_txn_end(m, rc);
		if (rc)
			break;
		first = false;
		for (i = 0; i < n; i++)
			if (cb(ents[i].name, &ents[i].attr, ents[i].cookie,
			       arg))
				goto out_free_ents;
		if (n < RD_BATCH)
			break;
		after = (int64_t)(ents[n - 1].cookie - 2);
	}
out_free_ents:
	free(ents);
	return rc;
}

static int parent_locked(struct meta *m, uint64_t dir, uint64_t *parent)
{
	sqlite3_stmt *st = m->st[ST_INODE_PARENT];
	int rc;

	bind_u64(st, 1, dir);
	rc = meta_step(m, st);
	if (rc > 0) {
		if (S_ISDIR((uint32_t)col_u64(st, 0))) {
			*parent = col_u64(st, 1);
			rc = 0;
		} else {
			rc = -ENOTDIR;
		}
	} else if (rc == 0) {
		rc = -ENOENT;
	}
	sqlite3_reset(st);
	return rc;
}

int meta_parent(struct meta *m, uint64_t dir, uint64_t *parent)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, parent_locked(m, dir, parent));
}

int meta_last_cookie(struct meta *m, uint64_t *cookie)
{
	sqlite3_stmt *st;
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	st = m->st[ST_LAST_COOKIE];
	rc = meta_step(m, st);
	*cookie = rc == 1 ? col_u64(st, 0) + 2 : 2;
	sqlite3_reset(st);
	return meta_txn_end(m, rc < 0 ? rc : 0);
}

static int purge_locked(struct meta *m, uint64_t ino)
{
	struct meta_attr a;
	sqlite3_stmt *st;
	int rc;

	rc = inode_get(m, ino, &a);
	if (rc)
		return rc;
	if (a.nlink > 0)
		return -EBUSY;
	rc = blocks_drop(m, ino, 0, UINT64_MAX);
	if (rc)
		return rc;
	st = m->st[ST_INLINE_DELETE];
	bind_u64(st, 1, ino);
	rc = run(m, st);
	if (rc)
		return rc;
	st = m->st[ST_XATTR_PURGE];
	bind_u64(st, 1, ino);
	rc = run(m, st);
	if (rc)
		return rc;
	st = m->st[ST_INODE_DELETE];
	bind_u64(st, 1, ino);
	return run(m, st);
}

int meta_inode_purge(struct meta *m, uint64_t ino)
{
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	return meta_txn_end(m, purge_locked(m, ino));
}

int meta_inodes_purge(struct meta *m, const uint64_t *inos, size_t n)
{
	size_t i;
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	for (i = 0; i < n && !rc; i++) {
		rc = purge_locked(m, inos[i]);
		if (rc == -EBUSY || rc == -ENOENT)
			rc = 0;
	}
	return meta_txn_end(m, rc);
}

static int orphans_batch(struct meta *m, uint64_t after, uint64_t *inos,
			 size_t *n)
{
	sqlite3_stmt *st = m->st[ST_ORPHANS];
	int rc;

	*n = 0;
	bind_u64(st, 1, after);
	bind_i64(st, 2, ID_BATCH);
	while ((rc = meta_step(m, st)) > 0)
		inos[(*n)++] = col_u64(st, 0);
	sqlite3_reset(st);
	return rc;
}

int meta_orphans(struct meta *m, int (*cb)(uint64_t ino, void *arg),
		 void *arg)
{
	uint64_t inos[ID_BATCH], after = 0;
	size_t n, i;
	int rc;

	for (;;) {
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			return rc;
		rc = meta_txn_end(m, orphans_batch(m, after, inos, &n));
		if (rc)
			return rc;
		for (i = 0; i < n; i++) {
			rc = cb(inos[i], arg);
			if (rc)
				return rc;
		}
		if (n < ID_BATCH)
			return 0;
		after = inos[n - 1];
	}
}

/* ---- xattrs ---- */

static int xattr_name_len(const char *name, size_t *len)
{
	if (!name)
		return -EINVAL;
	*len = strnlen(name, META_XATTR_NAME_MAX + 1);
	if (*len == 0 || *len > META_XATTR_NAME_MAX)
		return -ERANGE;
	return 0;
}

static int set_ctime(struct meta *m, uint64_t ino, const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_INODE_CTIME];
	int rc;

	bind_u64(st, 1, ino);
	bind_time(st, 2, now);
	rc = run(m, st);
	if (!rc && sqlite3_changes64(m->db) == 0)
		rc = -ENOENT;
	return rc;
}

static int setxattr_locked(struct meta *m, uint64_t ino, const char *name,
			   const void *value, size_t len, unsigned flags,
			   const struct timespec *now)
{
	const unsigned both = META_XATTR_CREATE | META_XATTR_REPLACE;
	sqlite3_stmt *st;
	size_t nlen;
	bool existed;
	int rc;

	if ((flags & ~both) || (flags & both) == both)
		return -EINVAL;
	rc = xattr_name_len(name, &nlen);
	if (rc)
		return rc;
	if (len > META_XATTR_SIZE_MAX)
		return -E2BIG;
	if (len && !value)
		return -EINVAL;
	rc = set_ctime(m, ino, now);
	if (rc)
		return rc;
	st = m->st[ST_XATTR_UPDATE];
	bind_u64(st, 1, ino);
	bind_blob(st, 2, name, nlen);
	bind_blob(st, 3, value, len);
	rc = run(m, st);
	if (rc)
		return rc;
	existed = sqlite3_changes64(m->db) > 0;
	if (existed)
		return (flags & META_XATTR_CREATE) ? -EEXIST : 0;
	if (flags & META_XATTR_REPLACE)
		return -ENODATA;
	st = m->st[ST_XATTR_INSERT];
	bind_u64(st, 1, ino);
	bind_blob(st, 2, name, nlen);
	bind_blob(st, 3, value, len);
	return run(m, st);
}

int meta_setxattr(struct meta *m, uint64_t ino, const char *name,
		  const void *value, size_t len, unsigned flags,
		  const struct timespec *now)
{
	struct timespec t = ts_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = setxattr_locked(m, ino, name, value, len, flags, &t);
	return meta_txn_end(m, rc);
}

/* -ENOENT if ino does not exist, else fallback. */
static int absent_or(struct meta *m, uint64_t ino, int fallback)
{
	struct meta_attr a;
	int rc = inode_get(m, ino, &a);

	return rc ? rc : fallback;
}

static int getxattr_locked(struct meta *m, uint64_t ino, const char *name,
			   struct buf *out)
{
	sqlite3_stmt *st = m->st[ST_XATTR_GET];
	size_t nlen;
	int rc;

	rc = xattr_name_len(name, &nlen);
	if (rc)
		return rc;
	bind_u64(st, 1, ino);
	bind_blob(st, 2, name, nlen);
	rc = meta_step(m, st);
	if (rc > 0)
		rc = buf_append(out, sqlite3_column_blob(st, 0),
				(size_t)sqlite3_column_bytes(st, 0));
	else if (rc == 0)
		rc = 1; /* absent */
	sqlite3_reset(st);
	return rc == 1 ? absent_or(m, ino, -ENODATA) : rc;
}

int meta_xattr_names_used(struct meta *m, const char *const *names,
			  size_t n, bool *used)
{
	struct buf sql = BUF_INIT;
	sqlite3_stmt *st = NULL;
	size_t i, nlen;
	int rc = 0;

	if (n == 0 || n > 16)
		return -EINVAL;
	for (i = 0; i < n && !rc; i++) {
		used[i] = false;
		rc = xattr_name_len(names[i], &nlen);
	}
	if (rc)
		return rc;
	/* one scan of the table for all of them */
	rc = buf_appendf(&sql, "SELECT name FROM xattr WHERE name IN (");
	for (i = 0; i < n && !rc; i++)
		rc = buf_appendf(&sql, "%s?%zu", i ? "," : "", i + 1);
	if (!rc)
		rc = buf_appendf(&sql, ") GROUP BY name");
	if (rc) {
		buf_free(&sql);
		return -ENOMEM;
	}
	rc = meta_txn_begin(m, META_TXN_NONE);
	if (rc)
		goto out;
	rc = meta_prepare(m, buf_str(&sql), &st);
	if (!rc) {
		for (i = 0; i < n; i++)
			bind_blob(st, (int)i + 1, names[i], strlen(names[i]));
		while ((rc = meta_step(m, st)) > 0) {
			const void *name = sqlite3_column_blob(st, 0);
			size_t len = (size_t)sqlite3_column_bytes(st, 0);

			for (i = 0; i < n; i++)
				if (strlen(names[i]) == len &&
				    !memcmp(names[i], name, len))
					used[i] = true;
		}
		sqlite3_finalize(st);
	}
	rc = meta_txn_end(m, rc);
out:
	buf_free(&sql);
	return rc;
}

int meta_getxattr(struct meta *m, uint64_t ino, const char *name,
		  struct buf *out)
{
	/* asked before every write (security.capability): keep it from
	 * ending the batching of writes */
	int rc = txn_begin(m, META_TXN_NONE, PEND_IGNORE);

	if (rc)
		return rc;
	return meta_txn_end(m, getxattr_locked(m, ino, name, out));
}

static int listxattr_locked(struct meta *m, uint64_t ino, struct buf *out)
{
	sqlite3_stmt *st = m->st[ST_XATTR_LIST];
	struct meta_attr a;
	size_t len;
	int rc;

	rc = inode_get(m, ino, &a);
	if (rc)
		return rc;
	bind_u64(st, 1, ino);
	while ((rc = meta_step(m, st)) > 0) {
		len = (size_t)sqlite3_column_bytes(st, 0);
		rc = buf_reserve(out, len + 1);
		if (rc)
			break;
		buf_append(out, sqlite3_column_blob(st, 0), len);
		buf_append(out, "", 1);
	}
	sqlite3_reset(st);
	return rc;
}

int meta_listxattr(struct meta *m, uint64_t ino, struct buf *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, listxattr_locked(m, ino, out));
}

static int removexattr_locked(struct meta *m, uint64_t ino, const char *name,
			      const struct timespec *now)
{
	sqlite3_stmt *st = m->st[ST_XATTR_DELETE];
	size_t nlen;
	int rc;

	rc = xattr_name_len(name, &nlen);
	if (rc)
		return rc;
	bind_u64(st, 1, ino);
	bind_blob(st, 2, name, nlen);
	rc = run(m, st);
	if (rc)
		return rc;
	if (sqlite3_changes64(m->db) == 0)
		return absent_or(m, ino, -ENODATA);
	return set_ctime(m, ino, now);
}

int meta_removexattr(struct meta *m, uint64_t ino, const char *name,
		     const struct timespec *now)
{
	struct timespec t = ts_now(now);
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	return meta_txn_end(m, removexattr_locked(m, ino, name, &t));
}

/* ---- block map ---- */

static int block_get_locked(struct meta *m, uint64_t ino, uint64_t idx,
			    char *hash, int *dirty)
{
	sqlite3_stmt *st = m->st[ST_BLOCK_GET];
	int rc;

	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	rc = meta_step(m, st);
	if (rc > 0) {
		col_hash(st, 0, hash);
		*dirty = sqlite3_column_int(st, 1) != 0;
	}
	sqlite3_reset(st);
	return rc > 0 ? 0 : rc == 0 ? -ENOENT : rc;
}

int meta_block_get(struct meta *m, uint64_t ino, uint64_t idx, char *hash,
		   int *dirty)
{
	char h[META_HASH_LEN + 1];
	int d = 0;
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	rc = meta_txn_end(m, block_get_locked(m, ino, idx, h, &d));
	if (rc)
		return rc;
	if (hash)
		memcpy(hash, h, strlen(h) + 1);
	if (dirty)
		*dirty = d;
	return 0;
}

static int object_stmt(struct meta *m, int id, const char *hash,
		       uint64_t size)
{
	sqlite3_stmt *st = m->st[id];

	bind_text(st, 1, hash);
	if (id != ST_OBJECT_UNREF)
		bind_u64(st, 2, size);
	return run(m, st);
}

/* 0 when committed, 1 when stale (the object row is made sure of and
 * the transaction must still commit), or -errno. */
static int block_commit_locked(struct meta *m, uint64_t ino, uint64_t idx,
			       const char *hash, uint64_t size,
			       int still_dirty)
{
	char old[META_HASH_LEN + 1];
	sqlite3_stmt *st;
	int dirty, rc;

	rc = block_get_locked(m, ino, idx, old, &dirty);
	if (rc && rc != -ENOENT)
		return rc;
	if (rc == -ENOENT || !dirty) {
		rc = hash ? object_stmt(m, ST_OBJECT_ENSURE, hash, size) : 0;
		return rc ? rc : 1;
	}
	/* Reference the new object before releasing the old one: with the
	 * same name on both sides, its count never touches 0. */
	if (hash) {
		rc = object_stmt(m, ST_OBJECT_REF, hash, size);
		if (rc)
			return rc;
	}
	if (old[0]) {
		rc = object_stmt(m, ST_OBJECT_UNREF, old, 0);
		if (rc)
			return rc;
		/* the new content is whole: the old one's patches go */
		rc = patches_drop(m, ino, idx, idx);
		if (rc)
			return rc;
	}
	if (!hash && !still_dirty) {
		st = m->st[ST_BLOCK_DELETE];
		bind_u64(st, 1, ino);
		bind_u64(st, 2, idx);
		rc = run(m, st);
		return rc ? rc : nblocks_add(m, ino, -1);
	}
	st = m->st[ST_BLOCK_SET];
	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	if (hash)
		bind_text(st, 3, hash);
	else
		bind_null(st, 3);
	bind_i64(st, 4, still_dirty ? 1 : 0);
	return run(m, st);
}

int meta_block_commit(struct meta *m, uint64_t ino, uint64_t idx,
		      const char *hash, uint64_t size, int still_dirty)
{
	int rc;

	if (hash) {
		size_t n = strnlen(hash, META_HASH_LEN + 1);

		if (n == 0 || n > META_HASH_LEN)
			return -EINVAL;
	}
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	rc = block_commit_locked(m, ino, idx, hash, size, still_dirty);
	rc = meta_txn_end(m, rc);
	return rc == 1 ? -ESTALE : rc;
}

static int chain_locked(struct meta *m, uint64_t ino, uint64_t idx,
			struct patch_chain *out)
{
	sqlite3_stmt *st = m->st[ST_PATCH_LIST];
	int rc;

	out->n = 0;
	out->patch_bytes = 0;
	rc = block_get_locked(m, ino, idx, out->base, &out->dirty);
	if (rc)
		return rc;
	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	while ((rc = meta_step(m, st)) > 0) {
		if (out->n == PATCH_CHAIN_MAX || !out->base[0]) {
			log_error("meta: block %" PRIu64 " of inode %" PRIu64
				  " has %s patches", idx, ino,
				  out->base[0] ? "too many" : "orphan");
			rc = -EIO;
			break;
		}
		col_hash(st, 0, out->patch[out->n++]);
		out->patch_bytes += col_u64(st, 1);
	}
	sqlite3_reset(st);
	return rc;
}

int meta_block_chain(struct meta *m, uint64_t ino, uint64_t idx,
		     struct patch_chain *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, chain_locked(m, ino, idx, out));
}

static bool name_ok(const char *hash)
{
	return hash && strnlen(hash, META_HASH_LEN + 1) == META_HASH_LEN;
}

/* 0 when committed, 1 when stale, 2 when below is not the chain's top
 * (the object row is made sure of in both cases, and the transaction
 * must still commit), or -errno. */
static int block_patch_locked(struct meta *m, uint64_t ino, uint64_t idx,
			      const char *below, const char *hash,
			      uint64_t size, int still_dirty)
{
	struct patch_chain *ch = malloc(sizeof(*ch));
	sqlite3_stmt *st;
	const char *top;
	int rc;

	if (!ch)
		return -ENOMEM;
	rc = chain_locked(m, ino, idx, ch);
	if (rc && rc != -ENOENT)
		goto out;
	if (rc == -ENOENT || !ch->dirty) {
		rc = object_stmt(m, ST_OBJECT_ENSURE, hash, size);
		rc = rc ? rc : 1;
		goto out;
	}
	top = ch->n ? ch->patch[ch->n - 1] : ch->base;
	if (!ch->base[0] || strcmp(top, below) || ch->n == PATCH_CHAIN_MAX) {
		rc = object_stmt(m, ST_OBJECT_ENSURE, hash, size);
		rc = rc ? rc : 2;
		goto out;
	}
	rc = object_stmt(m, ST_OBJECT_REF, hash, size);
	if (rc)
		goto out;
	st = m->st[ST_PATCH_INSERT];
	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	bind_i64(st, 3, (int64_t)ch->n + 1);
	bind_text(st, 4, hash);
	rc = run(m, st);
	if (rc)
		goto out;
	st = m->st[ST_BLOCK_SET];
	bind_u64(st, 1, ino);
	bind_u64(st, 2, idx);
	bind_text(st, 3, ch->base);
	bind_i64(st, 4, still_dirty ? 1 : 0);
	rc = run(m, st);
out:
	free(ch);
	return rc;
}

int meta_block_patch(struct meta *m, uint64_t ino, uint64_t idx,
		     const char *below, const char *hash, uint64_t size,
		     int still_dirty)
{
	int rc;

	if (!name_ok(below) || !name_ok(hash))
		return -EINVAL;
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	rc = block_patch_locked(m, ino, idx, below, hash, size, still_dirty);
	rc = meta_txn_end(m, rc);
	return rc == 1 ? -ESTALE : rc == 2 ? -EILSEQ : rc;
}

int meta_block_reset(struct meta *m, uint64_t ino, uint64_t idx)
{
	char hash[META_HASH_LEN + 1];
	sqlite3_stmt *st;
	int dirty, rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	rc = block_get_locked(m, ino, idx, hash, &dirty);
	if (rc == 0 && dirty && !hash[0]) {
		st = m->st[ST_BLOCK_DELETE];
		bind_u64(st, 1, ino);
		bind_u64(st, 2, idx);
		rc = run(m, st);
		if (rc == 0)
			rc = nblocks_add(m, ino, -1);
	} else if (rc == 0 && dirty) {
		st = m->st[ST_BLOCK_SET];
		bind_u64(st, 1, ino);
		bind_u64(st, 2, idx);
		bind_text(st, 3, hash);
		bind_i64(st, 4, 0);
		rc = run(m, st);
	}
	return meta_txn_end(m, rc);
}

int meta_object_note(struct meta *m, const char *hash, uint64_t size)
{
	int rc;

	if (!hash || strnlen(hash, META_HASH_LEN + 1) != META_HASH_LEN)
		return -EINVAL;
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	return meta_txn_end(m, object_stmt(m, ST_OBJECT_ENSURE, hash, size));
}

int meta_block_drop(struct meta *m, uint64_t ino, uint64_t first,
		    uint64_t last)
{
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	return meta_txn_end(m, blocks_drop(m, ino, first, last));
}

struct block_key {
	uint64_t ino;
	uint64_t idx;
};

/* The next (at most ID_BATCH) blocks after *after that statement id
 * lists (ST_BLOCKS_DIRTY, ST_BLOCKS_PATCHED). */
static int key_batch(struct meta *m, int id, const struct block_key *after,
		     struct block_key *keys, size_t *n)
{
	sqlite3_stmt *st = m->st[id];
	int rc;

	*n = 0;
	bind_u64(st, 1, after->ino);
	bind_u64(st, 2, after->idx);
	bind_i64(st, 3, ID_BATCH);
	while ((rc = meta_step(m, st)) > 0) {
		keys[*n].ino = col_u64(st, 0);
		keys[*n].idx = col_u64(st, 1);
		(*n)++;
	}
	sqlite3_reset(st);
	return rc;
}

/* Visit the blocks statement id lists, a batch per transaction, so that
 * cb may use the index. */
static int blocks_each(struct meta *m, int id,
		       int (*cb)(uint64_t ino, uint64_t idx, void *arg),
		       void *arg)
{
	struct block_key keys[ID_BATCH], after = { 0, 0 };
	size_t n, i;
	int rc;

	for (;;) {
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			return rc;
		rc = meta_txn_end(m, key_batch(m, id, &after, keys, &n));
		if (rc)
			return rc;
		for (i = 0; i < n; i++) {
			rc = cb(keys[i].ino, keys[i].idx, arg);
			if (rc)
				return rc;
		}
		if (n < ID_BATCH)
			return 0;
		after = keys[n - 1];
	}
}

int meta_blocks_dirty(struct meta *m,
		      int (*cb)(uint64_t ino, uint64_t idx, void *arg),
		      void *arg)
{
	return blocks_each(m, ST_BLOCKS_DIRTY, cb, arg);
}

int meta_blocks_patched(struct meta *m,
			int (*cb)(uint64_t ino, uint64_t idx, void *arg),
			void *arg)
{
	return blocks_each(m, ST_BLOCKS_PATCHED, cb, arg);
}

static int64_t count_locked(struct meta *m, int id)
{
	sqlite3_stmt *st = m->st[id];
	int64_t v = 0;
	int rc;

	rc = meta_step(m, st);
	if (rc > 0)
		v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc < 0 ? rc : v;
}

int meta_inode_dirty_count(struct meta *m, uint64_t ino, uint64_t *n)
{
	int64_t v;
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	bind_u64(m->st[ST_INODE_DIRTY_COUNT], 1, ino);
	v = count_locked(m, ST_INODE_DIRTY_COUNT);
	if (v >= 0)
		*n = (uint64_t)v;
	return meta_txn_end(m, v < 0 ? (int)v : 0);
}

static int64_t forget_dirty_locked(struct meta *m)
{
	int64_t lost = count_locked(m, ST_DIRTY_COUNT);
	int rc;

	if (lost <= 0)
		return lost;
	/* nblocks first: it counts the rows about to go. */
	rc = run(m, m->st[ST_FORGET_NBLOCKS]);
	if (!rc)
		rc = run(m, m->st[ST_FORGET_DELETE]);
	if (!rc) {
		bind_u64(m->st[ST_FORGET_CLEAN], 1, m->block_size);
		rc = run(m, m->st[ST_FORGET_CLEAN]);
	}
	return rc ? rc : lost;
}

int64_t meta_blocks_forget_dirty(struct meta *m)
{
	int64_t lost;
	int rc = meta_txn_begin(m, META_TXN_WRITE);

	if (rc)
		return rc;
	lost = forget_dirty_locked(m);
	rc = meta_txn_end(m, lost < 0 ? (int)lost : 0);
	return rc ? rc : lost;
}

/* ---- objects and garbage ---- */

static int object_get_locked(struct meta *m, const char *hash,
			     uint64_t *refcount)
{
	sqlite3_stmt *st = m->st[ST_OBJECT_GET];
	int rc;

	bind_text(st, 1, hash);
	rc = meta_step(m, st);
	if (rc > 0)
		*refcount = col_u64(st, 0);
	sqlite3_reset(st);
	return rc > 0 ? 0 : rc == 0 ? -ENOENT : rc;
}

int meta_object_get(struct meta *m, const char *hash, uint64_t *refcount)
{
	int rc;

	if (!hash)
		return -EINVAL;
	rc = meta_txn_begin(m, META_TXN_NONE);
	if (rc)
		return rc;
	return meta_txn_end(m, object_get_locked(m, hash, refcount));
}

struct gc_batch {
	int64_t epoch[HASH_BATCH];
	char hash[HASH_BATCH][META_HASH_LEN + 1];
};

static int gc_batch(struct meta *m, int64_t below, int64_t after_epoch,
		    const char *after_hash, size_t max, struct gc_batch *b,
		    size_t *n)
{
	sqlite3_stmt *st = m->st[ST_GC_LIST];
	int rc;

	*n = 0;
	bind_i64(st, 1, below);
	bind_i64(st, 2, after_epoch);
	bind_text(st, 3, after_hash);
	bind_i64(st, 4, (int64_t)max);
	while ((rc = meta_step(m, st)) > 0) {
		b->epoch[*n] = sqlite3_column_int64(st, 0);
		col_hash(st, 1, b->hash[*n]);
		(*n)++;
	}
	sqlite3_reset(st);
	return rc;
}

/* The one row statement id gives (bound to arg when it takes one):
 * columns 0 and 1 (when b is not NULL). */
static int one_row(struct meta *m, int id, const int64_t *arg, uint64_t *a,
		   uint64_t *b)
{
	sqlite3_stmt *st = m->st[id];
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	if (arg)
		bind_i64(st, 1, *arg);
	rc = meta_step(m, st);
	if (rc > 0) {
		*a = col_u64(st, 0);
		if (b)
			*b = col_u64(st, 1);
		rc = 0;
	} else if (rc == 0) {
		rc = -EIO;
	}
	sqlite3_reset(st);
	return meta_txn_end(m, rc);
}

int meta_gc_waiting(struct meta *m, uint64_t durable_seq, uint64_t *count,
		    uint64_t *bytes)
{
	int64_t epoch = durable_seq > INT64_MAX ? INT64_MAX :
						  (int64_t)durable_seq;

	return one_row(m, ST_GC_WAITING, &epoch, count, bytes);
}

int meta_db_bytes(struct meta *m, uint64_t *bytes)
{
	return one_row(m, ST_DB_BYTES, NULL, bytes, NULL);
}

int meta_gc_list(struct meta *m, uint64_t durable_seq, size_t limit,
		 int (*cb)(const char *hash, void *arg), void *arg)
{
	char after_hash[META_HASH_LEN + 1] = "";
	int64_t below = durable_seq > INT64_MAX ? INT64_MAX :
						  (int64_t)durable_seq;
	int64_t after_epoch = -1;
	struct gc_batch *b;
	size_t n, i, want;
	int rc = 0;

	b = malloc(sizeof(*b));
	if (!b)
		return -ENOMEM;
	while (limit > 0) {
		want = MF_MIN(limit, (size_t)HASH_BATCH);
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			break;
		rc = gc_batch(m, below, after_epoch, after_hash, want, b, &n);
		rc = meta_txn_end(m, rc);
		if (rc)
			break;
		for (i = 0; i < n; i++) {
			rc = cb(b->hash[i], arg);
			if (rc)
				goto out_free_b;
		}
		if (n < want)
			break;
		limit -= n;
		after_epoch = b->epoch[n - 1];
		memcpy(after_hash, b->hash[n - 1], sizeof(after_hash));
	}
out_free_b:
	free(b);
	return rc;
}

int meta_gc_forget(struct meta *m, const char *hash)
{
	sqlite3_stmt *st;
	int rc;

	if (!hash)
		return -EINVAL;
	rc = meta_txn_begin(m, META_TXN_WRITE);
	if (rc)
		return rc;
	st = m->st[ST_GC_FORGET];
	bind_text(st, 1, hash);
	rc = run(m, st);
	if (!rc)
		rc = sqlite3_changes64(m->db) > 0;
	return meta_txn_end(m, rc);
}

struct obj_batch {
	uint64_t refcount[HASH_BATCH];
	char hash[HASH_BATCH][META_HASH_LEN + 1];
};

static int objects_batch(struct meta *m, const char *after,
			 struct obj_batch *b, size_t *n)
{
	sqlite3_stmt *st = m->st[ST_OBJECTS];
	int rc;

	*n = 0;
	bind_text(st, 1, after);
	bind_i64(st, 2, HASH_BATCH);
	while ((rc = meta_step(m, st)) > 0) {
		col_hash(st, 0, b->hash[*n]);
		b->refcount[*n] = col_u64(st, 1);
		(*n)++;
	}
	sqlite3_reset(st);
	return rc;
}

int meta_objects(struct meta *m,
		 int (*cb)(const char *hash, uint64_t refcount, void *arg),
		 void *arg)
{
	char after[META_HASH_LEN + 1] = "";
	struct obj_batch *b;
	size_t n, i;
	int rc;

	b = malloc(sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (;;) {
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			break;
		rc = meta_txn_end(m, objects_batch(m, after, b, &n));
		if (rc)
			break;
		for (i = 0; i < n; i++) {
			rc = cb(b->hash[i], b->refcount[i], arg);
			if (rc)
				goto out_free_b;
		}
		if (n < HASH_BATCH)
			break;
		memcpy(after, b->hash[n - 1], sizeof(after));
	}
out_free_b:
	free(b);
	return rc;
}

/* ---- whole database ---- */

static int stats_locked(struct meta *m, struct meta_stats *out)
{
	sqlite3_stmt *st = m->st[ST_STATS];
	int rc;

	memset(out, 0, sizeof(*out));
	rc = meta_step(m, st);
	if (rc > 0) {
		out->inodes = col_u64(st, 0);
		out->blocks = col_u64(st, 1);
		out->dirty_blocks = col_u64(st, 2);
		out->objects = col_u64(st, 3);
		out->object_bytes = col_u64(st, 4);
	} else if (rc == 0) {
		rc = -EIO; /* the row is made by meta_open() */
	}
	sqlite3_reset(st);
	return rc < 0 ? rc : 0;
}

int meta_stats(struct meta *m, struct meta_stats *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, stats_locked(m, out));
}

static int fsync_path(const char *path)
{
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		rc = -errno;
		log_error("meta: fsync %s: %s", path, strerror(-rc));
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

static int vacuum_into(struct meta *m, sqlite3 *db, const char *path)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db, "VACUUM INTO ?1", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		bind_text(st, 1, path);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
	}
	if (rc == SQLITE_OK || rc == SQLITE_DONE)
		return 0;
	log_error("meta: snapshot to %s: %s (sqlite %d)", path,
		  sqlite3_errmsg(db), rc);
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/*
 * A file database is copied through a second, read-only connection: in
 * WAL mode it reads one consistent state without holding m->lock, so
 * file-system operations go on during a long copy.  An in-memory
 * database can only be copied through its own connection.
 */
int meta_snapshot(struct meta *m, const char *path)
{
	struct stat sb;
	sqlite3 *db;
	int rc;

	if (!path || !*path)
		return -EINVAL;
	if (lstat(path, &sb) == 0)
		return -EEXIST;
	if (errno != ENOENT)
		return -errno;
	if (m->path) {
		/* batched write attributes go to the file first */
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			return rc;
		meta_txn_end(m, 0);
		rc = sqlite3_open_v2(m->path, &db, SQLITE_OPEN_READONLY |
				     SQLITE_OPEN_NOMUTEX, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_busy_timeout(db, 2000);
			rc = vacuum_into(m, db, path);
		} else {
			log_error("meta: snapshot: open %s: %s", m->path,
				  sqlite3_errstr(rc));
			rc = -EIO;
		}
		sqlite3_close(db);
	} else {
		/* VACUUM cannot run inside a transaction: lock only. */
		rc = meta_txn_begin(m, META_TXN_NONE);
		if (rc)
			return rc;
		rc = meta_txn_end(m, vacuum_into(m, m->db, path));
	}
	if (!rc)
		rc = fsync_path(path);
	if (rc) {
		unlink(path); /* it did not exist before */
		return rc;
	}
	return 0;
}

uint64_t meta_change_count(struct meta *m)
{
	uint64_t v = 0;

	if (meta_txn_begin(m, META_TXN_NONE) == 0) {
		v = m->change_count;
		meta_txn_end(m, 0);
	}
	return v;
}
