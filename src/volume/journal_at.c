/*
 * journal_at.c - the state of a volume at a past moment (`mount --at`,
 * journal_restore_at() in journal.h), from what the history window keeps
 * in the store (journal.c, invariants 7 and 8).
 *
 * Data model: the store's checkpoints with their markers' times
 * (journal_ckpts_list(): a checkpoint without a marker has time 0, as old
 * as can be, and its database says its time), and its journal entries,
 * each carrying the time it was cut (meta_journal_cs_time()).
 *
 * Invariants
 *   1. The state at a moment is the newest checkpoint whose state is at or
 *      before it, plus the entries after that checkpoint whose time is at
 *      or before it, applied in order: exactly the state after the newest
 *      entry cut at or before the moment.  Entries without a time
 *      (written before times were) apply.
 *   2. A moment that needs what the store no longer holds is an error,
 *      never another state: before the oldest checkpoint kept -ERANGE
 *      naming the oldest moment that can be had; a missing or damaged
 *      entry before the moment -EIO naming it.
 *   3. Nothing is written to the store.
 */
#include "util/compat.h"

#include <time.h>

#include "util/util.h"
#include "volume/journal.h"
#include "volume/journal_int.h"

/* fetched ahead of the one applied, as journal_replay() does */
#define AT_AHEAD 16u
#define AT_AHEAD_BYTES (64u << 20)

/* ns as UTC ISO 8601 to the millisecond, rounded up: the moment given
 * back to `mount --at` is not before it. */
static void iso_utc(int64_t ns, char *out, size_t size)
{
	int64_t ms = ns / 1000000 + (ns % 1000000 > 0);
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&t, &tm);
	n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, size - n, ".%03dZ", (int)(ms % 1000));
}

struct at_run {
	struct store *s;
	const struct blob_ctx *bc;
	const char *db_path;
	uint32_t block_size;
	int64_t at;
	struct journal_ckpt *ck; /* the store's checkpoints, ascending */
	size_t nck;
	uint64_t *jseq, *jsize;  /* its journal entries, ascending */
	size_t njl;
	struct meta *m;      /* the state restored so far */
	struct journal_at *info;
	struct buf *err;
};

/* The newest checkpoint whose state is at or before the moment, restored
 * and open in a->m; -ERANGE when every one is later. */
static int at_checkpoint(struct at_run *a)
{
	int64_t oldest = 0;
	char key[64], when[40], then[40];
	size_t i;
	int rc;

	for (i = a->nck; i-- > 0;) {
		const struct journal_ckpt *c = &a->ck[i];
		int64_t ns = c->ns;
		uint64_t seq;

		if (ns > a->at) {
			oldest = ns;
			continue;
		}
		journal_ckpt_key(c->cseq, key, sizeof(key));
		rc = journal_ckpt_restore(a->s, a->bc, c->cseq, a->db_path);
		if (rc == 0)
			rc = meta_open(a->db_path, a->block_size, 0, 0, &a->m);
		if (rc) {
			buf_appendf(a->err, "checkpoint %s of %s cannot be "
				    "read: %s", key, a->s->url, strerror(-rc));
			return rc;
		}
		/* no marker: its database says (nothing: old as can be) */
		if (ns == 0 && meta_journal_time(a->m, &seq, &ns) == 0 &&
		    ns > a->at) {
			oldest = ns;
			meta_close(a->m);
			a->m = NULL;
			continue;
		}
		a->info->ckpt_seq = c->cseq;
		a->info->time_ns = ns;
		a->info->jseq = meta_config_get_u64(a->m, "jrnl_seq", 0);
		return meta_journal_times_init(a->m);
	}
	if (a->nck == 0) {
		buf_appendf(a->err, "%s holds no metadata checkpoint (never "
			    "mounted?)", a->s->url);
		return -ENOENT;
	}
	iso_utc(a->at, when, sizeof(when));
	iso_utc(oldest, then, sizeof(then));
	buf_appendf(a->err, "%s is before the oldest state of %s kept: the "
		    "oldest moment that can be mounted is %s", when, a->s->url,
		    then);
	return -ERANGE;
}

