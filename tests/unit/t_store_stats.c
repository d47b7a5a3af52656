/*
 * t_store_stats.c - the stores' request counters and the price arithmetic
 * (store_stats.c): what each call of the file backend counts, a wrapper
 * sharing its inner store's counters, the prices and price files a mount
 * takes, and the cost of a month; with scripts/s3server.sh's environment
 * also what the S3 backend counts per HTTP request.
 */
#include "util/compat.h"

#include <math.h>

#include "check.h"
#include "store/store.h"
#include "t_store.h"
#include "util/util.h"

/* The difference of two readings of s's counters. */
static void traffic_since(struct store *s, const struct store_traffic *t0,
			  struct store_traffic *d)
{
	struct store_traffic t;
	unsigned i;

	store_counters_read(s->counters, &t);
	for (i = 0; i < STORE_REQ_KINDS; i++)
		d->req[i] = t.req[i] - t0->req[i];
	d->bytes_up = t.bytes_up - t0->bytes_up;
	d->bytes_down = t.bytes_down - t0->bytes_down;
	d->errors = t.errors - t0->errors;
	d->retries = t.retries - t0->retries;
}

static int count_cb(const char *key, uint64_t size, void *arg)
{
	(*(uint64_t *)arg)++;
	return 0;
}

static int stop_cb(const char *key, uint64_t size, void *arg)
{
	return 1; /* "found it": the callback's word, not a failure */
}

/* Every call of the file backend, as the request S3 would make. */
static void test_file_counts(const char *tmp)
{
	struct store *s = NULL;
	struct store_traffic t0, d;
	struct buf out = BUF_INIT, path = BUF_INIT;
	uint64_t size, n = 0;
	unsigned i;
	char key[32];

	buf_appendf(&path, "%s/file", tmp);
	CHECK_RC(store_open(buf_str(&path), 1, &s, NULL), 0);
	CHECK(s->counters != NULL);
	store_counters_read(s->counters, &t0);
	CHECK_RC(store_put(s, "a/x", "12345", 5), 0);
	CHECK_RC(store_put(s, "a/y", "678", 3), 0);
	CHECK_RC(store_get(s, "a/x", 1, 3, &out), 0);
	CHECK_RC(store_get(s, "a/x", 0, 0, &out), 0);
	CHECK_RC(store_get(s, "a/missing", 0, 0, &out), -ENOENT);
	CHECK_RC(store_head(s, "a/y", &size), 0);
	CHECK_RC(store_del(s, "a/none"), 0);
	CHECK_RC(store_list(s, "a/", count_cb, &n), 0);
	CHECK_EQ_U64(n, 2);
	traffic_since(s, &t0, &d);
	CHECK_EQ_U64(d.req[STORE_REQ_PUT], 2);
	CHECK_EQ_U64(d.req[STORE_REQ_GET], 3);
	CHECK_EQ_U64(d.req[STORE_REQ_HEAD], 1);
	CHECK_EQ_U64(d.req[STORE_REQ_DELETE], 1);
	CHECK_EQ_U64(d.req[STORE_REQ_LIST], 1);
	CHECK_EQ_U64(d.req[STORE_REQ_POST] + d.req[STORE_REQ_DELETE_MULTI],
		     0);
	CHECK_EQ_U64(d.bytes_up, 8);
	CHECK_EQ_U64(d.bytes_down, 3 + 5);
	/* a missing object is an answer, not an error */
	CHECK_EQ_U64(d.errors, 0);
	CHECK_EQ_U64(store_traffic_requests(&d), 8);

	/* a listing is a LIST per 1,000 keys, as S3 pages it; an empty one
	 * is still one */
	for (i = 0; i < 2001; i++) {
		snprintf(key, sizeof(key), "many/%05u", i);
		CHECK_RC(store_put(s, key, "", 0), 0);
	}
	store_counters_read(s->counters, &t0);
	n = 0;
	CHECK_RC(store_list(s, "many/", count_cb, &n), 0);
	CHECK_EQ_U64(n, 2001);
	CHECK_RC(store_list(s, "nothing/", count_cb, &n), 0);
	/* a callback that stops the listing is not the store failing */
	CHECK_RC(store_list(s, "many/", stop_cb, NULL), 1);
	/* del_many without a batch call: one DELETE per key */
	{
		const char *keys[] = { "many/00000", "many/00001" };

		CHECK_RC(store_del_many(s, keys, 2, NULL), 0);
	}
	/* a bad key fails: an error */
	CHECK_RC(store_put(s, "../x", "", 0), -EINVAL);
	traffic_since(s, &t0, &d);
	CHECK_EQ_U64(d.req[STORE_REQ_LIST], 3 + 1 + 1);
	CHECK_EQ_U64(d.req[STORE_REQ_DELETE], 2);
	CHECK_EQ_U64(d.req[STORE_REQ_PUT], 1);
	CHECK_EQ_U64(d.errors, 1);
	CHECK_EQ_U64(d.retries, 0);
	store_close(s);
	buf_free(&out);
	buf_free(&path);
}

