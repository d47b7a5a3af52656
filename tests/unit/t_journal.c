/*
 * t_journal.c - unit tests of the metadata journal and checkpoints
 * (src/volume/journal.h, meta_journal_* in src/meta/meta.h).
 *
 * Purpose: the state a restore builds from the store (newest checkpoint
 * plus journal) is exactly the state of the live database at the last
 * successful sync or checkpoint, whatever store call failed on the way;
 * entries reach the store in order; checkpoints trim what they cover.
 *
 * Data model: a live database in a private directory, a local-directory
 * store wrapped by the fault injector, and a deterministic workload of
 * namespace, attribute, xattr and block-map changes.  States are compared
 * as text dumps of every table but config (the copy's own bookkeeping).
 */
#include "util/compat.h"

#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "meta/meta.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/util.h"
#include "volume/journal.h"
#include "volume/snapshot.h"
#include "volume/sweep.h"
#include "volume/volume.h"

#include "check.h"

#define BS 4096u

static char tmpdir[64];
static struct blob_ctx bc = { { 7 }, 3 };

static void path_of(const char *name, struct buf *out)
{
	buf_reset(out);
	buf_appendf(out, "%s/%s", tmpdir, name);
}

/* Every table but config, as text. */
static void dump(const char *db_path, struct buf *out)
{
	static const char *const q[] = {
		"SELECT ino, mode, uid, gid, nlink, size, rdev, nblocks,"
		" mtime_s, mtime_ns, ctime_s, ctime_ns, parent, target"
		" FROM inode ORDER BY ino",
		"SELECT id, parent, hex(name), ino FROM dentry ORDER BY id",
		"SELECT ino, hex(name), hex(value) FROM xattr ORDER BY 1, 2",
		"SELECT ino, idx, hash, dirty FROM block ORDER BY 1, 2",
		"SELECT hash, refcount, size FROM object ORDER BY 1",
	};
	sqlite3 *db;
	size_t i;

	buf_reset(out);
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL)) {
		buf_appendf(out, "cannot open %s", db_path);
		sqlite3_close(db);
		return;
	}
	for (i = 0; i < ARRAY_SIZE(q); i++) {
		sqlite3_stmt *st;

		if (sqlite3_prepare_v2(db, q[i], -1, &st, NULL)) {
			buf_appendf(out, "bad query %zu: %s\n", i,
				    sqlite3_errmsg(db));
			continue;
		}
		while (sqlite3_step(st) == SQLITE_ROW) {
			int c, n = sqlite3_column_count(st);

			for (c = 0; c < n; c++) {
				const unsigned char *t =
					sqlite3_column_text(st, c);

				buf_appendf(out, "%s|", t ? (const char *)t
							  : "NULL");
			}
			buf_append(out, "\n", 1);
		}
		sqlite3_finalize(st);
		buf_append(out, "--\n", 3);
	}
	sqlite3_close(db);
}

/* Restore the store's state into a fresh file; 0 or -errno. */
static int restore(struct store *s, const char *name, struct buf *state)
{
	struct buf path = BUF_INIT;
	struct meta *m = NULL;
	uint64_t seq = 0, applied = 0;
	int rc;

	path_of(name, &path);
	rc = checkpoint_restore(s, &bc, buf_str(&path), &seq, NULL, NULL);
	if (rc == 0)
		rc = meta_open(buf_str(&path), BS, 0, 0, &m);
	if (rc == 0)
		rc = journal_replay(s, &bc, m, &applied, NULL, NULL);
	meta_close(m);
	if (rc == 0)
		dump(buf_str(&path), state);
	unlink(buf_str(&path));
	buf_free(&path);
	return rc;
}

static int count_keys_cb(const char *key, uint64_t size, void *arg)
{
	(*(uint64_t *)arg)++;
	return 0;
}

static uint64_t count_keys(struct store *s, const char *prefix)
{
	uint64_t n = 0;

	store_list(s, prefix, count_keys_cb, &n);
	return n;
}

/* Step i of the workload: a few changes of every kind. */
static void work(struct meta *m, int i)
{
	struct timespec now = { 1700000000 + i, i };
	struct meta_attr a, set;
	char name[32], hash[META_HASH_LEN + 1];
	uint64_t idx = (uint64_t)i % 3, gone;

	snprintf(name, sizeof(name), "f%d", i % 7);
	if (meta_lookup(m, META_ROOT_INO, name, &a) == -ENOENT)
		meta_mknod(m, META_ROOT_INO, name, S_IFREG | 0644, 0, 0, 0,
			   NULL, &now, &a);
	meta_write_done(m, a.ino, (uint64_t)(i + 1) * 1000, &now, &idx, 1);
	memset(hash, "0123456789abcdef"[i % 16], META_HASH_LEN);
	hash[META_HASH_LEN] = 0;
	meta_block_commit(m, a.ino, idx, hash, 100 + (uint64_t)i, 0);
	meta_setxattr(m, a.ino, "user.i", &i, sizeof(i), 0, &now);
	memset(&set, 0, sizeof(set));
	set.mode = (uint32_t)(0600 | (i % 2 ? 044 : 0));
	meta_setattr(m, a.ino, &set, META_SET_MODE, &now, NULL);
	if (i % 5 == 4) {
		snprintf(name, sizeof(name), "f%d", (i + 3) % 7);
		meta_unlink(m, META_ROOT_INO, name, &now, &gone);
		if (gone)
			meta_inode_purge(m, gone);
	}
	if (i % 6 == 5) {
		char to[32];

		snprintf(name, sizeof(name), "f%d", (i + 1) % 7);
		snprintf(to, sizeof(to), "r%d", i);
		meta_rename(m, META_ROOT_INO, name, META_ROOT_INO, to, 0, &now,
			    &gone);
	}
}

/* A live database with its journal on a fault-wrapped file store. */
struct rig {
	struct store *s;
	struct meta *m;
	struct journal *j;
	struct buf db;
};

static void rig_open(struct rig *r, const char *tag)
{
	struct buf p = BUF_INIT;
	struct store *inner = NULL;

	memset(r, 0, sizeof(*r));
	path_of(tag, &p);
	rm_rf(buf_str(&p));
	CHECK_RC(store_file_open(buf_str(&p), 1, &inner), 0);
	CHECK_RC(store_fault_wrap(inner, &r->s), 0);
	path_of("live.db", &r->db);
	unlink(buf_str(&r->db));
	buf_appendf(&p, ".db-wal");
	CHECK_RC(meta_open(buf_str(&r->db), BS, 0, 0, &r->m), 0);
	CHECK_RC(journal_open(r->m, r->s, &bc, tmpdir, &r->j), 0);
	buf_free(&p);
}

static void rig_close(struct rig *r)
{
	struct buf p = BUF_INIT;

	journal_close(r->j);
	meta_close(r->m);
	store_close(r->s);
	unlink(buf_str(&r->db));
	buf_appendf(&p, "%s-wal", buf_str(&r->db));
	unlink(buf_str(&p));
	buf_reset(&p);
	buf_appendf(&p, "%s-shm", buf_str(&r->db));
	unlink(buf_str(&p));
	buf_free(&p);
	buf_free(&r->db);
}

