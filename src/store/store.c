/*
 * store.c - what every store shares: key validation, closing, and the
 * choice of a backend from a location string.
 *
 * A location is either a path ("/srv/vol", "./vol") or a URL:
 * "file:///abs/path" or "s3://BUCKET[/PREFIX]"; any other "scheme://" is
 * refused with a message rather than mistaken for a relative directory
 * name.
 *
 * Invariants:
 *   1. store_key_valid() is the single definition of a well-formed key;
 *      every backend calls it before touching its medium.
 *   2. store_open() writes a message to err exactly when it fails, and
 *      only there (err is appended to, one line, no newline).
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
