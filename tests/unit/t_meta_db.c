/*
 * t_meta_db.c - unit tests of the metadata layer as a whole database
 * (src/meta/meta.h, meta.c, meta_pend.c): open and close, config, the
 * change counter, batched write attributes (also across a journal cut and
 * a kill -9), threads, the schema upgrade, persistence and snapshots,
 * WAL checkpoints, the page size, WAL frames at a kill -9.
 *
 * Purpose: what holds for the database rather than for one operation, on
 * an in-memory database and on real files reopened, copied, and changed
 * behind meta's back with a second connection.
 *
 * Data model: each test opens its own database (t_meta.h helpers); file
 * databases live in a private mkdtemp() directory removed at the end.
 *
 * Invariants: a test leaves no database open (a crash test's child is
 * killed with its database open, on purpose).
 */
#include "util/compat.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "t_meta.h"
#include "meta/meta_int.h" /* meta_vfs_name() */

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

/* meta_getmode(), asked before each write of a user without CAP_FSETID,
 * reads the mode without writing the batched attributes: the WAL does
 * not grow (meta_getattr() writes them, a transaction). */
static off_t wal_size(const char *path)
{
	char p[300];
	struct stat sb;

	snprintf(p, sizeof(p), "%s-wal", path);
	return stat(p, &sb) ? -1 : sb.st_size;
}

