/*
 * past.h - mounts of a past state of a volume (`mount --at TIME`,
 * `mount --snapshot NAME`): read-only, no lease, a cache directory of
 * their own, the metadata restored as of that state (past.c).
 */
#ifndef METAFUSE_CLI_PAST_H
#define METAFUSE_CLI_PAST_H

#include "util/compat.h"

#include "cli/mount_int.h"
#include "util/buf.h"

/*
 * TIME as `mount --at` takes it, into *out_ns (Unix ns): ISO 8601
 * ("2026-12-06T10:15:00Z", "2026-12-06T10:15:00+01:00", a local time
 * without zone, seconds and a fraction optional, a space for the T), or
 * relative to now_ns ("-10m", "-2h", "-90s", "-1d"; a number and a unit
 * s, m, h, d).  -EINVAL with one line in err: not a time, or after now.
 */
int past_parse_time(const char *s, int64_t now_ns, int64_t *out_ns,
		    struct buf *err);

/* Does o ask for a past mount? */
static inline bool past_wanted(const struct mount_opts *o)
{
	return o->at || o->snapshot;
}

/*
 * Replace the database at db_path by the past state o asks for (its
 * WAL and side files removed first); dirty blocks of that state keep
 * their last uploaded content.  0, or -errno after one line on stderr.
 */
int past_restore(struct mounted *mt, const char *db_path);

#endif