/* The store's state equals the live one. */
static bool same_as_live(struct rig *r, const char *what)
{
	struct buf want = BUF_INIT, got = BUF_INIT;
	bool same;
	int rc;

	dump(buf_str(&r->db), &want);
	rc = restore(r->s, "restored.db", &got);
	same = rc == 0 && want.len == got.len &&
	       memcmp(want.data, got.data, want.len) == 0;
	if (!same)
		fprintf(stderr, "%s: restore rc %d\nlive:\n%.*s\nstore:\n"
			"%.*s\n", what, rc, (int)want.len,
			(const char *)want.data, (int)got.len,
			(const char *)got.data);
	buf_free(&want);
	buf_free(&got);
	return same;
}

static void test_roundtrip(void)
{
	struct journal_stats st;
	struct rig r;
	int i;

	rig_open(&r, "store-rt");
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK(same_as_live(&r, "empty"));
	for (i = 0; i < 40; i++) {
		work(r.m, i);
		if (i % 4 == 3) {
			CHECK_RC(journal_sync(r.j), 0);
			CHECK(same_as_live(&r, "after sync"));
		}
	}
	/* nothing changed: no entry */
	journal_get_stats(r.j, &st);
	CHECK_RC(journal_sync(r.j), 0);
	{
		struct journal_stats st2;

		journal_get_stats(r.j, &st2);
		CHECK_EQ_U64(st2.entries, st.entries);
	}
	CHECK_EQ_U64(count_keys(r.s, "meta/jrnl-"), 10);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpt-"), 1);
	/* a checkpoint covers and trims the journal */
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK_EQ_U64(count_keys(r.s, "meta/jrnl-"), 0);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpt-"), 1);
	CHECK(same_as_live(&r, "after checkpoint"));
	work(r.m, 41);
	CHECK_RC(journal_sync(r.j), 0);
	CHECK(same_as_live(&r, "checkpoint + entry"));
	CHECK_EQ_U64(meta_config_get_u64(r.m, "durable_seq", 0),
		     meta_config_get_u64(r.m, "ckpt_seq", 0));
	rig_close(&r);
}

/* A gate that records its calls and the store's entries at each, and
 * refuses when told to (without cutting). */
struct gate_rec {
	struct rig *r;
	int calls, refuse;
	uint64_t entries_seen;
};

static int test_gate(void *arg, int (*cut)(void *), void *cut_arg)
{
	struct gate_rec *g = arg;

	g->calls++;
	g->entries_seen = count_keys(g->r->s, "meta/jrnl-");
	if (g->refuse)
		return -EIO;
	return cut(cut_arg);
}

/*
 * Every cut goes through the gate (the mount's is the cache's barrier):
 * entries and checkpoints alike, before anything of that cut goes up; a
 * gate that refuses leaves the changes for the next cut.
 */
static void test_gate_runs_every_cut(void)
{
	struct rig r;
	struct gate_rec g = { .r = &r };

	rig_open(&r, "store-gate");
	CHECK_RC(journal_checkpoint(r.j), 0);
	journal_set_gate(r.j, test_gate, &g);
	work(r.m, 0);
	CHECK_RC(journal_sync(r.j), 0);
	CHECK_EQ_U64(g.calls, 1);
	CHECK_EQ_U64(g.entries_seen, 0);
	CHECK_EQ_U64(count_keys(r.s, "meta/jrnl-"), 1);
	work(r.m, 1);
	g.refuse = 1;
	CHECK_RC(journal_sync(r.j), -EIO);
	CHECK_EQ_U64(g.calls, 2);
	CHECK_EQ_U64(count_keys(r.s, "meta/jrnl-"), 1);
	g.refuse = 0;
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK_EQ_U64(g.calls, 3);
	CHECK(same_as_live(&r, "after a refused gate"));
	journal_set_gate(r.j, NULL, NULL);
	work(r.m, 2);
	CHECK_RC(journal_sync(r.j), 0);
	CHECK_EQ_U64(g.calls, 3);
	CHECK(same_as_live(&r, "without the gate"));
	rig_close(&r);
}

/*
 * Every store call of a sync or a checkpoint fails once, at each point in
 * turn; then the store comes back.  Whatever failed, the store holds a
 * consistent past state (never a newer or a torn one) and, after the next
 * successful sync, exactly the live state.
 */
static void test_faults(size_t part_size)
{
	int point, i;

	for (point = 0; point < 24; point++) {
		struct buf before = BUF_INIT, got = BUF_INIT;
		struct rig r;
		int rc;

		rig_open(&r, "store-fault");
		journal_set_part_size(r.j, part_size);
		CHECK_RC(journal_checkpoint(r.j), 0);
		for (i = 0; i < 8; i++)
			work(r.m, i);
		CHECK_RC(journal_sync(r.j), 0);
		dump(buf_str(&r.db), &before);
		for (i = 8; i < 16; i++)
			work(r.m, i);
		store_fault_arm(r.s, STORE_OP_ALL, (uint64_t)point / 2, 1,
				EIO);
		rc = point % 2 ? journal_checkpoint(r.j) : journal_sync(r.j);
		store_fault_arm(r.s, STORE_OP_ALL, 0, 0, 0);
		if (rc == 0) {
			CHECK(same_as_live(&r, "fault did not hit"));
		} else {
			/* the store still restores the earlier state, or
			 * the new one when the failure came after it */
			bool old;

			CHECK_RC(restore(r.s, "restored.db", &got), 0);
			old = got.len == before.len &&
			      memcmp(got.data, before.data, got.len) == 0;
			if (!old)
				CHECK(same_as_live(&r, "after failed call"));
		}
		/* more changes, then the store is back */
		work(r.m, 20);
		CHECK_RC(journal_sync(r.j), 0);
		CHECK(same_as_live(&r, "after recovery"));
		CHECK_RC(journal_checkpoint(r.j), 0);
		CHECK(same_as_live(&r, "after recovery checkpoint"));
		buf_free(&before);
		buf_free(&got);
		rig_close(&r);
	}
}

/* A failure of every upload leaves entries pending, in order; they go
 * out before anything newer once the store answers. */
static void test_pending_order(void)
{
	struct journal_stats st;
	struct rig r;
	int i;

	rig_open(&r, "store-pend");
	CHECK_RC(journal_checkpoint(r.j), 0);
	store_fault_arm(r.s, STORE_OP_PUT, 0, -1, EIO);
	for (i = 0; i < 3; i++) {
		work(r.m, i);
		CHECK(journal_sync(r.j) < 0);
	}
	journal_get_stats(r.j, &st);
	CHECK_EQ_U64(st.pending, 3);
	CHECK_EQ_U64(count_keys(r.s, "meta/jrnl-"), 0);
	store_fault_arm(r.s, STORE_OP_ALL, 0, 0, 0);
	work(r.m, 3);
	CHECK_RC(journal_sync(r.j), 0);
	journal_get_stats(r.j, &st);
	CHECK_EQ_U64(st.pending, 0);
	CHECK_EQ_U64(count_keys(r.s, "meta/jrnl-"), 4);
	CHECK(same_as_live(&r, "pending flushed"));
	rig_close(&r);
}

/* Bulk for the database: big xattrs on a few files. */
static void bulk(struct meta *m, int n)
{
	struct timespec now = { 1700000000, 0 };
	struct meta_attr a;
	char name[32], val[3000];
	int i;

	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "bulk%d", i);
		if (meta_lookup(m, META_ROOT_INO, name, &a) == -ENOENT)
			CHECK_RC(meta_mknod(m, META_ROOT_INO, name,
					    S_IFREG | 0644, 0, 0, 0, NULL, &now,
					    &a), 0);
		memset(val, 'a' + i % 26, sizeof(val));
		val[0] = (char)i;
		CHECK_RC(meta_setxattr(m, a.ino, "user.bulk", val,
				       sizeof(val), 0, &now), 0);
	}
}

