/*
 * cmd_gc.c - `metafuse gc`: delete what the volume's metadata no longer
 * needs, offline.
 *
 * A mount collects garbage itself (in the background and at unmount) and
 * removes what a crashed predecessor left; gc is for a volume that is not
 * mounted: after a crash nobody will mount again soon, or to reclaim
 * space at once.  It holds the volume's lease, so no mount can start
 * uploading meanwhile, restores the state in the store (newest checkpoint
 * plus journal) into a private directory, deletes every data object that
 * state does not reference, and writes a checkpoint of the result.  On a
 * terminal each step shows its progress (util/progress.h): the restore,
 * the objects listed, then deleted of how many, the checkpoint.
 *
 * A volume with a history window (volume/journal.c, invariant 7): the
 * objects that only past states in the window need stay; of the objects
 * no longer referenced, only those freed before the oldest checkpoint the
 * window keeps are deleted (journal_gc_epoch()), and the window's
 * retention trims the checkpoints and entries it no longer needs.
 */
#include "util/compat.h"

#include <unistd.h>

#include "blob/blob.h"
#include "cli/cli.h"
#include "cli/store_opts.h"
#include "meta/meta.h"
#include "store/store.h"
#include "util/util.h"
#include "volume/journal.h"
#include "volume/sweep.h"
#include "volume/volume.h"

static const char gc_help[] =
	"usage: metafuse gc [--force] [-o OPT[,OPT...]] STORE\n"
	"\n"
	"Deletes the objects in STORE that the volume no longer needs: data\n"
	"of deleted or overwritten files not yet collected, and objects a\n"
	"crashed mount uploaded but never recorded.  The volume must not be\n"
	"mounted (gc takes its lease).  It works on the state in the store:\n"
	"changes a crashed mount kept only in its cache directory are given\n"
	"up (mount that cache again first to keep them).  --force takes\n"
	"the lease of a mount that is dead but not yet expired.\n"
	"\n" CLI_STORE_OPTS_HELP;

enum { OPT_FORCE = 256 };

static const struct option gc_longopts[] = {
	{ "force", no_argument, NULL, OPT_FORCE },
	{ NULL, 0, NULL, 0 },
};

const struct cli_cmd cli_cmd_gc = {
	.name = "gc",
	.summary = "delete objects the volume no longer needs (unmounted)",
	.run = cmd_gc,
	.help = gc_help,
	.usage = "usage: metafuse gc [--force] [-o OPT[,OPT...]] STORE",
	.shortopts = "o:",
	.longopts = gc_longopts,
	.min_operands = 1,
	.max_operands = 1,
	.flag_status = 2,
};

/* METAFUSE_TEST_GC_PAUSE_MS: the tests' long gc, to see its lease
 * renewed while it runs. */
static void test_pause(void)
{
	const char *knob = getenv("METAFUSE_TEST_GC_PAUSE_MS");

	if (knob)
		usleep((useconds_t)(strtoul(knob, NULL, 10) * 1000));
}

static int gc_cb(const char *hash, void *arg)
{
	return buf_append(arg, hash, BLOB_NAME_LEN + 1);
}

/* With a window: delete the objects freed before its base; += r. */
static int collect_window(struct offline_vol *ov, struct journal *j,
			  struct sweep_result *r)
{
	char (*keys)[BLOB_DATA_KEY_LEN + 1] = calloc(512, sizeof(*keys));
	struct buf list = BUF_INIT;
	const char *ptrs[512];
	int results[512];
	uint64_t epoch = 0;
	uint64_t before;
	size_t i, n = 0;
	int rc = keys ? journal_gc_epoch(j, &epoch) : -ENOMEM;

	do {
		before = r->deleted;
		buf_reset(&list);
		if (rc == 0 && epoch)
			rc = meta_gc_list(ov->m, epoch, 512, gc_cb, &list);
		n = list.len / (BLOB_NAME_LEN + 1);
		for (i = 0; i < n; i++) {
			blob_data_key((const char *)list.data +
					      i * (BLOB_NAME_LEN + 1),
				      keys[i]);
			ptrs[i] = keys[i];
		}
		if (rc == 0 && n)
			rc = store_del_many(ov->s, ptrs, n, results);
		for (i = 0; rc == 0 && i < n; i++) {
			if (results[i])
				continue;
			meta_gc_forget(ov->m, (const char *)list.data +
						      i * (BLOB_NAME_LEN + 1));
			r->deleted++;
		}
	} while (rc == 0 && n == 512 && r->deleted > before);
	buf_free(&list);
	free(keys);
	return rc;
}

