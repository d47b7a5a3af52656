/*
 * sealed.c - the store that seals every object but the descriptor (see
 * sealed.h): crypt_seal() on the way up, crypt_open() on the way down.
 *
 * Data model
 *   A struct sealed forwards to its inner store and keeps the object
 *   key; it has no other state, so every call is as thread-safe as the
 *   inner store's.
 *
 * Invariants
 *   1. No object but "volume" reaches the inner store unsealed, and no
 *      object but "volume" is returned from it unopened.
 *   2. A get that fails to open leaves out as it was (what was
 *      decrypted before the check is wiped: crypt_open(), and here).
 *   3. A get opens the whole object, also for a ranged read: a range is
 *      cut from the opened plaintext (the tag covers the whole).
 *   4. Over a store that stages puts (store.h's batches) the wrapper
 *      stages too: the inner store stages the sealed copy, which it has
 *      written when the stage returns; publish and drop pass through.
 */
#include "util/compat.h"

#include <assert.h>

#include "util/log.h"
#include "volume/sealed.h"

#define SEALED_PLAIN_KEY "volume"

struct sealed {
	struct store base;
	struct store *inner;
	struct crypt_key key;
};

static const struct store_ops sealed_ops, sealed_batch_ops;

static struct sealed *sealed_from_store(struct store *s)
{
	assert(s->ops == &sealed_ops || s->ops == &sealed_batch_ops);
	return (struct sealed *)s;
}

static bool passes(const char *key)
{
	return !strcmp(key, SEALED_PLAIN_KEY);
}

/* The sealed copy of data (len + CRYPT_OVERHEAD bytes) in *out, to be
 * freed by the caller. */
static int seal_copy(struct sealed *w, const char *key, const void *data,
		     size_t len, void **out)
{
	void *sealed = NULL;
	int rc;

	*out = NULL;
	if (len > SIZE_MAX - CRYPT_OVERHEAD)
		return -ENOMEM;
	/* aligned data is an O_DIRECT put: keep it one (sealed.h) */
	if ((uintptr_t)data % STORE_DIRECT_ALIGN == 0) {
		if (posix_memalign(&sealed, STORE_DIRECT_ALIGN,
				   len + CRYPT_OVERHEAD))
			sealed = NULL;
	} else {
		sealed = malloc(len + CRYPT_OVERHEAD);
	}
	if (!sealed)
		return -ENOMEM;
	rc = crypt_seal(&w->key, key, data, len, sealed);
	if (rc) {
		free(sealed);
		return rc;
	}
	*out = sealed;
	return 0;
}

static int sealed_put(struct store *s, const char *key, const void *data,
		      size_t len)
{
	struct sealed *w = sealed_from_store(s);
	void *sealed;
	int rc;

	if (passes(key))
		return store_put(w->inner, key, data, len);
	rc = seal_copy(w, key, data, len, &sealed);
	if (rc == 0)
		rc = store_put(w->inner, key, sealed, len + CRYPT_OVERHEAD);
	free(sealed);
	return rc;
}

/* A staged put is the inner store's, of the sealed copy (the inner
 * stage has written it when it returns). */
static int sealed_stage(struct store *s, const char *key, const void *data,
			size_t len, void **handle)
{
	struct sealed *w = sealed_from_store(s);
	struct store *in = w->inner;
	void *sealed;
	int rc;

	*handle = NULL;
	if (passes(key))
		return in->ops->stage(in, key, data, len, handle);
	rc = seal_copy(w, key, data, len, &sealed);
	if (rc == 0)
		rc = in->ops->stage(in, key, sealed, len + CRYPT_OVERHEAD,
				    handle);
	free(sealed);
	return rc;
}

static void sealed_publish(struct store *s, void *const *handles, size_t n,
			   int *results)
{
	struct store *in = sealed_from_store(s)->inner;

	in->ops->publish(in, handles, n, results);
}

static void sealed_drop(struct store *s, void *handle)
{
	struct store *in = sealed_from_store(s)->inner;

	in->ops->drop(in, handle);
}

/* Keep the plaintext's bytes [off, off + len) of the n at p (len 0: to
 * the end); the number kept, moved to p. */
static size_t cut_range(uint8_t *p, size_t n, uint64_t off, size_t len)
{
	size_t keep;

	if (off >= n)
		return 0;
	keep = n - (size_t)off;
	if (len && len < keep)
		keep = len;
	if (off)
		memmove(p, p + off, keep);
	return keep;
}

