/*
 * store_stats.c - reading a store's counters, the price table and the
 * cost of a month (see store_stats.h for what each counter counts).
 *
 * Data model: the counters are relaxed atomics that the backends bump
 * (store_counters_add() and friends, inline in the header); a price
 * table is the prices a user gave over AWS S3 Standard's defaults.
 *
 * Invariants:
 *   1. A price is a finite, non-negative decimal number written with
 *      digits and at most one '.': whatever else a user wrote (a sign,
 *      an exponent, a comma, "inf", a unit) is refused, never read as
 *      part of a number.
 *   2. Requests are priced by kind: PUT, POST, LIST and DELETE_MULTI (a
 *      POST on S3) at the PUT price, GET and HEAD at the GET price,
 *      DELETE free.
 *   3. A cost is never divided by a time under one second, so that a
 *      snapshot taken at once after the mount gives a number, not
 *      infinity.
 */
#include "util/compat.h"

#include <ctype.h>
#include <math.h>

#include "store/store_stats.h"

static const char *const req_names[STORE_REQ_KINDS] = {
	[STORE_REQ_GET] = "GET",
	[STORE_REQ_PUT] = "PUT",
	[STORE_REQ_POST] = "POST",
	[STORE_REQ_LIST] = "LIST",
	[STORE_REQ_HEAD] = "HEAD",
	[STORE_REQ_DELETE] = "DELETE",
	[STORE_REQ_DELETE_MULTI] = "DELETE_MULTI",
};

static const char *const price_names[STORE_PRICES] = {
	[STORE_PRICE_STORAGE_GB_MONTH] = "price_storage_gb_month",
	[STORE_PRICE_PUT_1K] = "price_put_1k",
	[STORE_PRICE_GET_1K] = "price_get_1k",
	[STORE_PRICE_EGRESS_GB] = "price_egress_gb",
};

static const double price_defaults[STORE_PRICES] = STORE_PRICE_DEFAULTS;

const char *store_req_name(enum store_req kind)
{
	return (unsigned)kind < STORE_REQ_KINDS ? req_names[kind] : "?";
}

void store_counters_read(struct store_counters *c, struct store_traffic *out)
{
	unsigned i;

	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	for (i = 0; i < STORE_REQ_KINDS; i++)
		out->req[i] = atomic_load_explicit(&c->req[i],
						   memory_order_relaxed);
	out->bytes_up = atomic_load_explicit(&c->bytes_up,
					     memory_order_relaxed);
	out->bytes_down = atomic_load_explicit(&c->bytes_down,
					       memory_order_relaxed);
	out->errors = atomic_load_explicit(&c->errors, memory_order_relaxed);
	out->retries = atomic_load_explicit(&c->retries,
					    memory_order_relaxed);
}

uint64_t store_traffic_requests(const struct store_traffic *t)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < STORE_REQ_KINDS; i++)
		n += t->req[i];
	return n;
}

/* ---- prices ---- */

double store_price(const struct store_prices *p, enum store_price which)
{
	if ((unsigned)which >= STORE_PRICES)
		return 0;
	return p && (p->given_mask & (1u << which)) ? p->given[which] :
						      price_defaults[which];
}

const char *store_price_name(enum store_price which)
{
	return (unsigned)which < STORE_PRICES ? price_names[which] : "?";
}

/* Invariant 1: digits with at most one '.', and at least one digit. */
static int parse_price(const char *s, double *out)
{
	const char *p;
	unsigned digits = 0, dots = 0;
	char *end;
	double v;

	for (p = s; *p; p++) {
		if (*p >= '0' && *p <= '9')
			digits++;
		else if (*p == '.')
			dots++;
		else
			return -EINVAL;
	}
	if (!digits || dots > 1)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (*end || errno || !isfinite(v) || v < 0)
		return -EINVAL;
	*out = v;
	return 0;
}

