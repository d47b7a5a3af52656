/*
 * offline.c - a volume opened without mounting it, for the tools that
 * work on the store directly (fsck, gc): the store, the volume's
 * identity, and its metadata restored from the store (the newest
 * checkpoint plus the journal after it) into a private directory that
 * offline_close removes.  An encrypted volume is unlocked at open, and
 * ov->s is then its sealed store (cli/passphrase.h).  The restore shows
 * on the command's progress meter (ov->progress), whose line is erased
 * before any message.
 *
 * A command that writes (gc, fsck --repair) holds the volume's lease
 * while it works (offline_lease()), as a mount does, and a thread of its
 * own renews it: a sweep of a large volume on a slow store can outlast
 * any fixed validity, after which a mount elsewhere would take the
 * volume and the sweep would delete the objects it uploads.  The
 * renewal reads the lease first (a command is rare; one GET more is
 * nothing), so a takeover with --force is noticed: offline_lease_lost().
 */
#include "util/compat.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/passphrase.h"
#include "cli/store_opts.h"
#include "util/log.h"
#include "util/util.h"
#include "volume/journal.h"

/* How long each write of an offline command's lease is valid. */
#define OFFLINE_LEASE_S 60

int offline_open(struct offline_vol *ov, const char *loc,
		 const struct store_options *o, const char *pass_file)
{
	struct buf err = BUF_INIT;
	int rc = -1;

	memset(ov, 0, sizeof(*ov));
	ov->bc.zstd_level = 3;
	if (blob_global_init())
		goto out;
	if (store_open_opts(loc, 0, o, &ov->s, &err)) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	if (cli_test_store_wrap(&ov->s))
		goto out;
	if (volume_load(ov->s, &ov->v, &err)) {
		cli_error("%s", buf_str(&err));
		goto out;
	}
	if (cli_volume_unlock(&ov->s, &ov->v, pass_file))
		goto out;
	memcpy(ov->bc.hash_key, ov->v.hash_key, BLOB_KEY_BYTES);
	ov->bc.names = ov->v.names;
	rc = 0;
out:
	buf_free(&err);
	return rc;
}

/* The meter's line erased, for a message (cli_error) on a clean line. */
static void offline_clear(struct offline_vol *ov)
{
	if (ov->progress)
		progress_clear(ov->progress);
}

int offline_restore(struct offline_vol *ov)
{
	progress_fn *pf = ov->progress ? progress_report : NULL;
	struct buf db = BUF_INIT;
	int rc;

	snprintf(ov->dir, sizeof(ov->dir), "/tmp/metafuse-offline-XXXXXX");
	if (!mkdtemp(ov->dir)) {
		offline_clear(ov);
		cli_error("mkdtemp: %s", strerror(errno));
		ov->dir[0] = '\0';
		return -1;
	}
	if (buf_appendf(&db, "%s/meta.db", ov->dir)) {
		offline_clear(ov);
		cli_error("out of memory");
		return -1;
	}
	if (ov->progress)
		progress_phase(ov->progress, "restoring the metadata", 0, 0);
	rc = checkpoint_restore(ov->s, &ov->bc, buf_str(&db), &ov->seq, pf,
				ov->progress);
	if (rc == -ENOENT) {
		rc = 1;
		goto out;
	}
	if (rc) {
		offline_clear(ov);
		cli_error("cannot read the newest checkpoint of %s: %s",
			  ov->s->url, strerror(-rc));
		goto fail;
	}
	rc = meta_open(buf_str(&db), ov->v.block_size, 0, 0, &ov->m);
	if (rc) {
		offline_clear(ov);
		cli_error("the newest checkpoint of %s is not a valid "
			  "database", ov->s->url);
		goto fail;
	}
	rc = journal_replay(ov->s, &ov->bc, ov->m, &ov->applied, pf,
			    ov->progress);
	if (rc) {
		offline_clear(ov);
		cli_error("cannot read the metadata journal of %s: %s",
			  ov->s->url, strerror(-rc));
		goto fail;
	}
	goto out;
fail:
	rc = -1;
out:
	buf_free(&db);
	return rc;
}