struct seq_count {
	char seq[17];
	uint64_t same, other;
};

static int parts_cb(const char *key, uint64_t size, void *arg)
{
	struct seq_count *c = arg;
	const char *p = key + strlen("meta/ckpp-");

	if (!strncmp(p, c->seq, 16))
		c->same++;
	else
		c->other++;
	return 0;
}

/*
 * A database larger than a part goes up in parts under a manifest, comes
 * back whole, and the parts of older checkpoints are trimmed; the old
 * one-object form still restores.
 */
static void test_parted_checkpoint(void)
{
	struct seq_count c;
	struct rig r;
	uint64_t seq;

	rig_open(&r, "store-parts");
	CHECK_RC(journal_checkpoint(r.j), 0);   /* small: one object */
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpp-"), 0);
	CHECK(same_as_live(&r, "one-object checkpoint"));
	journal_set_part_size(r.j, 8192);
	bulk(r.m, 40);
	CHECK_RC(journal_sync(r.j), 0);
	CHECK(same_as_live(&r, "one-object checkpoint + journal"));
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK(count_keys(r.s, "meta/ckpp-") > 5);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpt-"), 1);
	CHECK(same_as_live(&r, "parted checkpoint"));
	work(r.m, 1);
	CHECK_RC(journal_sync(r.j), 0);
	CHECK(same_as_live(&r, "parted checkpoint + journal"));
	/* a newer checkpoint: only its own parts are left */
	bulk(r.m, 60);
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK_RC(checkpoint_latest(r.s, &seq), 0);
	memset(&c, 0, sizeof(c));
	snprintf(c.seq, sizeof(c.seq), "%016" PRIx64, seq);
	store_list(r.s, "meta/ckpp-", parts_cb, &c);
	CHECK(c.same > 5);
	CHECK_EQ_U64(c.other, 0);
	CHECK(same_as_live(&r, "second parted checkpoint"));
	/* a part lost: the restore fails rather than build a torn database */
	{
		char key[80];
		struct buf got = BUF_INIT;

		snprintf(key, sizeof(key), "meta/ckpp-%016" PRIx64 "-%08x",
			 seq, 2);
		CHECK_RC(store_del(r.s, key), 0);
		CHECK(restore(r.s, "restored.db", &got) < 0);
		buf_free(&got);
	}
	rig_close(&r);
}

/*
 * Renames in a cycle between two cuts (a->c, b->a, c->b: the two names
 * swap rows) make a changeset whose rows each take the other's name: it
 * must apply whatever order SQLite takes the rows in.
 */
static void test_rename_cycle(void)
{
	struct timespec now = { 1700000000, 0 };
	struct meta_attr a;
	uint64_t gone;
	struct rig r;
	int round;

	rig_open(&r, "store-cycle");
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK_RC(meta_mknod(r.m, META_ROOT_INO, "a", S_IFREG | 0644, 0, 0, 0,
			    NULL, &now, &a), 0);
	CHECK_RC(meta_mknod(r.m, META_ROOT_INO, "b", S_IFREG | 0644, 0, 0, 0,
			    NULL, &now, &a), 0);
	CHECK_RC(meta_mknod(r.m, META_ROOT_INO, "x", S_IFDIR | 0755, 0, 0, 0,
			    NULL, &now, &a), 0);
	CHECK_RC(journal_sync(r.j), 0);
	for (round = 0; round < 3; round++) {
		CHECK_RC(meta_rename(r.m, META_ROOT_INO, "a", META_ROOT_INO,
				     "c", 0, &now, &gone), 0);
		CHECK_RC(meta_rename(r.m, META_ROOT_INO, "b", META_ROOT_INO,
				     "a", 0, &now, &gone), 0);
		CHECK_RC(meta_rename(r.m, META_ROOT_INO, "c", META_ROOT_INO,
				     "b", 0, &now, &gone), 0);
		CHECK_RC(journal_sync(r.j), 0);
		CHECK(same_as_live(&r, "after a rename cycle"));
		/* and a cycle through another directory */
		CHECK_RC(meta_rename(r.m, META_ROOT_INO, "a", a.ino, "a", 0,
				     &now, &gone), 0);
		CHECK_RC(meta_rename(r.m, META_ROOT_INO, "b", META_ROOT_INO,
				     "a", 0, &now, &gone), 0);
		CHECK_RC(meta_rename(r.m, a.ino, "a", META_ROOT_INO, "b", 0,
				     &now, &gone), 0);
		CHECK_RC(journal_sync(r.j), 0);
		CHECK(same_as_live(&r, "after a cycle through a directory"));
	}
	rig_close(&r);
}

/* A gap or a damaged entry stops the replay at the state before it. */
static void test_damaged_entry(void)
{
	struct buf mid = BUF_INIT, got = BUF_INIT, p = BUF_INIT;
	struct rig r;

	rig_open(&r, "store-dmg");
	CHECK_RC(journal_checkpoint(r.j), 0);
	work(r.m, 0);
	CHECK_RC(journal_sync(r.j), 0);
	dump(buf_str(&r.db), &mid);
	work(r.m, 1);
	CHECK_RC(journal_sync(r.j), 0);
	work(r.m, 2);
	CHECK_RC(journal_sync(r.j), 0);
	/* entry 2 damaged: the restore stops after entry 1 */
	path_of("store-dmg/meta/jrnl-0000000000000002", &p);
	CHECK_RC(write_file_atomic(buf_str(&p), "garbage", 7, 0600), 0);
	CHECK_RC(restore(r.s, "restored.db", &got), 0);
	CHECK(got.len == mid.len && !memcmp(got.data, mid.data, mid.len));
	buf_free(&mid);
	buf_free(&got);
	buf_free(&p);
	rig_close(&r);
}

/*
 * When a checkpoint is due (journal.c): not for a small journal, even
 * across a reopen (its size is kept in the config); once the journal
 * outgrows the database, or holds 1,000 entries; while freed
 * objects wait for one; never again right after one.
 */
