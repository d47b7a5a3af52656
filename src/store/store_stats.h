/*
 * store_stats.h - what a store's traffic was and what it costs.
 *
 * Every store counts the requests it makes, by kind, and the bytes it
 * moves (struct store_counters, reached through struct store's counters
 * pointer: a wrapper store points at its inner store's, so the counts are
 * those of the backend that did the work).  The counting is a handful of
 * relaxed atomic additions per request: no lock, nothing on the I/O path
 * that a request would notice.  store_stats.c adds the price table
 * (AWS S3 Standard's us-east-1 prices unless told otherwise) and the
 * arithmetic of a month's cost.
 *
 * What counts as a request:
 *   - S3: every HTTP request sent, retries included (each is a request
 *     the service sees and bills); a listing is a LIST per page of 1,000
 *     keys; a multipart upload is a POST to start, a PUT per part and a
 *     POST to complete; store_del_many() is a DELETE_MULTI per 1,000 keys;
 *   - the file backend: every call (a put, get, head, del), a listing as
 *     a LIST per 1,000 keys (at least one), as S3 would count it.
 * bytes_up and bytes_down are the bodies sent and received (for S3 the
 * listings' and error answers' XML too), errors the calls that failed
 * after their retries with anything but "not found", retries the
 * attempts sent again.
 */
#ifndef METAFUSE_STORE_STATS_H
#define METAFUSE_STORE_STATS_H

#include "util/compat.h"

#include <stdatomic.h>

#include "util/buf.h"

enum store_req {
	STORE_REQ_GET,
	STORE_REQ_PUT,
	STORE_REQ_POST,         /* multipart start and completion */
	STORE_REQ_LIST,
	STORE_REQ_HEAD,
	STORE_REQ_DELETE,
	STORE_REQ_DELETE_MULTI, /* S3 DeleteObjects, up to 1,000 keys */
	STORE_REQ_KINDS,
};

/* "GET", "PUT", ... "DELETE_MULTI"; the JSON keys of `metafuse stats`. */
const char *store_req_name(enum store_req kind);

/* The live counters; all relaxed atomics (see above). */
struct store_counters {
	atomic_uint_fast64_t req[STORE_REQ_KINDS];
	atomic_uint_fast64_t bytes_up, bytes_down;
	atomic_uint_fast64_t errors, retries;
};

/* A copy of the counters at one moment. */
struct store_traffic {
	uint64_t req[STORE_REQ_KINDS];
	uint64_t bytes_up, bytes_down;
	uint64_t errors, retries;
};

static inline void store_counters_add(struct store_counters *c,
				      enum store_req kind, uint64_t up,
				      uint64_t down)
{
	if (!c)
		return;
	atomic_fetch_add_explicit(&c->req[kind], 1, memory_order_relaxed);
	if (up)
		atomic_fetch_add_explicit(&c->bytes_up, up,
					  memory_order_relaxed);
	if (down)
		atomic_fetch_add_explicit(&c->bytes_down, down,
					  memory_order_relaxed);
}

/* Count n bytes received outside a request of their own (a listing's
 * keys are counted per page, its bytes as they come). */
static inline void store_counters_down(struct store_counters *c, uint64_t n)
{
	if (c && n)
		atomic_fetch_add_explicit(&c->bytes_down, n,
					  memory_order_relaxed);
}

static inline void store_counters_error(struct store_counters *c)
{
	if (c)
		atomic_fetch_add_explicit(&c->errors, 1, memory_order_relaxed);
}

static inline void store_counters_retry(struct store_counters *c)
{
	if (c)
		atomic_fetch_add_explicit(&c->retries, 1,
					  memory_order_relaxed);
}

/* Copy c (NULL: all zero) into out.  Each counter is read on its own:
 * a request in flight may show in one and not yet in another. */
void store_counters_read(struct store_counters *c, struct store_traffic *out);
/* The requests of all kinds in t. */
uint64_t store_traffic_requests(const struct store_traffic *t);

/* ---- prices ---- */

enum store_price {
	STORE_PRICE_STORAGE_GB_MONTH, /* USD per GB stored for a month */
	STORE_PRICE_PUT_1K,    /* USD per 1,000 PUT, POST, LIST (and
				* DELETE_MULTI, a POST) requests */
	STORE_PRICE_GET_1K,    /* USD per 1,000 GET and HEAD requests */
	STORE_PRICE_EGRESS_GB, /* USD per GB downloaded */
	STORE_PRICES,
};

/*
 * AWS S3 Standard's published us-east-1 prices: $0.023 per GB-month,
 * $0.005 per 1,000 PUT/COPY/POST/LIST, $0.0004 per 1,000 GET and others,
 * $0.09 per GB out to the internet; DELETE is free.  A GB is 2^30 bytes
 * and a month 730 hours, as AWS bills them.
 */
#define STORE_PRICE_DEFAULTS { 0.023, 0.005, 0.0004, 0.09 }
#define STORE_GB (1024.0 * 1024.0 * 1024.0)
#define STORE_MONTH_S (730.0 * 3600.0)

/* A price table: the prices given, the defaults for the others.  Zeroed:
 * all defaults. */
struct store_prices {
	double given[STORE_PRICES];
	unsigned given_mask; /* 1 << enum store_price */
};

/* The price in effect. */
double store_price(const struct store_prices *p, enum store_price which);
/* The option name of a price: "price_storage_gb_month", ... */
const char *store_price_name(enum store_price which);
/*
 * Set the price named key ("price_put_1k" or, in a price file, also
 * "put_1k") from value, a non-negative decimal number ("0.005", "5e-3"
 * and "1,5" are refused).  -ENOENT: no such price; -EINVAL: not such a
 * number (p unchanged).
 */
int store_price_set(struct store_prices *p, const char *key,
		    const char *value);
/*
 * Apply a price file's text: "key=value" lines (spaces around either
 * allowed), blank lines and lines starting with '#' ignored.  On an
 * error, one line in err ("line N: ...") and -EINVAL or -ENOENT; p keeps
 * the lines before it.
 */
int store_prices_parse(struct store_prices *p, const char *text,
		       struct buf *err);

/* A month's cost in USD, in parts. */
struct store_cost {
	double storage;  /* stored bytes for a month */
	double requests; /* the requests, at their rate */
	double egress;   /* the bytes downloaded, at their rate */
	double total;
};

/*
 * The cost of a month: stored_bytes kept for it, and the requests and
 * downloads of t, made in seconds (less than a second counts as one),
 * going on at that rate for the month.
 */
void store_cost_month(const struct store_prices *p,
		      const struct store_traffic *t, double seconds,
		      uint64_t stored_bytes, struct store_cost *out);

#endif
