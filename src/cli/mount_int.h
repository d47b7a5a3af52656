/*
 * mount_int.h - what `metafuse mount` (cmd_mount.c: the options, the
 * checks, the store, the fork) hands to the daemon that serves the mount
 * (daemon.c).
 */
#ifndef METAFUSE_CLI_MOUNT_INT_H
#define METAFUSE_CLI_MOUNT_INT_H

#include "util/compat.h"

#include <pthread.h>

#include "blob/blob.h"
#include "cache/cache.h"
#include "cli/store_opts.h"
#include "fs/fs.h"
#include "meta/meta.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/progress.h"
#include "volume/journal.h"
#include "volume/volume.h"

/* The -f, --force and -o choices of a mount; read-only once parsed. */
struct mount_opts {
	bool foreground;
	bool force;
	bool read_only;
	bool debug;
	bool writeback_cache;
	char *cache_dir;
	uint64_t cache_size;
	uint64_t max_dirty;
	uint64_t writeback_delay_ns;
	uint64_t checkpoint_interval_ns;
	uint64_t journal_interval_ns;
	uint64_t inline_max;
	unsigned upload_threads;
	struct buf fuse_opts; /* passed through to FUSE */
	struct cli_store_opts store; /* endpoint=, region= ... */
	bool sloppy;          /* mount -s: an unknown option is a warning */
	/* mount(8)'s options, recorded in the utab with helper=metafuse once
	 * mounted (fstab_utab_add()); NULL: no utab line */
	const char *utab_opts;
};

/* The defaults of every option; mount_opts_free() frees what parsing
 * allocated. */
void mount_opts_init(struct mount_opts *o);
void mount_opts_free(struct mount_opts *o);

/* Read a comma-separated -o list into o: 0, or -1 after one line on
 * stderr (an unknown option, a bad value). */
int mount_opts_parse(struct mount_opts *o, const char *list);

/*
 * The mount after its options (cmd_mount.c): check mountpoint, open store
 * (NULL: the default volume) and the volume, fork the daemon (unless
 * o->foreground) and wait for its verdict.  Returns the exit status: in
 * the caller, once the mount answers (or failed); in the daemon (or with
 * -f), after the unmount.
 */
int mount_volume(struct mount_opts *o, const char *store,
		 const char *mountpoint);

/*
 * One mount, from the open store to the unmount.  cmd_mount() fills o,
 * store, vol, blob, cache_dir and ready_fd; daemon_serve() the rest.  The
 * pointers are set before the maintenance thread starts and stay until it
 * is joined: the objects behind them take their own locks.
 */
struct mounted {
	struct mount_opts *o;
	struct store *store;
	struct volume vol;
	struct blob_ctx blob;
	struct meta *meta;
	struct cache *cache;
	struct fs *fs;
	struct journal *journal;
	char *cache_dir;
	bool restored; /* the metadata came from the store at this mount */
	struct progress progress; /* the start's meter on the terminal */
	char lease_owner[64];
	int ready_fd; /* write end of the pipe to the waiting parent */
	int lock_fd;  /* flock()ed CACHE_DIR/lock: one mount per cache */
	struct buf registry; /* the file that tells umount our pid */

	pthread_t maint;
	bool maint_running;
	pthread_mutex_t maint_lock;
	pthread_cond_t maint_cond;
	bool maint_stop; /* protected by maint_lock */
};

/*
 * Serve the mount at mountpoint (a real path) until it is unmounted, then
 * put everything in the store and close all.  mt->ready_fd, when >= 0,
 * hears the verdict as soon as the mount answers (or fails); the caller
 * tells it after a failure before that (daemon_tell_parent()).  0 when the
 * volume ended clean, else -errno (printed or logged).
 */
int daemon_serve(struct mounted *mt, const char *mountpoint);

/* Write status (0: mounted, 1: failed) to the waiting parent, once. */
void daemon_tell_parent(struct mounted *mt, char status);

#endif