static void test_checkpoint_due(void)
{
	struct timespec now = { 1700000000, 0 };
	char hash[META_HASH_LEN + 1], name[32];
	struct meta_attr a;
	uint64_t db = 0, gone;
	struct rig r;
	int i;

	rig_open(&r, "store-due");
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK(!journal_checkpoint_due(r.j));
	/* a database of 400 files with 2 KiB of xattr each, checkpointed */
	for (i = 0; i < 400; i++) {
		char big[2048];

		memset(big, 'a' + i % 26, sizeof(big));
		snprintf(name, sizeof(name), "big%d", i);
		CHECK_RC(meta_mknod(r.m, META_ROOT_INO, name, S_IFREG | 0644,
				    0, 0, 0, NULL, &now, &a), 0);
		CHECK_RC(meta_setxattr(r.m, a.ino, "user.x", big, sizeof(big),
				       0, &now), 0);
	}
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK_RC(meta_db_bytes(r.m, &db), 0);
	CHECK(db > (600u << 10));
	/* small changes: entries, no checkpoint, also after a reopen */
	for (i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "small%d", i);
		CHECK_RC(meta_mknod(r.m, META_ROOT_INO, name, S_IFREG | 0644,
				    0, 0, 0, NULL, &now, &a), 0);
		CHECK_RC(journal_sync(r.j), 0);
	}
	CHECK(!journal_checkpoint_due(r.j));
	journal_close(r.j);
	CHECK_RC(journal_open(r.m, r.s, &bc, tmpdir, &r.j), 0);
	journal_assume_checkpointed(r.j);
	CHECK(!journal_checkpoint_due(r.j));
	CHECK(same_as_live(&r, "checkpoint + 20 entries"));
	/* rewriting every xattr with incompressible bytes, twice: a
	 * journal larger than the database */
	for (i = 0; i < 800; i++) {
		uint8_t big[2048];

		blob_random(big, sizeof(big));
		snprintf(name, sizeof(name), "big%d", i % 400);
		CHECK_RC(meta_lookup(r.m, META_ROOT_INO, name, &a), 0);
		CHECK_RC(meta_setxattr(r.m, a.ino, "user.x", big, sizeof(big),
				       0, &now), 0);
		if (i % 50 == 49)
			CHECK_RC(journal_sync(r.j), 0);
	}
	CHECK(journal_checkpoint_due(r.j));
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK(!journal_checkpoint_due(r.j));
	/* an object freed: due until a checkpoint lets it be deleted */
	memset(hash, 'e', META_HASH_LEN);
	hash[0] = '1'; /* no other row names it */
	hash[META_HASH_LEN] = 0;
	CHECK_RC(meta_mknod(r.m, META_ROOT_INO, "obj", S_IFREG | 0644, 0, 0,
			    0, NULL, &now, &a), 0);
	CHECK_RC(meta_write_done(r.m, a.ino, 1000, &now, &(uint64_t){ 0 }, 1),
		 0);
	CHECK_RC(meta_block_commit(r.m, a.ino, 0, hash, 1000, 0), 0);
	CHECK_RC(journal_sync(r.j), 0);
	CHECK(!journal_checkpoint_due(r.j));
	CHECK_RC(meta_unlink(r.m, META_ROOT_INO, "obj", &now, &gone), 0);
	CHECK_RC(meta_inode_purge(r.m, gone), 0);
	CHECK_RC(journal_sync(r.j), 0);
	CHECK(journal_checkpoint_due(r.j));
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK(!journal_checkpoint_due(r.j));
	/* 1,000 entries, however small */
	for (i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		meta_mknod(r.m, META_ROOT_INO, name, S_IFREG | 0644, 0, 0, 0,
			   NULL, &now, &a);
		journal_sync(r.j);
		if (journal_checkpoint_due(r.j))
			break;
	}
	CHECK_EQ_U64((uint64_t)i, 999);
	CHECK(same_as_live(&r, "1,000 entries"));
	rig_close(&r);
}

/*
 * Replaying a journal costs a restore far more per byte than a checkpoint
 * of the database does (journal.c): a journal of a fifth of the database
 * makes a checkpoint due, one below both bounds does not.
 */
static void test_checkpoint_due_replay(void)
{
	struct timespec now = { 1700000000, 0 };
	struct journal_stats st;
	char name[32];
	struct meta_attr a;
	uint64_t db = 0;
	struct rig r;
	int i;

	rig_open(&r, "store-due-replay");
	for (i = 0; i < 1000; i++) {
		char big[2048];

		memset(big, 'a' + i % 26, sizeof(big));
		snprintf(name, sizeof(name), "f%d", i);
		CHECK_RC(meta_mknod(r.m, META_ROOT_INO, name, S_IFREG | 0644,
				    0, 0, 0, NULL, &now, &a), 0);
		CHECK_RC(meta_setxattr(r.m, a.ino, "user.x", big, sizeof(big),
				       0, &now), 0);
	}
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK_RC(meta_db_bytes(r.m, &db), 0);
	/* incompressible xattrs rewritten until the journal passes 300 KB
	 * (above JOURNAL_CKPT_MIN_BYTES), far below the database */
	for (i = 0; i < 1000; i++) {
		uint8_t big[2048];

		blob_random(big, sizeof(big));
		snprintf(name, sizeof(name), "f%d", i);
		CHECK_RC(meta_lookup(r.m, META_ROOT_INO, name, &a), 0);
		CHECK_RC(meta_setxattr(r.m, a.ino, "user.x", big, sizeof(big),
				       0, &now), 0);
		if (i % 20 == 19) {
			CHECK_RC(journal_sync(r.j), 0);
			journal_get_stats(r.j, &st);
			if (st.since_bytes > 300000)
				break;
		}
	}
	CHECK(st.since_bytes > 300000 && st.since_bytes * 4 < db);
	CHECK(journal_checkpoint_due(r.j));
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK(!journal_checkpoint_due(r.j));
	CHECK(same_as_live(&r, "checkpoint after a fifth of the database"));
	rig_close(&r);
}

/*
 * A restore fetches the journal's entries and the checkpoint's parts
 * ahead of the one it applies (store_ahead): with a round trip per get,
 * several are in flight at once, and the result is the live state.  A get
 * that fails in the middle fails the restore; once the store answers
 * again, it restores the whole.
 */
static void test_restore_ahead(void)
{
	struct store_fault_counts c;
	struct buf got = BUF_INIT;
	struct rig r;
	int i;

	rig_open(&r, "store-ahead");
	journal_set_part_size(r.j, 8192);
	bulk(r.m, 40);
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK(count_keys(r.s, "meta/ckpp-") > 5);
	for (i = 0; i < 60; i++) {
		work(r.m, i);
		CHECK_RC(journal_sync(r.j), 0);
	}
	CHECK_EQ_U64(count_keys(r.s, "meta/jrnl-"), 60);
	store_fault_get_counts(r.s, &c);
	CHECK(c.gets_max_in_flight <= 1);
	store_fault_read_delay(r.s, 2000);
	CHECK(same_as_live(&r, "restore fetched ahead"));
	store_fault_get_counts(r.s, &c);
	CHECK(c.gets_max_in_flight >= 2);
	/* the restore gets the manifest, its parts, then the entries: the
	 * 11th entry's get fails */
	store_fault_arm(r.s, STORE_OP_GET,
			1 + count_keys(r.s, "meta/ckpp-") + 10, 1, EIO);
	CHECK_RC(restore(r.s, "restored.db", &got), -EIO);
	store_fault_arm(r.s, STORE_OP_ALL, 0, 0, 0);
	CHECK(same_as_live(&r, "restore after a failed get"));
	store_fault_read_delay(r.s, 0);
	buf_free(&got);
	rig_close(&r);
}

/* What a progress_fn heard, label by label in the order they came. */
struct heard {
	const char *what[4];
	unsigned flags[4], n;
	uint64_t calls[4], done[4], total[4];
	bool backwards; /* a count went back, or a label changed flags */
};

static void heard_cb(void *arg, const char *what, unsigned flags,
		     uint64_t done, uint64_t total)
{
	struct heard *h = arg;
	unsigned i;

	for (i = 0; i < h->n && strcmp(h->what[i], what); i++)
		;
	if (i == ARRAY_SIZE(h->what))
		return;
	if (i == h->n) {
		h->what[h->n++] = what;
		h->flags[i] = flags;
	} else if (done < h->done[i] || flags != h->flags[i]) {
		h->backwards = true;
	}
	h->calls[i]++;
	h->done[i] = done;
	h->total[i] = total;
}

/*
 * A checkpoint in parts says how far it is, when asked to; a restore too:
 * the checkpoint's parts in bytes, up to the database's size, then the
 * journal entries, up to their number.
 */