static void test_getmode_keeps_batch(void)
{
	struct timespec t1 = ts(500, 1), t2 = ts(600, 2);
	struct meta *m = NULL;
	struct meta_attr a, in;
	uint64_t idx0 = 0, f;
	uint32_t mode = 0;
	char path[256];
	off_t w0;

	db_path("getmode.db", path, sizeof(path));
	rm_db(path);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	f = mk(m, 1, "f", S_IFREG | 04755);
	CHECK_RC(meta_write_done(m, f, 100, &t1, &idx0, 1), 0);
	CHECK_RC(meta_write_done(m, f, 300, &t2, NULL, 0), 0);
	w0 = wal_size(path);
	CHECK(w0 > 0);
	CHECK_RC(meta_getmode(m, f, &mode), 0);
	CHECK_EQ_U64(mode, S_IFREG | 04755);
	CHECK_RC(wal_size(path), w0);
	CHECK_RC(meta_getattr(m, f, &a), 0);
	CHECK_EQ_U64(a.size, 300);
	CHECK(wal_size(path) > w0);
	/* a mode changed since is seen; a directory's; none of a missing
	 * inode */
	memset(&in, 0, sizeof(in));
	in.mode = 0755;
	CHECK_RC(meta_setattr(m, f, &in, META_SET_MODE, &t2, &a), 0);
	CHECK_RC(meta_getmode(m, f, &mode), 0);
	CHECK_EQ_U64(mode, S_IFREG | 0755);
	CHECK_RC(meta_getmode(m, 1, &mode), 0);
	CHECK(S_ISDIR(mode));
	CHECK_RC(meta_getmode(m, 99999, &mode), -ENOENT);
	meta_close(m);
	rm_db(path);
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

/*
 * WAL checkpoints run in meta's own thread (meta.c): the WAL of a long
 * stream of commits stays bounded (the writer finishes what the thread
 * left past 8,000 pages), the database file receives the pages, the last
 * close leaves no WAL behind, and nothing is lost on the way.
 */
static char wal_of_db[300];

static int wal_mk(struct meta *m, uint64_t d, int i, off_t *wal_peak)
{
	struct timespec t = ts(5, 0);
	char name[32];
	struct stat sb;
	int rc;

	snprintf(name, sizeof(name), "f%05d", i);
	rc = meta_mknod(m, d, name, S_IFREG | 0644, 0, 0, 0, NULL, &t, NULL);
	if (!rc)
		rc = meta_setxattr(m, lk(m, d, name), "user.x", name,
				   strlen(name), 0, &t);
	if (stat(wal_of_db, &sb) == 0 && sb.st_size > *wal_peak)
		*wal_peak = sb.st_size;
	return rc;
}

static void test_wal_checkpoints(void)
{
	/* a new database's pages are of 2 KiB (meta.c) */
	const off_t frame = 2048 + 24, wal_max = 16000 * frame + 32;
	struct timespec t = ts(5, 0);
	char path[256], name[32];
	struct meta *m = NULL;
	struct stat sb;
	off_t wal_peak = 0, db0;
	uint64_t d;
	int i, waited;

	db_path("wal.db", path, sizeof(path));
	snprintf(wal_of_db, sizeof(wal_of_db), "%s-wal", path);
	rm_db(path);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	d = mk(m, 1, "d", S_IFDIR | 0755);
	CHECK(stat(path, &sb) == 0);
	db0 = sb.st_size;
	/* past the thread's threshold, short of the writer's own */
	for (i = 0; wal_peak <= 1200 * frame && i < 12000; i++)
		CHECK_RC(wal_mk(m, d, i, &wal_peak), 0);
	CHECK(wal_peak > 1200 * frame && wal_peak < 4000 * frame);
	/* the thread copies the pages into the database file */
	for (waited = 0; waited < 500; waited++) {
		if (stat(path, &sb) == 0 && sb.st_size > db0)
			break;
		usleep(10000);
	}
	CHECK(sb.st_size > db0);
	/* a long stream of commits (about 48,000 pages of WAL without a
	 * checkpoint): the WAL stays bounded, though the writer's own
	 * checkpoint finds the thread busy now and then */
	for (; i < 12000; i++)
		CHECK_RC(wal_mk(m, d, i, &wal_peak), 0);
	if (wal_peak > wal_max)
		fprintf(stderr, "WAL of %lld bytes\n", (long long)wal_peak);
	CHECK(wal_peak <= wal_max);
	for (i = 0; i < 12000; i += 2) {
		snprintf(name, sizeof(name), "f%05d", i);
		CHECK_RC(meta_unlink(m, d, name, &t, NULL), 0);
	}
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
	meta_close(m);
	m = NULL;
	CHECK(stat(wal_of_db, &sb) != 0 && errno == ENOENT);

	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (m) {
		for (i = 0; i < 12000; i++) {
			snprintf(name, sizeof(name), "f%05d", i);
			if ((lk(m, d, name) != 0) != (i % 2 == 1))
				break;
		}
		CHECK_EQ_U64(i, 12000);
		CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
		meta_close(m);
	}
	rm_db(path);
}

/* One integer from sql on path, through a connection of its own. */
static int64_t sql_int(const char *path, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;
	sqlite3 *db;

	if (sqlite3_open(path, &db) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* A new database gets pages of 2 KiB; one made before keeps its own. */
static void test_page_size(void)
{
	char path[256];
	struct meta *m = NULL;

	db_path("page.db", path, sizeof(path));
	rm_db(path);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	mk(m, 1, "f", S_IFREG | 0644);
	meta_close(m);
	CHECK_EQ_U64(sql_int(path, "PRAGMA page_size"), 2048);
	rm_db(path);

	/* an empty database in WAL mode already has its page size */
	CHECK_RC(raw_sql(path, "PRAGMA page_size = 4096;"
			       " PRAGMA journal_mode = WAL;"), SQLITE_OK);
	m = NULL;
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	mk(m, 1, "f", S_IFREG | 0644);
	meta_close(m);
	CHECK_EQ_U64(sql_int(path, "PRAGMA page_size"), 4096);
	m = NULL;
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (m) {
		CHECK(lk(m, 1, "f") != 0);
		CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
		meta_close(m);
	}
	rm_db(path);
}

/* In a child: n commits of a name each (frames only in the WAL: too few
 * for a checkpoint), a rename that rewrites pages of the one before in
 * the same WAL, then death by SIGKILL with everything open. */
static void wal_kill_child(const char *path, int n)
{
	struct timespec t = ts(9, 0);
	struct meta *m = NULL;
	char name[32];
	int i;

	if (meta_open(path, BS, 0, 0, &m))
		_exit(2);
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "k%04d", i);
		if (meta_mknod(m, 1, name, S_IFREG | 0644, 0, 0, 0, NULL, &t,
			       NULL))
			_exit(3);
	}
	if (meta_rename(m, 1, "k0000", 1, "renamed", 0, &t, NULL))
		_exit(4);
	raise(SIGKILL);
	_exit(5);
}

/* Every commit acknowledged before a kill -9 is in the WAL, whole: the
 * main connection's VFS holds a commit's frames back and writes them in
 * one pwrite when the commit frame's page comes (meta_vfs.c), before the
 * commit returns, the last commit's too. */
static void test_wal_frames_kill(void)
{
	const int n = 150;
	char path[256], name[32];
	struct meta *m = NULL;
	int status = 0, i;
	pid_t pid;

	db_path("walkill.db", path, sizeof(path));
	rm_db(path);
	pid = fork();
	if (pid == 0)
		wal_kill_child(path, n);
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	CHECK(lk(m, 1, "k0000") == 0);
	CHECK(lk(m, 1, "renamed") != 0);
	for (i = 1; i < n; i++) {
		snprintf(name, sizeof(name), "k%04d", i);
		if (!lk(m, 1, name))
			break;
	}
	CHECK_EQ_U64(i, n);
	CHECK_RC(meta_fsck(m, 0, NULL, NULL), 0);
	meta_close(m);
	rm_db(path);
}

/* The child of test_vfs_held_frames(): through meta_vfs.c, a
 * transaction of about 4 MB with a page cache of 20 pages (SQLite writes
 * frames before the commit, reads some back and rewrites others), more
 * than the VFS holds back at once, then small commits, each read back,
 * then kill -9. */
static void vfs_child(const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char sql[128];
	int i;

	if (sqlite3_open_v2(path, &db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
			    meta_vfs_name()) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA journal_mode = WAL;"
			 "PRAGMA synchronous = NORMAL;"
			 "PRAGMA cache_size = 20;"
			 "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB);",
			 NULL, NULL, NULL) != SQLITE_OK)
		_exit(2);
	if (sqlite3_exec(db, "BEGIN;"
			 "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL"
			 " SELECT x + 1 FROM c WHERE x < 2000)"
			 " INSERT INTO t SELECT x, randomblob(2000) FROM c;"
			 "UPDATE t SET v = zeroblob(1000) WHERE k % 3 = 0;"
			 "COMMIT;", NULL, NULL, NULL) != SQLITE_OK)
		_exit(3);
	for (i = 0; i < 100; i++) {
		snprintf(sql, sizeof(sql),
			 "INSERT INTO t VALUES (%d, zeroblob(%d))", 10000 + i,
			 100 + i);
		if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_prepare_v2(db, "SELECT count(*), sum(length(v))"
				       " FROM t WHERE k >= 10000", -1, &st,
				       NULL) != SQLITE_OK ||
		    sqlite3_step(st) != SQLITE_ROW ||
		    sqlite3_column_int(st, 0) != i + 1 ||
		    sqlite3_column_int(st, 1) != (i + 1) * 100 + i * (i + 1) / 2)
			_exit(4);
		sqlite3_finalize(st);
	}
	raise(SIGKILL);
	_exit(5);
}

