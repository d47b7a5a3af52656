/*
 * t_store.c - the store conformance suite, run against every backend,
 * and the S3 backend's own tests.
 *
 * run_contract() checks every clause of the contract in store.h against
 * any struct store.  It works under a fresh random namespace ("ct-XXXXXXXX/")
 * and deletes what it wrote, so it also runs against a shared, non-empty
 * store (an S3 bucket): adding a backend is one more call in main().
 * Without arguments it runs against the file backend and the fault
 * wrapper over it; with "s3" (meson's t_store_s3), against the S3 server
 * of the environment, then the S3 refusals, and it skips (77) without
 * one.
 *
 * The file backend's own tests are in t_store_file.c, the fault
 * wrapper's and store_ahead's in t_store_fault.c.
 *
 * Worker threads never use CHECK (its counters are not atomic); they count
 * their own failures and the main thread checks the totals.
 */
#include "util/compat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "store/store.h"
#include "t_store.h"
#include "util/util.h"

#define KEY_MAX 512
#define N_THREADS 4
#define N_ROUNDS 40
#define LARGE_SIZE (8u << 20)

/* The namespace of the current run_contract() call, with trailing '/'. */
static char ns[32];

static uint64_t rng_next(uint64_t *st)
{
	uint64_t x = *st;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*st = x;
	return x;
}

static void fill_pattern(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t st = seed | 1;
	size_t i;

	for (i = 0; i < len; i++) {
		if (i % 8 == 0)
			rng_next(&st);
		p[i] = (uint8_t)(st >> (8 * (i % 8)));
	}
}