static void test_restore_progress(void)
{
	struct buf path = BUF_INIT;
	struct heard h = { 0 }, w = { 0 };
	uint64_t seq = 0, applied = 0, parts;
	struct meta *m = NULL;
	struct stat st;
	struct rig r;
	int i;

	rig_open(&r, "store-progress");
	journal_set_part_size(r.j, 8192);
	bulk(r.m, 40);
	journal_set_progress(r.j, heard_cb, &w);
	CHECK_RC(journal_checkpoint(r.j), 0);
	journal_set_progress(r.j, NULL, NULL);
	parts = count_keys(r.s, "meta/ckpp-");
	CHECK(parts > 5);
	/* the checkpoint written said so, part by part */
	CHECK_EQ_U64(w.n, 1);
	CHECK(w.n == 1 && !strcmp(w.what[0], JOURNAL_WRITING));
	CHECK(!w.backwards);
	CHECK_EQ_U64(w.flags[0], PROGRESS_BYTES);
	CHECK_EQ_U64(w.calls[0], parts + 1);
	CHECK(w.done[0] > 5 * 8192);
	CHECK_EQ_U64(w.done[0], w.total[0]);
	bulk(r.m, 5);
	CHECK_RC(journal_checkpoint(r.j), 0); /* no longer heard */
	CHECK_EQ_U64(w.calls[0], parts + 1);
	for (i = 0; i < 25; i++) {
		work(r.m, i);
		CHECK_RC(journal_sync(r.j), 0);
	}
	path_of("progress.db", &path);
	CHECK_RC(checkpoint_restore(r.s, &bc, buf_str(&path), &seq, heard_cb,
				    &h), 0);
	CHECK_RC(meta_open(buf_str(&path), BS, 0, 0, &m), 0);
	CHECK_RC(journal_replay(r.s, &bc, m, &applied, heard_cb, &h), 0);
	meta_close(m);
	CHECK_EQ_U64(applied, 25);
	CHECK_EQ_U64(h.n, 2);
	CHECK(!h.backwards);
	CHECK(h.n >= 1 && !strcmp(h.what[0], JOURNAL_RESTORING));
	CHECK_EQ_U64(h.flags[0], PROGRESS_BYTES);
	CHECK_EQ_U64(h.calls[0], parts + 1); /* before the first, each */
	CHECK_RC(stat(buf_str(&path), &st), 0);
	CHECK_EQ_U64(h.done[0], (uint64_t)st.st_size);
	CHECK_EQ_U64(h.total[0], (uint64_t)st.st_size);
	CHECK(h.n >= 2 && !strcmp(h.what[1], JOURNAL_REPLAYING));
	CHECK_EQ_U64(h.flags[1], 0);
	CHECK_EQ_U64(h.calls[1], 25 + 1);
	CHECK_EQ_U64(h.done[1], 25);
	CHECK_EQ_U64(h.total[1], 25);
	unlink(buf_str(&path));
	buf_free(&path);
	rig_close(&r);
}

/* A sweep says how many keys it has listed, then deleted of how many. */
static void test_sweep_progress(void)
{
	struct sweep_result res;
	struct heard h = { 0 };
	char key[BLOB_DATA_KEY_LEN + 1];
	struct rig r;
	int i;

	rig_open(&r, "store-sweep");
	for (i = 0; i < 1200; i++) {
		snprintf(key, sizeof(key), "data/ee/ee%062x", i);
		CHECK_RC(store_put(r.s, key, "x", 1), 0);
	}
	CHECK_RC(store_sweep(r.m, r.s, false, heard_cb, &h, &res), 0);
	CHECK_EQ_U64(res.seen, 1200);
	CHECK_EQ_U64(res.deleted, 1200);
	CHECK_EQ_U64(count_keys(r.s, "data/"), 0);
	CHECK(!h.backwards);
	CHECK_EQ_U64(h.n, 2);
	CHECK(h.n >= 1 && !strcmp(h.what[0], SWEEP_LISTING));
	CHECK_EQ_U64(h.calls[0], 1200);
	CHECK_EQ_U64(h.done[0], 1200);
	CHECK_EQ_U64(h.total[0], 0);
	CHECK(h.n >= 2 && !strcmp(h.what[1], SWEEP_DELETING));
	CHECK_EQ_U64(h.calls[1], 1 + 2); /* before, and two batches */
	CHECK_EQ_U64(h.done[1], 1200);
	CHECK_EQ_U64(h.total[1], 1200);
	/* nothing to delete: the listing only */
	memset(&h, 0, sizeof(h));
	CHECK_RC(store_sweep(r.m, r.s, false, heard_cb, &h, &res), 0);
	CHECK_EQ_U64(h.n, 0);
	CHECK_RC(store_sweep(r.m, r.s, false, NULL, NULL, &res), 0);
	rig_close(&r);
}

/*
 * The descriptor keeps the block names mkfs chose: BLAKE2b in format 2
 * (older binaries read it), HMAC-SHA-256 in format 3 with a names line;
 * a format 3 descriptor without a known names line is damaged, and a
 * format 2 one is BLAKE2b whatever it says.
 */
static void put_descriptor(struct store *s, const char *text)
{
	static const struct blob_ctx plain;
	struct buf enc = BUF_INIT;

	CHECK_RC(blob_encode(&plain, text, strlen(text), &enc), 0);
	CHECK_RC(store_put(s, "volume", enc.data, enc.len), 0);
	buf_free(&enc);
}

