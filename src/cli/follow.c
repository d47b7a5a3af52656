/*
 * follow.c - a follower: a read-only mount (`-o ro,follow`) that shows
 * what another mount of the volume, the writer, makes durable.
 *
 * Purpose
 *   The writer sends its metadata changes to the store as journal
 *   entries (volume/journal.c), and from time to time a checkpoint,
 *   after which it deletes the entries the checkpoint covers.  The
 *   follower's thread applies the entries after its database's
 *   jrnl_seq, in order, every follow_interval; the fs hears what each
 *   changed (fs_follow_changed(): cached blocks dropped, the kernel's
 *   attributes, pages and names invalidated).
 *
 * Data model
 *   The follower's database (CACHE_DIR/meta.db) is the writer's state
 *   as of an entry: config jrnl_seq is the last entry applied,
 *   durable_seq the newest checkpoint seen.  Catching up (catch_up())
 *   restores the newest checkpoint into CACHE_DIR/follow.db, replays the
 *   entries after it there, and applies to the live database the diff
 *   that turns it into that one (meta_journal_diff()): one changeset,
 *   through the same path as an entry, so the fs hears of it alike,
 *   without a remount and while requests go on.
 *
 * Invariants
 *   1. The live database changes only by changesets applied whole
 *      (meta_journal_apply(): one transaction each), in the writer's
 *      order: each metadata call sees the writer's state as of one entry
 *      or the next, never a mixture (a read of several blocks may span
 *      an apply).
 *   2. An entry that is gone (trimmed after the writer's checkpoint, or
 *      never sent because the checkpoint took its changes) is never
 *      skipped over: the follower catches up from the checkpoint, which
 *      holds it.  A newer checkpoint is looked for only when no entry
 *      applied (one LIST more per idle round).
 *   3. An entry that does not apply (a database that differs from the
 *      state it was cut from, e.g. after a crash between an apply and
 *      its jrnl_seq) makes the next round catch up from the checkpoint,
 *      whose diff does not depend on the state it applies to.
 *   4. A store that fails leaves the follower serving what it has; the
 *      log says so once, and once more when the store answers again.
 *   5. The thread is the only writer of the live database, and calls
 *      the fs only between requests' metadata calls (never from one).
 *   6. The database says it is a follower's (config "follower"): a
 *      writer mounting this cache directory later restores the store's
 *      state instead of taking this copy, which may lag it, for its own
 *      (cli/daemon.c, local_db_outdated()).
 */
#include "util/compat.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "cli/follow.h"
#include "fs/fs.h"
#include "meta/meta.h"
#include "util/log.h"
#include "util/util.h"
#include "volume/journal.h"

struct follower {
	struct mounted *mt;
	uint64_t interval_ns;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;         /* protected by lock */
	/* the thread's own: */
	bool failing;      /* the store failed last round (logged) */
	bool apply_failed; /* an entry did not apply (invariant 3) */
	uint64_t entries, catch_ups;
	/* follow_get_stats()'s, as of the end of the last round */
	pthread_mutex_t stat_lock;
	struct follow_stats pub; /* protected by stat_lock */
};

/* The metadata's hook: what a changeset changed, to the fs (and a
 * failed apply noted). */
static void on_applied(void *arg, const struct meta_changes *ch)
{
	struct follower *f = arg;

	if (!ch) {
		f->apply_failed = true;
		return;
	}
	fs_follow_changed(f->mt->fs, ch);
}

/* Remove CACHE_DIR/follow.db and its companions. */
static void side_remove(const struct buf *side)
{
	static const char *const ext[] = { "", "-wal", "-shm", "-pending",
					   ".restoring" };
	struct buf p = BUF_INIT;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ext); i++) {
		buf_reset(&p);
		if (buf_appendf(&p, "%s%s", buf_str(side), ext[i]) == 0)
			unlink(buf_str(&p));
	}
	buf_free(&p);
}

/* The store's state (checkpoint seq, plus the entries after it) into the
 * database at side; *jseq the last entry it holds. */
static int side_build(struct follower *f, const char *side, uint64_t *seq,
		      uint64_t *jseq)
{
	struct mounted *mt = f->mt;
	uint64_t applied = 0;
	struct meta *m;
	int rc;

	rc = checkpoint_restore(mt->store, &mt->blob, side, seq, NULL, NULL);
	if (rc)
		return rc;
	rc = meta_open(side, mt->vol.block_size, getuid(), getgid(), &m);
	if (rc)
		return rc;
	rc = journal_replay(mt->store, &mt->blob, m, &applied, NULL, NULL);
	*jseq = meta_config_get_u64(m, "jrnl_seq", 0);
	meta_close(m);
	return rc;
}

/*
 * The newest checkpoint is newer than this database's (or an entry did
 * not apply): turn the live database into the store's state by one diff
 * (invariant 2).
 */
static int catch_up(struct follower *f)
{
	struct mounted *mt = f->mt;
	struct buf side = BUF_INIT, cs = BUF_INIT;
	uint64_t seq = 0, jseq = 0;
	uint64_t mine = meta_config_get_u64(mt->meta, "jrnl_seq", 0);
	int rc = buf_appendf(&side, "%s/follow.db", mt->cache_dir);

	if (rc)
		goto out;
	side_remove(&side);
	rc = side_build(f, buf_str(&side), &seq, &jseq);
	if (rc)
		goto out;
	if (jseq > mine || f->apply_failed) {
		rc = meta_journal_diff(mt->meta, buf_str(&side), &cs);
		if (!rc && cs.len)
			rc = meta_journal_apply(mt->meta, cs.data, cs.len);
		if (!rc)
			rc = meta_config_set_u64(mt->meta, "jrnl_seq", jseq);
		if (!rc) {
			f->catch_ups++;
			f->apply_failed = false;
			log_info("follow: caught up with checkpoint %" PRIu64
				 " and the journal to entry %" PRIu64
				 " (this copy was at entry %" PRIu64 ")",
				 seq, jseq, mine);
		}
	}
	/* the checkpoint this copy is as new as (a remount restores only
	 * a newer one) */
	if (!rc)
		rc = meta_config_set_u64(mt->meta, "durable_seq", seq);
	if (!rc)
		rc = meta_config_set_u64(mt->meta, "ckpt_seq", seq);
out:
	side_remove(&side);
	buf_free(&side);
	buf_free(&cs);
	return rc;
}

