/*
 * t_store_fault.c - the fault-injecting wrapper (store_fault.c) and
 * store_ahead (store_ahead.c), which the tests run over it to count its
 * gets and to give them a round trip.
 *
 * test_fault() runs its steps in order on one store: each step finds the
 * objects the ones before it left ("f/a" holds "12345", and so on).
 * The wrapper's conformance, disarmed, is checked in t_store.c.
 */
#include "util/compat.h"

#include <pthread.h>

#include "check.h"
#include "store/store.h"
#include "t_store.h"
#include "util/util.h"

#define N_THREADS 4

/* Counts: calls per op, bytes moved. */
static void fault_counts(struct store *s)
{
	struct store_fault_counts c0, d;
	struct buf out = BUF_INIT;
	struct listing l;
	uint64_t size;

	store_fault_get_counts(s, &c0);
	CHECK_RC(store_put(s, "f/a", "12345", 5), 0);
	CHECK_RC(store_put(s, "f/b", "678", 3), 0);
	CHECK_RC(store_get(s, "f/a", 1, 2, &out), 0);
	CHECK_RC(store_get(s, "f/missing", 0, 0, &out), -ENOENT);
	CHECK_RC(store_head(s, "f/a", &size), 0);
	CHECK_RC(store_del(s, "f/none"), 0);
	CHECK_RC(list_all(s, "f/", &l), 0);
	CHECK_EQ_U64(l.n, 2);
	listing_free(&l);
	counts_diff(s, &c0, &d);
	CHECK_EQ_U64(d.calls[0], 2);
	CHECK_EQ_U64(d.calls[1], 2);
	CHECK_EQ_U64(d.calls[2], 1);
	CHECK_EQ_U64(d.calls[3], 1);
	CHECK_EQ_U64(d.calls[4], 1);
	CHECK_EQ_U64(d.bytes_put, 8);
	CHECK_EQ_U64(d.bytes_got, 2);
	CHECK_EQ_U64(d.failed, 0);
	buf_free(&out);
}

/* Armed after N, for a count: put 3 fails, and nothing reaches the
 * store. */
static void fault_arm_after(struct store *s)
{
	struct store_fault_counts c0, d;
	uint64_t size;

	store_fault_get_counts(s, &c0);
	store_fault_arm(s, STORE_OP_PUT, 2, 1, EIO);
	CHECK_RC(store_put(s, "f/p1", "x", 1), 0);
	CHECK_RC(store_head(s, "f/p1", &size), 0); /* not a put: not counted */
	CHECK_RC(store_put(s, "f/p2", "x", 1), 0);
	CHECK_RC(store_put(s, "f/p3", "x", 1), -EIO);
	CHECK_RC(store_put(s, "f/p4", "x", 1), 0);
	CHECK_RC(store_head(s, "f/p3", &size), -ENOENT);
	counts_diff(s, &c0, &d);
	CHECK_EQ_U64(d.failed, 1);
	CHECK_EQ_U64(d.calls[0], 4);
	CHECK_EQ_U64(d.bytes_put, 3);
}

/* Armed forever, only the masked ops fail, with the chosen errno; a
 * count of 0 disarms. */
static void fault_arm_forever(struct store *s)
{
	struct store_fault_counts c0, d;
	struct buf out = BUF_INIT;
	struct listing l;
	uint64_t size;
	unsigned i;

	store_fault_get_counts(s, &c0);
	store_fault_arm(s, STORE_OP_GET | STORE_OP_HEAD, 0, -1, ENOSPC);
	for (i = 0; i < 20; i++) {
		CHECK_RC(store_get(s, "f/a", 0, 0, &out), -ENOSPC);
		CHECK_RC(store_head(s, "f/a", &size), -ENOSPC);
	}
	CHECK(out.len == 0);
	CHECK_RC(store_put(s, "f/c", "c", 1), 0);
	CHECK_RC(store_del(s, "f/c"), 0);
	CHECK_RC(list_all(s, "f/", &l), 0);
	listing_free(&l);
	counts_diff(s, &c0, &d);
	CHECK_EQ_U64(d.failed, 40);
	CHECK_EQ_U64(d.bytes_got, 0);
	store_fault_arm(s, STORE_OP_ALL, 0, 0, EIO); /* count 0 disarms */
	CHECK_RC(store_get(s, "f/a", 0, 0, &out), 0);
	CHECK(out.len == 5 && !memcmp(out.data, "12345", 5));
	buf_free(&out);
}