static void test_volume_names(void)
{
	static const char key[] = "hash_key=000102030405060708090a0b0c0d0e0f"
				  "101112131415161718191a1b1c1d1e1f\n";
	struct buf loc = BUF_INIT, err = BUF_INIT, text = BUF_INIT;
	struct volume v, w;
	struct store *s;

	for (int k = 0; k < 2; k++) {
		enum blob_names n = k ? BLOB_NAMES_SHA256 : BLOB_NAMES_BLAKE2B;

		buf_reset(&loc);
		buf_appendf(&loc, "%s/vol-names-%d", tmpdir, k);
		CHECK_RC(store_open(buf_str(&loc), 1, &s, &err), 0);
		CHECK_RC(volume_create(s, 65536, n, &v, &err), 0);
		CHECK_RC(volume_load(s, &w, &err), 0);
		CHECK(w.names == n && v.names == n);
		CHECK_EQ_U64(w.format, k ? 3 : 2);
		CHECK_EQ_U64(w.block_size, 65536);
		CHECK(!memcmp(v.hash_key, w.hash_key, BLOB_KEY_BYTES));
		/* written once: a second mkfs is refused */
		CHECK_RC(volume_create(s, 65536, n, &v, &err), -EEXIST);
		/* a history window raises it to format 5, all else kept */
		CHECK_RC(volume_set_history(s, &v, 86400, &err), 0);
		CHECK_RC(volume_load(s, &w, &err), 0);
		CHECK_EQ_U64(w.format, VOLUME_FORMAT_HISTORY);
		CHECK_EQ_U64(w.history_s, 86400);
		CHECK(!w.encrypted && w.names == n && !strcmp(w.id, v.id));
		CHECK(!memcmp(v.hash_key, w.hash_key, BLOB_KEY_BYTES));
		CHECK_EQ_U64(w.created, v.created);
		/* and stays there with the window off */
		CHECK_RC(volume_set_history(s, &w, 0, &err), 0);
		CHECK_RC(volume_load(s, &w, &err), 0);
		CHECK_EQ_U64(w.format, VOLUME_FORMAT_HISTORY);
		CHECK_EQ_U64(w.history_s, 0);
		store_close(s);
	}

	buf_reset(&loc);
	buf_appendf(&loc, "%s/vol-names-hand", tmpdir);
	CHECK_RC(store_open(buf_str(&loc), 1, &s, &err), 0);
	const char *cases[][2] = {
		/* format, names line, then expected: "b", "s" or "damaged" */
		{ "format=3\n", "damaged" },
		{ "format=3\nnames=md5\n", "damaged" },
		{ "format=3\nnames=hmac-sha256\n", "s" },
		{ "format=3\nnames=blake2b\n", "b" },
		{ "format=2\nnames=hmac-sha256\n", "b" },
		{ "format=1\n", "b" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int rc;

		buf_reset(&text);
		buf_appendf(&text, "metafuse-volume\n%sid=%032d\n"
			    "block_size=4096\n%s", cases[i][0], 0, key);
		put_descriptor(s, buf_str(&text));
		buf_reset(&err);
		rc = volume_load(s, &w, &err);
		if (!strcmp(cases[i][1], "damaged")) {
			CHECK_RC(rc, -EIO);
			CHECK(strstr(buf_str(&err), "damaged") != NULL);
		} else {
			CHECK_RC(rc, 0);
			CHECK(w.names == (cases[i][1][0] == 's' ?
						  BLOB_NAMES_SHA256 :
						  BLOB_NAMES_BLAKE2B));
		}
	}
	/* a format from the future is refused by number */
	put_descriptor(s, "metafuse-volume\nformat=6\n");
	buf_reset(&err);
	CHECK_RC(volume_load(s, &w, &err), -EPROTONOSUPPORT);
	CHECK(strstr(buf_str(&err), "format 6") != NULL);
	store_close(s);
	buf_free(&loc);
	buf_free(&err);
	buf_free(&text);
}

/* d (a dump) without its object rows of refcount 0: garbage that a
 * snapshot's copy does not keep. */
static void drop_unreferenced(struct buf *d)
{
	struct buf out = BUF_INIT;
	const char *p = buf_str(d), *nl;

	for (; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		if (!nl)
			break;
		if (!(nl - p > META_HASH_LEN + 3 && p[META_HASH_LEN] == '|' &&
		      !strncmp(p + META_HASH_LEN, "|0|", 3)))
			buf_append(&out, p, (size_t)(nl - p + 1));
	}
	buf_free(d);
	*d = out;
}

/*
 * Snapshots' copies (volume/snapshot.c over journal_put_copy()): the
 * copy restored is the live state at creation (without snapshots and
 * garbage), in parts; the store's
 * state (checkpoint + journal) holds the snapshot too; a failed put
 * leaves nothing made; delete takes every key of the copy.
 */
static void test_snapshot_copies(void)
{
	struct buf want = BUF_INIT, got = BUF_INIT, err = BUF_INIT;
	struct buf p = BUF_INIT;
	struct snapshot_head *heads = NULL;
	struct meta_snap sn;
	struct rig r;
	size_t n = 0;
	int i, point, rc;

	rig_open(&r, "store-snap");
	journal_set_part_size(r.j, 4096);
	CHECK_RC(journal_checkpoint(r.j), 0);
	for (i = 0; i < 30; i++)
		work(r.m, i);
	/* the copy: this state, without snapshots or garbage */
	dump(buf_str(&r.db), &want);
	drop_unreferenced(&want);
	CHECK_RC(snapshot_create(r.m, r.j, r.s, NULL, tmpdir, "s1", &sn,
				 &err), 0);
	CHECK(same_as_live(&r, "after snapshot"));
	CHECK(count_keys(r.s, SNAPSHOT_PART_PREFIX) > 1);
	for (i = 30; i < 40; i++)
		work(r.m, i);
	CHECK_RC(journal_sync(r.j), 0);
	CHECK_RC(snapshot_create(r.m, r.j, r.s, NULL, tmpdir, "s1", &sn,
				 &err), -EEXIST);
	CHECK_RC(snapshot_heads(r.s, &bc, &heads, &n), 0);
	CHECK(n == 1 && !strcmp(heads[0].name, "s1") && heads[0].id == sn.id);
	free(heads);

	path_of("snap.db", &p);
	CHECK_RC(snapshot_restore(r.s, &bc, "s1", buf_str(&p), &err), 0);
	dump(buf_str(&p), &got);
	CHECK(got.len == want.len && !memcmp(got.data, want.data, got.len));
	unlink(buf_str(&p));
	buf_reset(&err);
	CHECK_RC(snapshot_restore(r.s, &bc, "zz", buf_str(&p), &err), -ENOENT);
	CHECK(strstr(buf_str(&err), "'zz'") && strstr(buf_str(&err), "'s1'"));

	/* a store that fails at any step of a create: nothing is made */
	for (point = 0; point < 8; point++) {
		char name[16];

		snprintf(name, sizeof(name), "f%d", point);
		store_fault_arm(r.s, STORE_OP_ALL, (uint64_t)point, 1, EIO);
		rc = snapshot_create(r.m, r.j, r.s, NULL, tmpdir, name, &sn,
				     &err);
		store_fault_arm(r.s, STORE_OP_ALL, 0, 0, 0);
		if (rc == 0) {
			CHECK_RC(snapshot_delete(r.m, r.j, r.s, name, &err),
				 0);
			continue;
		}
		CHECK_RC(meta_snap_find(r.m, name, &sn), -ENOENT);
		CHECK_RC(journal_sync(r.j), 0);
		CHECK_RC(snapshot_heads(r.s, &bc, &heads, &n), 0);
		CHECK_EQ_U64(n, 1);
		free(heads);
	}
	CHECK(same_as_live(&r, "after failed snapshots"));

	buf_reset(&err);
	CHECK_RC(snapshot_delete(r.m, r.j, r.s, "zz", &err), -ENOENT);
	CHECK(strstr(buf_str(&err), "'s1'") != NULL);
	CHECK_RC(snapshot_delete(r.m, r.j, r.s, "s1", &err), 0);
	CHECK_EQ_U64(count_keys(r.s, SNAPSHOT_HEAD_PREFIX), 0);
	CHECK_EQ_U64(count_keys(r.s, SNAPSHOT_PART_PREFIX), 0);
	CHECK_RC(meta_fsck(r.m, 0, NULL, NULL), 0);
	CHECK(same_as_live(&r, "after delete"));
	buf_free(&want);
	buf_free(&got);
	buf_free(&err);
	buf_free(&p);
	rig_close(&r);
}

/* ---- the history window ---- */

/* The clock of the entries' times and of retention. */
static int64_t test_now;

static int64_t test_clock(void)
{
	return test_now;
}

#define SEC 1000000000LL

/*
 * Every cut with changes records its time in the database, inside the
 * entry: strictly increasing even when the clock stands or goes back; a
 * cut without changes records nothing.  A database without the table
 * (made before it existed) still applies such an entry, and config stays
 * out of the journal.
 */
static void test_times_recorded(void)
{
	struct buf p = BUF_INIT, snap = BUF_INIT, cs = BUF_INIT;
	struct meta *m = NULL, *old = NULL;
	uint64_t jseq = 0, cseq = 0, seq = 0, before;
	int64_t ns = 0, t = 0;
	sqlite3 *db;

	meta_journal_set_clock(test_clock);
	path_of("times.db", &p);
	path_of("times-old.db", &snap);
	unlink(buf_str(&p));
	unlink(buf_str(&snap));
	CHECK_RC(meta_open(buf_str(&p), BS, 0, 0, &m), 0);
	CHECK_RC(meta_journal_start(m), 0);
	CHECK_RC(meta_journal_time(m, &seq, &ns), -ENOENT);
	test_now = 100 * SEC;
	work(m, 0);
	CHECK_RC(meta_journal_cut(m, &cs, &jseq, NULL, NULL), 0);
	CHECK_RC(meta_journal_time(m, &seq, &ns), 0);
	CHECK_EQ_U64(seq, jseq);
	CHECK_EQ_U64((uint64_t)ns, (uint64_t)(100 * SEC));
	CHECK_RC(meta_journal_cs_time(cs.data, cs.len, &t), 0);
	CHECK_EQ_U64((uint64_t)t, (uint64_t)ns);
	/* the clock stands, then goes back: still later */
	buf_reset(&cs);
	work(m, 1);
	CHECK_RC(meta_journal_cut(m, &cs, &jseq, NULL, NULL), 0);
	CHECK_RC(meta_journal_time(m, &seq, &ns), 0);
	CHECK_EQ_U64((uint64_t)ns, (uint64_t)(100 * SEC + 1));
	test_now = 50 * SEC;
	buf_reset(&cs);
	work(m, 2);
	CHECK_RC(meta_journal_cut(m, &cs, &jseq, NULL, NULL), 0);
	CHECK_RC(meta_journal_time(m, &seq, &ns), 0);
	CHECK_EQ_U64((uint64_t)ns, (uint64_t)(100 * SEC + 2));
	CHECK_EQ_U64(seq, jseq);
	/* nothing changed: no time */
	buf_reset(&cs);
	before = jseq;
	CHECK_RC(meta_journal_cut(m, &cs, &jseq, NULL, NULL), 0);
	CHECK_EQ_U64(cs.len, 0);
	CHECK_EQ_U64(jseq, before);
	CHECK_RC(meta_journal_time(m, &seq, &ns), 0);
	CHECK_EQ_U64((uint64_t)ns, (uint64_t)(100 * SEC + 2));
	/* an old database (no jtime) applies an entry that carries one */
	CHECK_RC(meta_journal_cut(m, &cs, &jseq, buf_str(&snap), &cseq), 0);
	CHECK_RC(sqlite3_open(buf_str(&snap), &db), SQLITE_OK);
	CHECK_RC(sqlite3_exec(db, "DROP TABLE jtime", NULL, NULL, NULL),
		 SQLITE_OK);
	sqlite3_close(db);
	test_now = 200 * SEC;
	work(m, 3);
	buf_reset(&cs);
	CHECK_RC(meta_journal_cut(m, &cs, &jseq, NULL, NULL), 0);
	CHECK_RC(meta_open(buf_str(&snap), BS, 0, 0, &old), 0);
	if (old) {
		before = meta_config_get_u64(old, "jrnl_seq", 0);
		CHECK_RC(meta_journal_apply(old, cs.data, cs.len), 0);
		CHECK_RC(meta_journal_time(old, &seq, &ns), -ENOENT);
		/* config is not in the entry */
		CHECK_EQ_U64(meta_config_get_u64(old, "jrnl_seq", 0), before);
		meta_close(old);
	}
	meta_close(m);
	meta_journal_set_clock(NULL);
	unlink(buf_str(&p));
	unlink(buf_str(&snap));
	buf_free(&p);
	buf_free(&snap);
	buf_free(&cs);
}

/* Restore the state at `at` into a fresh file and dump it; rc. */
static int restore_at(struct store *s, int64_t at, struct buf *state,
		      struct journal_at *info, struct buf *err)
{
	struct buf path = BUF_INIT;
	int rc;

	path_of("at.db", &path);
	unlink(buf_str(&path));
	buf_reset(err);
	rc = journal_restore_at(s, &bc, BS, buf_str(&path), at, info, err);
	if (rc == 0)
		dump(buf_str(&path), state);
	unlink(buf_str(&path));
	buf_free(&path);
	return rc;
}

#define HIST_STEPS 24

/*
 * A series of states a second apart, entries and checkpoints mixed (a
 * checkpoint every 5 steps), a window longer than all of them: the state
 * at each instant (and half a second later) is exactly what the live
 * database was then; before the first state, -ERANGE naming it.
 */
static void test_restore_at(void)
{
	struct buf want[HIST_STEPS], got = BUF_INIT, err = BUF_INIT;
	int64_t when[HIST_STEPS];
	struct journal_at info;
	struct rig r;
	int i;

	meta_journal_set_clock(test_clock);
	test_now = 1000 * SEC;
	rig_open(&r, "store-at");
	CHECK_RC(journal_set_history(r.j, 3600), 0);
	CHECK_RC(journal_checkpoint(r.j), 0);
	for (i = 0; i < HIST_STEPS; i++) {
		test_now += SEC;
		work(r.m, i);
		if (i % 5 == 4)
			CHECK_RC(journal_checkpoint(r.j), 0);
		else
			CHECK_RC(journal_sync(r.j), 0);
		when[i] = test_now;
		want[i] = (struct buf)BUF_INIT;
		dump(buf_str(&r.db), &want[i]);
	}
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpt-"), 1 + HIST_STEPS / 5);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpi-"), 1 + HIST_STEPS / 5);
	for (i = 0; i < HIST_STEPS; i++) {
		int64_t at;

		for (at = when[i]; at <= when[i] + SEC / 2; at += SEC / 2) {
			buf_reset(&got);
			CHECK_RC(restore_at(r.s, at, &got, &info, &err), 0);
			if (got.len != want[i].len ||
			    memcmp(got.data, want[i].data, got.len)) {
				fprintf(stderr, "state %d at +%lld ns differs\n",
					i, (long long)(at - when[i]));
				CHECK(0);
			}
		}
		CHECK_EQ_U64((uint64_t)info.time_ns, (uint64_t)when[i]);
	}
	/* the first checkpoint is of the empty volume, cut at 1000 s */
	CHECK_RC(restore_at(r.s, 999 * SEC, &got, &info, &err), -ERANGE);
	CHECK(strstr(buf_str(&err), "1970-01-01T00:16:40.000Z") != NULL);
	/* after the newest state: the newest */
	buf_reset(&got);
	CHECK_RC(restore_at(r.s, test_now + 100 * SEC, &got, &info, &err), 0);
	CHECK(got.len == want[HIST_STEPS - 1].len);
	for (i = 0; i < HIST_STEPS; i++)
		buf_free(&want[i]);
	rig_close(&r);
	meta_journal_set_clock(NULL);
	buf_free(&got);
	buf_free(&err);
}

