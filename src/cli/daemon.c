/*
 * daemon.c - the life of a mount once `metafuse mount` has its store,
 * volume and cache directory (cmd_mount.c): from the lock on the cache
 * directory to a volume whose every byte is in the store.
 *
 * daemon_serve(), in order (each step can fail with one clear line):
 *   lock the cache directory -> refuse a store older than this cache
 *   saw it (check_rollback(), unless --force) -> take the lease ->
 *   restore the metadata
 *   from the store (newest checkpoint + journal) if the local copy is
 *   missing or older (prepare_db) -> open meta, start the journal and
 *   write a checkpoint (journal.c, invariant 5) -> after a crash or a
 *   restore, delete objects no metadata names (uploaded by a mount that
 *   died before naming them) -> open the cache (upload workers start)
 *   and the fs (a crash's orphans purged) -> run: start maintenance,
 *   mount, tell the parent "ready", serve until unmounted, stop
 *   maintenance -> upload everything, checkpoint (when one is due,
 *   journal.c; else send the journal), collect garbage -> close all,
 *   release the lease, remove the "running" marker.
 * Until the mount answers, the terminal is the daemon's (the parent waits
 * in silence): a long start (a restore, its checkpoint, the sweep) shows
 * its progress there (mt->progress, util/progress.h), erased before any
 * message and before on_ready() detaches.
 *
 * Threads:
 *   - the main thread runs daemon_serve(): it opens and closes everything
 *     in struct mounted, and in between sits in fs_run();
 *   - libfuse's request threads (fs_run, fs/) answer the kernel through
 *     fs, meta, cache and journal, which take their own locks;
 *   - the maintenance thread (maintenance()) sends the journal when the
 *     metadata changed (every journal_interval, sooner after a burst),
 *     checkpoints when one is due (looked at every checkpoint_interval;
 *     otherwise it sends the journal then too), deletes garbage objects
 *     no durable checkpoint names, renews the lease, reports a failing
 *     store and samples the statistics (daemon_stats_tick()).  It owns
 *     its struct maint_clock and, once it runs, the lease fields of
 *     struct mounted; of the rest it reads only what is set before it
 *     starts, and maint_stop under maint_lock;
 *   - the statistics thread (daemon_stats.c) answers `metafuse stats`
 *     while the fs exists;
 *   - a follower's thread (-o ro,follow; follow.c) applies the writer's
 *     journal every follow_interval, from before the mount answers
 *     until it ended (run());
 *   - the cache's upload workers and fetchers (cache_open() to
 *     cache_close()) and fs's purge thread (fs_new() to fs_free()).
 *
 * Invariants:
 *   1. What daemon_serve() opened it closes in reverse order, on failure
 *      as after the unmount (its goto labels name what they undo).
 *   2. The maintenance thread runs only while the mount is whole: started
 *      by run() after the fs exists, joined before the final upload.
 *   3. The lease (unless read-only) is held from before the metadata is
 *      restored until after the last upload: no other mount writes the
 *      volume meanwhile.  Maintenance renews it every half of its
 *      validity (maint_lease()) with one PUT while the lease it last
 *      wrote cannot have expired, reading it first otherwise.
 *   4. CACHE_DIR/running is written before serving (after the start-up
 *      checkpoint) and removed only when the volume ends clean: a mount
 *      that finds it finishes a crashed predecessor's work (checkpoint,
 *      sweep).
 *   5. The waiting parent hears one verdict: on_ready()'s 0 once the mount
 *      answers, else the caller's 1 (daemon_tell_parent() closes the pipe
 *      after the first).
 *   6. An idle mount sends nothing but the lease's renewals: every other
 *      duty of the maintenance thread asks the store only when something
 *      changed (journal, checkpoint) or waits for deletion (garbage, and
 *      with a history window what the window lets go of as time passes:
 *      journal_gc_epoch()).
 */
#include "util/compat.h"

#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "blob/blob.h"
#include "cache/cache.h"
#include "cli/cli.h"
#include "cli/follow.h"
#include "cli/mount_int.h"
#include "cli/past.h"
#include "fs/fs.h"
#include "meta/meta.h"
#include "meta/meta_index.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"
#include "volume/journal.h"
#include "volume/sweep.h"
#include "volume/volume.h"

/*
 * How long each write of the lease is valid: renewed every half of it
 * with one PUT, 8 requests an hour; a holder that died on another host is
 * taken over without --force at most this long after it stopped (on this
 * host at once, its pid being gone).  METAFUSE_TEST_LEASE_S sets it for
 * the tests.
 */
#define LEASE_VALID_S 900
/* A renewal that failed is tried again this often (at most). */
#define LEASE_RETRY_S 60

/* Metadata transactions after which the journal is cut before its
 * interval is up (checked every second). */
#define JOURNAL_EARLY_CHANGES 4096

/* Objects looked at, and deleted in one store_del_many, at a time. */
#define GC_BATCH 512

/* ---- garbage ---- */

static int gc_cb(const char *hash, void *arg)
{
	struct buf *list = arg;

	return buf_append(list, hash, BLOB_NAME_LEN + 1);
}

/* Delete objects that no block names and no durable checkpoint needs,
 * nor a state the history window keeps (journal_gc_epoch()). */
