/*
 * snapshot.h - named snapshots of a volume in the store (snapshot.c).
 */
#ifndef METAFUSE_SNAPSHOT_H
#define METAFUSE_SNAPSHOT_H

#include "blob/blob.h"
#include "store/store.h"
#include "util/buf.h"

/*
 * Restore the snapshot called name into a new database at db_path.
 * -ENOENT with one line in err listing the snapshots there are; other
 * errors with one line.
 */
int snapshot_restore(struct store *s, const struct blob_ctx *bc,
		     const char *name, const char *db_path, struct buf *err);

#endif
