/*
 * meta_journal.c - the metadata journal at the SQLite level: record every
 * change to the volume's tables with the session extension, cut the
 * record into changesets, and apply changesets at restore.
 *
 * Purpose
 *   volume/journal.c puts each changeset in the store as a journal entry
 *   between checkpoints, and applies them in order at restore; this file
 *   makes and applies them, and takes the checkpoint's copy of the
 *   database at a cut.  For a follower (cli/follow.c) it also says what
 *   each applied changeset changed (struct meta_changes) and makes the
 *   changeset that turns the database into a restored checkpoint's.
 *
 * Data model
 *   m->sess             the session: every change to the tables of
 *                       "main" since the last cut, config left out
 *   config "jrnl_seq"   sequence number of the last changeset cut
 *   config "ckpt_seq"   sequence number of the last checkpoint started
 *   jtime(id=1, seq, ns) the journal entry the state ends with and when
 *                       it was cut (Unix ns, strictly increasing): set
 *                       by every cut that has changes, before the
 *                       changeset is taken, so the entry itself carries
 *                       its time and a restored database knows the time
 *                       of its newest entry (the history window,
 *                       volume/journal.c).  A database without the table
 *                       (made before it existed) skips these changes
 *                       when it applies an entry.
 *   m->on_apply         a follower's hook (meta_journal_on_apply())
 *
 * Invariants
 *   1. A cut happens with m->lock held, so it falls between two
 *      operations: every changeset takes the database from one
 *      consistent state to the next.
 *   2. The config table is not recorded: it holds this copy's own
 *      bookkeeping (sequence numbers), which a restore sets itself.
 *   3. A cut that also takes a snapshot starts the snapshot's read
 *      transaction (on a second, read-only connection) before it lets go
 *      of the lock, so the snapshot is exactly the state at the cut,
 *      while the copy itself runs without blocking file-system
 *      operations.
 *   4. A changeset applies whole, in one transaction, or not at all: any
 *      conflict aborts it.
 *   5. Entry times strictly increase: each is max(now, previous + 1).
 *   6. A follower's hook (m->on_apply) hears what a changeset changed,
 *      read from the changeset and, for what it does not carry (an
 *      UPDATE's unchanged columns), from the rows as they were, in the
 *      same locked section as the apply; it is called after the commit,
 *      without the lock, so that it may drop cached blocks and tell the
 *      kernel.
 *   7. The catch-up diff (meta_journal_diff()) turns the volume's tables
 *      into another database's whatever state they are in: applied, the
 *      two are equal row for row (config apart).
 */
#include "util/compat.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "meta/meta_int.h"
#include "util/log.h"
#include "util/util.h"

static int not_config(void *ctx, const char *table)
{
	return strcmp(table, "config") != 0;
}

#define JTIME_SQL							\
	"CREATE TABLE IF NOT EXISTS jtime(id INTEGER PRIMARY KEY,"	\
	" seq INTEGER NOT NULL, ns INTEGER NOT NULL)"

/* the clock of the entries' times (meta_journal_set_clock()) */
static int64_t (*clock_hook)(void);

void meta_journal_set_clock(int64_t (*now_ns)(void))
{
	clock_hook = now_ns;
}

int64_t meta_journal_now_ns(void)
{
	return clock_hook ? clock_hook() : (int64_t)now_real_ns();
}

/* The jtime table, if missing (lock held). */
static int jtime_create(struct meta *m)
{
	int rc = sqlite3_exec(m->db, JTIME_SQL, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : meta_sql_err(m, rc, "jtime");
}

int meta_journal_times_init(struct meta *m)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	return meta_txn_end(m, jtime_create(m));
}

/* jtime's row (lock held): -ENOENT when there is none, or no table. */
static int jtime_get(struct meta *m, uint64_t *seq, int64_t *ns)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(m->db, "SELECT seq, ns FROM jtime WHERE id = 1",
			       -1, &st, NULL) != SQLITE_OK)
		return -ENOENT;
	rc = sqlite3_step(st) == SQLITE_ROW ? 0 : -ENOENT;
	if (rc == 0) {
		*seq = (uint64_t)sqlite3_column_int64(st, 0);
		*ns = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	return rc;
}