static void collect_garbage(struct mounted *mt)
{
	uint64_t durable = 0;
	struct buf list = BUF_INIT;
	char (*keys)[BLOB_DATA_KEY_LEN + 1] = calloc(GC_BATCH, sizeof(*keys));
	const char *ptrs[GC_BATCH], *hashes[GC_BATCH];
	int results[GC_BATCH];
	size_t i, n, ndel, freed = 0;

	if (mt->o->read_only || !keys ||
	    journal_gc_epoch(mt->journal, &durable) || durable == 0) {
		free(keys);
		return;
	}
	do {
		buf_reset(&list);
		if (meta_gc_list(mt->meta, durable, GC_BATCH, gc_cb, &list))
			break;
		n = list.len / (BLOB_NAME_LEN + 1);
		/* claim the batch, keep what is still unreferenced, delete
		 * it in one store request, then let uploads reuse names */
		for (i = 0, ndel = 0; i < n; i++) {
			const char *hash = (const char *)list.data +
					   i * (BLOB_NAME_LEN + 1);
			uint64_t refs = 1;

			cache_claim(mt->cache, hash);
			if (meta_object_get(mt->meta, hash, &refs) == 0 &&
			    refs == 0) {
				blob_data_key(hash, keys[ndel]);
				hashes[ndel] = hash;
				ptrs[ndel] = keys[ndel];
				ndel++;
			}
		}
		store_del_many(mt->store, ptrs, ndel, results);
		for (i = 0; i < ndel; i++) {
			if (results[i] == 0) {
				meta_gc_forget(mt->meta, hashes[i]);
				freed++;
			} else {
				log_warn("gc: cannot delete %s: %s", keys[i],
					 strerror(-results[i]));
			}
		}
		for (i = 0; i < n; i++)
			cache_unclaim(mt->cache, (const char *)list.data +
						 i * (BLOB_NAME_LEN + 1));
	} while (n == GC_BATCH);
	buf_free(&list);
	free(keys);
	if (freed)
		log_debug("gc: deleted %zu unreferenced object(s)", freed);
}

/*
 * Delete the data objects the metadata does not know: uploaded by a
 * mount that crashed before it recorded them, or recorded only in
 * metadata that never reached the store.  Runs before the cache starts
 * uploading, with the lease held, so no object is in flight.
 */
static void sweep_unknown_objects(struct mounted *mt)
{
	struct sweep_result r;
	int rc = store_sweep(mt->meta, mt->store, false, progress_report,
			     &mt->progress, &r);

	if (rc)
		log_warn("cannot remove the objects an earlier crash left in "
			 "%s: %s", mt->store->url, strerror(-rc));
	if (r.deleted)
		log_info("deleted %" PRIu64 " unreferenced object(s) of %"
			 PRIu64 " left by an earlier crash", r.deleted,
			 r.seen);
}

/* ---- what this cache saw of the store (rollback) ---- */

/*
 * CACHE_DIR/store-seen holds where the volume's metadata stood in the
 * store (struct volume_pos: newest checkpoint, journal entries) when this
 * cache last saw it: at mount, and as the journal goes up.  A mount that
 * finds the store older refuses it (check_rollback()) unless forced.
 * What it holds is never ahead of the store: it is written from what the
 * journal has in the store (journal_get_stats()), or from a listing.
 */
#define SEEN_FILE "store-seen"

/* the newest position written; by the main thread, and by the
 * maintenance thread alone while it runs */
static struct volume_pos seen_last;

static int seen_read(struct mounted *mt, struct volume_pos *p)
{
	struct buf path = BUF_INIT, text = BUF_INIT;
	unsigned long long c, e;
	int rc = buf_appendf(&path, "%s/" SEEN_FILE, mt->cache_dir);

	if (rc == 0)
		rc = read_file(buf_str(&path), &text);
	if (rc == 0 && buf_append(&text, "", 1) == 0 &&
	    sscanf((char *)text.data, "ckpt=%llu entries=%llu", &c, &e) == 2) {
		p->ckpt = c;
		p->entries = e;
	} else if (rc == 0) {
		rc = -EINVAL;
	}
	buf_free(&path);
	buf_free(&text);
	return rc;
}

/* Remember p, unless it is what was written last or older. */
static void seen_write(struct mounted *mt, const struct volume_pos *p)
{
	struct buf path = BUF_INIT, text = BUF_INIT;

	if ((p->ckpt == seen_last.ckpt && p->entries == seen_last.entries) ||
	    volume_pos_older(p, &seen_last))
		return;
	if (buf_appendf(&path, "%s/" SEEN_FILE, mt->cache_dir) == 0 &&
	    buf_appendf(&text, "ckpt=%" PRIu64 " entries=%" PRIu64 "\n",
			p->ckpt, p->entries) == 0 &&
	    write_file_atomic(buf_str(&path), text.data, text.len, 0600) == 0)
		seen_last = *p;
	buf_free(&path);
	buf_free(&text);
}

/* What the journal has put in the store so far. */
static void seen_note_journal(struct mounted *mt)
{
	struct journal_stats js;
	struct volume_pos p;

	if (!mt->journal)
		return;
	journal_get_stats(mt->journal, &js);
	p.ckpt = js.ckpt_seq;
	p.entries = js.since_entries;
	seen_write(mt, &p);
}

/*
 * After a forced rollback the journal in the store has a hole where the
 * lost entries were: the mount is to write a checkpoint (and sweep) as
 * after a crash, which the "running" marker asks of start_journal().
 */
