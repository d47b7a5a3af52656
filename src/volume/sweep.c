/*
 * sweep.c - delete the data objects in the store that the metadata does
 * not need (see sweep.h).
 */
#include "util/compat.h"

#include "util/log.h"
#include "volume/sweep.h"

/* keys handed to one store_del_many (one S3 DeleteObjects request) */
#define SWEEP_BATCH 1000

struct sweep {
	struct meta *m;
	bool unreferenced;
	struct buf keys; /* NUL-separated: key, then 'f' (forget) or 'u' */
	size_t nkeys;
	struct sweep_result *res;
	progress_fn *progress;
	void *progress_arg;
};

static int sweep_cb(const char *key, uint64_t size, void *arg)
{
	struct sweep *sw = arg;
	const char *name = strrchr(key, '/');
	uint64_t refs = 1;
	char kind;
	int rc;

	sw->res->seen++;
	if (sw->progress)
		sw->progress(sw->progress_arg, SWEEP_LISTING, 0, sw->res->seen,
			     0);
	name = name ? name + 1 : key;
	if (strlen(name) != BLOB_NAME_LEN)
		return 0;
	rc = meta_object_get(sw->m, name, &refs);
	if (rc == -ENOENT)
		kind = 'u';
	else if (rc == 0 && refs == 0 && sw->unreferenced)
		kind = 'f';
	else
		return rc;
	sw->res->bytes += size;
	sw->nkeys++;
	rc = buf_append(&sw->keys, key, strlen(key) + 1);
	return rc ? rc : buf_append(&sw->keys, &kind, 1);
}

int store_sweep(struct meta *m, struct store *s, bool unreferenced,
		progress_fn *progress, void *progress_arg,
		struct sweep_result *res)
{
	struct sweep sw = { .m = m, .unreferenced = unreferenced,
			    .keys = BUF_INIT, .res = res,
			    .progress = progress,
			    .progress_arg = progress_arg };
	size_t off = 0, done = 0;
	int rc, first = 0;

	memset(res, 0, sizeof(*res));
	rc = store_list(s, "data/", sweep_cb, &sw);
	if (rc) {
		buf_free(&sw.keys);
		return rc;
	}
	if (progress && sw.nkeys)
		progress(progress_arg, SWEEP_DELETING, 0, 0, sw.nkeys);
	while (off < sw.keys.len) {
		const char *keys[SWEEP_BATCH];
		int results[SWEEP_BATCH];
		char kinds[SWEEP_BATCH];
		size_t n, i;

		for (n = 0; n < SWEEP_BATCH && off < sw.keys.len; n++) {
			keys[n] = (const char *)sw.keys.data + off;
			off += strlen(keys[n]) + 1;
			kinds[n] = (char)sw.keys.data[off++];
		}
		store_del_many(s, keys, n, results);
		for (i = 0; i < n; i++) {
			if (results[i]) {
				log_warn("cannot delete %s: %s", keys[i],
					 strerror(-results[i]));
				if (!first)
					first = results[i];
				continue;
			}
			res->deleted++;
			if (kinds[i] == 'f')
				meta_gc_forget(m, strrchr(keys[i], '/') + 1);
		}
		done += n;
		if (progress)
			progress(progress_arg, SWEEP_DELETING, 0, done,
				 sw.nkeys);
	}
	buf_free(&sw.keys);
	return first;
}
