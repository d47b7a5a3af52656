/*
 * meta.c - the metadata layer: one SQLite database behind one mutex.
 *
 * Purpose
 *   Every file-system operation that touches names, attributes, xattrs or
 *   the block map is one call of meta.h, and every call that writes is one
 *   SQLite transaction (BEGIN IMMEDIATE .. COMMIT, ROLLBACK on any error),
 *   so a crash leaves either the old or the new state, never a mix.  The
 *   exception is a write that dirties no new block: its size and times
 *   wait in meta_pend.c for the next transaction (crash-safe there).
 *   SQLite result codes are turned into -errno in meta/ and nowhere else.
 *
 *   This file holds what the others share: the schema and its upgrade,
 *   the cached statements, open and close, transactions, config, stats
 *   and snapshots.  The operations are in meta_ns.c (names, attributes,
 *   xattrs, purge) and meta_block.c (block map, patches, inline data,
 *   objects, GC); meta_int.h lists the other files.
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
 *   inline_data(ino, data)  the content of a small regular file, kept
 *                           here instead of blocks (meta_inline_write())
 *   object(hash, refcount, size, freed_epoch)
 *                           key hash, WITHOUT ROWID; partial index
 *                           (freed_epoch, hash) on refcount = 0 rows
 *   snapshot(id, name, ns, jseq), snap_hold(snap, hash)
 *                           snapshots and the objects each holds
 *                           (meta_snap.c)
 *   temp.stat_counts        one row of meta_stats() counters, kept by
 *                           TEMP triggers (stats_sql): per connection,
 *                           never written to the file
 *   An existing database without our "format" key is refused, never
 *   extended (check_ours()).
 *
 * Invariants (besides 1-7 of meta.h, which meta_fsck() checks)
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
 *   6. A filled slot of the inode rows' cache (struct meta_acache) holds
 *      the row as the connection would read it now (debug builds compare
 *      every hit with the row).
 *
 * Locking
 *   m->lock serialises every use of the connection, which is opened with
 *   SQLITE_OPEN_NOMUTEX.  Read-only functions take the lock without an
 *   explicit BEGIN: with one connection, nothing else can write between
 *   their statements.  Callbacks (readdir, orphans, dirty or patched
 *   blocks, gc list, objects) are called with the lock released: rows are
 *   fetched in batches, and the walk resumes after the last key seen, so
 *   a callback may call back into meta (for example, purge the orphan it
 *   is given).
 *   meta_snapshot() of a file database reads through a second read-only
 *   connection and does not take the lock at all.  WAL checkpoints of a
 *   file database run in a thread of their own, through a third
 *   connection, without the lock (struct meta_ckpt).
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
	" WHERE refcount = 0;"
	/* snapshots (meta_snap.c); made in older databases at open */
	"CREATE TABLE IF NOT EXISTS snapshot ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL,"
	" ns INTEGER NOT NULL,"
	" jseq INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS snap_hold ("
	" snap INTEGER NOT NULL,"
	" hash TEXT NOT NULL,"
	" PRIMARY KEY (snap, hash)) WITHOUT ROWID;";

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

/* The SQL of each cached statement (enum meta_stmt, meta_int.h). */
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
	[ST_INLINE_ANY] = "SELECT 1 FROM inline_data WHERE ino = ?1",
	[ST_SEEK_BLOCKS] = "SELECT idx FROM block WHERE ino = ?1 AND idx >= ?2"
			   " ORDER BY idx",
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
	 * may predate a truncate (the cache cuts it again as it opens:
	 * refill_tail() in cache/cache_recover.c) */
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

/* ---- locking and transactions ---- */

int meta_lock(struct meta *m)
{
	int rc = pthread_mutex_lock(&m->lock);

	if (rc) {
		/* EDEADLK: a callback called back into meta under the lock. */
		log_error("meta: cannot take the lock (error %d)", rc);
		return -rc;
	}
	return 0;
}

void meta_unlock(struct meta *m)
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

int meta_txn_begin_pend(struct meta *m, enum meta_txn kind,
			enum meta_pend_mode pm)
{
	int rc = meta_lock(m);

	if (rc)
		return rc;
	if (pm != META_PEND_IGNORE)
		rc = meta_pend_flush_locked(m, pm == META_PEND_FORGET);
	if (rc) {
		meta_unlock(m);
		return rc;
	}
	m->note_ino = 0;
	m->txn = kind;
	if (kind == META_TXN_NONE)
		return 0;
	m->txn_changes = sqlite3_total_changes64(m->db);
	rc = meta_run(m,
		      m->st[kind == META_TXN_WRITE ? ST_BEGIN : ST_BEGIN_READ]);
	if (rc) {
		m->txn = META_TXN_NONE;
		meta_unlock(m);
	}
	return rc;
}