int meta_journal_time(struct meta *m, uint64_t *seq, int64_t *ns)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	*seq = 0;
	*ns = 0;
	return meta_txn_end(m, jtime_get(m, seq, ns));
}

/* Record that entry seq is cut now (lock held, no transaction open):
 * recorded by the session, so it goes with the entry (invariant 5). */
static int jtime_set(struct meta *m, uint64_t seq)
{
	sqlite3_stmt *st;
	uint64_t old_seq;
	int64_t ns = meta_journal_now_ns(), old_ns;
	int rc;

	if (jtime_get(m, &old_seq, &old_ns) == 0 && ns <= old_ns)
		ns = old_ns + 1;
	rc = sqlite3_prepare_v2(m->db, "INSERT OR REPLACE INTO jtime(id, seq,"
				" ns) VALUES (1, ?1, ?2)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return meta_sql_err(m, rc, "jtime");
	sqlite3_bind_int64(st, 1, (int64_t)seq);
	sqlite3_bind_int64(st, 2, ns);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : meta_sql_err(m, rc, "jtime");
}

int meta_journal_cs_time(const void *cs, size_t len, int64_t *ns)
{
	sqlite3_changeset_iter *it;
	int rc, found = -ENOENT;

	if (len > INT32_MAX ||
	    sqlite3changeset_start(&it, (int)len, (void *)cs) != SQLITE_OK)
		return -EIO;
	while ((rc = sqlite3changeset_next(it)) == SQLITE_ROW) {
		const char *table;
		sqlite3_value *v = NULL;
		int ncol, op, ind;

		sqlite3changeset_op(it, &table, &ncol, &op, &ind);
		if (strcmp(table, "jtime") || op == SQLITE_DELETE || ncol < 3 ||
		    sqlite3changeset_new(it, 2, &v) != SQLITE_OK || !v)
			continue;
		*ns = sqlite3_value_int64(v);
		found = 0;
	}
	if (sqlite3changeset_finalize(it) != SQLITE_OK || rc != SQLITE_DONE)
		return -EIO;
	return found;
}

static int session_new(struct meta *m)
{
	int rc = sqlite3session_create(m->db, "main", &m->sess);

	if (rc == SQLITE_OK) {
		sqlite3session_table_filter(m->sess, not_config, NULL);
		rc = sqlite3session_attach(m->sess, NULL);
	}
	if (rc != SQLITE_OK) {
		if (m->sess)
			sqlite3session_delete(m->sess);
		m->sess = NULL;
		return meta_sql_err(m, rc, "session");
	}
	return 0;
}

int meta_journal_start(struct meta *m)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	rc = jtime_create(m);
	if (!rc && !m->sess)
		rc = session_new(m);
	return meta_txn_end(m, rc);
}

void meta_journal_stop(struct meta *m)
{
	if (m->sess)
		sqlite3session_delete(m->sess);
	m->sess = NULL;
}

static uint64_t config_u64(struct meta *m, const char *key)
{
	sqlite3_stmt *st;
	uint64_t v = 0;

	if (meta_prepare(m, "SELECT value FROM config WHERE key = ?1", &st))
		return 0;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (meta_step(m, st) > 0)
		v = strtoull((const char *)sqlite3_column_text(st, 0), NULL,
			     10);
	sqlite3_finalize(st);
	return v;
}

static int config_set_u64(struct meta *m, const char *key, uint64_t v)
{
	sqlite3_stmt *st;
	char num[24];
	int rc;

	rc = meta_prepare(m, "INSERT OR REPLACE INTO config(key, value)"
			  " VALUES (?1, ?2)", &st);
	if (rc)
		return rc;
	snprintf(num, sizeof(num), "%" PRIu64, v);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, num, -1, SQLITE_STATIC);
	rc = meta_step(m, st);
	sqlite3_finalize(st);
	return rc < 0 ? rc : 0;
}

