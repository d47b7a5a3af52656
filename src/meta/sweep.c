/*
 * sweep.c - delete the data objects in the store that the metadata does
 * not need (see journal.h: store_sweep).
 */
#include "util/compat.h"

#include "meta/journal.h"
#include "util/log.h"

struct sweep {
	struct meta *m;
	bool unreferenced;
	struct buf keys; /* NUL-separated: key, then 'f' (forget) or 'u' */
	struct sweep_result *res;
};

static int sweep_cb(const char *key, uint64_t size, void *arg)
{
	struct sweep *sw = arg;
	const char *name = strrchr(key, '/');
	uint64_t refs = 1;
	char kind;
	int rc;

	sw->res->seen++;
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
	rc = buf_append(&sw->keys, key, strlen(key) + 1);
	return rc ? rc : buf_append(&sw->keys, &kind, 1);
}

int store_sweep(struct meta *m, struct store *s, bool unreferenced,
		struct sweep_result *res)
{
	struct sweep sw = { .m = m, .unreferenced = unreferenced,
			    .keys = BUF_INIT, .res = res };
	size_t off;
	int rc, first = 0;

	memset(res, 0, sizeof(*res));
	rc = store_list(s, "data/", sweep_cb, &sw);
	if (rc) {
		buf_free(&sw.keys);
		return rc;
	}
	for (off = 0; off < sw.keys.len;) {
		const char *key = (const char *)sw.keys.data + off;
		size_t len = strlen(key);
		char kind = key[len + 1];

		off += len + 2;
		rc = store_del(s, key);
		if (rc) {
			log_warn("cannot delete %s: %s", key, strerror(-rc));
			if (!first)
				first = rc;
			continue;
		}
		res->deleted++;
		if (kind == 'f')
			meta_gc_forget(m, strrchr(key, '/') + 1);
	}
	buf_free(&sw.keys);
	return first;
}
