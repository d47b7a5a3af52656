/*
 * t_fsck.c - the exact report of meta_fsck() (src/meta/meta_fsck.c).
 *
 * Purpose: pin every line fsck can print, their order and their count,
 * checking and repairing, so that a change of meta_fsck.c's structure
 * cannot change what `metafuse fsck` says.  t_meta_fsck.c tests what a
 * repair does to the volume; this file tests only the words.
 *
 * Data model: each scenario builds the same small tree in a database file
 * of a private mkdtemp() directory, breaks it with raw SQL through a
 * second connection, then compares the lines of a checking run and of a
 * repairing run with the expected text (lines ended by '\n').
 *
 * Invariants:
 *   1. The tree's inode numbers are fixed (ino_* below); build_tree()
 *      checks them before the raw SQL relies on them.
 *   2. Every message of meta_fsck.c, and every variant of one, is the
 *      expected text of at least one scenario.
 *   3. After the repair a checking run finds nothing.
 */
#include "util/compat.h"

#include "t_fsck_tree.h"
#include "t_meta.h"

struct scenario {
	const char *name;
	const char *sql;
	const char *check;	/* the lines of a checking run */
	const char *repair;	/* the lines of a repairing run */
};

/* A directory /lost+found (ino 50) that already holds a "#3". */
#define LF_WITH_3                                                         \
	"INSERT INTO inode(ino, mode, uid, gid, nlink, atime_s, atime_ns,"  \
	" mtime_s, mtime_ns, ctime_s, ctime_ns, parent) VALUES"             \
	" (50, 16832, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1);"                       \
	"INSERT INTO dentry(parent, name, ino) VALUES"                      \
	" (1, CAST('lost+found' AS BLOB), 50), (50, CAST('#3' AS BLOB), 8);" \
	"UPDATE inode SET nlink = nlink + 1 WHERE ino IN (1, 8);"

