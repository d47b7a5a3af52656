/*
 * cmd_fsck.c - `metafuse fsck`: check a volume as the store holds it.
 *
 * fsck works on a private copy of the volume's state in the store (newest
 * checkpoint plus journal, offline.c): it never touches a mounted
 * volume's live database.  Then:
 *   1. meta_fsck() checks the metadata itself (link counts, orphans,
 *      dangling entries, reference counts) and repairs it with --repair;
 *   2. one listing of data/ (struct listed) tells which referenced objects
 *      are missing; --verify-data fetches each referenced object, FSCK_AHEAD
 *      at a time, and checks it against its name (verify_batch), noting
 *      what each patch sits on (struct seen);
 *   3. with --verify-data, every patched block's chain is checked against
 *      those notes (chain_cb): no object is fetched twice.
 * With --repair and problems found it writes the repaired copy back as a
 * new checkpoint, under the volume's lease (the volume must not be
 * mounted).
 * On a terminal each step shows its progress (util/progress.h, struct
 * fsck_ctx's meter), erased before each line of the report.
 *
 * Exit status: 0 clean, 1 problems found, 2 error.
 */
#include "util/compat.h"

#include <stdarg.h>
#include <unistd.h>

#include "blob/blob.h"
#include "blob/patch.h"
#include "cli/cli.h"
#include "cli/store_opts.h"
#include "meta/meta.h"
#include "store/store.h"
#include "util/util.h"
#include "volume/journal.h"
#include "volume/volume.h"

static const char fsck_help[] =
	"usage: metafuse fsck [--repair] [--verify-data] [-o OPT[,OPT...]] "
	"STORE\n"
	"\n"
	"Checks the volume in STORE as the store holds it (newest metadata\n"
	"checkpoint plus journal): link counts, orphans, dangling entries,\n"
	"reference counts, and that every referenced object exists.\n"
	"--verify-data downloads every referenced object and checks its\n"
	"checksum and name, and that every block's patches sit on the\n"
	"objects below them.  --repair fixes what it can and writes a new\n"
	"checkpoint (the volume must not be mounted).\n"
	"Exit status: 0 clean, 1 problems found, 2 error.\n"
	"\n" CLI_STORE_OPTS_HELP;

enum { OPT_REPAIR = 256, OPT_VERIFY_DATA };

static const struct option fsck_longopts[] = {
	{ "repair", no_argument, NULL, OPT_REPAIR },
	{ "verify-data", no_argument, NULL, OPT_VERIFY_DATA },
	{ NULL, 0, NULL, 0 },
};

const struct cli_cmd cli_cmd_fsck = {
	.name = "fsck",
	.summary = "check a volume (and repair it)",
	.run = cmd_fsck,
	.help = fsck_help,
	.usage = "usage: metafuse fsck [--repair] [--verify-data] "
		 "[-o OPT[,OPT...]] STORE",
	.shortopts = "o:",
	.longopts = fsck_longopts,
	.min_operands = 1,
	.max_operands = 1,
	.flag_status = 2,
};

/*
 * The store's data objects, from one listing (a request per 1,000 keys on
 * S3, where a HEAD per referenced object cost a round trip each): binary
 * names, sorted, with their sizes.
 */
struct listed {
	uint8_t name[BLOB_HASH_BYTES];
	uint64_t size;
};

/* Referenced objects whose content --verify-data fetches together, up to
 * FSCK_AHEAD at a time and FSCK_AHEAD_BYTES waiting (store_ahead). */
#define FSCK_BATCH 1024u
#define FSCK_AHEAD 8u
#define FSCK_AHEAD_BYTES (64u << 20)

/* --verify-data: what a verified object said of itself, for the chain
 * check (only patches and damaged objects are noted) */
struct seen {
	uint8_t name[BLOB_HASH_BYTES];
	uint8_t below[BLOB_HASH_BYTES]; /* a patch's object below */
	char kind; /* 'p' patch, 'x' not a valid patch, 'd' damaged */
};

struct fsck_ctx {
	struct store *s;
	struct meta *m;
	const struct blob_ctx *bc;
	uint32_t block_size;
	bool verify;
	struct buf obj, plain;
	struct listed *have; /* the listing, sorted by name */
	size_t nhave, cap;
	/* --verify-data: the batch's keys ("data/ab/" + name) and sizes */
	char (*bkey)[BLOB_DATA_KEY_LEN + 1];
	const char **bptr;
	uint64_t *bsize;
	size_t nbatch;
	uint64_t checked, missing, damaged, total, bytes, broken;
	struct progress meter; /* on the terminal: the restore, the listing,
				* the objects checked */
	struct seen *seen; /* sorted by name before the chain check */
	size_t nseen, capseen;
};

