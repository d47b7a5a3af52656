/*
 * past.c - what a mount of a past state does differently: TIME parsed,
 * the state restored into a database of its own.
 *
 * A past mount (`mount --at TIME`, `mount --snapshot NAME`) is a
 * read-only mount (o->read_only: no lease, no journal, no upload, no
 * garbage collection, so it runs beside the volume's writer on this or
 * another machine) whose metadata is not the store's newest state but:
 *   --at TIME        the state after the newest journal entry written at
 *                    or before TIME (journal_restore_at(), journal.c)
 *   --snapshot NAME  the snapshot's copy of the database
 *                    (snapshot_restore(), volume/snapshot.c)
 * Its cache directory is its own (cmd_mount.c makes a fresh one next to
 * the volume's when none is given, removed at unmount), so the writer's
 * cache and its rollback record are never touched.
 *
 * Invariants
 *   1. A past mount never writes to the store.
 *   2. Its database is always restored at mount, never reused: a state
 *      of the past is exactly what the store holds for it.
 */
#include "util/compat.h"

#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/past.h"
#include "meta/meta.h"
#include "util/log.h"
#include "util/util.h"
#include "volume/journal.h"
#include "volume/snapshot.h"

#define NS 1000000000LL

/* "-N<unit>" relative to now. */
static int parse_relative(const char *s, int64_t now_ns, int64_t *out)
{
	static const struct { char c; int64_t s; } units[] = {
		{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 },
	};
	char *end;
	double v = strtod(s + 1, &end);
	size_t i;

	if (end == s + 1 || v < 0 || end[0] == 0 || end[1] != 0)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(units); i++)
		if (*end == units[i].c && v * (double)units[i].s < 3.0e9) {
			*out = now_ns - (int64_t)(v * (double)units[i].s *
						  (double)NS);
			return 0;
		}
	return -EINVAL;
}

/* "[.fraction]" into ns; the rest after it into *rest. */
static int parse_fraction(const char *p, int64_t *ns, const char **rest)
{
	int64_t scale = NS / 10;

	*ns = 0;
	if (*p == '.' || *p == ',') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
			*ns += (*p - '0') * scale;
	}
	*rest = p;
	return 0;
}

/* "Z", "+HH:MM", "-HHMM", "+HH" into seconds east of UTC; "" is local. */
static int parse_zone(const char *p, bool *local, long *east)
{
	int hh = 0, mm = 0, n = 0;

	*local = *p == 0;
	*east = 0;
	if (*local || (p[0] == 'Z' && p[1] == 0))
		return 0;
	if ((p[0] != '+' && p[0] != '-') ||
	    (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 &&
	     sscanf(p + 1, "%2d%2d%n", &hh, &mm, &n) != 2 &&
	     sscanf(p + 1, "%2d%n", &hh, &n) != 1) ||
	    p[1 + n] != 0 || hh > 23 || mm > 59)
		return -EINVAL;
	*east = (p[0] == '-' ? -1 : 1) * (hh * 3600L + mm * 60L);
	return 0;
}

static int parse_iso(const char *s, int64_t *out)
{
	struct tm tm;
	int64_t frac;
	const char *rest;
	char *p;
	bool local;
	long east;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	p = strptime(s, "%Y-%m-%d", &tm);
	if (!p)
		return -EINVAL;
	if (*p == 'T' || *p == ' ') {
		char *q = strptime(p + 1, "%H:%M:%S", &tm);

		p = q ? q : strptime(p + 1, "%H:%M", &tm);
		if (!p)
			return -EINVAL;
	}
	if (parse_fraction(p, &frac, &rest) || parse_zone(rest, &local, &east))
		return -EINVAL;
	if (local) {
		tm.tm_isdst = -1;
		t = mktime(&tm);
	} else {
		t = timegm(&tm) - east;
	}
	if (t == (time_t)-1)
		return -EINVAL;
	*out = (int64_t)t * NS + frac;
	return 0;
}

int past_parse_time(const char *s, int64_t now_ns, int64_t *out_ns,
		    struct buf *err)
{
	int rc = s[0] == '-' ? parse_relative(s, now_ns, out_ns) :
			       parse_iso(s, out_ns);

	if (rc) {
		buf_appendf(err, "'%s' is not a time: give ISO 8601 "
			    "(2026-12-06T10:15:00Z, or a local time without "
			    "zone) or a time before now (-10m, -2h, -1d)", s);
		return rc;
	}
	if (*out_ns > now_ns) {
		buf_appendf(err, "'%s' is in the future", s);
		return -EINVAL;
	}
	return 0;
}

/* A restored database's WAL and side files would be replayed into it. */
static void remove_db(const char *db_path)
{
	static const char *const sides[] = { "", "-wal", "-shm", "-pending" };
	struct buf p = BUF_INIT;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(sides); i++) {
		buf_reset(&p);
		if (buf_appendf(&p, "%s%s", db_path, sides[i]) == 0)
			unlink(buf_str(&p));
	}
	buf_free(&p);
}

int past_restore(struct mounted *mt, const char *db_path)
{
	struct buf err = BUF_INIT;
	struct meta *m;
	int rc;

	remove_db(db_path);
	if (mt->o->snapshot) {
		rc = snapshot_restore(mt->store, &mt->blob, mt->o->snapshot,
				      db_path, &err);
	} else {
		struct journal_at at;

		rc = journal_restore_at(mt->store, &mt->blob,
					mt->vol.block_size, db_path,
					mt->o->at_ns, &at, &err);
		if (rc == 0)
			log_info("mounting %s as of journal entry %" PRIu64
				 " (checkpoint %" PRIu64 " and %" PRIu64
				 " entries)", mt->store->url, at.jseq,
				 at.ckpt_seq, at.applied);
	}
	if (rc) {
		cli_error("%s", err.len ? buf_str(&err) : strerror(-rc));
		goto out;
	}
	rc = meta_open(db_path, mt->vol.block_size, getuid(), getgid(), &m);
	if (rc) {
		cli_error("cannot open the restored metadata %s: %s", db_path,
			  strerror(-rc));
		goto out;
	}
	/* blocks written then but not yet uploaded: their last upload */
	if (meta_blocks_forget_dirty(m) < 0)
		rc = -EIO;
	meta_close(m);
	mt->restored = true;
out:
	buf_free(&err);
	return rc;
}