/* One round: new entries, or the newest checkpoint when they are gone
 * (invariant 2).  0 or the store's -errno. */
static int follow_round(struct follower *f)
{
	struct mounted *mt = f->mt;
	uint64_t applied = 0, latest = 0;
	int rc;

	rc = journal_replay(mt->store, &mt->blob, mt->meta, &applied, NULL,
			    NULL);
	f->entries += applied;
	if (rc && rc != -ENOENT)
		return rc;
	if (applied && !rc && !f->apply_failed)
		return 0;
	/* nothing new, or a gap: is there a newer checkpoint? */
	rc = checkpoint_latest(mt->store, &latest);
	if (rc == -ENOENT)
		return 0; /* a volume never checkpointed: nothing to have */
	if (rc)
		return rc;
	if (latest > meta_config_get_u64(mt->meta, "durable_seq", 0) ||
	    f->apply_failed) {
		rc = catch_up(f);
		/* the writer replaced the checkpoint (or trimmed an entry
		 * after it) while it was read: once more, at the newest */
		if (rc == -ENOENT)
			rc = catch_up(f);
		if (rc == -ENOENT) {
			log_debug("follow: the writer's checkpoints move "
				  "faster than this follower reads them; again "
				  "at the next round");
			rc = 0;
		}
	}
	return rc;
}

/* Wait interval_ns or until told to stop (lock held). */
static void follow_sleep(struct follower *f)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(f->interval_ns % 1000000000ULL);
	ts.tv_sec += (time_t)(f->interval_ns / 1000000000ULL +
			      (uint64_t)ts.tv_nsec / 1000000000ULL);
	ts.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(&f->cond, &f->lock, &ts);
}

/* Where this copy stands, for follow_get_stats(). */
static void publish(struct follower *f)
{
	struct follow_stats st = { f->entries, f->catch_ups, 0, 0, 0,
				   f->failing };
	uint64_t seq = 0;

	st.jseq = meta_config_get_u64(f->mt->meta, "jrnl_seq", 0);
	if (meta_journal_time(f->mt->meta, &seq, &st.state_ns) ||
	    seq != st.jseq)
		st.state_ns = 0; /* an entry of an older metafuse */
	st.round_ns = (int64_t)now_real_ns();
	pthread_mutex_lock(&f->stat_lock);
	f->pub = st;
	pthread_mutex_unlock(&f->stat_lock);
}

void follow_get_stats(struct follower *f, struct follow_stats *out)
{
	pthread_mutex_lock(&f->stat_lock);
	*out = f->pub;
	pthread_mutex_unlock(&f->stat_lock);
}

/* A round, and what its failure or the store's return says (invariant
 * 4). */
static void follow_once(struct follower *f)
{
	int rc = follow_round(f);

	if (rc && !f->failing)
		log_warn("follow: cannot read the metadata of %s: %s; serving "
			 "what this mount has until it answers",
			 f->mt->store->url, strerror(-rc));
	else if (!rc && f->failing)
		log_info("follow: the store %s answers again",
			 f->mt->store->url);
	f->failing = rc != 0;
	publish(f);
}

static void *follow_main(void *arg)
{
	struct follower *f = arg;

	pthread_mutex_lock(&f->lock);
	while (!f->stop) {
		follow_sleep(f);
		if (f->stop)
			break;
		pthread_mutex_unlock(&f->lock);
		follow_once(f);
		pthread_mutex_lock(&f->lock);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

int follow_start(struct mounted *mt, uint64_t interval_ns,
		 struct follower **out)
{
	struct follower *f = calloc(1, sizeof(*f));
	int rc;

	if (!f)
		return -ENOMEM;
	f->mt = mt;
	f->interval_ns = interval_ns;
	/* a writer mounting this cache later must not take this copy,
	 * which may lag the store, for its own (daemon.c) */
	rc = meta_config_set_u64(mt->meta, "follower", 1);
	if (rc) {
		free(f);
		return rc;
	}
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	pthread_mutex_init(&f->stat_lock, NULL);
	meta_journal_on_apply(mt->meta, on_applied, f);
	/* the first round before the mount answers: it shows the store's
	 * state from the start */
	follow_once(f);
	rc = -pthread_create(&f->thread, NULL, follow_main, f);
	if (rc) {
		log_error("follow: cannot start the thread: %s",
			  strerror(-rc));
		meta_journal_on_apply(mt->meta, NULL, NULL);
		pthread_mutex_destroy(&f->lock);
		pthread_cond_destroy(&f->cond);
		pthread_mutex_destroy(&f->stat_lock);
		free(f);
		return rc;
	}
	*out = f;
	return 0;
}

void follow_stop(struct follower *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->thread, NULL);
	meta_journal_on_apply(f->mt->meta, NULL, NULL);
	log_info("follow: %" PRIu64 " journal entries applied, %" PRIu64
		 " catch-up(s) from a checkpoint", f->entries, f->catch_ups);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->stat_lock);
	free(f);
}
