/*
 * offline.c - a volume opened without mounting it, for the tools that
 * work on the store directly (fsck, gc): the store, the volume's
 * identity, and its metadata restored from the store (the newest
 * checkpoint plus the journal after it) into a private directory that
 * offline_close removes.  An encrypted volume is unlocked at open, and
 * ov->s is then its sealed store (cli/passphrase.h).  The restore shows
 * on the command's progress meter (ov->progress), whose line is erased
 * before any message.
 */
#include "util/compat.h"

#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/passphrase.h"
#include "cli/store_opts.h"
#include "util/util.h"
#include "volume/journal.h"

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

void offline_close(struct offline_vol *ov)
{
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