static const struct scenario scenarios[] = {
	{ "root missing", "DELETE FROM inode WHERE ino = 1",
	  "root directory (inode 1) is missing\n"
	  "entry \"a\" (id 1) in directory 1, inode 2: parent is missing or not a directory\n"
	  "entry \"x\" (id 5) in directory 1, inode 6: parent is missing or not a directory\n"
	  "entry \"s\" (id 7) in directory 1, inode 8: parent is missing or not a directory\n"
	  "entry \"hl\" (id 9) in directory 1, inode 5: parent is missing or not a directory\n",
	  "root directory (inode 1) is missing\n"
	  "inode 1 has nlink 2, should be 4\n" },
	{ "root link count", "UPDATE inode SET nlink = 1 WHERE ino = 1",
	  "root directory has a link count below 2\n"
	  "inode 1 has nlink 1, should be 4\n",
	  "root directory has a link count below 2\n"
	  "inode 1 has nlink 2, should be 4\n" },
	{ "root not a directory",
	  "UPDATE inode SET mode = 33188 WHERE ino = 1",
	  "root inode 1 is not a directory (mode 100644)\n"
	  "entry \"a\" (id 1) in directory 1, inode 2: parent is missing or not a directory\n"
	  "entry \"x\" (id 5) in directory 1, inode 6: parent is missing or not a directory\n"
	  "entry \"s\" (id 7) in directory 1, inode 8: parent is missing or not a directory\n"
	  "entry \"hl\" (id 9) in directory 1, inode 5: parent is missing or not a directory\n"
	  "inode 1 (nlink 4) is unreachable\n",
	  "root inode 1 is not a directory (mode 100644)\n" },
	{ "repeated name", "INSERT INTO dentry(parent, name, ino) VALUES"
	  " (2, CAST('f' AS BLOB), 5)",
	  "entry \"f\" (id 10) in directory 2, inode 5: repeats a name already in its directory\n"
	  "inode 5 has nlink 2, should be 3\n",
	  "entry \"f\" (id 10) in directory 2, inode 5: repeats a name already in its directory\n" },
	{ "dangling entry", "INSERT INTO dentry(parent, name, ino) VALUES"
	  " (2, CAST('ghost' AS BLOB), 99999)",
	  "entry \"ghost\" (id 10) in directory 2, inode 99999: names a missing inode\n",
	  "entry \"ghost\" (id 10) in directory 2, inode 99999: names a missing inode\n" },
	{ "control bytes in a name", "INSERT INTO dentry(parent, name, ino)"
	  " VALUES (2, X'61017F62', 99999)",
	  "entry \"a??b\" (id 10) in directory 2, inode 99999: names a missing inode\n",
	  "entry \"a??b\" (id 10) in directory 2, inode 99999: names a missing inode\n" },
	{ "entry in a file", "INSERT INTO dentry(parent, name, ino) VALUES"
	  " (3, CAST('in-file' AS BLOB), 5)",
	  "entry \"in-file\" (id 10) in directory 3, inode 5: parent is missing or not a directory\n"
	  "inode 5 has nlink 2, should be 3\n",
	  "entry \"in-file\" (id 10) in directory 3, inode 5: parent is missing or not a directory\n" },
	{ "entry in a missing dir", "INSERT INTO dentry(parent, name, ino)"
	  " VALUES (5555, CAST('lost' AS BLOB), 3)",
	  "entry \"lost\" (id 10) in directory 5555, inode 3: parent is missing or not a directory\n"
	  "inode 3 has nlink 1, should be 2\n",
	  "entry \"lost\" (id 10) in directory 5555, inode 3: parent is missing or not a directory\n" },
	{ "entry naming the root", "INSERT INTO dentry(parent, name, ino)"
	  " VALUES (2, CAST('loop' AS BLOB), 1)",
	  "entry \"loop\" (id 10) in directory 2, inode 1: names the root directory\n"
	  "directory 1 records parent 1, but its entry is in 2\n"
	  "inode 2 has nlink 3, should be 4\n",
	  "entry \"loop\" (id 10) in directory 2, inode 1: names the root directory\n" },
	{ "directory hard link", "INSERT INTO dentry(parent, name, ino)"
	  " VALUES (1, CAST('dup' AS BLOB), 4)",
	  "entry \"dup\" (id 10) in directory 1, inode 4: a second entry of a directory\n"
	  "directory 4 records parent 2, but its entry is in 1\n"
	  "inode 1 has nlink 4, should be 5\n",
	  "entry \"dup\" (id 10) in directory 1, inode 4: a second entry of a directory\n" },
	{ "unreachable file", "DELETE FROM dentry WHERE parent = 2 AND"
	  " name = CAST('f' AS BLOB)",
	  "inode 3 (nlink 1) is unreachable\n",
	  "inode 3 (nlink 1) was unreachable: now /lost+found/#3\n" },
	{ "unreachable file, #3 taken", LF_WITH_3
	  "DELETE FROM dentry WHERE parent = 2 AND name = CAST('f' AS BLOB)",
	  "inode 3 (nlink 1) is unreachable\n",
	  "inode 3 (nlink 1) was unreachable: now /lost+found/#3.1\n" },
	{ "detached directory", "DELETE FROM dentry WHERE ino = 4",
	  "directory 4 is unreachable (no entry names it)\n"
	  "inode 2 has nlink 3, should be 2\n",
	  "directory 4 was unreachable (no entry): now /lost+found/#4\n"
	  "inode 2 has nlink 3, should be 2\n" },
	{ "directory cycle", "UPDATE dentry SET parent = 7 WHERE ino = 6",
	  "directory 7 is unreachable (in a cycle of directories)\n"
	  "directory 6 records parent 1, but its entry is in 7\n"
	  "inode 1 has nlink 4, should be 3\n"
	  "inode 7 has nlink 2, should be 3\n",
	  "directory 7 was unreachable (in a cycle): now /lost+found/#7\n"
	  "directory 6 records parent 1, but its entry is in 7\n"
	  "inode 1 has nlink 5, should be 4\n"
	  "inode 7 has nlink 2, should be 3\n" },
	{ "dir parent column", "UPDATE inode SET parent = 6 WHERE ino = 4",
	  "directory 4 records parent 6, but its entry is in 2\n",
	  "directory 4 records parent 6, but its entry is in 2\n" },
	{ "root parent column", "UPDATE inode SET parent = NULL WHERE ino = 1",
	  "directory 1 records parent -1, but its entry is in 1\n",
	  "directory 1 records parent -1, but its entry is in 1\n" },
	{ "file nlink", "UPDATE inode SET nlink = 5 WHERE ino = 3",
	  "inode 3 has nlink 5, should be 1\n",
	  "inode 3 has nlink 5, should be 1\n" },
	{ "dir nlink", "UPDATE inode SET nlink = 7 WHERE ino = 2",
	  "inode 2 has nlink 7, should be 3\n",
	  "inode 2 has nlink 7, should be 3\n" },
	{ "linked inode with nlink 0",
	  "UPDATE inode SET nlink = 0 WHERE ino = 5",
	  "inode 5 has nlink 0, should be 2\n",
	  "inode 5 has nlink 0, should be 2\n" },
	{ "blocks of a missing inode", "INSERT INTO block VALUES"
	  " (99999, 0, '" H1 "', 0), (99999, 1, NULL, 1)",
	  "2 block rows belong to missing inode 99999\n"
	  "object 1111111111111111111111111111111111111111111111111111111111111111 has refcount 1, but 2 block, patch and snapshot rows name it\n",
	  "2 block rows belong to missing inode 99999\n" },
	{ "blocks of a directory", "INSERT INTO block VALUES"
	  " (2, 0, '" H2 "', 0)",
	  "1 block rows belong to non-regular inode 2\n"
	  "inode 2 has nblocks 0, should be 1\n"
	  "object 2222222222222222222222222222222222222222222222222222222222222222 has refcount 1, but 2 block, patch and snapshot rows name it\n",
	  "1 block rows belong to non-regular inode 2\n" },
	{ "inline data", "INSERT INTO inline_data VALUES (999, x'01'),"
	  " (1, x'02'), (3, x'03')",
	  "inline data belongs to non-regular inode 1\n"
	  "inode 3 has both inline data and 2 block rows\n"
	  "inline data belongs to missing inode 999\n",
	  "inline data belongs to non-regular inode 1\n"
	  "inode 3 has both inline data and 2 block rows\n"
	  "inline data belongs to missing inode 999\n" },
	{ "block past EOF", "INSERT INTO block VALUES (3, 100, '" H1 "', 0)",
	  "inode 3 (size 8192) has 1 block rows past its end\n"
	  "inode 3 has nblocks 2, should be 3\n"
	  "object 1111111111111111111111111111111111111111111111111111111111111111 has refcount 1, but 2 block, patch and snapshot rows name it\n",
	  "inode 3 (size 8192) has 1 block rows past its end\n" },
	{ "nblocks", "UPDATE inode SET nblocks = 9 WHERE ino = 3",
	  "inode 3 has nblocks 9, should be 2\n",
	  "inode 3 has nblocks 9, should be 2\n" },
	{ "patch without its block", "INSERT INTO patch VALUES"
	  " (3, 5, 1, '" H4 "'), (3, 5, 2, '" H4 "')",
	  "block 5 of inode 3 has 2 patch rows but no uploaded block to apply them to\n"
	  "object 4444444444444444444444444444444444444444444444444444444444444444 is named by 2 block, patch or snapshot rows but has no object row\n",
	  "block 5 of inode 3 has 2 patch rows but no uploaded block to apply them to\n" },
	{ "chain too long", "WITH RECURSIVE c(n) AS (SELECT 2 UNION ALL"
	  " SELECT n + 1 FROM c WHERE n < 17) INSERT INTO patch"
	  " SELECT 3, 1, n, '" H4 "' FROM c",
	  "block 1 of inode 3 has 17 patch rows more than a chain may have\n"
	  "object 4444444444444444444444444444444444444444444444444444444444444444 is named by 16 block, patch or snapshot rows but has no object row\n",
	  "block 1 of inode 3 has 17 patch rows more than a chain may have\n"
	  "object 5555555555555555555555555555555555555555555555555555555555555555 has refcount 1, but 0 block, patch and snapshot rows name it\n" },
	{ "patches past EOF", "UPDATE inode SET size = 4096 WHERE ino = 3",
	  "inode 3 (size 4096) has 1 block rows past its end\n",
	  "inode 3 (size 4096) has 1 block rows past its end\n"
	  "inode 3 has nblocks 2, should be 1\n"
	  "block 1 of inode 3 has 1 patch rows but no uploaded block to apply them to\n"
	  "object 2222222222222222222222222222222222222222222222222222222222222222 has refcount 1, but 0 block, patch and snapshot rows name it\n"
	  "object 5555555555555555555555555555555555555555555555555555555555555555 has refcount 1, but 0 block, patch and snapshot rows name it\n" },
	{ "refcount", "UPDATE object SET refcount = 7 WHERE hash = '" H1 "'",
	  "object 1111111111111111111111111111111111111111111111111111111111111111 has refcount 7, but 1 block, patch and snapshot rows name it\n",
	  "object 1111111111111111111111111111111111111111111111111111111111111111 has refcount 7, but 1 block, patch and snapshot rows name it\n" },
	{ "holds of a missing snapshot", "INSERT INTO snap_hold VALUES"
	  " (7, '" H1 "'), (7, '" H2 "')",
	  "2 objects are held by snapshot 7, which does not exist\n"
	  "object 1111111111111111111111111111111111111111111111111111111111111111 has refcount 1, but 2 block, patch and snapshot rows name it\n"
	  "object 2222222222222222222222222222222222222222222222222222222222222222 has refcount 1, but 2 block, patch and snapshot rows name it\n",
	  "2 objects are held by snapshot 7, which does not exist\n" },
	{ "freed epoch", "INSERT INTO object VALUES ('" H4 "', 0, 1, NULL)",
	  "object 4444444444444444444444444444444444444444444444444444444444444444 is unreferenced but has no freed epoch\n",
	  "object 4444444444444444444444444444444444444444444444444444444444444444 is unreferenced but has no freed epoch\n" },
	{ "epoch on a live object",
	  "UPDATE object SET freed_epoch = 3 WHERE hash = '" H1 "'",
	  "object 1111111111111111111111111111111111111111111111111111111111111111 (refcount 1) has freed epoch 3\n",
	  "object 1111111111111111111111111111111111111111111111111111111111111111 (refcount 1) has freed epoch 3\n" },
	{ "missing object row", "DELETE FROM object WHERE hash = '" H2 "'",
	  "object 2222222222222222222222222222222222222222222222222222222222222222 is named by 1 block, patch or snapshot rows but has no object row\n",
	  "object 2222222222222222222222222222222222222222222222222222222222222222 is named by 1 block, patch or snapshot rows but has no object row\n" },
	{ "control bytes in an object name",
	  "UPDATE block SET hash = CAST(X'6101' AS TEXT)"
	  " WHERE ino = 3 AND idx = 0",
	  "object 1111111111111111111111111111111111111111111111111111111111111111 has refcount 1, but 0 block, patch and snapshot rows name it\n"
	  "object a? is named by 1 block, patch or snapshot rows but has no object row\n",
	  "object 1111111111111111111111111111111111111111111111111111111111111111 has refcount 1, but 0 block, patch and snapshot rows name it\n"
	  "object a? is named by 1 block, patch or snapshot rows but has no object row\n" },
	{ "root nlink 0 and a detached directory",
	  "UPDATE inode SET nlink = 0 WHERE ino = 1;"
	  "DELETE FROM dentry WHERE ino = 4",
	  "root directory has a link count below 2\n"
	  "directory 4 is unreachable (no entry names it)\n"
	  "inode 1 has nlink 0, should be 4\n"
	  "inode 2 has nlink 3, should be 2\n",
	  "root directory has a link count below 2\n"
	  "directory 4 was unreachable (no entry): now /lost+found/#4\n"
	  "inode 1 has nlink 3, should be 5\n"
	  "inode 2 has nlink 3, should be 2\n" },
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
	  "INSERT INTO inline_data VALUES (999, x'01');"
	  "INSERT INTO patch VALUES (3, 0, 1, '" H4 "');"
	  "INSERT INTO dentry(parent, name, ino) VALUES"
	  " (1, CAST('dup' AS BLOB), 7)",
	  "entry \"ghost\" (id 10) in directory 2, inode 99999: names a missing inode\n"
	  "entry \"dup\" (id 11) in directory 1, inode 7: a second entry of a directory\n"
	  "directory 4 is unreachable (no entry names it)\n"
	  "directory 6 records parent 1, but its entry is in 7\n"
	  "directory 7 records parent 6, but its entry is in 1\n"
	  "inode 2 has nlink 3, should be 2\n"
	  "inode 3 has nlink 5, should be 1\n"
	  "inode 7 has nlink 2, should be 3\n"
	  "1 block rows belong to missing inode 99999\n"
	  "inline data belongs to missing inode 999\n"
	  "inode 3 (size 8192) has 1 block rows past its end\n"
	  "inode 3 has nblocks 9, should be 3\n"
	  "object 1111111111111111111111111111111111111111111111111111111111111111 has refcount 7, but 3 block, patch and snapshot rows name it\n"
	  "object 2222222222222222222222222222222222222222222222222222222222222222 is named by 1 block, patch or snapshot rows but has no object row\n"
	  "object 4444444444444444444444444444444444444444444444444444444444444444 is named by 1 block, patch or snapshot rows but has no object row\n",
	  "entry \"ghost\" (id 10) in directory 2, inode 99999: names a missing inode\n"
	  "entry \"dup\" (id 11) in directory 1, inode 7: a second entry of a directory\n"
	  "directory 4 was unreachable (no entry): now /lost+found/#4\n"
	  "directory 6 was unreachable (in a cycle): now /lost+found/#6\n"
	  "inode 1 has nlink 5, should be 4\n"
	  "inode 2 has nlink 3, should be 2\n"
	  "inode 3 has nlink 5, should be 1\n"
	  "inode 7 has nlink 1, should be 2\n"
	  "1 block rows belong to missing inode 99999\n"
	  "inline data belongs to missing inode 999\n"
	  "inode 3 (size 8192) has 1 block rows past its end\n"
	  "inode 3 has nblocks 9, should be 2\n"
	  "object 1111111111111111111111111111111111111111111111111111111111111111 has refcount 7, but 1 block, patch and snapshot rows name it\n"
	  "object 2222222222222222222222222222222222222222222222222222222222222222 is named by 1 block, patch or snapshot rows but has no object row\n"
	  "object 4444444444444444444444444444444444444444444444444444444444444444 is named by 1 block, patch or snapshot rows but has no object row\n" },
};