/* ---- the lease ---- */

static void *renew_main(void *arg)
{
	struct offline_vol *ov = arg;
	struct timespec ts;

	pthread_mutex_lock(&ov->lease_lock);
	while (!ov->lease_stop) {
		int rc;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)(ov->lease_valid_s / 3);
		ts.tv_nsec += (long)(ov->lease_valid_s % 3) * 333333333L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		if (pthread_cond_timedwait(&ov->lease_cond, &ov->lease_lock,
					   &ts) != ETIMEDOUT ||
		    ov->lease_stop)
			continue;
		pthread_mutex_unlock(&ov->lease_lock);
		rc = volume_lease_renew(ov->s, &ov->lease, ov->lease_valid_s,
					true);
		pthread_mutex_lock(&ov->lease_lock);
		if (rc == -EBUSY) {
			log_error("the volume's lease was taken over by "
				  "another mount (--force) while this command "
				  "ran");
			ov->lease_lost = true;
			break;
		}
		if (rc)
			log_warn("cannot renew the volume's lease: %s",
				 strerror(-rc));
	}
	pthread_mutex_unlock(&ov->lease_lock);
	return NULL;
}

int offline_lease(struct offline_vol *ov, bool force, struct buf *err)
{
	const char *knob = getenv("METAFUSE_TEST_LEASE_S");
	int rc;

	ov->lease_valid_s = OFFLINE_LEASE_S;
	if (knob && strtoul(knob, NULL, 10) >= 3)
		ov->lease_valid_s = (unsigned)strtoul(knob, NULL, 10);
	rc = volume_lease_hold(ov->s, ov->lease_valid_s, force, &ov->lease,
			       err);
	if (rc)
		return rc;
	pthread_mutex_init(&ov->lease_lock, NULL);
	pthread_cond_init(&ov->lease_cond, NULL);
	ov->lease_stop = ov->lease_lost = false;
	ov->leased = true;
	if (pthread_create(&ov->renewer, NULL, renew_main, ov)) {
		volume_lease_release(ov->s, ov->lease.owner);
		pthread_mutex_destroy(&ov->lease_lock);
		pthread_cond_destroy(&ov->lease_cond);
		ov->leased = false;
		buf_appendf(err, "cannot start a thread to renew the lease");
		return -EAGAIN;
	}
	return 0;
}

bool offline_lease_lost(struct offline_vol *ov)
{
	bool lost;

	if (!ov->leased)
		return false;
	pthread_mutex_lock(&ov->lease_lock);
	lost = ov->lease_lost;
	pthread_mutex_unlock(&ov->lease_lock);
	return lost;
}

void offline_unlease(struct offline_vol *ov)
{
	bool lost;

	if (!ov->leased)
		return;
	pthread_mutex_lock(&ov->lease_lock);
	ov->lease_stop = true;
	pthread_cond_broadcast(&ov->lease_cond);
	pthread_mutex_unlock(&ov->lease_lock);
	pthread_join(ov->renewer, NULL);
	lost = ov->lease_lost;
	pthread_mutex_destroy(&ov->lease_lock);
	pthread_cond_destroy(&ov->lease_cond);
	ov->leased = false;
	if (!lost)
		volume_lease_release(ov->s, ov->lease.owner);
}

void offline_close(struct offline_vol *ov)
{
	offline_unlease(ov);
	meta_close(ov->m);
	ov->m = NULL;
	if (ov->dir[0])
		rm_rf(ov->dir);
	ov->dir[0] = '\0';
	cli_test_store_report(ov->s);
	store_close(ov->s);
	ov->s = NULL;
	volume_wipe(&ov->v);
	explicit_bzero(ov->bc.hash_key, sizeof(ov->bc.hash_key));
}