/* ns + suffix into key (KEY_MAX + 64 bytes). */
static const char *nskey(char *key, const char *suffix)
{
	snprintf(key, KEY_MAX + 64, "%s%s", ns, suffix);
	return key;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Put ns + suffix with data, CHECKing success. */
static void put_ok(struct store *s, const char *suffix, const void *data,
		   size_t len)
{
	char key[KEY_MAX + 64];

	CHECK_RC(store_put(s, nskey(key, suffix), data, len), 0);
}

/* Get [off, off+len) of ns + suffix and compare with want. */
static void get_expect(struct store *s, const char *suffix, uint64_t off,
		       size_t len, const void *want, size_t want_len)
{
	char key[KEY_MAX + 64];
	struct buf out = BUF_INIT;

	CHECK_RC(store_get(s, nskey(key, suffix), off, len, &out), 0);
	CHECK_EQ_U64(out.len, want_len);
	if (out.len == want_len && want_len)
		CHECK_MEM(out.data, want, want_len);
	buf_free(&out);
}

static void contract_basic(struct store *s)
{
	struct buf out = BUF_INIT;
	char key[KEY_MAX + 64];
	uint64_t size = 99;

	CHECK(s->ops && s->ops->name && s->url);

	/* whole object; get appends to what out holds */
	put_ok(s, "basic/hello", "hello world", 11);
	CHECK_RC(store_head(s, nskey(key, "basic/hello"), &size), 0);
	CHECK_EQ_U64(size, 11);
	buf_appends(&out, "XYZ");
	CHECK_RC(store_get(s, key, 0, 0, &out), 0);
	CHECK(out.len == 14 && !memcmp(out.data, "XYZhello world", 14));
	CHECK(out.data[out.len] == 0);
	buf_free(&out);

	/* ranges, clipped at the end */
	get_expect(s, "basic/hello", 0, 5, "hello", 5);
	get_expect(s, "basic/hello", 6, 5, "world", 5);
	get_expect(s, "basic/hello", 6, 0, "world", 5);
	get_expect(s, "basic/hello", 1, 1, "e", 1);
	get_expect(s, "basic/hello", 8, 100, "rld", 3);
	get_expect(s, "basic/hello", 10, 0, "d", 1);
	get_expect(s, "basic/hello", 11, 0, "", 0);
	get_expect(s, "basic/hello", 11, 5, "", 0);
	get_expect(s, "basic/hello", 1000, 5, "", 0);
	get_expect(s, "basic/hello", UINT64_MAX, 5, "", 0);

	/* the empty object exists and has size 0 */
	put_ok(s, "basic/empty", "", 0);
	size = 99;
	CHECK_RC(store_head(s, nskey(key, "basic/empty"), &size), 0);
	CHECK_EQ_U64(size, 0);
	get_expect(s, "basic/empty", 0, 0, "", 0);
	get_expect(s, "basic/empty", 0, 10, "", 0);

	/* binary data with NULs survives */
	put_ok(s, "basic/bin", "\0\1\2\0\377", 5);
	get_expect(s, "basic/bin", 0, 0, "\0\1\2\0\377", 5);

	/* a key at the maximum length (segments kept under NAME_MAX) */
	{
		char longkey[KEY_MAX + 64];
		size_t n = strlen(ns);

		memcpy(longkey, ns, n);
		while (n < KEY_MAX) {
			longkey[n] = (n % 101 == 100 && n < KEY_MAX - 1) ?
					     '/' : 'a' + (char)(n % 26);
			n++;
		}
		longkey[n] = '\0';
		CHECK(strlen(longkey) == KEY_MAX && store_key_valid(longkey));
		CHECK_RC(store_put(s, longkey, "L", 1), 0);
		CHECK_RC(store_head(s, longkey, &size), 0);
		CHECK_EQ_U64(size, 1);
		CHECK_RC(store_del(s, longkey), 0);
	}
}

static void contract_overwrite(struct store *s)
{
	put_ok(s, "ow/k", "first version", 13);
	get_expect(s, "ow/k", 0, 0, "first version", 13);
	put_ok(s, "ow/k", "v2", 2);
	get_expect(s, "ow/k", 0, 0, "v2", 2);
	put_ok(s, "ow/k", "a much longer third version", 27);
	get_expect(s, "ow/k", 0, 0, "a much longer third version", 27);
	put_ok(s, "ow/k", "", 0);
	get_expect(s, "ow/k", 0, 0, "", 0);
	put_ok(s, "ow/k", "last", 4);
	get_expect(s, "ow/k", 0, 0, "last", 4);
}

static void contract_missing(struct store *s)
{
	struct buf out = BUF_INIT;
	char key[KEY_MAX + 64];
	uint64_t size = 77;

	buf_appends(&out, "keep");
	CHECK_RC(store_get(s, nskey(key, "miss/none"), 0, 0, &out), -ENOENT);
	CHECK_RC(store_get(s, nskey(key, "miss/none"), 5, 5, &out), -ENOENT);
	CHECK_RC(store_get(s, nskey(key, "nodir/a/b"), 0, 0, &out), -ENOENT);
	CHECK(out.len == 4 && !strcmp(buf_str(&out), "keep"));
	CHECK_RC(store_head(s, nskey(key, "miss/none"), &size), -ENOENT);
	CHECK_RC(store_head(s, nskey(key, "nodir/a/b"), &size), -ENOENT);
	CHECK_EQ_U64(size, 77);
	CHECK_RC(store_del(s, nskey(key, "miss/none")), 0);
	CHECK_RC(store_del(s, nskey(key, "nodir/a/b")), 0);

	/* del, then it is gone; del again is fine */
	put_ok(s, "miss/x", "x", 1);
	CHECK_RC(store_del(s, nskey(key, "miss/x")), 0);
	CHECK_RC(store_get(s, key, 0, 0, &out), -ENOENT);
	CHECK_RC(store_head(s, key, &size), -ENOENT);
	CHECK_RC(store_del(s, key), 0);

	/* a "directory" of other keys is not an object */
	put_ok(s, "miss/dir/child", "c", 1);
	CHECK_RC(store_get(s, nskey(key, "miss/dir"), 0, 0, &out), -ENOENT);
	CHECK_RC(store_head(s, key, &size), -ENOENT);
	CHECK_RC(store_del(s, key), 0);
	get_expect(s, "miss/dir/child", 0, 0, "c", 1);
	buf_free(&out);
}

static void contract_invalid_keys(struct store *s)
{
	static const char *const bad[] = {
		"", "/abs", "a/", "a//b", ".", "..", "a/../b", "a/./b", "./a",
		"a/..", "a b", "a\\b", "a:b", "a*", "caf\xc3\xa9", "a\nb",
		"%2e%2e", "~",
	};
	char toolong[KEY_MAX + 2];
	struct buf out = BUF_INIT;
	uint64_t size;
	size_t i;

	memset(toolong, 'x', KEY_MAX + 1);
	toolong[KEY_MAX + 1] = '\0';
	for (i = 0; i <= ARRAY_SIZE(bad); i++) {
		const char *k = i < ARRAY_SIZE(bad) ? bad[i] : toolong;

		CHECK(!store_key_valid(k));
		CHECK_RC(store_put(s, k, "x", 1), -EINVAL);
		CHECK_RC(store_get(s, k, 0, 0, &out), -EINVAL);
		CHECK_RC(store_head(s, k, &size), -EINVAL);
		CHECK_RC(store_del(s, k), -EINVAL);
	}
	CHECK(out.len == 0);
	buf_free(&out);
}

/* Keys for the listing test, below ns + "L/" (and two siblings of "L"). */
static char **list_keys(size_t *n)
{
	static const char *const fixed[] = {
		"L/k", "L/k-", "L/k.", "L/k0", "L/ka", "L/k_", "L/K", "L/j-",
		"L/j.x", "L/j0", "L/j/a", "L/j/b/c", "L/j/b-", "L/j/b.d/e",
		"L/z", "L-sibling", "L.x",
	};
	size_t nk = ARRAY_SIZE(fixed) + 100 * 3, i, j = 0;
	char **keys = calloc(nk, sizeof(*keys));
	char suffix[64];

	for (i = 0; i < ARRAY_SIZE(fixed); i++)
		keys[j++] = strdup(fixed[i]);
	for (i = 0; i < 100; i++) {
		size_t m;

		for (m = 0; m < 3; m++) {
			snprintf(suffix, sizeof(suffix), "L/m/%03zu/x%zu", i,
				 m);
			keys[j++] = strdup(suffix);
		}
	}
	*n = nk;
	return keys;
}

/* Check that listing prefix (relative to ns) yields exactly the sorted
 * subset of keys that start with it, with the right sizes. */
static void check_listing(struct store *s, char **sorted, size_t nk,
			  const char *prefix)
{
	char full[KEY_MAX + 64];
	struct listing l;
	size_t i, j = 0, nslen = strlen(ns);
	bool ok = true;

	CHECK_RC(list_all(s, nskey(full, prefix), &l), 0);
	for (i = 0; i < nk; i++) {
		if (strncmp(sorted[i], prefix, strlen(prefix)))
			continue;
		if (j >= l.n || strncmp(l.keys[j], ns, nslen) ||
		    strcmp(l.keys[j] + nslen, sorted[i]) ||
		    l.sizes[j] != strlen(sorted[i])) {
			ok = false;
			break;
		}
		j++;
	}
	if (!ok || j != l.n) {
		CHECK(!"listing differs");
		fprintf(stderr, "  prefix '%s': got %zu keys, want %zu\n",
			prefix, l.n, j);
		for (i = 0; i < l.n && i < 30; i++)
			fprintf(stderr, "    %s\n", l.keys[i]);
	} else {
		CHECK(ok);
	}
	listing_free(&l);
}

static void contract_list(struct store *s)
{
	static const char *const prefixes[] = {
		"L/", "L", "L/k", "L/k0", "L/j", "L/j/", "L/j/b", "L/j/b/",
		"L/m/05", "L/m/050/", "L/m/099/x2", "L/K", "L/nope/", "L/q",
		"L/zz", "L/j/b/c/", "L/k/", "",
	};
	char key[KEY_MAX + 64];
	struct listing l;
	size_t nk, i, found = 0, nslen = strlen(ns);
	char **keys = list_keys(&nk);
	bool ordered = true;

	/* each object holds its own suffix, so sizes are checkable */
	for (i = 0; i < nk; i++)
		put_ok(s, keys[i], keys[i], strlen(keys[i]));
	qsort(keys, nk, sizeof(*keys), cmp_str);

	for (i = 0; i < ARRAY_SIZE(prefixes); i++) {
		/* "" would reach the other tests' keys under ns */
		if (!*prefixes[i])
			continue;
		check_listing(s, keys, nk, prefixes[i]);
	}

	/* the whole store: strictly increasing, our keys all present */
	CHECK_RC(list_all(s, "", &l), 0);
	CHECK(!l.oom);
	for (i = 0; i < l.n; i++) {
		if (i && strcmp(l.keys[i - 1], l.keys[i]) >= 0)
			ordered = false;
		if (!strncmp(l.keys[i], ns, nslen) &&
		    (l.keys[i][nslen] == 'L'))
			found++;
	}
	CHECK(ordered);
	CHECK_EQ_U64(found, nk);
	listing_free(&l);

	/* the callback stops the listing, and its value is returned */
	memset(&l, 0, sizeof(l));
	l.stop_at = 3;
	l.stop_rc = 42;
	CHECK_RC(store_list(s, nskey(key, "L/"), collect_cb, &l), 42);
	CHECK_EQ_U64(l.n, 3);
	listing_free(&l);
	memset(&l, 0, sizeof(l));
	l.stop_at = 1;
	l.stop_rc = -ECANCELED;
	CHECK_RC(store_list(s, nskey(key, "L/m/"), collect_cb, &l),
		 -ECANCELED);
	CHECK_EQ_U64(l.n, 1);
	listing_free(&l);

	/* deleted keys disappear from listings */
	CHECK_RC(store_del(s, nskey(key, "L/j/b/c")), 0);
	CHECK_RC(list_all(s, nskey(key, "L/j/b"), &l), 0);
	CHECK_EQ_U64(l.n, 2);
	listing_free(&l);
	put_ok(s, "L/j/b/c", "L/j/b/c", 7);

	for (i = 0; i < nk; i++)
		free(keys[i]);
	free(keys);
}

/* Version v of the shared object: self-describing, so a torn or mixed
 * read is detected.  Length and bytes both depend on v. */
static size_t version_len(uint32_t v)
{
	return 8 + (size_t)(v * 2654435761u % 40000);
}

static void make_version(uint32_t v, struct buf *b)
{
	size_t len = version_len(v);

	buf_reset(b);
	buf_reserve(b, len);
	b->data[0] = (uint8_t)v;
	b->data[1] = (uint8_t)(v >> 8);
	b->data[2] = (uint8_t)(v >> 16);
	b->data[3] = (uint8_t)(v >> 24);
	fill_pattern(b->data + 4, len - 4, v + 1);
	b->len = len;
}

static bool version_ok(const struct buf *got, struct buf *scratch)
{
	uint32_t v;

	if (got->len < 8)
		return false;
	v = (uint32_t)got->data[0] | (uint32_t)got->data[1] << 8 |
	    (uint32_t)got->data[2] << 16 | (uint32_t)got->data[3] << 24;
	make_version(v, scratch);
	return got->len == scratch->len &&
	       !memcmp(got->data, scratch->data, got->len);
}

struct worker {
	pthread_t tid;
	struct store *s;
	unsigned id;
	unsigned errors;
	unsigned reads;
};

static void *contract_worker(void *arg)
{
	struct worker *w = arg;
	struct buf want = BUF_INIT, got = BUF_INIT, scratch = BUF_INIT;
	char key[KEY_MAX + 64], shared[KEY_MAX + 64], sfx[64];
	unsigned j;

	nskey(shared, "conc/shared");
	for (j = 0; j < N_ROUNDS; j++) {
		uint32_t v = w->id * 100000 + j + 1;

		/* a distinct key of our own */
		snprintf(sfx, sizeof(sfx), "conc/t%u/%u", w->id, j);
		make_version(v, &want);
		if (store_put(w->s, nskey(key, sfx), want.data, want.len))
			w->errors++;
		buf_reset(&got);
		if (store_get(w->s, key, 0, 0, &got) ||
		    got.len != want.len ||
		    memcmp(got.data, want.data, want.len))
			w->errors++;

		/* the same key as everyone else, written and read */
		if (store_put(w->s, shared, want.data, want.len))
			w->errors++;
		buf_reset(&got);
		if (store_get(w->s, shared, 0, 0, &got) ||
		    !version_ok(&got, &scratch))
			w->errors++;
		w->reads++;

		/* a neighbour's keys, which may or may not exist yet */
		snprintf(sfx, sizeof(sfx), "conc/t%u/%u",
			 (w->id + 1) % N_THREADS, j);
		buf_reset(&got);
		switch (store_get(w->s, nskey(key, sfx), 0, 0, &got)) {
		case 0:
			if (!version_ok(&got, &scratch))
				w->errors++;
			break;
		case -ENOENT:
			break;
		default:
			w->errors++;
		}
	}
	buf_free(&want);
	buf_free(&got);
	buf_free(&scratch);
	return NULL;
}

static void contract_concurrent(struct store *s)
{
	struct worker w[N_THREADS];
	struct buf b = BUF_INIT, got = BUF_INIT, scratch = BUF_INIT;
	char sfx[64];
	unsigned i, j, errors = 0, reads = 0;

	make_version(0, &b);
	put_ok(s, "conc/shared", b.data, b.len);
	for (i = 0; i < N_THREADS; i++) {
		w[i] = (struct worker){ .s = s, .id = i };
		CHECK(pthread_create(&w[i].tid, NULL, contract_worker,
				     &w[i]) == 0);
	}
	for (i = 0; i < N_THREADS; i++) {
		pthread_join(w[i].tid, NULL);
		errors += w[i].errors;
		reads += w[i].reads;
	}
	CHECK_EQ_U64(errors, 0);
	CHECK_EQ_U64(reads, N_THREADS * N_ROUNDS);

	/* every distinct key holds its own version */
	for (i = 0; i < N_THREADS; i++) {
		for (j = 0; j < N_ROUNDS; j++) {
			snprintf(sfx, sizeof(sfx), "conc/t%u/%u", i, j);
			make_version(i * 100000 + j + 1, &b);
			get_expect(s, sfx, 0, 0, b.data, b.len);
		}
	}
	/* the shared key holds one complete version */
	{
		char key[KEY_MAX + 64];

		CHECK_RC(store_get(s, nskey(key, "conc/shared"), 0, 0, &got),
			 0);
		CHECK(version_ok(&got, &scratch));
	}
	buf_free(&b);
	buf_free(&got);
	buf_free(&scratch);
}

static void contract_large(struct store *s)
{
	uint8_t *data = malloc(LARGE_SIZE);
	char key[KEY_MAX + 64];
	uint64_t size = 0;

	if (!data) {
		CHECK(!"out of memory");
		return;
	}
	fill_pattern(data, LARGE_SIZE, 12345);
	put_ok(s, "large/8m", data, LARGE_SIZE);
	CHECK_RC(store_head(s, nskey(key, "large/8m"), &size), 0);
	CHECK_EQ_U64(size, LARGE_SIZE);
	get_expect(s, "large/8m", 0, 0, data, LARGE_SIZE);
	get_expect(s, "large/8m", (4u << 20) - 10, 100,
		   data + (4u << 20) - 10, 100);
	get_expect(s, "large/8m", 1u << 20, 1u << 20, data + (1u << 20),
		   1u << 20);
	get_expect(s, "large/8m", LARGE_SIZE - 1, 0, data + LARGE_SIZE - 1,
		   1);
	get_expect(s, "large/8m", LARGE_SIZE - 3, 1000, data + LARGE_SIZE - 3,
		   3);
	CHECK_RC(store_del(s, key), 0);
	CHECK_RC(store_head(s, key, &size), -ENOENT);
	free(data);
}

/*
 * del_many: more keys than one S3 DeleteObjects request takes, with
 * missing and invalid keys among them; each key gets del's answer, and
 * exactly the listed keys are gone.
 */
#define MANY_KEYS 1030
static void contract_del_many(struct store *s)
{
	char (*keys)[KEY_MAX + 64] = calloc(MANY_KEYS + 3, sizeof(*keys));
	const char **ptrs = calloc(MANY_KEYS + 3, sizeof(*ptrs));
	int *res = calloc(MANY_KEYS + 3, sizeof(*res));
	char suffix[64], key[KEY_MAX + 64];
	struct listing l;
	uint64_t size;
	size_t i, n = 0;

	if (!keys || !ptrs || !res) {
		CHECK(!"out of memory");
		goto out;
	}
	for (i = 0; i < MANY_KEYS; i++) {
		snprintf(suffix, sizeof(suffix), "many/%04zu", i);
		put_ok(s, suffix, suffix, strlen(suffix));
		/* every third key stays */
		if (i % 3)
			nskey(keys[n++], suffix);
	}
	nskey(keys[n++], "many/missing");
	snprintf(keys[n++], sizeof(keys[0]), "%s", "bad//key");
	nskey(keys[n++], "many/also-missing");
	for (i = 0; i < n; i++) {
		ptrs[i] = keys[i];
		res[i] = 12345;
	}
	CHECK_RC(store_del_many(s, ptrs, n, res), -EINVAL);
	for (i = 0; i < n; i++)
		CHECK_RC(res[i], i == n - 2 ? -EINVAL : 0);
	CHECK_RC(list_all(s, nskey(key, "many/"), &l), 0);
	CHECK_EQ_U64(l.n, (MANY_KEYS + 2) / 3);
	for (i = 0; i < l.n; i++) {
		const char *num = strrchr(l.keys[i], '/') + 1;

		CHECK(strtoul(num, NULL, 10) % 3 == 0);
	}
	listing_free(&l);
	CHECK_RC(store_head(s, nskey(key, "many/0000"), &size), 0);
	CHECK_RC(store_head(s, nskey(key, "many/0001"), &size), -ENOENT);
	/* nothing to do is success; results may be NULL */
	CHECK_RC(store_del_many(s, ptrs, 0, NULL), 0);
	CHECK_RC(store_del_many(s, ptrs, 2, NULL), 0);
out:
	free(keys);
	free(ptrs);
	free(res);
}

/* Delete everything under ns and check that nothing is left. */
static void contract_cleanup(struct store *s)
{
	struct listing l;
	size_t i;

	CHECK_RC(list_all(s, ns, &l), 0);
	CHECK(l.n > 0);
	for (i = 0; i < l.n; i++)
		CHECK_RC(store_del(s, l.keys[i]), 0);
	listing_free(&l);
	contract_del_many(s);
	CHECK_RC(list_all(s, ns, &l), 0);
	CHECK(l.n > 0);
	CHECK_RC(store_del_many(s, (const char *const *)l.keys, l.n, NULL), 0);
	listing_free(&l);
	CHECK_RC(list_all(s, ns, &l), 0);
	CHECK_EQ_U64(l.n, 0);
	listing_free(&l);
}

/*
 * Put batches: a sync makes what was handed over durable, results[i] the
 * i-th put's (a bad key fails alone); an object is whole or absent until
 * then; what a store stages and never syncs does not appear.
 */
static void contract_batch(struct store *s)
{
	struct store_batch *b = NULL;
	struct buf out = BUF_INIT;
	struct listing l;
	uint8_t data[20][300];
	char key[KEY_MAX + 64], sfx[64];
	int results[21], i;

	CHECK_RC(store_batch_new(s, &b), 0);
	if (!b)
		return;
	CHECK_RC(store_batch_sync(b, NULL), 0);
	put_ok(s, "batch/d0/k0", "old", 3);
	for (i = 0; i < 20; i++) {
		fill_pattern(data[i], sizeof(data[i]), (uint64_t)i + 77);
		snprintf(sfx, sizeof(sfx), "batch/d%d/k%d", i % 4, i);
		CHECK_RC(store_batch_put(b, nskey(key, sfx), data[i],
					 sizeof(data[i]) - (size_t)i), 0);
		if (i == 9)
			CHECK_RC(store_batch_put(b, "bad//key", "x", 1), 0);
	}
	CHECK_EQ_U64(store_batch_len(b), 21);
	CHECK_RC(store_batch_sync(b, results), -EINVAL);
	CHECK_EQ_U64(store_batch_len(b), 0);
	for (i = 0; i < 21; i++)
		CHECK_RC(results[i], i == 10 ? -EINVAL : 0);
	for (i = 0; i < 20; i++) {
		snprintf(sfx, sizeof(sfx), "batch/d%d/k%d", i % 4, i);
		get_expect(s, sfx, 0, 0, data[i], sizeof(data[i]) - (size_t)i);
	}
	CHECK_RC(list_all(s, nskey(key, "batch/"), &l), 0);
	CHECK_EQ_U64(l.n, 20);
	listing_free(&l);

	/* dropped unsynced: absent where staged, put at once elsewhere */
	CHECK_RC(store_batch_put(b, nskey(key, "batch/d9/gone"), "g", 1), 0);
	CHECK_RC(store_batch_put(b, nskey(key, "batch/d0/k0"), "new", 3), 0);
	store_batch_free(b);
	if (store_batch_native(s)) {
		get_expect(s, "batch/d0/k0", 0, 0, data[0], sizeof(data[0]));
		CHECK_RC(store_get(s, nskey(key, "batch/d9/gone"), 0, 0,
				   &out), -ENOENT);
	} else {
		get_expect(s, "batch/d0/k0", 0, 0, "new", 3);
		get_expect(s, "batch/d9/gone", 0, 0, "g", 1);
	}
	buf_free(&out);
}

/*
 * The store contract of store.h, clause by clause, against any backend.
 */
static void run_contract(struct store *s)
{
	uint64_t seed = now_mono_ns() ^ ((uint64_t)getpid() << 32);

	snprintf(ns, sizeof(ns), "ct-%08" PRIx32 "/",
		 (uint32_t)rng_next(&seed));
	contract_basic(s);
	contract_overwrite(s);
	contract_missing(s);
	contract_invalid_keys(s);
	contract_list(s);
	contract_concurrent(s);
	contract_large(s);
	contract_batch(s);
	contract_cleanup(s);
}

static void test_key_valid(void)
{
	static const char *const good[] = {
		"a", "A", "0", "_", "-", ".a", "a.", "..a", "a..", "...",
		"data/ab/0123", "a-b_c.D/E9", "x/y/z/w",
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(good); i++)
		CHECK(store_key_valid(good[i]));
	CHECK(!store_key_valid(NULL));
}

/* The file backend; its concurrent and failed puts leave no temp file
 * behind. */
static void test_file_contract(const char *tmp)
{
	struct buf root = BUF_INIT;
	struct store *s = NULL;

	buf_appendf(&root, "%s/file", tmp);
	CHECK_RC(store_file_open(buf_str(&root), 1, &s), 0);
	if (s) {
		run_contract(s);
		CHECK_EQ_U64(count_names_with(buf_str(&root), '~'), 0);
		store_close(s);
	}
	buf_free(&root);
}

/* The fault wrapper, disarmed, over the file backend: a conforming store
 * that counts every call the contract made. */
static void test_fault_contract(const char *tmp)
{
	struct store_fault_counts c0, d;
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
	store_fault_get_counts(s, &c0);
	run_contract(s);
	counts_diff(s, &c0, &d);
	CHECK(d.calls[0] > 0 && d.calls[1] > 0 && d.calls[2] > 0 &&
	      d.calls[3] > 0 && d.calls[4] > 0);
	CHECK_EQ_U64(d.failed, 0);
	CHECK(d.bytes_put >= LARGE_SIZE && d.bytes_got >= LARGE_SIZE);
	store_close(s); /* closes inner too */
out:
	buf_free(&root);
}

/* ---- S3: test_s3 needs scripts/s3server.sh's environment ---- */

static const char *s3_secret(void)
{
	return getenv("AWS_SECRET_ACCESS_KEY");
}

/* Open s3://bucket/<name> with the test options; err gets the message. */
static int s3_open(const char *bucket, const char *prefix,
		   const struct store_options *o, struct store **s,
		   struct buf *err)
{
	struct buf loc = BUF_INIT;
	int rc;

	buf_appendf(&loc, "s3://%s%s%s", bucket, prefix ? "/" : "",
		    prefix ? prefix : "");
	buf_reset(err);
	rc = store_open_opts(buf_str(&loc), 0, o, s, err);
	buf_free(&loc);
	return rc;
}

/* Bad credentials and locations fail at open, with one clear line that
 * names the bucket and what the server said, and never the secret. */
static void test_s3_refusals(const char *ep, const char *bucket,
			     const char *tmp)
{
	struct store_options o = { .endpoint = ep, .attempts = 2 };
	struct buf err = BUF_INIT, path = BUF_INIT;
	char *secret = strdup(s3_secret());
	char *key = strdup(getenv("AWS_ACCESS_KEY_ID"));
	struct store *s = NULL;
	FILE *f;

	/* a wrong secret key */
	setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-0123456789", 1);
	CHECK_RC(s3_open(bucket, "x", &o, &s, &err), -EACCES);
	CHECK(s == NULL);
	CHECK(strstr(buf_str(&err), "SignatureDoesNotMatch") != NULL);
	CHECK(strstr(buf_str(&err), bucket) != NULL);
	CHECK(strstr(buf_str(&err), ep) != NULL);
	CHECK(strstr(buf_str(&err), "wrong-secret") == NULL);
	printf("wrong secret: %s\n", buf_str(&err));
	/* an unknown access key */
	setenv("AWS_ACCESS_KEY_ID", "AKIDNOSUCHKEY000", 1);
	CHECK_RC(s3_open(bucket, "x", &o, &s, &err), -EACCES);
	CHECK(strstr(buf_str(&err), "InvalidAccessKeyId") != NULL);
	setenv("AWS_ACCESS_KEY_ID", key, 1);
	setenv("AWS_SECRET_ACCESS_KEY", secret, 1);

	/* a missing bucket */
	CHECK_RC(s3_open("mf-no-such-bucket", NULL, &o, &s, &err), -ENOENT);
	CHECK(strstr(buf_str(&err), "NoSuchBucket") != NULL);
	CHECK(strstr(buf_str(&err), "mf-no-such-bucket") != NULL);
	printf("missing bucket: %s\n", buf_str(&err));

	/* nothing listening */
	o.endpoint = "http://127.0.0.1:1";
	CHECK_RC(s3_open(bucket, NULL, &o, &s, &err), -EIO);
	CHECK(strstr(buf_str(&err), "cannot reach") != NULL);
	printf("no server: %s\n", buf_str(&err));
	o.endpoint = ep;

	/* an explicit credentials file: refused when others can read it */
	buf_appendf(&path, "%s/creds", tmp);
	f = fopen(buf_str(&path), "w");
	CHECK(f != NULL);
	if (f) {
		fprintf(f, "[default]\naws_access_key_id = %s\n"
			   "aws_secret_access_key = %s\n", key, secret);
		fclose(f);
	}
	chmod(buf_str(&path), 0644);
	o.credentials = buf_str(&path);
	CHECK_RC(s3_open(bucket, NULL, &o, &s, &err), -EPERM);
	CHECK(strstr(buf_str(&err), "readable by others") != NULL);
	chmod(buf_str(&path), 0600);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	CHECK_RC(s3_open(bucket, NULL, &o, &s, &err), 0);
	store_close(s);
	s = NULL;
	/* and no credentials at all is one clear line too */
	o.credentials = NULL;
	setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent", 1);
	setenv("AWS_CONFIG_FILE", "/nonexistent", 1);
	CHECK_RC(s3_open(bucket, NULL, &o, &s, &err), -EACCES);
	CHECK(strstr(buf_str(&err), "no S3 credentials") != NULL);
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	unsetenv("AWS_CONFIG_FILE");
	setenv("AWS_ACCESS_KEY_ID", key, 1);
	setenv("AWS_SECRET_ACCESS_KEY", secret, 1);

	/* malformed locations never reach the network */
	CHECK_RC(s3_open("ab", NULL, &o, &s, &err), -EINVAL);
	CHECK_RC(s3_open(bucket, "a//b", &o, &s, &err), -EINVAL);
	o.endpoint = "ftp://127.0.0.1";
	CHECK_RC(s3_open(bucket, NULL, &o, &s, &err), -EINVAL);
	free(secret);
	free(key);
	buf_free(&err);
	buf_free(&path);
}

/*
 * A one-thread HTTP listener on 127.0.0.1 that answers every request 403
 * and keeps the x-amz-content-sha256 header of the first one: what the
 * S3 backend put in its signature.
 */
struct hdr_listener {
	int fd;
	int port;
	char sha[80];
	pthread_t thread;
};

static void *hdr_listen_thread(void *arg)
{
	static const char reply[] = "HTTP/1.1 403 Forbidden\r\n"
				    "Content-Length: 0\r\n"
				    "Connection: close\r\n\r\n";
	struct hdr_listener *l = arg;
	int c;

	while ((c = accept(l->fd, NULL, NULL)) >= 0) {
		char req[8192];
		size_t n = 0;
		ssize_t r;
		const char *h;

		while (n < sizeof(req) - 1 &&
		       (r = read(c, req + n, sizeof(req) - 1 - n)) > 0) {
			n += (size_t)r;
			req[n] = 0;
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		req[n] = 0;
		h = strcasestr(req, "\r\nx-amz-content-sha256:");
		if (h && !l->sha[0])
			sscanf(h + 23, " %79[^\r\n]", l->sha);
		if (write(c, reply, sizeof(reply) - 1) < 0)
			perror("write");
		close(c);
	}
	return NULL;
}

static int hdr_listen(struct hdr_listener *l)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);

	memset(l, 0, sizeof(*l));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(l->fd, 8) ||
	    getsockname(l->fd, (struct sockaddr *)&a, &alen))
		return -1;
	l->port = ntohs(a.sin_port);
	return pthread_create(&l->thread, NULL, hdr_listen_thread, l);
}