/* A wrapper counts in its inner store's counters; what it fails on
 * purpose is an error there. */
static void test_fault_shares(const char *tmp)
{
	struct store *inner = NULL, *s = NULL;
	struct store_traffic t0, d;
	struct buf path = BUF_INIT, out = BUF_INIT;

	buf_appendf(&path, "%s/fault", tmp);
	CHECK_RC(store_open(buf_str(&path), 1, &inner, NULL), 0);
	CHECK_RC(store_fault_wrap(inner, &s), 0);
	CHECK(s->counters == inner->counters);
	store_counters_read(s->counters, &t0);
	CHECK_RC(store_put(s, "k", "abc", 3), 0);
	store_fault_arm(s, STORE_OP_GET, 0, 1, EIO);
	CHECK_RC(store_get(s, "k", 0, 0, &out), -EIO);
	CHECK_RC(store_get(s, "k", 0, 0, &out), 0);
	traffic_since(s, &t0, &d);
	CHECK_EQ_U64(d.req[STORE_REQ_PUT], 1);
	CHECK_EQ_U64(d.req[STORE_REQ_GET], 1); /* the failed one never left */
	CHECK_EQ_U64(d.errors, 1);
	CHECK_EQ_U64(d.bytes_down, 3);
	store_close(s);
	buf_free(&path);
	buf_free(&out);
}

static bool near(double a, double b)
{
	return fabs(a - b) <= 1e-9 * MF_MAX(1.0, fabs(b));
}

