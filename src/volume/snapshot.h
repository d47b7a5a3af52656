/*
 * snapshot.h - named snapshots of a volume in the store (snapshot.c).
 *
 * A snapshot is a row of the live database that holds every object its
 * state names (meta_snap.c), plus a copy of the database as of that
 * state in the store: head meta/snap-<16 hex id> (a manifest naming the
 * snapshot, its time and journal entry), parts meta/snpp-<id>-<part>.
 */
#ifndef METAFUSE_SNAPSHOT_H
#define METAFUSE_SNAPSHOT_H

#include "blob/blob.h"
#include "meta/meta.h"
#include "store/store.h"
#include "util/buf.h"
#include "volume/journal.h"
#include "volume/volume.h"

#define SNAPSHOT_HEAD_PREFIX "meta/snap-"
#define SNAPSHOT_PART_PREFIX "meta/snpp-"

/* What a snapshot's head in the store says. */
struct snapshot_head {
	uint64_t id;
	char name[META_SNAP_NAME_MAX + 1];
	int64_t time_ns;
	uint64_t jseq;
};

/*
 * The snapshots whose copies the store holds, in id order (oldest
 * first), read from their heads; *out is the caller's to free.  A head
 * that cannot be read is logged and left out.
 */
int snapshot_heads(struct store *s, const struct blob_ctx *bc,
		   struct snapshot_head **out, size_t *n);

/*
 * Make the snapshot name of m's state now, durable before it returns:
 * the holds and the copy in one transaction (meta_snap_create(), the
 * copy in tmp_dir), the journal synced (the holds are in the store), the
 * copy put (head last).  The caller made everything written before
 * durable in m first (uploads), and serializes calls.  v (when not
 * NULL) is raised to format 5 at the first snapshot (volume_set_history:
 * an older binary's collector would delete held objects).  out gets the
 * row.  -EEXIST, -EINVAL, -ENAMETOOLONG for the name (nothing made);
 * other errors with one line in err, nothing left made.
 */
int snapshot_create(struct meta *m, struct journal *j, struct store *s,
		    struct volume *v, const char *tmp_dir, const char *name,
		    struct meta_snap *out, struct buf *err);

/*
 * Delete the snapshot name: its copy from the store (head first), then
 * its row and holds (one transaction), synced to the store; the objects
 * only it held are then garbage the normal collection frees.  -ENOENT
 * with one line in err listing the snapshots there are.
 */
int snapshot_delete(struct meta *m, struct journal *j, struct store *s,
		    const char *name, struct buf *err);

/* The names of m's snapshots as "'a', 'b'" (or "none"), for messages. */
void snapshot_names(struct meta *m, struct buf *out);

/*
 * Restore the snapshot called name into a new database at db_path.
 * -ENOENT with one line in err listing the snapshots there are; other
 * errors with one line.
 */
int snapshot_restore(struct store *s, const struct blob_ctx *bc,
		     const char *name, const char *db_path, struct buf *err);

#endif