static void force_checkpoint(struct mounted *mt)
{
	struct buf path = BUF_INIT;

	if (!mt->o->read_only &&
	    buf_appendf(&path, "%s/running", mt->cache_dir) == 0)
		write_file_atomic(buf_str(&path), "", 0, 0600);
	buf_free(&path);
}

/*
 * Refuse a store older than this cache saw it (-ESTALE, one line), unless
 * forced; then remember what the store holds now.
 */
static int check_rollback(struct mounted *mt)
{
	struct volume_pos now, seen;
	int rc = volume_pos_read(mt->store, &now);

	if (rc) {
		cli_error("cannot list the metadata of %s: %s",
			  mt->store->url, strerror(-rc));
		return rc;
	}
	memset(&seen_last, 0, sizeof(seen_last));
	if (seen_read(mt, &seen) == 0 && volume_pos_older(&now, &seen)) {
		if (!mt->o->force) {
			cli_error("the store of %s was rolled back: it holds "
				  "metadata checkpoint %" PRIu64 " and %"
				  PRIu64 " journal entries, older than the "
				  "checkpoint %" PRIu64 " and %" PRIu64
				  " entries this cache saw; mount with --force "
				  "(-o force) to take the older state",
				  mt->store->url, now.ckpt, now.entries,
				  seen.ckpt, seen.entries);
			return -ESTALE;
		}
		log_warn("the store of %s was rolled back (checkpoint %"
			 PRIu64 ", %" PRIu64 " entries; this cache saw %"
			 PRIu64 ", %" PRIu64 "): mounted anyway (--force)",
			 mt->store->url, now.ckpt, now.entries, seen.ckpt,
			 seen.entries);
		force_checkpoint(mt);
	}
	seen_write(mt, &now);
	return 0;
}

/* ---- the maintenance thread ---- */

/* When the maintenance thread does each duty next (monotonic ns), and
 * what it last saw; the thread's own. */
struct maint_clock {
	uint64_t last_change; /* meta_change_count() the store has */
	uint64_t ckpt_change; /* ... at the last checkpoint */
	uint64_t next_ckpt, next_jrnl, next_report;
	uint64_t next_lease; /* CLOCK_BOOTTIME */
	uint64_t errors_seen; /* upload errors already reported */
	bool jrnl_failing;    /* the last journal_sync() failed */
};

/* While uploads fail, say every so often what waits for the store. */
static bool report_pending(struct mounted *mt, uint64_t *errors_seen)
{
	struct journal_stats js;
	struct cache_stats cs;

	cache_get_stats(mt->cache, &cs);
	journal_get_stats(mt->journal, &js);
	if (cs.upload_errors == *errors_seen && !js.pending)
		return false;
	*errors_seen = cs.upload_errors;
	log_warn("the store %s is failing; waiting to be uploaded: %" PRIu64
		 " KiB of data, %" PRIu64 " metadata journal entries "
		 "(retrying; nothing is lost while the cache holds them)",
		 mt->store->url, cs.dirty_bytes >> 10, js.pending);
	return true;
}

/* Send the journal; on success the metadata as of change count change is
 * in the store. */
static void send_journal(struct mounted *mt, uint64_t change,
			 uint64_t *last_change, bool *failing)
{
	int rc = journal_sync(mt->journal);

	*failing = rc != 0;
	if (rc)
		log_error("journal: cannot send the metadata to the store: %s",
			  strerror(-rc));
	else
		*last_change = change;
}

/* Wait a second, or less when the journal is due sooner (a
 * journal_interval under a second is kept), or until told to stop.
 * Called with maint_lock held. */
static void maint_sleep(struct mounted *mt, uint64_t next_jrnl)
{
	struct timespec ts;
	uint64_t now, wait = 1000000000ULL;

	now = now_mono_ns();
	if (next_jrnl > now && next_jrnl - now < wait)
		wait = next_jrnl - now;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(wait % 1000000000ULL);
	ts.tv_sec += (time_t)(wait / 1000000000ULL + ts.tv_nsec /
			      1000000000L);
	ts.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(&mt->maint_cond, &mt->maint_lock, &ts);
}

/* CLOCK_BOOTTIME in ns: unlike CLOCK_MONOTONIC it goes on while the
 * machine sleeps, as the lease's expiry does in the store. */