int store_price_set(struct store_prices *p, const char *key,
		    const char *value)
{
	unsigned i;

	for (i = 0; i < STORE_PRICES; i++) {
		const char *name = price_names[i];

		/* a price file may leave out the "price_" */
		if (strcmp(key, name) && strcmp(key, name + 6))
			continue;
		if (!value || parse_price(value, &p->given[i]))
			return -EINVAL;
		p->given_mask |= 1u << i;
		return 0;
	}
	return -ENOENT;
}

/* Cut the spaces off both ends of [*s, *e). */
static void trim(const char **s, const char **e)
{
	while (*s < *e && isspace((unsigned char)**s))
		(*s)++;
	while (*e > *s && isspace((unsigned char)(*e)[-1]))
		(*e)--;
}

/* One line of a price file, [s, e), without its newline. */
static int price_line(struct store_prices *p, const char *s, const char *e,
		      unsigned lineno, struct buf *err)
{
	const char *eq, *ks, *ke, *vs, *ve;
	char key[64], value[64];
	int rc;

	trim(&s, &e);
	if (s == e || *s == '#')
		return 0;
	eq = memchr(s, '=', (size_t)(e - s));
	if (!eq) {
		buf_appendf(err, "line %u: not key=value: '%.*s'", lineno,
			    (int)MF_MIN(e - s, 80), s);
		return -EINVAL;
	}
	ks = s;
	ke = eq;
	vs = eq + 1;
	ve = e;
	trim(&ks, &ke);
	trim(&vs, &ve);
	if ((size_t)(ke - ks) >= sizeof(key) ||
	    (size_t)(ve - vs) >= sizeof(value)) {
		buf_appendf(err, "line %u: too long", lineno);
		return -EINVAL;
	}
	memcpy(key, ks, (size_t)(ke - ks));
	key[ke - ks] = 0;
	memcpy(value, vs, (size_t)(ve - vs));
	value[ve - vs] = 0;
	rc = store_price_set(p, key, value);
	if (rc == -ENOENT)
		buf_appendf(err, "line %u: unknown price '%s' (known: "
			    "storage_gb_month, put_1k, get_1k, egress_gb)",
			    lineno, key);
	else if (rc)
		buf_appendf(err, "line %u: the price of %s, '%s', is not a "
			    "non-negative number", lineno, key, value);
	return rc;
}

int store_prices_parse(struct store_prices *p, const char *text,
		       struct buf *err)
{
	unsigned lineno = 1;
	int rc = 0;

	while (!rc && *text) {
		const char *nl = strchr(text, '\n');
		const char *end = nl ? nl : text + strlen(text);

		rc = price_line(p, text, end, lineno++, err);
		text = nl ? nl + 1 : end;
	}
	return rc;
}

void store_cost_month(const struct store_prices *p,
		      const struct store_traffic *t, double seconds,
		      uint64_t stored_bytes, struct store_cost *out)
{
	/* invariant 2 */
	double tier_put = (double)(t->req[STORE_REQ_PUT] +
				   t->req[STORE_REQ_POST] +
				   t->req[STORE_REQ_LIST] +
				   t->req[STORE_REQ_DELETE_MULTI]);
	double tier_get = (double)(t->req[STORE_REQ_GET] +
				   t->req[STORE_REQ_HEAD]);
	double scale = STORE_MONTH_S / (seconds < 1 ? 1 : seconds); /* 3 */

	out->storage = (double)stored_bytes / STORE_GB *
		       store_price(p, STORE_PRICE_STORAGE_GB_MONTH);
	out->requests = (tier_put * store_price(p, STORE_PRICE_PUT_1K) +
			 tier_get * store_price(p, STORE_PRICE_GET_1K)) /
			1000.0 * scale;
	out->egress = (double)t->bytes_down / STORE_GB *
		      store_price(p, STORE_PRICE_EGRESS_GB) * scale;
	out->total = out->storage + out->requests + out->egress;
}
