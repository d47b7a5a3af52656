/*
 * store_fault.c - a store that forwards to another and can be told to fail.
 *
 * Tests wrap a real backend with it to count calls and bytes, to make the
 * Nth call of some kinds fail with a chosen errno, and to flip a bit in
 * what get returns (to prove that damage is detected above the store).
 *
 * Data model: one armed rule (ops mask, calls to let through, failures
 * left) and the counters, all under one mutex.  The mutex is never held
 * while the inner store runs.
 *
 * Invariants:
 *   1. Every call is counted in calls[], whether it fails or not; failed
 *      counts only the injected failures, not errors of the inner store.
 *   2. An injected failure does not reach the inner store: a failed put
 *      stores nothing, a failed del deletes nothing.
 *   3. count < 0 stays negative (fails forever); count == 0 is disarmed.
 *   4. del_many counts, and may fail, each key as one del; the keys not
 *      failed go on to the inner store in one del_many.
 *   5. bytes_put and bytes_got count successful transfers only (bytes_got
 *      counts what get appended).
 *   6. read_delay_us, when set, is slept by every get, head and list
 *      that reaches the inner store, as a round trip to a distant service
 *      would take (a list once, whatever its length);
 *      gets_max_in_flight is the most gets inside the inner store at once.
 *   7. The wrapper shares its inner store's counters (store_stats.h):
 *      the requests are the inner store's, and an injected failure
 *      counts there as an error (a request that never left).
 *   8. Over a store that stages puts (store.h's batches) the wrapper
 *      stages too: a stage is a put for the rules, the counts and the
 *      holds; a publish is one SYNC call, whose injected failure fails
 *      (and drops) every object of it; bytes_put counts what a publish
 *      made durable.
 */
#include "util/compat.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <unistd.h>

#include "store/store.h"

enum fault_op_index { OP_PUT, OP_GET, OP_DEL, OP_LIST, OP_HEAD, OP_SYNC };

struct store_fault {
	struct store base;
	struct store *inner; /* owned */
	pthread_mutex_t lock;
	/* the armed rule; protected by lock */
	unsigned mask;
	uint64_t after;
	int64_t count;
	int err;
	bool corrupt; /* protected by lock */
	char *down_file; /* while this path exists, every call fails; const */
	bool hold;        /* puts wait while set; protected by lock */
	unsigned held;    /* puts waiting; protected by lock */
	pthread_cond_t hold_cond;
	unsigned read_delay_us; /* protected by lock */
	unsigned gets_in_flight; /* protected by lock */
	struct store_fault_counts counts; /* protected by lock */
};

static const struct store_ops store_fault_ops, store_fault_batch_ops;

static struct store_fault *fault_from_store(struct store *s)
{
	assert(s->ops == &store_fault_ops || s->ops == &store_fault_batch_ops);
	return (struct store_fault *)s;
}

/* Count a call of op; returns the injected error or 0 to forward it. */
static int fault_enter(struct store_fault *f, enum fault_op_index op)
{
	int rc = 0;

	if (f->down_file && access(f->down_file, F_OK) == 0) {
		pthread_mutex_lock(&f->lock);
		f->counts.calls[op]++;
		f->counts.failed++;
		pthread_mutex_unlock(&f->lock);
		store_counters_error(f->base.counters);
		return -EIO;
	}
	pthread_mutex_lock(&f->lock);
	f->counts.calls[op]++;
	if ((f->mask & (1u << op)) && f->count != 0) {
		if (f->after > 0) {
			f->after--;
		} else {
			if (f->count > 0)
				f->count--;
			f->counts.failed++;
			rc = -f->err;
		}
	}
	pthread_mutex_unlock(&f->lock);
	if (rc && rc != -ENOENT)
		store_counters_error(f->base.counters);
	return rc;
}

/* Invariant 6, for heads and lists (gets count themselves). */
static void read_delay(struct store_fault *f)
{
	unsigned delay;

	pthread_mutex_lock(&f->lock);
	delay = f->read_delay_us;
	pthread_mutex_unlock(&f->lock);
	if (delay)
		usleep(delay);
}

/* A put (or a stage) waits here while puts are held. */
static void hold_put(struct store_fault *f)
{
	pthread_mutex_lock(&f->lock);
	if (f->hold) {
		f->held++;
		pthread_cond_broadcast(&f->hold_cond);
		while (f->hold)
			pthread_cond_wait(&f->hold_cond, &f->lock);
		f->held--;
	}
	pthread_mutex_unlock(&f->lock);
}