/* Write the sequence numbers in one transaction (lock held, none open). */
static int save_seqs(struct meta *m, uint64_t jseq, uint64_t cseq)
{
	int rc = sqlite3_exec(m->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return meta_sql_err(m, rc, "BEGIN");
	rc = config_set_u64(m, "jrnl_seq", jseq);
	if (!rc)
		rc = config_set_u64(m, "ckpt_seq", cseq);
	if (!rc) {
		int src = sqlite3_exec(m->db, "COMMIT", NULL, NULL, NULL);

		if (src != SQLITE_OK)
			rc = meta_sql_err(m, src, "COMMIT");
	}
	if (rc && !sqlite3_get_autocommit(m->db))
		sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Copy the database src (in its open read transaction, if any) to path. */
static int backup_to(struct meta *m, sqlite3 *src, const char *path)
{
	sqlite3_backup *b;
	sqlite3 *dst;
	int rc, fd;

	rc = sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE |
			     SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		log_error("meta: snapshot: cannot create %s: %s", path,
			  sqlite3_errstr(rc));
		sqlite3_close(dst);
		return -EIO;
	}
	b = sqlite3_backup_init(dst, "main", src, "main");
	if (!b) {
		log_error("meta: snapshot to %s: %s", path,
			  sqlite3_errmsg(dst));
		sqlite3_close(dst);
		return -EIO;
	}
	rc = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		log_error("meta: snapshot to %s: %s (sqlite %d)", path,
			  sqlite3_errstr(rc), rc);
		sqlite3_close(dst);
		return (rc & 0xff) == SQLITE_FULL ? -ENOSPC : -EIO;
	}
	/* a checkpoint is one self-contained file */
	sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
	rc = sqlite3_close(dst);
	if (rc != SQLITE_OK)
		return -EIO;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return rc;
	}
	close(fd);
	return 0;
}

bool meta_journal_has_changes(struct meta *m)
{
	bool changed = false;

	if (meta_txn_begin(m, META_TXN_NONE) == 0) {
		changed = m->sess && !sqlite3session_isempty(m->sess);
		meta_txn_end(m, 0);
	}
	return changed;
}

/* sqlite3session_changeset_strm's output: append to the buffer. */
static int cs_out(void *arg, const void *data, int n)
{
	return buf_append(arg, data, (size_t)n) ? SQLITE_NOMEM : SQLITE_OK;
}

/* A read-only connection to the database file, for a snapshot taken
 * outside the lock. */
static int reader_open(struct meta *m, sqlite3 **reader)
{
	int rc = sqlite3_open_v2(m->path, reader, SQLITE_OPEN_READONLY |
				 SQLITE_OPEN_NOMUTEX, NULL);

	if (rc != SQLITE_OK) {
		log_error("meta: snapshot: open %s: %s", m->path,
			  sqlite3_errstr(rc));
		sqlite3_close(*reader);
		*reader = NULL;
		return -EIO;
	}
	sqlite3_busy_timeout(*reader, 5000);
	return 0;
}

/* Append the changes recorded since the last cut to cs and start a fresh
 * recorder (lock held).  *grew: cs grew. */
static int changes_take(struct meta *m, struct buf *cs, int *grew)
{
	/* streamed straight into cs: no second copy of a large changeset
	 * in sqlite's memory */
	size_t base = cs->len;
	int src = sqlite3session_changeset_strm(m->sess, cs_out, cs);

	if (src != SQLITE_OK) {
		cs->len = base;
		return meta_sql_err(m, src, "changeset");
	}
	*grew = cs->len > base;
	/* a fresh recorder: the next cut starts from here */
	sqlite3session_delete(m->sess);
	m->sess = NULL;
	return session_new(m);
}

int meta_journal_cut(struct meta *m, struct buf *cs, uint64_t *jseq,
		     const char *snap_path, uint64_t *ckpt_seq)
{
	sqlite3 *reader = NULL;
	uint64_t j, c;
	int rc, n = 0;

	if (snap_path && m->path) {
		rc = reader_open(m, &reader);
		if (rc)
			return rc;
	}
	rc = meta_txn_begin(m, META_TXN_NONE);
	if (rc)
		goto out;
	if (m->sess && !sqlite3session_isempty(m->sess)) {
		rc = jtime_set(m, config_u64(m, "jrnl_seq") + 1);
		if (!rc)
			rc = changes_take(m, cs, &n);
		if (rc)
			goto out_unlock;
	}
	j = config_u64(m, "jrnl_seq") + (n > 0);
	c = config_u64(m, "ckpt_seq") + (snap_path != NULL);
	if (n > 0 || snap_path) {
		rc = save_seqs(m, j, c);
		if (rc)
			goto out_unlock;
	}
	*jseq = j;
	if (ckpt_seq)
		*ckpt_seq = c;
	if (snap_path && !m->path) {
		/* in memory: copied through its own connection, locked */
		rc = backup_to(m, m->db, snap_path);
	} else if (reader) {
		/* pin the state as of now; copied after the lock is gone */
		rc = sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM config",
				  NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			rc = meta_sql_err(m, rc, "snapshot read");
	}
out_unlock:
	meta_txn_end(m, 0);
	if (rc == 0 && reader) {
		rc = backup_to(m, reader, snap_path);
		sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL);
	}