int meta_txn_begin(struct meta *m, enum meta_txn kind)
{
	return meta_txn_begin_pend(m, kind, META_PEND_FORGET);
}

int meta_txn_end(struct meta *m, int rc)
{
	int crc;

	if (m->txn != META_TXN_NONE) {
		if (rc >= 0) {
			crc = meta_run(m, m->st[ST_COMMIT]);
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
			meta_run(m, m->st[ST_ROLLBACK]);
	}
	assert(no_busy_stmt(m));
	m->txn = META_TXN_NONE;
	m->note_ino = 0;
	meta_unlock(m);
	return rc;
}

/* ---- the inode rows' cache ---- */

/*
 * Direct-mapped by inode number.  Correct because every change of an
 * inode row goes through this connection and fires the update hook
 * (acache_changed()): the schema has no WITHOUT ROWID inode table, no
 * REPLACE into it and no DELETE of it without a WHERE, the three cases
 * SQLite does not report; debug builds compare every hit with the row
 * (meta_inode_get_locked()).  A row filled inside a transaction that
 * rolls back is emptied by the rollback hook.
 */
#define ACACHE_SLOTS 4096	/* 384 KiB */
#define ACACHE_TXN_MAX 32	/* filled slots tracked per transaction */

struct meta_acache {
	struct meta_attr slot[ACACHE_SLOTS];	/* ino 0: empty */
	/* the slots filled since the open transaction began; past
	 * ACACHE_TXN_MAX (txn_over), a rollback empties them all */
	uint32_t txn_slot[ACACHE_TXN_MAX];
	size_t txn_n;
	bool txn_over;
};

static size_t acache_idx(uint64_t ino)
{
	return (size_t)(ino % ACACHE_SLOTS);
}

bool meta_acache_get(struct meta *m, uint64_t ino, struct meta_attr *out)
{
	const struct meta_attr *a;

	if (!m->acache || !ino)
		return false;
	a = &m->acache->slot[acache_idx(ino)];
	if (a->ino != ino)
		return false;
	*out = *a;
	return true;
}

void meta_acache_put(struct meta *m, const struct meta_attr *a)
{
	struct meta_acache *c = m->acache;
	size_t i;

	if (!c || !a->ino)
		return;
	i = acache_idx(a->ino);
	c->slot[i] = *a;
	if (sqlite3_get_autocommit(m->db))
		return;
	if (c->txn_n < ACACHE_TXN_MAX)
		c->txn_slot[c->txn_n++] = (uint32_t)i;
	else
		c->txn_over = true;
}

/* sqlite3_update_hook(): a row of table tbl changed (m->lock held). */
static void acache_changed(void *arg, int op, const char *db,
			   const char *tbl, sqlite3_int64 rowid)
{
	struct meta *m = arg;
	struct meta_attr *a;

	(void)op;
	if (strcmp(tbl, "inode") || strcmp(db, "main"))
		return;
	a = &m->acache->slot[acache_idx((uint64_t)rowid)];
	if (a->ino == (uint64_t)rowid)
		a->ino = 0;
}

static int acache_committed(void *arg)
{
	struct meta_acache *c = ((struct meta *)arg)->acache;

	c->txn_n = 0;
	c->txn_over = false;
	return 0;
}

static void acache_rolled_back(void *arg)
{
	struct meta_acache *c = ((struct meta *)arg)->acache;
	size_t i;

	if (c->txn_over)
		memset(c->slot, 0, sizeof(c->slot));
	else
		for (i = 0; i < c->txn_n; i++)
			c->slot[c->txn_slot[i]].ino = 0;
	c->txn_n = 0;
	c->txn_over = false;
}

/* Start the cache (without it, every read is a statement). */
static void acache_start(struct meta *m)
{
	m->acache = calloc(1, sizeof(*m->acache));
	if (!m->acache)
		return;
	sqlite3_update_hook(m->db, acache_changed, m);
	sqlite3_commit_hook(m->db, acache_committed, m);
	sqlite3_rollback_hook(m->db, acache_rolled_back, m);
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
	return meta_run(m, st);
}

static int create_root(struct meta *m, uint32_t uid, uint32_t gid)
{
	static const char sql[] =
		"INSERT INTO inode(ino, mode, uid, gid, nlink, size, rdev,"
		" nblocks, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s,"
		" ctime_ns, parent, target) VALUES (?1, ?2, ?3, ?4, 2, 0, 0,"
		" 0, ?5, ?6, ?5, ?6, ?5, ?6, ?1, NULL)";
	struct timespec now = meta_now(NULL);
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
	rc = meta_run(m, st);
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

/*
 * SQLite's process-wide settings, made before its first use: no memory
 * statistics.  SQLite keeps them under a global mutex taken around every
 * allocation, 7% of the instructions of a create or an unlink, and
 * nothing here reads them.  Once SQLite is initialised (by a use before
 * the first meta_open()) sqlite3_config() refuses, which is only slower.
 */
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void sqlite_setup(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/*
 * Pages of 2 KiB in a new database (an existing one keeps its size: WAL
 * mode fixes it).  A commit writes every page it changed to the WAL, with
 * a checksum over the whole page, and a create or an unlink changes five
 * or six (the rows and index entries of a name and an inode, the
 * directory's row): with 4 KiB pages the checksums alone were a fifth of
 * the instructions of such an operation.  2 KiB halves them and keeps a
 * name of 255 bytes within its index page (1 KiB would spill it to an
 * overflow page, and split a 4 KiB inline file over five pages).
 */
#define META_PAGE_SIZE_SQL "PRAGMA page_size = 2048;"

static int setup_connection(struct meta *m)
{
	sqlite3_busy_timeout(m->db, 2000);
	return exec_sql(m, META_PAGE_SIZE_SQL
			   "PRAGMA journal_mode = WAL;"
			   "PRAGMA synchronous = NORMAL;"
			   "PRAGMA foreign_keys = OFF;"
			   "PRAGMA temp_store = MEMORY;"
			   "PRAGMA cache_size = -16384;");
}

/*
 * WAL checkpoints off the request path.  SQLite's own auto-checkpoint runs
 * in the commit that finds the WAL past 1000 pages: that request copied
 * the pages into the database and waited for two fdatasyncs, under
 * m->lock, so every other request waited too (about one unlink, mkdir or
 * untarred file in 150 paid for it).  Here the commit only signals a
 * thread, which checkpoints through its own connection without m->lock:
 * a PASSIVE checkpoint copies what no reader still needs while the main
 * connection goes on committing, and the next write transaction after a
 * complete one starts the WAL over.  The same syncs happen, in the same
 * order, so what survives a crash or a power cut is unchanged.  Should
 * the thread fall far behind (a reader holding old frames, a slow disk),
 * the committing connection checkpoints itself past WAL_CKPT_INLINE, so
 * the WAL stays bounded as before.
 */
#define WAL_CKPT_PAGES 1000		/* SQLite's default threshold */
#define WAL_CKPT_INLINE (8 * WAL_CKPT_PAGES)	/* a WAL of 32 MiB */

struct meta_ckpt {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool due;	/* the WAL passed WAL_CKPT_PAGES; by lock */
	bool stop;	/* by lock */
	/* the WAL's length when the thread was last woken: it is woken
	 * again WAL_CKPT_PAGES later, not at every commit (a checkpoint
	 * costs two fdatasyncs however little it copies); by m->lock */
	int mark;
	sqlite3 *db;	/* the thread's connection: only checkpoints */
	pthread_t thread;
};

static void *ckpt_main(void *arg)
{
	struct meta_ckpt *c = arg;
	int rc;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->due && !c->stop)
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->stop)
			break;
		c->due = false;
		pthread_mutex_unlock(&c->lock);
		rc = sqlite3_wal_checkpoint_v2(c->db, "main",
					       SQLITE_CHECKPOINT_PASSIVE,
					       NULL, NULL);
		/* BUSY: the writer checkpoints itself at this moment */
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			log_warn("meta: WAL checkpoint: %s",
				 sqlite3_errmsg(c->db));
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* sqlite3_wal_hook(): after each commit of the main connection, with
 * m->lock held; pages is the WAL's length.  The WAL starts over only when
 * a checkpoint has copied all of it before the next write transaction;
 * under a steady stream of commits the thread's checkpoints trail the
 * last few, so the writer's own checkpoint at WAL_CKPT_INLINE finishes
 * what the thread left (at most WAL_CKPT_PAGES) and lets it start over. */
static int ckpt_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct meta_ckpt *c = arg;

	if (pages < c->mark)
		c->mark = 0; /* the WAL started over */
	if (pages >= WAL_CKPT_INLINE) {
		/* RESTART, not PASSIVE: it waits (the busy timeout) for the
		 * thread's checkpoint and for readers, so that the next write
		 * starts the WAL over; a PASSIVE one found the thread busy
		 * again and again on a loaded machine, and the WAL grew past
		 * 80 MB */
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_RESTART,
					  NULL, NULL);
	} else if (pages >= c->mark + WAL_CKPT_PAGES) {
		c->mark = pages;
		pthread_mutex_lock(&c->lock);
		if (!c->due) {
			c->due = true;
			pthread_cond_signal(&c->cond);
		}
		pthread_mutex_unlock(&c->lock);
	}
	return SQLITE_OK;
}