static int64_t q_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* What the VFS holds back is written, in order, before each commit
 * returns, also for a transaction it cannot hold whole and one whose
 * pages SQLite writes before the commit: read back by SQLite's own VFS
 * after a kill -9, every commit is there and the database is sound. */
static void test_vfs_held_frames(void)
{
	char path[256];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int status = 0;
	pid_t pid;

	db_path("vfs.db", path, sizeof(path));
	rm_db(path);
	CHECK(meta_vfs_name() != NULL);
	pid = fork();
	if (pid == 0)
		vfs_child(path);
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK_RC(WIFSIGNALED(status) ? WTERMSIG(status) : -WEXITSTATUS(status),
		 SIGKILL);
	CHECK_RC(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL),
		 SQLITE_OK);
	CHECK_RC(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st,
				    NULL), SQLITE_OK);
	CHECK(sqlite3_step(st) == SQLITE_ROW &&
	      strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0);
	sqlite3_finalize(st);
	CHECK_EQ_U64(q_int(db, "SELECT count(*) FROM t"), 2100);
	CHECK_EQ_U64(q_int(db, "SELECT count(*) FROM t WHERE k <= 2000 AND"
			   " length(v) = (CASE k % 3 WHEN 0 THEN 1000"
			   " ELSE 2000 END)"), 2000);
	CHECK_EQ_U64(q_int(db, "SELECT sum(length(v)) FROM t"
			   " WHERE k >= 10000"), 100 * 100 + 99 * 100 / 2);
	sqlite3_close(db);
	rm_db(path);
}

int main(void)
{
	if (tmpdir_make("t_meta_db"))
		return 1;
	test_open();
	test_config();
	test_change_count();
	test_batched_writes();
	test_getmode_keeps_batch();
	test_batched_writes_journal();
	test_batched_writes_crash();
	test_threads();
	test_dentry_unique_dropped();
	test_persistence();
	test_wal_checkpoints();
	test_page_size();
	test_wal_frames_kill();
	test_vfs_held_frames();
	rmdir(tmpdir);
	return check_done("t_meta_db");
}