/* ALL: after 1, then 2 failures of whatever comes, then fine. */
static void fault_arm_all(struct store *s)
{
	struct listing l;
	uint64_t size;

	store_fault_arm(s, STORE_OP_ALL, 1, 2, EACCES);
	CHECK_RC(store_head(s, "f/a", &size), 0);
	CHECK_RC(store_del(s, "f/a"), -EACCES);
	CHECK_RC(list_all(s, "f/", &l), -EACCES);
	CHECK_EQ_U64(l.n, 0); /* the callback never ran */
	listing_free(&l);
	CHECK_RC(store_head(s, "f/a", &size), 0); /* the del never ran */
	CHECK_RC(store_del(s, "f/p4"), 0);
}

/* del_many: each key counts, and fails, as one del. */
static void fault_del_many(struct store *s)
{
	const char *const dk[] = { "f/m1", "f/m2", "f/m3" };
	struct store_fault_counts c0, d;
	uint64_t size;
	int dr[3];
	size_t k;

	for (k = 0; k < 3; k++)
		CHECK_RC(store_put(s, dk[k], "m", 1), 0);
	store_fault_get_counts(s, &c0);
	store_fault_arm(s, STORE_OP_DEL, 1, 1, EIO);
	CHECK_RC(store_del_many(s, dk, 3, dr), -EIO);
	CHECK(dr[0] == 0 && dr[1] == -EIO && dr[2] == 0);
	counts_diff(s, &c0, &d);
	CHECK_EQ_U64(d.calls[2], 3);
	CHECK_EQ_U64(d.failed, 1);
	CHECK_RC(store_head(s, "f/m1", &size), -ENOENT);
	CHECK_RC(store_head(s, "f/m2", &size), 0);
	CHECK_RC(store_head(s, "f/m3", &size), -ENOENT);
	CHECK_RC(store_del_many(s, dk, 3, dr), 0);
	CHECK_RC(store_head(s, "f/m2", &size), -ENOENT);
}

/* A new arm replaces the old; a negative errno is accepted too. */
static void fault_rearm(struct store *s)
{
	struct listing l;

	store_fault_arm(s, STORE_OP_DEL, 0, -1, EIO);
	store_fault_arm(s, STORE_OP_LIST, 0, 1, -EIO);
	CHECK_RC(store_del(s, "f/p2"), 0);
	CHECK_RC(list_all(s, "f/", &l), -EIO);
	listing_free(&l);
	CHECK_RC(list_all(s, "f/", &l), 0);
	listing_free(&l);
}

/* Corrupt reads: one bit in the middle of what get returns. */
static void fault_corrupt(struct store *s)
{
	struct buf out = BUF_INIT;
	uint8_t data[100];
	unsigned i;
	size_t k;

	for (k = 0; k < sizeof(data); k++)
		data[k] = (uint8_t)(k * 7);
	CHECK_RC(store_put(s, "f/data", data, sizeof(data)), 0);
	CHECK_RC(store_put(s, "f/empty", "", 0), 0);
	store_fault_corrupt_reads(s, 1);
	for (i = 0; i < 3; i++) {
		unsigned bits = 0;

		buf_reset(&out);
		CHECK_RC(store_get(s, "f/data", 0, 0, &out), 0);
		CHECK_EQ_U64(out.len, sizeof(data));
		for (k = 0; k < out.len && k < sizeof(data); k++)
			bits += (unsigned)__builtin_popcount(out.data[k] ^
							     data[k]);
		CHECK_EQ_U64(bits, 1);
		CHECK(out.data[50] != data[50]);
	}
	buf_reset(&out);
	buf_appends(&out, "pre");
	CHECK_RC(store_get(s, "f/data", 10, 20, &out), 0);
	CHECK(out.len == 23 && !memcmp(out.data, "pre", 3));
	CHECK(memcmp(out.data + 3, data + 10, 20) != 0);
	CHECK(out.data[3 + 10] != data[20]);
	buf_reset(&out);
	CHECK_RC(store_get(s, "f/empty", 0, 0, &out), 0);
	CHECK_EQ_U64(out.len, 0);
	store_fault_corrupt_reads(s, 0);
	buf_reset(&out);
	CHECK_RC(store_get(s, "f/data", 0, 0, &out), 0);
	CHECK(out.len == sizeof(data) &&
	      !memcmp(out.data, data, sizeof(data)));
	buf_free(&out);
}

