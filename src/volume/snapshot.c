/*
 * snapshot.c - named snapshots of a volume in the store.
 */
#include "util/compat.h"

#include "volume/snapshot.h"

int snapshot_restore(struct store *s, const struct blob_ctx *bc,
		     const char *name, const char *db_path, struct buf *err)
{
	/* placeholder until snapshots are stored */
	(void)bc;
	(void)db_path;
	buf_appendf(err, "%s has no snapshot named '%s' (it has none)",
		    s->url, name);
	return -ENOENT;
}
