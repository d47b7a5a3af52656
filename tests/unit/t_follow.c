/*
 * t_follow.c - the metadata side of followers (meta_journal.c): what a
 * changeset changed (meta_changes_of(), and the hook of
 * meta_journal_on_apply()), and the catch-up diff (meta_journal_diff())
 * that turns a follower's database into a restored checkpoint's.
 *
 * Data model: a "writer" database records its changes
 * (meta_journal_start()); a snapshot of it taken at a cut is the
 * "follower", which the changesets cut later must turn into the writer.
 *
 * Invariants checked: every name added or removed, every inode touched
 * and every block whose row changed is reported, a rename of the name
 * alone included (its parent comes from the follower's row); the diff
 * applied leaves the follower equal to the other database, whatever
 * entries it missed.
 */
#include "util/compat.h"

#include "t_meta.h"

struct seen {
	int calls, failures;
	struct meta_changes last; /* its inodes only */
	size_t nnames, nblocks;
};

static void on_apply(void *arg, const struct meta_changes *ch)
{
	struct seen *s = arg;
	size_t i;

	s->calls++;
	if (!ch) {
		s->failures++;
		return;
	}
	meta_changes_free(&s->last);
	for (i = 0; i < ch->ninodes; i++) {
		s->last.inodes = realloc(s->last.inodes,
					 (i + 1) * sizeof(uint64_t));
		s->last.inodes[i] = ch->inodes[i];
	}
	s->last.ninodes = ch->ninodes;
	s->nnames = ch->nnames;
	s->nblocks = ch->nblocks;
}

static bool has_inode(const struct meta_changes *ch, uint64_t ino)
{
	size_t i;

	for (i = 0; i < ch->ninodes; i++)
		if (ch->inodes[i] == ino)
			return true;
	return false;
}

static bool has_name(const struct meta_changes *ch, uint64_t parent,
		     const char *name)
{
	size_t i;

	for (i = 0; i < ch->nnames; i++)
		if (ch->names[i].parent == parent &&
		    !strcmp(ch->names[i].name, name))
			return true;
	return false;
}

static bool has_block(const struct meta_changes *ch, uint64_t ino,
		      uint64_t idx)
{
	size_t i;

	for (i = 0; i < ch->nblocks; i++)
		if (ch->blocks[i].ino == ino && ch->blocks[i].idx == idx)
			return true;
	return false;
}

/* A writer at path and its snapshot at snap (the follower's start). */
static void open_pair(const char *wname, const char *fname, char *path,
		      char *snap, struct meta **w)
{
	struct buf cs = BUF_INIT;
	uint64_t j, c;

	db_path(wname, path, 256);
	db_path(fname, snap, 256);
	rm_db(path);
	rm_db(snap);
	CHECK_RC(meta_open(path, BS, 0, 0, w), 0);
	CHECK_RC(meta_journal_start(*w), 0);
	CHECK_RC(meta_journal_cut(*w, &cs, &j, snap, &c), 0);
	buf_free(&cs);
}