/* T_FSCK_GOLDEN=1: print each run's lines as the C string to expect. */
static bool golden;

static void print_literal(const char *text)
{
	const char *p;

	fputs("\t  \"", stdout);
	for (p = text; *p; p++) {
		if (*p == '"' || *p == '\\')
			putchar('\\');
		if (*p == '\n')
			fputs(p[1] ? "\\n\"\n\t  \"" : "\\n", stdout);
		else
			putchar(*p);
	}
	fputs("\",\n", stdout);
}

static void report_cb(const char *line, void *arg)
{
	struct buf *b = arg;

	CHECK_RC(buf_appendf(b, "%s\n", line), 0);
}

/* One run of fsck: its lines, NUL-ended, into *b; returns its count. */
static int fsck_lines(struct meta *m, int repair, struct buf *b)
{
	int n = meta_fsck(m, repair, report_cb, b);

	CHECK_RC(buf_append(b, "", 1), 0);
	return n;
}

/* One run of fsck: its lines must be want, and as many as it counts. */
static void fsck_expect(struct meta *m, int repair, const char *want,
			const char *scenario)
{
	struct buf b = { 0 };
	const char *got, *p;
	int n, lines = 0;

	n = fsck_lines(m, repair, &b);
	got = b.data ? (const char *)b.data : "";
	for (p = want; *p; p++)
		lines += *p == '\n';
	CHECK_RC(n, lines);
	if (strcmp(got, want)) {
		CHECK(!"fsck's lines as expected");
		fprintf(stderr, "  scenario \"%s\", %s run:\n--- got\n%s"
			"--- want\n%s", scenario, repair ? "repairing" :
			"checking", got, want);
	}
	buf_free(&b);
}