static uint64_t now_boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * Every half of the lease's validity: renew it (invariant 3).  With one
 * PUT while the lease last written is less than three quarters of its
 * validity old, by the boot clock and by the wall clock against the
 * expiry it wrote: at least a quarter of it (3 3/4 minutes) is then
 * left, which no clock skew between hosts below that makes look expired
 * to a taker.  Older (a renewal failed, the machine slept), the lease may
 * have been taken over: it is read first (volume_lease_renew()'s check).
 */
static void maint_lease(struct mounted *mt, struct maint_clock *t)
{
	uint64_t now = now_boot_ns(), valid = mt->lease_valid_s;
	uint64_t age = now - mt->lease_written_ns;
	bool check = age >= valid * 750000000ULL ||
		     (long long)time(NULL) >= mt->lease.expires -
					      (long long)(valid / 4);
	int rc;

	if (now < t->next_lease)
		return;
	rc = volume_lease_renew(mt->store, &mt->lease, mt->lease_valid_s,
				check);
	if (rc == 0) {
		mt->lease_written_ns = now;
		t->next_lease = now + valid * 500000000ULL;
		return;
	}
	if (rc == -EBUSY) {
		/* lost: said again every half validity, not every minute */
		log_error("the volume's lease was taken over by another "
			  "mount; this mount should be unmounted");
		t->next_lease = now + valid * 500000000ULL;
		return;
	}
	log_warn("cannot renew the lease: %s", strerror(-rc));
	t->next_lease = now + MF_MIN(valid * 500000000ULL,
				     LEASE_RETRY_S * 1000000000ULL);
}

/* Every journal_interval, sooner after a burst: what changed goes to the
 * store as a journal entry. */
static void maint_journal(struct mounted *mt, struct maint_clock *t,
			  uint64_t now)
{
	uint64_t change = meta_change_count(mt->meta);

	/* a burst of changes is cut early, so that a journal entry (held
	 * twice in memory while it is framed) stays small whatever
	 * journal_interval is */
	if (change - t->last_change >= JOURNAL_EARLY_CHANGES &&
	    !t->jrnl_failing)
		t->next_jrnl = now;
	/* while the store fails, only every interval */
	if (now >= t->next_jrnl && change != t->last_change)
		send_journal(mt, change, &t->last_change, &t->jrnl_failing);
	if (now >= t->next_jrnl)
		t->next_jrnl = now + mt->o->journal_interval_ns;
}

/* Every checkpoint_interval: a checkpoint when one is due, else the
 * journal; then the garbage out. */
static void maint_checkpoint(struct mounted *mt, struct maint_clock *t,
			     uint64_t now)
{
	uint64_t change;

	if (now < t->next_ckpt)
		return;
	change = meta_change_count(mt->meta);
	if (change != t->ckpt_change &&
	    journal_checkpoint_due(mt->journal)) {
		int rc = journal_checkpoint(mt->journal);

		if (rc)
			log_error("checkpoint failed: %s", strerror(-rc));
		/* the checkpoint itself changes config */
		t->ckpt_change = meta_change_count(mt->meta);
	} else if (change != t->last_change && !t->jrnl_failing) {
		/* no checkpoint worth its cost (journal.c): the journal
		 * takes the changes to the store at least this often */
		send_journal(mt, change, &t->last_change, &t->jrnl_failing);
	}
	collect_garbage(mt);
	t->next_ckpt = now + mt->o->checkpoint_interval_ns;
}

static void *maintenance(void *arg)
{
	struct mounted *mt = arg;
	struct maint_clock t = { 0 };
	uint64_t now = now_mono_ns();

	t.last_change = meta_change_count(mt->meta);
	t.ckpt_change = t.last_change;
	t.next_ckpt = now + mt->o->checkpoint_interval_ns;
	t.next_jrnl = now + mt->o->journal_interval_ns;
	t.next_report = now;
	t.next_lease = mt->lease_written_ns +
		       mt->lease_valid_s * 500000000ULL;
	pthread_mutex_lock(&mt->maint_lock);
	while (!mt->maint_stop) {
		maint_sleep(mt, t.next_jrnl);
		if (mt->maint_stop)
			break;
		pthread_mutex_unlock(&mt->maint_lock);
		now = now_mono_ns();
		daemon_stats_tick(mt, now);
		if (!mt->o->read_only) {
			maint_lease(mt, &t);
			/* at most every 10 s, as soon as something fails */
			if (now >= t.next_report &&
			    report_pending(mt, &t.errors_seen))
				t.next_report = now + 10ULL * 1000000000ULL;
			maint_journal(mt, &t, now);
			maint_checkpoint(mt, &t, now);
			seen_note_journal(mt);
		}
		pthread_mutex_lock(&mt->maint_lock);
	}
	pthread_mutex_unlock(&mt->maint_lock);
	return NULL;
}

static void start_maintenance(struct mounted *mt)
{
	pthread_mutex_init(&mt->maint_lock, NULL);
	pthread_cond_init(&mt->maint_cond, NULL);
	if (pthread_create(&mt->maint, NULL, maintenance, mt) == 0)
		mt->maint_running = true;
}

static void stop_maintenance(struct mounted *mt)
{
	if (!mt->maint_running)
		return;
	pthread_mutex_lock(&mt->maint_lock);
	mt->maint_stop = true;
	pthread_cond_broadcast(&mt->maint_cond);
	pthread_mutex_unlock(&mt->maint_lock);
	pthread_join(mt->maint, NULL);
}

/* ---- the parent waiting for the verdict ---- */

void daemon_tell_parent(struct mounted *mt, char status)
{
	if (mt->ready_fd >= 0) {
		if (write(mt->ready_fd, &status, 1) != 1) {
			/* the parent is gone: nobody to tell */
		}
		close(mt->ready_fd);
		mt->ready_fd = -1;
	}
}

static void on_ready(void *arg, int rc)
{
	struct mounted *mt = arg;

	if (rc)
		return; /* reported by the caller */
	if (mt->ready_fd >= 0) {
		int null = open("/dev/null", O_RDWR), logfd = -1;
		struct buf p = BUF_INIT;

		/* detach from the terminal now that the mount answers; what
		 * still reaches stderr (sanitizer reports, libfuse) goes to
		 * the log */
		if (buf_appendf(&p, "%s/metafuse.log", mt->cache_dir) == 0)
			logfd = open(buf_str(&p), O_WRONLY | O_APPEND |
				     O_CREAT | O_CLOEXEC, 0600);
		buf_free(&p);
		setsid();
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(logfd >= 0 ? logfd : null, 2);
			if (null > 2)
				close(null);
		}
		if (logfd > 2)
			close(logfd);
	}
	daemon_tell_parent(mt, 0);
}

