/*
 * t_meta_fsck.c - unit tests of what meta_fsck() repairs (src/meta/meta.h,
 * meta_fsck.c).
 *
 * Purpose: each scenario breaks one invariant of a small tree with raw
 * SQL through a second connection, then checks that a checking run
 * reports it and changes nothing, that a repairing run fixes it (and the
 * volume is as the scenario expects), and that the repair lasts.
 *
 * Data model: every scenario starts from the same tree (build_tree()) in
 * a database file of a private mkdtemp() directory removed at the end.
 *
 * Invariants: the tree's inode numbers are checked (INO_*) before the raw
 * SQL relies on them; a scenario leaves no database open.
 */
#include "util/compat.h"

#include "t_fsck_tree.h"
#include "t_meta.h"


static bool verbose;

/* ---- fsck ---- */


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
	if (tmpdir_make("t_meta_fsck"))
		return 1;
	test_fsck();
	rmdir(tmpdir);
	return check_done("t_meta_fsck");
}