out:
	if (reader)
		sqlite3_close(reader);
	if (rc && snap_path)
		unlink(snap_path);
	return rc;
}

static int changes_of_locked(struct meta *m, const void *cs, size_t len,
			     struct meta_changes *out);

static int abort_on_conflict(void *ctx, int why, sqlite3_changeset_iter *it)
{
	const char *table = "?";
	int ncol, op, ind;

	sqlite3changeset_op(it, &table, &ncol, &op, &ind);
	/* jtime says when the newest entry was cut: the entry's own value
	 * wins over whatever the row held (a follower's catch-up, a
	 * database from before the table) */
	if (!strcmp(table, "jtime"))
		return why == SQLITE_CHANGESET_DATA ||
				       why == SQLITE_CHANGESET_CONFLICT ?
			       SQLITE_CHANGESET_REPLACE :
			       SQLITE_CHANGESET_OMIT;
	log_error("meta: journal entry does not apply: conflict %d on table "
		  "%s", why, table);
	return SQLITE_CHANGESET_ABORT;
}

int meta_journal_apply(struct meta *m, const void *cs, size_t len)
{
	struct meta_changes ch;
	int rc;

	if (len > INT32_MAX)
		return -EFBIG;
	memset(&ch, 0, sizeof(ch));
	rc = meta_txn_begin(m, META_TXN_NONE);
	if (rc)
		return rc;
	/* a follower's: what changed, read before the rows change */
	if (m->on_apply)
		rc = changes_of_locked(m, cs, len, &ch);
	if (!rc) {
		rc = sqlite3changeset_apply(m->db, (int)len, (void *)cs, NULL,
					    abort_on_conflict, NULL);
		if (rc != SQLITE_OK) {
			log_error("meta: journal entry does not apply: %s",
				  sqlite3_errstr(rc));
			rc = -EIO;
		} else {
			m->change_count++;
		}
	}
	rc = meta_txn_end(m, rc);
	if (m->on_apply)
		m->on_apply(m->on_apply_arg, rc ? NULL : &ch);
	meta_changes_free(&ch);
	return rc;
}

void meta_journal_on_apply(struct meta *m, meta_applied_fn *fn, void *arg)
{
	m->on_apply = fn;
	m->on_apply_arg = arg;
}

/* ---- followers: what a changeset changed, and the catch-up diff ---- */

void meta_changes_free(struct meta_changes *ch)
{
	size_t i;

	for (i = 0; i < ch->nnames; i++)
		free(ch->names[i].name);
	free(ch->inodes);
	free(ch->blocks);
	free(ch->names);
	memset(ch, 0, sizeof(*ch));
}

/* Room for one more of n items of size sz in *arr (capacity *cap). */
static int grow(void **arr, size_t *cap, size_t n, size_t sz)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	p = realloc(*arr, ncap * sz);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

static int add_inode(struct meta_changes *ch, uint64_t ino)
{
	if (grow((void **)&ch->inodes, &ch->cap_inodes, ch->ninodes,
		 sizeof(*ch->inodes)))
		return -ENOMEM;
	ch->inodes[ch->ninodes++] = ino;
	return 0;
}

static int add_block(struct meta_changes *ch, uint64_t ino, uint64_t idx)
{
	if (grow((void **)&ch->blocks, &ch->cap_blocks, ch->nblocks,
		 sizeof(*ch->blocks)))
		return -ENOMEM;
	ch->blocks[ch->nblocks].ino = ino;
	ch->blocks[ch->nblocks++].idx = idx;
	return add_inode(ch, ino);
}