static void fsck_print(struct meta *m, int repair)
{
	struct buf b = { 0 };

	fsck_lines(m, repair, &b);
	print_literal(b.data ? (const char *)b.data : "");
	buf_free(&b);
}

static void run_scenario(const struct scenario *sc)
{
	struct meta *m = NULL;
	char path[128];

	snprintf(path, sizeof(path), "%s/fsck.db", tmpdir);
	rm_db(path);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (!m)
		return;
	if (!build_tree(m)) {
		meta_close(m);
		goto out_rm;
	}
	fsck_expect(m, 0, "", "before the damage");
	meta_close(m);
	m = NULL;
	CHECK_RC(raw_sql(path, sc->sql), SQLITE_OK);
	CHECK_RC(meta_open(path, BS, 0, 0, &m), 0);
	if (m && golden) {
		printf("\t/* %s */\n", sc->name);
		fsck_print(m, 0);
		fsck_print(m, 1);
	} else if (m) {
		fsck_expect(m, 0, sc->check, sc->name);
		fsck_expect(m, 1, sc->repair, sc->name);
		fsck_expect(m, 0, "", sc->name);
	}
	meta_close(m);
out_rm:
	rm_db(path);
}

int main(void)
{
	size_t i;

	golden = getenv("T_FSCK_GOLDEN") != NULL;
	if (tmpdir_make("t_fsck"))
		return 1;
	for (i = 0; i < ARRAY_SIZE(scenarios); i++)
		run_scenario(&scenarios[i]);
	rmdir(tmpdir);
	return check_done("t_fsck");
}