static int fault_put(struct store *s, const char *key, const void *data,
		     size_t len)
{
	struct store_fault *f = fault_from_store(s);
	int rc = fault_enter(f, OP_PUT);

	if (rc)
		return rc;
	hold_put(f);
	rc = store_put(f->inner, key, data, len);
	if (!rc) {
		pthread_mutex_lock(&f->lock);
		f->counts.bytes_put += len;
		pthread_mutex_unlock(&f->lock);
	}
	return rc;
}

/* A staged put: the inner store's handle and the object's size. */
struct fault_staged {
	void *inner;
	size_t len;
};

/* A stage is a put for the rules, counts and holds (invariant 8). */
static int fault_stage(struct store *s, const char *key, const void *data,
		       size_t len, void **handle)
{
	struct store_fault *f = fault_from_store(s);
	struct fault_staged *st;
	int rc = fault_enter(f, OP_PUT);

	*handle = NULL;
	if (rc)
		return rc;
	st = malloc(sizeof(*st));
	if (!st)
		return -ENOMEM;
	hold_put(f);
	st->len = len;
	rc = f->inner->ops->stage(f->inner, key, data, len, &st->inner);
	if (rc) {
		free(st);
		return rc;
	}
	*handle = st;
	return 0;
}

static void fault_drop(struct store *s, void *handle)
{
	struct store_fault *f = fault_from_store(s);
	struct fault_staged *st = handle;

	f->inner->ops->drop(f->inner, st->inner);
	free(st);
}

static void fault_publish(struct store *s, void *const *handles, size_t n,
			  int *results)
{
	struct store_fault *f = fault_from_store(s);
	struct fault_staged *const *st = (struct fault_staged *const *)handles;
	int rc = fault_enter(f, OP_SYNC);
	void **inner = rc ? NULL : malloc(n * sizeof(*inner));
	uint64_t bytes = 0;
	size_t i;

	if (!rc && !inner)
		rc = -ENOMEM;
	for (i = 0; i < n; i++) {
		if (rc) {
			results[i] = rc;
			fault_drop(s, st[i]);
			continue;
		}
		inner[i] = st[i]->inner;
	}
	if (rc)
		return;
	f->inner->ops->publish(f->inner, inner, n, results);
	for (i = 0; i < n; i++) {
		if (!results[i])
			bytes += st[i]->len;
		free(st[i]);
	}
	free(inner);
	pthread_mutex_lock(&f->lock);
	f->counts.bytes_put += bytes;
	pthread_mutex_unlock(&f->lock);
}

static int fault_get(struct store *s, const char *key, uint64_t off,
		     size_t len, struct buf *out)
{
	struct store_fault *f = fault_from_store(s);
	size_t start = out->len, n;
	bool corrupt;
	unsigned delay;
	int rc = fault_enter(f, OP_GET);

	if (rc)
		return rc;
	pthread_mutex_lock(&f->lock);
	delay = f->read_delay_us;
	if (++f->gets_in_flight > f->counts.gets_max_in_flight)
		f->counts.gets_max_in_flight = f->gets_in_flight;
	pthread_mutex_unlock(&f->lock);
	if (delay)
		usleep(delay);
	rc = store_get(f->inner, key, off, len, out);
	pthread_mutex_lock(&f->lock);
	f->gets_in_flight--;
	pthread_mutex_unlock(&f->lock);
	if (rc)
		return rc;
	n = out->len - start;
	pthread_mutex_lock(&f->lock);
	f->counts.bytes_got += n;
	corrupt = f->corrupt;
	pthread_mutex_unlock(&f->lock);
	if (corrupt && n)
		out->data[start + n / 2] ^= 0x10;
	return 0;
}

static int fault_del(struct store *s, const char *key)
{
	struct store_fault *f = fault_from_store(s);
	int rc = fault_enter(f, OP_DEL);

	return rc ? rc : store_del(f->inner, key);
}

static int fault_del_many(struct store *s, const char *const *keys,
			  size_t n, int *results)
{
	struct store_fault *f = fault_from_store(s);
	const char **pass = calloc(n ? n : 1, sizeof(*pass));
	int *pres = calloc(n ? n : 1, sizeof(*pres));
	size_t i, np = 0;
	int first = 0;

	if (!pass || !pres) {
		free(pass);
		free(pres);
		for (i = 0; i < n; i++)
			results[i] = -ENOMEM;
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		results[i] = fault_enter(f, OP_DEL);
		if (!results[i])
			pass[np++] = keys[i];
	}
	store_del_many(f->inner, pass, np, pres);
	for (i = 0, np = 0; i < n; i++) {
		if (!results[i])
			results[i] = pres[np++];
		if (results[i] && !first)
			first = results[i];
	}
	free(pass);
	free(pres);
	return first;
}

