/*
 * t_store.h - what the store tests (t_store.c, t_store_file.c,
 * t_store_fault.c) share: collecting a listing, counting the names in a
 * directory tree, the difference of two fault counts.  None of it uses
 * CHECK (each test program has its own counters).
 */
#ifndef METAFUSE_T_STORE_H
#define METAFUSE_T_STORE_H

#include "util/compat.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "util/buf.h"

/* Everything a listing reported, in order. */
struct listing {
	char **keys;
	uint64_t *sizes;
	size_t n, cap;
	size_t stop_at; /* return stop_rc on this call (1-based); 0 never */
	int stop_rc;
	int oom;
};

static inline int collect_cb(const char *key, uint64_t size, void *arg)
{
	struct listing *l = arg;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		char **k = realloc(l->keys, ncap * sizeof(*k));
		uint64_t *sz;

		if (!k) {
			l->oom = 1;
			return -ENOMEM;
		}
		l->keys = k;
		sz = realloc(l->sizes, ncap * sizeof(*sz));
		if (!sz) {
			l->oom = 1;
			return -ENOMEM;
		}
		l->sizes = sz;
		l->cap = ncap;
	}
	l->keys[l->n] = strdup(key);
	l->sizes[l->n] = size;
	l->n++;
	if (l->stop_at && l->n == l->stop_at)
		return l->stop_rc;
	return 0;
}

static inline void listing_free(struct listing *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->keys[i]);
	free(l->keys);
	free(l->sizes);
	memset(l, 0, sizeof(*l));
}

static inline int list_all(struct store *s, const char *prefix, struct listing *l)
{
	memset(l, 0, sizeof(*l));
	return store_list(s, prefix, collect_cb, l);
}

/* Count directory entries whose name contains c, recursively. */
static inline unsigned count_names_with(const char *dir, char c)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir(dir);
	struct buf sub = BUF_INIT;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (strchr(de->d_name, c))
			n++;
		if (de->d_type == DT_DIR) {
			buf_reset(&sub);
			buf_appendf(&sub, "%s/%s", dir, de->d_name);
			n += count_names_with(buf_str(&sub), c);
		}
	}
	closedir(d);
	buf_free(&sub);
	return n;
}

/* d = the counts of s now, less a. */
static inline void counts_diff(struct store *s,
			       const struct store_fault_counts *a,
			       struct store_fault_counts *d)
{
	struct store_fault_counts b;
	size_t i;

	store_fault_get_counts(s, &b);
	for (i = 0; i < ARRAY_SIZE(b.calls); i++)
		d->calls[i] = b.calls[i] - a->calls[i];
	d->bytes_put = b.bytes_put - a->bytes_put;
	d->bytes_got = b.bytes_got - a->bytes_got;
	d->failed = b.failed - a->failed;
}

#endif