static void test_prices(void)
{
	struct store_prices p = { 0 };
	struct buf err = BUF_INIT;

	/* untold: AWS S3 Standard, us-east-1 */
	CHECK(store_price(&p, STORE_PRICE_STORAGE_GB_MONTH) == 0.023);
	CHECK(store_price(&p, STORE_PRICE_PUT_1K) == 0.005);
	CHECK(store_price(&p, STORE_PRICE_GET_1K) == 0.0004);
	CHECK(store_price(&p, STORE_PRICE_EGRESS_GB) == 0.09);
	CHECK(!strcmp(store_price_name(STORE_PRICE_PUT_1K), "price_put_1k"));

	CHECK_RC(store_price_set(&p, "price_put_1k", "0.0055"), 0);
	CHECK(store_price(&p, STORE_PRICE_PUT_1K) == 0.0055);
	CHECK_RC(store_price_set(&p, "price_egress_gb", "0"), 0);
	CHECK(store_price(&p, STORE_PRICE_EGRESS_GB) == 0);
	CHECK_RC(store_price_set(&p, "price_get_1k", "4."), 0);
	CHECK_RC(store_price_set(&p, "price_get_1k", ".5"), 0);
	CHECK(store_price(&p, STORE_PRICE_GET_1K) == 0.5);
	/* the others keep their defaults */
	CHECK(store_price(&p, STORE_PRICE_STORAGE_GB_MONTH) == 0.023);

	/* not a non-negative number: refused, the price unchanged */
	{
		static const char *const bad[] = {
			"", "-1", "+1", "abc", "1e3", "0x10", "inf", "nan",
			"1,5", "1.2.3", ".", " 1", "1 ", "$1", "1USD",
		};
		size_t i;

		for (i = 0; i < ARRAY_SIZE(bad); i++) {
			CHECK_RC(store_price_set(&p, "price_get_1k", bad[i]),
				 -EINVAL);
			CHECK(store_price(&p, STORE_PRICE_GET_1K) == 0.5);
		}
		CHECK_RC(store_price_set(&p, "price_get_1k", NULL), -EINVAL);
	}
	CHECK_RC(store_price_set(&p, "price_bogus", "1"), -ENOENT);
	/* the short names are for price files */
	CHECK_RC(store_price_set(&p, "storage_gb_month", "0.02"), 0);
	CHECK(store_price(&p, STORE_PRICE_STORAGE_GB_MONTH) == 0.02);

	/* a price file */
	memset(&p, 0, sizeof(p));
	CHECK_RC(store_prices_parse(&p,
				    "# Backblaze-like\n"
				    "\n"
				    "  storage_gb_month = 0.006\n"
				    "price_put_1k=0\r\n"
				    "get_1k=0.0004\n"
				    "egress_gb=0.01",
				    &err),
		 0);
	CHECK(store_price(&p, STORE_PRICE_STORAGE_GB_MONTH) == 0.006);
	CHECK(store_price(&p, STORE_PRICE_PUT_1K) == 0);
	CHECK(store_price(&p, STORE_PRICE_EGRESS_GB) == 0.01);
	CHECK(err.len == 0);

	CHECK_RC(store_prices_parse(&p, "put_1k=1\nbogus=2\n", &err),
		 -ENOENT);
	CHECK(strstr(buf_str(&err), "line 2") != NULL);
	CHECK(strstr(buf_str(&err), "unknown price 'bogus'") != NULL);
	CHECK(strchr(buf_str(&err), '\n') == NULL);
	CHECK(store_price(&p, STORE_PRICE_PUT_1K) == 1); /* line 1 held */
	buf_reset(&err);
	CHECK_RC(store_prices_parse(&p, "# x\nget_1k = -3\n", &err), -EINVAL);
	CHECK(strstr(buf_str(&err), "line 2") != NULL);
	CHECK(strstr(buf_str(&err), "not a non-negative number") != NULL);
	buf_reset(&err);
	CHECK_RC(store_prices_parse(&p, "get_1k 3\n", &err), -EINVAL);
	CHECK(strstr(buf_str(&err), "line 1: not key=value") != NULL);
	buf_free(&err);
}

static void test_cost(void)
{
	struct store_prices p = { 0 };
	struct store_traffic t = { 0 };
	struct store_cost c;

	/* an hour of 1,000 PUT, 10,000 GET, 500 DELETE and 1 GiB down, with
	 * 10 GiB stored; a month is 730 hours */
	t.req[STORE_REQ_PUT] = 1000;
	t.req[STORE_REQ_GET] = 10000;
	t.req[STORE_REQ_DELETE] = 500;
	t.bytes_down = 1ULL << 30;
	t.bytes_up = 5ULL << 30; /* uploads are free */
	store_cost_month(&p, &t, 3600, 10ULL << 30, &c);
	CHECK(near(c.storage, 0.23));
	CHECK(near(c.requests, (5.0 + 4.0) / 1000 * 1000 * 730 / 1000));
	CHECK(near(c.requests, 6.57));
	CHECK(near(c.egress, 0.09 * 730));
	CHECK(near(c.total, 0.23 + 6.57 + 65.7));

	/* POST, LIST and DELETE_MULTI at the PUT price, HEAD at GET's,
	 * DELETE free */
	memset(&t, 0, sizeof(t));
	t.req[STORE_REQ_POST] = 1000;
	t.req[STORE_REQ_LIST] = 1000;
	t.req[STORE_REQ_DELETE_MULTI] = 1000;
	t.req[STORE_REQ_HEAD] = 1000;
	t.req[STORE_REQ_DELETE] = 1000000;
	store_cost_month(&p, &t, STORE_MONTH_S, 0, &c);
	CHECK(near(c.requests, 3 * 0.005 + 0.0004));
	CHECK(c.storage == 0 && c.egress == 0);

	/* prices set to 0 cost nothing; under a second counts as one */
	CHECK_RC(store_price_set(&p, "price_put_1k", "0"), 0);
	CHECK_RC(store_price_set(&p, "price_get_1k", "0"), 0);
	store_cost_month(&p, &t, 0, 0, &c);
	CHECK(c.total == 0);
	memset(&p, 0, sizeof(p));
	memset(&t, 0, sizeof(t));
	t.req[STORE_REQ_GET] = 1;
	store_cost_month(&p, &t, 0.001, 0, &c);
	CHECK(isfinite(c.total));
	CHECK(near(c.requests, 0.0004 / 1000 * STORE_MONTH_S));
	CHECK(!strcmp(store_req_name(STORE_REQ_DELETE_MULTI),
		      "DELETE_MULTI"));
}