/*
 * A missing entry in the middle: a moment past it cannot be had, and the
 * error says which entry; moments before it still can.
 */
static void test_restore_at_gap(void)
{
	struct buf got = BUF_INIT, err = BUF_INIT;
	struct journal_at info;
	struct rig r;
	int i;

	meta_journal_set_clock(test_clock);
	test_now = 5000 * SEC;
	rig_open(&r, "store-gap");
	CHECK_RC(journal_set_history(r.j, 3600), 0);
	CHECK_RC(journal_checkpoint(r.j), 0);
	for (i = 0; i < 4; i++) {
		test_now += SEC;
		work(r.m, i);
		CHECK_RC(journal_sync(r.j), 0);
	}
	CHECK_RC(store_del(r.s, "meta/jrnl-0000000000000002"), 0);
	CHECK_RC(restore_at(r.s, 5001 * SEC, &got, &info, &err), 0);
	CHECK_EQ_U64(info.jseq, 1);
	CHECK_RC(restore_at(r.s, 5001 * SEC + SEC / 2, &got, &info, &err),
		 -EIO);
	CHECK_RC(restore_at(r.s, 5003 * SEC, &got, &info, &err), -EIO);
	CHECK(strstr(buf_str(&err), "jrnl-0000000000000002") != NULL);
	CHECK(strstr(buf_str(&err), "missing") != NULL);
	rig_close(&r);
	meta_journal_set_clock(NULL);
	buf_free(&got);
	buf_free(&err);
}