/* ---- start ---- */

/* Malloc for block-sized buffers, which come and go all the time. */
static void tune_malloc(const struct mounted *mt)
{
#ifdef __GLIBC__
	/* served from mmap they cost a page fault per 4 KiB each time (a
	 * tenth of a cold read's CPU): keep them in the heap, and keep
	 * freed heap */
	mallopt(M_MMAP_THRESHOLD, (int)MF_MIN(4ULL * mt->vol.block_size +
					       (1U << 20), 64ULL << 20));
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
#else
	(void)mt;
#endif
}

/* One mount per cache directory, whatever the store: take
 * CACHE_DIR/lock; then log to CACHE_DIR/metafuse.log unless in the
 * foreground. */
static int lock_cache_dir(struct mounted *mt)
{
	struct buf path = BUF_INIT;
	int rc = mkdir_p(mt->cache_dir, 0700);

	if (rc) {
		cli_error("cannot create cache directory %s: %s",
			  mt->cache_dir, strerror(-rc));
		return rc;
	}
	buf_appendf(&path, "%s/lock", mt->cache_dir);
	mt->lock_fd = open(buf_str(&path), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (mt->lock_fd < 0 || flock(mt->lock_fd, LOCK_EX | LOCK_NB)) {
		rc = -errno;
		cli_error("cache directory %s is in use by another metafuse "
			  "mount", mt->cache_dir);
		goto out;
	}
	if (!mt->o->foreground) {
		buf_reset(&path);
		buf_appendf(&path, "%s/metafuse.log", mt->cache_dir);
		log_set_file(buf_str(&path));
	}
out:
	buf_free(&path);
	return rc;
}

/* The volume's lease, unless read-only (invariant 3). */
static int take_lease(struct mounted *mt)
{
	const char *knob = getenv("METAFUSE_TEST_LEASE_S");
	struct buf err = BUF_INIT;
	uint64_t start = now_boot_ns();
	int rc = 0;

	mt->lease_valid_s = LEASE_VALID_S;
	if (knob && strtoul(knob, NULL, 10) >= 2)
		mt->lease_valid_s = (unsigned)strtoul(knob, NULL, 10);
	if (!mt->o->read_only) {
		rc = volume_lease_hold(mt->store, mt->lease_valid_s,
				       mt->o->force, &mt->lease, &err);
		if (rc)
			cli_error("%s", buf_str(&err));
		else
			mt->lease_written_ns = start;
	}
	buf_free(&err);
	return rc;
}

/* Does the store hold a checkpoint (latest) newer than the last one the
 * local database at db_path made durable?  0 or -errno (printed). */
static int local_db_outdated(struct mounted *mt, const char *db_path,
			     uint64_t latest, bool *outdated)
{
	struct buf local_id = BUF_INIT;
	struct meta *m;
	int rc;

	rc = meta_open(db_path, mt->vol.block_size, getuid(), getgid(), &m);
	if (rc) {
		cli_error("cannot open the local metadata %s: %s", db_path,
			  strerror(-rc));
		return rc;
	}
	if (meta_config_get(m, "volume_id", &local_id) == 0 &&
	    strcmp(buf_str(&local_id), mt->vol.id)) {
		cli_error("cache directory %s belongs to another volume (%s)",
			  mt->cache_dir, buf_str(&local_id));
		meta_close(m);
		buf_free(&local_id);
		return -EINVAL;
	}
	/* a follower's copy (follow.c) may lag the store by entries after
	 * its checkpoint: a writer starts from the store's state */
	if (!mt->o->read_only && meta_config_get_u64(m, "follower", 0)) {
		log_info("the local metadata is a follower's copy: restoring "
			 "the store's state to write");
		*outdated = true;
	}
	if (latest > meta_config_get_u64(m, "durable_seq", 0)) {
		struct meta_stats st;

		if (meta_stats(m, &st) == 0 && st.dirty_blocks)
			log_warn("the store holds newer metadata than this "
				 "cache; %" PRIu64 " block(s) written here and "
				 "never uploaded are dropped", st.dirty_blocks);
		*outdated = true;
	}
	meta_close(m);
	buf_free(&local_id);
	return 0;
}

/* What the one line of a failed restore adds to EIO: the log, which the
 * terminal does not see, names the object. */
static const char *eio_hint(int rc)
{
	return rc != -EIO ? "" :
	       " (an object damaged, failing its authentication, or the "
	       "store failing: metafuse.log in the cache directory names it)";
}

/* Replace the database at db_path with the store's state: its newest
 * checkpoint plus the journal after it. */
static int restore_db(struct mounted *mt, const char *db_path)
{
	struct buf blocks = BUF_INIT;
	uint64_t seq = 0, applied = 0;
	struct meta *m;
	int rc;

	if (isatty(2))
		fprintf(stderr, "metafuse: restoring metadata from %s ...\n",
			mt->store->url);
	rc = checkpoint_restore(mt->store, &mt->blob, db_path, &seq,
				progress_report, &mt->progress);
	if (rc) {
		progress_clear(&mt->progress);
		cli_error("cannot restore the metadata of %s: %s%s",
			  mt->store->url, strerror(-rc), eio_hint(rc));
		return rc;
	}
	/* cached blocks of the old database mean nothing to the new one */
	buf_appendf(&blocks, "%s/blocks", mt->cache_dir);
	rm_rf(buf_str(&blocks));
	buf_free(&blocks);
	rc = meta_open(db_path, mt->vol.block_size, getuid(), getgid(), &m);
	if (rc)
		return rc;
	rc = journal_replay(mt->store, &mt->blob, m, &applied,
			    progress_report, &mt->progress);
	if (rc) {
		progress_clear(&mt->progress);
		cli_error("cannot read the metadata journal of %s: %s%s",
			  mt->store->url, strerror(-rc), eio_hint(rc));
		meta_close(m);
		return rc;
	}
	if (meta_blocks_forget_dirty(m) < 0)
		rc = -EIO;
	if (!rc)
		rc = meta_config_set_u64(m, "ckpt_seq", seq);
	if (!rc)
		rc = meta_config_set_u64(m, "durable_seq", seq);
	meta_close(m);
	log_info("restored metadata checkpoint %" PRIu64 " and %" PRIu64
		 " journal entries from %s", seq, applied, mt->store->url);
	mt->restored = true;
	return rc;
}

/*
 * Bring the local database up to the store's state (newest checkpoint
 * plus journal) when it is missing, or when the store holds a checkpoint
 * newer than the last one this copy made durable: another mount wrote
 * after it.  Otherwise the local copy stays: it may hold changes the
 * store has not seen yet.
 */
static int prepare_db(struct mounted *mt, const char *db_path)
{
	uint64_t latest = 0;
	bool have_local = access(db_path, F_OK) == 0, restore = false;
	int rc;

	rc = checkpoint_latest(mt->store, &latest);
	if (rc && rc != -ENOENT) {
		cli_error("cannot list the checkpoints of %s: %s",
			  mt->store->url, strerror(-rc));
		return rc;
	}
	if (have_local) {
		rc = local_db_outdated(mt, db_path, latest, &restore);
		if (rc)
			return rc;
	} else if (latest) {
		restore = true;
	}
	return restore ? restore_db(mt, db_path) : 0;
}

/* CACHE_DIR/meta.db, brought up to date and opened. */
static int open_meta(struct mounted *mt)
{
	struct buf path = BUF_INIT;
	int rc;

	buf_appendf(&path, "%s/meta.db", mt->cache_dir);
	rc = past_wanted(mt->o) ? past_restore(mt, buf_str(&path)) :
				  prepare_db(mt, buf_str(&path));
	progress_clear(&mt->progress);
	if (rc)
		goto out;
	rc = meta_open(buf_str(&path), mt->vol.block_size, getuid(), getgid(),
		       &mt->meta);
	if (rc) {
		cli_error("cannot open the metadata %s: %s", buf_str(&path),
			  strerror(-rc));
		goto out;
	}
	meta_config_set(mt->meta, "volume_id", mt->vol.id);
out:
	buf_free(&path);
	return rc;
}

/* The store's newest checkpoint is the one this database last wrote. */
static bool checkpoint_is_current(struct mounted *mt)
{
	uint64_t latest;

	return checkpoint_latest(mt->store, &latest) == 0 &&
	       latest == meta_config_get_u64(mt->meta, "durable_seq", 0);
}

/*
 * Unless read-only: start the journal, and put this database in the store
 * before serving anything (journal.c, invariant 5) unless a clean unmount
 * already did; after a crash or a restore, delete the objects no metadata
 * names; then write the "running" marker (invariant 4).
 */
static int start_journal(struct mounted *mt)
{
	struct buf path = BUF_INIT;
	bool crashed;
	int rc;

	if (mt->o->read_only)
		return 0;
	rc = journal_open(mt->meta, mt->store, &mt->blob, mt->cache_dir,
			  &mt->journal);
	if (rc) {
		cli_error("cannot start the metadata journal: %s",
			  strerror(-rc));
		return rc;
	}
	rc = journal_set_history(mt->journal, mt->vol.history_s);
	if (rc) {
		cli_error("cannot list the metadata history of %s: %s",
			  mt->store->url, strerror(-rc));
		return rc;
	}
	buf_appendf(&path, "%s/running", mt->cache_dir);
	crashed = access(buf_str(&path), F_OK) == 0;
	if (crashed)
		log_warn("the previous mount of this cache did not end "
			 "cleanly; finishing its work");
	/* after a clean unmount the store's newest checkpoint is this
	 * database: writing it again would only cost */
	if (!crashed && !mt->restored && checkpoint_is_current(mt)) {
		journal_assume_checkpointed(mt->journal);
		rc = 0;
	} else {
		/* after a restore as large as the one just read */
		journal_set_progress(mt->journal, progress_report,
				     &mt->progress);
		rc = journal_checkpoint(mt->journal);
		journal_set_progress(mt->journal, NULL, NULL);
	}
	if (rc) {
		progress_clear(&mt->progress);
		cli_error("cannot write the metadata to %s: %s",
			  mt->store->url, strerror(-rc));
		goto out;
	}
	if (crashed || mt->restored)
		sweep_unknown_objects(mt);
	write_file_atomic(buf_str(&path), "", 0, 0600);
out:
	buf_free(&path);
	return rc;
}

/* The journal's cuts wait for the blocks that truncates cut. */
static int cut_gate(void *cache, int (*cut)(void *), void *cut_arg)
{
	return cache_cut_barrier(cache, cut, cut_arg);
}

/* The cache (its upload workers start), and the journal's cuts gated on
 * it. */
static int open_cache(struct mounted *mt)
{
	const struct mount_opts *o = mt->o;
	struct cache_config cc;
	int rc;

	memset(&cc, 0, sizeof(cc));
	cc.dir = mt->cache_dir;
	cc.block_size = mt->vol.block_size;
	cc.cache_size = o->cache_size;
	cc.max_dirty = o->max_dirty;
	cc.whole_after = o->max_dirty / 32;
	cc.writeback_delay_ns = o->writeback_delay_ns;
	cc.upload_threads = o->upload_threads;
	/* with the kernel's writeback cache, writes of one file can reach
	 * us concurrently: no inline data then */
	cc.inline_max = o->writeback_cache ? 0 : (uint32_t)o->inline_max;
	cc.patches = mt->vol.format >= VOLUME_FORMAT_PATCHES;
	cc.follower = o->follow;
	rc = cache_open(&cc, mt->store, &mt->blob, &meta_index_ops, mt->meta,
			&mt->cache);
	if (rc) {
		cli_error("cannot open the cache in %s: %s", mt->cache_dir,
			  strerror(-rc));
		return rc;
	}
	if (mt->journal)
		journal_set_gate(mt->journal, cut_gate, mt->cache);
	return 0;
}

/* `metafuse tune --history` on this mount (FS_IOC_HISTORY): the
 * descriptor rewritten, then the journal keeps the new window at once. */
static int tune_history(void *arg, uint64_t history_s, uint64_t *old_s,
			struct buf *err)
{
	static pthread_mutex_t tune_lock = PTHREAD_MUTEX_INITIALIZER;
	struct mounted *mt = arg;
	int rc;

	pthread_mutex_lock(&tune_lock);
	*old_s = mt->vol.history_s;
	rc = volume_set_history(mt->store, &mt->vol, history_s, err);
	if (rc == 0) {
		rc = journal_set_history(mt->journal, history_s);
		if (rc)
			buf_appendf(err, "the window is set, but the "
				    "checkpoints of %s cannot be listed: %s",
				    mt->store->url, strerror(-rc));
	}
	if (rc == 0)
		log_info("history window: %" PRIu64 " s (was %" PRIu64 " s)",
			 history_s, *old_s);
	pthread_mutex_unlock(&tune_lock);
	return rc;
}

/* The filesystem over meta and cache; a crash's orphans purged. */
static int open_fs(struct mounted *mt)
{
	struct fs_config fc;
	int rc;

	memset(&fc, 0, sizeof(fc));
	fc.meta = mt->meta;
	fc.cache = mt->cache;
	fc.store = mt->store;
	fc.blob = &mt->blob;
	fc.journal = mt->journal;
	fc.volume = &mt->vol;
	fc.read_only = mt->o->read_only;
	fc.writeback_cache = mt->o->writeback_cache;
	/* Attributes for a second, as the daemon moves atime on reads behind
	 * the kernel's back.  Names (and their absence) for an hour: one
	 * mount owns the volume, every change of a name passes through this
	 * kernel, which updates its cache as it does; without it, an unlink
	 * or rmdir of a name looked up more than a second before cost a
	 * LOOKUP more (one request in four of `rm` of a big tree). */
	fc.attr_timeout = 1.0;
	fc.entry_timeout = 3600.0;
	if (!mt->o->read_only) {
		fc.set_history = tune_history;
		fc.history_arg = mt;
	}
	if (mt->o->follow) {
		/* A follower's names change behind this kernel's back: the
		 * follower's thread invalidates what each changeset changed
		 * at once, but a lookup or getattr answered from the state
		 * before a changeset can reach the kernel after its
		 * invalidation; so nothing is cached longer than a
		 * follow_interval (attributes a second at most, as above). */
		fc.follow = true;
		fc.entry_timeout = (double)mt->o->follow_interval_ns / 1e9;
		fc.attr_timeout = MF_MIN(1.0, fc.entry_timeout);
	}
	rc = fs_new(&fc, &mt->fs);
	if (rc)
		return rc;
	if (!mt->o->read_only)
		fs_purge_orphans(mt->fs);
	return 0;
}

/* ---- run ---- */

/* Read by `metafuse umount`: whom to wait for, where its log is. */
static void write_registry(struct mounted *mt, const char *mountpoint)
{
	struct buf line = BUF_INIT;

	if (cli_registry_path(mountpoint, &mt->registry))
		return;
	if (buf_appendf(&line, "%d\n%s\n", (int)getpid(), mt->cache_dir) == 0)
		write_file_atomic(buf_str(&mt->registry), line.data, line.len,
				  0600);
	buf_free(&line);
}

/* Serve until unmounted, with the maintenance thread (invariant 2). */
static int run(struct mounted *mt, const char *mountpoint)
{
	struct mount_opts *o = mt->o;
	int rc;

	if (o->follow) {
		rc = follow_start(mt, o->follow_interval_ns, &mt->follower);
		if (rc) {
			cli_error("cannot start following %s: %s",
				  mt->store->url, strerror(-rc));
			return rc;
		}
	}
	start_maintenance(mt);
	write_registry(mt, mountpoint);
	if (mt->registry.len)
		daemon_stats_start(mt, buf_str(&mt->registry));
	log_info("mounting %s at %s (cache %s)", mt->store->url, mountpoint,
		 mt->cache_dir);
	/* the store said so at open, but that went to the terminal */
	if (o->store.o.no_verify_tls && !strncmp(mt->store->url, "s3://", 5))
		log_warn("TLS certificate verification is off "
			 "(-o no_verify_tls)");
	rc = fs_run(mt->fs, mountpoint, buf_str(&o->fuse_opts), on_ready, mt);
	if (rc && mt->ready_fd >= 0)
		cli_error("cannot mount at %s (see messages above)",
			  mountpoint);
	log_info("unmounted %s; uploading what is left", mountpoint);
	daemon_stats_stop(mt);
	stop_maintenance(mt);
	follow_stop(mt->follower);
	mt->follower = NULL;
	return rc;
}

/* ---- finish ---- */

static void progress_cb(uint64_t left, void *arg)
{
	log_info("unmount: %" PRIu64 " KiB left to upload", left >> 10);
}

/* After the unmount: everything to the store, then the garbage out.  0 or
 * -errno (logged). */
static int upload_all(struct mounted *mt)
{
	struct cache_stats cs;
	int rc;

	/* the kernel holds no inode any more: files deleted while open (or
	 * whose FORGET never came) go now rather than be uploaded */
	if (!mt->o->read_only)
		fs_purge_orphans(mt->fs);
	/* umount's progress line (cmd_tools.c) has its total from the
	 * first figure and its end from the last */
	cache_get_stats(mt->cache, &cs);
	if (cs.dirty_bytes)
		progress_cb(cs.dirty_bytes, NULL);
	rc = cache_flush_all(mt->cache, progress_cb, NULL);
	if (cs.dirty_bytes)
		progress_cb(0, NULL);
	/* everything to the store: a checkpoint when one is worth its cost
	 * (journal.c), else the journal */
	if (!rc && !mt->o->read_only &&
	    journal_changed_since_checkpoint(mt->journal))
		rc = journal_checkpoint_due(mt->journal) ?
			     journal_checkpoint(mt->journal) :
			     journal_sync(mt->journal);
	if (!rc)
		collect_garbage(mt);
	if (rc)
		log_error("final upload failed: %s", strerror(-rc));
	return rc;
}

/* The steps above in order, each undone by the label named after it
 * (invariant 1). */
int daemon_serve(struct mounted *mt, const char *mountpoint)
{
	struct buf path = BUF_INIT;
	int rc, rc2;

	mt->lock_fd = -1;
	daemon_stats_init(mt);
	tune_malloc(mt);
	rc = lock_cache_dir(mt);
	if (rc)
		goto out;
	/* the parent waits and prints nothing: the terminal is ours until
	 * the mount answers (on_ready() detaches); the quiet delay runs from
	 * here (the lease's pause, a slow store) */
	progress_init(&mt->progress, stderr);
	/* a past state is older than the store by definition */
	rc = past_wanted(mt->o) ? 0 : check_rollback(mt);
	if (rc) {
		progress_end(&mt->progress);
		goto out;
	}
	progress_phase(&mt->progress, "taking the volume's lease", 0, 0);
	rc = take_lease(mt);
	if (rc)
		goto out;
	progress_phase(&mt->progress, "reading the metadata", 0, 0);
	rc = open_meta(mt);
	if (rc) {
		progress_end(&mt->progress);
		goto out_lease;
	}
	rc = start_journal(mt);
	progress_end(&mt->progress);
	if (rc)
		goto out_meta;
	seen_note_journal(mt);
	rc = open_cache(mt);
	if (rc)
		goto out_meta;
	rc = open_fs(mt);
	if (rc)
		goto out_cache;

	rc = run(mt, mountpoint);
	rc2 = upload_all(mt);
	if (!rc)
		rc = rc2;
	seen_note_journal(mt);
	if (mt->registry.len)
		unlink(buf_str(&mt->registry));
	fs_free(mt->fs);
out_cache:
	if (mt->journal)
		journal_set_gate(mt->journal, NULL, NULL);
	rc2 = cache_close(mt->cache, 0);
	if (!rc)
		rc = rc2;
out_meta:
	journal_close(mt->journal);
	meta_close(mt->meta);
out_lease:
	if (!mt->o->read_only && mt->lease.owner[0])
		volume_lease_release(mt->store, mt->lease.owner);
out:
	/* a read-only mount wrote no marker, and must not remove the one a
	 * crashed read-write mount of this cache left (invariant 4) */
	if (rc == 0 && !mt->o->read_only) {
		log_info("volume %s is clean: everything is in the store",
			 mt->store->url);
		buf_appendf(&path, "%s/running", mt->cache_dir);
		unlink(buf_str(&path));
	}
	if (mt->lock_fd >= 0)
		close(mt->lock_fd);
	if (mt->cache_dir_tmp)
		rm_rf(mt->cache_dir);
	buf_free(&mt->registry);
	buf_free(&path);
	return rc;
}
