/*
 * sweep.h - delete from the store the data objects that the metadata
 * does not need (gc, and the start of a mount after a crash).
 */
#ifndef METAFUSE_SWEEP_H
#define METAFUSE_SWEEP_H

#include "util/compat.h"

#include "blob/blob.h"
#include "meta/meta.h"
#include "store/store.h"
#include "util/progress.h"

/*
 * Delete the data objects the metadata m does not know (uploaded by a
 * mount that crashed before recording them, or recorded only in metadata
 * that never reached the store); with unreferenced, also those with no
 * reference left (forgotten from m, so write a checkpoint afterwards).
 * Only safe while nothing uploads: before a mount's cache starts, or
 * offline with the lease held.  res->bytes counts what was to be deleted;
 * returns the first deletion error (the others are logged) or 0.
 * progress(progress_arg) (may be NULL) hears the keys listed so far
 * (SWEEP_LISTING, total unknown), then the keys deleted (or failed) of
 * those to delete (SWEEP_DELETING), after each batch.
 */
#define SWEEP_LISTING "listing objects"
#define SWEEP_DELETING "deleting objects"

struct sweep_result {
	uint64_t seen, deleted, bytes;
};
int store_sweep(struct meta *m, struct store *s, bool unreferenced,
		progress_fn *progress, void *progress_arg,
		struct sweep_result *res);

#endif
