/*
 * mount_int.h - what `metafuse mount` (cmd_mount.c: the options, the
 * checks, the store, the fork) hands to the daemon that serves the mount
 * (daemon.c), and the daemon's statistics (daemon_stats.c) that
 * `metafuse stats` (cmd_stats.c) reads.
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

struct follower;

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
	bool follow;                 /* -o follow (with ro): cli/follow.c */
	uint64_t follow_interval_ns; /* 0: follow_interval= not given */
	uint64_t inline_max;
	unsigned upload_threads;
	struct buf fuse_opts; /* passed through to FUSE */
	struct cli_store_opts store; /* endpoint=, region= ... */
	bool sloppy;          /* mount -s: an unknown option is a warning */
	/* mount(8)'s options, recorded in the utab with helper=metafuse once
	 * mounted (fstab_utab_add()); NULL: no utab line */
	const char *utab_opts;
	struct store_prices prices; /* price_*=, price_file= (stats) */
	/* a past mount (past.h): --at TIME (at_ns, Unix ns, once parsed)
	 * or --snapshot NAME; either makes the mount read-only */
	char *at;
	int64_t at_ns;
	char *snapshot;
};

/*
 * -o price_storage_gb_month=, price_put_1k=, price_get_1k=,
 * price_egress_gb= and price_file=FILE into p (daemon_stats.c).
 * -ENOENT: not a price option; -ECANCELED: a bad value or file, its one
 * line printed.
 */
int mount_price_opt(struct store_prices *p, const char *opt);

/* Per-minute samples of the store's counters, for "the last hour". */
#define STATS_SAMPLES 61
struct stats_sample {
	uint64_t t_ns; /* CLOCK_MONOTONIC */
	struct store_traffic traffic;
};

/*
 * The statistics side of a mount (daemon_stats.c): a Unix socket beside
 * the registry file, answered by a thread of its own, and the samples
 * the maintenance thread takes every minute.
 */
struct daemon_stats {
	uint64_t start_ns;     /* CLOCK_MONOTONIC when the daemon began */
	char *sock_path;       /* NULL: no socket */
	int listen_fd;
	int wake[2];           /* a byte on wake[1] ends the thread */
	pthread_t thread;
	bool running;
	uint64_t minute_ns;      /* between samples; const after init */
	uint64_t next_sample_ns; /* the maintenance thread's */
	pthread_mutex_t lock;
	struct stats_sample samples[STATS_SAMPLES]; /* protected by lock */
	unsigned nsamples, next;                    /* protected by lock */
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
	bool cache_dir_tmp; /* made for a past mount: removed at its end */
	struct progress progress; /* the start's meter on the terminal */
	/* the lease held (unless read-only; owner "" when none), how long
	 * each write of it is valid, and when (CLOCK_BOOTTIME ns) the last
	 * successful write began; the lease fields are the maintenance
	 * thread's once it runs */
	struct volume_lease lease;
	unsigned lease_valid_s;
	uint64_t lease_written_ns;
	int ready_fd; /* write end of the pipe to the waiting parent */
	int lock_fd;  /* flock()ed CACHE_DIR/lock: one mount per cache */
	struct buf registry; /* the file that tells umount our pid */

	pthread_t maint;
	bool maint_running;
	pthread_mutex_t maint_lock;
	pthread_cond_t maint_cond;
	bool maint_stop; /* protected by maint_lock */

	struct daemon_stats stats;
	struct follower *follower; /* -o follow's thread (follow.c) */
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

/* daemon_stats.c.  Init at the start of daemon_serve(); start once the fs
 * exists, serving on the socket named after registry (the registry
 * file's path) + ".sock"; stop before the fs goes (NULL-safe; a socket
 * that cannot be made is logged, the mount goes on without it). */
void daemon_stats_init(struct mounted *mt);
void daemon_stats_start(struct mounted *mt, const char *registry);
void daemon_stats_stop(struct mounted *mt);
/* From the maintenance thread, every second or so: a sample a minute. */
void daemon_stats_tick(struct mounted *mt, uint64_t now_ns);

#endif