static int add_name(struct meta_changes *ch, uint64_t parent,
		    const void *name, int len)
{
	char *copy;

	if (len < 0 || grow((void **)&ch->names, &ch->cap_names, ch->nnames,
			    sizeof(*ch->names)))
		return -ENOMEM;
	copy = malloc((size_t)len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, name, (size_t)len);
	copy[len] = 0;
	ch->names[ch->nnames].parent = parent;
	ch->names[ch->nnames++].name = copy;
	/* the directory's listing changed as well */
	return add_inode(ch, parent);
}

/* Column col of the change's new (or, want_old, old) row; NULL when the
 * change does not carry it (an UPDATE's unchanged columns). */
static sqlite3_value *change_col(sqlite3_changeset_iter *it, int col,
				 bool want_old)
{
	sqlite3_value *v = NULL;

	if (want_old)
		sqlite3changeset_old(it, col, &v);
	else
		sqlite3changeset_new(it, col, &v);
	return v;
}

/*
 * A dentry change (id, parent, name, ino): the name it removed and the
 * one it added, and the inode it names.  An UPDATE carries only the
 * columns it changed; the rest are m's (the row before the change).
 */
static int dentry_change(struct meta *m, sqlite3_changeset_iter *it, int op,
			 struct meta_changes *ch)
{
	sqlite3_value *v[2][4] = { { NULL } };
	sqlite3_stmt *st = NULL;
	int side, col, rc = 0;

	for (side = 0; side < 2; side++)
		for (col = 1; col < 4; col++)
			if ((side == 0 && op != SQLITE_INSERT) ||
			    (side == 1 && op != SQLITE_DELETE))
				v[side][col] = change_col(it, col, side == 0);
	if (op == SQLITE_UPDATE) {
		sqlite3_value *id = change_col(it, 0, true);

		rc = meta_prepare(m, "SELECT id, parent, name, ino FROM dentry"
				  " WHERE id = ?1", &st);
		if (rc)
			return rc;
		if (id)
			sqlite3_bind_value(st, 1, id);
		if (meta_step(m, st) > 0)
			for (col = 1; col < 4; col++)
				for (side = 0; side < 2; side++)
					if (!v[side][col])
						v[side][col] =
							sqlite3_column_value(
								st, col);
	}
	for (side = 0; !rc && side < 2; side++) {
		if (!v[side][1] || !v[side][2])
			continue;
		rc = add_name(ch, (uint64_t)sqlite3_value_int64(v[side][1]),
			      sqlite3_value_blob(v[side][2]),
			      sqlite3_value_bytes(v[side][2]));
		if (!rc && v[side][3])
			rc = add_inode(ch, (uint64_t)sqlite3_value_int64(
						   v[side][3]));
	}
	sqlite3_finalize(st);
	return rc;
}

