/*
 * follow.h - a follower's thread (follow.c): a read-only mount that
 * applies the journal another mount of the volume writes, so that what
 * the writer makes durable shows here within follow_interval.
 */
#ifndef METAFUSE_CLI_FOLLOW_H
#define METAFUSE_CLI_FOLLOW_H

#include "cli/mount_int.h"

struct follower;

/*
 * Start following mt's volume (mt->meta, store, blob, fs and cache_dir
 * set, the fs about to serve): every interval_ns the journal entries
 * after the database's jrnl_seq are applied, or, when they are gone
 * from the store, the newest checkpoint's state.  The first round runs
 * in the call.  0 or -errno (logged).
 */
int follow_start(struct mounted *mt, uint64_t interval_ns,
		 struct follower **out);
/* Where a follower stands, as of its last round (`metafuse stats`). */
struct follow_stats {
	uint64_t entries;   /* journal entries applied since the mount */
	uint64_t catch_ups; /* ... and catch-ups from a checkpoint */
	uint64_t jseq;      /* the writer's entry this copy is at */
	int64_t state_ns;   /* when the writer cut it (Unix ns; 0: unknown) */
	int64_t round_ns;   /* when the last round ended (Unix ns) */
	bool failing;       /* the last round could not read the store */
};
/* Never waits for a round that runs. */
void follow_get_stats(struct follower *f, struct follow_stats *out);
/* Stop the thread and let go of the metadata's hook.  NULL: no-op. */
void follow_stop(struct follower *f);

#endif