static void hdr_unlisten(struct hdr_listener *l)
{
	shutdown(l->fd, SHUT_RDWR);
	pthread_join(l->thread, NULL);
	close(l->fd);
}

/* What the signature covers: a loopback endpoint gets UNSIGNED-PAYLOAD
 * (no wire to damage the body), sign_payload the body's SHA-256. */
static void test_s3_payload_signing(void)
{
	static const char *const hosts[] = { "127.0.0.1", "localhost" };
	static const char empty_sha[] = "e3b0c44298fc1c149afbf4c8996fb924"
					"27ae41e4649b934ca495991b7852b855";
	struct store_options o = { .attempts = 1 };
	struct buf err = BUF_INIT, ep = BUF_INIT;
	struct hdr_listener l;
	struct store *s = NULL;
	size_t i;
	int sign;

	setenv("AWS_ACCESS_KEY_ID", "AKIDLISTENERTEST", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "listener-secret", 1);
	for (sign = 0; sign < 2; sign++) {
		for (i = 0; i < ARRAY_SIZE(hosts); i++) {
			if (hdr_listen(&l)) {
				CHECK(!"listener");
				return;
			}
			buf_reset(&ep);
			buf_appendf(&ep, "http://%s:%d", hosts[i], l.port);
			o.endpoint = buf_str(&ep);
			o.sign_payload = sign;
			CHECK_RC(s3_open("mf-listener", NULL, &o, &s, &err),
				 -EACCES);
			hdr_unlisten(&l);
			CHECK(!strcmp(l.sha, sign ? empty_sha :
					     "UNSIGNED-PAYLOAD"));
			if (strcmp(l.sha, sign ? empty_sha :
					  "UNSIGNED-PAYLOAD"))
				printf("%s sign_payload=%d: '%s'\n", hosts[i],
				       sign, l.sha);
		}
	}
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	buf_free(&err);
	buf_free(&ep);
}

