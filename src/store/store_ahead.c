/*
 * store_ahead.c - read a list of objects in order, fetched ahead.
 *
 * A restore reads the journal entries since the checkpoint (up to a
 * thousand) and the checkpoint's parts one after the other; fetched one
 * at a time, each costs a round trip to the store before the next can
 * start, which on a distant service is most of the restore.  A reader
 * here gets its objects in order while up to `window` threads fetch the
 * following ones.
 *
 * Data model: one slot per key (the object, its result, whether it has
 * arrived); `issue` is the next key a thread will fetch, `next` the next
 * one the reader takes.  All of it under one mutex, never held while a
 * thread fetches.
 *
 * Invariants:
 *   1. next <= issue <= n: a key is fetched once, before it is read.
 *   2. A thread starts key i only when i < next + window and, when sizes
 *      are known, the keys in [next, i] hold at most `budget` bytes (or
 *      i == next): what waits unread is bounded by both.
 *   3. Each key is read once and in order; an object handed to the
 *      reader leaves its slot (the slot's buffer is moved, not copied).
 *   4. store_ahead_end() stops the threads after their current fetch and
 *      frees every object not read; it may come at any point.
 */
#include "util/compat.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

struct ahead_slot {
	struct buf obj;
	int rc;
	bool done;
};

struct store_ahead {
	struct store *s;
	const char *const *keys; /* borrowed, n of them */
	const uint64_t *sizes;   /* borrowed; NULL: unknown */
	size_t n;
	unsigned window;
	uint64_t budget;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ahead_slot *slot; /* n of them; protected by lock */
	size_t issue, next;      /* protected by lock */
	uint64_t ahead_bytes;    /* sizes of [next, issue); protected by lock */
	bool stop;               /* protected by lock */
	pthread_t *thread;
	unsigned nthreads;
};

/* Invariant 2; called with the lock held. */
static bool may_start(const struct store_ahead *a)
{
	if (a->issue >= a->n || a->issue >= a->next + a->window)
		return false;
	return !a->sizes || a->issue == a->next ||
	       a->ahead_bytes + a->sizes[a->issue] <= a->budget;
}

static void *ahead_thread(void *arg)
{
	struct store_ahead *a = arg;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		struct buf obj = BUF_INIT;
		size_t i;
		int rc;

		while (!a->stop && a->issue < a->n && !may_start(a))
			pthread_cond_wait(&a->cond, &a->lock);
		if (a->stop || a->issue >= a->n)
			break;
		i = a->issue++;
		if (a->sizes)
			a->ahead_bytes += a->sizes[i];
		pthread_mutex_unlock(&a->lock);
		rc = store_get(a->s, a->keys[i], 0, 0, &obj);
		pthread_mutex_lock(&a->lock);
		a->slot[i].obj = obj;
		a->slot[i].rc = rc;
		a->slot[i].done = true;
		pthread_cond_broadcast(&a->cond);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

int store_ahead_start(struct store *s, const char *const *keys,
		      const uint64_t *sizes, size_t n, unsigned window,
		      uint64_t budget, struct store_ahead **out)
{
	struct store_ahead *a = calloc(1, sizeof(*a));

	*out = NULL;
	if (!a)
		return -ENOMEM;
	a->slot = calloc(n ? n : 1, sizeof(*a->slot));
	a->thread = calloc(window ? window : 1, sizeof(*a->thread));
	if (!a->slot || !a->thread) {
		free(a->slot);
		free(a->thread);
		free(a);
		return -ENOMEM;
	}
	a->s = s;
	a->keys = keys;
	a->sizes = sizes;
	a->n = n;
	a->window = window ? window : 1;
	a->budget = budget;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	/* no more threads than keys; none at all: the reader fetches */
	while (a->nthreads < a->window && a->nthreads < n &&
	       pthread_create(&a->thread[a->nthreads], NULL, ahead_thread,
			      a) == 0)
		a->nthreads++;
	*out = a;
	return 0;
}

int store_ahead_next(struct store_ahead *a, struct buf *out)
{
	struct ahead_slot *sl;
	size_t i;
	int rc;

	pthread_mutex_lock(&a->lock);
	if (a->next >= a->n) {
		pthread_mutex_unlock(&a->lock);
		return -ENOENT;
	}
	i = a->next;
	sl = &a->slot[i];
	if (a->nthreads == 0 && !sl->done) {
		/* no thread could be started: fetch it here */
		a->issue = i + 1;
		pthread_mutex_unlock(&a->lock);
		sl->rc = store_get(a->s, a->keys[i], 0, 0, &sl->obj);
		pthread_mutex_lock(&a->lock);
		sl->done = true;
	}
	while (!sl->done)
		pthread_cond_wait(&a->cond, &a->lock);
	a->next++;
	if (a->sizes)
		a->ahead_bytes -= a->sizes[i];
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	rc = sl->rc;
	buf_free(out);
	*out = sl->obj;
	sl->obj = (struct buf)BUF_INIT;
	return rc;
}

void store_ahead_end(struct store_ahead *a)
{
	size_t i;

	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	while (a->nthreads > 0)
		pthread_join(a->thread[--a->nthreads], NULL);
	for (i = 0; i < a->n; i++)
		buf_free(&a->slot[i].obj);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a->slot);
	free(a->thread);
	free(a);
}