/* The primary key's column col of the change (any change carries it). */
static uint64_t change_key(sqlite3_changeset_iter *it, int op, int col)
{
	sqlite3_value *v = change_col(it, col, op != SQLITE_INSERT);

	return v ? (uint64_t)sqlite3_value_int64(v) : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_block(const void *a, const void *b)
{
	const struct meta_block_key *x = a, *y = b;

	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sort the inodes and blocks and drop their repeats. */
static void changes_unique(struct meta_changes *ch)
{
	size_t i, n;

	if (ch->ninodes)
		qsort(ch->inodes, ch->ninodes, sizeof(*ch->inodes), cmp_u64);
	for (i = 0, n = 0; i < ch->ninodes; i++)
		if (!n || ch->inodes[n - 1] != ch->inodes[i])
			ch->inodes[n++] = ch->inodes[i];
	ch->ninodes = n;
	if (ch->nblocks)
		qsort(ch->blocks, ch->nblocks, sizeof(*ch->blocks), cmp_block);
	for (i = 0, n = 0; i < ch->nblocks; i++)
		if (!n || cmp_block(&ch->blocks[n - 1], &ch->blocks[i]))
			ch->blocks[n++] = ch->blocks[i];
	ch->nblocks = n;
}

/* One change of the changeset into ch (lock held). */
static int change_one(struct meta *m, sqlite3_changeset_iter *it,
		      struct meta_changes *ch)
{
	const char *table;
	int ncol, op, ind;

	if (sqlite3changeset_op(it, &table, &ncol, &op, &ind) != SQLITE_OK)
		return -EIO;
	if (!strcmp(table, "dentry"))
		return dentry_change(m, it, op, ch);
	if (!strcmp(table, "block") || !strcmp(table, "patch"))
		return add_block(ch, change_key(it, op, 0),
				 change_key(it, op, 1));
	if (!strcmp(table, "inode") || !strcmp(table, "xattr") ||
	    !strcmp(table, "inline_data"))
		return add_inode(ch, change_key(it, op, 0));
	return 0; /* object: no file shows it */
}

static int changes_of_locked(struct meta *m, const void *cs, size_t len,
			     struct meta_changes *out)
{
	sqlite3_changeset_iter *it;
	int rc, src;

	if (len > INT32_MAX)
		return -EFBIG;
	src = sqlite3changeset_start(&it, (int)len, (void *)cs);
	if (src != SQLITE_OK)
		return meta_sql_err(m, src, "changeset");
	rc = 0;
	while (!rc && (src = sqlite3changeset_next(it)) == SQLITE_ROW)
		rc = change_one(m, it, out);
	if (!rc && src != SQLITE_DONE)
		rc = meta_sql_err(m, src, "changeset");
	src = sqlite3changeset_finalize(it);
	if (!rc && src != SQLITE_OK)
		rc = meta_sql_err(m, src, "changeset");
	if (!rc)
		changes_unique(out);
	return rc;
}

int meta_changes_of(struct meta *m, const void *cs, size_t len,
		    struct meta_changes *out)
{
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	rc = changes_of_locked(m, cs, len, out);
	meta_txn_end(m, 0);
	return rc;
}

/* The volume's tables, as the journal records them (all but config);
 * those of later versions only when both databases have them. */
static const char *const volume_tables[] = {
	"inode", "dentry", "xattr", "block", "patch", "inline_data", "object",
	"snapshot", "snap_hold", "jtime",
};

/* Does schema ("main" or "other") hold table? */
static bool has_table(struct meta *m, const char *schema, const char *table)
{
	char sql[96];
	sqlite3_stmt *st;
	bool yes;

	snprintf(sql, sizeof(sql), "SELECT 1 FROM %s.sqlite_master WHERE "
		 "type = 'table' AND name = ?1", schema);
	if (sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	yes = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return yes;
}

/* The diff itself, with the other database attached as "other" (lock
 * held): a session on "other" diffed against "main" records what turns
 * main into other. */
static int diff_attached(struct meta *m, struct buf *cs)
{
	sqlite3_session *s = NULL;
	char *err = NULL;
	size_t i;
	int rc = sqlite3session_create(m->db, "other", &s);

	for (i = 0; rc == SQLITE_OK && i < ARRAY_SIZE(volume_tables); i++) {
		if (!has_table(m, "main", volume_tables[i]) ||
		    !has_table(m, "other", volume_tables[i]))
			continue;
		rc = sqlite3session_attach(s, volume_tables[i]);
		if (rc == SQLITE_OK)
			rc = sqlite3session_diff(s, "main", volume_tables[i],
						 &err);
		if (rc != SQLITE_OK && err)
			log_error("meta: diff of %s: %s", volume_tables[i],
				  err);
		sqlite3_free(err);
		err = NULL;
	}
	if (rc == SQLITE_OK)
		rc = sqlite3session_changeset_strm(s, cs_out, cs);
	if (s)
		sqlite3session_delete(s);
	return rc == SQLITE_OK ? 0 : meta_sql_err(m, rc, "diff");
}

int meta_journal_diff(struct meta *m, const char *path, struct buf *cs)
{
	sqlite3_stmt *st;
	size_t base = cs->len;
	int rc = meta_txn_begin(m, META_TXN_NONE);

	if (rc)
		return rc;
	rc = meta_prepare(m, "ATTACH DATABASE ?1 AS other", &st);
	if (rc)
		goto out;
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	rc = meta_step(m, st);
	sqlite3_finalize(st);
	if (rc < 0)
		goto out;
	rc = diff_attached(m, cs);
	sqlite3_exec(m->db, "DETACH DATABASE other", NULL, NULL, NULL);
out:
	if (rc)
		cs->len = base;
	meta_txn_end(m, 0);
	return rc < 0 ? rc : 0;
}

int meta_copy_reader(struct meta *m, sqlite3 **reader)
{
	return reader_open(m, reader);
}

int meta_copy_to(struct meta *m, sqlite3 *src, const char *path)
{
	return backup_to(m, src, path);
}
