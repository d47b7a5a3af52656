/*
 * store.c - what every store shares: key validation, closing, and the
 * choice of a backend from a location string.
 *
 * A location is either a path ("/srv/vol", "./vol") or a URL:
 * "file:///abs/path" or "s3://BUCKET[/PREFIX]"; any other "scheme://" is
 * refused with a message rather than mistaken for a relative directory
 * name.
 *
 * A put batch (store_batch_*()) keeps, per object, the handle of its
 * staged put, or for a store that does not stage the result of its put.
 *
 * Invariants:
 *   1. store_key_valid() is the single definition of a well-formed key;
 *      every backend calls it before touching its medium.
 *   2. store_open() writes a message to err exactly when it fails, and
 *      only there (err is appended to, one line, no newline).
 *   3. Every handle a batch holds is published by its sync or dropped
 *      by its free, exactly once.
 */
#include "util/compat.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/store.h"

#define STORE_KEY_MAX 512

void store_close(struct store *s)
{
	if (s)
		s->ops->close(s);
}

int store_del_many(struct store *s, const char *const *keys, size_t n,
		   int *results)
{
	int *res = results, first = 0;
	size_t i;

	if (n == 0)
		return 0;
	if (!s->ops->del_many) {
		for (i = 0; i < n; i++) {
			int rc = s->ops->del(s, keys[i]);

			if (results)
				results[i] = rc;
			if (rc && !first)
				first = rc;
		}
		return first;
	}
	if (!res) {
		res = calloc(n, sizeof(*res));
		if (!res)
			return -ENOMEM;
	}
	first = s->ops->del_many(s, keys, n, res);
	for (i = 0; !first && i < n; i++)
		first = res[i];
	if (res != results)
		free(res);
	return first;
}

/* One object of a batch: its stage's handle, or the result of its put
 * (a store without stage). */
struct batch_item {
	void *handle;
	int rc;
};

struct store_batch {
	struct store *s;
	struct batch_item *items;
	size_t n, cap;
	void **handles; /* for publish; cap of them */
	int *results;   /* cap of them */
};

int store_batch_native(const struct store *s)
{
	return s->ops->stage != NULL;
}

int store_batch_new(struct store *s, struct store_batch **out)
{
	struct store_batch *b = calloc(1, sizeof(*b));

	*out = b;
	if (!b)
		return -ENOMEM;
	b->s = s;
	return 0;
}

size_t store_batch_len(const struct store_batch *b)
{
	return b->n;
}

static int batch_grow(struct store_batch *b)
{
	size_t ncap = b->cap ? b->cap * 2 : 16;
	struct batch_item *it = realloc(b->items, ncap * sizeof(*it));
	void **h;
	int *r;

	if (!it)
		return -ENOMEM;
	b->items = it;
	h = realloc(b->handles, ncap * sizeof(*h));
	if (!h)
		return -ENOMEM;
	b->handles = h;
	r = realloc(b->results, ncap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	b->results = r;
	b->cap = ncap;
	return 0;
}

int store_batch_put(struct store_batch *b, const char *key, const void *data,
		    size_t len)
{
	struct batch_item *it;
	int rc;

	if (b->n == b->cap && (rc = batch_grow(b)))
		return rc;
	it = &b->items[b->n];
	it->handle = NULL;
	if (b->s->ops->stage)
		it->rc = b->s->ops->stage(b->s, key, data, len, &it->handle);
	else
		it->rc = store_put(b->s, key, data, len);
	b->n++;
	return 0;
}

int store_batch_sync(struct store_batch *b, int *results)
{
	size_t i, k = 0;
	int first = 0;

	for (i = 0; i < b->n; i++)
		if (b->items[i].handle)
			b->handles[k++] = b->items[i].handle;
	if (k)
		b->s->ops->publish(b->s, b->handles, k, b->results);
	for (i = 0, k = 0; i < b->n; i++) {
		struct batch_item *it = &b->items[i];

		if (it->handle)
			it->rc = b->results[k++];
		if (results)
			results[i] = it->rc;
		if (it->rc && !first)
			first = it->rc;
	}
	b->n = 0;
	return first;
}

void store_batch_free(struct store_batch *b)
{
	size_t i;

	if (!b)
		return;
	for (i = 0; i < b->n; i++)
		if (b->items[i].handle)
			b->s->ops->drop(b->s, b->items[i].handle);
	free(b->items);
	free(b->handles);
	free(b->results);
	free(b);
}

static int key_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int store_key_valid(const char *key)
{
	const char *seg, *p;

	if (!key || !*key || strlen(key) > STORE_KEY_MAX)
		return 0;
	for (seg = key;; seg = p + 1) {
		for (p = seg; *p && *p != '/'; p++)
			if (!key_char_ok(*p))
				return 0;
		/* empty segments cover a leading, trailing or double '/' */
		if (p == seg)
			return 0;
		if ((p - seg == 1 && seg[0] == '.') ||
		    (p - seg == 2 && seg[0] == '.' && seg[1] == '.'))
			return 0;
		if (!*p)
			return 1;
	}
}

/* Length of the "scheme" in "scheme://...", or 0 when it is a path. */
static size_t url_scheme_len(const char *loc)
{
	const char *sep = strstr(loc, "://");
	const char *p;

	if (!sep || sep == loc)
		return 0;
	for (p = loc; p < sep; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '+' || *p == '-' ||
		      *p == '.'))
			return 0;
	return (size_t)(sep - loc);
}

int store_open(const char *location, int create, struct store **out,
	       struct buf *err)
{
	return store_open_opts(location, create, NULL, out, err);
}

int store_open_opts(const char *location, int create,
		    const struct store_options *opts, struct store **out,
		    struct buf *err)
{
	const char *path = location;
	size_t scheme;
	int rc;

	*out = NULL;
	if (!location || !*location) {
		if (err)
			buf_appends(err, "empty store location");
		return -EINVAL;
	}
	scheme = url_scheme_len(location);
	if (scheme == 2 && strncasecmp(location, "s3", 2) == 0)
		return store_s3_open(location + 5, create, opts, out, err);
	if (scheme) {
		if (scheme != 4 || strncasecmp(location, "file", 4) != 0 ||
		    location[7] != '/') {
			if (err)
				buf_appendf(err,
					    "unsupported store location '%s' "
					    "(use a directory path, "
					    "file:///path or s3://BUCKET/PREFIX)",
					    location);
			return -EINVAL;
		}
		path = location + 7;
	}
	rc = store_file_open(path, create, out);
	if (rc && err) {
		if (rc == -ENOENT && !create)
			buf_appendf(err, "store '%s' does not exist", path);
		else
			buf_appendf(err, "cannot %s store '%s': %s",
				    create ? "create" : "open", path,
				    strerror(-rc));
	}
	return rc;
}