static int test_s3(const char *tmp)
{
	const char *ep = getenv("METAFUSE_S3_ENDPOINT");
	const char *bucket = getenv("METAFUSE_S3_BUCKET");
	struct store_options o = { 0 };
	struct buf err = BUF_INIT, prefix = BUF_INIT;
	struct store *s = NULL;
	uint64_t seed = now_mono_ns() ^ (uint64_t)getpid();
	int sign;

	if (!ep || !bucket || !getenv("AWS_ACCESS_KEY_ID") || !s3_secret()) {
		printf("t_store: SKIP: the S3 conformance run needs "
		       "METAFUSE_S3_ENDPOINT, METAFUSE_S3_BUCKET and AWS "
		       "credentials (scripts/s3server.sh start DIR; "
		       ". DIR/env)\n");
		return 77;
	}
	/* a fresh prefix, so list("") sees only this run; a small part
	 * size, so the 8 MiB object goes up in parts */
	buf_appendf(&prefix, "t_store-%08" PRIx32, (uint32_t)rng_next(&seed));
	o.endpoint = ep;
	o.part_size = 5u << 20;
	o.connections = 3; /* fewer than the contract's threads: they wait */
	/* twice: bodies unsigned (a loopback server), then hashed into
	 * every signature, which the server checks */
	for (sign = 0; sign < 2; sign++) {
		o.sign_payload = sign;
		CHECK_RC(s3_open(bucket, buf_str(&prefix), &o, &s, &err), 0);
		if (!s) {
			fprintf(stderr, "%s\n", buf_str(&err));
			continue;
		}
		CHECK(!strcmp(s->ops->name, "s3"));
		CHECK(!strncmp(s->url, "s3://", 5));
		run_contract(s);
		store_close(s);
	}
	test_s3_refusals(ep, bucket, tmp);
	buf_free(&err);
	buf_free(&prefix);
	return check_done("t_store (s3)");
}

/* A store_ahead over n keys "ahead/NN" (key 5 missing when hole): read
 * `upto` of them, checking each; returns the most gets at once. */

int main(int argc, char **argv)
{
	char tmp[] = "/tmp/t_store.XXXXXX";

	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	if (argc > 1 && !strcmp(argv[1], "s3")) {
		int rc = test_s3(tmp);

		rm_rf(tmp);
		return rc;
	}
	test_key_valid();
	test_file_contract(tmp);
	test_fault_contract(tmp);
	test_s3_payload_signing();
	/* more backends: open one and call run_contract() on it here */
	rm_rf(tmp);
	return check_done("t_store");
}