/*
 * In the restored state: delete every data object it does not reference
 * (with a history window, that no state in it references), then write it
 * as a new checkpoint.  0 or -1 (printed).
 */
static int collect(struct offline_vol *ov)
{
	struct store *s = ov->s;
	struct journal *j = NULL;
	struct sweep_result r;
	int rc;

	/* dirty rows of a crashed mount name nothing in the store */
	if (meta_blocks_forget_dirty(ov->m) < 0) {
		progress_end(ov->progress);
		cli_error("cannot prepare the metadata of %s", s->url);
		return -1;
	}
	rc = journal_open(ov->m, s, &ov->bc, ov->dir, &j);
	if (rc == 0 && ov->v.history_s)
		rc = journal_set_history(j, ov->v.history_s);
	if (rc == 0)
		rc = store_sweep(ov->m, s, ov->v.history_s == 0,
				 progress_report, ov->progress, &r);
	if (rc == 0 && ov->v.history_s)
		rc = collect_window(ov, j, &r);
	if (rc) {
		progress_end(ov->progress);
		cli_error("cannot collect the garbage of %s: %s", s->url,
			  strerror(-rc));
		goto out;
	}
	if (offline_lease_lost(ov)) {
		progress_end(ov->progress);
		cli_error("the lease of %s was taken over (--force) while gc "
			  "ran; not writing its checkpoint", s->url);
		rc = -EBUSY;
		goto out;
	}
	progress_phase(ov->progress, JOURNAL_WRITING, PROGRESS_BYTES, 0);
	journal_set_progress(j, progress_report, ov->progress);
	rc = journal_checkpoint(j);
	progress_end(ov->progress);
	if (rc) {
		cli_error("objects deleted, but the new checkpoint could not "
			  "be written: %s (the volume is intact; run gc "
			  "again)", strerror(-rc));
		goto out;
	}
	printf("%" PRIu64 " of %" PRIu64 " object(s) deleted (%" PRIu64
	       " KiB)\n", r.deleted, r.seen, r.bytes >> 10);
out:
	journal_close(j);
	return rc ? -1 : 0;
}

int cmd_gc(int argc, char **argv)
{
	struct buf err = BUF_INIT;
	struct offline_vol ov = { 0 };
	struct cli_store_opts so = { 0 };
	struct progress meter;
	bool force = false;
	struct cli_args a;
	int c, rc, status = 2;

	progress_init(&meter, stderr);
	cli_args_init(&a, &cli_cmd_gc, argc, argv);
	while ((c = cli_getopt(&a)) > 0) {
		if (c == OPT_FORCE)
			force = true;
		else if (c == 'o' && cli_store_opts_parse(&so, optarg, NULL))
			goto out;
	}
	if (c < 0) {
		status = a.status;
		goto out;
	}
	/* the quiet delay runs from here: the lease's pause, a slow store */
	progress_phase(&meter, "opening the volume", 0, 0);
	if (offline_open(&ov, a.operand[0], &so.o, so.passphrase_file))
		goto out;
	ov.progress = &meter;
	progress_phase(&meter, "taking the volume's lease", 0, 0);
	rc = offline_lease(&ov, force, &err);
	if (rc) {
		progress_end(&meter);
		cli_error("%s", buf_str(&err));
		goto out;
	}
	rc = offline_restore(&ov);
	if (rc == 1) {
		progress_end(&meter);
		printf("volume %s was never mounted: nothing to collect\n",
		       ov.s->url);
		status = 0;
		goto out;
	}
	test_pause();
	if (rc == 0 && collect(&ov) == 0)
		status = 0;
out:
	progress_end(&meter);
	offline_close(&ov);
	cli_store_opts_free(&so);
	buf_free(&err);
	return status;
}