static int fault_list(struct store *s, const char *prefix, store_list_cb cb,
		      void *arg)
{
	struct store_fault *f = fault_from_store(s);
	int rc = fault_enter(f, OP_LIST);

	if (rc)
		return rc;
	read_delay(f);
	return store_list(f->inner, prefix, cb, arg);
}

static int fault_head(struct store *s, const char *key, uint64_t *size)
{
	struct store_fault *f = fault_from_store(s);
	int rc = fault_enter(f, OP_HEAD);

	if (rc)
		return rc;
	read_delay(f);
	return store_head(f->inner, key, size);
}

static void fault_close(struct store *s)
{
	struct store_fault *f = fault_from_store(s);

	store_close(f->inner);
	pthread_cond_destroy(&f->hold_cond);
	pthread_mutex_destroy(&f->lock);
	free(f->down_file);
	free(f->base.url);
	free(f);
}

int store_fault_wrap(struct store *inner, struct store **out)
{
	struct store_fault *f;
	int rc;

	*out = NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->base.url = strdup(inner->url ? inner->url : "");
	if (!f->base.url) {
		rc = -ENOMEM;
		goto out_free_f;
	}
	rc = -pthread_mutex_init(&f->lock, NULL);
	if (rc)
		goto out_free_url;
	pthread_cond_init(&f->hold_cond, NULL);
	/* staged puts only over a store that stages them */
	f->base.ops = inner->ops->stage ? &store_fault_batch_ops :
		&store_fault_ops;
	f->base.block_size = inner->block_size;
	f->base.counters = inner->counters; /* the inner store's requests */
	f->inner = inner;
	*out = &f->base;
	return 0;

out_free_url:
	free(f->base.url);
out_free_f:
	free(f);
	return rc;
}

void store_fault_arm(struct store *s, unsigned ops_mask, uint64_t after,
		     int64_t count, int err)
{
	struct store_fault *f = fault_from_store(s);

	/* accept EIO or -EIO; 0 would mean "fail with success" */
	if (err <= 0)
		err = err < 0 && err > INT_MIN ? -err : EIO;
	pthread_mutex_lock(&f->lock);
	f->mask = ops_mask & (STORE_OP_ALL | STORE_OP_SYNC);
	f->after = after;
	f->count = count;
	f->err = err;
	pthread_mutex_unlock(&f->lock);
}

void store_fault_hold_puts(struct store *s, int on)
{
	struct store_fault *f = fault_from_store(s);

	pthread_mutex_lock(&f->lock);
	f->hold = on;
	pthread_cond_broadcast(&f->hold_cond);
	pthread_mutex_unlock(&f->lock);
}

void store_fault_wait_held(struct store *s, unsigned n)
{
	struct store_fault *f = fault_from_store(s);

	pthread_mutex_lock(&f->lock);
	while (f->held < n)
		pthread_cond_wait(&f->hold_cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
}

int store_fault_down_while(struct store *s, const char *path)
{
	struct store_fault *f = fault_from_store(s);

	free(f->down_file);
	f->down_file = path ? strdup(path) : NULL;
	return path && !f->down_file ? -ENOMEM : 0;
}

void store_fault_corrupt_reads(struct store *s, int on)
{
	struct store_fault *f = fault_from_store(s);

	pthread_mutex_lock(&f->lock);
	f->corrupt = on != 0;
	pthread_mutex_unlock(&f->lock);
}

void store_fault_get_counts(struct store *s, struct store_fault_counts *out)
{
	struct store_fault *f = fault_from_store(s);

	pthread_mutex_lock(&f->lock);
	*out = f->counts;
	pthread_mutex_unlock(&f->lock);
}

/* The members both tables share: they differ only in the batch ops,
 * which only a wrapper over a store that stages puts may have. */
#define FAULT_OPS_COMMON							\
	.name = "fault",					\
	.put = fault_put,					\
	.get = fault_get,					\
	.del = fault_del,					\
	.del_many = fault_del_many,					\
	.list = fault_list,					\
	.head = fault_head

static const struct store_ops store_fault_ops = {
	FAULT_OPS_COMMON,
	.close = fault_close,
};

static const struct store_ops store_fault_batch_ops = {
	FAULT_OPS_COMMON,
	.stage = fault_stage,
	.publish = fault_publish,
	.drop = fault_drop,
	.close = fault_close,
};

void store_fault_read_delay(struct store *s, unsigned usec)
{
	struct store_fault *f = fault_from_store(s);

	pthread_mutex_lock(&f->lock);
	f->read_delay_us = usec;
	pthread_mutex_unlock(&f->lock);
}