struct head_worker {
	pthread_t tid;
	struct store *s;
	unsigned errors;
};

static void *head_worker(void *arg)
{
	struct head_worker *w = arg;
	uint64_t size;
	int i;

	for (i = 0; i < 250; i++)
		if (store_head(w->s, "f/a", &size) != 0)
			w->errors++;
	return NULL;
}

/* The counters are exact under concurrency. */
static void fault_concurrent_counts(struct store *s)
{
	struct store_fault_counts c0, d;
	struct head_worker hw[N_THREADS];
	unsigned i, errors = 0;

	store_fault_get_counts(s, &c0);
	for (i = 0; i < N_THREADS; i++) {
		hw[i] = (struct head_worker){ .s = s };
		CHECK(pthread_create(&hw[i].tid, NULL, head_worker,
				     &hw[i]) == 0);
	}
	for (i = 0; i < N_THREADS; i++) {
		pthread_join(hw[i].tid, NULL);
		errors += hw[i].errors;
	}
	CHECK_EQ_U64(errors, 0);
	counts_diff(s, &c0, &d);
	CHECK_EQ_U64(d.calls[4], N_THREADS * 250);
}

/*
 * Batches over a staging store: a stage is a put (counted, failed alone
 * when armed); a SYNC fault fails the whole publish and leaves nothing,
 * not even a temp file; the next sync goes through.
 */
static void fault_batch(struct store *s, const char *root)
{
	struct store_fault_counts c0, d;
	struct store_batch *b = NULL;
	struct buf out = BUF_INIT;
	int results[3];

	CHECK(store_batch_native(s));
	CHECK_RC(store_batch_new(s, &b), 0);
	if (!b)
		return;
	store_fault_get_counts(s, &c0);
	store_fault_arm(s, STORE_OP_PUT, 1, 1, EIO);
	CHECK_RC(store_batch_put(b, "fb/a", "a", 1), 0);
	CHECK_RC(store_batch_put(b, "fb/b", "bb", 2), 0);
	CHECK_RC(store_batch_put(b, "fb/c", "ccc", 3), 0);
	CHECK_RC(store_batch_sync(b, results), -EIO);
	CHECK(results[0] == 0 && results[1] == -EIO && results[2] == 0);
	counts_diff(s, &c0, &d);
	CHECK_EQ_U64(d.calls[0], 3);
	CHECK_EQ_U64(d.calls[5], 1);
	CHECK_EQ_U64(d.bytes_put, 4);
	CHECK_RC(store_get(s, "fb/b", 0, 0, &out), -ENOENT);

	store_fault_arm(s, STORE_OP_SYNC, 0, 1, EIO);
	CHECK_RC(store_batch_put(b, "fb/d", "d", 1), 0);
	CHECK_RC(store_batch_put(b, "fb/e", "e", 1), 0);
	CHECK_RC(store_batch_sync(b, results), -EIO);
	CHECK(results[0] == -EIO && results[1] == -EIO);
	CHECK_RC(store_get(s, "fb/d", 0, 0, &out), -ENOENT);
	CHECK_EQ_U64(count_names_with(root, '~'), 0);
	CHECK_RC(store_batch_put(b, "fb/d", "d", 1), 0);
	CHECK_RC(store_batch_sync(b, NULL), 0);
	CHECK_RC(store_get(s, "fb/d", 0, 0, &out), 0);
	CHECK(out.len == 1 && out.data[0] == 'd');
	store_batch_free(b);
	buf_free(&out);
}

static void test_fault(const char *tmp)
{
	struct buf root = BUF_INIT;
	struct store *inner = NULL, *s = NULL;

	buf_appendf(&root, "%s/fault", tmp);
	CHECK_RC(store_file_open(buf_str(&root), 1, &inner), 0);
	if (!inner)
		goto out;
	CHECK_RC(store_fault_wrap(inner, &s), 0);
	if (!s) {
		store_close(inner);
		goto out;
	}
	CHECK(!strcmp(s->url, inner->url));
	fault_counts(s);
	fault_arm_after(s);
	fault_arm_forever(s);
	fault_arm_all(s);
	fault_del_many(s);
	fault_rearm(s);
	fault_corrupt(s);
	fault_concurrent_counts(s);
	fault_batch(s, buf_str(&root));
	store_close(s); /* closes inner too */
out:
	buf_free(&root);
}