/* A line of the report (stdout), on a line of its own when stdout and
 * the meter share a terminal. */
static void report(struct fsck_ctx *f, const char *fmt, ...) MF_PRINTF(2, 3);

static void report(struct fsck_ctx *f, const char *fmt, ...)
{
	va_list ap;

	progress_clear(&f->meter);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	if (f->meter.on)
		fflush(stdout); /* before the meter draws again */
}

struct report_arg {
	struct fsck_ctx *f;
	uint64_t n;
};

static void report_line(const char *line, void *arg)
{
	struct report_arg *r = arg;

	r->n++;
	report(r->f, "%s\n", line);
}

static int listed_cmp(const void *a, const void *b)
{
	return memcmp(a, b, BLOB_HASH_BYTES);
}

static int list_data_cb(const char *key, uint64_t size, void *arg)
{
	struct fsck_ctx *f = arg;
	const char *name = strrchr(key, '/');

	name = name ? name + 1 : key;
	if (strlen(name) != BLOB_NAME_LEN)
		return 0; /* not an object of ours: gc's business */
	if (f->nhave == f->cap) {
		size_t ncap = f->cap ? f->cap * 2 : 1024;
		struct listed *p = realloc(f->have, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		f->have = p;
		f->cap = ncap;
	}
	if (hex_decode(name, f->have[f->nhave].name, BLOB_HASH_BYTES))
		return 0;
	f->have[f->nhave++].size = size;
	progress_update(&f->meter, f->nhave);
	return 0;
}

static int list_data(struct fsck_ctx *f)
{
	int rc;

	progress_phase(&f->meter, "listing objects", 0, 0);
	rc = store_list(f->s, "data/", list_data_cb, f);

	/* qsort and bsearch want a base even for no elements */
	if (rc == 0 && f->nhave)
		qsort(f->have, f->nhave, sizeof(*f->have), listed_cmp);
	return rc;
}

/* Note what object name (hex) is: damaged ('d'), or a patch by its
 * plaintext's magic, on which object ('p'), or malformed ('x'). */
static int note_seen(struct fsck_ctx *f, const char *name, bool damaged)
{
	struct patch_view v;
	struct seen *s;

	if (!damaged && !patch_has_magic(f->plain.data, f->plain.len))
		return 0; /* a block: the chain check needs nothing of it */
	if (f->nseen == f->capseen) {
		size_t ncap = f->capseen ? f->capseen * 2 : 256;
		struct seen *p = realloc(f->seen, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		f->seen = p;
		f->capseen = ncap;
	}
	s = &f->seen[f->nseen];
	if (hex_decode(name, s->name, sizeof(s->name)))
		return 0;
	memset(s->below, 0, sizeof(s->below));
	if (damaged) {
		s->kind = 'd';
	} else if (patch_parse(f->plain.data, f->plain.len, NULL,
			       f->block_size, &v)) {
		s->kind = 'x';
	} else {
		s->kind = 'p';
		memcpy(s->below, v.below, sizeof(s->below));
	}
	f->nseen++;
	return 0;
}

static void report_missing(struct fsck_ctx *f, const char *key)
{
	report(f, "object %s is referenced but missing from the store\n",
	       key);
	f->missing++;
}

/* A get of key failed with EIO: true when the store still answers for
 * it (a HEAD), so that it is the object that is damaged, not the store
 * that failed. */
static bool unreadable_but_there(struct fsck_ctx *f, const char *key)
{
	uint64_t size;

	return store_head(f->s, key, &size) == 0;
}

/* Fetch the batch's objects (ahead of the one checked) and check each
 * against its name. */
static int verify_batch(struct fsck_ctx *f)
{
	struct store_ahead *a = NULL;
	const char *name;
	bool damaged;
	size_t i;
	int rc;

	if (f->nbatch == 0)
		return 0;
	rc = store_ahead_start(f->s, f->bptr, f->bsize, f->nbatch,
			       FSCK_AHEAD, FSCK_AHEAD_BYTES, &a);
	for (i = 0; rc == 0 && i < f->nbatch; i++) {
		buf_reset(&f->plain);
		rc = store_ahead_next(a, &f->obj);
		if (rc == -ENOENT) { /* gone since the listing */
			report_missing(f, f->bkey[i]);
			rc = 0;
			continue;
		}
		name = f->bkey[i] + BLOB_DATA_KEY_LEN - BLOB_NAME_LEN;
		if (rc == -EIO && unreadable_but_there(f, f->bkey[i])) {
			/* an encrypted volume's object that fails its
			 * authentication (volume/sealed.c) */
			rc = 0;
			damaged = true;
		} else if (rc) {
			break;
		} else {
			damaged = blob_decode_named(f->bc, name, f->obj.data,
						    f->obj.len, &f->plain) != 0;
		}
		if (damaged) {
			report(f, "object %s is damaged (checksum or name "
			       "does not match its content)\n", f->bkey[i]);
			f->damaged++;
		}
		rc = note_seen(f, name, damaged);
		f->bytes += f->obj.len;
		f->checked++;
		progress_update_bytes(&f->meter, f->checked, f->bytes);
	}
	store_ahead_end(a);
	f->nbatch = 0;
	return rc;
}

static int object_cb(const char *hash, uint64_t refs, void *arg)
{
	struct fsck_ctx *f = arg;
	char key[BLOB_DATA_KEY_LEN + 1];
	const struct listed *l = NULL;
	uint8_t bin[BLOB_HASH_BYTES];

	if (refs == 0)
		return 0;
	blob_data_key(hash, key);
	if (f->nhave && strlen(hash) == BLOB_NAME_LEN &&
	    hex_decode(hash, bin, sizeof(bin)) == 0)
		l = bsearch(bin, f->have, f->nhave, sizeof(*f->have),
			    listed_cmp);
	if (!l) {
		report_missing(f, key);
		f->checked++;
		return 0;
	}
	if (!f->verify) {
		f->bytes += l->size;
		f->checked++;
		progress_update_bytes(&f->meter, f->checked, f->bytes);
		return 0;
	}
	memcpy(f->bkey[f->nbatch], key, sizeof(key));
	f->bptr[f->nbatch] = f->bkey[f->nbatch];
	f->bsize[f->nbatch] = l->size;
	return ++f->nbatch == FSCK_BATCH ? verify_batch(f) : 0;
}

static int seen_cmp(const void *a, const void *b)
{
	return memcmp(a, b, BLOB_HASH_BYTES);
}

/*
 * With --verify-data: that each patch of a block's chain sits on the
 * object below it (blob/patch.h), as its reader will require, from what
 * verifying each object noted of it (note_seen()): no object is fetched
 * twice.  A patch missing or damaged was reported then and is passed over
 * here.
 */
static int chain_cb(uint64_t ino, uint64_t idx, void *arg)
{
	struct fsck_ctx *f = arg;
	struct patch_chain *ch = malloc(sizeof(*ch));
	uint8_t name[BLOB_HASH_BYTES], below[BLOB_HASH_BYTES];
	const struct seen *s;
	unsigned k;
	int rc;

	if (!ch)
		return -ENOMEM;
	rc = meta_block_chain(f->m, ino, idx, ch);
	/* no base, or a chain too long to read (-EIO): meta_fsck() reports
	 * those (check_patches, meta/meta_fsck.c) */
	if (rc == -ENOENT || rc == -EIO || (rc == 0 && !ch->base[0]))
		rc = 0;
	else if (rc == 0)
		for (k = 0; k < ch->n; k++) {
			const char *bname = k ? ch->patch[k - 1] : ch->base;

			if (hex_decode(ch->patch[k], name, sizeof(name)) ||
			    hex_decode(bname, below, sizeof(below)))
				break; /* not a name: fsck said so */
			s = f->nseen ? bsearch(name, f->seen, f->nseen,
					       sizeof(*f->seen), seen_cmp) :
				       NULL;
			if (s && s->kind == 'd')
				break; /* damaged: reported */
			if (!s && (!f->nhave ||
				   !bsearch(name, f->have, f->nhave,
					    sizeof(*f->have), listed_cmp)))
				break; /* missing: reported */
			if (!s || s->kind != 'p' ||
			    memcmp(s->below, below, sizeof(below))) {
				char key[BLOB_DATA_KEY_LEN + 1];

				blob_data_key(ch->patch[k], key);
				report(f, "block %" PRIu64 " of inode %" PRIu64
				       ": patch %u of %u (%s) does not sit on "
				       "the object below it (%s): the block "
				       "cannot be read (not repairable)\n",
				       idx, ino, k + 1, ch->n, key, bname);
				f->broken++;
				break;
			}
		}
	free(ch);
	return rc;
}

/*
 * Every referenced object: in the store's listing, and with --verify-data
 * fetched and checked, then each patched block's chain.  Problems are
 * counted in f; 0 or -errno when the check itself could not run.
 */
static int check_objects(struct fsck_ctx *f, struct meta *m)
{
	struct meta_stats st = { 0 };
	int rc;

	f->bkey = calloc(FSCK_BATCH, sizeof(*f->bkey));
	f->bptr = calloc(FSCK_BATCH, sizeof(*f->bptr));
	f->bsize = calloc(FSCK_BATCH, sizeof(*f->bsize));
	rc = f->bkey && f->bptr && f->bsize ? 0 : -ENOMEM;
	if (rc == 0)
		rc = list_data(f);
	if (rc == 0) {
		/* the totals are the referenced objects' (a guess only
		 * when the metadata is damaged: the meter caps at 100%) */
		meta_stats(m, &st);
		progress_phase(&f->meter, f->verify ? "verifying objects" :
						      "checking objects",
			       PROGRESS_ITEM_BYTES, st.objects);
		progress_set_total_bytes(&f->meter, st.object_bytes);
		rc = meta_objects(m, object_cb, f);
	}
	if (rc == 0)
		rc = verify_batch(f);
	progress_end(&f->meter);
	if (rc == 0 && f->verify) {
		f->m = m;
		if (f->nseen)
			qsort(f->seen, f->nseen, sizeof(*f->seen), seen_cmp);
		rc = meta_blocks_patched(m, chain_cb, f);
	}
	return rc;
}

static void fsck_ctx_free(struct fsck_ctx *f)
{
	buf_free(&f->obj);
	buf_free(&f->plain);
	free(f->have);
	free(f->seen);
	free(f->bkey);
	free(f->bptr);
	free(f->bsize);
}

/* --repair: the repaired database to the store as a new checkpoint, under
 * the volume's lease.  0 or -1 (printed). */
static int write_repair(struct offline_vol *ov)
{
	struct buf err = BUF_INIT;
	struct journal *jr = NULL;
	int rc;

	rc = offline_lease(ov, false, &err);
	if (rc) {
		cli_error("%s; not writing the repair", buf_str(&err));
		goto out;
	}
	rc = journal_open(ov->m, ov->s, &ov->bc, ov->dir, &jr);
	if (rc == 0) {
		progress_phase(ov->progress, JOURNAL_WRITING, PROGRESS_BYTES,
			       0);
		journal_set_progress(jr, progress_report, ov->progress);
		rc = journal_checkpoint(jr);
		progress_end(ov->progress);
	}
	offline_unlease(ov);
	if (rc) {
		cli_error("cannot write the repaired checkpoint: %s",
			  strerror(-rc));
		goto out;
	}
	printf("repaired metadata written as a new checkpoint\n");
out:
	journal_close(jr);
	buf_free(&err);
	return rc ? -1 : 0;
}

int cmd_fsck(int argc, char **argv)
{
	struct fsck_ctx f = { 0 };
	struct offline_vol ov = { 0 };
	struct cli_store_opts so = { 0 };
	bool repair = false;
	struct report_arg problems = { &f, 0 };
	struct cli_args a;
	int c, rc, status = 2;

	progress_init(&f.meter, stderr);
	cli_args_init(&a, &cli_cmd_fsck, argc, argv);
	while ((c = cli_getopt(&a)) > 0) {
		if (c == OPT_REPAIR)
			repair = true;
		else if (c == OPT_VERIFY_DATA)
			f.verify = true;
		else if (c == 'o' && cli_store_opts_parse(&so, optarg, NULL))
			goto out;
	}
	if (c < 0) {
		status = a.status;
		goto out;
	}
	/* the quiet delay runs from here */
	progress_phase(&f.meter, "opening the volume", 0, 0);
	if (offline_open(&ov, a.operand[0], &so.o, so.passphrase_file))
		goto out;
	f.s = ov.s;
	ov.progress = &f.meter;
	rc = offline_restore(&ov);
	if (rc == 1) {
		progress_end(&f.meter);
		printf("volume %s has no metadata checkpoint yet (never "
		       "mounted): nothing to check\n", f.s->url);
		status = 0;
		goto out;
	}
	if (rc)
		goto out;
	f.bc = &ov.bc;
	progress_phase(&f.meter, "checking the metadata", 0, 0);
	rc = meta_fsck(ov.m, repair, report_line, &problems);
	if (rc < 0) {
		progress_end(&f.meter);
		cli_error("fsck failed: %s", strerror(-rc));
		goto out;
	}
	f.block_size = ov.v.block_size;
	rc = check_objects(&f, ov.m);
	if (rc) {
		cli_error("cannot check objects in %s: %s", f.s->url,
			  strerror(-rc));
		goto out;
	}
	problems.n += f.missing + f.damaged + f.broken;
	printf("checkpoint %" PRIu64 " + %" PRIu64 " journal entries: %"
	       PRIu64 " object(s) %s (%" PRIu64 " MiB), %" PRIu64
	       " problem(s)\n", ov.seq, ov.applied, f.checked,
	       f.verify ? "verified" : "checked", f.bytes >> 20, problems.n);
	if (repair && problems.n && write_repair(&ov))
		goto out;
	status = problems.n ? 1 : 0;
out:
	progress_end(&f.meter);
	fsck_ctx_free(&f);
	offline_close(&ov);
	cli_store_opts_free(&so);
	return status;
}