/* With the S3 server of the environment: a request per HTTP request. */
static void test_s3_counts(void)
{
	const char *ep = getenv("METAFUSE_S3_ENDPOINT");
	const char *bucket = getenv("METAFUSE_S3_BUCKET");
	struct store_options o = { 0 };
	struct buf loc = BUF_INIT, out = BUF_INIT;
	struct store_traffic t0, d;
	struct store *s = NULL;
	uint8_t *big;
	uint64_t size, n = 0, seed = now_mono_ns();
	const char *keys[] = { "b", "c", "d" };

	if (!ep || !bucket || !getenv("AWS_ACCESS_KEY_ID")) {
		printf("t_store_stats: no S3 server in the environment; the "
		       "S3 counts are not checked\n");
		return;
	}
	o.endpoint = ep;
	o.part_size = 5u << 20;
	buf_appendf(&loc, "s3://%s/t_store_stats-%016" PRIx64, bucket, seed);
	CHECK_RC(store_open_opts(buf_str(&loc), 0, &o, &s, NULL), 0);
	if (!s)
		goto out;
	big = calloc(1, 11u << 20);
	store_counters_read(s->counters, &t0);
	CHECK_RC(store_put(s, "a", "12345", 5), 0);
	CHECK_RC(store_put(s, "b", "x", 1), 0);
	CHECK_RC(store_put(s, "c", "y", 1), 0);
	CHECK_RC(store_put(s, "d", "z", 1), 0);
	/* 11 MiB in 5 MiB parts: a POST, three PUTs, a POST */
	CHECK_RC(big ? store_put(s, "big", big, 11u << 20) : -ENOMEM, 0);
	CHECK_RC(store_get(s, "a", 0, 0, &out), 0);
	CHECK_RC(store_get(s, "missing", 0, 0, &out), -ENOENT);
	CHECK_RC(store_head(s, "a", &size), 0);
	CHECK_RC(store_list(s, "", count_cb, &n), 0);
	CHECK_EQ_U64(n, 5);
	CHECK_RC(store_del(s, "a"), 0);
	CHECK_RC(store_del_many(s, keys, 3, NULL), 0);
	CHECK_RC(store_del(s, "big"), 0);
	traffic_since(s, &t0, &d);
	CHECK_EQ_U64(d.req[STORE_REQ_PUT], 4 + 3);
	CHECK_EQ_U64(d.req[STORE_REQ_POST], 2);
	CHECK_EQ_U64(d.req[STORE_REQ_GET], 2);
	CHECK_EQ_U64(d.req[STORE_REQ_HEAD], 1);
	CHECK_EQ_U64(d.req[STORE_REQ_LIST], 1);
	CHECK_EQ_U64(d.req[STORE_REQ_DELETE], 2);
	CHECK_EQ_U64(d.req[STORE_REQ_DELETE_MULTI], 1);
	CHECK_EQ_U64(d.errors, 0);
	CHECK_EQ_U64(d.retries, 0);
	/* the bodies: the objects, the multipart and delete XML */
	CHECK(d.bytes_up > 8 + (11u << 20));
	CHECK(d.bytes_up < 8 + (11u << 20) + 4096);
	CHECK(d.bytes_down >= 5);
	free(big);
	store_close(s);
out:
	buf_free(&loc);
	buf_free(&out);
}

int main(void)
{
	char tmp[] = "/tmp/t_store_stats.XXXXXX";

	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	test_file_counts(tmp);
	test_fault_shares(tmp);
	test_prices();
	test_cost();
	test_s3_counts();
	rm_rf(tmp);
	return check_done("t_store_stats");
}