static uint64_t ahead_run(const char *tmp, const char *name, unsigned window,
			  const uint64_t *sizes, uint64_t budget, bool hole,
			  size_t upto)
{
	enum { N = 24 };
	struct buf root = BUF_INIT, out = BUF_INIT, want = BUF_INIT;
	char keys[N][32];
	const char *ptrs[N];
	struct store *inner = NULL, *s = NULL;
	struct store_ahead *a = NULL;
	struct store_fault_counts c;
	size_t i;

	buf_appendf(&root, "%s/%s", tmp, name);
	CHECK_RC(store_file_open(buf_str(&root), 1, &inner), 0);
	buf_free(&root);
	if (!inner)
		return 0;
	CHECK_RC(store_fault_wrap(inner, &s), 0);
	if (!s) {
		store_close(inner);
		return 0;
	}
	for (i = 0; i < N; i++) {
		snprintf(keys[i], sizeof(keys[i]), "ahead/%02zu", i);
		ptrs[i] = keys[i];
		buf_reset(&want);
		for (size_t k = 0; k < 100 + i * 37; k++)
			buf_appendf(&want, "%c", (char)('a' + (i + k) % 26));
		if (!(hole && i == 5))
			CHECK_RC(store_put(s, keys[i], want.data, want.len),
				 0);
	}
	/* every get a 5 ms round trip: gets in flight together overlap */
	store_fault_read_delay(s, 5000);
	CHECK_RC(store_ahead_start(s, ptrs, sizes, N, window, budget, &a), 0);
	for (i = 0; a && i < upto; i++) {
		buf_reset(&want);
		for (size_t k = 0; k < 100 + i * 37; k++)
			buf_appendf(&want, "%c", (char)('a' + (i + k) % 26));
		if (hole && i == 5) {
			CHECK_RC(store_ahead_next(a, &out), -ENOENT);
			continue;
		}
		CHECK_RC(store_ahead_next(a, &out), 0);
		CHECK(out.len == want.len &&
		      !memcmp(out.data, want.data, want.len));
	}
	if (a && upto == N)
		CHECK_RC(store_ahead_next(a, &out), -ENOENT);
	store_ahead_end(a);
	store_fault_get_counts(s, &c);
	if (upto == N)
		CHECK_EQ_U64(c.calls[1], N); /* each key fetched once */
	else
		CHECK(c.calls[1] <= upto + window);
	store_close(s);
	buf_free(&out);
	buf_free(&want);
	return c.gets_max_in_flight;
}

static void test_ahead(const char *tmp)
{
	uint64_t sizes[24], got;
	size_t i;

	for (i = 0; i < 24; i++)
		sizes[i] = 100 + i * 37;
	/* in order, with up to window gets at once */
	got = ahead_run(tmp, "ahead1", 8, NULL, 0, false, 24);
	CHECK(got >= 2 && got <= 8);
	/* a missing object fails at its place only */
	got = ahead_run(tmp, "ahead2", 4, NULL, 0, true, 24);
	CHECK(got >= 2 && got <= 4);
	/* a budget below two objects: one get at a time */
	got = ahead_run(tmp, "ahead3", 8, sizes, 150, false, 24);
	CHECK_EQ_U64(got, 1);
	/* a budget of several objects lets several go */
	got = ahead_run(tmp, "ahead4", 8, sizes, 1 << 20, false, 24);
	CHECK(got >= 2 && got <= 8);
	/* ended early, with fetches in flight: nothing leaks (ASan) */
	(void)ahead_run(tmp, "ahead5", 8, NULL, 0, false, 3);
	/* window 1: strictly one after the other */
	got = ahead_run(tmp, "ahead6", 1, NULL, 0, false, 24);
	CHECK_EQ_U64(got, 1);
}

int main(void)
{
	char tmp[] = "/tmp/t_store_fault.XXXXXX";

	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	test_fault(tmp);
	test_ahead(tmp);
	rm_rf(tmp);
	return check_done("t_store_fault");
}