/*
 * Retention with a window of 10 s, a checkpoint every 4 s: what is kept
 * is exactly the newest checkpoint at least 10 s old, the later ones and
 * the entries after it; the GC epoch is that checkpoint; the oldest
 * moment mountable is its time.  Objects freed before it are collected,
 * not those freed after.
 */
static void test_retention(void)
{
	struct buf got = BUF_INIT, err = BUF_INIT;
	struct journal_at info;
	uint64_t epoch = 0, ckpt[16];
	int64_t ckpt_ns[16];
	struct rig r;
	int i, n = 0;

	meta_journal_set_clock(test_clock);
	test_now = 10000 * SEC;
	rig_open(&r, "store-ret");
	CHECK_RC(journal_set_history(r.j, 10), 0);
	for (i = 0; i < 16; i++) {
		test_now += SEC;
		work(r.m, i);
		if (i % 4 == 0) {
			CHECK_RC(journal_checkpoint(r.j), 0);
			ckpt[n] = meta_config_get_u64(r.m, "durable_seq", 0);
			ckpt_ns[n++] = test_now;
		} else {
			CHECK_RC(journal_sync(r.j), 0);
		}
	}
	/* now = 10016: checkpoints at 10001, 10005, 10009, 10013; the
	 * newest at or before 10006 is the one of 10005 */
	CHECK_RC(journal_gc_epoch(r.j, &epoch), 0);
	CHECK_EQ_U64(epoch, ckpt[1]);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpt-"), 3);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpi-"), 3);
	/* entries after 10005's: steps 5..15 but 8 and 12 (checkpoints) */
	CHECK_EQ_U64(count_keys(r.s, "meta/jrnl-"), 11);
	CHECK_RC(restore_at(r.s, ckpt_ns[1] - 1, &got, &info, &err), -ERANGE);
	CHECK(strstr(buf_str(&err), "1970-01-01T02:46:45.000Z") != NULL);
	CHECK_RC(restore_at(r.s, ckpt_ns[1], &got, &info, &err), 0);
	CHECK_EQ_U64(info.ckpt_seq, ckpt[1]);
	/* time passes, nothing written: the base moves, no checkpoint */
	test_now += 20 * SEC;
	CHECK_RC(journal_gc_epoch(r.j, &epoch), 0);
	CHECK_EQ_U64(epoch, ckpt[3]);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpt-"), 1);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpi-"), 1);
	CHECK_EQ_U64(count_keys(r.s, "meta/jrnl-"), 3);
	CHECK(same_as_live(&r, "after retention"));
	/* a volume reopened lists what it keeps again */
	journal_close(r.j);
	CHECK_RC(journal_open(r.m, r.s, &bc, tmpdir, &r.j), 0);
	CHECK_RC(journal_set_history(r.j, 10), 0);
	CHECK_RC(journal_gc_epoch(r.j, &epoch), 0);
	CHECK_EQ_U64(epoch, ckpt[3]);
	/* two checkpoints more, within the window: three kept */
	for (i = 20; i < 22; i++) {
		work(r.m, i);
		CHECK_RC(journal_checkpoint(r.j), 0);
	}
	work(r.m, 22);
	CHECK_RC(journal_sync(r.j), 0);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpt-"), 3);
	/* the window off: what only it kept goes at once (the newest
	 * checkpoint and the entry after it stay), then as before */
	CHECK_RC(journal_set_history(r.j, 0), 0);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpt-"), 1);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpi-"), 0);
	CHECK_EQ_U64(count_keys(r.s, "meta/jrnl-"), 1);
	CHECK(same_as_live(&r, "window off"));
	work(r.m, 23);
	CHECK_RC(journal_checkpoint(r.j), 0);
	CHECK_RC(journal_gc_epoch(r.j, &epoch), 0);
	CHECK_EQ_U64(epoch, meta_config_get_u64(r.m, "durable_seq", 0));
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpt-"), 1);
	CHECK_EQ_U64(count_keys(r.s, "meta/jrnl-"), 0);
	rig_close(&r);
	meta_journal_set_clock(NULL);
	buf_free(&got);
	buf_free(&err);
}

/* Without a window, a checkpoint and the GC epoch cost what they did: no
 * marker, no listing more. */
static void test_no_window_requests(void)
{
	struct store_fault_counts c0, c1;
	uint64_t epoch = 0;
	struct rig r;

	rig_open(&r, "store-now");
	CHECK_RC(journal_set_history(r.j, 0), 0);
	CHECK_RC(journal_checkpoint(r.j), 0);
	work(r.m, 0);
	CHECK_RC(journal_sync(r.j), 0);
	store_fault_get_counts(r.s, &c0);
	CHECK_RC(journal_gc_epoch(r.j, &epoch), 0);
	CHECK_EQ_U64(epoch, meta_config_get_u64(r.m, "durable_seq", 0));
	work(r.m, 1);
	CHECK_RC(journal_checkpoint(r.j), 0);
	store_fault_get_counts(r.s, &c1);
	/* the entry's and the checkpoint's puts, the trims' listings of
	 * checkpoints, parts and entries */
	CHECK_EQ_U64(c1.calls[0] - c0.calls[0], 2);
	CHECK_EQ_U64(c1.calls[3] - c0.calls[3], 3);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpi-"), 0);
	/* with a window: the marker more, and its listing */
	CHECK_RC(journal_set_history(r.j, 60), 0);
	work(r.m, 2);
	store_fault_get_counts(r.s, &c0);
	CHECK_RC(journal_checkpoint(r.j), 0);
	store_fault_get_counts(r.s, &c1);
	CHECK_EQ_U64(c1.calls[0] - c0.calls[0], 3);
	CHECK_EQ_U64(count_keys(r.s, "meta/ckpi-"), 1);
	rig_close(&r);
}

int main(void)
{
	if (getenv("T_JOURNAL_VERBOSE"))
		log_set_level(LOG_DEBUG);
	else
		log_set_level(LOG_ERROR);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/t_journal.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	if (blob_global_init())
		return 1;
	test_roundtrip();
	test_gate_runs_every_cut();
	test_faults(0);
	test_faults(4096);
	test_parted_checkpoint();
	test_restore_ahead();
	test_restore_progress();
	test_sweep_progress();
	test_rename_cycle();
	test_pending_order();
	test_damaged_entry();
	test_checkpoint_due();
	test_checkpoint_due_replay();
	test_volume_names();
	test_snapshot_copies();
	test_times_recorded();
	test_restore_at();
	test_restore_at_gap();
	test_retention();
	test_no_window_requests();
	rm_rf(tmpdir);
	return check_done("t_journal");
}