/* Each kind of change, cut into one changeset, then applied. */
static void test_changes(void)
{
	char path[256], snap[256], h[META_HASH_LEN + 1];
	struct timespec now = ts(200, 0);
	struct meta *w = NULL, *f = NULL;
	struct meta_changes ch;
	struct buf cs = BUF_INIT;
	struct seen s;
	uint64_t d, a, b, x, idx[2] = { 0, 1 }, j, gone = 0;

	memset(&ch, 0, sizeof(ch));
	memset(&s, 0, sizeof(s));
	open_pair("w1.db", "f1.db", path, snap, &w);
	if (!w)
		return;
	/* what the follower has already: d/a, b, x */
	d = mk(w, 1, "d", S_IFDIR | 0755);
	a = mk(w, d, "a", S_IFREG | 0644);
	b = mk(w, 1, "b", S_IFREG | 0644);
	x = mk(w, 1, "x", S_IFREG | 0644);
	CHECK_RC(meta_write_done(w, b, 2 * BS, &now, idx, 2), 0);
	CHECK_RC(meta_block_commit(w, b, 1, hash_of('1', h), 100, 0), 0);
	CHECK_RC(meta_journal_cut(w, &cs, &j, NULL, NULL), 0);
	CHECK_RC(meta_open(snap, BS, 0, 0, &f), 0);
	if (!f)
		goto out;
	CHECK_RC(meta_journal_apply(f, cs.data, cs.len), 0);
	buf_reset(&cs);

	/* a rename of the name alone (an UPDATE without parent), a move
	 * to another directory, a delete, a chmod, a block rewritten */
	CHECK_RC(meta_rename(w, d, "a", d, "a2", 0, &now, NULL), 0);
	CHECK_RC(meta_rename(w, 1, "b", d, "b", 0, &now, NULL), 0);
	CHECK_RC(meta_unlink(w, 1, "x", &now, &gone), 0);
	CHECK_RC(meta_inode_purge(w, x), 0);
	{
		struct meta_attr in;

		memset(&in, 0, sizeof(in));
		in.mode = 0600;
		CHECK_RC(meta_setattr(w, a, &in, META_SET_MODE, &now, NULL),
			 0);
	}
	CHECK_RC(meta_write_done(w, b, 2 * BS, &now, &idx[1], 1), 0);
	CHECK_RC(meta_block_commit(w, b, 1, hash_of('2', h), 100, 0), 0);
	CHECK_RC(meta_journal_cut(w, &cs, &j, NULL, NULL), 0);

	CHECK_RC(meta_changes_of(f, cs.data, cs.len, &ch), 0);
	CHECK(has_name(&ch, d, "a"));
	CHECK(has_name(&ch, d, "a2"));
	CHECK(has_name(&ch, 1, "b"));
	CHECK(has_name(&ch, d, "b"));
	CHECK(has_name(&ch, 1, "x"));
	CHECK(!has_name(&ch, 1, "d"));
	CHECK(has_inode(&ch, a) && has_inode(&ch, b) && has_inode(&ch, x));
	CHECK(has_inode(&ch, d) && has_inode(&ch, 1));
	CHECK(has_block(&ch, b, 1));
	CHECK(!has_block(&ch, b, 0));
	CHECK_EQ_U64(ch.nblocks, 1);
	/* sorted, no repeats */
	for (j = 1; j < ch.ninodes; j++)
		CHECK(ch.inodes[j - 1] < ch.inodes[j]);

	/* the hook hears the same, after the apply */
	meta_journal_on_apply(f, on_apply, &s);
	CHECK_RC(meta_journal_apply(f, cs.data, cs.len), 0);
	CHECK_RC(s.calls, 1);
	CHECK_RC(s.failures, 0);
	CHECK_EQ_U64(s.last.ninodes, ch.ninodes);
	CHECK_EQ_U64(s.nnames, ch.nnames);
	CHECK_EQ_U64(s.nblocks, ch.nblocks);
	CHECK(lk(f, d, "a2") == a && lk(f, d, "a") == 0 && lk(f, 1, "x") == 0);
	/* applied twice: a conflict, and the hook hears it failed */
	CHECK_RC(meta_journal_apply(f, cs.data, cs.len), -EIO);
	CHECK_RC(s.failures, 1);
	meta_journal_on_apply(f, NULL, NULL);
	/* garbage is no changeset */
	meta_changes_free(&ch);
	CHECK(meta_changes_of(f, "not a changeset", 15, &ch) != 0 ||
	      ch.ninodes == 0);
	meta_close(f);
out:
	meta_changes_free(&ch);
	meta_changes_free(&s.last);
	buf_free(&cs);
	meta_close(w);
	rm_db(path);
	rm_db(snap);
}

/* A follower that missed entries: the diff to the writer's copy makes
 * it equal, and says what changed. */