/* One line: the entry key is missing or damaged, so the moment cannot be
 * had exactly. */
static int at_broken(struct at_run *a, const char *key, const char *what)
{
	char when[40], upto[40];

	iso_utc(a->at, when, sizeof(when));
	iso_utc(a->info->time_ns, upto, sizeof(upto));
	buf_appendf(a->err, "journal entry %s of %s is %s: the state at %s "
		    "cannot be rebuilt (the states up to %s can)", key,
		    a->s->url, what, when, upto);
	return -EIO;
}

/* Apply the entries after the checkpoint while their time is at or before
 * the moment; entries with no time (older binaries) apply. */
static int at_entries(struct at_run *a)
{
	uint64_t next = a->info->jseq + 1;
	struct buf obj = BUF_INIT, cs = BUF_INIT;
	struct store_ahead *ahead = NULL;
	char (*keys)[64] = NULL, key[64];
	const char **ptrs = NULL;
	size_t first, n = 0, i;
	int rc = 0;

	for (first = 0; first < a->njl && a->jseq[first] < next; first++)
		;
	while (first + n < a->njl && a->jseq[first + n] == next + n)
		n++;
	if (n) {
		keys = calloc(n, sizeof(*keys));
		ptrs = calloc(n, sizeof(*ptrs));
		rc = keys && ptrs ? 0 : -ENOMEM;
	}
	for (i = 0; rc == 0 && i < n; i++) {
		journal_entry_key(next + i, keys[i], sizeof(keys[i]));
		ptrs[i] = keys[i];
	}
	if (rc == 0 && n)
		rc = store_ahead_start(a->s, ptrs, a->jsize + first, n,
				       AT_AHEAD, AT_AHEAD_BYTES,
				       &ahead);
	for (i = 0; rc == 0 && i < n; i++) {
		int64_t t = 0;
		int trc;

		rc = store_ahead_next(ahead, &obj);
		if (rc) {
			buf_appendf(a->err, "journal entry %s of %s cannot be "
				    "read: %s", keys[i], a->s->url,
				    strerror(-rc));
			break;
		}
		buf_reset(&cs);
		trc = blob_decode(a->bc, obj.data, obj.len, &cs) ? -EIO :
		      meta_journal_cs_time(cs.data, cs.len, &t);
		if (trc == 0 && t > a->at)
			break; /* the state at the moment is the one so far */
		if (trc == -EIO || meta_journal_apply(a->m, cs.data, cs.len)) {
			rc = at_broken(a, keys[i], "damaged");
			break;
		}
		rc = meta_config_set_u64(a->m, "jrnl_seq", next + i);
		a->info->jseq = next + i;
		a->info->applied++;
		if (trc == 0)
			a->info->time_ns = t;
	}
	/* all applied, and more after a hole: the moment may be in it
	 * (unless it is the time of the last one applied: the missing
	 * entry is later) */
	if (rc == 0 && i == n && first + n < a->njl &&
	    a->info->time_ns < a->at) {
		journal_entry_key(next + n, key, sizeof(key));
		rc = at_broken(a, key, "missing");
	}
	store_ahead_end(ahead);
	free(keys);
	free(ptrs);
	buf_free(&obj);
	buf_free(&cs);
	return rc;
}

int journal_restore_at(struct store *s, const struct blob_ctx *bc,
		       uint32_t block_size, const char *db_path,
		       int64_t at_ns, struct journal_at *info,
		       struct buf *err)
{
	struct at_run a = { s, bc, db_path, block_size, at_ns };
	int rc;

	memset(info, 0, sizeof(*info));
	a.info = info;
	a.err = err;
	rc = journal_ckpts_list(s, &a.ck, &a.nck);
	if (rc == 0)
		rc = journal_entries_list(s, &a.jseq, &a.jsize, &a.njl);
	if (rc)
		buf_appendf(err, "cannot list the metadata of %s: %s", s->url,
			    strerror(-rc));
	if (rc == 0)
		rc = at_checkpoint(&a);
	if (rc == 0)
		rc = at_entries(&a);
	meta_close(a.m);
	free(a.ck);
	free(a.jseq);
	free(a.jsize);
	return rc;
}