/* Start the checkpoint thread of a file database.  Without it (an error
 * is logged) SQLite's auto-checkpoint stays, which is only slower. */
static void ckpt_start(struct meta *m)
{
	struct meta_ckpt *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return;
	rc = sqlite3_open_v2(m->path, &c->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, "PRAGMA synchronous = NORMAL;", NULL,
				  NULL, NULL);
	if (rc != SQLITE_OK) {
		log_warn("meta: checkpoint connection: %s",
			 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		goto out_close_db;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if (pthread_create(&c->thread, NULL, ckpt_main, c) != 0) {
		log_warn("meta: cannot start the checkpoint thread");
		goto out_destroy;
	}
	m->ckpt = c;
	sqlite3_wal_hook(m->db, ckpt_hook, c);
	return;

out_destroy:
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
out_close_db:
	sqlite3_close(c->db);
	free(c);
}

/* End the thread and close its connection, before the main one: the
 * last connection to close checkpoints the whole WAL and removes it. */
static void ckpt_stop(struct meta *m)
{
	struct meta_ckpt *c = m->ckpt;

	if (!c)
		return;
	sqlite3_wal_hook(m->db, NULL, NULL);
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	if (sqlite3_close(c->db) != SQLITE_OK)
		log_error("meta: close: %s", sqlite3_errmsg(c->db));
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
	m->ckpt = NULL;
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

/* A struct meta with its statement table and its lock, nothing open. */
static int meta_alloc(struct meta **out)
{
	pthread_mutexattr_t ma;
	struct meta *m;
	int rc;

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
	*out = m;
	return 0;

out_free_st:
	free(m->st);
out_free_m:
	free(m);
	return rc;
}

/*
 * In one transaction: refuse a database that is not ours, create or
 * upgrade the schema, count the stats, prepare the statements, create the
 * root or check the format and block size.  A failure rolls it all
 * back.
 */
static int load_schema(struct meta *m, uint32_t block_size, uint32_t uid,
		       uint32_t gid)
{
	int rc = exec_sql(m, "BEGIN IMMEDIATE");

	if (rc)
		return rc;
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
		rc = init_schema(m, block_size, uid, gid);
	if (!rc)
		rc = exec_sql(m, "COMMIT");
	if (rc && !sqlite3_get_autocommit(m->db))
		exec_sql(m, "ROLLBACK");
	return rc;
}

int meta_open(const char *path, uint32_t block_size, uint32_t root_uid,
	      uint32_t root_gid, struct meta **out)
{
	const char *fname;
	struct meta *m;
	int rc;

	*out = NULL;
	pthread_once(&sqlite_once, sqlite_setup);
	rc = meta_alloc(&m);
	if (rc)
		return rc;
	rc = sqlite3_open_v2(path, &m->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     meta_vfs_name());
	if (rc != SQLITE_OK) {
		rc = meta_sql_err(m, rc, path);
		goto out_close_db;
	}
	rc = setup_connection(m);
	if (!rc)
		rc = load_schema(m, block_size, root_uid, root_gid);
	if (rc)
		goto out_close_db;
	fname = sqlite3_db_filename(m->db, "main");
	if (fname && *fname) {
		m->path = strdup(fname);
		if (!m->path) {
			rc = -ENOMEM;
			goto out_close_db;
		}
	}
	acache_start(m);
	rc = meta_pend_open(m);
	if (rc)
		goto out_close_db;
	if (m->path)
		ckpt_start(m);
	*out = m;
	return 0;

out_close_db:
	meta_pend_close(m);
	free(m->path);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(m->st[i]);
	sqlite3_close(m->db);
	free(m->acache);
	pthread_mutex_destroy(&m->lock);
	free(m->st);
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
	ckpt_stop(m);
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(m->st[i]);
	if (sqlite3_close(m->db) != SQLITE_OK)
		log_error("meta: close: %s", sqlite3_errmsg(m->db));
	pthread_mutex_destroy(&m->lock);
	free(m->acache);
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