static void set_len(struct buf *out, size_t len)
{
	out->len = len;
	if (out->len < out->cap)
		out->data[out->len] = 0;
}

static int sealed_get(struct store *s, const char *key, uint64_t off,
		      size_t len, struct buf *out)
{
	struct sealed *w = sealed_from_store(s);
	size_t start = out->len, got, n;
	uint8_t *obj;
	int rc;

	if (passes(key))
		return store_get(w->inner, key, off, len, out);
	rc = store_get(w->inner, key, 0, 0, out);
	if (rc)
		return rc;
	obj = out->data + start;
	got = out->len - start;
	/* opened in place, then moved down over the header */
	if (got < CRYPT_OVERHEAD ||
	    crypt_open(&w->key, key, obj, got, obj + CRYPT_HEADER)) {
		log_error("object %s of %s fails its authentication: damaged, "
			  "truncated, or put there from elsewhere", key,
			  s->url);
		explicit_bzero(obj, got);
		set_len(out, start);
		return -EIO;
	}
	n = got - CRYPT_OVERHEAD;
	memmove(obj, obj + CRYPT_HEADER, n);
	set_len(out, start + cut_range(obj, n, off, len));
	return 0;
}

static int sealed_del(struct store *s, const char *key)
{
	return store_del(sealed_from_store(s)->inner, key);
}

static int sealed_del_many(struct store *s, const char *const *keys,
			   size_t n, int *results)
{
	return store_del_many(sealed_from_store(s)->inner, keys, n, results);
}

static uint64_t plain_size(const char *key, uint64_t size)
{
	if (passes(key))
		return size;
	return size < CRYPT_OVERHEAD ? 0 : size - CRYPT_OVERHEAD;
}

struct list_arg {
	store_list_cb cb;
	void *arg;
};

static int list_cb(const char *key, uint64_t size, void *arg)
{
	struct list_arg *a = arg;

	return a->cb(key, plain_size(key, size), a->arg);
}

static int sealed_list(struct store *s, const char *prefix, store_list_cb cb,
		       void *arg)
{
	struct list_arg a = { cb, arg };

	return store_list(sealed_from_store(s)->inner, prefix, list_cb, &a);
}

static int sealed_head(struct store *s, const char *key, uint64_t *size)
{
	int rc = store_head(sealed_from_store(s)->inner, key, size);

	if (rc == 0)
		*size = plain_size(key, *size);
	return rc;
}

static void sealed_close(struct store *s)
{
	struct sealed *w = sealed_from_store(s);

	store_close(w->inner);
	explicit_bzero(&w->key, sizeof(w->key));
	free(w->base.url);
	free(w);
}

int sealed_store_wrap(struct store *inner, const struct crypt_key *k,
		      struct store **out)
{
	struct sealed *w = calloc(1, sizeof(*w));

	*out = NULL;
	if (!w)
		return -ENOMEM;
	w->base.url = strdup(inner->url ? inner->url : "");
	if (!w->base.url) {
		free(w);
		return -ENOMEM;
	}
	/* staged puts only over a store that stages them */
	w->base.ops = inner->ops->stage ? &sealed_batch_ops : &sealed_ops;
	w->base.block_size = inner->block_size;
	w->base.counters = inner->counters; /* the inner store's requests */
	w->inner = inner;
	w->key = *k;
	*out = &w->base;
	return 0;
}

struct store *sealed_store_inner(struct store *s)
{
	return s && (s->ops == &sealed_ops || s->ops == &sealed_batch_ops) ?
		       sealed_from_store(s)->inner : s;
}

/* The members both tables share: they differ only in the batch ops,
 * which only a wrapper over a store that stages puts may have. */
#define SEALED_OPS_COMMON							\
	.name = "sealed",					\
	.put = sealed_put,					\
	.get = sealed_get,					\
	.del = sealed_del,					\
	.del_many = sealed_del_many,					\
	.list = sealed_list,					\
	.head = sealed_head

static const struct store_ops sealed_ops = {
	SEALED_OPS_COMMON,
	.close = sealed_close,
};

static const struct store_ops sealed_batch_ops = {
	SEALED_OPS_COMMON,
	.stage = sealed_stage,
	.publish = sealed_publish,
	.drop = sealed_drop,
	.close = sealed_close,
};