static void test_diff(void)
{
	char path[256], snap[256], copy[256], h[META_HASH_LEN + 1];
	struct timespec now = ts(300, 0);
	struct meta *w = NULL, *f = NULL;
	struct meta_changes ch;
	struct buf cs = BUF_INIT;
	uint64_t d, a, b, idx0 = 0, gone, jseq;
	char name[32];
	int i;

	memset(&ch, 0, sizeof(ch));
	open_pair("w2.db", "f2.db", path, snap, &w);
	if (!w)
		return;
	db_path("c2.db", copy, sizeof(copy));
	rm_db(copy);
	d = mk(w, 1, "d", S_IFDIR | 0755);
	a = mk(w, d, "a", S_IFREG | 0644);
	CHECK_RC(meta_write_done(w, a, BS, &now, &idx0, 1), 0);
	CHECK_RC(meta_block_commit(w, a, 0, hash_of('a', h), 100, 0), 0);
	for (i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		mk(w, d, name, S_IFREG | 0644);
	}
	CHECK_RC(meta_rename(w, d, "n3", 1, "moved", 0, &now, NULL), 0);
	CHECK_RC(meta_unlink(w, d, "n4", &now, &gone), 0);
	CHECK_RC(meta_inode_purge(w, gone), 0);
	b = mk(w, 1, "b", S_IFLNK | 0777);
	CHECK_RC(meta_snapshot(w, copy), 0);

	CHECK_RC(meta_open(snap, BS, 0, 0, &f), 0);
	if (!f)
		goto out;
	/* the follower knows nothing of it */
	CHECK(lk(f, 1, "d") == 0);
	CHECK_RC(meta_journal_diff(f, copy, &cs), 0);
	CHECK(cs.len > 0);
	CHECK_RC(meta_changes_of(f, cs.data, cs.len, &ch), 0);
	CHECK(has_name(&ch, 1, "d") && has_name(&ch, d, "a"));
	CHECK(has_name(&ch, 1, "moved") && has_name(&ch, 1, "b"));
	CHECK(has_block(&ch, a, 0));
	CHECK_RC(meta_journal_apply(f, cs.data, cs.len), 0);
	CHECK(lk(f, 1, "d") == d && lk(f, d, "a") == a);
	CHECK(lk(f, 1, "b") == b && lk(f, 1, "moved") != 0);
	CHECK(lk(f, d, "n3") == 0 && lk(f, d, "n4") == 0);
	CHECK(lk(f, d, "n19") != 0);
	CHECK_EQ_U64(ga(f, a).size, BS);
	CHECK_EQ_U64(refcount_of(f, hash_of('a', h)), 1);
	/* the other way: the writer changes again, and the diff of the
	 * follower against the new copy holds only that */
	buf_reset(&cs);
	meta_changes_free(&ch);
	CHECK_RC(meta_unlink(w, d, "a", &now, &gone), 0);
	rm_db(copy);
	CHECK_RC(meta_snapshot(w, copy), 0);
	CHECK_RC(meta_journal_diff(f, copy, &cs), 0);
	CHECK_RC(meta_changes_of(f, cs.data, cs.len, &ch), 0);
	CHECK(has_name(&ch, d, "a"));
	CHECK_EQ_U64(ch.nnames, 1);
	CHECK_RC(meta_journal_apply(f, cs.data, cs.len), 0);
	CHECK(lk(f, d, "a") == 0);
	CHECK_EQ_U64(nlink_of(f, a), 0);
	/* equal now: nothing left to diff */
	buf_reset(&cs);
	CHECK_RC(meta_journal_diff(f, copy, &cs), 0);
	CHECK_EQ_U64(cs.len, 0);
	/* a file that is no database */
	CHECK(meta_journal_diff(f, "/nonexistent/dir/x.db", &cs) < 0);
	/* the entries' times (jtime) come with a catch-up: the writer's
	 * next entry, which updates them, then applies */
	CHECK_RC(meta_journal_times_init(f), 0);
	buf_reset(&cs);
	mk(w, 1, "t1", S_IFREG | 0644);
	CHECK_RC(meta_journal_cut(w, &cs, &jseq, NULL, NULL), 0);
	rm_db(copy);
	CHECK_RC(meta_snapshot(w, copy), 0);
	buf_reset(&cs);
	CHECK_RC(meta_journal_diff(f, copy, &cs), 0);
	CHECK_RC(meta_journal_apply(f, cs.data, cs.len), 0);
	buf_reset(&cs);
	mk(w, 1, "t2", S_IFREG | 0644);
	CHECK_RC(meta_journal_cut(w, &cs, &jseq, NULL, NULL), 0);
	CHECK_RC(meta_journal_apply(f, cs.data, cs.len), 0);
	CHECK(lk(f, 1, "t1") != 0 && lk(f, 1, "t2") != 0);
	meta_close(f);
out:
	meta_changes_free(&ch);
	buf_free(&cs);
	meta_close(w);
	rm_db(path);
	rm_db(snap);
	rm_db(copy);
}

int main(void)
{
	if (tmpdir_make("t_follow"))
		return 1;
	test_changes();
	test_diff();
	rmdir(tmpdir);
	return check_done("t_follow");
}
